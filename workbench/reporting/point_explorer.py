"""A training-point explorer for notebooks: pick a point, read its card, step through its errors.

The point's card is the report's own (`point_card` in the shared card template), and each member
error is shown with the notebook error browser's card (`workbench.reporting.browser.render_error`),
so a point looks the same in the notebook as in the report.
"""

from __future__ import annotations

import pandas as pd

from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.reporting.browser import ALL, render_error
from workbench.reporting.html import card_macro, point_card_data


def render_point(point: pd.Series, dataset: pd.DataFrame, task: Task, representatives: int = 3) -> str:
    """HTML card for one row of the points table, with the card's CSS in front: name,
    description, size, share of the errors, action, fixed_by and `representatives` examples."""
    data = point_card_data(pd.DataFrame([point]), dataset, task.kind, representatives)[0]
    return str(card_macro("point_card")(data, True))


def points_by_action(points: pd.DataFrame, action: str = ALL) -> pd.DataFrame:
    """The rows of `points` whose ``action`` is `action` (all of them for ``"(all)"``)."""
    return points if action == ALL else points[points["action"] == action]


class PointExplorer:
    """ipywidgets explorer over the training points; display `explorer.widget` in a notebook.

    `points` and `assignments` are `ErrorClusterer.points_` and ``assignments_`` (or the run
    folder's ``points.parquet`` and ``point_assignments.parquet``, reviewed or not); `dataset`
    gives each example's text and gold target, `predictions` each error's whole prediction.
    Controls: the action (prompt change, definition, fine-tune, relabel), the point, and a
    slider over the point's error rows.
    """

    def __init__(self, points: pd.DataFrame, assignments: pd.DataFrame, task: Task, dataset: pd.DataFrame,
                 predictions: pd.DataFrame | None = None):
        import ipywidgets as widgets

        require_columns(points, ["point_id", "name", "action", "representatives"], "points",
                        "pass ErrorClusterer's points_")
        require_columns(assignments, ["example_id", "variant", "point_id", "error_type", "text"], "assignments",
                        "pass ErrorClusterer's assignments_")
        self.points, self.assignments, self.task, self.dataset = points, assignments, task, dataset
        self._gold = dataset.set_index("example_id")[task.kind.target_column]
        self._predicted = (predictions.set_index(["variant", "example_id", "repeat"])["prediction"]
                           if predictions is not None else None)
        self.action = widgets.Dropdown(options=[ALL, *dict.fromkeys(points["action"])], description="action")
        self.point = widgets.Dropdown(description="point", layout=widgets.Layout(width="60%"))
        self.position = widgets.IntSlider(min=0, max=0, description="error")
        self.count = widgets.Label()
        self.card = widgets.HTML()
        self.error = widgets.HTML()
        self.action.observe(self._refilter, names="value")
        self.point.observe(self._show_point, names="value")
        self.position.observe(self._show_error, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.action, self.point]), self.card,
                                    widgets.HBox([self.position, self.count]), self.error])
        self._refilter()

    def _refilter(self, _change: object = None) -> None:
        shown = points_by_action(self.points, self.action.value)
        self.point.options = [(f"{pid} · {name} ({size})", pid)
                              for pid, name, size in zip(shown["point_id"], shown["name"], shown["size"])]
        self.point.value = self.point.options[0][1] if self.point.options else None
        self._show_point()

    def _show_point(self, _change: object = None) -> None:
        if self.point.value is None:
            self.card.value, self._rows = "<p>No training points.</p>", self.assignments.iloc[0:0]
        else:
            point = self.points.set_index("point_id").loc[self.point.value].copy()
            point["point_id"] = self.point.value
            self.card.value = render_point(point, self.dataset, self.task)
            self._rows = self.assignments[self.assignments["point_id"] == self.point.value].reset_index(drop=True)
        self.position.max = max(0, len(self._rows) - 1)
        self.position.value = 0
        self._show_error()

    def _show_error(self, _change: object = None) -> None:
        if self._rows.empty:
            self.count.value, self.error.value = "0 errors", ""
            return
        row = self._rows.iloc[self.position.value]
        predicted = None
        if self._predicted is not None:
            predicted = self._predicted.get((row["variant"], row["example_id"], row.get("repeat", 0)))
        self.count.value = f"{self.position.value + 1} of {len(self._rows)} errors"
        self.error.value = render_error(row, self.task, gold=self._gold.get(row["example_id"]), predicted=predicted)
