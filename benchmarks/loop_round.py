"""One round of the loop on each demo task: wall time by stage, and what the round did.

Runs `workbench.experiments.rounds.run_round` (the code behind `workbench loop`) once per config,
each in a fresh temporary loop folder (so no cache helps), and prints one table: seconds for the
prompt variants, the training points, the training data, the LoRA training (with the conversion to
GGUF) and the re-test, then the rows trained, the test cases, and the before/after on all test
cases and on the regression set.

    .venv/bin/python benchmarks/loop_round.py                       # the demo's settings
    .venv/bin/python benchmarks/loop_round.py --limit 12 --epochs 1 # a quick look

The defaults are `make demo`'s: 24 examples and three variants per task, 16 LoRA steps, a
regression set of at most 20.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from workbench.experiments.config import load_experiment
from workbench.experiments.rounds import STAGES, RoundSettings, run_round
from workbench.finetune.lora import AdapterSettings

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/demo_complaints.yaml", "configs/demo_adverse_events.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--variants", default="zero_shot,definitions,few_shot")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16, help="0: train for --epochs")
    parser.add_argument("--regression-size", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()
    rows = []
    for config in args.configs:
        experiment = load_experiment(ROOT / config, limit=args.limit, variants=args.variants.split(","))
        training = AdapterSettings(epochs=args.epochs, max_steps=args.steps or None, learning_rate=args.learning_rate,
                                   checkpoint_every=10)
        settings = RoundSettings(training=training, regression_size=args.regression_size)
        with tempfile.TemporaryDirectory() as folder:
            started = time.monotonic()
            done = run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda _: None)
            total = time.monotonic() - started
            record = done.record
            table = done.frame("finetune/lora/before_after.csv") if done.adapter else pd.DataFrame()
        every, counts = record.get("all_test_cases", {}), record.get("counts", {})
        regression = table[table["point_id"] == "regression"].iloc[0] if not table.empty else None
        rows.append({
            "task": experiment.task.name, "kept": record.get("accepted"), "kind": str(experiment.task.kind),
            "examples": len(experiment.dataset),
            **{f"{stage} s": record["stages"].get(stage) for stage in STAGES}, "total s": round(total, 1),
            "points": counts.get("points"), "rows trained": counts.get("train_rows"), "test cases": every.get("cases"),
            "all: before -> after": f"{every['base']:.3f} -> {every['tuned']:.3f} ({every['verdict']})"
                                    if every else "",
            "regression: before -> after": f"{regression['base']:.3f} -> {regression['tuned']:.3f} "
                                           f"({regression['verdict']})" if regression is not None else "",
        })
    print(f"one round per task: {args.limit} examples, variants {args.variants}, "
          f"{f'{args.steps} steps' if args.steps else f'{args.epochs} epochs'}, learning rate {args.learning_rate}")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
