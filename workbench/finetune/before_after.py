"""Before and after fine-tuning, per training point: the base and the tuned model on each point's
held-out test cases, the regression set and all test cases, with paired tests.

Both models answer the same test cases with the same prompt variant (the one the training rows
were rendered with), through the same runner and cache. For every group of test cases the tuned
model is compared with the base on the cases both answered by the evaluation stage's paired test
(`compare_variants`: McNemar's test for accuracy, a paired bootstrap otherwise); the p-values of
the per-point comparisons are Holm-adjusted together (the regression set and all test cases are
tests of their own), and the verdict rests on the adjusted one.
A point has few test cases: most comparisons are small samples, and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.core.task import Task
from workbench.evaluation.significance import compare_variants, holm
from workbench.models.base import GenerationOptions, Model
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import run_variants
from workbench.trainingdata.examples import REGRESSION
from workbench.trainingdata.scoring import ALL, SMALL, gold_of, test_groups

BEFORE_AFTER_COLUMNS = ["point_id", "cases", "metric", "base", "tuned", "difference", "low", "high", "p_value",
                        "p_adjusted", "method", "verdict", "small"]


@dataclass
class BeforeAfter:
    """`table`: one row per point, then "regression" and all test cases (`BEFORE_AFTER_COLUMNS`;
    ``verdict`` is "better", "worse" or "no clear difference"); `predictions`: both models'
    answers (variants ``base`` and ``tuned``)."""

    table: pd.DataFrame
    predictions: pd.DataFrame


def before_after(examples: pd.DataFrame, task: Task, base: Model, tuned: Model, *, variant: str = "zero_shot",
                 cache: ResponseCache | str | Path | None = None, options: GenerationOptions | None = None,
                 progress: bool = False, seed: int = 0) -> BeforeAfter:
    """Score `base` and `tuned` on the test cases of `examples` (the training-data frame), per
    point, with paired tests (see the module docstring)."""
    gold = gold_of(examples, task)
    answers = []
    for name, model in (("base", base), ("tuned", tuned)):
        predictions = run_variants(task, gold, [variant], model, cache=cache, options=options, progress=progress)
        answers.append(predictions.assign(variant=name))
    predictions = pd.concat(answers, ignore_index=True)
    rows = []
    for point, ids in test_groups(examples):
        mine = predictions[predictions["example_id"].isin(ids)]
        result = compare_variants(mine, gold[gold["example_id"].isin(ids)], task, "tuned", "base", seed=seed)
        rows.append({"point_id": point, "cases": result.examples, "metric": result.metric, "base": result.b,
                     "tuned": result.a, "difference": result.difference, "low": result.low, "high": result.high,
                     "p_value": result.p_value, "method": result.method, "small": result.examples < SMALL})
    table = pd.DataFrame(rows)
    # The per-point comparisons are one family; the regression set and all test cases are each a
    # single test of their own.
    family = ~table["point_id"].isin([ALL, REGRESSION])
    table["p_adjusted"] = table["p_value"]
    table.loc[family, "p_adjusted"] = holm(list(table.loc[family, "p_value"]))
    table["verdict"] = [_verdict(d, p) for d, p in zip(table["difference"], table["p_adjusted"])]
    return BeforeAfter(table[BEFORE_AFTER_COLUMNS], predictions)


def _verdict(difference: float, p_adjusted: float, alpha: float = 0.05) -> str:
    if p_adjusted >= alpha or difference == 0:
        return "no clear difference"
    return "better" if difference > 0 else "worse"
