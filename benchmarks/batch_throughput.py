"""The batch path's own cost: requests written as Batch API lines, an engine's result lines
imported into the response cache, and the run finished from the cache and scored.

    .venv/bin/python benchmarks/batch_throughput.py [--requests 100000] [--openai 10000]

Stages, timed one by one on one process:

1. ``export``: `export_batch`, rendering every request (prompt, options, cache key) and writing its
   line (`workbench batch export`);
2. the engine: every line answered with a chat completion, as ``vllm run-batch`` writes them. This
   is not the workbench's time and is reported apart; the baseline beside it is the bare cost of
   reading and writing the same lines with ``json`` alone;
3. ``import``: `import_batch`, every line checked and stored in the cache (`workbench batch import`);
4. ``run + score``: `run_experiment` from the cache (0 calls) and the run's summary.

The workbench's overhead is stages 1, 3 and 4 per request. Goal (issue 20): at most 1 ms a
request and 2 GB of peak memory (the process's maximum resident set, which includes the Python
stack). With ``--openai N`` it also times ``workbench run --batch openai`` end to end against the
stub's Batch API (upload, polling, download, import, run), N requests.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment
from workbench.scale.batch_runs import batch_run, export_batch, import_batch

ROOT = Path(__file__).resolve().parents[1]

LABELS = ["complaint", "request", "fraud", "hardship"]


def write_config(folder: Path, rows: int, base_url: str, name: str) -> Path:
    data = folder / f"{name}.jsonl"
    pd.DataFrame({"example_id": [f"e{n}" for n in range(rows)],
                  "text": [f"message {n}: my card was charged {n % 97} times, please look at account {n}"
                           for n in range(rows)],
                  "label": [LABELS[n % 4] for n in range(rows)]}).to_json(data, orient="records", lines=True)
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "name": name, "task": str(ROOT / "data/complaint_triage/task.yaml"), "dataset": str(data),
        "variants": ["zero_shot", "definitions"], "runs_dir": str(folder / "runs"), "options": {"max_tokens": 32},
        "model": {"kind": "openai_compatible", "model": "gpt-4o-mini", "base_url": base_url, "api_key_env": None}}))
    return config


def answer_lines(requests: list[Path], results: Path) -> int:
    """The engine's part: one 200 result line per request line, streamed, in reverse order per file."""
    count = 0
    with open(results, "w", encoding="utf-8") as out:
        for path in requests:
            lines = path.read_text(encoding="utf-8").splitlines()
            for n, text in enumerate(reversed(lines)):
                custom_id = json.loads(text)["custom_id"]
                body = {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": "gpt-4o-mini",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": json.dumps(
                                         {"label": LABELS[n % 4]})}}],
                        "usage": {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126}}
                out.write(json.dumps({"id": f"batch_req_{n}", "custom_id": custom_id, "error": None,
                                      "response": {"status_code": 200, "request_id": f"r{n}", "body": body}}) + "\n")
                count += 1
    return count


def bare_baseline(requests: list[Path], results: Path) -> float:
    """Seconds to read every request line and every result line with ``json`` and nothing else."""
    started = time.perf_counter()
    for path in [*requests, results]:
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                json.loads(text)
    return time.perf_counter() - started


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def files_path(folder: Path, requests: int) -> None:
    config = write_config(folder, requests // 2, "http://127.0.0.1:9/v1", "files")  # never called
    experiment = load_experiment(config)
    seconds = {}
    started = time.perf_counter()
    count, files = export_batch(experiment, folder / "requests.jsonl")
    seconds["export"] = time.perf_counter() - started
    started = time.perf_counter()
    answered = answer_lines(files, folder / "results.jsonl")
    seconds["engine (not ours)"] = time.perf_counter() - started
    baseline = bare_baseline(files, folder / "results.jsonl")
    started = time.perf_counter()
    outcome = import_batch(experiment, [folder / "results.jsonl"])
    seconds["import"] = time.perf_counter() - started
    started = time.perf_counter()
    run = run_experiment(experiment, progress=False)
    summary = run.summary()
    seconds["run + score"] = time.perf_counter() - started
    assert count == answered == outcome.answered == requests and run.stats.get("calls_sent", 0) == 0
    ours = seconds["export"] + seconds["import"] + seconds["run + score"]
    print(f"## Files path (`workbench batch export` / `import`), {requests:,} requests\n")
    print("| stage | seconds | ms per request |\n|---|---|---|")
    for stage, value in seconds.items():
        print(f"| {stage} | {value:.1f} | {1000 * value / requests:.3f} |")
    print(f"| bare json baseline: read the request and result lines | {baseline:.1f} | "
          f"{1000 * baseline / requests:.3f} |")
    print(f"\nworkbench overhead: {1000 * ours / requests:.3f} ms per request (goal <= 1 ms); "
          f"request files: {len(files)}; peak memory so far {peak_mb():,.0f} MB (goal <= 2,048 MB); "
          f"{len(summary)} variants scored (the engine's labels are arbitrary)\n")


def openai_path(folder: Path, requests: int) -> None:
    from workbench.testing.openai_stub import StubServer

    stub = StubServer()
    stub.start_in_thread()
    try:
        experiment = load_experiment(write_config(folder, requests // 2, stub.base_url, "openai"))
        started = time.perf_counter()
        run, outcome = batch_run(experiment, poll_s=0.05, progress=False)
        wall = time.perf_counter() - started
        assert outcome.answered == requests and run.stats.get("calls_sent", 0) == 0
    finally:
        stub.stop_thread()
    print(f"## `workbench run --batch openai` against the stub's Batch API, {requests:,} requests\n")
    print(f"{wall:.1f} s end to end ({1000 * wall / requests:.3f} ms per request, the stub answering in the same "
          f"process included); {len(stub.batches.created)} batch(es); peak memory {peak_mb():,.0f} MB\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests through the files path")
    parser.add_argument("--openai", type=int, default=10_000, help="requests through --batch openai (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("files", "openai"):
            (Path(scratch) / name).mkdir()
        files_path(Path(scratch) / "files", args.requests)
        if args.openai:
            openai_path(Path(scratch) / "openai", args.openai)


if __name__ == "__main__":
    main()
