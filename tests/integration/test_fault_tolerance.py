"""The `openai` SDK against a local OpenAI-compatible HTTP server that injects faults.

The server (workbench.testing.openai_stub) logs every request with the SHA-256 of its body, so
the tests can check from the server's side that no call was re-sent after it succeeded.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from workbench.experiments.runs import load_run
from workbench.models import GenerationOptions, OpenAICompatibleModel
from workbench.prompting.runner import RetryPolicy, run_variants
from workbench.testing.openai_stub import FAULTS, PERMANENT_FAULTS, StubConfig, StubServer, read_request_log

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUCCESSFUL = {"ok", *PERMANENT_FAULTS}  # complete 200 answers the client keeps


def successes_per_body(records: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        if record["outcome"] in SUCCESSFUL:
            counts[record["body_sha256"]] += 1
    return counts


def test_run_completes_through_every_fault(tmp_path, complaint_task, complaint_test):
    log = tmp_path / "requests.jsonl"
    config = StubConfig(faults=FAULTS, fault_rate=0.5, retry_after_s=0.3, slow_s=4.0, log_path=str(log))
    server = StubServer(config)
    server.start_in_thread()
    try:
        model = OpenAICompatibleModel(
            "stub-model", base_url=server.base_url, api_key="test-key", structured_output="none",
            timeout_s=1.5, max_concurrency=8,
        )
        dataset = complaint_test.head(40)
        cache = tmp_path / "cache.sqlite"
        retry = RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2)
        predictions = run_variants(
            complaint_task, dataset, ["zero_shot", "definitions"], model,
            options=GenerationOptions(max_tokens=32), cache=cache, retry=retry, progress=False,
        )
        records = server.wait_for_records(len(server.records))
    finally:
        server.stop_thread()

    outcomes = {record["outcome"] for record in records}
    assert set(FAULTS) <= outcomes, f"every fault must really have happened, saw {sorted(outcomes)}"

    # Every (variant, example, repeat) ends with a prediction or a recorded error.
    assert len(predictions) == 80
    has_prediction = predictions["prediction"].notna()
    has_error = predictions["parse_error"].notna() | predictions["request_error"].notna()
    assert (has_prediction ^ has_error).all()
    # Transport faults were retried away; only answers that are themselves broken remain errors.
    assert predictions["request_error"].isna().all(), predictions["request_error"].dropna().tolist()
    # The stub's malformed answer ("Sure! The label is {label: complaint,,") is still read by the
    # tolerant parser; an answer cut off mid-JSON cannot be, and is recorded as a parse error.
    truncated_bodies = {r["body_sha256"] for r in records if r["outcome"] == "truncated_content"}
    truncated = predictions[predictions["finish_reason"] == "length"]
    assert len(truncated) == len(truncated_bodies) > 0
    assert truncated["parse_error"].str.startswith("answer was cut off by the token limit").all()
    assert predictions["parse_error"].notna().sum() == len(truncated)
    malformed = predictions["raw_response"].str.startswith("Sure! The label is")
    assert malformed.sum() == len({r["body_sha256"] for r in records if r["outcome"] == "malformed_content"}) > 0
    assert predictions.loc[malformed, "prediction"].eq("complaint").all()

    # No call was re-sent after it succeeded.
    assert max(successes_per_body(records).values()) == 1
    assert len(successes_per_body(records)) == 80

    # Retry-After was honoured: the retry of a rate-limited body came no sooner than it asked.
    by_body: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_body[record["body_sha256"]].append(record)
    limited = [attempts for attempts in by_body.values() if attempts[0]["outcome"] == "rate_limit"]
    assert limited
    for attempts in limited:
        assert attempts[1]["t"] - attempts[0]["t"] >= 0.3

    stats = predictions.attrs["run_stats"]
    assert stats["retries"] == sum(1 for r in records if r["outcome"] not in SUCCESSFUL and r["outcome"] != "aborted")


def test_rerun_sends_nothing_already_answered(tmp_path, complaint_task, complaint_test):
    log = tmp_path / "requests.jsonl"
    server = StubServer(StubConfig(faults=("server_error",), fault_rate=0.3, log_path=str(log)))
    server.start_in_thread()
    try:
        model = OpenAICompatibleModel("stub-model", base_url=server.base_url, structured_output="none")
        retry = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
        args = (complaint_task, complaint_test.head(20), ["zero_shot"], model)
        first = run_variants(*args, cache=tmp_path / "c.sqlite", retry=retry, progress=False)
        sent = len(server.records)
        second = run_variants(*args, cache=tmp_path / "c.sqlite", retry=retry, progress=False)
        assert len(server.records) == sent
    finally:
        server.stop_thread()
    assert second["cached"].all()
    assert second["prediction"].tolist() == first["prediction"].tolist()


def write_config(path: Path, base_url: str, runs_dir: Path) -> Path:
    config = {
        "name": "killed",
        "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "limit": 60,
        "variants": ["zero_shot", "definitions"],
        "options": {"max_tokens": 32},
        "model": {
            "kind": "openai_compatible", "model": "stub-model", "base_url": base_url, "api_key_env": "STUB_API_KEY",
            "structured_output": "none", "max_concurrency": 4, "timeout_s": 30,
        },
        "runs_dir": str(runs_dir),
    }
    path.write_text(yaml.safe_dump(config))
    return path


def cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=5) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def test_run_killed_part_way_resumes_without_resending(tmp_path):
    log = tmp_path / "requests.jsonl"
    runs = tmp_path / "runs"
    cache = runs / "killed" / "cache.sqlite"
    answered_before_kill = 25

    # Phase 1: the server answers 25 calls, then hangs; the client is SIGKILLed mid-run.
    first = StubServer(StubConfig(faults=("rate_limit",), fault_rate=0.2, retry_after_s=0.1,
                                  hang_after_ok=answered_before_kill, log_path=str(log)))
    first.start_in_thread()
    port = first.port
    config = write_config(tmp_path / "experiment.yaml", first.base_url, runs)
    command = [sys.executable, "-m", "workbench.cli", "run", str(config), "--no-progress"]
    env = {**os.environ, "STUB_API_KEY": "test-key"}
    client = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (cached_rows(cache) == answered_before_kill and any(r["outcome"] == "hang" for r in first.records)):
            assert client.poll() is None, client.stdout.read().decode()
            assert time.monotonic() < deadline, f"only {cached_rows(cache)} answers cached"
            time.sleep(0.05)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
        first.stop_thread()
    assert client.returncode == -signal.SIGKILL
    assert cached_rows(cache) == answered_before_kill

    # Phase 2: same endpoint, healthy again; the same command resumes and finishes.
    second = StubServer(StubConfig(faults=("rate_limit",), fault_rate=0.2, retry_after_s=0.1, log_path=str(log)),
                        port=port)
    second.start_in_thread()
    try:
        finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        second.stop_thread()
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "calls sent" in finished.stdout

    records = read_request_log(log)
    per_body = successes_per_body(records)
    assert max(per_body.values()) == 1, "a call that had succeeded was sent again"
    assert len(per_body) == 120
    run = load_run(runs / "killed")
    assert len(run.predictions) == 120
    assert run.predictions["prediction"].notna().all()
    assert run.stats["cache_hits"] == answered_before_kill


def test_one_model_serves_several_runs_as_in_a_notebook(tmp_path, complaint_task, complaint_test):
    """Each run has its own event loop; connections from an earlier run must not be reused."""
    server = StubServer(StubConfig())
    server.start_in_thread()
    try:
        model = OpenAICompatibleModel("stub-model", base_url=server.base_url, structured_output="none", max_concurrency=4)
        for variants in (["zero_shot"], ["definitions"]):
            predictions = run_variants(complaint_task, complaint_test.head(8), variants, model, progress=False)
            assert predictions.attrs["run_stats"]["failed"] == 0
            assert predictions["request_error"].isna().all()
    finally:
        server.stop_thread()
