"""The logic of `workbench.scale.ray_predict` that needs no Ray: the rows handed to Ray's HTTP
processor, the session its HTTP stage posts through (against the stub, called the way Ray's stage
calls it), and the processor's output rows turned into cache entries or reported failures."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from workbench.core.errors import InputError
from workbench.experiments.config import load_experiment
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import RetryPolicy
from workbench.scale import ray_predict as rp
from workbench.testing.openai_stub import StubConfig, StubServer

TASK = {"name": "t", "kind": "classification",
        "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]}
CHAT = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": '{"label": "complaint"}'}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
CHAT_TEXT = json.dumps(CHAT)
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)


def request(text: str, **options) -> ChatRequest:
    return ChatRequest(({"role": "user", "content": text},), GenerationOptions(**options))


def envelope(status=200, text=CHAT_TEXT, error="", latency_s=0.25) -> dict:
    return {"status": status, "text": text, "error": error, "latency_s": latency_s, "attempts": 1}


def test_each_row_carries_its_key_and_the_exact_body_as_text():
    model = OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1", structured_output="json_schema")
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}
    pending = {"k1": request("hé", seed=3), "k2": ChatRequest(({"role": "user", "content": "x"},), schema=schema)}
    rows = rp.request_rows(pending, model)
    assert [row["key"] for row in rows] == ["k1", "k2"]
    # One string per row whatever the body's shape, so Arrow has nothing to reshape.
    assert all(set(row["payload"]) == {"body"} and isinstance(row["payload"]["body"], str) for row in rows)
    assert [json.loads(row["payload"]["body"]) for row in rows] == [model.request_body(r) for r in pending.values()]
    assert "hé" in rows[0]["payload"]["body"]


@pytest.mark.parametrize("status, text, why", [
    (200, CHAT_TEXT, ""),
    (500, json.dumps({"error": {"message": "boom", "type": "server_error"}}), "HTTP 500: boom"),
    (404, "<html>not here</html>", "HTTP 404: <html>not here</html>"),
    (400, "", "HTTP 400: (empty body)"),
    (200, "Sure! {label", "malformed response body: 'Sure! {label'"),
    (200, json.dumps({"object": "chat.completion", "choices": []}), "the response has no choices"),
])
def test_answer_problem_says_why_an_answer_holds_no_completion(status, text, why):
    problem = rp.answer_problem(status, text)
    assert problem.startswith(why) and bool(problem) == bool(why)


def test_read_answer_gives_the_completion_or_the_reason():
    completion = rp.read_answer({"key": "k", **envelope()})
    assert (completion.text, completion.tokens_in, completion.tokens_out, completion.finish_reason,
            completion.latency_s) == ('{"label": "complaint"}', 7, 3, "stop", 0.25)
    assert rp.read_answer(envelope(status=0, text="", error="connection failed: x")) == "connection failed: x"
    assert rp.read_answer(envelope(status=429, text="{}")) == "HTTP 429: {}"


def test_write_answers_stores_the_good_ones_and_reports_the_rest(tmp_path):
    identity = {"kind": "openai_compatible", "model": "m"}
    pending = {key: request(key) for key in ("good", "refused", "broken", "lost")}
    rows = [
        {"key": "good", **envelope()},
        {"key": "refused", **envelope(status=401, text=json.dumps({"error": {"message": "bad key"}}))},
        {"key": "broken", **envelope(text="not json")},
        {"key": "good", **envelope(text="not json")},  # a second row for a key: ignored
        {"key": "stranger", **envelope()},  # not a request of this run: ignored
    ]
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        answered, failed = rp.write_answers(rows, pending, cache, identity)
        assert answered == 1 and len(cache) == 1 and cache.get("good").text == '{"label": "complaint"}'
        assert cache.get("stranger") is None
    assert failed == {"refused": "HTTP 401: bad key", "broken": "malformed response body: 'not json'",
                      "lost": "no answer came back from Ray (its block failed and was dropped)"}


def post_all(server: StubServer | str, texts: list[str], retry: RetryPolicy = FAST, headers=None) -> list[dict]:
    """Post each text as Ray 2.60's HttpRequestUDF does: create every request first, then await
    and enter each in turn, read `.status` and `await .json()`."""
    url = (server if isinstance(server, str) else server.base_url) + "/chat/completions"

    async def run() -> list[dict]:
        async with rp.SessionFactory(timeout_s=5.0, retry=retry)() as session:
            started = [session.post(url, headers={"Content-Type": "application/json", **(headers or {})},
                                    data=json.dumps({"body": text})) for text in texts]
            out = []
            for one in started:
                async with await one as response:
                    assert response.status == 200  # never a status the stage would retry or fail on
                    out.append(await response.json())
            return out

    return asyncio.run(run())


def body(text: str) -> str:
    return json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": text}], "max_tokens": 8})


def test_the_session_posts_the_text_unchanged_with_the_stages_headers():
    received = []
    server = StubServer(answer=lambda b: received.append(b) or '{"label": "complaint"}')
    server.start_in_thread()
    try:
        [answer] = post_all(server, [body("one")], headers={"Authorization": "Bearer k-1"})
    finally:
        server.stop_thread()
    assert received == [json.loads(body("one"))] and server.authorizations == ["Bearer k-1"]
    assert server.records[0]["body_sha256"] == hashlib.sha256(body("one").encode()).hexdigest()  # byte for byte
    assert answer["status"] == 200 and answer["error"] == "" and answer["attempts"] == 1
    assert json.loads(answer["text"])["choices"][0]["message"]["content"] == '{"label": "complaint"}'


def test_the_session_retries_transient_faults_and_reports_what_keeps_failing():
    def answer(b):
        if "poison" in b["messages"][0]["content"]:
            raise RuntimeError("poisoned")
        return '{"label": "complaint"}'

    server = StubServer(StubConfig(faults=("rate_limit", "malformed_body", "disconnect", "server_error"),
                                   fault_rate=1.0, retry_after_s=0.05), answer=answer)
    server.start_in_thread()
    try:
        texts = [body(f"text {i}") for i in range(12)]
        answers = post_all(server, texts)
        poisoned = post_all(server, [body("poison")])
        status_server = StubServer(StubConfig(status_for_all=401))
        status_server.start_in_thread()
        try:
            refused = post_all(status_server, [body("x")])
        finally:
            status_server.stop_thread()
    finally:
        server.stop_thread()
    # Every text met a fault on its first attempt (fault_rate 1) and was answered on the second.
    assert [(a["error"], a["attempts"]) for a in answers] == [("", 2)] * 12
    assert {r["outcome"] for r in server.records} >= {"rate_limit", "malformed_body", "disconnect", "server_error"}
    [kept_failing] = poisoned
    assert kept_failing["attempts"] == 3 and kept_failing["status"] == 500
    assert kept_failing["error"].startswith("HTTP 500: answer() raised RuntimeError('poisoned')")
    assert kept_failing["error"].endswith("(after 3 attempts)")
    [not_retried] = refused  # a refusal is not retried
    assert not_retried["attempts"] == 1 and not_retried["error"].startswith("HTTP 401")


def test_a_batchs_requests_are_in_flight_together():
    server = StubServer(StubConfig(delay_s=0.3))
    server.start_in_thread()
    try:
        started = time.perf_counter()
        answers = post_all(server, [body(f"t{i}") for i in range(8)])
        elapsed = time.perf_counter() - started
    finally:
        server.stop_thread()
    assert all(a["error"] == "" for a in answers)
    assert elapsed < 1.2, f"8 requests of 0.3 s took {elapsed:.2f} s: sent one by one"


def test_a_connection_that_fails_is_reported():
    server = StubServer()
    server.start_in_thread()
    gone = server.base_url
    server.stop_thread()  # nothing listens there now
    [answer] = post_all(gone, [body("x")], retry=RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.01))
    assert answer["status"] == 0 and answer["attempts"] == 2 and answer["error"].startswith("connection failed")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(TASK))
    rows = pd.DataFrame({"example_id": [f"e{i}" for i in range(6)], "text": [f"text {i}" for i in range(6)],
                         "label": ["complaint", "request"] * 3})
    rows.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    config = {"name": "exp", "task": "task.yaml", "dataset": "test.jsonl", "variants": ["zero_shot"],
              "runs_dir": str(tmp_path / "runs"),
              "model": {"kind": "openai_compatible", "model": "m", "base_url": "http://127.0.0.1:1/v1",
                        "api_key_env": None}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_a_dataset_replaces_the_experiments_rows(project):
    experiment = load_experiment(project / "exp.yaml")
    texts = pd.DataFrame({"example_id": ["a", "b"], "text": ["first", "second"]})  # no gold: texts to label
    replaced = rp._experiment(experiment, texts)
    assert replaced.dataset["text"].tolist() == ["first", "second"]
    assert replaced.source["dataset"] == "a DataFrame given to ray_predict" and replaced.task is experiment.task
    texts.to_json(project / "more.jsonl", orient="records", lines=True)
    assert rp._experiment(project / "exp.yaml", project / "more.jsonl").dataset["example_id"].tolist() == ["a", "b"]
    assert len(rp._experiment(str(project / "exp.yaml"), None).dataset) == 6
    with pytest.raises(InputError, match="dataset must be a DataFrame"):
        rp._experiment(experiment, [{"example_id": "a", "text": "x"}])
    with pytest.raises(InputError, match="config must be"):
        rp._experiment({"name": "exp"}, None)


def test_without_ray_it_says_how_to_install_it(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'workbench\[scale\]'"):
        rp.ray_predict(project / "exp.yaml")


def test_importing_it_does_not_import_ray():
    code = "import sys, workbench.scale.ray_predict; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
