"""The whole loop on real data: does `workbench loop` beat the base model's best prompt on a held-out test?

Runs the real loop (`workbench.experiments.rounds.run_round`, the code behind `workbench loop`,
with `RoundSettings`) on the embedded model (SmolLM2-135M-Instruct in llama.cpp,
``model: {kind: embedded}``) for two public datasets in /work/shared/datasets, read in place and
never copied into the repository; the derived task, config and data files go to --work (a folder
under /tmp):

- ``clinc150``: intent classification. The ``oos`` class is dropped (the loop's task has the 150
  intents only; --intents N draws N of them with --seed for a quick run). The user's labelled
  data: --per-label examples of each intent from the train split (seeded, at most 10); of those,
  --run-per-label per intent are the experiment's ``dataset`` (the run sample the variants, the
  errors and the training points come from) and the rest its ``examples`` (the labelled pool
  training data is drawn from). The held-out test: a seeded sample of --test-size rows of the
  test split (the chosen intents, no ``oos``), which the loop never sees. Headline: accuracy.
- ``crossner_science``: NER with 17 entity types (one-line definitions from
  ``benchmarks/finetune_methods.py``). The labelled data: --ner-labelled sentences of the train
  split (seeded), --ner-run of them the run sample and the rest the pool; the held-out test:
  --ner-test-size sentences of the test split. Headline: strict entity-level micro F1.

Rows of the table, per dataset, all scored on the same held-out test sample:

1. ``best prompt``: the base model with the experiment's variant (--clinc-variants /
   --crossner-variants) that scored best on the run sample in round 1's variants stage
   (`stages.best_variant` over the experiment's variants, not the added ``tuned`` one).
2. ``round 1``, ``round 2``: each round's tuned model (the base GGUF with the round's LoRA
   adapter) answering with the round's training variant (``tuned`` by default: the compact prompt
   without the label list), whether the round's accept gate kept it or not (the table says).
3. The ``random`` and ``all`` reference arms when `RoundSettings` has an ``arms`` field; else the
   output says they are not built yet.
4. ``spaCy``: `trainingdata.export_spacy` (`write_docbins`, `train_spacy` for --spacy-steps,
   `spacy_predictions`) trained on every labelled row (run sample and pool).

For every row: the headline score with its 95% interval (`significance.bootstrap_ci`: Wilson for
accuracy, BCa bootstrap for F1), the paired comparison with the best prompt
(`significance.compare_all` with the best prompt as the baseline: McNemar's score test with
Tango's interval for accuracy, the paired BCa bootstrap for F1; verdict, p-value and interval from
one method, Holm-adjusted over the dataset's comparisons), prompt tokens and latency per call
(`efficiency.score_efficiency`; latencies are wall times on a shared CPU) and seconds per stage
(round.json's ``stages`` for the rounds, plus the held-out answering). Then what each round did
(errors, points, rows trained, steps, its own before/after and the accept gate). No asserts.

Everything is cached in --work: the loop folder continues finished rounds (a second run with the
same settings sends no model call and trains nothing), the held-out answers are in
``<work>/<dataset>/heldout.sqlite``. A loop folder made with other settings is refused by the
loop's fingerprint check: use another --work.

Sizing: the full clinc150 setting (the defaults: 150 intents, 40 LoRA steps per round and arm,
three arms, 600 held-out texts) took 51 min on this 2-core machine with nothing else running
(2026-12-04): per round variants 190 s (450 calls, 1,350-1,460-token prompts for zero_shot and
few_shot, 92 for tuned), points 1-4 s, training data 0-4 s, 40 LoRA steps of batch 4 92-145 s
(about 3.6 s a step), re-test 64-68 s, the two reference arms 281-291 s; held-out 600 answers 281 s
for the best prompt and 204-229 s per tuned model (six of them); spaCy 126 s. On a machine shared
with one or two other jobs a LoRA step took 9 to 33 s instead, so run it alone. The 20-intent quick
run below took 33 min on a shared machine.

Run (the full setting; see --help for the sizes):
    nice .venv/bin/python benchmarks/loop_real.py --datasets clinc150 --work /tmp/loop_real
    nice .venv/bin/python benchmarks/loop_real.py --datasets clinc150 --intents 20 --test-size 100 \\
        --steps 10 --work /tmp/loop_real_quick                                  # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

DATA = Path("/work/shared/datasets")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Split:
    """A dataset cut for the loop: the task spec, the run sample, the pool, the held-out test."""

    name: str
    task: dict[str, Any]
    run: pd.DataFrame
    pool: pd.DataFrame
    test: pd.DataFrame
    described: str
    variants: list[str]
    max_tokens: int


def _read(path: Path) -> pd.DataFrame:
    frame = pd.read_json(path, lines=True, dtype={"id": str})
    return frame.rename(columns={"id": "example_id", "entities": "spans"})


def clinc_split(args: argparse.Namespace) -> Split:
    if not 1 <= args.run_per_label < args.per_label <= 10:
        raise SystemExit(f"need 1 <= --run-per-label < --per-label <= 10, got {args.run_per_label}, {args.per_label}")
    folder = args.data / "clinc150"
    train, test = _read(folder / "train.jsonl"), _read(folder / "test.jsonl")
    intents = sorted(set(train["label"]) - {"oos"})
    dropped = int((train["label"] == "oos").sum() + (test["label"] == "oos").sum())
    chosen = intents if args.intents >= len(intents) else sorted(random.Random(args.seed).sample(intents,
                                                                                                  args.intents))
    rng = random.Random(args.seed)
    run_rows, pool_rows = [], []
    for intent in chosen:
        ids = sorted(train.index[train["label"] == intent])
        picked = rng.sample(ids, args.per_label)
        run_rows += picked[:args.run_per_label]
        pool_rows += picked[args.run_per_label:]
    columns = ["example_id", "text", "label"]
    held = test[test["label"].isin(chosen)]
    size = min(args.test_size, len(held))
    held = held.sample(n=size, random_state=args.seed).sort_values("example_id")
    task = {
        "name": "clinc150", "kind": "classification",
        "description": "Requests a user typed or said to a virtual assistant (banking, travel, home, work, "
                       "small talk).",
        "instructions": "Give the one intent the request expresses.",
        "labels": [{"name": intent, "definition": intent.replace("_", " ")} for intent in chosen],
    }
    described = (f"{len(chosen)} of 150 intents (oos dropped: {dropped} oos rows of train and test left out); "
                 f"labelled {len(chosen) * args.per_label} ({args.per_label}/intent from train, seed {args.seed}): "
                 f"run sample {len(run_rows)} ({args.run_per_label}/intent), pool {len(pool_rows)}; held-out test "
                 f"{size} (seeded sample of the test split, the loop never sees it)")
    return Split("clinc150", task, train.loc[run_rows, columns].reset_index(drop=True),
                 train.loc[pool_rows, columns].reset_index(drop=True), held[columns].reset_index(drop=True),
                 described, _names(args.clinc_variants), args.clinc_max_tokens)


def crossner_split(args: argparse.Namespace) -> Split:
    # Importable because Python puts the script's own folder (benchmarks/) first on sys.path.
    from finetune_methods import CROSSNER_TYPES

    folder = args.data / "crossner_science"
    train, test = _read(folder / "train.jsonl"), _read(folder / "test.jsonl")
    if not 1 <= args.ner_run < args.ner_labelled <= len(train):
        raise SystemExit(f"need 1 <= --ner-run < --ner-labelled <= {len(train)}, got {args.ner_run}, "
                         f"{args.ner_labelled}")
    labelled = train.sample(n=args.ner_labelled, random_state=args.seed)
    columns = ["example_id", "text", "spans"]
    run = labelled.iloc[:args.ner_run].sort_values("example_id")[columns].reset_index(drop=True)
    pool = labelled.iloc[args.ner_run:].sort_values("example_id")[columns].reset_index(drop=True)
    size = min(args.ner_test_size, len(test))
    held = test.sample(n=size, random_state=args.seed).sort_values("example_id")[columns].reset_index(drop=True)
    task = {
        "name": "crossner_science", "kind": "ner",
        "description": "Sentences from Wikipedia articles about the natural sciences.",
        "instructions": "Find every named entity of the types below, with its exact text.",
        "labels": [{"name": name, "definition": definition} for name, definition in CROSSNER_TYPES.items()],
    }
    described = (f"17 entity types; labelled {len(labelled)} of {len(train)} train sentences (seed {args.seed}): "
                 f"run sample {len(run)}, pool {len(pool)}; held-out test {size} of {len(test)} test sentences "
                 f"({sum(len(s) for s in held['spans'])} gold entities)")
    return Split("crossner_science", task, run, pool, held, described, _names(args.crossner_variants),
                 args.ner_max_tokens)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def write_experiment(split: Split, work: Path, args: argparse.Namespace) -> Path:
    """The task, data and config files of `split` in `work`; returns the config's path."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "task.yaml").write_text(yaml.safe_dump(split.task, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for name, frame in (("dataset", split.run), ("examples", split.pool), ("heldout", split.test)):
        frame.to_json(work / f"{name}.jsonl", orient="records", lines=True, force_ascii=False)
    config = {
        "name": split.name, "task": "task.yaml", "dataset": "dataset.jsonl", "examples": "examples.jsonl",
        "variants": split.variants, "repeats": 1,
        "options": {"temperature": 0.0, "max_tokens": split.max_tokens},
        "model": {"kind": "embedded", "n_threads": args.threads}, "runs_dir": str(work / "runs"),
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def round_settings(args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    """(RoundSettings, the arms asked for, or None when RoundSettings has no ``arms`` field)."""
    from workbench.experiments.rounds import RoundSettings
    from workbench.finetune.lora import AdapterSettings

    training = AdapterSettings(epochs=args.epochs, max_steps=args.steps or None, batch_size=args.batch_size,
                               learning_rate=args.learning_rate, r=args.rank, alpha=2 * args.rank,
                               seed=args.seed, checkpoint_every=10)
    fields = {f.name for f in dataclasses.fields(RoundSettings)}
    extra: dict[str, Any] = {}
    arms = None
    if "arms" in fields:
        arms = _names(args.arms)
        extra["arms"] = tuple(arms)
    settings = RoundSettings(training=training, regression_size=args.regression_size, anchor_share=args.anchors,
                             margin=args.margin, **extra)
    return settings, arms


def run_loop(config: Path, work: Path, args: argparse.Namespace) -> tuple[Any, list[Any], list[str], list[str]]:
    """(experiment, the finished rounds, the arms asked for or [], notes). Continues a loop folder."""
    from workbench.experiments.config import load_experiment
    from workbench.experiments.round_comparison import write_loop_report
    from workbench.experiments.rounds import RoundError, finished_rounds, load_rounds, run_round

    experiment = load_experiment(config, limit=0)
    settings, arms = round_settings(args)
    folder = work / "rounds"
    notes: list[str] = []
    for number in range(len(finished_rounds(folder)) + 1, args.rounds + 1):
        log(f"{experiment.name}: round {number}")
        try:
            run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda line: log(f"  {line}"))
        except RoundError as exc:  # the loop's own refusal (e.g. nothing left to train on): reported, not hidden
            notes.append(f"round {number} did not run: RoundError: {exc}")
            log(notes[-1])
            break
    rounds = load_rounds(folder)
    if rounds:
        report, _ = write_loop_report(folder)
        notes.append(f"rounds report: {report}")
    return experiment, rounds, arms or [], notes


def heldout_answers(experiment: Any, split: Split, rounds: list[Any], settings_variant: str,
                    work: Path) -> tuple[pd.DataFrame, str, str, dict[str, float], list[str]]:
    """(every row's answers on the held-out test with ``variant`` = the row's name, the best
    prompt's variant, how it was picked, held-out seconds per row, notes)."""
    from workbench.models.registry import model_from_config
    from workbench.prompting.runner import run_variants
    from workbench.prompting.variants import parse_variant

    task = experiment.task
    first = rounds[0].run
    ours = [parse_variant(v).name for v in experiment.variants]
    summary = first.summary()
    column = task.kind.summary_column
    summary = summary[summary["variant"].isin(ours)]
    best = str(summary.sort_values(column, ascending=False, kind="stable")["variant"].iloc[0])
    picked = ", ".join(f"{r['variant']} {r[column]:.3f}" for r in summary.to_dict("records"))
    answers, seconds, notes = [], {}, []
    cache = work / "heldout.sqlite"

    def answer(config: dict[str, Any], variant: str, row: str) -> None:
        started = time.monotonic()
        model = model_from_config(config)
        found = run_variants(task, split.test, [variant], model, examples=experiment.examples,
                             options=experiment.options, cache=cache, progress=False)
        seconds[row] = time.monotonic() - started
        hits = int(found["cached"].sum())
        log(f"  held-out {row}: {len(found)} answers in {seconds[row]:.0f} s ({hits} from the cache)")
        answers.append(found.assign(variant=row))
        del model
        gc.collect()

    answer(dict(experiment.model_config), best, f"best prompt ({best})")
    for done in rounds:
        if done.adapter is None:
            notes.append(f"round {done.number} made no adapter ({done.record.get('stopped')}): no row")
            continue
        variant = done.record.get("variant", settings_variant)
        answer({**experiment.model_config, "lora_path": str(done.adapter.resolve())}, variant,
               f"round {done.number} ({variant})")
        # Reference arms, when the library trains them: any other GGUF adapter under finetune/.
        for gguf in sorted((done.path / "finetune").rglob("adapter.gguf")):
            if gguf.resolve() == done.adapter.resolve():
                continue
            arm = gguf.parent.relative_to(done.path / "finetune").as_posix()
            rows = (done.record.get("arms") or {}).get("rows", {}).get(arm)
            answer({**experiment.model_config, "lora_path": str(gguf.resolve())}, variant,
                   f"round {done.number} arm {arm}" + (f" ({rows} rows)" if rows is not None else ""))
    return pd.concat(answers, ignore_index=True), best, picked, seconds, notes


def spacy_row(split: Split, task: Any, work: Path, args: argparse.Namespace) -> tuple[pd.DataFrame, float, list[str]]:
    """spaCy trained on every labelled row, answering the held-out test: (answers, seconds, notes)."""
    from workbench.trainingdata.export_spacy import spacy_predictions, train_spacy, write_docbins

    target = task.kind.target_column
    frame = pd.concat([split.run.assign(split="train"), split.pool.assign(split="train"),
                       split.test.assign(split="test")], ignore_index=True)
    frame = frame.assign(point_id="all", target=frame[target])[["point_id", "split", "example_id", "text", "target"]]
    started = time.monotonic()
    export = write_docbins(frame, task, work / "spacy", overwrite=True)
    model = train_spacy(export, work / "spacy" / "model", max_steps=args.spacy_steps, seed=args.seed)
    found = spacy_predictions(model, frame, task)
    seconds = time.monotonic() - started
    notes = []
    if export.unaligned:
        notes.append(f"spaCy: {export.unaligned} gold span(s) off spaCy's token boundaries left out of training")
    log(f"  spaCy ({export.pipeline}, {args.spacy_steps} steps, {export.docs['train']} rows): {seconds:.0f} s")
    rows = len(split.run) + len(split.pool)
    return found.assign(variant=f"spaCy ({rows} labelled rows)"), seconds, notes


def _verdict(comparison: Any) -> str:
    if not comparison.significant:
        return "no clear difference"
    return "better" if comparison.difference > 0 else "worse"


def table(split: Split, experiment: Any, rounds: list[Any], answers: pd.DataFrame, best_row: str,
          seconds: dict[str, float], args: argparse.Namespace) -> str:
    from workbench.evaluation.efficiency import score_efficiency
    from workbench.evaluation.significance import bootstrap_ci, compare_all

    task = experiment.task
    metric = "accuracy" if str(task.kind) == "classification" else "strict entity F1"
    intervals = bootstrap_ci(answers, split.test, task, seed=args.seed).set_index("variant")
    speed = score_efficiency(answers).set_index("variant")
    tests = {c.variant_a: c for c in compare_all(answers, split.test, task, baseline=best_row, seed=args.seed)}
    by_round = {f"round {r.number}": r for r in rounds}
    lines = [f"| row | {metric} [95% CI] | vs best prompt [95% CI] | p (Holm) | method | verdict | prompt tokens "
             "| latency p50 / p95 s | parse failures | stage seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in dict.fromkeys(answers["variant"]):
        score, fast = intervals.loc[row], speed.loc[row]
        if row in tests:
            c = tests[row]
            versus = f"{c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
            p, method, verdict = f"{c.p_value:.3g} ({c.p_adjusted:.3g})", c.method, _verdict(c)
        else:
            versus, p, method, verdict = "(baseline)", "-", "-", "-"
        done = next((r for key, r in by_round.items() if row.startswith(key + " ")), None)
        if done is not None and " arm " not in row:
            stages = ", ".join(f"{k} {v:.0f}" for k, v in done.record.get("stages", {}).items())
            kept = "kept" if done.record.get("accepted") else "rejected by the gate"
            name = f"{row}, {kept}"
        elif row == best_row:
            variants_s = rounds[0].record.get("stages", {}).get("variants", float("nan"))
            stages, name = f"picked in round 1's variants {variants_s:.0f} (all variants on the run sample)", row
        else:
            stages, name = "", row
        stages = (stages + ", " if stages else "") + (f"train+answer {seconds[row]:.0f}" if row.startswith("spaCy")
                                                      else f"held-out answers {seconds.get(row, 0):.0f}")
        tokens = "-" if row.startswith("spaCy") else f"{fast['tokens_in_mean']:.0f}"
        lines.append(f"| {name} | {score['value']:.3f} [{score['low']:.3f}, {score['high']:.3f}] | {versus} | {p} | "
                     f"{method} | {verdict} | {tokens} | {fast['latency_p50_s']:.3g} / {fast['latency_p95_s']:.3g} | "
                     f"{fast['parse_failure_rate']:.0%} | {stages} |")
    return "\n".join(lines)


def rounds_text(rounds: list[Any]) -> str:
    lines = ["| round | started from | errors | points | rows trained | replayed | steps | test cases | "
             "own before -> after (all test cases) | gate | seconds by stage |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for done in rounds:
        record, counts = done.record, done.record.get("counts", {})
        every = record.get("all_test_cases") or {}
        own = (f"{every['base']:.3f} -> {every['tuned']:.3f} ({every['verdict']}, p {every['p_value']:.3g})"
               if every else record.get("stopped", "-"))
        gate = "kept" if record.get("accepted") else f"rejected: {record.get('rejected_because')}"
        stages = record.get("stages", {})
        lines.append(f"| {done.number} | {record.get('started_from')} | {counts.get('errors', '-')} | "
                     f"{counts.get('points', '-')} | {counts.get('train_rows', '-')} | "
                     f"{counts.get('replayed_rows', '-')} | {counts.get('training_steps', '-')} | "
                     f"{counts.get('test_cases', '-')} | {own} | {gate} | "
                     + ", ".join(f"{k} {v:.0f}" for k, v in stages.items())
                     + f" (total {sum(stages.values()):.0f}) |")
    return "\n".join(lines)


def run_dataset(split: Split, args: argparse.Namespace) -> str:
    began = time.monotonic()
    work = args.work / split.name
    config = write_experiment(split, work, args)
    log(f"{split.name}: {split.described}; files in {work}")
    experiment, rounds, arms, notes = run_loop(config, work, args)
    if not rounds:
        return f"### {split.name}\n\nno round finished; " + "; ".join(notes)
    settings, _ = round_settings(args)
    answers, best, picked, seconds, more = heldout_answers(experiment, split, rounds, settings.variant, work)
    notes += more
    if args.spacy_steps > 0:  # 0: no spaCy row (a quick look at the loop alone)
        found, seconds_spacy, more = spacy_row(split, experiment.task, work, args)
        answers = pd.concat([answers, found], ignore_index=True)
        seconds[str(found["variant"].iloc[0])] = seconds_spacy
        notes += more
    from workbench.core.frames import write_frame

    write_frame(answers, work / "heldout_predictions.parquet")
    best_row = f"best prompt ({best})"
    if arms:
        arm_note = f"reference arms asked for: {', '.join(arms)} (rows 'arm ...' where the round wrote an adapter)"
    else:
        arm_note = ("reference arms random/all: not built yet (RoundSettings has no `arms` field), so the table has "
                    "no random or all rows")
    lines = [f"### {split.name}: {split.described}", "",
             table(split, experiment, rounds, answers, best_row, seconds, args), "",
             rounds_text(rounds), "",
             f"- best prompt picked on the run sample ({len(split.run)} examples) in round 1: {picked} (a tie goes to "
             "the variant listed first)",
             f"- {arm_note}",
             f"- the tuned rows answer with the round's training variant ({settings.variant}); the best prompt's "
             "few-shot examples come from the pool",
             *[f"- {note}" for note in notes],
             f"- wall time for {split.name}: {time.monotonic() - began:.0f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="clinc150,crossner_science")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/loop_real"),
                        help="derived files, the loop folders and caches (one subfolder per dataset)")
    parser.add_argument("--intents", type=int, default=150, help="clinc intents (of 150; drawn with --seed)")
    parser.add_argument("--per-label", type=int, default=10, help="labelled clinc examples per intent (at most 10)")
    parser.add_argument("--run-per-label", type=int, default=1, help="of those, the run sample's per intent")
    parser.add_argument("--test-size", type=int, default=600, help="held-out clinc test sample")
    parser.add_argument("--ner-labelled", type=int, default=100, help="labelled crossner train sentences (of 200)")
    parser.add_argument("--ner-run", type=int, default=30, help="of those, the run sample")
    parser.add_argument("--ner-test-size", type=int, default=100, help="held-out crossner test sample (of 543)")
    parser.add_argument("--clinc-variants", default="zero_shot,few_shot")
    parser.add_argument("--crossner-variants", default="zero_shot,few_shot2")
    parser.add_argument("--clinc-max-tokens", type=int, default=48)
    parser.add_argument("--ner-max-tokens", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--arms", default="targeted,random,all", help="used when RoundSettings has `arms`")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="LoRA steps per round and arm (0: train for --epochs)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--anchors", type=float, default=1.0)
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--regression-size", type=int, default=50)
    parser.add_argument("--spacy-steps", type=int, default=600, help="steps of the spaCy baseline (0: no spaCy row)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    makers = {"clinc150": clinc_split, "crossner_science": crossner_split}
    chosen = _names(args.datasets)
    unknown = [name for name in chosen if name not in makers]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; choose from {sorted(makers)}")
    started = time.monotonic()
    for name in chosen:
        print(run_dataset(makers[name](args), args) + "\n", flush=True)
    print(f"- command: {' '.join(sys.argv)}")
    print(f"- LoRA per round: {args.steps or 'no'} max steps, {args.epochs} epochs, batch {args.batch_size}, lr "
          f"{args.learning_rate}, rank {args.rank}; anchors {args.anchors}; margin {args.margin}; regression set "
          f"{args.regression_size}; spaCy {args.spacy_steps} steps; llama.cpp {args.threads} thread(s)")
    print(f"- total wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
