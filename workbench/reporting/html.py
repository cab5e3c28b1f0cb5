"""HTML rendering of a report: pure functions from `ReportSections` to one self-contained page.

Every piece of dataset or model text (texts, labels, variant names, raw responses, errors, the
task's own words) goes through `html.escape` here, including inside highlighted spans. Charts are
plotly divs whose figure JSON plotly itself writes with ``<`` escaped; plotly's JavaScript is
embedded once in the page head, so the file needs no network.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench.core.answers import UNPARSED
from workbench.evaluation.significance import Comparison

if TYPE_CHECKING:  # report.py imports this module at run time
    from workbench.reporting.sections import ReportSections

METRIC_NAMES = {
    "accuracy": "accuracy",
    "micro_f1": "strict entity F1 (micro average; exact span and type)",
    "macro_f1": "macro F1",
}

CHART_CAPTIONS = {
    "dataset": "The evaluated examples: how the labels are spread, and how long the texts are.",
    "comparison": "The headline metric per variant. Error bars are 95% bootstrap intervals over examples: "
                  "where two intervals overlap a lot, the data cannot tell the variants apart.",
    "per_label": "F1 per label (strict match for NER). Dark cells are good; look for a label every variant finds hard.",
    "confusion": "Where the best variant's answers go: gold labels in rows, answers in columns; "
                 f"{UNPARSED} counts answers that could not be read.",
    "consistency": "The same prompt sampled several times: how often the repeats give the same answer.",
    "quality_vs_cost": "Variants on the Pareto front (dotted line, labelled) are the sensible choices: "
                       "no other variant is both better and cheaper, or both better and faster.",
    "error_types": "What kind of mistakes each variant makes, counted over all repeats.",
}

_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d0d7de; --soft:#f6f8fa; --accent:#0072B2;
        --gold-bg:#dcf5e3; --gold-line:#1a7f37; --ok-bg:#ddeeff; --ok-line:#0550ae;
        --bad-bg:#ffe3d6; --bad-line:#bc4c00; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:#fff;
       font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 32px 64px; }
h1 { font-size:28px; margin:0 0 4px; } h2 { font-size:21px; margin:40px 0 10px; padding-bottom:6px;
     border-bottom:1px solid var(--line); } h3 { font-size:16px; margin:0 0 8px; }
.meta, .note, figcaption { color:var(--muted); } .meta { margin:0 0 12px; }
nav { margin:16px 0; display:flex; flex-wrap:wrap; gap:6px 16px; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { border-bottom:1px solid var(--line); padding:6px 8px; text-align:right; vertical-align:top; }
th { background:var(--soft); font-weight:600; } th:first-child, td:first-child { text-align:left; }
td.text { text-align:left; } .num { font-variant-numeric:tabular-nums; white-space:nowrap; }
.badge { display:inline-block; font-size:11px; padding:0 6px; border-radius:9px; margin-left:6px;
         background:var(--soft); border:1px solid var(--line); color:var(--muted); vertical-align:1px; }
.badge.best { background:#fff3c4; border-color:#d4a72c; color:#6f4e00; }
ul.significance li { margin:6px 0; } .detail { display:block; color:var(--muted); font-size:13px; }
.sig { color:#1a7f37; font-weight:600; } .nosig { color:var(--muted); font-weight:600; }
figure.chart { margin:22px 0; padding:8px; border:1px solid var(--line); border-radius:8px; }
figure.chart figcaption { padding:4px 10px 6px; font-size:14px; }
.legend { display:flex; gap:16px; flex-wrap:wrap; font-size:14px; margin:8px 0 14px; }
.card { border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:14px 0; }
.card table { margin-top:8px; table-layout:fixed; } .card td, .card th { text-align:left; }
.excerpt { background:var(--soft); border-radius:6px; padding:8px 10px; white-space:pre-wrap; line-height:1.9; }
mark.span { border-radius:4px; padding:1px 3px; border:1px solid; color:inherit; }
mark.gold { background:var(--gold-bg); border-color:var(--gold-line); }
mark.pred-ok { background:var(--ok-bg); border-color:var(--ok-line); }
mark.pred-bad { background:var(--bad-bg); border-color:var(--bad-line); border-style:dashed; }
mark.span sub { font-size:10px; font-weight:600; margin-left:3px; color:var(--muted); }
pre.raw { margin:0; max-height:160px; overflow:auto; white-space:pre-wrap; word-break:break-word;
          font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:var(--soft);
          padding:6px 8px; border-radius:6px; }
.label { font-weight:600; } .wrong { color:var(--bad-line); } .missing { color:var(--muted); font-style:italic; }
dl.labels dt { font-weight:600; margin-top:6px; } dl.labels dd { margin:0 0 0 16px; color:var(--muted); }
"""


_ERROR_HEAD = (
    '<tr><th style="width:14%">variant</th><th style="width:6%">repeat</th><th style="width:10%">{kind}</th>'
    '<th style="width:{predicted}%">predicted</th><th style="width:{raw}%">raw response</th></tr>'
)


def render_report(sections: ReportSections, *, generated: str) -> str:
    """The whole report as one HTML document; `generated` is the date shown under the title."""
    charts = "\n".join(render_figure(name, figure) for name, figure in sections.figures.items())
    body = "\n".join([
        _header(sections, generated),
        '<section id="summary"><h2>Summary per variant</h2>' + render_summary(sections) + "</section>",
        '<section id="significance"><h2>Are the differences real?</h2>' + render_significance(sections) + "</section>",
        f'<section id="charts"><h2>Charts</h2>{charts}</section>',
        '<section id="errors"><h2>Worst errors</h2>' + render_errors(sections) + "</section>",
    ])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(sections.title)}</title>\n<style>{_CSS}</style>\n"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        f"</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def render_figure(name: str, figure: go.Figure) -> str:
    """One chart as a ``<figure>`` with a plotly div (no JavaScript bundle) and a caption."""
    height = figure.layout.height or 420
    div = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"chart-{name}", default_width="100%",
        default_height=f"{height}px", config={"displaylogo": False, "responsive": True},
    )
    caption = CHART_CAPTIONS.get(name, "")
    return f'<figure class="chart" id="figure-{_e(name)}">{div}<figcaption>{_e(caption)}</figcaption></figure>'


def render_summary(sections: ReportSections) -> str:
    """The per-variant summary table, with the baseline and the best variant marked."""
    table = sections.summary
    ner = "strict_f1" in table.columns
    columns: list[tuple[str, str]] = [("variant", "variant"), (f"{sections.metric} [95% CI]", "headline")]
    if ner:
        columns += [("strict F1", "strict_f1"), ("boundary F1", "boundary_f1"), ("type F1", "type_f1")]
    else:
        columns += [("macro F1", "macro_f1")]
    columns += [("parse failures", "parse_failure_rate"), ("request errors", "request_error_rate"),
                ("latency p50 (s)", "latency_p50_s"), ("latency p95 (s)", "latency_p95_s"),
                ("tokens in", "tokens_in_mean"), ("tokens out", "tokens_out_mean"), ("cost / 1,000", "cost_per_1000")]
    if "all_agree_share" in table.columns:
        columns += [("repeats agree", "all_agree_share"), ("Fleiss κ", "fleiss_kappa")]
    head = "".join(f"<th>{_e(heading)}</th>" for heading, _ in columns)
    body = []
    for _, row in table.iterrows():
        cells = []
        for _, key in columns:
            cells.append(f'<td class="num">{_summary_cell(sections, row, key)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = (
        f'<p class="note">{_e(METRIC_NAMES.get(sections.metric, sections.metric))} on '
        f"{sections.examples_evaluated} examples, with its 95% bootstrap interval in brackets; higher is better. "
        "Parse failures and request errors are scored as wrong. Latency is per call (cached answers at their "
        "original latency); tokens are means per call; cost is per 1,000 calls in the price table's currency "
        "(— where the model has no price).</p>"
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"


def _summary_cell(sections: ReportSections, row: pd.Series, key: str) -> str:
    if key == "variant":
        name = _e(row["variant"])
        if row["variant"] == sections.baseline:
            name += '<span class="badge">baseline</span>'
        if row["variant"] == sections.best_variant and len(sections.variants) > 1:
            name += '<span class="badge best">best</span>'
        return name
    if key == "headline":
        return f"{_number(row['value'])} [{_number(row['low'])}, {_number(row['high'])}]"
    if key in ("parse_failure_rate", "request_error_rate", "all_agree_share"):
        return _percent(row[key])
    if key in ("tokens_in_mean", "tokens_out_mean"):
        return _number(row[key], ".0f")
    if key == "cost_per_1000":
        return _number(row[key], ".4g")
    return _number(row[key], ".3g" if key.startswith("latency") else ".3f")


def render_significance(sections: ReportSections) -> str:
    """Each variant against the baseline, in plain words, with the test's details underneath."""
    if not sections.comparisons:
        return '<p class="note">Only one variant was run, so there is nothing to compare.</p>'
    items = "".join(f"<li>{comparison_sentence(comparison)}</li>" for comparison in sections.comparisons)
    return (
        f'<p class="note">Each variant against the baseline, <b>{_e(sections.baseline)}</b>, on the same '
        "examples. A difference is significant when its 95% interval excludes zero.</p>"
        f'<ul class="significance">{items}</ul>'
    )


def comparison_sentence(comparison: Comparison) -> str:
    """One comparison as an HTML sentence that says plainly whether the difference is real."""
    a, b = f"<b>{_e(comparison.variant_a)}</b>", f"<b>{_e(comparison.variant_b)}</b>"
    metric = _e(comparison.metric)
    if comparison.significant:
        direction = "better" if comparison.difference > 0 else "worse"
        verdict = (f'{a} is <span class="sig">significantly {direction}</span> than {b} on {metric} '
                   f"({comparison.difference:+.3f}).")
    else:
        verdict = (f'{a} vs {b}: the difference in {metric} ({comparison.difference:+.3f}) is '
                   '<span class="nosig">not significant</span>; this data cannot tell them apart.')
    return f'{verdict}<span class="detail">{_e(comparison.statement())}</span>'


def render_errors(sections: ReportSections) -> str:
    """Cards of the worst errors, one per example, with every wrong answer to it."""
    errors = sections.worst_errors
    if errors.empty:
        return '<p class="note">No errors to show.</p>'
    ner = sections.task.kind == "ner"
    legend = (
        '<div class="legend"><span><mark class="span gold">gold entity<sub>TYPE</sub></mark></span>'
        '<span><mark class="span pred-ok">predicted, correct</mark></span>'
        '<span><mark class="span pred-bad">predicted, wrong</mark></span></div>'
        if ner else ""
    )
    intro = (f'<p class="note">{len(errors)} wrong answers, examples that most variants get wrong first.</p>')
    cards = [_error_card(group, ner) for _, group in errors.groupby("example_id", sort=False)]
    return intro + legend + "".join(cards)


def _error_card(group: pd.DataFrame, ner: bool) -> str:
    first = group.iloc[0]
    text, gold = first["text"], first["gold"]
    heading = (f"<h3>{_e(first['example_id'])} · wrong in {int(first['variants_wrong'])} of "
               f"{int(first['variants_total'])} variants</h3>")
    if ner:
        shown = f'<div class="excerpt">{highlight(text, gold)}</div>'
        head = _ERROR_HEAD.format(kind="errors", predicted=38, raw=32)
    else:
        shown = (f'<div class="excerpt">{_e(text)}</div><p>gold label: '
                 f'<span class="label">{_e(gold)}</span></p>')
        head = _ERROR_HEAD.format(kind="error", predicted=22, raw=48)
    rows = []
    for _, row in group.iterrows():
        predicted = _predicted_ner(row, gold) if ner else _predicted_label(row)
        rows.append(
            f"<tr><td>{_e(row['variant'])}</td><td class=\"num\">{int(row['repeat'])}</td>"
            f"<td>{_e(row['error_types'])}</td><td class=\"text\">{predicted}</td>"
            f"<td class=\"text\"><pre class=\"raw\">{_raw(row['raw_response'])}</pre></td></tr>"
        )
    return f'<div class="card">{heading}{shown}<table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def _predicted_label(row: pd.Series) -> str:
    if row["predicted"] is None:
        return f'<span class="missing">{_e(UNPARSED)}: {_e(row["parse_error"] or "no answer")}</span>'
    return f'<span class="label wrong">{_e(row["predicted"])}</span>'


def _predicted_ner(row: pd.Series, gold: list[dict[str, Any]]) -> str:
    if row["predicted"] is None:
        return f'<span class="missing">{_e(UNPARSED)}: {_e(row["parse_error"] or "no answer")}</span>'
    parts = [f'<div class="excerpt">{highlight(row["text"], row["predicted"], gold)}</div>']
    if row["hallucinations"]:
        invented = ", ".join(f"{entity.get('text', '')} ({entity.get('label', '')})" if isinstance(entity, dict)
                             else str(entity) for entity in row["hallucinations"])
        parts.append(f'<div class="wrong">not in the text: {_e(invented)}</div>')
    return "".join(parts)


def highlight(text: str, spans: list[dict[str, Any]], gold: list[dict[str, Any]] | None = None) -> str:
    """`text` as escaped HTML with `spans` wrapped in ``<mark>``; the entity text is escaped too.

    Without `gold`, `spans` are the gold entities (class ``gold``). With it, `spans` are
    predictions: ``pred-ok`` where a gold span matches exactly (start, end and label), else
    ``pred-bad``. Spans that overlap an earlier one or fall outside the text are skipped rather
    than garbling the markup.
    """
    exact = {(span["start"], span["end"], span["label"]) for span in gold or []}
    out, position = [], 0
    for span in sorted(spans, key=lambda span: (span["start"], span["end"])):
        start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
        if start < position or end > len(text) or end <= start:
            continue
        if gold is None:
            kind = "gold"
        else:
            kind = "pred-ok" if (start, end, label) in exact else "pred-bad"
        out.append(_e(text[position:start]))
        out.append(f'<mark class="span {kind}" title="{_e(label)}">{_e(text[start:end])}<sub>{_e(label)}</sub></mark>')
        position = end
    out.append(_e(text[position:]))
    return "".join(out)


def _header(sections: ReportSections, generated: str) -> str:
    task = sections.task
    facts = [f"generated {generated}", f"{task.kind} task", f"{len(sections.variants)} variants",
             f"{sections.examples_evaluated} of {sections.dataset_size} examples evaluated",
             f"{sections.repeats} repeat{'s' if sections.repeats != 1 else ''} per example"]
    definitions = "".join(f"<dt>{_e(label.name)}</dt><dd>{_e(label.definition)}</dd>" for label in task.labels)
    nav = "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in (
        ("summary", "Summary"), ("significance", "Significance"), ("charts", "Charts"), ("errors", "Worst errors")))
    description = _e(task.description) if task.description else '<span class="missing">No task description.</span>'
    return (
        f"<header><h1>{_e(sections.title)}</h1><p class=\"meta\">{_e(' · '.join(facts))}</p>"
        f"<p>{description}</p>"
        "<details><summary>Labels and the client's definitions</summary>"
        f'<dl class="labels">{definitions}</dl></details>'
        f"<nav>{nav}</nav></header>"
    )


def _raw(value: object) -> str:
    return '<span class="missing">no response</span>' if value is None else _e(value)


def _number(value: object, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(float(value), spec)


def _percent(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.1%}"


def _e(value: object) -> str:
    return html.escape(str(value))
