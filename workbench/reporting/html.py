"""HTML rendering of a report: pure functions from `ReportSections` to one self-contained page.

The markup and CSS live in ``workbench/reporting/templates/`` and are rendered by Jinja2 with
autoescaping on, so every piece of dataset or model text (texts, labels, variant names, raw
responses, errors, the task's own words) is escaped where the template writes it, entity text
inside a highlight included. Only plotly's output goes in as `Markup`: its chart divs, whose figure
JSON plotly writes with ``<`` escaped, and its JavaScript, embedded once in the page head so the
file needs no network. The error card template is shared with the notebook error browser
(`workbench.reporting.browser`); how an answer looks comes from the task's kind (`TaskKind.view`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from workbench.core.answers import UNPARSED
from workbench.core.kinds.base import AnswerView, Highlight, TaskKind
from workbench.core.spans import highlight as highlight_parts

if TYPE_CHECKING:  # sections.py imports this module at run time
    from workbench.reporting.sections import ReportSections

TEMPLATE_DIR = Path(__file__).parent / "templates"

METRIC_NAMES = {
    "accuracy": "accuracy",
    "micro_f1": "micro-averaged F1",
    "macro_f1": "macro F1",
}
INTERVAL_NAMES = {"wilson": "Wilson score interval", "bca_bootstrap": "BCa bootstrap over examples"}
# Headings of the kinds' secondary scores (`TaskKind.report_scores`); others show their column name.
SCORE_NAMES = {
    "macro_f1": "macro F1", "strict_f1": "strict F1", "boundary_f1": "boundary F1", "type_f1": "type F1",
    "samples_f1": "samples F1", "exact_match": "exact match", "hamming_loss": "Hamming loss (lower is better)",
}
# Summary columns after the scores: (heading, column, format), format as in `_cell`.
EFFICIENCY_COLUMNS = (
    ("parse failures", "parse_failure_rate", "percent"), ("request errors", "request_error_rate", "percent"),
    ("latency p50 (s)", "latency_p50_s", ".3g"), ("latency p95 (s)", "latency_p95_s", ".3g"),
    ("tokens in", "tokens_in_mean", ".0f"), ("tokens out", "tokens_out_mean", ".0f"),
    ("cost / 1,000", "cost_per_1000", ".4g"),
)
CONSISTENCY_COLUMNS = (("repeats agree", "all_agree_share", "percent"), ("Fleiss κ", "fleiss_kappa", ".3f"))

CHART_CAPTIONS = {
    "dataset": "The evaluated examples: how the labels are spread, and how long the texts are.",
    "comparison": "The headline metric per variant. Error bars are 95% intervals over examples (Wilson's for "
                  "accuracy with one answer per example, else a BCa bootstrap): "
                  "where two intervals overlap a lot, the data cannot tell the variants apart.",
    "per_label": "F1 per label (strict match for NER). Dark cells are good; look for a label every variant finds hard.",
    "confusion": "Where the best variant's answers go: gold labels in rows, answers in columns; "
                 f"{UNPARSED} counts answers that could not be read.",
    "consistency": "The same prompt sampled several times: how often the repeats give the same answer.",
    "quality_vs_cost": "Variants on the Pareto front (dotted line, labelled) are the sensible choices: "
                       "no other variant is both better and cheaper, or both better and faster.",
    "error_types": "What kind of mistakes each variant makes, counted over all repeats.",
    "points": "Recurring failure modes (training points): errors grouped by what went wrong, then by what the "
              "texts are about; the colour says what would fix each one.",
    "point_fixes": "For each point, the share of its examples each prompt variant gets right: a full cell means "
                   "that prompt already fixes the point; an empty row needs training data.",
    "point_map": "Each error's text embedded and flattened to two dimensions: errors of one point sit together.",
    "reliability": "Self-consistency variants vote over several sampled answers; the share agreeing is their "
                   "confidence. Where a line runs under the diagonal, the variant is surer than it is right.",
}


@dataclass(frozen=True)
class CardAnswer:
    """One wrong answer on an error card.

    `view` is how the answer is shown (`TaskKind.view` against gold), or None when the answer was
    unusable; `problem` then says why. `hallucinations` are entities named but not in the text,
    already written out as words.
    """

    variant: str
    repeat: int
    error_types: str
    view: AnswerView | None
    problem: str | None = None
    hallucinations: tuple[str, ...] = ()
    raw_response: str | None = None


@dataclass(frozen=True)
class ErrorCard:
    """One example on an error card: its text, its gold target as shown, and the wrong answers.

    `note` follows the example id in the card's heading. When `gold` has highlights they cover the
    whole text and replace the plain excerpt.
    """

    example_id: str
    note: str
    text: str
    gold: AnswerView
    answers: tuple[CardAnswer, ...]


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment of the report templates: HTML autoescaping on, typos are errors."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.globals["UNPARSED"] = UNPARSED
    return env


def render_report(sections: ReportSections, *, generated: str) -> str:
    """The whole report as one HTML document; `generated` is the time shown under the title.

    The header's first line names the run (`ReportSections.origin`: model, run id, config, when it
    ran) as far as it is known; it is left out when nothing is.
    """
    task = sections.task
    cards = report_cards(sections)
    views = [view for card in cards for view in (card.gold, *(answer.view for answer in card.answers)) if view]
    context = {
        "title": sections.title,
        "task": task,
        "origin": sections.origin.facts(),
        "facts": [f"generated {generated}", f"{task.kind} task", f"{len(sections.variants)} variants",
                  f"{sections.examples_evaluated} of {sections.dataset_size} examples evaluated",
                  f"{sections.repeats} repeat{'s' if sections.repeats != 1 else ''} per example"],
        "summary": summary_view(sections),
        "examples_evaluated": sections.examples_evaluated,
        "baseline": sections.baseline,
        "comparisons": sections.comparisons,
        "interval_method": " / ".join(INTERVAL_NAMES.get(method, method) for method in sections.interval_methods)
        or "bootstrap",
        "charts": [{"name": name, "div": render_figure(name, figure), "caption": CHART_CAPTIONS.get(name, "")}
                   for name, figure in sections.figures.items()],
        "cards": cards,
        "wrong_answers": sections.wrong_answers,
        "wrong_examples": sections.wrong_examples,
        "shown_answers": len(sections.worst_errors),
        "marks": any(view.highlights for view in views),  # the legend explains what the page uses
        "chips": any(view.labels for view in views),
        "plotly_js": Markup(get_plotlyjs()),
        "points": point_cards(sections),
        "point_findings": point_findings(sections.points),
    }
    return environment().get_template("report.html.jinja").render(context)


def point_cards(sections: ReportSections, representatives: int = 3) -> list[dict[str, Any]]:
    """One card per training point: its name, description, what fixes it, and representative
    examples with their gold answers shown as the kind shows them."""
    return point_card_data(sections.points, sections.dataset, sections.task.kind, representatives)


def point_findings(points: pd.DataFrame) -> list[str]:
    """The lines shown at the top of the training-points section, one per default answer found
    (rows of `points` whose ``family`` is "default answer"): its ``family_note`` and point id, e.g.
    "zero_shot gave 'X' to 76 of 77 of its errors (99%): one default-answer point, P1". Points
    tables written before the ``family`` column existed give none."""
    if points.empty or "family" not in points.columns:
        return []
    found = points[points["family"] == "default answer"]
    return [f"{note}: one default-answer point, {point_id}"
            for note, point_id in zip(found["family_note"], found["point_id"])]


def point_card_data(points: pd.DataFrame, dataset: pd.DataFrame, kind: TaskKind,
                    representatives: int = 3) -> list[dict[str, Any]]:
    """The values the ``point_card`` macro shows, one dict per row of `points` (the points table:
    ``point_id``, ``name``, ``description``, ``size``, ``share_of_errors``, ``action``,
    ``fixed_by``, ``representatives``); `dataset` gives the examples' ``text`` and gold target.
    ``examples`` holds at most `representatives` of them: the card says "showing k of size"
    when that is fewer than the point's ``size``."""
    if points.empty:
        return []
    truth = dataset.set_index("example_id")
    cards = []
    for point in points.to_dict("records"):
        examples = []
        for example_id in list(point["representatives"])[:representatives]:
            if example_id not in truth.index:
                continue
            text = truth.at[example_id, "text"]
            examples.append({"example_id": example_id, "text": text,
                             "gold": kind.view(text, truth.at[example_id, kind.target_column])})
        cards.append({**point, "examples": examples})
    return cards


def render_figure(name: str, figure: go.Figure) -> Markup:
    """One chart as plotly's div (no JavaScript bundle), trusted as markup: plotly writes it."""
    height = figure.layout.height or 420
    return Markup(figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"chart-{name}", default_width="100%",
        default_height=f"{height}px", config={"displaylogo": False, "responsive": True},
    ))


def render_card(card: ErrorCard, *, with_style: bool = False) -> Markup:
    """One error card as HTML; `with_style` puts the card's CSS in front (for a notebook)."""
    return card_macro("card")(card, with_style)


def card_macro(name: str) -> Callable[..., Markup]:
    """A macro of the error card template (``card``, ``highlights``, ``titled_highlights``...)."""
    return getattr(environment().get_template("error_card.html.jinja").module, name)


def highlight(text: str, spans: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]] | None = None) -> Markup:
    """`text` as escaped HTML with `spans` wrapped in ``<mark>``; the entity text is escaped too.

    Without `gold`, `spans` are the gold entities (class ``gold``). With it, `spans` are
    predictions: ``pred-ok`` where a gold span matches exactly (start, end and label), else
    ``pred-bad``. Spans that overlap an earlier one or fall outside the text are skipped
    (`workbench.core.spans.highlight`).
    """
    return card_macro("highlights")(highlight_view(text, spans, gold))


def highlight_view(
    text: str, spans: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]] | None = None
) -> tuple[Highlight, ...]:
    """`text` cut into `Highlight` parts (`workbench.core.spans.highlight`), for the templates."""
    return tuple(Highlight(*part) for part in highlight_parts(text, spans, gold))


def summary_view(sections: ReportSections) -> dict[str, Any]:
    """The summary table as text: ``headings``, ``rows`` (``variant``, ``baseline``, ``best``,
    ``cells``) and ``metric_name``; columns are those of `ReportSections.summary`."""
    table = sections.summary
    columns = [(SCORE_NAMES.get(column, column.replace("_", " ")), column, ".3f") for column in sections.score_columns]
    columns += EFFICIENCY_COLUMNS
    if "all_agree_share" in table.columns:
        columns += CONSISTENCY_COLUMNS
    rows = [{
        "variant": row["variant"],
        "baseline": row["variant"] == sections.baseline,
        "best": row["variant"] == sections.best_variant and len(sections.variants) > 1,
        "cells": [f"{_cell(row['value'])} [{_cell(row['low'])}, {_cell(row['high'])}]",
                  *(_cell(row[column], spec) for _, column, spec in columns)],
    } for _, row in table.iterrows()]
    return {
        "headings": ["variant", f"{sections.metric} [95% CI]", *(heading for heading, _, _ in columns)],
        "rows": rows,
        "metric_name": sections.task.kind.headline_name if sections.metric == sections.task.kind.headline_metric
        else METRIC_NAMES.get(sections.metric, sections.metric),
    }


def report_cards(sections: ReportSections) -> list[ErrorCard]:
    """One card per example of `ReportSections.worst_errors`, with every wrong answer to it."""
    kind = sections.task.kind
    cards = []
    for _, group in sections.worst_errors.groupby("example_id", sort=False):
        first = group.iloc[0]
        text, gold = str(first["text"]), first["gold"]
        answers = tuple(
            card_answer(kind, text, gold, variant=row["variant"], repeat=row["repeat"], error_types=row["error_types"],
                        predicted=row["predicted"], parse_error=row["parse_error"],
                        hallucinations=row["hallucinations"], raw_response=row["raw_response"])
            for _, row in group.iterrows()
        )
        note = f"wrong in {int(first['variants_wrong'])} of {int(first['variants_total'])} variants"
        cards.append(ErrorCard(str(first["example_id"]), note, text, kind.view(text, gold), answers))
    return cards


def card_answer(kind: TaskKind, text: str, gold: Any, *, variant: object, repeat: object, error_types: object,
                predicted: Any, parse_error: object = None, hallucinations: Sequence[Any] | None = None,
                raw_response: object = None) -> CardAnswer:
    """A wrong answer for a card: `predicted` (None when unusable) shown against `gold`."""
    return CardAnswer(
        variant=str(variant), repeat=int(repeat), error_types=str(error_types),
        view=None if predicted is None else kind.view(text, predicted, gold),
        problem=str(parse_error) if isinstance(parse_error, str) and parse_error else "no answer",
        hallucinations=tuple(_entity_words(entity) for entity in hallucinations or ()),
        raw_response=raw_response if isinstance(raw_response, str) else None,
    )


def _entity_words(entity: object) -> str:
    if isinstance(entity, dict):
        return f"{entity.get('text', '')} ({entity.get('label', '')})"
    return str(entity)


def _cell(value: object, spec: str = ".3f") -> str:
    """A summary number as text: ``percent`` or a format spec; a dash where there is none."""
    if value is None or pd.isna(value):
        return "—"
    return f"{float(value):.1%}" if spec == "percent" else format(float(value), spec)
