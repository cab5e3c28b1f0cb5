"""How sure we can be: confidence intervals, paired comparisons of variants, and how much data a
difference needs.

Every verdict comes from one method, which also gives its p-value and its interval, and is named:

- ``mcnemar_score``: accuracy with one answer per example. McNemar's score test on the examples
  only one variant gets right (z = (b - c) / sqrt(b + c), no continuity correction) and Tango's
  interval for the difference in accuracy, which inverts that same score statistic, so the
  interval excludes 0 exactly when p < 1 - confidence. Fagerland, Lydersen and Laake (2013)
  compared the paired-proportion tests and intervals: the exact conditional McNemar test is
  conservative at small n, the asymptotic score test keeps close to its nominal level, and
  Tango's score interval covers well; an exact conditional interval, by contrast, treats the
  number of discordant examples as fixed and is far too narrow when they are few.
- ``bca_bootstrap``: everything else (F1 scores, repeated answers). A paired bootstrap over
  examples (with all their repeats, the unit a client's data varies by) with BCa intervals
  (bias-corrected and accelerated, better coverage at small n than percentiles), and the p-value
  that inverts that interval: the largest level at which the BCa interval still contains 0.

One variant's interval is Wilson's score interval for accuracy with one answer per example (a
proportion), and the BCa bootstrap otherwise. `compare_all` corrects its k - 1 comparisons against
the baseline with Holm's method: every "significantly better" a report prints is a claim about one
pair, so the family-wise error rate is what must be controlled; Holm does that under any
dependence between the comparisons (they share the baseline) and is never less powerful than
Bonferroni. Benjamini-Hochberg's false discovery rate suits screening many hypotheses, not
stating a few verdicts.

Metrics are computed from additive per-example statistics (correct answers; true positives, false
positives and false negatives per label), so one resample is a weighted sum and a leave-one-out
jackknife is a subtraction: thousands of resamples take milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import binomtest, norm
from scipy.stats import t as student_t

from workbench.core.errors import InputError
from workbench.core.task import Task

Metric = Literal["accuracy", "macro_f1", "micro_f1"]
_CHUNK = 250  # resamples per matrix product, to bound memory on large datasets


@dataclass(frozen=True)
class Comparison:
    """Variant `a` against variant `b` on the same examples; `difference` is a minus b.

    `method` names the test that gives all of `p_value` (two-sided), the `confidence` interval
    `low`..`high` of the difference and the verdict (see the module docstring). `p_adjusted` is
    the p-value after correcting for the other comparisons it was made with (`adjustment`, e.g.
    ``holm``), or None for a comparison made alone. `significant` is decided by the adjusted
    p-value when there is one, else by the p-value: below ``1 - confidence``. `examples` is the
    number of shared examples; `examples_needed` estimates how many would give 80% power to detect
    a true difference of this size at this level (None when the difference is 0).
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
    examples: int = 0
    examples_needed: int | None = None
    p_adjusted: float | None = None
    adjustment: str | None = None

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    @property
    def decisive_p(self) -> float:
        """The p-value the verdict rests on: adjusted where the comparison was one of several."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    @property
    def significant(self) -> bool:
        return self.decisive_p < self.alpha

    @property
    def too_small(self) -> bool:
        """Not significant, and more examples than evaluated would be needed to detect the difference."""
        return not self.significant and (self.examples_needed is None or self.examples_needed > self.examples)

    def statement(self) -> str:
        """One sentence for a report, with the method, both p-values and the verdict."""
        verdict = "significant" if self.significant else "not significant"
        adjusted = "" if self.p_adjusted is None else f", {self.adjustment}-adjusted p = {self.p_adjusted:.3g}"
        return (
            f"{self.variant_a} vs {self.variant_b}: {self.metric} {self.a:.3f} vs {self.b:.3f}, "
            f"difference {self.difference:+.3f} ({self.confidence:.0%} CI {self.low:+.3f} to {self.high:+.3f}, "
            f"p = {self.p_value:.3g}{adjusted}, {self.method}, {self.examples} examples): {verdict}"
        )

    def power_note(self) -> str | None:
        """In words, how many examples detecting this difference would need, when the data are too few."""
        if not self.too_small:
            return None
        if self.examples_needed is None:
            return f"the variants gave the same {self.metric} on these {self.examples} examples"
        return (
            f"with {self.examples} examples the test set is too small to tell these variants apart: detecting a "
            f"true difference of {self.difference:+.3f} with 80% power would need about {self.examples_needed:,} examples"
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
    raise InputError(f"unknown metric {metric!r}; use accuracy, macro_f1 or micro_f1")


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
    """Confidence interval of `metric` per variant (higher is better).

    Wilson's score interval for accuracy with one answer per example, else the BCa bootstrap over
    examples. Columns: ``variant``, ``metric``, ``value`` (on all examples), ``low``, ``high``,
    ``method`` (``wilson`` or ``bca_bootstrap``), ``examples``, ``n_resamples`` (0 for Wilson),
    ``non_finite`` (bootstrap resamples where the metric was undefined, left out), ``confidence``.
    """
    metric = metric or default_metric(task)
    rows = []
    for variant, stats in example_statistics(predictions, gold, task).items():
        interval = metric_interval(stats, metric, n_resamples=n_resamples, confidence=confidence, seed=seed)
        rows.append({"variant": variant, "metric": metric, **interval, "examples": len(stats),
                     "confidence": confidence})
    return pd.DataFrame(rows)


def metric_interval(
    statistics: pd.DataFrame, metric: Metric, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float | int | str]:
    """The interval of `metric` from one variant's per-example statistics (`example_statistics`).

    Returns ``value``, ``low``, ``high``, ``method``, ``n_resamples`` and ``non_finite`` (see
    `bootstrap_ci`, which calls this for each variant).
    """
    columns = list(statistics.columns)
    values = statistics.to_numpy(dtype=float)
    value = float(metric_from_totals(values.sum(axis=0), columns, metric)[0])
    if metric == "accuracy" and (statistics["rows"] == 1).all():
        interval = binomtest(int(statistics["correct"].sum()), len(statistics)).proportion_ci(confidence, method="wilson")
        return {"value": value, "low": float(interval.low), "high": float(interval.high), "method": "wilson",
                "n_resamples": 0, "non_finite": 0}
    samples = _resampled_metric(values, columns, metric, n_resamples, seed)
    low, high = _bca_interval(samples, value, _jackknife(values, columns, metric), confidence)
    return {"value": value, "low": low, "high": high, "method": "bca_bootstrap", "n_resamples": n_resamples,
            "non_finite": int((~np.isfinite(samples)).sum())}


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
    power: float = 0.8,
    seed: int = 0,
) -> Comparison:
    """Compare two variants on the examples both answered (method: see the module docstring)."""
    metric = metric or default_metric(task)
    statistics = example_statistics(predictions, gold, task)
    for variant in (variant_a, variant_b):
        if variant not in statistics:
            raise InputError(f"variant {variant!r} is not in the predictions; have {sorted(statistics)}")
    shared = statistics[variant_a].index.intersection(statistics[variant_b].index)
    if len(shared) == 0:
        raise InputError(f"{variant_a!r} and {variant_b!r} share no examples")
    a = statistics[variant_a].loc[shared]
    b = statistics[variant_b].loc[shared]
    columns = list(a.columns)
    value_a = float(metric_from_totals(a.to_numpy().sum(axis=0), columns, metric)[0])
    value_b = float(metric_from_totals(b.to_numpy().sum(axis=0), columns, metric)[0])
    difference = value_a - value_b
    n = len(shared)
    if metric == "accuracy" and (a["rows"] == 1).all() and (b["rows"] == 1).all():
        a_only = int(((a["correct"] == 1) & (b["correct"] == 0)).sum())
        b_only = int(((a["correct"] == 0) & (b["correct"] == 1)).sum())
        low, high, p_value = _mcnemar_score(a_only, b_only, n, confidence)
        needed = _mcnemar_examples_needed((a_only + b_only) / n, difference, confidence, power)
        method = "mcnemar_score"
    else:
        # The same seed draws the same resampled examples for both variants: a paired bootstrap.
        samples = (_resampled_metric(a.to_numpy(), columns, metric, n_resamples, seed)
                   - _resampled_metric(b.to_numpy(), columns, metric, n_resamples, seed))
        jackknife = _jackknife(a.to_numpy(), columns, metric) - _jackknife(b.to_numpy(), columns, metric)
        low, high = _bca_interval(samples, difference, jackknife, confidence)
        p_value = _bca_p_value(samples, difference, jackknife)
        needed = _bootstrap_examples_needed(samples, difference, n, confidence, power)
        method = "bca_bootstrap"
    return Comparison(
        variant_a=variant_a, variant_b=variant_b, metric=metric, a=value_a, b=value_b, difference=difference,
        low=float(low), high=float(high), p_value=float(p_value), method=method, confidence=confidence,
        examples=n, examples_needed=needed,
    )


def compare_all(
    predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, baseline: str | None = None, **options: object
) -> list[Comparison]:
    """Each variant against `baseline` (default: the first variant in the predictions), with
    Holm-adjusted p-values across these comparisons (the verdicts rest on those)."""
    variants = list(dict.fromkeys(predictions["variant"]))
    baseline = baseline or variants[0]
    comparisons = [
        compare_variants(predictions, gold, task, variant, baseline, **options)  # type: ignore[arg-type]
        for variant in variants
        if variant != baseline
    ]
    adjusted = holm([comparison.p_value for comparison in comparisons])
    return [replace(comparison, p_adjusted=p, adjustment="holm") for comparison, p in zip(comparisons, adjusted)]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (each at most 1, never below its raw p)."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


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


def _jackknife(values: np.ndarray, columns: list[str], metric: Metric) -> np.ndarray:
    """`metric` with each example left out in turn (one value per example)."""
    return metric_from_totals(values.sum(axis=0) - values, columns, metric)


def _bca_parameters(samples: np.ndarray, estimate: float, jackknife: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(finite sorted samples, bias correction z0, acceleration a) of a BCa interval."""
    finite = np.sort(samples[np.isfinite(samples)])
    below = (np.sum(finite < estimate) + 0.5 * np.sum(finite == estimate)) / max(len(finite), 1)
    z0 = float(norm.ppf(np.clip(below, 1 / (len(finite) + 1), len(finite) / (len(finite) + 1))))
    jack = jackknife[np.isfinite(jackknife)]
    spread = jack.mean() - jack if len(jack) else np.zeros(1)
    denominator = 6 * float((spread ** 2).sum()) ** 1.5
    acceleration = float((spread ** 3).sum()) / denominator if denominator > 0 else 0.0
    return finite, z0, acceleration


def _expanded_z(tail: float, n: int) -> float:
    """The normal quantile of a BCa interval, widened for small samples: sqrt(n / (n - 1)) times
    Student's t quantile with n - 1 degrees of freedom (Hesterberg's expanded bootstrap interval).
    Bootstrap intervals are too narrow at small n; this recovers nominal coverage at n = 24
    (measured in `benchmarks/interval_coverage.py`) and tends to the normal quantile as n grows."""
    if n < 3:
        return float(norm.ppf(tail))
    return float(math.sqrt(n / (n - 1)) * student_t.ppf(tail, n - 1))


def _expanded_tail(z: float, n: int) -> float:
    """The inverse of `_expanded_z`: the tail probability whose widened quantile is `z`."""
    if n < 3:
        return float(norm.cdf(z))
    return float(student_t.cdf(z / math.sqrt(n / (n - 1)), n - 1))


def _bca_interval(samples: np.ndarray, estimate: float, jackknife: np.ndarray, confidence: float) -> tuple[float, float]:
    finite, z0, a = _bca_parameters(samples, estimate, jackknife)
    if len(finite) == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    n = len(jackknife)
    levels = []
    for z in (_expanded_z(tail, n), _expanded_z(1 - tail, n)):
        levels.append(float(norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    # The inverse of the empirical CDF (no interpolation), so that `_bca_p_value` inverts it exactly.
    low, high = np.quantile(finite, levels, method="inverted_cdf")
    return float(low), float(high)


def _bca_p_value(samples: np.ndarray, estimate: float, jackknife: np.ndarray) -> float:
    """Two-sided p-value of "no difference" that inverts the BCa interval (Efron and Tibshirani's
    achieved significance level): the smallest 1 - confidence at which an endpoint passes 0.

    With the interval's quantiles taken from the empirical CDF, the lower endpoint is above 0
    exactly when its BCa level exceeds the share of resamples at or below 0, and the upper endpoint
    is below 0 exactly when its level is at most the share below 0; each condition is solved for
    the level, so "p < 1 - confidence" and "the interval excludes 0" are the same statement.
    """
    finite, z0, a = _bca_parameters(samples, estimate, jackknife)
    if len(finite) == 0:
        return math.nan
    if finite[0] == finite[-1]:
        return 1.0 if finite[0] == 0 else 1 / (len(finite) + 1)  # every resample agrees

    def nominal_z(share: float) -> float:
        share = float(np.clip(share, 1 / (len(finite) + 1), len(finite) / (len(finite) + 1)))
        u = norm.ppf(share) - z0
        return u / (1 + a * u) - z0

    n = len(jackknife)
    at_or_below = np.searchsorted(finite, 0.0, side="right") / len(finite)
    below = np.searchsorted(finite, 0.0, side="left") / len(finite)
    lower_side = 2 * _expanded_tail(nominal_z(at_or_below), n)  # level at which the lower endpoint reaches 0
    upper_side = 2 * (1 - _expanded_tail(nominal_z(below), n))  # level at which the upper endpoint reaches 0
    return float(min(1.0, lower_side, upper_side))


def _tango_z(a_only: int, b_only: int, n: int, delta: float) -> float:
    """Tango's (1998) score statistic for "the difference in accuracy is `delta`" (paired design).

    ``(b - c - n delta) / sqrt(n (2 q + delta (1 - delta)))`` with ``q`` the restricted maximum
    likelihood estimate of the share only the second variant gets right; at ``delta = 0`` it is
    McNemar's ``(b - c) / sqrt(b + c)``. Decreasing in `delta`.
    """
    a_coef = 2 * n
    b_coef = -a_only - b_only + (2 * n - a_only + b_only) * delta
    c_coef = -b_only * delta * (1 - delta)
    q = (math.sqrt(max(b_coef ** 2 - 4 * a_coef * c_coef, 0.0)) - b_coef) / (2 * a_coef)
    variance = n * (2 * q + delta * (1 - delta))
    numerator = a_only - b_only - n * delta
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _mcnemar_score(a_only: int, b_only: int, n: int, confidence: float) -> tuple[float, float, float]:
    """(low, high, p): Tango's score interval of the difference in accuracy and McNemar's
    two-sided score-test p-value (1.0 when no example is won by only one variant)."""
    z_crit = float(norm.ppf(1 - (1 - confidence) / 2))
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(2 * norm.sf(abs(a_only - b_only) / math.sqrt(discordant)))
    edge = 1 - 1e-12
    bounds = []
    for target, lo, hi in ((z_crit, -edge, (a_only - b_only) / n), (-z_crit, (a_only - b_only) / n, edge)):
        # Z(delta) - target changes sign between the estimate and the edge, unless the edge is the bound.
        f = lambda delta, target=target: _tango_z(a_only, b_only, n, delta) - target  # noqa: E731
        if f(lo) * f(hi) > 0:
            bounds.append(lo if target > 0 else hi)
        else:
            bounds.append(brentq(f, lo, hi, xtol=1e-12))
    return float(bounds[0]), float(bounds[1]), p_value


def _mcnemar_examples_needed(discordant: float, difference: float, confidence: float, power: float) -> int | None:
    """Connor's (1987) sample size for McNemar's test at the observed discordant share and difference."""
    if difference == 0 or discordant <= difference ** 2:
        return None
    z_alpha, z_beta = norm.ppf(1 - (1 - confidence) / 2), norm.ppf(power)
    needed = (z_alpha * math.sqrt(discordant) + z_beta * math.sqrt(discordant - difference ** 2)) ** 2 / difference ** 2
    return int(math.ceil(needed))


def _bootstrap_examples_needed(samples: np.ndarray, difference: float, n: int, confidence: float,
                               power: float) -> int | None:
    """Examples for `power` at this difference, scaling the bootstrap standard error as 1/sqrt(n)."""
    finite = samples[np.isfinite(samples)]
    if difference == 0 or len(finite) < 2 or finite.std() == 0:
        return None
    z_alpha, z_beta = norm.ppf(1 - (1 - confidence) / 2), norm.ppf(power)
    return int(math.ceil(n * ((z_alpha + z_beta) * finite.std() / abs(difference)) ** 2))
