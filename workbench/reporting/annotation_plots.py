"""Charts of annotators' answers pulled from Argilla: which suggestions they accepted and which
they corrected. Each function returns a plotly ``go.Figure`` and never shows it."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.reporting.plots import _empty_figure, _escaped, _style

ACCEPTED, CORRECTED = "#009E73", "#D55E00"


def plot_corrections(corrections: pd.DataFrame) -> go.Figure:
    """Submitted answers per suggestion, split into accepted unchanged and corrected, as stacked
    bars. Reads `pull_corrections`' frame (``status``, ``suggested``, ``suggestion_agent``,
    ``accepted_suggestion``). Bars are per suggested label where a suggestion is one label
    (classification), else per variant that made the suggestions (NER, multi-label). A frame with
    no submitted answer gives a figure that says so."""
    title = "Suggestions accepted and corrected"
    submitted = corrections[corrections["status"] == "submitted"] if not corrections.empty else corrections
    if submitted.empty:
        return _empty_figure(title, "No submitted answers yet: annotate in Argilla, then pull again.")
    by_label = submitted["suggested"].map(lambda value: isinstance(value, str) or value is None).all()
    key = (submitted["suggested"].fillna("(no suggestion)") if by_label
           else submitted["suggestion_agent"].fillna("(no suggestion)"))
    counts = (pd.DataFrame({"key": key.astype(str), "accepted": submitted["accepted_suggestion"].astype(bool)})
              .groupby("key")["accepted"].agg(accepted="sum", answers="size"))
    counts["corrected"] = counts["answers"] - counts["accepted"]
    counts = counts.sort_values(["answers", "corrected"], ascending=False)
    labels = _escaped(counts.index)
    fig = go.Figure()
    for column, colour, words in (("accepted", ACCEPTED, "accepted unchanged"), ("corrected", CORRECTED, "corrected")):
        fig.add_trace(go.Bar(
            x=labels, y=counts[column], name=words, marker_color=colour, customdata=counts["answers"],
            hovertemplate=f"%{{x}}: %{{y}} of %{{customdata}} {words}<extra></extra>",
        ))
    fig.update_layout(barmode="stack", legend_title_text="annotators")
    fig.update_xaxes(title_text="the model's suggestion" if by_label else "variant that made the suggestions",
                     categoryorder="array", categoryarray=labels)
    fig.update_yaxes(title_text="submitted answers")
    rate = counts["accepted"].sum() / counts["answers"].sum()
    return _style(fig, f"{title}: {rate:.0%} of {int(counts['answers'].sum())} answers kept the suggestion")
