"""The loop's report: rounds side by side, as one self-contained HTML page.

It takes the frames of `workbench.experiments.round_comparison.RoundComparison` (this layer does
not import the experiments stage) and shows the score per round, each round's before/after, the
status of each round's points (fixed, improved, already right, unchanged, worse, no test cases),
the new points and the regressions; and, for rounds that trained reference arms
(``--arms targeted,random,all``), each arm on the round's test cases with its paired comparisons
and one sentence per round saying which arm scored best and whether the test could tell.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from workbench.reporting.html import METRIC_NAMES, _cell, environment, render_figure

# One colour per point status (`round_comparison.STATUSES`): green only for a point the tuned model
# fixed, none for "already right" (nothing was wrong), red for a point it made worse.
STATUS_COLOURS = {"fixed": "#2e7d32", "improved": "#9ccc65", "already right": "#90a4ae", "unchanged": "#f9a825",
                  "worse": "#c62828", "no test cases": "#d7ccc8"}


def plot_rounds(summary: pd.DataFrame, metric: str) -> go.Figure:
    """The training variant's score per round (``round``, ``score``, ``score_untouched`` of the
    comparison's summary): over all of the run's examples, and over those no round trained on."""
    figure = go.Figure()
    labels = [f"round {r}" for r in summary["round"]]
    figure.add_bar(x=labels, y=summary["score"], name="all examples")
    figure.add_bar(x=labels, y=summary["score_untouched"], name="never trained on")
    figure.update_layout(barmode="group", height=360, yaxis={"title": METRIC_NAMES.get(metric, metric),
                                                             "range": [0, 1]}, margin={"t": 30})
    return figure


def plot_point_status(points: pd.DataFrame) -> go.Figure:
    """How many of each round's training points (``round``, ``status``) have each status of
    `STATUS_COLOURS`, stacked per round."""
    figure = go.Figure()
    counts = points.groupby(["round", "status"]).size().unstack(fill_value=0) if not points.empty else pd.DataFrame()
    for status, colour in STATUS_COLOURS.items():
        if status in counts:
            figure.add_bar(x=[f"round {r}" for r in counts.index], y=counts[status], name=status,
                           marker_color=colour)
    figure.update_layout(barmode="stack", height=360, yaxis={"title": "training points"}, margin={"t": 30})
    return figure


def write_rounds_report(path: str | Path, *, title: str, summary: pd.DataFrame, points: pd.DataFrame,
                        new_points: pd.DataFrame, regressions: pd.DataFrame, metric: str,
                        arms: pd.DataFrame | None = None, arm_verdicts: dict[int, str] | None = None) -> Path:
    """Write the loop's report to `path` from the comparison's frames (see
    `workbench.experiments.round_comparison`: `summary`, `points`, `new_points`, `regressions`).

    `arms` (optional): the rounds' reference-arm tables (`workbench.experiments.arms.loop_arms`:
    ``round``, ``arm``, ``set``, ``rows``, ``steps``, ``cases``, ``score``, ``start_score``, the
    ``vs_targeted_*`` and ``vs_start_*`` comparisons (``difference``, ``low``, ``high``,
    ``p_adjusted``, ``verdict``) and ``method``), shown with `arm_verdicts` (round -> one
    sentence) when any round has them."""
    path = Path(path)
    context = {
        "title": title, "generated": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "metric_name": METRIC_NAMES.get(metric, metric), "plotly_js": Markup(get_plotlyjs()),
        "charts": [render_figure("rounds", plot_rounds(summary, metric)),
                   render_figure("point_status", plot_point_status(points))],
        "rounds": [_summary_row(row) for row in summary.to_dict("records")],
        "points": [{**row, "base": _cell(row["base"], ".2f"), "tuned": _cell(row["tuned"], ".2f"),
                    "members_wrong_next": _cell(row["members_wrong_next"], "percent")}
                   for row in points.to_dict("records")],
        "status_colours": STATUS_COLOURS,
        "new_points": new_points.to_dict("records"),
        "regressions": regressions.to_dict("records"),
        "arms": [_arm_row(row) for row in arms.to_dict("records")] if arms is not None else [],
        "arm_verdicts": [{"round": r, "text": text} for r, text in sorted((arm_verdicts or {}).items()) if text],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(environment().get_template("rounds.html.jinja").render(context), encoding="utf-8")
    return path


def _summary_row(row: dict) -> dict:
    shown = dict(row)
    for key in ("score", "score_untouched", "base", "tuned", "regression_base", "regression_tuned"):
        shown[key] = _cell(row[key], ".3f")
    return shown


def _arm_row(row: dict) -> dict:
    shown = dict(row)
    for key in ("score", "start_score"):
        shown[key] = _cell(row.get(key), ".3f")
    for side in ("vs_targeted", "vs_start"):
        difference = row.get(f"{side}_difference")
        if difference is None or pd.isna(difference):
            shown[side] = None  # the targeted arm is not compared with itself
            continue
        shown[side] = {"difference": _cell(difference, "+.3f"), "low": _cell(row.get(f"{side}_low"), "+.3f"),
                       "high": _cell(row.get(f"{side}_high"), "+.3f"),
                       "p_adjusted": _cell(row.get(f"{side}_p_adjusted"), ".3g"),
                       "verdict": row.get(f"{side}_verdict")}
    return shown
