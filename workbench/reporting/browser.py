"""An error browser for notebooks: filter errors by variant, label and type; see each example's card.

A card is the report's own error card (`workbench.reporting.html.render_card`, one Jinja2 template
with autoescaping), so the notebook and the report show an answer the same way: entities
highlighted over the text, labels as chips, as the task's kind decides (`TaskKind.view`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.kinds.base import AnswerView
from workbench.core.task import Task
from workbench.reporting.html import ErrorCard, card_answer, card_macro, highlight_view, render_card

ALL = "(all)"
_PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197",
            "#e4e7d2"]
# Shown instead of a prediction the browser was not given (see `render_error`).
_UNKNOWN = AnswerView(empty_note="the whole answer is not in this error row: give the browser the run's predictions")


def label_colours(task: Task) -> dict[str, str]:
    """A fixed colour per label, in the task's label order (for widgets that colour by label)."""
    return {label: _PALETTE[index % len(_PALETTE)] for index, label in enumerate(task.label_names)}


def render_spans(text: str, spans: list[dict[str, Any]] | None, task: Task, title: str) -> str:
    """HTML of a `title` and `text` with gold `spans` (``start``, ``end``, ``label``) highlighted,
    escaped, as on the report's error cards. `task` is kept for callers of the older signature."""
    return str(card_macro("titled_highlights")(title, highlight_view(text, spans or [])))


def render_error(error: pd.Series, task: Task, gold: Any = None, predicted: Any = None,
                 hallucinations: list[Any] | None = None) -> str:
    """HTML card for one error row of `find_errors`, with the card's CSS in front: the text, the
    gold target and the predicted answer as the kind shows them, the error type, variant and the
    raw answer.

    `gold` and `predicted` are the example's whole gold target and the whole prediction of the
    error's prediction row. They default to the row's own ``gold`` and ``predicted``, which are
    whole answers for kinds compared whole (classification, multi-label); where a row holds one
    part of an answer (an NER span, a dict), pass them, as `ErrorBrowser` does.
    """
    text = str(error["text"])
    own_part = isinstance(error.get("gold"), dict) or isinstance(error.get("predicted"), dict)
    if gold is None and not own_part:
        gold = error.get("gold")
    if predicted is None and not own_part:
        predicted = error.get("predicted")
    parse_error = error.get("parse_error")
    answer = card_answer(
        task.kind, text, gold, variant=error["variant"], repeat=error.get("repeat", 0),
        error_types=error["error_type"], predicted=None if is_missing(predicted) else predicted,
        parse_error=parse_error, hallucinations=hallucinations, raw_response=error.get("raw_response"),
    )
    if own_part and is_missing(predicted) and not isinstance(parse_error, str):
        answer = replace(answer, view=_UNKNOWN)  # a usable answer, but not given
    card = ErrorCard(
        example_id=str(error["example_id"]), note=f"{error['error_type']} · variant {error['variant']}", text=text,
        gold=AnswerView() if is_missing(gold) else task.kind.view(text, gold), answers=(answer,),
    )
    return str(render_card(card, with_style=True))


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

    `dataset` supplies each example's whole gold target and `predictions` (optional) the whole
    prediction of each error's row, so a card shows the whole example, not just the one span or
    label in error. Without `predictions`, cards of kinds whose error rows hold a part of an
    answer (NER) say that the prediction is not known.
    """

    def __init__(
        self, errors: pd.DataFrame, task: Task, dataset: pd.DataFrame, predictions: pd.DataFrame | None = None
    ):
        import ipywidgets as widgets

        self.errors = errors.reset_index(drop=True)
        self.task = task
        self._gold = dataset.set_index("example_id")[task.kind.target_column]
        self._predicted = (
            predictions.set_index(["variant", "example_id", "repeat"]) if predictions is not None else None
        )
        options = lambda values: [ALL, *sorted({str(v) for v in values})]  # noqa: E731
        found_types = set(self.errors["error_type"].astype(str))
        error_types = [kind for kind in task.kind.error_types if kind in found_types]
        self.variant = widgets.Dropdown(options=options(self.errors["variant"]), description="variant")
        labels = self.errors.apply(error_label, axis=1) if len(self.errors) else []
        self.label = widgets.Dropdown(options=options(labels), description="label")
        self.error_type = widgets.Dropdown(options=[ALL, *error_types, *sorted(found_types - set(error_types))],
                                           description="error type")
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
        gold = self._gold.get(error["example_id"])
        predicted = hallucinations = None
        if self._predicted is not None:
            key = (error["variant"], error["example_id"], error["repeat"])
            if key in self._predicted.index:
                row = self._predicted.loc[key]
                predicted = row["prediction"]
                hallucinations = row.get("hallucinations") if isinstance(row.get("hallucinations"), list) else None
        self.card.value = render_error(error, self.task, gold, predicted, hallucinations)
