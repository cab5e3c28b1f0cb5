"""An error browser for notebooks: filter errors by variant, label and type; see spans highlighted.

Entity spans are drawn with spaCy's displaCy (which escapes the text); everything else that comes
from data or models is escaped here.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from workbench.core.task import Task

ALL = "(all)"
_PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197", "#e4e7d2"]


def label_colours(task: Task) -> dict[str, str]:
    """A fixed colour per label, for displaCy."""
    return {label: _PALETTE[index % len(_PALETTE)] for index, label in enumerate(task.label_names)}


def render_spans(text: str, spans: list[dict[str, Any]] | None, task: Task, title: str) -> str:
    """HTML of `text` with `spans` (``start``, ``end``, ``label``) highlighted by displaCy."""
    from spacy import displacy

    ents = [{"start": int(s["start"]), "end": int(s["end"]), "label": str(s["label"])} for s in (spans or [])]
    body = displacy.render(
        {"text": text, "ents": sorted(ents, key=lambda span: span["start"])}, style="ent", manual=True,
        jupyter=False, options={"colors": label_colours(task)},
    )
    return f"<h4 style='margin:0.6em 0 0.2em'>{html.escape(title)}</h4>{body}"


def render_error(error: pd.Series, task: Task, gold_spans: list[dict] | None = None,
                 predicted_spans: list[dict] | None = None) -> str:
    """HTML card for one error row of `find_errors`: text (spans highlighted for NER), gold,
    predicted, error type, variant and the raw answer."""
    parts = [
        f"<p><b>{html.escape(str(error['error_type']))}</b> · variant <code>{html.escape(str(error['variant']))}</code>"
        f" · example <code>{html.escape(str(error['example_id']))}</code></p>"
    ]
    if task.kind == "ner":
        parts.append(render_spans(error["text"], gold_spans, task, "Gold"))
        parts.append(render_spans(error["text"], predicted_spans, task, "Predicted"))
    else:
        parts.append(f"<blockquote>{html.escape(str(error['text']))}</blockquote>")
        predicted = error["predicted"] if isinstance(error["predicted"], str) else "(no usable answer)"
        parts.append(f"<p>gold <b>{html.escape(str(error['gold']))}</b> · predicted <b>{html.escape(predicted)}</b></p>")
    if isinstance(error.get("parse_error"), str):
        parts.append(f"<p>why unusable: {html.escape(error['parse_error'])}</p>")
    raw = error.get("raw_response")
    parts.append(f"<details><summary>raw answer</summary><pre>{html.escape(str(raw)) if isinstance(raw, str) else '(none)'}</pre></details>")
    return "\n".join(parts)


def error_label(error: pd.Series) -> str:
    """The label an error is filed under: the gold label, else the predicted one."""
    for field in ("gold", "predicted"):
        value = error.get(field)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "label" in value:
            return str(value["label"])
    return str(error.get("label", "")) if isinstance(error.get("label"), str) else ""


def filter_errors(errors: pd.DataFrame, variant: str = ALL, label: str = ALL, error_type: str = ALL) -> pd.DataFrame:
    """Rows of `errors` matching the chosen variant, label (see `error_label`) and error type."""
    mask = pd.Series(True, index=errors.index)
    if variant != ALL:
        mask &= errors["variant"] == variant
    if error_type != ALL:
        mask &= errors["error_type"] == error_type
    if label != ALL:
        mask &= errors.apply(error_label, axis=1) == label
    return errors[mask]


class ErrorBrowser:
    """ipywidgets browser over `find_errors` output; display `browser.widget` in a notebook.

    `predictions` and `dataset` supply the full predicted and gold span lists for NER, so each
    card shows the whole example, not just the one span in error.
    """

    def __init__(self, errors: pd.DataFrame, task: Task, dataset: pd.DataFrame, predictions: pd.DataFrame | None = None):
        import ipywidgets as widgets

        self.errors = errors.reset_index(drop=True)
        self.task = task
        self._gold = dataset.set_index("example_id")["spans"] if task.kind == "ner" else None
        self._predicted = (
            predictions.set_index(["variant", "example_id", "repeat"])["prediction"]
            if task.kind == "ner" and predictions is not None else None
        )
        options = lambda values: [ALL, *sorted({str(v) for v in values})]  # noqa: E731
        self.variant = widgets.Dropdown(options=options(self.errors["variant"]), description="variant")
        self.label = widgets.Dropdown(options=options(self.errors.apply(error_label, axis=1) if len(self.errors) else []),
                                      description="label")
        self.error_type = widgets.Dropdown(options=options(self.errors["error_type"]), description="error type")
        self.position = widgets.IntSlider(min=0, max=0, description="error")
        self.count = widgets.Label()
        self.card = widgets.HTML()
        for control in (self.variant, self.label, self.error_type):
            control.observe(self._refilter, names="value")
        self.position.observe(self._show, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.variant, self.label, self.error_type]),
                                    widgets.HBox([self.position, self.count]), self.card])
        self._refilter()

    @property
    def selected(self) -> pd.DataFrame:
        return filter_errors(self.errors, self.variant.value, self.label.value, self.error_type.value)

    def _refilter(self, _change: object = None) -> None:
        self._rows = self.selected
        self.position.max = max(0, len(self._rows) - 1)
        self.position.value = 0
        self._show()

    def _show(self, _change: object = None) -> None:
        self.count.value = f"{len(self._rows)} matching error(s)"
        if self._rows.empty:
            self.card.value = "<p>No errors match these filters.</p>"
            return
        error = self._rows.iloc[self.position.value]
        gold = predicted = None
        if self.task.kind == "ner":
            gold = self._gold.get(error["example_id"]) if self._gold is not None else None
            if self._predicted is not None:
                value = self._predicted.get((error["variant"], error["example_id"], error["repeat"]))
                predicted = value if isinstance(value, list) else []
        self.card.value = render_error(error, self.task, gold, predicted)
