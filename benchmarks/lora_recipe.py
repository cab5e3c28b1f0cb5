"""Which LoRA recipe helps a round: learning rate and anchor rows, on one round's own rows and test cases.

A finished round of `workbench loop` (``rounds/<n>/``) holds its training rows and its test cases
(the points' held-out cases and the regression set). Each recipe here trains a fresh adapter on the
base model from those rows (plus, with ``anchors=S``, the pool examples `trainingdata.anchors`
picks to balance the labels, at most S times the round's rows), converts it for llama.cpp and
answers every test case, so that the recipes differ only in what they name. Printed per recipe:
rows and steps, the score on all test cases and on the regression set (base, tuned, the paired
test's verdict and p-value), the share of parse failures, and the labels the tuned model answers
(a model that collapses to one label shows it there).

Run: .venv/bin/python benchmarks/lora_recipe.py --round runs/demo_complaints/rounds/1 \\
         --config configs/demo_complaints.yaml --recipe lr=1e-3 --recipe lr=1e-3,anchors=1 --recipe lr=2e-4,anchors=1
A recipe is comma-separated key=value: ``lr`` (learning rate), ``epochs``, ``anchors`` (share; 0
none), ``r`` (rank, alpha 2r), ``modules`` (``qv``: the query and value projections, the default;
``all``: every linear layer of the blocks). Results are kept in --out (default /tmp/lora_recipe/<round>).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd

from workbench.core.frames import read_frame
from workbench.experiments.config import load_experiment
from workbench.experiments.rounds import ALL_CASES
from workbench.finetune.before_after import before_after
from workbench.finetune.gguf_adapter import train_for_llama_cpp
from workbench.finetune.lora import AdapterSettings
from workbench.models.registry import model_from_config
from workbench.points.encoder import SentenceEncoder
from workbench.trainingdata.anchors import choose_anchors
from workbench.trainingdata.examples import TrainingData, add_examples, one_row_per_example

# LoRA on the query and value projections (the default), or on every linear layer of the blocks.
MODULES = {"qv": ("q_proj", "v_proj"),
           "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}


def parse_recipe(text: str) -> dict[str, float]:
    recipe = {"lr": 1e-3, "epochs": 2, "anchors": 0.0, "r": 8, "modules": "qv"}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in recipe:
            raise SystemExit(f"recipe {text!r}: unknown key {key!r}; use {sorted(recipe)}")
        if key == "modules" and value not in MODULES:
            raise SystemExit(f"recipe {text!r}: modules is one of {sorted(MODULES)}")
        recipe[key] = value if key == "modules" else float(value)
    return recipe


def rows_for(recipe: dict[str, float], round_folder: Path, experiment, encoder) -> pd.DataFrame:
    """The round's own train rows, plus anchors for this recipe (rendered like the round's rows)."""
    train = read_frame(round_folder / "training_data" / "train_rows.parquet")
    if not recipe["anchors"]:
        return train
    examples = read_frame(round_folder / "training_data" / "examples.parquet")
    variant = json.loads((round_folder / "training_data" / "build.json").read_text())["variant"]
    # Anchors must also avoid the replayed rows the round trains on, so they join the frame first.
    frame = pd.concat([examples, train[~train["example_id"].isin(set(examples["example_id"]))]], ignore_index=True)
    anchors = choose_anchors(frame, experiment.examples, experiment.task, share=recipe["anchors"], encoder=encoder,
                             exclude=set(examples["example_id"]))
    added = add_examples(TrainingData(frame, pd.DataFrame(), [], variant), anchors, experiment.task, encoder=encoder)
    return pd.concat([train, added.examples[added.examples["source"] == "anchors"]], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", required=True, type=Path, help="a finished round folder (rounds/<n>)")
    parser.add_argument("--config", required=True, help="the experiment config the loop ran")
    parser.add_argument("--recipe", action="append", required=True)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    experiment = load_experiment(args.config)
    record = json.loads((args.round / "round.json").read_text())
    if record.get("start_adapter"):
        raise SystemExit(f"{args.round} started from an adapter; this compares recipes on the base model: use round 1")
    out = args.out or Path("/tmp/lora_recipe") / args.round.resolve().parent.parent.name
    examples = read_frame(args.round / "training_data" / "examples.parquet")
    config = dict(experiment.model_config)
    base = model_from_config(config)
    encoder = SentenceEncoder()
    lines = []
    for text in args.recipe:
        recipe = parse_recipe(text)
        train = one_row_per_example(rows_for(recipe, args.round, experiment, encoder))
        settings = replace(AdapterSettings(), learning_rate=recipe["lr"], epochs=int(recipe["epochs"]),
                          r=int(recipe["r"]), alpha=2 * int(recipe["r"]), batch_size=args.batch_size,
                          target_modules=MODULES[recipe["modules"]],
                          checkpoint_every=1000)
        folder = out / text.replace(",", "_").replace("=", "")
        started = time.perf_counter()
        trained, adapter = train_for_llama_cpp(list(train["messages"]), folder, settings=settings, progress=False)
        seconds = time.perf_counter() - started
        tuned = model_from_config({**config, "lora_path": str(adapter.resolve())})
        result = before_after(examples, experiment.task, base, tuned, variant=record["variant"],
                              cache=out / "cache.sqlite", options=experiment.options)
        table = result.table.set_index("point_id")
        answers = result.predictions[result.predictions["variant"] == "tuned"]
        labels = Counter(str(p) for p in answers["prediction"] if p is not None)
        failures = answers["prediction"].isna().mean()
        by_source = Counter(train["target"].astype(str))
        lines.append((text, len(train), trained.steps, seconds, table.loc[ALL_CASES], table.loc["regression"],
                      failures, labels, by_source))
        print(f"{text}: {len(train)} rows, {trained.steps} steps, {seconds:.0f} s; "
              f"all {table.at[ALL_CASES, 'base']:.3f} -> {table.at[ALL_CASES, 'tuned']:.3f}", flush=True)
    cases = examples.loc[examples["split"] == "test", "example_id"].nunique()
    print(f"\nround {args.round} ({cases} test cases); metric {lines[0][4]['metric']}; "
          "verdicts from the paired test (p two-sided)\n")
    print("| recipe | rows | steps | train s | all: base -> tuned (verdict, p) | regression: base -> tuned (verdict, p)"
          " | parse failures | tuned answers | training labels |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for text, rows, steps, seconds, every, regression, failures, labels, by_source in lines:
        def cell(row):
            return f"{row['base']:.3f} -> {row['tuned']:.3f} ({row['verdict']}, {row['p_value']:.2g})"

        print(f"| {text} | {rows} | {steps} | {seconds:.0f} | {cell(every)} | {cell(regression)} | {failures:.0%} | "
              f"{dict(labels.most_common())} | {dict(by_source.most_common())} |")


if __name__ == "__main__":
    main()
