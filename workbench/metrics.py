"""Headline scores per prompt variant.

Every row of a predictions DataFrame counts: an answer that could not be parsed, or a call that
failed, is scored as wrong, never dropped.
"""

from __future__ import annotations

import math

import pandas as pd

from workbench.tasks import Task


def summarize_run(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task) -> pd.DataFrame:
    """One row per variant, in run order.

    Columns: ``variant``; ``n`` (rows: examples x repeats); ``accuracy`` (classification) or
    ``f1`` (NER: strict entity-level micro F1, exact span and type), higher is better;
    ``parse_failure_rate`` and ``request_error_rate`` (share of rows), lower is better;
    ``hallucinations`` (NER entities not in the text); ``latency_p50_s``; ``tokens_in`` and
    ``tokens_out`` (means per row); ``cost`` (total; NaN when unpriced).
    """
    gold = dataset.set_index("example_id")
    rows = []
    for variant, group in predictions.groupby("variant", sort=False):
        row: dict[str, object] = {"variant": variant, "n": len(group)}
        if task.kind == "classification":
            truth = group["example_id"].map(gold["label"])
            row["accuracy"] = float((group["prediction"] == truth).mean())
        else:
            row["f1"] = strict_micro_f1(group["prediction"], group["example_id"].map(gold["spans"]))
            row["hallucinations"] = int(group["hallucinations"].map(len).sum())
        row["parse_failure_rate"] = float(group["parse_error"].notna().mean())
        row["request_error_rate"] = float(group["request_error"].notna().mean())
        row["latency_p50_s"] = float(group["latency_s"].median())
        row["tokens_in"] = float(group["tokens_in"].mean())
        row["tokens_out"] = float(group["tokens_out"].mean())
        row["cost"] = float(group["cost"].sum(min_count=1)) if group["cost"].notna().all() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def strict_micro_f1(predicted: pd.Series, gold: pd.Series) -> float:
    """Micro F1 over entities matched on exact (start, end, label); None predictions count as empty."""
    true_positives = predicted_count = gold_count = 0
    for predicted_spans, gold_spans in zip(predicted, gold):
        predicted_set = {(s["start"], s["end"], s["label"]) for s in (predicted_spans or [])}
        gold_set = {(s["start"], s["end"], s["label"]) for s in gold_spans}
        true_positives += len(predicted_set & gold_set)
        predicted_count += len(predicted_set)
        gold_count += len(gold_set)
    if predicted_count + gold_count == 0:
        return 1.0
    return 2 * true_positives / (predicted_count + gold_count)
