"""Charts of datasets and runs: each function returns a plotly ``go.Figure`` and never shows it.

All figures share one look (`TEMPLATE`, `FONT`, one colour per variant in run order) and put exact
values in their hover text. Every string that comes from data (variant names, labels) is passed
through `_escape` (`markupsafe.escape`) before it reaches plotly: plotly renders a subset of HTML
in its text, and decodes entities such as ``&lt;`` and ``&#39;``, so an escaped name reads as
written and cannot add markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import escape
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from workbench.core.errors import InputError
from workbench.core.kinds.ner_scoring import OVERALL
from workbench.core.task import Task

TEMPLATE = "plotly_white"
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif", size=13)
# Colour-blind-safe qualitative palette (Okabe-Ito without black), one colour per variant.
VARIANT_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
ERROR_TYPE_ORDER = ("parse_failure", "wrong_label", "boundary", "false_positive", "false_negative", "hallucination")
ERROR_TYPE_COLOURS = {
    "parse_failure": "#7f7f7f", "wrong_label": "#D55E00", "boundary": "#E69F00",
    "false_positive": "#CC79A7", "false_negative": "#0072B2", "hallucination": "#009E73",
}
SEQUENTIAL = "Blues"
# Per-label charts show at most this many labels; the rest are summarised (a 150-label set stays readable).
MAX_LABELS_SHOWN = 30


def plot_dataset_overview(dataset: pd.DataFrame, task: Task, *, max_labels: int = MAX_LABELS_SHOWN) -> go.Figure:
    """Label distribution and text lengths of a dataset, side by side.

    Reads ``text`` and the kind's gold column (`TaskKind.target_column`), counting the labels
    each gold target uses (`TaskKind.target_labels`): examples per label for classification and
    multi-label, entities per type for NER (targets shown as highlighted text). Labels follow
    the task's order; labels found in the data but not in the task are added after them. With
    more than `max_labels` labels, the `max_labels` most frequent are shown, most frequent first,
    and one last bar ("other N labels") adds up the rest (`workbench.core.data.label_counts` has
    every count).
    """
    targets = dataset[task.kind.target_column]
    found = pd.Series([label for target in targets for label in task.kind.target_labels(target)], dtype=object)
    left_title, left_axis = task.kind.counted
    counts = found.value_counts()
    labels = [*task.label_names, *sorted(set(counts.index) - set(task.label_names))]
    values = [int(counts.get(label, 0)) for label in labels]
    shown, rest = _top_labels(labels, values, max_labels)
    if rest:
        left_title = f"{left_title}: the {len(shown)} most frequent of {len(labels)}"
        by_label = dict(zip(labels, values))
        values = [by_label[label] for label in shown] + [sum(by_label[label] for label in rest)]
        labels = [*shown, _other_labels(len(rest))]
    lengths = dataset["text"].str.len()

    fig = make_subplots(rows=1, cols=2, subplot_titles=(left_title, "Text length (characters)"),
                        horizontal_spacing=0.1)
    fig.add_trace(go.Bar(
        x=_escaped(labels), y=values, marker_color=VARIANT_COLOURS[0], name=left_axis, text=values,
        textposition="outside", cliponaxis=False, hovertemplate="%{x}: %{y} " + left_axis + "<extra></extra>",
    ), row=1, col=1)
    fig.add_trace(go.Histogram(
        x=lengths, marker_color=VARIANT_COLOURS[1], name="texts", nbinsx=30,
        hovertemplate="%{x} characters: %{y} texts<extra></extra>",
    ), row=1, col=2)
    fig.update_yaxes(title_text=left_axis, row=1, col=1)
    fig.update_yaxes(title_text="texts", row=1, col=2)
    fig.update_xaxes(title_text="characters", row=1, col=2)
    summary = f"{len(dataset)} examples; median length {int(lengths.median()) if len(lengths) else 0} characters"
    return _style(fig, f"Dataset: {_escape(task.name)} ({summary})", showlegend=False)


def plot_variant_comparison(ci_table: pd.DataFrame) -> go.Figure:
    """The headline metric per variant with its confidence interval as error bars (higher is better).

    Reads the output of `workbench.evaluation.significance.bootstrap_ci`: ``variant``, ``metric``, ``value``,
    ``low``, ``high`` and, if present, ``confidence``. Bars follow the table's row order.
    """
    variants = list(ci_table["variant"])
    value = ci_table["value"].to_numpy(float)
    low = ci_table["low"].to_numpy(float)
    high = ci_table["high"].to_numpy(float)
    metric = str(ci_table["metric"].iloc[0]) if len(ci_table) else "metric"
    confidence = float(ci_table["confidence"].iloc[0]) if "confidence" in ci_table and len(ci_table) else 0.95
    fig = go.Figure(go.Bar(
        x=_escaped(variants), y=value, marker_color=_variant_colours(variants),
        error_y=dict(type="data", symmetric=False, array=high - value, arrayminus=value - low,
                     color="#333", thickness=1.5, width=8),
        customdata=np.column_stack([low, high]) if len(variants) else None,
        text=[f"{v:.3f}" for v in value], textposition="inside", insidetextanchor="start",
        hovertemplate="%{x}<br>" + metric + " %{y:.3f}<br>" + f"{confidence:.0%}"
                      + " CI %{customdata[0]:.3f} to %{customdata[1]:.3f}<extra></extra>",
    ))
    fig.update_yaxes(title_text=metric, range=[0, 1.05])
    fig.update_xaxes(title_text="prompt variant")
    return _style(fig, f"{metric} per variant, with {confidence:.0%} bootstrap confidence intervals", showlegend=False)


def plot_per_label_f1(per_label: pd.DataFrame, *, max_labels: int = MAX_LABELS_SHOWN) -> go.Figure:
    """Heatmap of F1 per variant (rows) and label (columns), each cell annotated (higher is better).

    Reads ``variant``, ``label`` and ``f1`` from `workbench.core.kinds.classification_scoring.per_label_scores`, or from
    `workbench.core.kinds.ner_scoring.score_ner`, whose ``mode`` column is then used to keep the ``strict``
    rows and whose ``"ALL"`` rows are dropped. Variants and labels keep their order of appearance.

    With more than `max_labels` labels, the `max_labels` with the most ``support`` (gold examples
    or entities; in order of appearance without that column) are shown, most support first, and
    a last column ("other N labels") holds each variant's mean F1 over the rest; the title says
    so. `per_label` itself remains the full table.
    """
    frame = per_label
    if "mode" in frame.columns:
        frame = frame[(frame["mode"] == "strict") & (frame["label"] != OVERALL)]
    variants = list(dict.fromkeys(frame["variant"]))
    labels = list(dict.fromkeys(frame["label"]))
    table = frame.pivot_table(index="variant", columns="label", values="f1", aggfunc="first", sort=False)
    table = table.reindex(index=variants, columns=labels)
    if "support" in frame.columns:
        support = frame.groupby("label", sort=False)["support"].max().reindex(labels).fillna(0).to_numpy(float)
    else:
        support = np.zeros(len(labels))
    shown, rest = _top_labels(labels, support, max_labels)
    title = "F1 per label and variant"
    if rest:
        z = np.column_stack([table[shown].to_numpy(float), table[rest].mean(axis=1, skipna=True).to_numpy(float)])
        x = [*_escaped(shown), _other_labels(len(rest), "mean F1")]
        title += _grey_line(f"the {len(shown)} labels with the most support of {len(labels)}; the last column is "
                            f"the mean F1 of the other {len(rest)} (every label is in the per-label table)")
    else:
        z = table.to_numpy(float)
        x = _escaped(labels)
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=_escaped(variants), zmin=0, zmax=1, colorscale=SEQUENTIAL,
        texttemplate="%{z:.2f}", colorbar=dict(title="F1"), xgap=2, ygap=2,
        hovertemplate="variant %{y}<br>label %{x}<br>F1 %{z:.3f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title_text="prompt variant")
    fig.update_xaxes(title_text="label", side="bottom")
    return _style(fig, title, height=max(320, 90 + 42 * len(variants) + (60 if rest else 0)))


def plot_confusion(confusion_frame: pd.DataFrame, variant: str, *, max_labels: int = MAX_LABELS_SHOWN) -> go.Figure:
    """Heatmap of a confusion matrix: gold labels as rows, predicted labels as columns.

    Reads the DataFrame of `workbench.core.kinds.classification_scoring.confusion` (index: gold labels; columns: predicted
    labels, with ``<unparsed>`` last). Cells show counts; hover adds the share of the gold row.
    With more than `max_labels` labels, only the `max_labels` labels most involved in mistakes
    (wrong answers for them plus wrong answers naming them) are shown, in their order; a column
    "other N labels" counts the answers that named any other label, so rows keep their totals.
    """
    shown_frame = confusion_frame
    title = f"Confusion matrix: {_escape(variant)}"
    labels = [label for label in confusion_frame.index if label in confusion_frame.columns]
    if len(labels) > max_labels:
        square = confusion_frame.loc[labels, labels].to_numpy(float)
        mistakes = square.sum(axis=1) + square.sum(axis=0) - 2 * np.diag(square)
        order = np.argsort(-mistakes, kind="stable")[:max_labels]
        kept = [labels[i] for i in sorted(order)]
        others = [label for label in labels if label not in set(kept)]
        extra = [column for column in confusion_frame.columns if column not in set(labels)]
        shown_frame = confusion_frame.loc[kept, kept].copy()
        shown_frame[_other_labels(len(others))] = confusion_frame.loc[kept, others].sum(axis=1)
        for column in extra:
            shown_frame[column] = confusion_frame.loc[kept, column]
        title += _grey_line(f"the {len(kept)} labels most involved in mistakes, of {len(labels)}")
    counts = shown_frame.to_numpy(float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), 0.0)
    fig = go.Figure(go.Heatmap(
        z=counts, x=_escaped(shown_frame.columns), y=_escaped(shown_frame.index), customdata=share,
        colorscale=SEQUENTIAL, texttemplate="%{z:.0f}", colorbar=dict(title="count"), xgap=2, ygap=2,
        hovertemplate="gold %{y}<br>predicted %{x}<br>%{z:.0f} rows (%{customdata:.0%} of gold %{y})<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title_text="gold label")
    fig.update_xaxes(title_text="predicted label")
    return _style(fig, title, height=max(360, 140 + 48 * len(shown_frame)))


def plot_consistency(per_example: pd.DataFrame, variants: Sequence[str] | None = None) -> go.Figure:
    """How often repeats of the same prompt agree: share of examples at each level of agreement.

    Reads ``variant``, ``example_id``, ``repeats`` and ``majority_share`` (the share of repeats
    giving the most common answer) from `workbench.evaluation.consistency.example_consistency`. One
    horizontal 100% bar per variant with two or more repeats, stacked by majority share (all agree
    first). When no variant has repeats, returns a figure that says so. `variants` fixes the order
    (default: order of appearance).
    """
    order = list(variants) if variants is not None else list(dict.fromkeys(per_example["variant"]))
    repeated = per_example[per_example["repeats"] >= 2] if len(per_example) else per_example
    shown = [variant for variant in order if variant in set(repeated["variant"])]
    single = [variant for variant in order if variant not in shown]
    if not shown:
        return _empty_figure(
            "Consistency across repeats",
            "Every variant was run once per example, so there is nothing to compare.<br>"
            "Run with repeats ≥ 2 and temperature > 0 to see how steady each variant's answers are.",
        )
    levels = sorted(repeated["majority_share"].round(6).unique(), reverse=True)
    counts_of_repeats = repeated["repeats"].unique()
    repeats = int(counts_of_repeats[0]) if len(counts_of_repeats) == 1 else None
    fig = go.Figure()
    for index, level in enumerate(levels):
        counts, shares = [], []
        for variant in shown:
            group = repeated[repeated["variant"] == variant]
            count = int((group["majority_share"].round(6) == level).sum())
            counts.append(count)
            shares.append(count / len(group))
        name = _agreement_name(level, repeats)
        fig.add_trace(go.Bar(
            y=_escaped(shown), x=shares, customdata=counts, name=name, orientation="h",
            marker_color=_agreement_colour(index, len(levels)),
            hovertemplate="%{y}<br>" + name + ": %{customdata} examples (%{x:.0%})<extra></extra>",
        ))
    fig.update_layout(barmode="stack", legend=dict(title_text="answers of the repeats", traceorder="normal"))
    fig.update_xaxes(title_text="share of examples", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(autorange="reversed", title_text="prompt variant")
    title = "Consistency: how often repeated answers agree"
    if single:
        title += _grey_line("run once per example, so not shown: " + _escape(", ".join(single)))
    return _style(fig, title, height=max(320, 140 + 46 * len(shown)))


def pareto_front(summary: pd.DataFrame, quality: str, cost: str) -> pd.Series:
    """True for variants no other variant beats: at least as good on both axes and better on one.

    Higher `quality` and lower `cost` are better. Rows whose quality or cost is NaN are never on
    the front (and do not dominate others). Returns a boolean Series aligned with `summary`.
    """
    q = summary[quality].to_numpy(float)
    c = summary[cost].to_numpy(float)
    valid = ~(np.isnan(q) | np.isnan(c))
    on_front = np.zeros(len(summary), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid & (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))
        on_front[i] = not others.any()
    return pd.Series(on_front, index=summary.index, name="pareto_front")


def plot_quality_vs_cost(summary: pd.DataFrame, quality: str = "accuracy") -> go.Figure:
    """Quality against cost per 1,000 rows (left) and median latency (right), Pareto fronts marked.

    Reads ``variant``, the `quality` column (higher is better; ``accuracy`` or ``f1`` in
    `workbench.evaluation.efficiency.summarize_run`), ``cost_per_1000`` and ``latency_p50_s`` (lower is better).
    A free local model has cost 0 and stays on the axis. Variants without a price (NaN cost) are
    left out of the cost panel and named in it; they still appear on the latency panel. Front
    members are outlined, joined by a dotted line and labelled (names of coinciding points joined).
    """
    if quality not in summary.columns:
        raise InputError(f"summary has no column {quality!r}; its columns are {list(summary.columns)}")
    variants = list(summary["variant"])
    colours = dict(zip(variants, _variant_colours(variants)))
    panels = (("cost_per_1000", "cost per 1,000 rows"), ("latency_p50_s", "median latency (s)"))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("Quality vs cost", "Quality vs latency"))
    in_legend: set[str] = set()  # each variant once in the legend, from whichever panel shows it first
    for col, (column, axis_title) in enumerate(panels, start=1):
        known = summary[summary[column].notna() & summary[quality].notna()]
        front = pareto_front(known, quality, column).to_numpy()
        for (_, row), is_front in zip(known.iterrows(), front):
            name = _escape(row["variant"])
            fig.add_trace(go.Scatter(
                x=[row[column]], y=[row[quality]], mode="markers", cliponaxis=False,
                marker=dict(size=15 if is_front else 11, color=colours[row["variant"]],
                            line=dict(width=2 if is_front else 1, color="#222" if is_front else "white")),
                name=name, legendgroup=name, showlegend=_first_time(name, in_legend),
                hovertemplate=f"{name}<br>{quality} %{{y:.3f}}<br>{axis_title} %{{x:.4g}}"
                              + ("<br>on the Pareto front" if is_front else "") + "<extra></extra>",
            ), row=1, col=col)
        front_rows = known[front].sort_values([column, quality])
        if len(front_rows):
            fig.add_trace(go.Scatter(
                x=front_rows[column], y=front_rows[quality], mode="lines",
                line=dict(color="#222", dash="dot", width=1.5),
                name="Pareto front", legendgroup="front", showlegend=_first_time("Pareto front", in_legend),
                hoverinfo="skip",
            ), row=1, col=col)
            # One label per position, so variants that coincide (e.g. all free) do not overprint.
            places = front_rows.groupby([column, quality], sort=False)["variant"].agg(
                lambda names: ", ".join(map(str, names)))
            fig.add_trace(go.Scatter(
                x=[x for x, _ in places.index], y=[y for _, y in places.index], mode="text", cliponaxis=False,
                # Leading no-break spaces keep the label clear of its marker.
                text=["\u00a0\u00a0\u00a0" + _escape(names) for names in places], textposition="middle right",
                showlegend=False, hoverinfo="skip", textfont=dict(size=12, color="#222"),
            ), row=1, col=col)
        fig.update_xaxes(title_text=axis_title, range=_padded(known[column], right=0.35), row=1, col=col)
        fig.update_yaxes(title_text=quality, range=_padded(known[quality], left=0.12, right=0.12), row=1, col=col)
        if column == "cost_per_1000":
            unpriced = summary.loc[summary[column].isna(), "variant"]
            if len(unpriced) and known.empty:
                # Nothing to plot: say why inside the empty panel.
                fig.update_xaxes(visible=False, row=1, col=col)
                fig.update_yaxes(visible=False, row=1, col=col)
                domain = fig.layout.xaxis.domain
                fig.add_annotation(
                    text="No price is known for this model,<br>so cost cannot be compared.<br>"
                         "Add it to the price table.",
                    xref="paper", yref="paper", x=(domain[0] + domain[1]) / 2, y=0.5, showarrow=False,
                    font=dict(color="#555"),
                )
            elif len(unpriced):
                _subtitle(fig, col, "no price known for: " + _escape(", ".join(map(str, unpriced))))
            elif len(known) and (known[column] == 0).all():
                _subtitle(fig, col, "every variant costs 0 (local model): compare them on latency")
    fig = _style(fig, f"{quality} against cost and latency (Pareto front: nothing is both better and cheaper)",
                 height=480)
    return fig.update_layout(margin_t=110)  # room for the panels' two-line titles


def plot_error_types(
    errors: pd.DataFrame, variants: Sequence[str] | None = None, error_types: Sequence[str] | None = None
) -> go.Figure:
    """Stacked bars of error counts per variant, one colour per ``error_type``.

    Reads ``variant`` and ``error_type`` from `workbench.evaluation.errors.find_errors`. `variants`
    fixes the order and includes variants without errors (default: order of appearance in
    `errors`); `error_types` the order of the stack (default `ERROR_TYPE_ORDER`; pass the kind's
    `TaskKind.error_types`), types not in it following alphabetically.
    """
    order = list(variants) if variants is not None else list(dict.fromkeys(errors["variant"]))
    if errors.empty:
        return _empty_figure("Errors by type", "No errors: every answer matched the gold data.")
    counts = pd.crosstab(errors["variant"], errors["error_type"]).reindex(index=order, fill_value=0)
    kinds = [kind for kind in (error_types or ERROR_TYPE_ORDER) if kind in counts.columns]
    kinds += sorted(set(counts.columns) - set(kinds))
    fig = go.Figure()
    for kind in kinds:
        fig.add_trace(go.Bar(
            x=_escaped(order), y=counts[kind].to_numpy(), name=_escape(kind.replace("_", " ")),
            marker_color=ERROR_TYPE_COLOURS.get(kind, "#999999"),
            hovertemplate="%{x}<br>" + _escape(kind) + ": %{y}<extra></extra>",
        ))
    fig.update_layout(barmode="stack", legend_title_text="error type")
    fig.update_xaxes(title_text="prompt variant")
    fig.update_yaxes(title_text="errors (all repeats)")
    return _style(fig, "Errors by type")


def plot_reliability(table: pd.DataFrame) -> go.Figure:
    """Accuracy against confidence, one line per variant, with the diagonal of perfect calibration.

    Reads `workbench.evaluation.consistency.reliability_table`: ``variant``, ``mean_confidence``,
    ``accuracy`` and ``rows`` (shown on hover). A line under the diagonal is over-confident.
    """
    if table.empty:
        return _empty_figure("Accuracy against confidence", "No variant gives a confidence (use sc<n>).")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999999"},
                             name="perfectly calibrated", hoverinfo="skip"))
    variants = list(dict.fromkeys(table["variant"]))
    for variant, colour in zip(variants, _variant_colours(variants)):
        mine = table[table["variant"] == variant]
        fig.add_trace(go.Scatter(
            x=mine["mean_confidence"], y=mine["accuracy"], mode="lines+markers", name=_escape(variant),
            marker={"color": colour, "size": 6 + 2 * np.sqrt(mine["rows"].to_numpy(float))}, line={"color": colour},
            customdata=mine["rows"], hovertemplate=_escape(variant) + "<br>confidence %{x:.2f}: accuracy %{y:.2f}"
            " over %{customdata} answers<extra></extra>",
        ))
    fig.update_xaxes(title_text="confidence (share of samples agreeing)", range=[0, 1.02])
    fig.update_yaxes(title_text="accuracy (exact answer)", range=[0, 1.02])
    return _style(fig, "Accuracy against confidence")


def _style(fig: go.Figure, title: str, *, height: int = 420, showlegend: bool = True) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE, font=FONT, title=dict(text=title, x=0.01, xanchor="left", font=dict(size=17)),
        height=height, margin=dict(l=70, r=30, t=80, b=80), showlegend=showlegend,
        hoverlabel=dict(font=dict(family=FONT["family"])),
    )
    return fig


def _empty_figure(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=15, color="#555"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title, height=260, showlegend=False)


def _subtitle(fig: go.Figure, col: int, text: str) -> None:
    """Add a grey second line under the title of subplot `col` (subplot titles are annotations)."""
    title = fig.layout.annotations[col - 1]
    title.text = f"{title.text}{_grey_line(text)}"


def _grey_line(text: str) -> str:
    """A smaller grey line to append to a plotly title; `text` must already be escaped."""
    return f'<br><span style="font-size:12px;color:#555">{text}</span>'


def _first_time(name: str, seen: set[str]) -> bool:
    if name in seen:
        return False
    seen.add(name)
    return True


def _padded(values: pd.Series, *, left: float = 0.08, right: float = 0.08) -> list[float] | None:
    """An axis range around `values` with room for markers and labels; None (autorange) if empty."""
    if values.empty:
        return None
    low, high = float(values.min()), float(values.max())
    span = high - low or (abs(high) * 0.5 or 1.0)
    return [low - left * span, high + right * span]


def _variant_colours(variants: Sequence[str]) -> list[str]:
    return [VARIANT_COLOURS[index % len(VARIANT_COLOURS)] for index in range(len(variants))]


def _agreement_colour(index: int, levels: int) -> str:
    # Green for "all agree", through yellow, to orange for the least agreement.
    scale = [[0.0, "#1a7f37"], [0.5, "#e3c14b"], [1.0, "#d55e00"]]
    return sample_colorscale(scale, [index / (levels - 1) if levels > 1 else 0.0])[0]


def _agreement_name(level: float, repeats: int | None) -> str:
    """Legend text for a majority share: "all agree", "2 of 3 agree", "all differ"."""
    if math.isclose(level, 1.0):
        return "all agree"
    if repeats is None:
        return f"majority {level:.0%}"
    agreeing = round(level * repeats)
    return "all differ" if agreeing == 1 else f"{agreeing} of {repeats} agree"


def _top_labels(labels: Sequence[str], weights: Sequence[float], limit: int) -> tuple[list[str], list[str]]:
    """(shown, rest): all `labels` in order when there are at most `limit`; otherwise the `limit`
    with the largest `weights`, largest first (ties in label order), and the others in order."""
    if len(labels) <= limit:
        return list(labels), []
    order = np.argsort(-np.asarray(weights, dtype=float), kind="stable")
    shown = [labels[i] for i in order[:limit]]
    kept = set(shown)
    return shown, [label for label in labels if label not in kept]


def _other_labels(count: int, what: str = "") -> str:
    """The axis text of a column or bar that stands for `count` labels not shown one by one."""
    return f"other {count} labels" + (f" ({what})" if what else "")


def _escape(value: object) -> str:
    """`value` as text plotly shows literally. A plain str: a `Markup` would escape what it is added to."""
    return str(escape(str(value)))


def _escaped(values: Sequence[object] | pd.Index) -> list[str]:
    return [_escape(value) for value in values]


def plot_points(points: pd.DataFrame) -> go.Figure:
    """Training points by size (distinct examples), coloured by the action that would fix them.

    Reads `workbench.points.cluster.ErrorClusterer.points_`: ``point_id``, ``name``, ``size``,
    ``signature``, ``action``.
    """
    if points.empty:
        return _empty_figure("Training points", "No errors, so no training points.")
    ordered = points.iloc[::-1]  # biggest at the top of a horizontal bar chart
    fig = go.Figure()
    for action, colour in zip(ACTION_ORDER, ACTION_COLOURS):
        mine = ordered[ordered["action"] == action]
        if mine.empty:
            continue
        fig.add_trace(go.Bar(
            y=_escaped(mine["point_id"]), x=mine["size"], orientation="h", name=_escape(action), marker_color=colour,
            customdata=np.stack([_escaped(mine["name"]), _escaped(mine["signature"])], axis=1),
            hovertemplate="%{y}: %{customdata[0]}<br>%{customdata[1]}<br>%{x} examples<extra></extra>",
        ))
    fig.update_layout(barmode="stack", legend_title_text="what would fix it")
    fig.update_xaxes(title_text="examples")
    fig.update_yaxes(categoryorder="array", categoryarray=_escaped(ordered["point_id"]))
    return _style(fig, "Training points by size", height=max(320, 120 + 26 * len(points)))


def plot_point_fixes(points: pd.DataFrame) -> go.Figure:
    """Points x variants: the share of each point's examples each variant answers right (1 = fixes it).

    Reads ``point_id``, ``name`` and ``right_by_variant`` of `ErrorClusterer.points_`.
    """
    if points.empty:
        return _empty_figure("Which variant fixes which point", "No training points.")
    variants = list(dict.fromkeys(variant for shares in points["right_by_variant"] for variant in shares))
    z = [[shares.get(variant, 0.0) for variant in variants] for shares in points["right_by_variant"]]
    fig = go.Figure(go.Heatmap(
        z=z, x=_escaped(variants), y=_escaped(points["point_id"]), zmin=0, zmax=1, colorscale=SEQUENTIAL,
        text=[[f"{value:.0%}" for value in row] for row in z], texttemplate="%{text}",
        customdata=[[_escape(name)] * len(variants) for name in points["name"]],
        hovertemplate="%{y} (%{customdata})<br>%{x}: %{z:.0%} right<extra></extra>", colorbar={"title": "right"},
    ))
    fig.update_yaxes(autorange="reversed")
    return _style(fig, "Which variant fixes which point", height=max(320, 140 + 30 * len(points)))


def plot_point_map(point_map: pd.DataFrame) -> go.Figure:
    """The errors on a 2-D map of their embeddings (first two principal components), coloured by
    point; the text is on hover. Reads `ErrorClusterer.map_`."""
    if point_map.empty:
        return _empty_figure("Errors on a map", "No errors to place.")
    fig = go.Figure()
    for index, (point_id, mine) in enumerate(point_map.groupby("point_id", sort=False)):
        fig.add_trace(go.Scatter(
            x=mine["x"], y=mine["y"], mode="markers", name=_escape(point_id),
            marker={"size": 9, "color": VARIANT_COLOURS[index % len(VARIANT_COLOURS)]},
            customdata=np.stack([_escaped(mine["signature"]), [_escape(text[:160]) for text in mine["text"]]], axis=1),
            hovertemplate=_escape(point_id) + " · %{customdata[0]}<br>%{customdata[1]}<extra></extra>",
        ))
    fig.update_xaxes(title_text="first component", showticklabels=False)
    fig.update_yaxes(title_text="second component", showticklabels=False)
    return _style(fig, "Errors on a map of their embeddings")


ACTION_ORDER = ("prompt change", "add/clarify a definition", "fine-tune", "relabel")
ACTION_COLOURS = ("#0072B2", "#009E73", "#D55E00", "#999999")


SOURCE_ORDER = ("members", "corrections", "neighbours", "targeted", "generated", "regression")


def plot_training_data(examples: pd.DataFrame) -> go.Figure:
    """Rows per training point, train (right) and test (left, negative), stacked by source.

    Reads the training-data frame (`workbench.trainingdata.examples.TrainingData.examples`):
    ``point_id``, ``split``, ``source``.
    """
    if examples.empty:
        return _empty_figure("Training data", "No training data.")
    counts = examples.groupby(["point_id", "split", "source"]).size().rename("rows").reset_index()
    order = list(dict.fromkeys(examples["point_id"]))[::-1]
    fig = go.Figure()
    palette = dict(zip(SOURCE_ORDER, ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#9d9d9d"]))
    for source in [s for s in SOURCE_ORDER if s in set(counts["source"])]:
        shown = False  # one legend entry per source, for its train and test bars together
        for split, sign in (("train", 1), ("test", -1)):
            mine = counts[(counts["source"] == source) & (counts["split"] == split)]
            if mine.empty:
                continue
            fig.add_trace(go.Bar(
                y=_escaped(mine["point_id"]), x=sign * mine["rows"], orientation="h", name=_escape(source),
                legendgroup=source, showlegend=not shown,
                marker_color=palette[source], customdata=mine["rows"],
                hovertemplate=f"%{{y}}: %{{customdata}} {split} rows from {_escape(source)}<extra></extra>",
            ))
            shown = True
    fig.update_layout(barmode="relative", legend_title_text="source")
    fig.update_xaxes(title_text="← test cases · training examples →")
    fig.update_yaxes(categoryorder="array", categoryarray=_escaped(order))
    return _style(fig, "Training data per point", height=max(320, 120 + 22 * len(order)))
