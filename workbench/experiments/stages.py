"""The stages after a run, one function each, shared by the CLI commands and the loop's rounds.

``workbench points``, ``workbench data`` and ``workbench finetune`` run these stages one command at a
time on a run folder; `rounds.run_round` runs them one after another in a round's folder. Both call
the functions here, so that a round's training points, training data and re-test are the ones the
commands would have made from the same run (the same templates, the same files, the same tables):

- `cluster_run_errors`: a run's errors and suspected label errors, grouped into training points,
  written into the run folder (`points.run_points.POINT_FILES`) with the report's points section;
- `build_run_training_data` and `write_training_data`: training rows and held-out test cases for the
  points, rendered with the run's own templates, and the files ``workbench data`` writes;
- training: `workbench.finetune.local_models.train_for_config` (one function already);
- `retest`: the base and the tuned model on every point's test cases (`before_after`), the tables
  in the method's folder and ``finetune/points_by_method.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.frames import read_frame, write_frame
from workbench.experiments.runs import Run
from workbench.models.base import GenerationOptions, Model
from workbench.points.run_points import RunPoints, write_points
from workbench.trainingdata.anchors import DEFAULT_SHARE
from workbench.trainingdata.examples import REGRESSION_SIZE, TrainingData
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE


@dataclass(frozen=True)
class ClusteredRun:
    """What `cluster_run_errors` made: the point files as written (`points`), the error rows they
    group (`errors`, `find_errors`' frame) and the run's report with its points section."""

    points: RunPoints
    errors: pd.DataFrame
    report: Path


def cluster_run_errors(run: Run, *, distance_threshold: float = 0.7, min_size: int = 2,
                       corrections: pd.DataFrame | None = None, encoder: Any = None,
                       predictions: pd.DataFrame | None = None, voters: Sequence[str] | None = None,
                       title: str | None = None) -> ClusteredRun:
    """Group the errors of `run` into training points (`ErrorClusterer`) and write them into its
    folder: ``points.parquet``, ``point_assignments.parquet``, ``label_issues.parquet``,
    ``point_map.parquet``, and ``report.html`` with the training-points section.

    `predictions` are the answers whose errors are clustered (default: all of the run's; a round
    leaves out the base model's answers with the tuned prompt). Suspected label errors
    (`find_label_issues`) are the votes of the `voters` variants (default: every variant in
    `predictions`) with the annotators' `corrections` (`pull_corrections`' frame), if any.
    `encoder` embeds the texts (default: the cached sentence encoder)."""
    from workbench.evaluation.errors import find_errors
    from workbench.points.cluster import ErrorClusterer
    from workbench.points.label_issues import find_label_issues
    from workbench.reporting.sections import write_report

    answers = run.predictions if predictions is None else predictions
    errors = find_errors(answers, run.dataset, run.task)
    votes = answers if voters is None else answers[answers["variant"].isin(list(voters))]
    issues = find_label_issues(votes, run.dataset, run.task, corrections)
    clusterer = ErrorClusterer(distance_threshold=distance_threshold, min_size=min_size, encoder=encoder)
    clusterer.fit(errors, answers, run.task, issues)
    write_points(run.path, clusterer.points_, clusterer.assignments_, issues, clusterer.map_)
    report = write_report(run.path / "report.html", run.task, run.dataset, run.predictions,
                          title=title or f"{run.name}: prompt variants", points=clusterer.points_,
                          point_map=clusterer.map_)
    stored = RunPoints(clusterer.points_, clusterer.assignments_, issues, clusterer.map_, folder=run.path)
    return ClusteredRun(points=stored, errors=errors, report=report)


def build_run_training_data(run: Run, points: pd.DataFrame, assignments: pd.DataFrame, *,
                            pool: pd.DataFrame | None, variant: str = "tuned",
                            corrections: pd.DataFrame | None = None, anchor_share: float = DEFAULT_SHARE,
                            threshold: float = NEAR_DUPLICATE_COSINE, regression_size: int = REGRESSION_SIZE,
                            encoder: Any = None, trained_texts: Sequence[str] = ()) -> TrainingData:
    """Training rows and held-out test cases for the training points of `run` (`points`,
    `assignments`: the frames `cluster_run_errors` wrote), from its evaluated examples and the
    labelled `pool` (``example_id``, ``text`` and the task's target; None: members and corrections
    only), rendered with `variant` from the run's own template folder, as `build_training_data`
    does with the same arguments (`anchor_share` is its ``anchors``)."""
    from workbench.trainingdata.examples import build_training_data

    return build_training_data(points, assignments, run.dataset, run.task, pool=pool, corrections=corrections,
                               variant=variant, anchors=anchor_share, threshold=threshold,
                               regression_size=regression_size, template_dir=run.template_dir, encoder=encoder,
                               trained_texts=trained_texts)


def write_training_data(data: TrainingData, folder: str | Path, task: Any, *, overwrite: bool = False) -> Path:
    """`data` written to `folder` (a run's ``training_data/``): ``examples.parquet``,
    ``leakage.csv``, ``near_duplicates.csv``, ``build.json`` and ``test_cases.jsonl`` (the test
    cases as a dataset ``workbench run`` evaluates). Refuses to replace them unless `overwrite`.
    Returns the test cases' file."""
    from workbench.trainingdata.openai_jsonl import write_test_cases

    folder = Path(folder)
    data.write(folder, overwrite=overwrite)
    return write_test_cases(data.examples, folder / "test_cases.jsonl", task, overwrite=overwrite)


def best_variant(run: Run) -> str:
    """The variant of `run` with the highest headline score (the first of equals)."""
    summary = run.summary()
    return str(summary.sort_values(run.task.kind.summary_column, ascending=False, kind="stable")["variant"].iloc[0])


def retest(run: Run, examples: pd.DataFrame, base: Model, tuned: Model, folder: str | Path, *, variant: str,
           options: GenerationOptions | None = None, repeats: int = 0, pool: pd.DataFrame | None = None,
           progress: bool = False) -> tuple[Any, pd.DataFrame]:
    """`base` and `tuned` on every test case of the training-data frame `examples`, answered with
    `variant` (the prompt the rows were trained with), and the base also with the run's best
    variant when that is another (`before_after`; a few-shot best variant draws its shots from
    `pool`, test cases taken out), rendered from the run's own template folder as its training rows
    were. The answers are cached in the run's ``cache.sqlite``.

    Writes `folder` (``finetune/<method>/``: `write_before_after`) and the run's
    ``finetune/points_by_method.csv`` (`points_by_method` over every method with a table there).
    Returns (the `BeforeAfter`, the points-by-method frame)."""
    from workbench.finetune.before_after import before_after
    from workbench.finetune.methods import points_by_method, read_method_tables

    best = best_variant(run)
    result = before_after(examples, run.task, base, tuned, variant=variant, cache=run.path / "cache.sqlite",
                          options=options, repeats=repeats, best_variant=best if best != variant else None,
                          pool=pool, progress=progress, template_dir=run.template_dir)
    write_before_after(result, Path(folder))
    methods = points_by_method(read_frame(run.path / "points.parquet"), read_method_tables(run.path / "finetune"))
    methods.to_csv(run.path / "finetune" / "points_by_method.csv", index=False)
    return result, methods


def write_before_after(result: Any, folder: Path) -> None:
    """`before_after`'s tables to `folder`: ``before_after.csv``, ``versus_best.csv`` (when the
    base model's best prompt was compared), ``efficiency.csv``, ``consistency.csv`` (with
    repeats) and ``predictions.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(folder / "before_after.csv", index=False)
    if result.versus_best is not None:
        result.versus_best.to_csv(folder / "versus_best.csv", index=False)
    result.efficiency.to_csv(folder / "efficiency.csv", index=False)
    if not result.consistency.empty:
        result.consistency.to_csv(folder / "consistency.csv", index=False)
    write_frame(result.predictions, folder / "predictions.parquet")
