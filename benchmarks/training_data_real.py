"""Training data on a real paraphrase-rich pool: clinc150, read in place from /work/shared/datasets.

The set-up a new user met (issue 17): 77 intents, 10 labelled examples per intent (seeded), one per
intent as the run's examples and the other 9 as the pool (693 texts), and a zero-shot run that
answers one intent to 76 of the 77 (a default answer: the most common failure of a small model with
many labels). Then the stages the loop runs after the variants, on the real sentence encoder:
training points (`ErrorClusterer`) and `build_training_data` with anchors and a regression set.

Prints how many near-duplicate groups the texts form, the leaks found by the final check (0 is the
only acceptable figure), the rows per split and source, and seconds per stage, with the encoder's
own time for the same texts beside them (the floor any build pays once). Before the near-duplicate
groups and the vector cache, the same build raised LeakageError and took 238 s (issue 17).

Run: .venv/bin/python benchmarks/training_data_real.py [--intents 77] [--per-intent 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import warnings
from pathlib import Path

import pandas as pd

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.points.cluster import ErrorClusterer
from workbench.points.encoder import CachedEncoder, SentenceEncoder
from workbench.trainingdata.examples import build_training_data
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE, find_leaks

CLINC = Path("/work/shared/datasets/clinc150")


def clinc_sample(intents: int, per_intent: int, seed: int) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    """(task, run examples: one per intent, pool: the rest) from clinc150's train split."""
    rows = [json.loads(line) for line in (CLINC / "train.jsonl").read_text(encoding="utf-8").splitlines() if line]
    labels = sorted({row["label"] for row in rows if row["label"] != "oos"})[:intents]
    rng = random.Random(seed)
    chosen = []
    for label in labels:
        of_label = [row for row in rows if row["label"] == label]
        chosen += rng.sample(of_label, per_intent)
    task = task_from_dict({"name": "clinc150", "kind": "classification",
                           "instructions": "Classify the customer's message by its intent.",
                           "labels": [{"name": label} for label in labels]})
    frame = pd.DataFrame({"example_id": [str(row["id"]) for row in chosen], "text": [row["text"] for row in chosen],
                          "label": [row["label"] for row in chosen]})
    first = frame.groupby("label", sort=False).head(1).index
    return task, validate_dataset(frame.loc[first].reset_index(drop=True), task), validate_dataset(
        frame.drop(index=first).reset_index(drop=True), task)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=77)
    parser.add_argument("--per-intent", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task, run, pool = clinc_sample(args.intents, args.per_intent, args.seed)
    default = task.label_names[0]
    answers = [default if label != default else task.label_names[1] for label in run["label"]]
    answers[0] = run["label"].iloc[0]  # one right answer, as in the run the issue reports
    predictions = pd.DataFrame({"variant": "zero_shot", "example_id": run["example_id"], "repeat": 0,
                                "prediction": answers, "raw_response": answers, "parse_error": None,
                                "request_error": None, "hallucinations": [[] for _ in answers], "latency_s": 0.1,
                                "tokens_in": 10, "tokens_out": 2, "cost": 0.0})
    errors = find_errors(predictions, run, task)
    print(f"clinc150: {args.intents} intents x {args.per_intent}: {len(run)} run examples, {len(pool)} pool texts, "
          f"{len(errors)} errors (zero_shot answers {default!r} to {answers.count(default)})")

    started = time.perf_counter()
    bare = SentenceEncoder()
    bare.encode(["warm-up"])  # the model load is not part of any timing
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    bare.encode(list(run["text"]) + list(pool["text"]))
    encode_s = time.perf_counter() - started

    encoder = CachedEncoder(SentenceEncoder())
    started = time.perf_counter()
    clusterer = ErrorClusterer(encoder=encoder).fit(errors, predictions, task)
    points_s = time.perf_counter() - started
    started = time.perf_counter()
    data = build_training_data(clusterer.points_, clusterer.assignments_, run, task, pool=pool, anchors=1.0,
                               encoder=encoder)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    leaks = find_leaks(data.examples, encoder, NEAR_DUPLICATE_COSINE)
    check_s = time.perf_counter() - started

    print(f"points: {len(clusterer.points_)} ({dict(clusterer.points_['kind'].value_counts())}); largest "
          f"{clusterer.points_['size'].max()} examples")
    for note in data.notes[:3]:
        print(f"note: {note}")
    groups = data.groups
    print(f"groups kept together: {groups['group'].nunique() if len(groups) else 0} "
          f"({len(groups)} examples); leaks found by the final check: {len(leaks)}")
    print(data.examples.groupby(["split", "source"]).size().to_string())
    print(f"\n{'stage':<44} {'seconds':>8}")
    for name, seconds in (("encoder load (once per process)", load_s),
                          (f"encoder alone, {len(run) + len(pool)} texts (the floor)", encode_s),
                          ("training points (ErrorClusterer.fit)", points_s),
                          ("build_training_data", build_s), ("find_leaks again, cached vectors", check_s)):
        print(f"{name:<44} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
