"""Push 1,000 records to the embedded Argilla through the workbench and through the bare SDK; pull them back.

Data: the texts of data/complaint_triage (train + test), replicated to --records examples (each
copy its own example_id and a numbered text), with predictions from 4 prompt variants x 3 repeats
drawn by a seeded generator (variants and repeats disagree; 2% of answers unreadable). Built
before any clock starts.

Timed, in the same run, on the same server, alternating, --rounds times each:
- workbench: `push_predictions(..., variant="few_shot", batch_size=256)` into a new dataset: it
  makes the dataset, works out each example's suggestion (majority over repeats, score = agreement),
  metadata, priority and variants table, and logs the records in batches.
- bare SDK: `rg.Dataset(..., settings=dataset_settings(task)).create()` then `dataset.records.log(records)`
  (its default batch of 256) of the same records, already built as `rg.Record` objects with the
  same fields, metadata and suggestion (score, agent) before the clock starts.
Both include making the dataset. Reported: records/s (median round) and the workbench's overhead.
The workbench's own preparation (everything but the server's work) is timed on its own too.

Then every record gets a submitted annotator response (logged by the owner through the SDK, not
timed), and `pull_corrections` (records, responses and suggestions over REST, the DataFrame, the
snapshot file) is timed, with the SDK's `dataset.records(with_responses=True)` read for reference.

Run: .venv/bin/python benchmarks/argilla_push.py [--records 1000] [--rounds 3]
     [--api-url URL --api-key KEY]   (default: a fresh embedded server in a temporary home)
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import argilla as rg
import pandas as pd

from workbench.annotation import connect, dataset_settings, pull_corrections, push_predictions
from workbench.annotation.records import summarise_examples
from workbench.core.data import load_dataset
from workbench.core.task import load_task
from workbench.evaluation.errors import find_errors

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("zero_shot", "few_shot", "definitions", "cot")
CHOSEN = "few_shot"


def build_data(n: int, seed: int) -> tuple:
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    source = pd.concat(
        [load_dataset(ROOT / f"data/complaint_triage/{split}.jsonl", task) for split in ("train", "test")]
    )
    rows = [
        {"example_id": f"bench-{i:05d}", "text": f"{text} (#{i})", "label": label}
        for i, (text, label) in enumerate(zip(source["text"].tolist() * (n // len(source) + 1),
                                             source["label"].tolist() * (n // len(source) + 1)))
    ][:n]
    dataset = pd.DataFrame(rows)
    rng = random.Random(seed)
    labels = task.label_names
    accuracy = {"zero_shot": 0.55, "few_shot": 0.7, "definitions": 0.75, "cot": 0.65}
    predictions = []
    for row in rows:
        for variant in VARIANTS:
            for repeat in range(3):
                roll = rng.random()
                if roll < 0.02:
                    answer = None
                elif roll < accuracy[variant]:
                    answer = row["label"]
                else:
                    answer = rng.choice(labels)
                predictions.append({
                    "variant": variant, "example_id": row["example_id"], "repeat": repeat,
                    "raw_response": f'{{"label": "{answer}"}}' if answer else "I cannot tell.",
                    "prediction": answer, "parse_error": None if answer else "no JSON object", "request_error": None,
                })
    return task, dataset, pd.DataFrame(predictions)


def bare_records(task, predictions, dataset) -> list[rg.Record]:
    """The records push_predictions logs, built with the SDK directly (not timed)."""
    errors = find_errors(predictions[predictions["variant"] == CHOSEN], dataset, task)
    summaries = summarise_examples(task, predictions, dataset, variant=CHOSEN, errors=errors)
    records = []
    for row in summaries.to_dict("records"):
        suggestions = []
        if row["suggestion"] is not None:
            suggestions.append(rg.Suggestion("label", row["suggestion"], score=float(row["suggestion_score"]),
                                             agent=CHOSEN))
        records.append(rg.Record(
            id=row["example_id"],
            fields={"text": row["text"], "variant_predictions": row["variant_predictions"]},
            metadata={"variant": CHOSEN, "error_type": row["error_type"], "consistency": float(row["consistency"]),
                      "variants_disagreeing": int(row["variants_disagreeing"]), "priority": int(row["priority"])},
            suggestions=suggestions,
        ))
    return records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-url")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    task, dataset, predictions = build_data(args.records, args.seed)
    home = None
    if args.api_url:
        client = connect(args.api_url, args.api_key)
        where = args.api_url
    else:
        from workbench_argilla_embedded import start_server, stop_server

        home = Path(tempfile.mkdtemp(prefix="argilla-bench-")) / "home"
        started = time.monotonic()
        info = start_server(home=home, port=free_port(), quiet=True)
        print(f"embedded Argilla started in {time.monotonic() - started:.1f} s at {info.api_url}")
        client = connect(info.api_url, info.api_key)
        where = "embedded (SQLite, workbench-sql search engine)"
    try:
        run(client, task, dataset, predictions, args, where)
    finally:
        if home is not None:
            stop_server(home, quiet=True)


def run(client, task, dataset, predictions, args, where: str) -> None:
    n = len(dataset)
    workspace = client.workspaces.default
    print(f"server: {where}; {n} records, {len(VARIANTS)} variants x 3 repeats, batches of 256")

    started = time.monotonic()
    errors = find_errors(predictions[predictions["variant"] == CHOSEN], dataset, task)
    summaries = summarise_examples(task, predictions, dataset, variant=CHOSEN, errors=errors)
    prepared = time.monotonic() - started
    print(f"workbench preparation alone (suggestions, metadata, tables, order): {prepared:.3f} s")

    ours, bare = [], []
    stamp = int(time.time())
    for round_ in range(args.rounds):
        name = f"bench-wb-{stamp}-{round_}"
        started = time.monotonic()
        result = push_predictions(client, task, predictions, dataset, variant=CHOSEN, name=name, progress=False)
        ours.append(time.monotonic() - started)
        assert result.records == n and result.created

        records = bare_records(task, predictions, dataset)
        started = time.monotonic()
        remote = rg.Dataset(name=f"bench-sdk-{stamp}-{round_}", workspace=workspace,
                            settings=dataset_settings(task, client=client), client=client).create()
        remote.records.log(records)
        bare.append(time.monotonic() - started)
        print(f"round {round_ + 1}: workbench {ours[-1]:.2f} s ({n / ours[-1]:.1f} records/s), "
              f"bare SDK {bare[-1]:.2f} s ({n / bare[-1]:.1f} records/s)")
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    print(f"push, median of {args.rounds}: workbench {n / ours_s:.1f} records/s, bare SDK {n / bare_s:.1f} records/s; "
          f"workbench overhead {100 * (ours_s - bare_s) / bare_s:+.1f}% (target: at most +10%)")

    # Pull: one submitted annotator response per record of the last workbench dataset.
    name = f"bench-wb-{stamp}-{args.rounds - 1}"
    remote = client.datasets(name, workspace=workspace)
    annotator = next((user for user in client.users if user.role == "annotator"), client.me)
    answers = dict(zip(dataset["example_id"], dataset["label"]))
    remote.records.log([
        rg.Record(id=example_id, fields={"text": text, "variant_predictions": table},
                  responses=[rg.Response("label", answers[example_id], user_id=annotator.id, status="submitted")])
        for example_id, text, table in zip(summaries["example_id"], summaries["text"], summaries["variant_predictions"])
    ])
    pulls, reads = [], []
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(args.rounds):
            started = time.monotonic()
            corrections = pull_corrections(client, task, name, out_dir=out_dir)
            pulls.append(time.monotonic() - started)
            started = time.monotonic()
            read = list(remote.records(with_responses=True, with_suggestions=True))
            reads.append(time.monotonic() - started)
        snapshots = len(list(Path(out_dir, name).glob("*.jsonl")))
    assert len(corrections) == n and len(read) == n and snapshots == args.rounds
    accepted = corrections["accepted_suggestion"].mean()
    print(f"pull of {n} records with {len(corrections)} responses: "
          f"pull_corrections median {statistics.median(pulls):.2f} s "
          f"(best {min(pulls):.2f} s, includes the snapshot file); SDK records(with_responses=True) read "
          f"median {statistics.median(reads):.2f} s for reference; {accepted:.0%} of responses equal the suggestion")


if __name__ == "__main__":
    main()
