"""A score gate for CI: ``workbench run ... --fail-under accuracy=0.80`` fails when a score falls short.

A threshold is ``METRIC=VALUE`` (the best variant by that metric must reach it) or
``VARIANT:METRIC=VALUE`` (that variant must). The metrics are the run's own scores, computed by
the same functions the report uses, so the gate's figures are the report's:

- ``accuracy``, ``macro_f1`` and ``micro_f1``, where the task kind's per-example statistics define
  them, with their 95% interval (`workbench.evaluation.significance.bootstrap_ci`: Wilson's
  interval for accuracy with one answer per example, else the BCa bootstrap). For multi-label
  tasks ``accuracy`` is exact match (scikit-learn's subset accuracy).
- the kind's summary column (``f1`` for NER and multi-label, `summarize_run`'s headline column),
  which is the headline metric under another name, with the headline's interval;
- every other column of the kind's scores (`workbench.evaluation.scores.score`) where higher is
  better (``f1_weighted``, ``boundary_f1``, ``samples_f1``, ...), without an interval; a column
  ``f1_<average>`` may also be named ``<average>_f1`` (classification's ``micro_f1``).

A score passes when it is at least its threshold; a score that is not a number (NaN) fails.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.core.errors import InputError
from workbench.core.task import Task
from workbench.evaluation.significance import bootstrap_ci, example_statistics, metric_from_totals

INTERVAL_METRICS = ("accuracy", "macro_f1", "micro_f1")  # the metrics `bootstrap_ci` gives intervals for
LOWER_IS_BETTER = frozenset({"hamming_loss"})  # `score`'s documented exception; a floor on it means nothing
GATE_COLUMNS = ["threshold", "variant", "best", "metric", "value", "low", "high", "confidence", "minimum", "passed"]


@dataclass(frozen=True)
class Threshold:
    """One ``[VARIANT:]METRIC=VALUE``: `variant` None means the best variant by `metric`."""

    metric: str
    minimum: float
    variant: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.variant + ':' if self.variant is not None else ''}{self.metric}={self.minimum:g}"


def parse_threshold(spec: str) -> Threshold:
    """Read ``METRIC=VALUE`` or ``VARIANT:METRIC=VALUE`` (VALUE between 0 and 1).

    Raises ValueError saying what is wrong with `spec` and the form it must take.
    """
    form = "use METRIC=VALUE (the best variant) or VARIANT:METRIC=VALUE, e.g. accuracy=0.80 or few_shot:macro_f1=0.6"
    left, equals, number = spec.rpartition("=")
    if not equals or not left.strip() or not number.strip():
        raise InputError(f"--fail-under {spec!r} is not a threshold; {form}")
    variant, colon, metric = left.rpartition(":")
    variant, metric = variant.strip(), metric.strip()
    if colon and not variant:
        raise InputError(f"--fail-under {spec!r} names no variant before ':'; {form}")
    if not metric:
        raise InputError(f"--fail-under {spec!r} names no metric; {form}")
    try:
        minimum = float(number)
    except ValueError:
        raise InputError(f"--fail-under {spec!r}: {number.strip()!r} is not a number; {form}") from None
    if not 0.0 <= minimum <= 1.0:
        raise InputError(f"--fail-under {spec!r}: scores lie between 0 and 1 (write 0.80 for 80%), got {number.strip()}")
    return Threshold(metric=metric, minimum=minimum, variant=variant if colon else None)


def gate_metrics(task: Task, dataset: pd.DataFrame) -> dict[str, bool]:
    """The metrics a threshold may name for `task`'s kind, each with whether it has an interval.

    `dataset` is gold rows (`workbench.core.data.load_dataset` columns); one row is scored as its
    own perfect answer to learn which scores the kind gives, so this needs no model call.
    """
    return {name: interval for name, (interval, _) in _metric_sources(task, dataset).items()}


def _metric_sources(task: Task, dataset: pd.DataFrame) -> dict[str, tuple[bool, str]]:
    """name -> (from `bootstrap_ci`, the `bootstrap_ci` metric or the scores column it is read from)."""
    kind = task.kind
    if dataset.empty:
        return {kind.headline_metric: (True, kind.headline_metric)}
    gold = dataset.head(1)
    # A one-row "run" answered with the gold: the kind's own scorers say what they compute, so a
    # new kind (or a new score column) needs no list kept here.
    probe = pd.DataFrame({"variant": ["probe"], "example_id": gold["example_id"].to_list(), "repeat": [0],
                          "prediction": gold[kind.target_column].to_list()})
    statistics = example_statistics(probe, gold, task)["probe"]
    sources: dict[str, tuple[bool, str]] = {}
    for metric in INTERVAL_METRICS:
        # The statistics define a metric when it scores the perfect probe as a number: a missing
        # column (micro_f1 for classification) raises KeyError, no per-label columns (macro_f1
        # for NER) give NaN.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value = metric_from_totals(statistics.to_numpy(dtype=float).sum(axis=0), list(statistics.columns),
                                           metric)
        except KeyError:
            continue
        if np.isfinite(value).all():
            sources[metric] = (True, metric)
    if kind.summary_column != kind.headline_metric and kind.headline_metric in sources:
        sources[kind.summary_column] = (True, kind.headline_metric)
    columns = [column for column in kind.score(probe, gold, task).columns
               if column not in ("variant", "n") and column not in LOWER_IS_BETTER]
    for column in columns:
        sources.setdefault(column, (False, column))
    for column in columns:
        # Classification's scores say f1_micro where the report and the other kinds say micro_f1.
        if column.startswith("f1_"):
            sources.setdefault(f"{column[3:]}_f1", (False, column))
    return sources


def check_thresholds(
    thresholds: Sequence[Threshold], task: Task, dataset: pd.DataFrame, variants: Sequence[str]
) -> None:
    """Refuse, before any model call, a threshold whose metric the task's scores lack or whose
    variant the run will not have. Raises ValueError naming the metrics or variants there are."""
    metrics = gate_metrics(task, dataset)
    for threshold in thresholds:
        if threshold.metric not in metrics:
            raise InputError(
                f"--fail-under {threshold.spec}: a {task.kind.name} task has no metric {threshold.metric!r}; "
                f"its scores are {', '.join(metrics)}"
            )
        if threshold.variant is not None and threshold.variant not in variants:
            raise InputError(
                f"--fail-under {threshold.spec}: this run has no variant {threshold.variant!r}; its variants are "
                f"{', '.join(variants)} (or leave the variant out to gate the best one)"
            )


def gate_scores(
    predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, metrics: Sequence[str]
) -> pd.DataFrame:
    """The run's score of each of `metrics` per variant, with its interval where it has one.

    `predictions` has the columns of `workbench.prompting.runner.run_variants`, `dataset` the gold
    rows; each of `metrics` must be one `gate_metrics` names (KeyError otherwise). Columns:
    ``variant`` (run order), ``metric``, ``value`` (higher is better), ``low`` and ``high`` (the 95%
    interval; NaN where the metric has none), ``confidence`` (NaN likewise).
    """
    sources = _metric_sources(task, dataset)
    frames = []
    for name in dict.fromkeys(metrics):
        interval, source = sources[name]
        if interval:
            ci = bootstrap_ci(predictions, dataset, task, source)
            frames.append(ci.assign(metric=name)[["variant", "metric", "value", "low", "high", "confidence"]])
    plain = {name: sources[name][1] for name in dict.fromkeys(metrics) if not sources[name][0]}
    if plain:
        scores = task.kind.score(predictions, dataset, task)
        for name, column in plain.items():
            frames.append(pd.DataFrame({"variant": scores["variant"], "metric": name, "value": scores[column],
                                        "low": np.nan, "high": np.nan, "confidence": np.nan}))
    if not frames:
        return pd.DataFrame(columns=["variant", "metric", "value", "low", "high", "confidence"])
    return pd.concat(frames, ignore_index=True).astype({"value": float, "low": float, "high": float})


def apply_thresholds(thresholds: Sequence[Threshold], scores: pd.DataFrame) -> pd.DataFrame:
    """Each threshold checked against `scores` (`gate_scores`), one row per threshold.

    Columns: ``threshold`` (as written), ``variant`` (the one checked), ``best`` (True when the
    threshold named no variant and the best by its metric was taken: the first in run order on a
    tie), ``metric``, ``value``, ``low``, ``high``, ``confidence`` (NaN where there is no interval),
    ``minimum``, ``passed`` (value >= minimum; a NaN value fails).
    """
    rows = []
    for threshold in thresholds:
        candidates = scores[scores["metric"] == threshold.metric]
        if threshold.variant is not None:
            candidates = candidates[candidates["variant"] == threshold.variant]
            best = False
        else:
            best = True
            if candidates["value"].notna().any():
                candidates = candidates.loc[[candidates["value"].idxmax()]]
        if candidates.empty:
            raise InputError(f"--fail-under {threshold.spec}: the run's scores have no {threshold.metric!r}"
                             f"{' for ' + threshold.variant if threshold.variant else ''}")
        row = candidates.iloc[0]
        value = float(row["value"])
        rows.append({
            "threshold": threshold.spec, "variant": row["variant"], "best": best, "metric": threshold.metric,
            "value": value, "low": float(row["low"]), "high": float(row["high"]),
            "confidence": float(row["confidence"]), "minimum": threshold.minimum,
            "passed": bool(not math.isnan(value) and value >= threshold.minimum),
        })
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def describe_check(check: pd.Series) -> str:
    """One line of figures for a row of `apply_thresholds`: variant, metric, score, interval, threshold."""
    who = f"best variant {check['variant']}" if check["best"] else f"variant {check['variant']}"
    value, minimum = check["value"], check["minimum"]
    digits = 3
    while digits < 8 and not math.isnan(value) and value != minimum and f"{value:.{digits}f}" == f"{minimum:.{digits}f}":
        digits += 1  # never print "0.800 < 0.800"
    interval = ""
    if not math.isnan(check["low"]):
        interval = f" ({check['confidence']:.0%} CI {check['low']:.{digits}f} to {check['high']:.{digits}f})"
    relation = ">=" if check["passed"] else "<"
    return (f"{who}: {check['metric']} {value:.{digits}f}{interval} {relation} {minimum:.{digits}f} "
            f"(--fail-under {check['threshold']})")
