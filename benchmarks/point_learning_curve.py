"""How much data does a training point need: a learning curve with real LoRA, in whole epochs.

From a finished round of `workbench loop` (its points, assignments and evaluated examples), the
training data is built again with more held-out test cases and more neighbours per point than a
round keeps (--min-test, --max-neighbours, --neighbours-per-member), so that the point's curve is
read on more than two or three cases and can run to larger sizes. Then `learning_curve` trains,
for each size, a fresh LoRA adapter on every other point's rows plus that many of the point's own
(0 first: none of them), for --epochs whole epochs (so a larger size also means more steps),
converts it and answers the point's test cases in llama.cpp. Printed per size: training rows and
steps, the score on the point's test cases with its interval, and seconds.

Run: .venv/bin/python benchmarks/point_learning_curve.py --round runs/demo_complaints/rounds/1 \\
         --config configs/demo_complaints.yaml [--point P1] [--sizes 2,4,8,16] [--min-test 8] [--anchors 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.core.frames import read_frame
from workbench.experiments.config import load_experiment
from workbench.finetune.learning_curve import learning_curve, llama_cpp_lora_trainer
from workbench.finetune.lora import AdapterSettings, total_steps
from workbench.trainingdata.examples import build_training_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", required=True, type=Path, help="a finished round folder (rounds/<n>)")
    parser.add_argument("--config", required=True, help="the experiment config the loop ran")
    parser.add_argument("--point", default=None, help="the point (default: the one with the most members)")
    parser.add_argument("--sizes", default="2,4,8,16")
    parser.add_argument("--min-test", type=int, default=8)
    parser.add_argument("--max-neighbours", type=int, default=24)
    parser.add_argument("--neighbours-per-member", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=AdapterSettings.learning_rate)
    parser.add_argument("--anchors", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/point_learning_curve"))
    args = parser.parse_args()
    experiment = load_experiment(args.config)
    variant = json.loads((args.round / "round.json").read_text())["variant"]
    points = read_frame(args.round / "points.parquet")
    assignments = read_frame(args.round / "point_assignments.parquet")
    dataset = read_frame(args.round / "dataset.parquet")
    data = build_training_data(points, assignments, dataset, experiment.task, pool=experiment.examples,
                               variant=variant, min_test=args.min_test, max_neighbours=args.max_neighbours,
                               neighbours_per_member=args.neighbours_per_member,
                               anchors=args.anchors, regression_size=0)
    frame = data.examples
    trainable = points[points["kind"].isin(["point", "other"])]
    point = args.point or str(trainable.sort_values("size", ascending=False)["point_id"].iloc[0])
    mine = frame[(frame["point_id"] == point)]
    cases = mine.loc[mine["split"] == "test", "example_id"].nunique()
    print(f"point {point}: {points.set_index('point_id').at[point, 'name']!r}; "
          f"{int((mine['split'] == 'train').sum())} training rows, {cases} test cases; "
          f"other points' rows: {int(((frame['split'] == 'train') & (frame['point_id'] != point)).sum())}")
    settings = AdapterSettings(epochs=args.epochs, learning_rate=args.learning_rate, checkpoint_every=1000)
    sizes = [int(size) for size in args.sizes.split(",")]
    timings: list[float] = []
    trainer = llama_cpp_lora_trainer(settings)

    def timed(chats, folder):
        started = time.perf_counter()
        model = trainer(chats, folder)
        timings.append((len(chats), time.perf_counter() - started))
        return model

    curve = learning_curve(frame, experiment.task, point, timed, args.out / point, sizes=sizes, variant=variant,
                           options=experiment.options)
    print("\n| point's training rows | rows trained | steps | test cases | score [95% CI] | train + convert s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row, (rows, seconds) in zip(curve.to_dict("records"), timings):
        print(f"| {row['examples']} | {rows} | {total_steps(rows, settings)} | {row['cases']} | "
              f"{row['value']:.2f} [{row['low']:.2f}, {row['high']:.2f}]{' (small)' if row['small'] else ''} | "
              f"{seconds:.0f} |")


if __name__ == "__main__":
    main()
