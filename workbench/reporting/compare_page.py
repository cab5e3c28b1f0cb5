"""The comparison page's markup: the tables of `workbench.reporting.compare_report` as one HTML page.

Pure: `render_comparison` turns the arms table, the paired comparisons and the answer matrix into
one self-contained document (``templates/compare.html.jinja``, autoescaped: every run id, model
name, variant, text and answer is escaped where the template writes it; only plotly's chart divs
and its JavaScript, embedded once, arrive as `Markup`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from workbench.core.task import Task
from workbench.evaluation.significance import Comparison
from workbench.reporting.html import EFFICIENCY_COLUMNS, INTERVAL_NAMES, _cell, environment, render_figure
from workbench.reporting.plots import plot_quality_vs_cost, plot_variant_comparison

SMALL_SAMPLE = 50  # fewer shared examples than this: a verdict is a hint, and the page says so
MAX_MATRIX_ROWS = 500

CAPTIONS = {
    "arms": "The headline metric per arm on the examples every arm answered. Error bars are 95% intervals over "
            "examples (Wilson's for accuracy with one answer per example, else a BCa bootstrap): where two "
            "intervals overlap a lot, the data cannot tell the arms apart; the paired tests below are sharper.",
    "quality_vs_cost": "Arms on the Pareto front (dotted line, labelled) are the sensible choices: no other arm is "
                       "both better and cheaper, or both better and faster.",
}


def render_comparison(task: Task, *, runs: Sequence[Mapping[str, Any]], arms: pd.DataFrame,
                      comparisons: Sequence[Comparison], matrix: pd.DataFrame, shared: int, answered: int,
                      generated: str, title: str | None = None, max_rows: int = MAX_MATRIX_ROWS) -> str:
    """The comparison as one HTML document.

    `runs` holds one mapping per run (``run_id``, ``name``, ``model``, ``ran_at``, ``examples``,
    ``arms``); `arms`, `comparisons` and `matrix` are `comparison_arms`, the comparisons behind
    `paired_comparisons` (against one baseline, Holm-adjusted) and `answer_matrix`; `shared` is
    the number of examples every arm answered, `answered` those at least one did; `generated` is
    the time shown under the title. The matrix shows differing examples first, at most `max_rows`.
    """
    labels = list(arms["arm"])
    metric_name = task.kind.headline_name
    baseline = comparisons[0].variant_b if comparisons else labels[0]
    context = {
        "title": title or f"{task.name}: {len(runs)} run{'s' if len(runs) != 1 else ''} compared",
        "task": task,
        "facts": [f"generated {generated}", f"{task.kind} task", f"{len(labels)} arms",
                  f"{shared} shared examples" + (f" ({answered - shared} dropped: not answered by every arm)"
                                                 if answered > shared else "")],
        "runs": runs,
        "metric_name": metric_name,
        "arms": [{"arm": row["arm"], "run_id": row["run_id"], "model": row["model"], "variant": row["variant"],
                  "baseline": row["arm"] == baseline,
                  "score": f"{_cell(row['value'])} [{_cell(row['low'])}, {_cell(row['high'])}]",
                  "rows": int(row["rows"]), "dropped": int(row["dropped"])} for row in arms.to_dict("records")],
        "interval_method": " / ".join(INTERVAL_NAMES.get(m, m) for m in dict.fromkeys(arms["interval"])),
        "charts": [{"name": name, "div": render_figure(name, figure), "caption": CAPTIONS[name]}
                   for name, figure in _figures(arms, task).items()],
        "baseline": baseline,
        "comparisons": [_comparison_row(c, len(comparisons)) for c in comparisons],
        "small": shared < SMALL_SAMPLE,
        "shared": shared,
        "efficiency": {"headings": [heading for heading, _, _ in EFFICIENCY_COLUMNS],
                       "rows": [{"arm": row["arm"], "cells": [_cell(row[column], spec)
                                                             for _, column, spec in EFFICIENCY_COLUMNS]}
                                for row in arms.to_dict("records")]},
        "matrix": _matrix_view(matrix, labels, max_rows),
        "plotly_js": Markup(get_plotlyjs()),
    }
    return environment().get_template("compare.html.jinja").render(context)


def comparison_sentence(comparison: Comparison, count: int) -> str:
    """The verdict of one paired test in plain words, worded as the single-run report words it;
    `count` is how many comparisons were adjusted together. Fewer than `SMALL_SAMPLE` shared
    examples adds a small-sample warning."""
    c = comparison
    if c.significant and c.difference != 0:
        sentence = (f"{c.variant_a} is significantly {'better' if c.difference > 0 else 'worse'} than "
                    f"{c.variant_b} on {c.metric} ({c.difference:+.3f}).")
    else:
        adjusted = (f" after adjusting for the {count} comparisons (unadjusted p = {c.p_value:.3g})"
                    if c.p_adjusted is not None and c.p_value < c.alpha else "")
        sentence = (f"{c.variant_a} vs {c.variant_b}: the difference in {c.metric} ({c.difference:+.3f}) is not "
                    f"significant{adjusted}; this data cannot tell them apart.")
        if c.power_note():
            sentence += f" In plain words: {c.power_note()}."
    if c.examples < SMALL_SAMPLE:
        sentence += f" Small sample: only {c.examples} shared examples, so read this as a hint, not a measurement."
    return sentence


def _figures(arms: pd.DataFrame, task: Task) -> dict[str, Any]:
    # The plots read ``variant``: an arm stands in for a variant (the arms table's own column goes).
    arms = arms.drop(columns=["variant"]).rename(columns={"arm": "variant"})
    ci = arms.assign(confidence=0.95)
    bars = plot_variant_comparison(ci)
    bars.update_xaxes(title_text="arm")
    bars.update_layout(title_text=f"{arms['metric'].iloc[0]} per arm, with 95% confidence intervals")
    quality = task.kind.summary_column
    summary = arms.rename(columns={"value": quality})
    return {"arms": bars, "quality_vs_cost": plot_quality_vs_cost(summary, quality)}


def _comparison_row(c: Comparison, count: int) -> dict[str, Any]:
    return {
        "arm": c.variant_a, "significant": c.significant and c.difference != 0, "small": c.examples < SMALL_SAMPLE,
        "better": c.difference > 0, "sentence": comparison_sentence(c, count), "detail": c.statement(),
        "cells": [_cell(c.a), _cell(c.b), f"{_cell(c.difference, '+.3f')} [{_cell(c.low, '+.3f')}, "
                  f"{_cell(c.high, '+.3f')}]", _cell(c.p_value, ".3g"), _cell(c.p_adjusted, ".3g"), c.method,
                  str(c.examples)],
    }


def _matrix_view(matrix: pd.DataFrame, labels: list[str], max_rows: int) -> dict[str, Any]:
    """The matrix rows to show: differing examples first (then dataset order), at most `max_rows`."""
    ordered = matrix.sort_values("differs", ascending=False, kind="stable").head(max_rows)
    rows = [{
        "example_id": row["example_id"], "text": row["text"], "gold": row["gold"], "differs": bool(row["differs"]),
        "cells": [{"answer": row[f"answer: {arm}"], "right": bool(row[f"right: {arm}"])} for arm in labels],
    } for row in ordered.to_dict("records")]
    return {"labels": labels, "rows": rows, "total": len(matrix), "differing": int(matrix["differs"].sum()),
            "differing_shown": sum(row["differs"] for row in rows)}
