"""How sure we can be: bootstrap confidence intervals and paired comparisons of variants.

Both resample *examples* (with all their repeats), because examples are the unit a client's data
varies by. Each metric is computed from additive per-example statistics (correct answers; true
positives, false positives and false negatives per label), so one resample is a weighted sum:
thousands of resamples take milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from workbench.core.task import Task

Metric = Literal["accuracy", "macro_f1", "micro_f1"]
_CHUNK = 250  # resamples per matrix product, to bound memory on large datasets


@dataclass(frozen=True)
class Comparison:
    """Variant `a` against variant `b` on the same examples; `difference` is a minus b.

    `p_value` is two-sided; `significant` means the `confidence` interval of the difference
    excludes zero. `method` names the test: ``paired_bootstrap`` or ``mcnemar_exact``.
    """

    variant_a: str
    variant_b: str
    metric: str
    a: float
    b: float
    difference: float
    low: float
    high: float
    p_value: float
    method: str
    confidence: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def statement(self) -> str:
        """One sentence for a report."""
        verdict = "significant" if self.significant else "not significant"
        return (
            f"{self.variant_a} vs {self.variant_b}: {self.metric} {self.a:.3f} vs {self.b:.3f}, "
            f"difference {self.difference:+.3f} ({self.confidence:.0%} CI {self.low:+.3f} to {self.high:+.3f}, "
            f"p = {self.p_value:.3g}, {self.method}): {verdict}"
        )


def default_metric(task: Task) -> Metric:
    """The headline metric of a task's kind: accuracy for classification, strict micro F1 for NER,
    micro F1 over labels for multi-label."""
    return task.kind.headline_metric


def example_statistics(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> dict[str, pd.DataFrame]:
    """Additive per-example statistics, by variant: a DataFrame indexed by example_id.

    Classification columns: ``rows``, ``correct``, and ``tp:<label>``, ``fp:<label>``, ``fn:<label>``.
    NER columns: ``rows``, ``tp``, ``fp``, ``fn`` (strict: exact span and type). Multi-label: all
    of these, over labels. Repeats are summed. (`TaskKind.example_statistics` makes them.)
    """
    truth = gold.set_index("example_id")
    result = {}
    for variant, group in predictions.groupby("variant", sort=False):
        columns = task.kind.example_statistics(group, truth[task.kind.target_column], task)
        frame = pd.DataFrame(columns, index=group["example_id"].to_numpy())
        result[variant] = frame.groupby(level=0, sort=False).sum()
    return result


def metric_from_totals(totals: np.ndarray, columns: list[str], metric: Metric) -> np.ndarray:
    """Evaluate `metric` on rows of summed statistics (shape resamples x columns)."""
    totals = np.atleast_2d(totals)
    index = {name: position for position, name in enumerate(columns)}
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return totals[:, index["correct"]] / totals[:, index["rows"]]
        if metric == "micro_f1":
            tp, fp, fn = (totals[:, index[name]] for name in ("tp", "fp", "fn"))
            denominator = 2 * tp + fp + fn
            return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 1.0)
        if metric == "macro_f1":
            labels = [name[3:] for name in columns if name.startswith("tp:")]
            scores = []
            for label in labels:
                tp, fp, fn = (totals[:, index[f"{kind}:{label}"]] for kind in ("tp", "fp", "fn"))
                denominator = 2 * tp + fp + fn
                # As scikit-learn does (zero_division=0): a label never predicted nor present scores 0.
                scores.append(np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0))
            return np.mean(scores, axis=0)
    raise ValueError(f"unknown metric {metric!r}; use accuracy, macro_f1 or micro_f1")


def bootstrap_ci(
    predictions: pd.DataFrame,
    gold: pd.DataFrame,
    task: Task,
    metric: Metric | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Percentile bootstrap confidence interval of `metric` per variant (higher is better).

    Columns: ``variant``, ``metric``, ``value`` (on all examples), ``low``, ``high``,
    ``examples``, ``n_resamples``, ``confidence``.
    """
    metric = metric or default_metric(task)
    rows = []
    for variant, stats in example_statistics(predictions, gold, task).items():
        columns = list(stats.columns)
        values = stats.to_numpy()
        samples = _resampled_metric(values, columns, metric, n_resamples, seed)
        low, high = _interval(samples, confidence)
        rows.append({
            "variant": variant, "metric": metric,
            "value": float(metric_from_totals(values.sum(axis=0), columns, metric)[0]),
            "low": low, "high": high, "examples": len(values), "n_resamples": n_resamples, "confidence": confidence,
        })
    return pd.DataFrame(rows)


def compare_variants(
    predictions: pd.DataFrame,
    gold: pd.DataFrame,
    task: Task,
    variant_a: str,
    variant_b: str,
    metric: Metric | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare two variants on the examples both answered.

    The interval is a paired bootstrap of the difference (the same resampled examples for both
    variants). The p-value is McNemar's exact test for accuracy with one repeat, where it applies
    exactly; otherwise it is the paired bootstrap's two-sided p-value.
    """
    metric = metric or default_metric(task)
    statistics = example_statistics(predictions, gold, task)
    for variant in (variant_a, variant_b):
        if variant not in statistics:
            raise ValueError(f"variant {variant!r} is not in the predictions; have {sorted(statistics)}")
    shared = statistics[variant_a].index.intersection(statistics[variant_b].index)
    if len(shared) == 0:
        raise ValueError(f"{variant_a!r} and {variant_b!r} share no examples")
    a = statistics[variant_a].loc[shared]
    b = statistics[variant_b].loc[shared]
    columns = list(a.columns)
    # The same seed draws the same resampled examples for both variants: a paired bootstrap.
    difference_samples = _resampled_metric(a.to_numpy(), columns, metric, n_resamples, seed) - _resampled_metric(
        b.to_numpy(), columns, metric, n_resamples, seed
    )
    value_a = float(metric_from_totals(a.to_numpy().sum(axis=0), columns, metric)[0])
    value_b = float(metric_from_totals(b.to_numpy().sum(axis=0), columns, metric)[0])
    low, high = _interval(difference_samples, confidence)

    if metric == "accuracy" and (a["rows"] == 1).all() and (b["rows"] == 1).all():
        a_only = int(((a["correct"] == 1) & (b["correct"] == 0)).sum())
        b_only = int(((a["correct"] == 0) & (b["correct"] == 1)).sum())
        p_value = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
        method = "mcnemar_exact"
    else:
        finite = difference_samples[np.isfinite(difference_samples)]
        below = (np.sum(finite <= 0) + 1) / (len(finite) + 1)
        above = (np.sum(finite >= 0) + 1) / (len(finite) + 1)
        p_value = float(min(1.0, 2 * min(below, above)))
        method = "paired_bootstrap"
    return Comparison(
        variant_a=variant_a, variant_b=variant_b, metric=metric, a=value_a, b=value_b,
        difference=value_a - value_b, low=low, high=high, p_value=p_value, method=method, confidence=confidence,
    )


def compare_all(
    predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, baseline: str | None = None, **options: object
) -> list[Comparison]:
    """Each variant against `baseline` (default: the first variant in the predictions)."""
    variants = list(dict.fromkeys(predictions["variant"]))
    baseline = baseline or variants[0]
    return [
        compare_variants(predictions, gold, task, variant, baseline, **options)  # type: ignore[arg-type]
        for variant in variants
        if variant != baseline
    ]


def _resampled_metric(values: np.ndarray, columns: list[str], metric: Metric, resamples: int, seed: int) -> np.ndarray:
    """`metric` on `resamples` bootstrap resamples of the example rows of `values`.

    Each resample is a vector of how often each example was drawn, so its statistics are one
    matrix product; resamples are drawn in chunks to bound memory on large datasets.
    """
    rng = np.random.default_rng(seed)
    n = len(values)
    results = []
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        results.append(metric_from_totals(weights @ values, columns, metric))
    return np.concatenate(results)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
