"""A run's analysis report: assemble the numbers and charts, then write one self-contained HTML file.

`report_sections` gathers everything a report shows (pure: a function of its inputs);
`workbench.report_html.render_report` turns that into HTML; `write_report` is the only function
here that touches disk. The file embeds plotly's JavaScript once and needs no network to open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from workbench.evaluation.consistency import example_consistency, score_consistency
from workbench.evaluation.errors import find_errors
from workbench.core.kinds.classification_scoring import confusion, per_label_scores, score_classification
from workbench.evaluation.efficiency import summarize_run
from workbench.core.kinds.ner_scoring import score_ner
from workbench.reporting.plots import (
    plot_confusion,
    plot_consistency,
    plot_dataset_overview,
    plot_error_types,
    plot_per_label_f1,
    plot_quality_vs_cost,
    plot_variant_comparison,
)
from workbench.reporting.html import render_report
from workbench.evaluation.significance import Comparison, bootstrap_ci, compare_all, default_metric
from workbench.core.task import Task

@dataclass(frozen=True)
class ReportSections:
    """Everything a report shows, before it becomes HTML.

    ``summary`` has one row per variant (run order) with ``variant``, ``n``, ``value``, ``low``,
    ``high`` (the headline `metric` and its confidence interval), then ``macro_f1``
    (classification) or ``strict_f1``, ``boundary_f1``, ``type_f1`` (NER), then the columns of
    `workbench.metrics.score_efficiency` from ``parse_failure_rate`` on, and, when variants were
    repeated, ``all_agree_share`` and ``fleiss_kappa``. ``figures`` maps a section name to its
    chart, in display order. ``worst_errors`` is the table of `worst_errors`.
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


def report_sections(
    task: Task,
    dataset: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    title: str | None = None,
    baseline: str | None = None,
    max_errors: int = 30,
) -> ReportSections:
    """Compute every table and chart of a report from a run's predictions and its gold dataset.

    `predictions` has the columns of `workbench.runner.run_variants`; `dataset` those of
    `workbench.datasets.load_dataset`. `baseline` is the variant every other one is compared with
    (default: the first in run order).
    """
    if predictions.empty:
        raise ValueError("predictions are empty: run at least one variant before writing a report")
    variants = tuple(dict.fromkeys(predictions["variant"]))
    baseline = baseline or variants[0]
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant of this run; variants are {list(variants)}")
    metric = default_metric(task)
    evaluated = dataset[dataset["example_id"].isin(set(predictions["example_id"]))]
    ci = bootstrap_ci(predictions, dataset, task, metric)
    summary = summary_table(predictions, dataset, task, ci)
    best = str(summary.loc[summary["value"].idxmax(), "variant"]) if summary["value"].notna().any() else variants[0]
    errors = find_errors(predictions, dataset, task)
    comparisons = tuple(compare_all(predictions, dataset, task, baseline)) if len(variants) > 1 else ()

    figures: dict[str, go.Figure] = {
        "dataset": plot_dataset_overview(evaluated, task),
        "comparison": plot_variant_comparison(ci),
        "per_label": plot_per_label_f1(_per_label(predictions, dataset, task)),
    }
    if task.kind == "classification":
        figures["confusion"] = plot_confusion(confusion(predictions, dataset, task, best), best)
    figures["consistency"] = plot_consistency(example_consistency(predictions), variants)
    quality = "accuracy" if task.kind == "classification" else "f1"
    figures["quality_vs_cost"] = plot_quality_vs_cost(summarize_run(predictions, dataset, task), quality)
    figures["error_types"] = plot_error_types(errors, variants)

    return ReportSections(
        title=title or f"{task.name}: prompt variants compared",
        task=task, metric=metric, variants=variants, baseline=baseline, best_variant=best,
        dataset_size=len(dataset), examples_evaluated=len(evaluated),
        repeats=int(predictions.groupby(["variant", "example_id"]).size().max()),
        summary=summary, comparisons=comparisons, figures=figures,
        worst_errors=worst_errors(errors, predictions, dataset, task, max_errors),
    )


def summary_table(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, ci: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: headline metric with CI, secondary F1s, efficiency and consistency.

    Columns are those of `ReportSections.summary`; `ci` is the output of `bootstrap_ci`.
    """
    efficiency = summarize_run(predictions, dataset, task).drop(columns=["accuracy", "f1"], errors="ignore")
    table = ci[["variant", "value", "low", "high"]].merge(efficiency, on="variant")
    if task.kind == "classification":
        scores = score_classification(predictions, dataset, task)[["variant", "f1_macro"]]
        table = table.merge(scores.rename(columns={"f1_macro": "macro_f1"}), on="variant")
    else:
        overall = score_ner(predictions, dataset, task.label_names)
        overall = overall[overall["label"] == "ALL"].pivot(index="variant", columns="mode", values="f1")
        overall = overall.rename(columns=lambda mode: f"{mode}_f1")[["strict_f1", "boundary_f1", "type_f1"]]
        table = table.merge(overall.reset_index(), on="variant")
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


def worst_errors(
    errors: pd.DataFrame, predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, max_errors: int = 30
) -> pd.DataFrame:
    """The prediction rows with errors that matter most, at most `max_errors` of them.

    Examples that most variants get wrong come first (then those with more error rows); within an
    example, variants in run order, then repeats. One row per wrong prediction row, with columns
    ``example_id``, ``variant``, ``repeat``, ``variants_wrong``, ``variants_total``,
    ``error_types`` (comma-separated), ``text``, ``gold`` (label, or list of span dicts for NER),
    ``predicted`` (label or spans; None when unusable), ``hallucinations`` (list), ``raw_response``
    and ``parse_error`` (the parse or request error, or None).
    """
    columns = ["example_id", "variant", "repeat", "variants_wrong", "variants_total", "error_types", "text",
               "gold", "predicted", "hallucinations", "raw_response", "parse_error"]
    if errors.empty or max_errors <= 0:
        return pd.DataFrame(columns=columns)
    variants = list(dict.fromkeys(predictions["variant"]))
    per_example = errors.groupby("example_id", sort=False).agg(
        variants_wrong=("variant", "nunique"), error_rows=("variant", "size"))
    rows = errors.groupby(["example_id", "variant", "repeat"], sort=False)["error_type"].agg(
        lambda kinds: ", ".join(dict.fromkeys(kinds))).rename("error_types").reset_index()
    rows = rows.join(per_example, on="example_id")
    rows["_variant"] = rows["variant"].map({variant: index for index, variant in enumerate(variants)})
    first_seen = {example_id: index for index, example_id in enumerate(dict.fromkeys(predictions["example_id"]))}
    rows["_example"] = rows["example_id"].map(first_seen)
    rows = rows.sort_values(["variants_wrong", "error_rows", "_example", "_variant", "repeat"],
                            ascending=[False, False, True, True, True], kind="stable")
    rows = rows.head(max_errors).reset_index(drop=True)  # positional from here on: columns below are aligned by index

    keyed = predictions.set_index(["variant", "example_id", "repeat"])
    index = pd.MultiIndex.from_frame(rows[["variant", "example_id", "repeat"]])
    truth = dataset.set_index("example_id")
    gold_column = "label" if task.kind == "classification" else "spans"
    picked = keyed.reindex(index)
    parse_error = picked["parse_error"].where(picked["parse_error"].notna(), picked["request_error"])
    result = rows.assign(
        variants_total=len(variants),
        text=rows["example_id"].map(truth["text"]).to_numpy(),
        gold=rows["example_id"].map(truth[gold_column]).to_numpy(),
        predicted=_objects(value if _present(value) else None for value in picked["prediction"]),
        hallucinations=_objects(value if isinstance(value, list) else [] for value in picked["hallucinations"]),
        raw_response=_objects(value if _present(value) else None for value in picked["raw_response"]),
        parse_error=_objects(value if _present(value) else None for value in parse_error),
    )
    return result[columns].reset_index(drop=True)


def write_report(
    path: str | Path,
    task: Task,
    dataset: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    title: str | None = None,
    baseline: str | None = None,
    max_errors: int = 30,
) -> Path:
    """Write the run's report to `path` as one HTML file that opens offline; returns the path.

    See `report_sections` for the inputs. Parent folders are created.
    """
    sections = report_sections(task, dataset, predictions, title=title, baseline=baseline, max_errors=max_errors)
    document = render_report(sections, generated=datetime.now().strftime("%Y-%m-%d %H:%M"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def _per_label(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task) -> pd.DataFrame:
    if task.kind == "classification":
        return per_label_scores(predictions, dataset, task)
    return score_ner(predictions, dataset, task.label_names, modes=("strict",))


def _objects(values: Iterable[object]) -> pd.Series:
    """Values kept as they are: object dtype, so None stays None (a str dtype would make it NaN)."""
    return pd.Series(list(values), dtype=object)


def _present(value: object) -> bool:
    """False for None and NaN (how pandas fills a missing cell), True for anything else."""
    if isinstance(value, (list, dict)):
        return True
    return not pd.isna(value)
