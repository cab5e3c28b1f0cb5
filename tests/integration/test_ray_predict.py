"""`ray_predict` on a local Ray against the OpenAI-compatible stub (a real HTTP server that logs
the SHA-256 of every request body): the answers it stores make `run_experiment` give the same
predictions as a direct run, every request is sent once, a second call sends nothing, failures are
reported and not stored, and the key goes to the endpoint only."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import RetryPolicy, pending_requests
from workbench.scale.batch_runs import batch_model
from workbench.testing.openai_stub import StubConfig, StubServer

ray = pytest.importorskip("ray")  # the `scale` extra; `make test` installs it (in CI a skip fails the run)
from workbench.scale.ray_predict import ray_predict

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ray-test-7f3a9c"  # looked for afterwards in every file Ray and the run wrote
COMPARED = ["variant", "example_id", "repeat", "raw_response", "prediction", "parse_error", "request_error"]


@pytest.fixture(scope="module")
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no reports to Ray's servers from the test suite
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield Path(context.address_info["session_dir"])
    ray.shutdown()


class Answers:
    """The stub's answer(): a label chosen by the prompt's hash (so a direct and a Ray call of one
    prompt agree), every body kept; bodies whose text holds a word of `poisoned` fail (500)."""

    def __init__(self, labels):
        self.labels = list(labels)
        self.bodies: list[dict] = []
        self.poisoned: set[str] = set()

    def __call__(self, body):
        self.bodies.append(body)
        text = body["messages"][-1]["content"]
        if any(word in text for word in self.poisoned):
            raise RuntimeError("poisoned")
        digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return json.dumps({"label": self.labels[digest % len(self.labels)]})


def write_config(folder: Path, base_url: str, *, name: str, api_key_env: str | None, **more) -> Path:
    config = {
        "name": name, "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"), "limit": "all",
        "variants": ["zero_shot", "definitions"], "options": {"max_tokens": 32},
        "model": {"kind": "openai_compatible", "model": "stub-model", "base_url": base_url,
                  "api_key_env": api_key_env, "structured_output": "json_schema"},
        "runs_dir": str(folder / "runs"), **more,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ordered(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions[COMPARED].sort_values(["variant", "example_id", "repeat"]).reset_index(drop=True)


def test_ray_then_the_run_from_the_cache_equals_a_direct_run(tmp_path, local_ray, complaint_task, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    answers = Answers(complaint_task.label_names)
    server = StubServer(StubConfig(delay_s=0.005), answer=answers)
    server.start_in_thread()
    try:
        config = write_config(tmp_path, server.base_url, name="ray", api_key_env="STUB_KEY")
        experiment = load_experiment(config)
        model = batch_model(experiment)
        planned = pending_requests(experiment.task, experiment.dataset, experiment.variants, model,
                                   options=experiment.options)
        result = ray_predict(config, concurrency=2, progress=False)
        ray_records, ray_bodies, ray_keys = list(server.records), list(answers.bodies), list(server.authorizations)
        run = run_experiment(result.experiment, unsent=result.failed, progress=False)
        again = ray_predict(config, progress=False)
        assert len(server.records) == len(ray_records), "the second call sent requests"
        # The direct run: the same config on a fresh cache, through the runner.
        direct_config = write_config(tmp_path / "direct", server.base_url, name="direct", api_key_env="STUB_KEY")
        direct = run_experiment(load_experiment(direct_config), progress=False)
    finally:
        server.stop_thread()

    assert len(planned) == 2 * 143
    assert (result.answered, result.failed, result.sent) == (len(planned), {}, len(planned))
    assert (again.answered, again.failed) == (0, {})
    # Every request once, answered, and its body the one a direct call sends for that cache key.
    assert len(ray_records) == len(planned) and {r["outcome"] for r in ray_records} == {"ok"}
    assert max(Counter(r["body_sha256"] for r in ray_records).values()) == 1
    assert sorted(json.dumps(b, sort_keys=True) for b in ray_bodies) == sorted(
        json.dumps(model.request_body(r), sort_keys=True) for r in planned.values())
    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache:
        assert set(cache.get_many(planned)) == set(planned)
    # The run came from the cache whole, and predicts what the direct run predicts.
    assert run.stats["calls_sent"] == 0 and run.stats["cache_hits"] == len(planned)
    assert direct.stats["calls_sent"] == len(planned)
    assert run.predictions["prediction"].notna().all()
    pd.testing.assert_frame_equal(ordered(run.predictions), ordered(direct.predictions))
    # The key went to the endpoint with every request, and was written nowhere.
    assert ray_keys == [f"Bearer {KEY}"] * len(planned)
    for folder in (local_ray, tmp_path):
        leaked = [p for p in folder.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
        assert leaked == [], f"the key is in {leaked}"


def test_failures_are_reported_not_stored_and_the_next_call_sends_only_them(tmp_path, local_ray, complaint_task,
                                                                            complaint_test):
    answers = Answers(complaint_task.label_names)
    rows = complaint_test.head(60)
    answers.poisoned = set(rows["text"].head(4))
    server = StubServer(StubConfig(faults=("rate_limit", "server_error", "malformed_body", "disconnect",
                                           "truncated_body"), fault_rate=0.3, retry_after_s=0.05), answer=answers)
    server.start_in_thread()
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
    try:
        config = write_config(tmp_path, server.base_url, name="faults", api_key_env=None, variants=["zero_shot"])
        first = ray_predict(config, rows[["example_id", "text"]], batch_size=8, retry=retry, progress=False)
        run = run_experiment(first.experiment, unsent=first.failed, progress=False)
        sent_first = len(server.records)
        answers.poisoned = set()  # the endpoint recovers
        second = ray_predict(first.experiment, batch_size=8, retry=retry, progress=False)
        later = server.records[sent_first:]
    finally:
        server.stop_thread()

    assert first.answered == 56 and len(first.failed) == 4
    assert all(why.startswith("HTTP 500: answer() raised RuntimeError('poisoned')") for why in first.failed.values())
    # Transport faults really happened and were retried away; no answered request was sent again.
    outcomes = Counter(r["outcome"] for r in server.records)
    assert {"rate_limit", "server_error", "malformed_body", "disconnect", "truncated_body"} <= set(outcomes)
    answered_bodies = Counter(r["body_sha256"] for r in server.records if r["outcome"] == "ok")
    assert max(answered_bodies.values()) == 1 and len(answered_bodies) == 60
    # The failures are the run's request errors; nothing was sent for them in the run.
    assert run.stats["calls_sent"] == 0
    errors = run.predictions.set_index("example_id")["request_error"].dropna()
    assert set(errors.index) == set(rows["example_id"].head(4))
    # The second call sent the four failed requests and nothing else.
    assert (second.answered, second.failed) == (4, {})
    assert len(later) == 4 and len({r["body_sha256"] for r in later}) == 4
    assert server.authorizations == [None] * len(server.authorizations)  # api_key_env: null sends no key
    with ResponseCache(first.experiment.run_dir / "cache.sqlite") as cache:
        assert set(first.failed) <= set(cache.get_many(first.failed))
