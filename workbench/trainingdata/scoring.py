"""Scores per training point: any model's answers on each point's held-out test cases.

The same scorer and intervals as the evaluation stage (`bootstrap_ci`: Wilson's interval for
accuracy, else a BCa bootstrap over examples), applied to the test cases of one point at a time,
and to all test cases together. A point has few test cases, so its interval is wide: the ``small``
column says when fewer than `SMALL` cases stand behind a score.
"""

from __future__ import annotations

import pandas as pd

from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.evaluation.significance import bootstrap_ci

SMALL = 20  # fewer test cases than this: read the score as a hint, not a measurement
ALL_TEST_CASES = "(all test cases)"


def gold_of(examples: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The test rows of the training-data frame as a gold dataset: ``example_id``, ``text`` and
    the task's target column, one row per example."""
    require_columns(examples, ["example_id", "split", "text", "target"], "examples", "pass TrainingData.examples")
    test = examples[examples["split"] == "test"].drop_duplicates("example_id")
    return pd.DataFrame({"example_id": test["example_id"].to_numpy(), "text": test["text"].to_numpy(),
                         task.kind.target_column: test["target"].to_numpy()})


def test_groups(examples: pd.DataFrame) -> list[tuple[str, set[str]]]:
    """(point_id, its test example ids) per point in frame order, then all test cases (`ALL_TEST_CASES`)."""
    test = examples[examples["split"] == "test"]
    groups = [(point, set(rows["example_id"])) for point, rows in test.groupby("point_id", sort=False)]
    return groups + [(ALL_TEST_CASES, set(test["example_id"]))]


def score_points(predictions: pd.DataFrame, examples: pd.DataFrame, task: Task, *, seed: int = 0) -> pd.DataFrame:
    """Per variant of `predictions` and per point of `examples` (its test cases), the task's
    headline metric with its interval, then over all test cases (``point_id`` "(all test cases)").

    Columns: ``variant``, ``point_id``, ``cases`` (test examples scored), ``metric``, ``value``,
    ``low``, ``high`` (95% interval), ``method``, ``small`` (fewer than `SMALL` cases). Test cases
    the predictions lack are left out of ``cases``."""
    require_columns(predictions, ["variant", "example_id", "prediction"], "predictions")
    gold = gold_of(examples, task)
    rows = []
    for point, ids in test_groups(examples):
        mine = predictions[predictions["example_id"].isin(ids)]
        if mine.empty:
            continue
        scored = bootstrap_ci(mine, gold[gold["example_id"].isin(ids)], task, seed=seed)
        for row in scored.to_dict("records"):
            rows.append({"variant": row["variant"], "point_id": point, "cases": int(row["examples"]),
                         "metric": row["metric"], "value": row["value"], "low": row["low"], "high": row["high"],
                         "method": row["method"], "small": int(row["examples"]) < SMALL})
    return pd.DataFrame(rows, columns=["variant", "point_id", "cases", "metric", "value", "low", "high", "method",
                                       "small"])
