"""Cost and speed per prompt variant, and the one-line-per-variant run summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.core.task import Task


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

    Columns: ``variant``; ``n``; the kind's headline score (`TaskKind.summary_column`:
    ``accuracy`` for classification, ``f1`` for NER (strict entity-level micro F1, exact span and
    type) and for multi-label (micro F1 over labels)), higher is better; then the columns of
    `score_efficiency`.
    """
    column = task.kind.summary_column
    quality = task.kind.score(predictions, dataset, task)[["variant", column]]
    merged = quality.merge(score_efficiency(predictions), on="variant")
    headline = [column for column in quality.columns if column != "variant"]
    rest = [column for column in merged.columns if column not in ("variant", "n", *headline)]
    return merged[["variant", "n", *headline, *rest]]
