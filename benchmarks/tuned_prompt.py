"""Prompt tokens and latency per call of the compact `tuned` prompt against the base model's prompts.

For the complaints demo (data/complaint_triage, 4 labels with long definitions) and CLINC150 (150
intents and "oos", no definitions; read in place from ../shared/datasets/clinc150, never copied),
each variant (zero_shot, definitions where the task has definitions, tuned) is rendered for the
first --texts test texts and counted with SmolLM2's own tokenizer through its chat template:
prompt tokens per call (mean and max) and the longest training row (prompt plus the gold answer,
as `workbench.finetune.checks.check_training_length` counts it, against the 1,024-token default
of --max-length). Then --calls calls per variant on the embedded model in llama.cpp (2 threads,
greedy, the answer schema enforced), twice: "warm", calls one after another as a run makes them,
so llama-cpp-python reuses the KV cache of the prefix shared with the previous prompt (the whole
prompt before "Text: " for these templates); and "cold", with the cache reset before every call,
as when consecutive prompts differ (few-shot examples chosen per input, a shared server). The
latency of `tuned` is measured on the base model: a LoRA adapter adds a little compute per token
but does not change how many tokens the prompt is. No accuracy here: the base model answering the
tuned prompt has never learned the labels. No asserts.

Run: .venv/bin/python benchmarks/tuned_prompt.py [--texts 50] [--calls 6] [--no-latency]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT.parent / "shared" / "datasets" / "clinc150"


def complaints():
    from workbench.core.data import load_dataset
    from workbench.core.task import load_task

    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    return task, load_dataset(ROOT / "data/complaint_triage/test.jsonl", task)


def clinc150():
    from workbench.core.task import task_from_dict

    def read(name: str) -> pd.DataFrame:
        frame = pd.read_json(CLINC / name, lines=True)
        return frame.rename(columns={"id": "example_id"})[["example_id", "text", "label"]]

    train, test = read("train.jsonl"), read("test.jsonl")
    labels = sorted(set(train["label"]) | set(test["label"]))
    task = task_from_dict({
        "name": "clinc150", "kind": "classification",
        "description": "Messages users send to a task-oriented assistant.",
        "instructions": "Give the user's intent; oos when the message is outside every intent.",
        "labels": [{"name": label} for label in labels],
    })
    # A seeded sample: the test split is ordered by intent.
    return task, test.sample(frac=1.0, random_state=0).reset_index(drop=True)


def variants_for(task) -> list[str]:
    return ["zero_shot", *(["definitions"] if any(label.definition for label in task.labels) else []), "tuned"]


def token_figures(task, texts: pd.DataFrame, variant: str, tokenizer) -> dict:
    from workbench.finetune.checks import check_training_length
    from workbench.finetune.tokens import prompt_length
    from workbench.prompting.templates import render_messages
    from workbench.prompting.variants import parse_variant

    chosen = parse_variant(variant)
    counts = [prompt_length(tokenizer, render_messages(task, chosen, text)) for text in texts["text"]]
    longest = check_training_length(task, chosen, texts, tokenizer, max_length=10**9).longest
    return {"prompt_tokens": statistics.mean(counts), "prompt_max": max(counts), "longest_row": longest}


def latency(task, texts: pd.DataFrame, variant: str, model, calls: int) -> dict:
    from workbench.models.base import ChatRequest, GenerationOptions
    from workbench.prompting.templates import answer_schema, render_messages
    from workbench.prompting.variants import parse_variant

    chosen = parse_variant(variant)
    schema = answer_schema(task, chosen)
    requests = [ChatRequest(tuple(render_messages(task, chosen, text)), GenerationOptions(max_tokens=48), schema)
                for text in texts["text"].head(calls)]
    llama = model.load()
    model.complete_sync(requests[0])  # the first call of a variant fills the prefix cache; not counted
    warm = [model.complete_sync(request).latency_s for request in requests]
    cold = []
    for request in requests:
        llama.reset()
        cold.append(model.complete_sync(request).latency_s)
    return {"warm_s": statistics.median(warm), "cold_s": statistics.median(cold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=50, help="test texts counted per dataset")
    parser.add_argument("--calls", type=int, default=6, help="model calls per variant and mode")
    parser.add_argument("--no-latency", action="store_true", help="count tokens only")
    args = parser.parse_args()

    from workbench.finetune.tokens import MAX_LENGTH, load_tokenizer
    from workbench.models.llama_cpp import LlamaCppModel

    started = time.perf_counter()
    tokenizer = load_tokenizer()
    print(f"tokenizer loaded from the GGUF in {time.perf_counter() - started:.1f} s")
    model = None if args.no_latency else LlamaCppModel(n_threads=2)
    rows = []
    for name, load in (("complaints", complaints), ("clinc150", clinc150)):
        task, test = load()
        texts = test.head(args.texts)
        for variant in variants_for(task):
            row = {"dataset": name, "labels": len(task.labels), "variant": variant,
                   **token_figures(task, texts, variant, tokenizer)}
            if model is not None:
                row |= latency(task, texts, variant, model, args.calls)
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    for column in ("prompt_tokens", *(("warm_s", "cold_s") if model is not None else ())):
        zero = table.groupby("dataset")[column].transform(lambda values: values.iloc[0])
        table[f"{column}_vs_zero_shot"] = zero / table[column]
    print(f"\nprompt tokens per call (SmolLM2 tokenizer, chat template), first {args.texts} test texts; longest "
          f"training row against --max-length {MAX_LENGTH}; latency: median s per call over {args.calls} calls "
          "on the embedded model, llama.cpp, 2 threads (x: zero_shot's figure / this one's)")
    with pd.option_context("display.width", 200, "display.precision", 2, "display.max_columns", 20):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
