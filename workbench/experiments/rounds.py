"""The loop in rounds: prompt variants on the current model, its errors, training points, training
data, LoRA fine-tuning, and the re-test of every point, as one round.

A loop folder (default ``<runs_dir>/<experiment>/rounds/``) holds one folder per finished round,
``1/``, ``2/``, ...; each is a complete run folder (`workbench.experiments.runs`: every command
that reads a run reads a round) plus:

- ``points.parquet``, ``point_assignments.parquet``, ``point_map.parquet``, ``label_issues.parquet``
  and ``report.html`` with its training-points section;
- ``training_data/`` (``examples.parquet``, ``leakage.csv``, ``build.json``, ``test_cases.jsonl``);
- ``finetune/lora/`` (``adapter/``, ``adapter.gguf``, ``training.json``, ``before_after.csv``,
  ``predictions.parquet``) and ``finetune/points_by_method.csv``;
- ``round.json``: the round's number, the model it started from, the adapter it made, the rows
  trained on, the wall time of each stage and the before/after verdict on all test cases.

Round 1 starts from the experiment's embedded model; round n+1 starts from round n's tuned model
(the base GGUF with round n's adapter): its prompt variants run on that model, and its training
continues from round n's adapter weights. A round whose tuned model the paired test finds worse
than its start, on all test cases or on the regression set, is kept for the record but not built
on (``accepted`` false in ``round.json``): the next round starts from the model it started from.
A round trains on its own points' rows and replays the earlier rounds' training rows (so that it
does not unlearn what the last one fixed), never one of its own test cases. Its before/after
compares the model it started from with the model it made, on its own held-out test cases.

A round is built in ``<n>.partial/`` and renamed to ``<n>/`` only when every stage has finished,
so a failed round leaves the earlier rounds' models and artifacts untouched. Running the round
again continues in the same folder: the response cache answers the calls already made and the
training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.frames import read_frame, write_frame
from workbench.experiments.config import Experiment
from workbench.experiments.runs import Run, load_run, redacted_config, run_experiment, write_run
from workbench.finetune.lora import LoraSettings
from workbench.models.base import Model
from workbench.trainingdata.anchors import DEFAULT_SHARE

STAGES = ("variants", "points", "training_data", "fine_tune", "re_test")
ADAPTER = Path("finetune") / "lora" / "adapter.gguf"
ALL_CASES = "(all test cases)"
PEFT_ADAPTER = Path("finetune") / "lora" / "adapter"


class RoundError(RuntimeError):
    """A round cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class RoundSettings:
    """What a round does besides the experiment's own variants: the `variant` the training rows
    are rendered with and the tuned model answers (it must show no few-shot examples), the
    clustering's `distance_threshold` and `min_size`, the `training` settings, whether earlier
    rounds' training rows are replayed (`replay`), and `compare_repeats` (repeats at temperature
    > 0 in the before/after, for consistency; 0: none), `regression_size` (the most regression
    cases the training data keeps), `keep_worse` (build on a tuned model even when the paired
    test finds it worse than its start) and `anchors` (pool examples added to balance the training
    labels, at most this share of the points' rows; 0: none; `trainingdata.anchors`)."""

    variant: str = "zero_shot"
    distance_threshold: float = 0.7
    min_size: int = 2
    training: LoraSettings = field(default_factory=lambda: LoraSettings(epochs=2, checkpoint_every=10))
    replay: bool = True
    compare_repeats: int = 0
    regression_size: int = 50
    keep_worse: bool = False
    anchors: float = DEFAULT_SHARE


@dataclass
class Round:
    """A finished round: its `number`, its folder `path`, the `run` of the prompt variants, and
    `record` (``round.json``: ``round``, ``started_from``, ``adapter``, ``stages`` (seconds per
    stage), ``counts`` and ``all_test_cases``)."""

    number: int
    path: Path
    run: Run
    record: dict[str, Any]

    @property
    def adapter(self) -> Path | None:
        """The GGUF adapter the round made (None when it had nothing to train on)."""
        path = self.path / ADAPTER
        return path if path.exists() else None

    def frame(self, relative: str) -> pd.DataFrame:
        """A frame the round wrote, by its path under the round folder (Parquet or CSV)."""
        path = self.path / relative
        if not path.exists():
            return pd.DataFrame()
        return read_frame(path) if path.suffix == ".parquet" else pd.read_csv(path)


def loop_folder(experiment: Experiment) -> Path:
    """Where an experiment's rounds live by default: ``<run_dir>/rounds``."""
    return experiment.run_dir / "rounds"


def finished_rounds(folder: str | Path) -> list[int]:
    """The numbers of the finished rounds in `folder`, in order."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(int(path.name) for path in folder.iterdir()
                  if path.is_dir() and path.name.isdigit() and (path / "round.json").exists())


def load_round(path: str | Path) -> Round:
    """Read a finished round folder back."""
    path = Path(path)
    if not (path / "round.json").exists():
        raise FileNotFoundError(f"{path} is not a finished round (no round.json): run `workbench loop <config>`")
    record = json.loads((path / "round.json").read_text(encoding="utf-8"))
    return Round(int(record["round"]), path, load_run(path), record)


def load_rounds(folder: str | Path) -> list[Round]:
    """Every finished round in `folder`, in order."""
    return [load_round(Path(folder) / str(number)) for number in finished_rounds(folder)]


def run_round(experiment: Experiment, *, folder: str | Path | None = None, settings: RoundSettings | None = None,
              progress: bool = True, log: Any = print, encoder: Any = None) -> Round:
    """Run the next round of `experiment`'s loop in `folder` (default `loop_folder`) and return it
    (see the module docstring). `log` receives one line per stage; `encoder` embeds texts for the
    clustering and the leakage checks (default: the sentence encoder).

    Raises RoundError when the experiment's model is not the embedded one (local LoRA tunes the
    embedded model) or the last round had nothing left to train on; the stages' own errors (an
    unusable training row, a failed conversion) propagate with the ``.partial`` folder kept."""
    settings = settings or RoundSettings()
    folder = Path(folder) if folder is not None else loop_folder(experiment)
    config = dict(experiment.model_config)
    if config.get("kind", "embedded") != "embedded":
        raise RoundError(f"experiment {experiment.name} uses a {config.get('kind')!r} model; the loop fine-tunes the "
                         "embedded model locally: set `model: {kind: embedded}` (hosted fine-tuning is "
                         "workbench.models.openai_finetuning)")
    if config.get("lora_path"):
        raise RoundError(f"experiment {experiment.name}'s model already has a lora_path: the loop chooses each round's "
                         "adapter itself; remove it from the config")
    earlier = load_rounds(folder)
    previous = earlier[-1] if earlier else None
    if previous is not None and previous.adapter is None:
        raise RoundError(f"round {previous.number} in {previous.path} had nothing to train on "
                         f"({previous.record.get('stopped')}): the loop has ended; change the experiment (more "
                         "data, other variants) and start a new loop folder")
    number = previous.number + 1 if previous else 1
    # The model to build on: the last round whose tuned model was kept (not worse than its start).
    start = next((r for r in reversed(earlier) if r.record.get("accepted")), None)
    work = folder / f"{number}.partial"
    work.mkdir(parents=True, exist_ok=True)
    if start is not None:
        config["lora_path"] = str(start.adapter.resolve())
    from workbench.models.registry import model_from_config

    model = model_from_config(config)
    stages: dict[str, float] = {}
    record: dict[str, Any] = {
        "round": number, "experiment": experiment.name,
        "started_from": f"round {start.number}" if start else "base model",
        "start_adapter": config.get("lora_path"), "variant": settings.variant, "stages": stages,
        "settings": {"distance_threshold": settings.distance_threshold, "min_size": settings.min_size,
                     "replay": settings.replay, "compare_repeats": settings.compare_repeats,
                     "anchors": settings.anchors,
                     "training": {key: value for key, value in vars(settings.training).items()}},
    }

    if encoder is None:
        from workbench.points.encoder import SentenceEncoder

        encoder = SentenceEncoder()
    with _stage("variants", stages, log):
        run = _run_variants(experiment, work, model, config, progress)
    with _stage("points", stages, log):
        points, assignments = _points(run, settings, encoder)
    trainable = points[points["kind"].isin(["point", "other"])] if not points.empty else points
    if trainable.empty:
        record["stopped"] = "no errors" if points.empty else "no training points (only suspected label errors)"
        log(f"round {number}: {record['stopped']}; nothing to train")
        return _finish(work, folder / str(number), run, record)
    with _stage("training_data", stages, log):
        examples, train, data_counts = _training_data(run, points, assignments, experiment, settings, folder, work,
                                                      encoder)
    with _stage("fine_tune", stages, log):
        from workbench.finetune.checks import check_training_rows

        check_training_rows(train, run.task)
        trained = _fine_tune(train, work, settings, config, start, progress)
    with _stage("re_test", stages, log):
        table = _re_test(examples, run, model, config, work, settings, experiment, points)
    every = table[table["point_id"] == ALL_CASES].iloc[0]
    record["counts"] = {
        "examples": int(run.dataset["example_id"].nunique()), "errors": int(len(assignments)),
        "points": int((points["kind"] == "point").sum()), "points_and_other": int(len(trainable)),
        "train_rows": int(len(train)), **data_counts,
        "test_cases": int(examples.loc[examples["split"] == "test", "example_id"].nunique()),
        "training_steps": trained["steps"],
    }
    record["adapter"] = str(ADAPTER)
    worse = [name for name, key in (("all test cases", ALL_CASES), ("the regression set", "regression"))
             if (table.loc[table["point_id"] == key, "verdict"] == "worse").any()]
    record["accepted"] = settings.keep_worse or not worse
    record["rejected_because"] = None if record["accepted"] else f"worse than its start on {' and '.join(worse)}"
    if not record["accepted"]:
        log(f"round {number}: the tuned model is {record['rejected_because']} (paired test): kept for the record, "
            "not built on; the next round starts from the model this one started from")
    record["all_test_cases"] = {key: _plain(every[key]) for key in ("cases", "metric", "base", "tuned", "verdict",
                                                                     "p_value")}
    return _finish(work, folder / str(number), run, record)


@contextmanager
def _stage(name: str, stages: dict[str, float], log: Any) -> Iterator[None]:
    started = time.monotonic()
    log(f"[{name}] ...")
    yield
    stages[name] = round(time.monotonic() - started, 2)
    log(f"[{name}] done in {stages[name]:.1f} s")


def _run_variants(experiment: Experiment, work: Path, model: Model, config: dict[str, Any], progress: bool) -> Run:
    run = run_experiment(replace(experiment, run_dir=work), model=model, progress=progress)
    source = dict(experiment.source, model=config)
    return write_run(replace(run, config=redacted_config(source)), work)


def _points(run: Run, settings: RoundSettings, encoder: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    from workbench.evaluation.errors import find_errors
    from workbench.points.cluster import ErrorClusterer
    from workbench.points.label_issues import find_label_issues
    from workbench.reporting.sections import write_report

    errors = find_errors(run.predictions, run.dataset, run.task)
    issues = find_label_issues(run.predictions, run.dataset, run.task)
    clusterer = ErrorClusterer(distance_threshold=settings.distance_threshold, min_size=settings.min_size,
                               encoder=encoder)
    clusterer.fit(errors, run.predictions, run.task, issues)
    write_frame(clusterer.points_, run.path / "points.parquet")
    write_frame(clusterer.assignments_, run.path / "point_assignments.parquet")
    write_frame(issues, run.path / "label_issues.parquet")
    write_frame(clusterer.map_, run.path / "point_map.parquet")
    write_report(run.path / "report.html", run.task, run.dataset, run.predictions,
                 title=f"{run.name}: round {run.path.name.split('.')[0]}", points=clusterer.points_,
                 point_map=clusterer.map_)
    return clusterer.points_, clusterer.assignments_


def _training_data(run: Run, points: pd.DataFrame, assignments: pd.DataFrame, experiment: Experiment,
                   settings: RoundSettings, folder: Path, work: Path,
                   encoder: Any) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(this round's training-data frame, the rows to train on, counts).

    The rows to train on are this round's train rows, one per example, then (with `replay`) the
    earlier rounds' that are neither here already, nor a test case here, nor a near-duplicate of
    one (column ``replayed``). A test case an earlier round trained on is dropped: the model this
    round starts from has seen its answer, so it would not be held out."""
    from dataclasses import replace as replace_data

    from workbench.trainingdata.examples import build_training_data, one_row_per_example
    from workbench.trainingdata.leakage import find_leaks, leakage_report
    from workbench.trainingdata.openai_jsonl import write_test_cases

    data = build_training_data(points, assignments, run.dataset, run.task, pool=experiment.examples,
                               variant=settings.variant, regression_size=settings.regression_size,
                               anchors=settings.anchors, encoder=encoder)
    earlier = [read_frame(folder / str(n) / "training_data" / "train_rows.parquet") for n in finished_rounds(folder)]
    earlier = [one_row_per_example(rows) for rows in earlier if not rows.empty]
    old = pd.concat(earlier, ignore_index=True).drop_duplicates("example_id", keep="last") if earlier else None
    examples = data.examples
    seen = examples["split"].eq("test") & examples["example_id"].isin(set(old["example_id"]) if old is not None
                                                                       else set())
    examples = examples[~seen].reset_index(drop=True)
    train = one_row_per_example(examples[examples["split"] == "train"]).assign(replayed=False)
    replayed = 0
    if settings.replay and old is not None:
        tests = examples[examples["split"] == "test"]
        candidates = old[~old["example_id"].isin(set(tests["example_id"]) | set(train["example_id"]))]
        candidates = candidates.assign(split="train")
        leaks = find_leaks(pd.concat([tests, candidates], ignore_index=True), encoder)
        candidates = candidates[~candidates["example_id"].isin(set(leaks["train_example"]))]
        train = pd.concat([train, candidates.assign(replayed=True)], ignore_index=True)
        replayed = len(candidates)
    data = replace_data(data, examples=examples, leakage=leakage_report(examples, find_leaks(examples, encoder)))
    data.write(work / "training_data", overwrite=True)
    write_test_cases(examples, work / "training_data" / "test_cases.jsonl", run.task, overwrite=True)
    write_frame(train, work / "training_data" / "train_rows.parquet")
    return examples, train, {"replayed_rows": replayed, "tests_seen_dropped": int(seen.sum())}


def _fine_tune(train: pd.DataFrame, work: Path, settings: RoundSettings, config: dict[str, Any],
               start: Round | None, progress: bool) -> dict[str, Any]:
    from workbench.finetune.gguf_adapter import train_for_llama_cpp

    if settings.training.method != "lora":
        raise RoundError("the loop serves each round's model in llama.cpp, which loads LoRA adapters only: use "
                         "method 'lora' (compare soft prompts with `workbench finetune --method prompt_tuning`)")
    names = [f"example {e} (point {p}{', replayed' if r else ''})"
             for e, p, r in zip(train["example_id"], train["point_id"], train["replayed"])]
    trained, _ = train_for_llama_cpp(list(train["messages"]), work / ADAPTER.parent, settings=settings.training,
                                     model_path=config.get("model_path"), names=names, progress=progress,
                                     start_from=start.path / PEFT_ADAPTER if start is not None else None)
    return {"steps": trained.steps, "losses": trained.losses}


def _re_test(examples: pd.DataFrame, run: Run, model: Model, config: dict[str, Any], work: Path,
             settings: RoundSettings, experiment: Experiment, points: pd.DataFrame) -> pd.DataFrame:
    from workbench.finetune.before_after import before_after
    from workbench.finetune.methods import points_by_method
    from workbench.models.registry import model_from_config

    tuned = model_from_config({**config, "lora_path": str((work / ADAPTER).resolve())})
    best = best_variant(run)
    result = before_after(examples, run.task, model, tuned, variant=settings.variant, cache=work / "cache.sqlite",
                          options=experiment.options, repeats=settings.compare_repeats,
                          best_variant=best if best != settings.variant else None, pool=experiment.examples)
    write_before_after(result, work / "finetune" / "lora")
    points_by_method(points, {"lora": result.table}).to_csv(work / "finetune" / "points_by_method.csv", index=False)
    return result.table


def best_variant(run: Run) -> str:
    """The variant of `run` with the highest headline score (the first of equals)."""
    summary = run.summary()
    return str(summary.sort_values(run.task.kind.summary_column, ascending=False, kind="stable")["variant"].iloc[0])


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


def _finish(work: Path, final: Path, run: Run, record: dict[str, Any]) -> Round:
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (work / "round.json").write_text(json.dumps(record, indent=2, default=_plain), encoding="utf-8")
    if final.exists():  # a finished round is never overwritten; this one is left beside it
        raise RoundError(f"{final} exists already; the new round stays in {work}")
    shutil.rmtree(work / "finetune" / "lora" / "checkpoints", ignore_errors=True)  # the adapter is saved
    os.replace(work, final)
    return load_round(final)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value
