"""The loop in rounds: prompt variants on the current model, its errors, training points, training
data, LoRA fine-tuning, and the re-test of every point, as one round.

A loop folder (default ``<runs_dir>/<experiment>/rounds/``) holds one folder per finished round,
``1/``, ``2/``, ...; each is a complete run folder (`workbench.experiments.runs`: every command
that reads a run reads a round) plus:

- ``points.parquet``, ``point_assignments.parquet``, ``point_map.parquet``, ``label_issues.parquet``
  and ``report.html`` with its training-points section;
- ``training_data/`` (``examples.parquet``, ``leakage.csv``, ``build.json``, ``test_cases.jsonl``);
- ``finetune/lora/`` (``adapter/``, ``adapter.gguf`` for the embedded model, ``training.json``,
  ``before_after.csv``, ``predictions.parquet``) and ``finetune/points_by_method.csv``;
- with reference arms (`RoundSettings.arms`, `workbench.experiments.arms`), ``finetune/random/``
  and ``finetune/all/`` (each arm's adapter, rows and answers) and ``finetune/arms.csv``;
- ``round.json``: the round's number, the model it started from (``started_from``,
  ``start_round``), the adapter it made, the rows trained on, the wall time of each stage, the
  before/after verdict on all test cases, the accept gate (``accepted``, ``margin``, ``gate``,
  ``rejected_because``), the ``arms`` summary (with reference arms) and the ``fingerprint`` of the
  settings that decide what the round means.

Round 1 starts from the experiment's local model (`finetune.local_models`: the embedded GGUF,
or a transformers model folder, ``kind: transformers``); round n+1 starts from the last accepted
round's tuned model (the base with its adapter: ``adapter.gguf`` in llama.cpp for the embedded
model, the peft ``adapter/`` in-process for a folder): its prompt variants run on that model, and
its training continues from that adapter's weights. A round is accepted when its tuned model is
not worse than its start by more than `RoundSettings.margin` on all test cases and on the
regression set (`accept_gate`); a rejected round is kept for the record but not built on. Only the
targeted model (``finetune/lora/``) is gated and built on: reference arms are measured beside it.

The model a round starts from descends from a chain of accepted rounds (walked back through
``started_from``, `start_chain`); only that chain counts as what the model has seen. A round
trains on its own points' rows and replays the chain's training rows (so that it does not unlearn
what the last one fixed; source ``replay`` in ``training_data/examples.parquet``, which holds
every row the round trained on), never one of its own test cases; a test case that is one of the
chain's training rows, or a near-duplicate of one (`find_leaks`: equal normalised text or cosine
at the threshold), is dropped, since the starting model has seen its answer. Rejected rounds'
rows are neither replayed nor count as seen. Its before/after compares the model it started from
with the model it made, on its own held-out test cases.

Every round records a fingerprint of the settings that change what a round means (`fingerprint`);
a round whose settings differ from the last finished round's is refused, naming the setting,
unless ``force``: otherwise the comparison would mix example sets and replay rows rendered with
another prompt.

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

from workbench.core.errors import MissingInputError, WorkbenchError
from workbench.core.frames import plain, read_frame, write_frame
from workbench.experiments.arms import REFERENCE_ARMS, check_arms, run_arms
from workbench.experiments.config import Experiment
from workbench.experiments.round_gate import (
    ALL_TEST_CASES,
    accept_gate,
    fingerprint,
    fingerprint_differences,
    strongest_start,
)
from workbench.experiments.runs import Run, load_run, redacted_config, run_experiment, write_run
from workbench.experiments.stages import (
    build_run_training_data,
    cluster_run_errors,
    retest,
    write_training_data,
)
from workbench.finetune.launch import TrainingLaunch, check_launch
from workbench.finetune.lora import AdapterSettings
from workbench.finetune.serving import (
    SERVE_MODES,
    ServedPair,
    ServingError,
    adapter_name,
    has_round,
    pull_checked,
    pull_served_pair,
    served_configs,
    trained_adapters,
)
from workbench.models.base import Model
from workbench.points.cluster import TRAINABLE_KINDS
from workbench.trainingdata.anchors import DEFAULT_SHARE
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE

STAGES = ("variants", "points", "training_data", "fine_tune", "re_test", "arms")
REPLAY = "replay"
ADAPTER = Path("finetune") / "lora" / "adapter.gguf"
PEFT_ADAPTER = Path("finetune") / "lora" / "adapter"


class RoundError(WorkbenchError, RuntimeError):
    """A round cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class RoundSettings:
    """What a round does besides the experiment's own variants: the `variant` the training rows
    are rendered with and the tuned model answers (it must show no few-shot examples), the
    clustering's `distance_threshold` and `min_size`, the `training` settings, whether earlier
    rounds' training rows are replayed (`replay`), and `compare_repeats` (repeats at temperature
    > 0 in the before/after, for consistency; 0: none), `regression_size` (the most regression
    cases the training data keeps), `keep_worse` (build on a tuned model even when the paired
    test finds it worse than its start), `anchor_share` (pool examples added to balance the training
    labels, at most this share of the points' rows; 0: none; `trainingdata.anchors`) and `margin`
    (the accept gate's non-inferiority margin, in the kind's headline metric: a round is built on
    only when its tuned model scores at least its start's score minus `margin` on all test cases
    and on the regression set; `accept_gate`), and `near_duplicate` (the cosine at which two texts
    are one near-duplicate group, kept on one side of the split; `trainingdata.groups`), `arms`
    (the arms the round trains: "targeted", the round's own model, always; "random" and "all",
    references trained on the labelled pool with the same step budget; `workbench.experiments.arms`),
    `serve` (where the re-test answers: "in-process", or "openai-compatible": the experiment's
    ``serve:`` server, `_served_pair`), and `launch` (the trainer every training of the round uses,
    and whether it runs in this process or under torchrun / ``accelerate launch``:
    `finetune.launch.TrainingLaunch`)."""

    variant: str = "tuned"
    distance_threshold: float = 0.7
    min_size: int = 2
    training: AdapterSettings = field(default_factory=lambda: AdapterSettings(epochs=2, checkpoint_every=10))
    replay: bool = True
    compare_repeats: int = 0
    regression_size: int = 50
    keep_worse: bool = False
    anchor_share: float = DEFAULT_SHARE
    margin: float = 0.02
    near_duplicate: float = NEAR_DUPLICATE_COSINE
    arms: tuple[str, ...] = ("targeted",)
    serve: str = "in-process"
    launch: TrainingLaunch = field(default_factory=TrainingLaunch)


@dataclass
class Round:
    """A finished round: its `number`, its folder `path`, the `run` of the prompt variants, and
    `record` (``round.json``: ``round``, ``started_from``, ``start_round``, ``adapter``,
    ``stages`` (seconds per stage), ``counts``, ``all_test_cases``, ``accepted``, ``margin``,
    ``gate``, ``rejected_because`` and ``fingerprint``)."""

    number: int
    path: Path
    run: Run
    record: dict[str, Any]

    @property
    def adapter(self) -> Path | None:
        """The adapter the round's tuned model is served with: the GGUF ``adapter.gguf`` (embedded
        model), else the peft ``adapter/`` folder (a transformers model folder); None when the
        round had nothing to train on."""
        path = self.path / ADAPTER
        if path.exists():
            return path
        peft = self.path / PEFT_ADAPTER
        return peft if (peft / "adapter_config.json").exists() else None

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
        raise MissingInputError(f"{path} is not a finished round (no round.json): run `workbench loop <config>`")
    record = json.loads((path / "round.json").read_text(encoding="utf-8"))
    return Round(int(record["round"]), path, load_run(path), record)


def load_rounds(folder: str | Path) -> list[Round]:
    """Every finished round in `folder`, in order."""
    return [load_round(Path(folder) / str(number)) for number in finished_rounds(folder)]


def started_from_round(record: dict[str, Any]) -> int | None:
    """The number of the round whose tuned model a round (its ``round.json`` `record`) started
    from; None for the base model. Reads ``start_round``, or ``started_from`` ("round 3") in
    records written before it existed."""
    if "start_round" in record:
        return record["start_round"]
    started = str(record.get("started_from") or "")
    return int(started.split()[1]) if started.startswith("round ") else None


def start_chain(rounds: dict[int, Round], start: int | None) -> list[Round]:
    """Round `start` and every round its model descends from (newest first), walked back through
    ``started_from`` in `rounds` (number -> Round); empty for the base model. These are the rounds
    whose training rows the model has seen; rounds beside the chain (rejected ones) are not."""
    chain: list[Round] = []
    while start is not None:
        if start not in rounds:
            raise RoundError(f"the chain of rounds breaks at round {start}: it is not a finished round of this loop "
                             "folder; restore it, or start a new loop folder")
        if any(r.number == start for r in chain):
            raise RoundError(f"round {start} descends from itself in round.json's started_from: the loop folder is "
                             "damaged; start a new one")
        chain.append(rounds[start])
        start = started_from_round(rounds[start].record)
    return chain


def _check_settings(settings: RoundSettings, pool: pd.DataFrame | None = None) -> None:
    """Refuse settings a round cannot use, before any model call (`pool`: the experiment's
    labelled examples, which the reference arms draw from)."""
    from workbench.prompting.variants import parse_variant

    try:
        check_arms(settings.arms, pool)
    except ValueError as error:
        raise RoundError(f"--arms: {error}") from error
    if parse_variant(settings.variant).few_shot:
        raise RoundError(f"--train-variant {settings.variant} shows few-shot examples; the training rows are rendered "
                         "with it and the tuned model answers with it, without examples: choose a variant "
                         "without few_shot (zero_shot, definitions, cot...)")
    if settings.training.method != "lora":
        raise RoundError(f"training method {settings.training.method!r}: the loop trains and serves (for the "
                         "embedded model in llama.cpp) LoRA adapters only: use method 'lora' (compare soft prompts "
                         "with `workbench finetune --method prompt_tuning`)")
    if settings.serve not in SERVE_MODES:
        raise RoundError(f"serve {settings.serve!r}: use one of {', '.join(SERVE_MODES)}")
    if not 0 <= settings.margin < 1:
        raise RoundError(f"--margin must be at least 0 and below 1 (a share of the headline metric), got "
                         f"{settings.margin}")
    check_launch(settings.launch, settings.training)  # TRL or the launcher not installed: said before any call


def _check_fingerprint(previous: Round | None, now: dict[str, Any], force: bool, folder: Path,
                       log: Any) -> list[str]:
    """The settings that differ from the last finished round's when `force` allows them (else
    RoundError naming them); [] when none differ."""
    if previous is None or "fingerprint" not in previous.record:
        return []  # a first round, or rounds recorded before fingerprints: nothing to compare with
    differences = fingerprint_differences(previous.record["fingerprint"], now)
    if not differences:
        return []
    if force:
        log(f"settings differ from round {previous.number}'s (forced): " + "; ".join(differences))
        return differences
    raise RoundError(f"the loop in {folder} ran round {previous.number} with other settings: "
                     + "; ".join(differences) + ". Rounds compared and replayed across settings mix example sets "
                     "and prompts: run with round " + str(previous.number) + "'s settings, start a new loop folder "
                     "(--folder), or pass --force (force=True) to run this round with the new ones")


def run_round(experiment: Experiment, *, folder: str | Path | None = None, settings: RoundSettings | None = None,
              progress: bool = True, log: Any = print, encoder: Any = None, force: bool = False) -> Round:
    """Run the next round of `experiment`'s loop in `folder` (default `loop_folder`) and return it
    (see the module docstring). `log` receives one line per stage; `encoder` embeds texts for the
    clustering and the leakage checks (default: the sentence encoder); `force` runs the round
    even when its settings' `fingerprint` differs from the last finished round's.

    Raises RoundError, before any model call, when the experiment's model is not a local one
    (``embedded`` or ``transformers``: `finetune.local_models`), already names an adapter, the
    training variant shows few-shot examples, the
    training method is not LoRA, the settings differ from the last round's (without `force`) or
    the last round had nothing left to train on; and before training when the round's training
    data has no test case (the training data is written to the ``.partial`` folder to look at).
    The stages' own errors (an unusable training row, a failed conversion) propagate with the
    ``.partial`` folder kept."""
    settings = settings or RoundSettings()
    _check_settings(settings, experiment.examples)
    folder = Path(folder) if folder is not None else loop_folder(experiment)
    begin = _begin_round(experiment, folder, settings, force, log)
    from workbench.finetune.local_models import served_adapter
    from workbench.models.registry import model_from_config
    from workbench.points.encoder import CachedEncoder, cached
    from workbench.prompting.variants import parse_variant

    number, start, config, record, work = begin.number, begin.start, begin.config, begin.record, begin.work
    model = model_from_config(config)
    stages: dict[str, float] = record["stages"]
    # One vector per text for the whole loop, kept on disk so that a resumed or later round does
    # not encode the run and the pool again.
    encoder = CachedEncoder(cached(encoder), path=folder / "embeddings.npz")
    with _stage("variants", stages, log):
        run = _run_variants(experiment, work, model, config, progress, settings.variant)
    with _stage("points", stages, log):
        points, assignments = _points(run, settings, encoder, base_model=start is None,
                                      voters=[parse_variant(v).name for v in experiment.variants])
    trainable = points[points["kind"].isin(TRAINABLE_KINDS)] if not points.empty else points
    if trainable.empty:
        record["stopped"] = "no errors" if points.empty else "no training points (only suspected label errors)"
        log(f"round {number}: {record['stopped']}; nothing to train")
        return _finish(work, folder / str(number), run, record)
    with _stage("training_data", stages, log):
        examples, train, data_counts = _training_data(run, points, assignments, experiment, settings, begin.chain,
                                                      work, encoder)
        encoder.save()
    with _stage("fine_tune", stages, log):
        from workbench.finetune.checks import check_training_rows

        check_training_rows(train, run.task)
        trained = _fine_tune(train, work, settings, config, start, progress)
    with _stage("re_test", stages, log):
        served = _served_pair(experiment, number, start, work, log) if settings.serve == "openai-compatible" else None
        if served is not None:
            record["served"] = {"endpoint": served.tuned.identity["endpoint"], "base": served.base.request_model,
                                "tuned": served.tuned.adapter, "notes": list(served.notes)}
        table, versus_best = _re_test(examples, run, model, config, work, settings, experiment, points, served)
    record["counts"] = {
        "examples": int(run.dataset["example_id"].nunique()), "errors": int(len(assignments)),
        "points": int((points["kind"] == "point").sum()), "points_and_other": int(len(trainable)),
        "train_rows": int(len(train)), **data_counts,
        "test_cases": int(examples.loc[examples["split"] == "test", "example_id"].nunique()),
        "training_steps": trained["steps"],
    }
    record["adapter"] = str(served_adapter(config, ADAPTER.parent))
    record.update(_gate_record(table, versus_best, settings, number, log))
    if len(settings.arms) > 1:
        # References for the targeted model, measured after its gate: they never decide acceptance.
        with _stage("arms", stages, log):
            record["arms"] = run_arms(settings.arms, examples=examples, train=train, steps=trained["steps"],
                                      pool=experiment.examples, task=run.task, variant=settings.variant,
                                      training=settings.training, config=config,
                                      start_from=start.path / PEFT_ADAPTER if start is not None else None,
                                      work=work, number=number, encoder=encoder, threshold=settings.near_duplicate,
                                      options=experiment.options, progress=progress, log=log,
                                      launch=settings.launch)
            encoder.save()
    return _finish(work, folder / str(number), run, record)


@dataclass(frozen=True)
class _RoundStart:
    """Where a round begins (`_begin_round`): its `number`, the accepted round it builds on
    (`start`, None: the base model) and that round's `chain`, the model `config` (with the start's
    adapter), the round's `record` so far (``round.json``'s first keys) and its `work` folder."""

    number: int
    start: Round | None
    chain: list[Round]
    config: dict[str, Any]
    record: dict[str, Any]
    work: Path


def _begin_round(experiment: Experiment, folder: Path, settings: RoundSettings, force: bool, log: Any) -> _RoundStart:
    """The checks `run_round` makes before any model call (see its Raises), then the round's
    number, start model, record and ``<n>.partial`` folder."""
    from workbench.finetune.checks import check_training_length
    from workbench.finetune.local_models import ADAPTER_KEYS, HOSTED, LOCAL_KINDS, base_path, model_kind, with_adapter

    config = dict(experiment.model_config)
    kind = model_kind(config)
    if kind not in LOCAL_KINDS:
        raise RoundError(f"experiment {experiment.name} uses a {kind!r} model; the loop fine-tunes the embedded model "
                         "or a transformers model folder locally: set `model: {kind: embedded}` or `model: {kind: "
                         f"transformers, base_model: <folder>}}`; {HOSTED}")
    if config.get(ADAPTER_KEYS[kind]):
        raise RoundError(f"experiment {experiment.name}'s model already names an adapter ({ADAPTER_KEYS[kind]}): the "
                         "loop chooses each round's adapter itself; remove it from the config")
    earlier = load_rounds(folder)
    previous = earlier[-1] if earlier else None
    if previous is not None and previous.adapter is None:
        raise RoundError(f"round {previous.number} in {previous.path} had nothing to train on "
                         f"({previous.record.get('stopped')}): the loop has ended; change the experiment (more "
                         "data, other variants) and start a new loop folder")
    number = previous.number + 1 if previous else 1
    settings_print = fingerprint(experiment, settings)
    forced = _check_fingerprint(previous, settings_print, force, folder, log)
    # The model to build on: the last round whose tuned model was kept (not worse than its start).
    start = next((r for r in reversed(earlier) if r.record.get("accepted")), None)
    chain = start_chain({r.number: r for r in earlier}, start.number if start else None)
    if settings.serve == "openai-compatible":
        _check_served_start(experiment, start, number, log)
    # Every text the round may train on must fit as a training row: found here, not after the variants ran.
    log(check_training_length(experiment.task, settings.variant, [experiment.dataset, experiment.examples],
                              max_length=settings.training.max_length, gguf=base_path(config)).describe())
    work = folder / f"{number}.partial"
    work.mkdir(parents=True, exist_ok=True)
    if start is not None:
        config = with_adapter(config, start.adapter)
    record: dict[str, Any] = {
        "round": number, "experiment": experiment.name,
        "started_from": f"round {start.number}" if start else "base model",
        "start_round": start.number if start else None, "chain": [r.number for r in chain],
        "start_adapter": config.get(ADAPTER_KEYS[kind]), "variant": settings.variant, "stages": {},
        # ``anchors`` is `anchor_share` under the key earlier rounds were recorded with.
        "settings": {"distance_threshold": settings.distance_threshold, "min_size": settings.min_size,
                     "replay": settings.replay, "compare_repeats": settings.compare_repeats,
                     "anchors": settings.anchor_share, "margin": settings.margin, "keep_worse": settings.keep_worse,
                     "arms": list(settings.arms), "launch": settings.launch.describe(),
                     "training": {key: value for key, value in vars(settings.training).items()}},
        "fingerprint": settings_print, "forced": forced,
    }
    return _RoundStart(number=number, start=start, chain=chain, config=config, record=record, work=work)


def _gate_record(table: pd.DataFrame, versus_best: pd.DataFrame | None, settings: RoundSettings, number: int,
                 log: Any) -> dict[str, Any]:
    """``round.json``'s gate keys from the re-test's tables (`accept_gate` against the stronger
    start, `strongest_start`): ``gate``, ``margin``, ``accepted``, ``rejected_because``,
    ``accepted_despite`` (with `keep_worse`) and ``all_test_cases``."""
    gate, reason = accept_gate(strongest_start(table, versus_best), settings.margin)
    accepted = settings.keep_worse or reason is None
    record: dict[str, Any] = {"gate": gate, "margin": settings.margin, "accepted": accepted,
                              "rejected_because": None if accepted else reason}
    if reason is not None and settings.keep_worse:
        record["accepted_despite"] = reason
    if not accepted:
        log(f"round {number}: the tuned model is {reason}: kept for the record, not built on; the next round "
            "starts from the model this one started from")
    every = table[table["point_id"] == ALL_TEST_CASES].iloc[0]
    record["all_test_cases"] = {key: plain(every[key]) for key in ("cases", "metric", "base", "tuned", "verdict",
                                                                     "p_value")}
    return record


@contextmanager
def _stage(name: str, stages: dict[str, float], log: Any) -> Iterator[None]:
    started = time.monotonic()
    log(f"[{name}] ...")
    yield
    stages[name] = round(time.monotonic() - started, 2)
    log(f"[{name}] done in {stages[name]:.1f} s")


def _run_variants(experiment: Experiment, work: Path, model: Model, config: dict[str, Any], progress: bool,
                  training_variant: str) -> Run:
    from workbench.prompting.variants import parse_variant

    # The training variant is how the tuned model answers; the comparison of rounds scores it in every run.
    variants = list(experiment.variants)
    if training_variant not in [parse_variant(v).name for v in variants]:
        variants.append(training_variant)
    run = run_experiment(replace(experiment, run_dir=work, variants=variants), model=model, progress=progress)
    source = dict(experiment.source, model=config)
    return write_run(replace(run, config=redacted_config(source)), work)


def _points(run: Run, settings: RoundSettings, encoder: Any, base_model: bool = False,
            voters: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    from workbench.prompting.variants import TUNED, parse_variant

    predictions = run.predictions
    if base_model and parse_variant(settings.variant).template.startswith(TUNED):
        # The base model has not learned the labels the tuned prompt leaves out: its answers there
        # are neither failure modes to train on (on many labels, nearly every example) nor votes
        # on the gold.
        predictions = predictions[predictions["variant"] != parse_variant(settings.variant).name]
    # Suspected label errors are votes of the experiment's own variants; the training variant the
    # round added to them is how the tuned model answers, not another independent prompt.
    clustered = cluster_run_errors(run, distance_threshold=settings.distance_threshold, min_size=settings.min_size,
                                   encoder=encoder, predictions=predictions, voters=voters,
                                   title=f"{run.name}: round {run.path.name.split('.')[0]}")
    return clustered.points.points, clustered.points.assignments


def _training_data(run: Run, points: pd.DataFrame, assignments: pd.DataFrame, experiment: Experiment,
                   settings: RoundSettings, chain: list[Round], work: Path,
                   encoder: Any) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(this round's training-data frame with the replayed rows, the rows to train on, counts).

    `chain` is the accepted rounds the start model descends from (`start_chain`); what they
    trained on is what the start model has seen. A test case that is one of those rows, or equals
    or nearly repeats one (`find_leaks`), is dropped: the start model has seen its answer, so it
    would not be held out. The rows to train on are this round's train rows, one per example,
    then (with `replay`) the chain's rows not here already, added to the frame with ``point_id``
    and ``source`` "replay" (column ``replayed`` in the rows to train on). Counts:
    ``replayed_rows``, ``tests_seen_dropped`` (test cases dropped, by id or near-duplicate) and
    ``tests_near_seen_dropped`` (of those, the near-duplicates with another id)."""
    from dataclasses import replace as replace_data

    from workbench.trainingdata.examples import TRAINING_COLUMNS, one_row_per_example
    from workbench.trainingdata.leakage import find_leaks, leakage_report

    # Oldest first, so that the newest round's row of an example wins (its rendering is the newest).
    earlier = [r.frame("training_data/train_rows.parquet") for r in reversed(chain)]
    earlier = [one_row_per_example(rows) for rows in earlier if not rows.empty]
    old = pd.concat(earlier, ignore_index=True).drop_duplicates("example_id", keep="last") if earlier else None
    # The build keeps test cases away from what the start model trained on; the drop below is for
    # what it cannot see (an example id trained on under another text).
    data = build_run_training_data(run, points, assignments, pool=experiment.examples, variant=settings.variant,
                                   regression_size=settings.regression_size, anchor_share=settings.anchor_share,
                                   encoder=encoder, threshold=settings.near_duplicate,
                                   trained_texts=list(old["text"].astype(str)) if old is not None else ())
    examples = data.examples
    is_test = examples["split"].eq("test")
    seen_ids: set[str] = set()
    if old is not None and is_test.any():
        leaks = find_leaks(pd.concat([examples[is_test], old.assign(split="train")], ignore_index=True), encoder,
                           settings.near_duplicate)
        seen_ids = set(leaks["test_example"])
    seen = is_test & examples["example_id"].isin(seen_ids)
    near_seen = seen & ~examples["example_id"].isin(set(old["example_id"]) if old is not None else set())
    dropped = examples.loc[seen, "example_id"].nunique()
    near_dropped = examples.loc[near_seen, "example_id"].nunique()
    examples = examples[~seen].reset_index(drop=True)
    notes = list(data.notes)
    if dropped:
        notes.append(f"{dropped} test case(s) dropped: the model this round starts from trained on them "
                     f"({near_dropped} of them as a near-duplicate of a training row)")
    replayed = 0
    if settings.replay and old is not None:
        # Every chain row that nearly repeats a remaining test case was dropped above with that test
        # case, so the replayed rows cannot leak.
        ours = set(examples.loc[examples["split"] == "train", "example_id"])
        rows = old[~old["example_id"].isin(ours)]
        rows = rows[[c for c in TRAINING_COLUMNS if c in rows.columns]].assign(point_id=REPLAY, source=REPLAY,
                                                                               split="train")
        examples = pd.concat([examples, rows], ignore_index=True)
        replayed = len(rows)
        if replayed:
            notes.append(f"{replayed} row(s) replayed from rounds {', '.join(str(r.number) for r in reversed(chain))}")
    train = one_row_per_example(examples[examples["split"] == "train"])
    train = train.assign(replayed=train["source"].eq(REPLAY))
    leaks = find_leaks(examples, encoder, settings.near_duplicate)
    data = replace_data(data, examples=examples, leakage=leakage_report(examples, leaks), notes=notes)
    if not (examples["split"] == "test").any():
        data.write(work / "training_data", overwrite=True)  # to look at
        # Refused here, before training: without a test case the re-test cannot measure the model.
        raise RoundError(f"round {work.name.split('.')[0]}'s training data has no test case (the points' members all "
                         f"train, no pool neighbour or regression case is left; {dropped} dropped as seen by the start "
                         "model), so its tuned model could not be measured; nothing was trained. Give the experiment "
                         "a labelled pool (`examples:` in the config), a larger --limit, or a --regression-size above "
                         f"0; see {work / 'training_data'}")
    write_training_data(data, work / "training_data", run.task, overwrite=True)
    write_frame(train, work / "training_data" / "train_rows.parquet")
    return examples, train, {"replayed_rows": replayed, "tests_seen_dropped": int(dropped),
                             "tests_near_seen_dropped": int(near_dropped)}


def _fine_tune(train: pd.DataFrame, work: Path, settings: RoundSettings, config: dict[str, Any],
               start: Round | None, progress: bool) -> dict[str, Any]:
    from workbench.finetune.launch import train_step

    names = [f"example {e} (point {p}{', replayed' if r else ''})"
             for e, p, r in zip(train["example_id"], train["point_id"], train["replayed"])]
    trained = train_step(list(train["messages"]), work / ADAPTER.parent, config, settings=settings.training,
                         names=names, progress=progress,
                         start_from=start.path / PEFT_ADAPTER if start is not None else None, launch=settings.launch)
    return {"steps": trained.steps, "losses": trained.losses}


def _re_test(examples: pd.DataFrame, run: Run, model: Model, config: dict[str, Any], work: Path,
             settings: RoundSettings, experiment: Experiment, points: pd.DataFrame,
             served: ServedPair | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the before/after table on the training variant, the table against the start model's best
    prompt or None), both written to ``finetune/lora/`` (`stages.retest`, as ``workbench finetune``
    re-tests): in-process, or on the server of `served` (its base and tuned model) when given."""
    from workbench.finetune.local_models import tuned_model_config
    from workbench.models.registry import model_from_config

    if served is not None:
        model, tuned = served.base, served.tuned
    else:
        tuned = model_from_config(tuned_model_config(config, work / ADAPTER.parent))
    result, _ = retest(run, examples, model, tuned, work / "finetune" / "lora", variant=settings.variant,
                       options=experiment.options, repeats=settings.compare_repeats, pool=experiment.examples)
    return result.table, result.versus_best


def _check_served_start(experiment: Experiment, start: Round | None, number: int, log: Any) -> None:
    """With the re-test on a server: refuse, before any model call, an experiment without a
    ``serve:`` block, a start round's adapter the block cannot name (no ``{round}``, or selected by
    llama-server's number), or a start model the server does not serve (`pull_checked`)."""
    from workbench.models.registry import model_from_config

    serve = experiment.serve_config
    if serve is None:
        raise RoundError(f"--serve openai-compatible: experiment {experiment.name} has no serve: block; add one "
                         "(serve: {base_url: http://HOST:PORT/v1, api_key_env: null, model: BASE, adapter: "
                         f"{experiment.name}-r{{round}}}})")
    if start is not None and (not has_round(serve) or serve.get("adapter_style") == "llama_cpp"):
        raise RoundError(f"round {number} starts from round {start.number}'s tuned model, which the server must "
                         "serve as that round's adapter beside this round's: give the serve: block's adapter a "
                         f"{{round}} (e.g. {experiment.name}-r{{round}}) and serve adapters by name (vLLM "
                         "--lora-modules, llama-cpp-python's model_alias; not llama-server's adapter numbers)")
    base_name = adapter_name(serve, start.number) if start is not None else None
    base, _ = served_configs(serve, tuned=adapter_name(serve, number), base=base_name)
    trained = trained_adapters(start.path / ADAPTER.parent) if start is not None else []
    try:
        for note in pull_checked(model_from_config(base), trained):
            log(f"note: {note}")
    except ServingError as exc:
        raise RoundError(f"round {number}'s start model is not served: {exc}") from exc


def _served_pair(experiment: Experiment, number: int, start: Round | None, work: Path, log: Any) -> ServedPair:
    """The round's base and tuned models on the ``serve:`` server (`pull_served_pair`); a model it
    does not serve is refused (RoundError) with the round kept in `work` to resume. The experiment
    has a ``serve:`` block: `_check_served_start` refused one without, before the round began."""
    begun = (start.number, start.path / ADAPTER.parent) if start is not None else None
    try:
        pair = pull_served_pair(experiment.serve_config, work / ADAPTER.parent, round_number=number, start=begun)
    except ServingError as exc:
        raise RoundError(f"{exc}. Round {number} is kept in {work} (trained, not yet re-tested): serve its adapter, "
                         "then run `workbench loop` again with --serve openai-compatible; it resumes there (the "
                         "answers so far from the cache, the finished training from its checkpoint)") from exc
    for note in pair.notes:
        log(f"note: {note}")
    return pair


def _finish(work: Path, final: Path, run: Run, record: dict[str, Any]) -> Round:
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (work / "round.json").write_text(json.dumps(record, indent=2, default=plain), encoding="utf-8")
    if final.exists():  # a finished round is never overwritten; this one is left beside it
        raise RoundError(f"{final} exists already; the new round stays in {work}")
    for arm in ("lora", *REFERENCE_ARMS):  # the adapters are saved
        shutil.rmtree(work / "finetune" / arm / "checkpoints", ignore_errors=True)
    os.replace(work, final)
    return load_round(final)
