"""Scores per prompt variant: quality, and what it costs.

Every row of a predictions DataFrame counts: an answer that could not be parsed, or a call that
failed, is scored as wrong (for NER: as finding no entities), never dropped. Repeats are pooled.
Entity-level NER scores live in `workbench.ner_metrics`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from workbench.consistency import UNPARSED
from workbench.tasks import Task


def _joined(predictions: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    missing = set(predictions["example_id"]) - set(gold["example_id"])
    if missing:
        raise ValueError(f"{len(missing)} predicted example_id(s) are not in the gold data, e.g. {sorted(missing)[:3]}")
    truth = gold.set_index("example_id")["label"]
    predicted = predictions["prediction"].where(predictions["prediction"].notna(), UNPARSED)
    return pd.DataFrame({
        "variant": predictions["variant"].to_numpy(),
        "gold": predictions["example_id"].map(truth).to_numpy(),
        "predicted": predicted.to_numpy(),
    })


def score_classification(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Headline classification scores per variant (higher is better).

    Columns: ``variant``, ``n`` (rows), ``accuracy``, and ``precision_<avg>``, ``recall_<avg>``,
    ``f1_<avg>`` for avg in macro, micro and weighted, over the task's labels (scikit-learn's
    definitions; unparsed answers count as a wrong prediction of no label).
    """
    labels = list(task.label_names)
    rows = []
    for variant, group in _joined(predictions, gold).groupby("variant", sort=False):
        row: dict[str, object] = {"variant": variant, "n": len(group), "accuracy": float((group["gold"] == group["predicted"]).mean())}
        for average in ("macro", "micro", "weighted"):
            precision, recall, f1, _ = precision_recall_fscore_support(
                group["gold"], group["predicted"], labels=labels, average=average, zero_division=0
            )
            row.update({f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1})
        rows.append(row)
    return pd.DataFrame(rows)


def per_label_scores(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Precision, recall and F1 per (variant, label); ``support`` is the number of gold rows."""
    labels = list(task.label_names)
    rows = []
    for variant, group in _joined(predictions, gold).groupby("variant", sort=False):
        precision, recall, f1, support = precision_recall_fscore_support(
            group["gold"], group["predicted"], labels=labels, average=None, zero_division=0
        )
        for index, label in enumerate(labels):
            rows.append({"variant": variant, "label": label, "precision": precision[index],
                         "recall": recall[index], "f1": f1[index], "support": int(support[index])})
    return pd.DataFrame(rows)


def confusion(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, variant: str) -> pd.DataFrame:
    """Confusion matrix for one variant: gold labels as rows, predicted labels as columns.

    A last column, ``<unparsed>``, counts answers that could not be read.
    """
    joined = _joined(predictions, gold)
    group = joined[joined["variant"] == variant]
    if group.empty:
        raise ValueError(f"variant {variant!r} is not in the predictions")
    labels = list(task.label_names)
    matrix = confusion_matrix(group["gold"], group["predicted"], labels=[*labels, UNPARSED])
    frame = pd.DataFrame(matrix[: len(labels)], index=pd.Index(labels, name="gold"),
                         columns=pd.Index([*labels, UNPARSED], name="predicted"))
    return frame


def score_efficiency(predictions: pd.DataFrame) -> pd.DataFrame:
    """Cost and speed per variant (lower is better for all but ``n``).

    Columns: ``variant``, ``n``, ``parse_failure_rate``, ``request_error_rate``,
    ``latency_p50_s``, ``latency_p95_s`` (of answered calls, cached ones at their original
    latency), ``tokens_in_mean``, ``tokens_out_mean``, ``cost_per_1000`` (cost of 1,000 rows in
    the price table's currency; NaN when the model has no price), ``hallucinations`` (NER
    entities not found in the text).
    """
    rows = []
    for variant, group in predictions.groupby("variant", sort=False):
        latency = group["latency_s"].dropna()
        cost = group["cost"]
        rows.append({
            "variant": variant,
            "n": len(group),
            "parse_failure_rate": float(group["parse_error"].notna().mean()),
            "request_error_rate": float(group["request_error"].notna().mean()),
            "latency_p50_s": float(np.percentile(latency, 50)) if len(latency) else math.nan,
            "latency_p95_s": float(np.percentile(latency, 95)) if len(latency) else math.nan,
            "tokens_in_mean": float(group["tokens_in"].mean()),
            "tokens_out_mean": float(group["tokens_out"].mean()),
            "cost_per_1000": float(cost.sum() / len(group) * 1000) if cost.notna().all() else math.nan,
            "hallucinations": int(group["hallucinations"].map(lambda items: len(items) if isinstance(items, list) else 0).sum()),
        })
    return pd.DataFrame(rows)


def summarize_run(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task) -> pd.DataFrame:
    """One row per variant, in run order: the headline quality metric and cost/speed.

    Columns: ``variant``; ``n``; ``accuracy`` (classification) or ``f1`` (NER: strict
    entity-level micro F1, exact span and type), higher is better; then the columns of
    `score_efficiency`.
    """
    if task.kind == "classification":
        quality = score_classification(predictions, dataset, task)[["variant", "accuracy"]]
    else:
        from workbench.ner_metrics import score_ner

        scores = score_ner(predictions, dataset, list(task.label_names), modes=("strict",))
        quality = scores.loc[scores["label"] == "ALL", ["variant", "f1"]].reset_index(drop=True)
    merged = quality.merge(score_efficiency(predictions), on="variant")
    headline = [column for column in quality.columns if column != "variant"]
    rest = [column for column in merged.columns if column not in ("variant", "n", *headline)]
    return merged[["variant", "n", *headline, *rest]]
