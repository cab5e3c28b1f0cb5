"""How consistently a variant answers when the same prompt is sampled several times.

Each (variant, example) has one answer per repeat. Answers are compared as categories: the label
for classification, the set of (start, end, label) spans for NER, and a single "unparsed"
category for answers that could not be read (two failures agree with each other).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

UNPARSED = "<unparsed>"


def answer_key(prediction: Any) -> str:
    """A hashable category for one prediction: the label, a canonical span list, or `UNPARSED`."""
    if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
        return UNPARSED
    if isinstance(prediction, str):
        return prediction
    spans = sorted((int(span["start"]), int(span["end"]), str(span["label"])) for span in prediction)
    return json.dumps(spans)


def example_consistency(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, example_id) with columns ``repeats``, ``distinct_answers``,
    ``majority_share`` (share of repeats giving the most common answer, higher is steadier),
    ``pairwise_agreement`` (share of agreeing pairs of repeats) and ``all_agree`` (bool)."""
    keyed = predictions.assign(_answer=predictions["prediction"].map(answer_key))
    rows = []
    for (variant, example_id), group in keyed.groupby(["variant", "example_id"], sort=False):
        counts = group["_answer"].value_counts().to_numpy()
        n = int(counts.sum())
        pairs = n * (n - 1)
        rows.append({
            "variant": variant,
            "example_id": example_id,
            "repeats": n,
            "distinct_answers": len(counts),
            "majority_share": counts.max() / n,
            "pairwise_agreement": float((counts * (counts - 1)).sum() / pairs) if pairs else math.nan,
            "all_agree": len(counts) == 1,
        })
    return pd.DataFrame(rows)


def score_consistency(predictions: pd.DataFrame) -> pd.DataFrame:
    """Consistency per variant, from predictions with several repeats per example.

    Columns: ``variant``, ``repeats`` (per example), ``examples``, ``all_agree_share`` (share of
    examples whose repeats all agree), ``mean_pairwise_agreement``, ``fleiss_kappa`` (agreement
    beyond chance among the repeats as raters; 1 is perfect, 0 is chance level; NaN with fewer than
    two repeats or when every answer is the same category). Higher is more consistent.
    """
    per_example = example_consistency(predictions)
    keyed = predictions.assign(_answer=predictions["prediction"].map(answer_key))
    rows = []
    for variant, group in per_example.groupby("variant", sort=False):
        repeats = group["repeats"].unique()
        if len(repeats) != 1:
            raise ValueError(
                f"variant {variant!r} has different numbers of repeats per example ({sorted(repeats)}); "
                "consistency needs the same number for every example"
            )
        counts = _category_counts(keyed[keyed["variant"] == variant])
        rows.append({
            "variant": variant,
            "repeats": int(repeats[0]),
            "examples": len(group),
            "all_agree_share": float(group["all_agree"].mean()),
            "mean_pairwise_agreement": float(group["pairwise_agreement"].mean()),
            "fleiss_kappa": fleiss_kappa(counts),
        })
    return pd.DataFrame(rows)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an (items x categories) matrix of rater counts, equal raters per item."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return math.nan
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError("Fleiss' kappa needs the same number of ratings for every item")
    n = raters[0]
    if n < 2:
        return math.nan
    per_item = ((counts * (counts - 1)).sum(axis=1)) / (n * (n - 1))
    observed = per_item.mean()
    proportions = counts.sum(axis=0) / counts.sum()
    expected = float((proportions ** 2).sum())
    if math.isclose(expected, 1.0):
        return math.nan
    return float((observed - expected) / (1 - expected))


def _category_counts(keyed: pd.DataFrame) -> np.ndarray:
    table = pd.crosstab(keyed["example_id"], keyed["_answer"])
    return table.to_numpy()
