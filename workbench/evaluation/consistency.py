"""How consistently a variant answers when the same prompt is sampled several times.

Each (variant, example) has one answer per repeat. Answers are compared as categories: the label
for classification, the set of (start, end, label) spans for NER, and a single "unparsed"
category for answers that could not be read (two failures agree with each other).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.core.answers import answer_key, is_missing
from workbench.core.errors import InputError


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
            raise InputError(
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
    """Fleiss' kappa from an (items x categories) matrix of rater counts; 1 is perfect, 0 chance.

    Items may have different numbers of raters (items with fewer than two are left out): each
    item's observed agreement is the share of agreeing ordered pairs among its own raters, and
    chance agreement comes from the pooled category proportions. With equal raters per item this is
    Fleiss' kappa exactly. NaN when there is no item to rate or every rating is one category.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return math.nan
    raters = counts.sum(axis=1)
    counts = counts[raters >= 2]
    raters = raters[raters >= 2]
    if len(counts) == 0:
        return math.nan
    observed = float((((counts * (counts - 1)).sum(axis=1)) / (raters * (raters - 1))).mean())
    proportions = counts.sum(axis=0) / counts.sum()
    expected = float((proportions ** 2).sum())
    if math.isclose(expected, 1.0):
        return math.nan
    return (observed - expected) / (1 - expected)


def _category_counts(keyed: pd.DataFrame) -> np.ndarray:
    table = pd.crosstab(keyed["example_id"], keyed["_answer"])
    return table.to_numpy()


def variant_disagreements(predictions: pd.DataFrame, dataset: pd.DataFrame, task) -> pd.DataFrame:
    """The examples on which the variants' first answers differ, as one readable row each.

    Columns: ``example_id``, ``text``, ``gold`` (the gold target in words), then one column per
    variant (run order) with its answer of repeat 0 in words (`TaskKind.describe`; "unparsed" when
    no usable answer), and ``distinct_answers``. Most distinct answers first, then dataset order.
    """
    first = predictions[predictions["repeat"] == predictions["repeat"].min()]
    variants = list(dict.fromkeys(first["variant"]))
    truth = dataset.set_index("example_id")
    rows = []
    for example_id, group in first.groupby("example_id", sort=False):
        answers = dict(zip(group["variant"], group["prediction"]))
        keys = {task.kind.answer_key(answer) for answer in answers.values()}
        if len(keys) < 2:
            continue
        text = truth.at[example_id, "text"]
        row = {"example_id": example_id, "text": text,
               "gold": task.kind.describe(text, truth.at[example_id, task.kind.target_column])}
        for variant in variants:
            answer = answers.get(variant)
            row[variant] = "unparsed" if is_missing(answer) else task.kind.describe(text, answer)
        row["distinct_answers"] = len(keys)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["example_id", "text", "gold", *variants, "distinct_answers"])
    return frame.sort_values("distinct_answers", ascending=False, kind="stable").reset_index(drop=True)


def reliability_table(predictions: pd.DataFrame, gold: pd.DataFrame, task, bins: int = 5) -> pd.DataFrame:
    """How often answers are right at each level of confidence, for variants that have one
    (self-consistency ``sc<n>``: ``confidence`` is the vote share).

    One row per (variant, confidence bin) with rows in it: ``variant``, ``bin_low``, ``bin_high``
    (equal-width bins over [0, 1]), ``rows``, ``mean_confidence`` and ``accuracy`` (share of those
    rows whose answer is exactly the gold answer, higher is better). A well-calibrated variant has
    accuracy close to mean confidence in every bin. Empty when no row has a confidence.
    """
    columns = ["variant", "bin_low", "bin_high", "rows", "mean_confidence", "accuracy"]
    if "confidence" not in predictions.columns:
        return pd.DataFrame(columns=columns)
    rated = predictions[predictions["confidence"].notna()]
    if rated.empty:
        return pd.DataFrame(columns=columns)
    truth = gold.set_index("example_id")[task.kind.target_column]
    correct = [not is_missing(prediction) and task.kind.answer_key(prediction) == task.kind.answer_key(truth[example])
               for prediction, example in zip(rated["prediction"], rated["example_id"])]
    edges = np.linspace(0, 1, bins + 1)
    position = np.clip(np.digitize(rated["confidence"].to_numpy(float), edges[1:-1], right=True), 0, bins - 1)
    frame = pd.DataFrame({"variant": rated["variant"].to_numpy(), "bin": position,
                          "confidence": rated["confidence"].to_numpy(float), "correct": np.array(correct, float)})
    table = frame.groupby(["variant", "bin"], sort=False).agg(
        rows=("correct", "size"), mean_confidence=("confidence", "mean"), accuracy=("correct", "mean")).reset_index()
    table["bin_low"], table["bin_high"] = edges[table["bin"]], edges[table["bin"] + 1]
    order = {variant: index for index, variant in enumerate(dict.fromkeys(rated["variant"]))}
    table = table.sort_values(["variant", "bin"], key=lambda column: column.map(order) if column.name == "variant"
                              else column, kind="stable")
    return table[columns].reset_index(drop=True)
