"""A run's analysis report: assemble the numbers and charts, then write one self-contained HTML file.

`report_sections` gathers everything a report shows (pure: a function of its inputs);
`workbench.reporting.html.render_report` turns that into HTML; `write_report` is the only function
here that touches disk. The file embeds plotly's JavaScript once and needs no network to open.
Everything that depends on the kind of task (scores, per-label table, confusion matrix, gold
column) comes from the task's kind, `task.kind`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from workbench.core.errors import InputError
from workbench.core.task import Task
from workbench.evaluation.consistency import example_consistency, reliability_table, score_consistency
from workbench.evaluation.efficiency import summarize_run
from workbench.evaluation.errors import find_errors, worst_errors
from workbench.evaluation.significance import Comparison, bootstrap_ci, compare_all, default_metric
from workbench.reporting.html import render_report
from workbench.reporting.plots import (
    plot_confusion,
    plot_consistency,
    plot_dataset_overview,
    plot_error_types,
    plot_per_label_f1,
    plot_point_fixes,
    plot_point_map,
    plot_points,
    plot_quality_vs_cost,
    plot_reliability,
    plot_variant_comparison,
)
from workbench.reporting.provenance import RunOrigin, run_origin


@dataclass(frozen=True)
class ReportSections:
    """Everything a report shows, before it becomes HTML.

    ``summary`` has one row per variant (run order) with ``variant``, ``n``, ``value``, ``low``,
    ``high`` (the headline `metric` and its confidence interval), then the kind's secondary
    scores (`TaskKind.report_scores`, named in `score_columns`: ``macro_f1`` for classification;
    ``strict_f1``, ``boundary_f1``, ``type_f1`` for NER; ``macro_f1``, ``samples_f1``,
    ``exact_match``, ``hamming_loss`` for multi-label), then the columns of
    `workbench.evaluation.efficiency.score_efficiency` from ``parse_failure_rate`` on, and, when
    variants were repeated, ``all_agree_share`` and ``fleiss_kappa``. ``figures`` maps a section
    name to its chart, in display order (a ``confusion`` chart only for kinds that have one).
    ``worst_errors`` is the table of `workbench.evaluation.errors.worst_errors`, capped;
    ``wrong_answers`` counts every wrong answer (prediction row with an error) and
    ``wrong_examples`` the examples they are to, so the report can say how many it leaves out.
    ``interval_methods`` names the methods of the summary's intervals (``wilson``, ``bca_bootstrap``).
    ``points`` holds the training points when they were given (else empty), ``dataset`` the gold rows.
    ``origin`` names the run's model, run id, config and time, where they were given.
    """

    title: str
    task: Task
    metric: str
    variants: tuple[str, ...]
    baseline: str
    best_variant: str
    dataset_size: int
    examples_evaluated: int
    repeats: int
    summary: pd.DataFrame
    comparisons: tuple[Comparison, ...]
    figures: dict[str, go.Figure] = field(default_factory=dict)
    worst_errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    score_columns: tuple[str, ...] = ()
    interval_methods: tuple[str, ...] = ()
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    dataset: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    wrong_answers: int = 0
    wrong_examples: int = 0
    origin: RunOrigin = field(default_factory=RunOrigin)


def report_sections(
    task: Task,
    dataset: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    title: str | None = None,
    baseline: str | None = None,
    max_errors: int = 30,
    points: pd.DataFrame | None = None,
    point_map: pd.DataFrame | None = None,
    provenance: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
) -> ReportSections:
    """Compute every table and chart of a report from a run's predictions and its gold dataset.

    `predictions` has the columns of `workbench.prompting.runner.run_variants`; `dataset` those of
    `workbench.core.data.load_dataset`. `baseline` is the variant every other one is compared with
    (default: the first in run order). `points` and `point_map` (`ErrorClusterer.points_` and
    ``map_``, or the run folder's ``points.parquet``) add a training-points section.
    `provenance` (`Run.provenance`) and `config` (the experiment config's path) are what the
    header says of the run (`workbench.reporting.provenance.run_origin`); without them it leaves
    the model, run, config and time out.
    """
    if predictions.empty:
        raise InputError("predictions are empty: run at least one variant before writing a report")
    variants = tuple(dict.fromkeys(predictions["variant"]))
    baseline = baseline or variants[0]
    if baseline not in variants:
        raise InputError(f"baseline {baseline!r} is not a variant of this run; variants are {list(variants)}")
    metric = default_metric(task)
    evaluated = dataset[dataset["example_id"].isin(set(predictions["example_id"]))]
    ci = bootstrap_ci(predictions, dataset, task, metric)
    scores = task.kind.report_scores(predictions, dataset, task)
    summary = summary_table(predictions, dataset, task, ci, scores)
    best = str(summary.loc[summary["value"].idxmax(), "variant"]) if summary["value"].notna().any() else variants[0]
    errors = find_errors(predictions, dataset, task)
    comparisons = tuple(compare_all(predictions, dataset, task, baseline)) if len(variants) > 1 else ()

    figures: dict[str, go.Figure] = {
        "dataset": plot_dataset_overview(evaluated, task),
        "comparison": plot_variant_comparison(ci),
        "per_label": plot_per_label_f1(task.kind.per_label_scores(predictions, dataset, task)),
    }
    matrix = task.kind.confusion(predictions, dataset, task, best)
    if matrix is not None:
        figures["confusion"] = plot_confusion(matrix, best)
    figures["consistency"] = plot_consistency(example_consistency(predictions), variants)
    figures["quality_vs_cost"] = plot_quality_vs_cost(summarize_run(predictions, dataset, task),
                                                      task.kind.summary_column)
    figures["error_types"] = plot_error_types(errors, variants, task.kind.error_types)
    if points is not None:
        figures["points"] = plot_points(points)
        figures["point_fixes"] = plot_point_fixes(points)
        if point_map is not None:
            figures["point_map"] = plot_point_map(point_map)
    reliability = reliability_table(predictions, dataset, task)
    if not reliability.empty:  # only self-consistency variants say how sure they are
        figures["reliability"] = plot_reliability(reliability)

    return ReportSections(
        title=title or f"{task.name}: prompt variants compared",
        task=task, metric=metric, variants=variants, baseline=baseline, best_variant=best,
        dataset_size=len(dataset), examples_evaluated=len(evaluated),
        repeats=int(predictions.groupby(["variant", "example_id"]).size().max()),
        summary=summary, comparisons=comparisons, figures=figures,
        worst_errors=worst_errors(errors, predictions, dataset, task, max_errors),
        score_columns=tuple(column for column in scores.columns if column != "variant"),
        interval_methods=tuple(dict.fromkeys(ci["method"])),
        points=points if points is not None else pd.DataFrame(),
        dataset=dataset,
        wrong_answers=len(errors[["example_id", "variant", "repeat"]].drop_duplicates()),
        wrong_examples=int(errors["example_id"].nunique()),
        origin=run_origin(provenance, config=config),
    )


def summary_table(
    predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, ci: pd.DataFrame, scores: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per variant: headline metric with CI, the kind's secondary scores, efficiency and consistency.

    Columns are those of `ReportSections.summary`; `ci` is the output of `bootstrap_ci`, `scores`
    that of `TaskKind.report_scores` (computed here when not given).
    """
    efficiency = summarize_run(predictions, dataset, task).drop(columns=[task.kind.summary_column])
    table = ci[["variant", "value", "low", "high"]].merge(efficiency, on="variant")
    if scores is None:
        scores = task.kind.report_scores(predictions, dataset, task)
    table = table.merge(scores, on="variant")
    if predictions.groupby(["variant", "example_id"]).size().max() > 1:
        try:
            steadiness = score_consistency(predictions)[["variant", "all_agree_share", "fleiss_kappa"]]
        except ValueError:
            # Uneven repeats per example: agreement is not comparable across examples, so leave it out.
            steadiness = None
        if steadiness is not None:
            table = table.merge(steadiness, on="variant", how="left")
    first = ["variant", "n", "value", "low", "high"]
    return table[[*first, *[column for column in table.columns if column not in first]]]


def write_report(
    path: str | Path,
    task: Task,
    dataset: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    title: str | None = None,
    baseline: str | None = None,
    max_errors: int = 30,
    points: pd.DataFrame | None = None,
    point_map: pd.DataFrame | None = None,
    provenance: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
) -> Path:
    """Write the run's report to `path` as one HTML file that opens offline; returns the path.

    See `report_sections` for the inputs. Parent folders are created. Without `provenance`, a
    report written into a run folder (beside its ``provenance.json``, as `write_run` leaves it)
    takes that run's provenance, so it names the run's model, id and time.
    """
    path = Path(path)
    if provenance is None:
        beside = path.parent / "provenance.json"
        if beside.is_file():
            provenance = json.loads(beside.read_text(encoding="utf-8"))
    sections = report_sections(task, dataset, predictions, title=title, baseline=baseline, max_errors=max_errors,
                               points=points, point_map=point_map, provenance=provenance, config=config)
    document = render_report(sections, generated=datetime.now().astimezone().isoformat(timespec="seconds"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
