"""Tests for the OpenAI-compatible stub server (workbench.testing.openai_stub).

They drive the stub with the real ``openai`` SDK over TCP and, where the SDK
hides the wire format (broken bodies, keep-alive, hang-ups), with raw sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from workbench.testing.openai_stub import (
    FAULTS,
    MALFORMED_CONTENT,
    PERMANENT_FAULTS,
    STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS,
    STRICT_UNSUPPORTED_KEYWORDS,
    StubConfig,
    StubServer,
    check_response_format,
    default_answer,
    read_request_log,
    schema_example,
    select_fault,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [
    {"role": "system", "content": "You label customer messages."},
    {"role": "user", "content": "My parcel never arrived.\nLabels: complaint, praise, question"},
]


# -- helpers ------------------------------------------------------------------------


def _client(server: StubServer, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=timeout)


def _chat(client: openai.OpenAI, messages: list[dict] = MESSAGES, **kwargs: object):
    return client.chat.completions.create(model="test-model", messages=messages, **kwargs)


def _request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    all_headers.update(headers or {})
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _recv_until_closed_or(sock: socket.socket, predicate) -> bytes:
    data = b""
    while not predicate(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Read one response; returns (status, headers, body, complete)."""
    data = _recv_until_closed_or(sock, lambda d: b"\r\n\r\n" in d)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    rest += _recv_until_closed_or(sock, lambda d: len(rest) + len(d) >= length) if len(rest) < length else b""
    return status, headers, rest[:length], len(rest) >= length


def _connect(server: StubServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    return sock


def _body_bytes(messages: list[dict] = MESSAGES) -> bytes:
    return json.dumps({"model": "test-model", "messages": messages}).encode()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator:
    """Factory fixture: start stub servers in threads, stop them all afterwards."""
    servers: list[StubServer] = []

    def make(answer=None, **config: Any) -> StubServer:
        config.setdefault("log_path", str(tmp_path / f"log{len(servers)}.jsonl"))
        server = StubServer(StubConfig(**config), answer=answer)
        server.start_in_thread()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop_thread()


# -- normal answers -------------------------------------------------------------------


def test_normal_answer_and_usage(make_server) -> None:
    server = make_server()
    completion = _chat(_client(server))
    assert completion.object == "chat.completion"
    assert completion.model == "test-model"
    choice = completion.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert json.loads(choice.message.content)["label"] in {"complaint", "praise", "question"}
    words = sum(len(m["content"].split()) for m in MESSAGES)
    assert completion.usage.prompt_tokens == words
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    # Deterministic: the same prompt always gets the same label.
    assert _chat(_client(server)).choices[0].message.content == choice.message.content


def test_default_answer() -> None:
    def body(text: object) -> dict:
        return {"messages": [{"role": "user", "content": "ignored\nLabels: x"}, {"role": "user", "content": text}]}

    assert json.loads(default_answer(body("no labels here"))) == {"label": "unknown"}
    assert json.loads(default_answer({"messages": []})) == {"label": "unknown"}
    text = "hello\nLabels: alpha, beta ,gamma\n"
    expected = ["alpha", "beta", "gamma"][int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 3]
    assert json.loads(default_answer(body(text))) == {"label": expected}
    # Content given as a list of parts (vision-style messages) is understood too.
    assert json.loads(default_answer(body([{"type": "text", "text": "Labels: only"}]))) == {"label": "only"}
    # Across many prompts every label gets used.
    seen = {json.loads(default_answer(body(f"msg {i}\nLabels: a, b, c")))["label"] for i in range(50)}
    assert seen == {"a", "b", "c"}


def test_custom_answer_and_models(make_server) -> None:
    server = make_server(answer=lambda body: f"echo {body['seed']} {body['temperature']}")
    client = _client(server)
    completion = _chat(client, seed=7, temperature=0.5, max_tokens=5, response_format={"type": "json_object"})
    assert completion.choices[0].message.content == "echo 7 0.5"
    assert [m.id for m in client.models.list()] == ["stub-model"]


def test_answer_exception_is_a_500(make_server) -> None:
    def broken(body: dict) -> str:
        raise RuntimeError("boom")

    server = make_server(answer=broken)
    with pytest.raises(openai.InternalServerError):
        _chat(_client(server))
    assert server.wait_for_records(1)[-1]["outcome"] == "answer_error"


def test_paths_without_v1_and_errors(make_server) -> None:
    server = make_server()
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/chat/completions", _body_bytes()))
        status, _, body, _ = _read_response(sock)
        assert status == 200 and json.loads(body)["object"] == "chat.completion"
        sock.sendall(_request_bytes("GET", "/models"))
        status, _, body, _ = _read_response(sock)
        assert status == 200 and json.loads(body)["data"][0]["id"] == "stub-model"
        sock.sendall(_request_bytes("GET", "/v1/nope"))
        status, _, body, _ = _read_response(sock)
        assert status == 404 and "error" in json.loads(body)
        sock.sendall(_request_bytes("GET", "/v1/chat/completions"))
        assert _read_response(sock)[0] == 405
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", b"{not json"))
        status, _, body, _ = _read_response(sock)
        assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert [r["outcome"] for r in server.wait_for_records(2)] == ["ok", "bad_request"]


# -- fault injection ----------------------------------------------------------------------


def test_select_fault_is_deterministic() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    assert all(select_fault(h, FAULTS, 0.0) is None for h in hashes)
    assert all(select_fault(h, ("disconnect",), 1.0) == "disconnect" for h in hashes)
    picked = [select_fault(h, ("rate_limit", "slow"), 0.3) for h in hashes]
    assert 0.25 < sum(p is not None for p in picked) / len(picked) < 0.35
    assert {p for p in picked if p} == {"rate_limit", "slow"}
    h = hashes[0]
    expected = FAULTS[int(h[8:16], 16) % len(FAULTS)] if (int(h[:8], 16) % 1000) / 1000 < 0.5 else None
    assert select_fault(h, FAULTS, 0.5) == expected


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        StubConfig(faults=("nope",))
    with pytest.raises(ValueError):
        StubConfig(fault_rate=1.5)
    assert StubConfig(faults=["slow"]).faults == ("slow",)  # type: ignore[arg-type]


def _log_outcomes(server: StubServer, count: int) -> list[tuple[int, str, int | None]]:
    # Lines are written right after the response, so wait for them first.
    server.wait_for_records(count)
    assert server.config.log_path is not None
    return [(r["attempt"], r["outcome"], r["status"]) for r in read_request_log(server.config.log_path)]


def test_fault_rate_limit(make_server) -> None:
    server = make_server(faults=("rate_limit",), fault_rate=1.0, retry_after_s=2)
    client = _client(server)
    with pytest.raises(openai.RateLimitError) as info:
        _chat(client)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    assert _chat(client).choices[0].finish_reason == "stop"
    assert _log_outcomes(server, 2) == [(1, "rate_limit", 429), (2, "ok", 200)]


def test_fault_server_error(make_server) -> None:
    server = make_server(faults=("server_error",), fault_rate=1.0)
    client = _client(server)
    with pytest.raises(openai.InternalServerError) as info:
        _chat(client)
    assert info.value.status_code == 500
    _chat(client)
    assert _log_outcomes(server, 2) == [(1, "server_error", 500), (2, "ok", 200)]


def test_fault_slow(make_server) -> None:
    server = make_server(faults=("slow",), fault_rate=1.0, slow_s=1.0)
    client = _client(server, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _chat(client)
    assert time.monotonic() - started < 0.9
    _chat(client)
    assert _log_outcomes(server, 2) == [(1, "slow", 200), (2, "ok", 200)]


def test_fault_slow_answers_a_patient_client(make_server) -> None:
    server = make_server(faults=("slow",), fault_rate=1.0, slow_s=0.2)
    started = time.monotonic()
    assert json.loads(_chat(_client(server)).choices[0].message.content)["label"]
    assert time.monotonic() - started >= 0.2
    server.stop_thread()  # so that any line still due is written
    assert [r["outcome"] for r in server.records] == ["slow"]  # one line, logged when the fault started


def test_fault_malformed_body(make_server) -> None:
    server = make_server(faults=("malformed_body",), fault_rate=1.0)
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes()))
        status, headers, body, complete = _read_response(sock)
    assert status == 200 and complete
    assert headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)
    # The SDK surfaces it on the first attempt (currently as a bare
    # json.JSONDecodeError, not an openai.APIError); the retry parses.
    other = [{"role": "user", "content": "another body"}]
    client = _client(server)
    with pytest.raises((ValueError, openai.APIError)):
        _chat(client, messages=other)
    _chat(client, messages=other)
    assert [o for _, o, _ in _log_outcomes(server, 3)] == ["malformed_body", "malformed_body", "ok"]


def test_fault_truncated_body(make_server) -> None:
    server = make_server(faults=("truncated_body",), fault_rate=1.0)
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes()))
        status, headers, body, complete = _read_response(sock)
        assert sock.recv(1) == b""  # and then the server hung up
    assert status == 200 and not complete
    assert 0 < len(body) < int(headers["content-length"])
    other = [{"role": "user", "content": "another body"}]
    client = _client(server)
    with pytest.raises(openai.APIConnectionError):
        _chat(client, messages=other)
    _chat(client, messages=other)
    assert _log_outcomes(server, 3) == [(1, "truncated_body", 200), (1, "truncated_body", 200), (2, "ok", 200)]


def test_fault_disconnect(make_server) -> None:
    server = make_server(faults=("disconnect",), fault_rate=1.0)
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes()))
        assert sock.recv(65536) == b""
    other = [{"role": "user", "content": "another body"}]
    client = _client(server)
    with pytest.raises(openai.APIConnectionError):
        _chat(client, messages=other)
    _chat(client, messages=other)
    assert _log_outcomes(server, 3) == [(1, "disconnect", None), (1, "disconnect", None), (2, "ok", 200)]


def test_fault_malformed_content_is_permanent(make_server) -> None:
    server = make_server(faults=("malformed_content",), fault_rate=1.0)
    client = _client(server)
    for _ in range(3):
        completion = _chat(client)
        assert completion.choices[0].message.content == MALFORMED_CONTENT
        assert completion.choices[0].finish_reason == "stop"
        with pytest.raises(ValueError):
            json.loads(completion.choices[0].message.content)
    assert _log_outcomes(server, 3) == [(n, "malformed_content", 200) for n in (1, 2, 3)]


def test_fault_truncated_content_is_permanent(make_server) -> None:
    messages = [{"role": "user", "content": "Labels: complaint"}]
    server = make_server(faults=("truncated_content",), fault_rate=1.0)
    client = _client(server)
    full = default_answer({"messages": messages})
    for _ in range(2):
        completion = _chat(client, messages=messages)
        content = completion.choices[0].message.content
        assert completion.choices[0].finish_reason == "length"
        assert content == '{"label": "compl' and full.startswith(content)
        with pytest.raises(ValueError):
            json.loads(content)
    assert _log_outcomes(server, 2) == [(1, "truncated_content", 200), (2, "truncated_content", 200)]


def test_mixed_faults_follow_select_fault(make_server) -> None:
    faults = ("rate_limit", "server_error", "malformed_content")
    server = make_server(faults=faults, fault_rate=0.5)
    client = _client(server)
    for i in range(30):
        try:
            _chat(client, messages=[{"role": "user", "content": f"message {i}"}])
        except openai.APIStatusError:
            pass
    server.wait_for_records(30)
    records = read_request_log(server.config.log_path)
    assert len(records) == 30
    for record in records:
        expected = select_fault(record["body_sha256"], faults, 0.5) or "ok"
        assert record["outcome"] == expected
    assert len({r["outcome"] for r in records}) > 1


def test_transport_faults_do_not_repeat(make_server) -> None:
    transport_faults = tuple(f for f in FAULTS if f not in PERMANENT_FAULTS and f != "slow")
    server = make_server(faults=transport_faults, fault_rate=1.0)
    client = _client(server)
    for i in range(8):
        messages = [{"role": "user", "content": f"retry me {i}"}]
        with pytest.raises((ValueError, openai.APIError)):
            _chat(client, messages=messages)
        assert _chat(client, messages=messages).choices[0].finish_reason == "stop"


# -- request log, hang_after_ok, connections ------------------------------------------------


def test_request_log_lines(make_server) -> None:
    server = make_server()
    client = _client(server)
    _chat(client)
    _chat(client)
    _chat(client, messages=[{"role": "user", "content": "other"}])
    server.wait_for_records(3)
    records = read_request_log(server.config.log_path)
    outcomes = [(r["attempt"], r["outcome"], r["status"]) for r in records]
    assert outcomes == [(1, "ok", 200), (2, "ok", 200), (1, "ok", 200)]
    assert set(records[0]) == {"t", "body_sha256", "attempt", "outcome", "status"}
    assert records[0]["body_sha256"] == records[1]["body_sha256"] != records[2]["body_sha256"]
    assert records[0]["t"] <= records[1]["t"] <= records[2]["t"] <= time.time()
    assert records == server.records


def test_body_hash_is_sha256_of_raw_bytes(make_server) -> None:
    server = make_server()
    raw = b'{"model": "m",   "messages": [{"role": "user", "content": "hi"}]}'
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", raw))
        assert _read_response(sock)[0] == 200
    assert server.wait_for_records(1)[0]["body_sha256"] == hashlib.sha256(raw).hexdigest()
    assert server.attempts(hashlib.sha256(raw).hexdigest()) == 1


def test_read_request_log_tolerates_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"outcome": "ok"}\n{"outcome": "o')
    assert read_request_log(path) == [{"outcome": "ok"}]
    assert read_request_log(tmp_path / "missing.jsonl") == []


def test_hang_after_ok(make_server) -> None:
    server = make_server(hang_after_ok=2)
    for i in range(2):
        _chat(_client(server), messages=[{"role": "user", "content": f"m{i}"}])
    client = _client(server, timeout=0.3)  # short timeout only where a hang is expected
    with pytest.raises(openai.APITimeoutError):
        _chat(client, messages=[{"role": "user", "content": "m2"}])
    with pytest.raises(openai.APITimeoutError):
        _chat(client, messages=[{"role": "user", "content": "m0"}])  # even known bodies hang
    assert [o for _, o, _ in _log_outcomes(server, 4)] == ["ok", "ok", "hang", "hang"]
    assert server.ok_count == 2


def test_hang_after_ok_is_exact_under_concurrency(make_server) -> None:
    server = make_server(hang_after_ok=3, delay_s=0.05)

    async def run() -> list[object]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=1.0)
        calls = [
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"c{i}"}]) for i in range(8)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        await client.close()
        return results

    results = asyncio.run(run())
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, openai.APITimeoutError) for r in results if isinstance(r, BaseException))
    outcomes = sorted(o for _, o, _ in _log_outcomes(server, 8))
    assert outcomes == ["hang"] * 5 + ["ok"] * 3


def test_keep_alive_reuses_connection(make_server) -> None:
    server = make_server()
    client = _client(server)
    for i in range(5):
        _chat(client, messages=[{"role": "user", "content": f"k{i}"}])
    assert server.connections_accepted == 1
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes()))
            status, headers, _, complete = _read_response(sock)
            assert status == 200 and complete and headers["connection"] == "keep-alive"
    assert server.connections_accepted == 2


def test_connection_close_is_honoured(make_server) -> None:
    server = make_server()
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes(), {"Connection": "close"}))
        status, headers, _, complete = _read_response(sock)
        assert status == 200 and complete and headers["connection"] == "close"
        assert sock.recv(1) == b""


def test_half_close_counts_as_gone(make_server) -> None:
    # A FIN is taken as "client gone" (a SIGKILLed client sends FIN), so the
    # log never claims a response was delivered to a dead client.
    server = make_server(delay_s=0.1)
    with _connect(server) as sock:
        sock.sendall(_request_bytes("POST", "/v1/chat/completions", _body_bytes()))
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
    assert [(r["outcome"], r["status"]) for r in server.wait_for_records(1)] == [("aborted", None)]


def test_request_split_across_packets(make_server) -> None:
    server = make_server()
    data = _request_bytes("POST", "/v1/chat/completions", _body_bytes())
    with _connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
            time.sleep(0.001)
        assert _read_response(sock)[0] == 200


def test_client_disconnects_mid_request(make_server) -> None:
    server = make_server(delay_s=0.2)
    data = _request_bytes("POST", "/v1/chat/completions", _body_bytes())
    with _connect(server) as sock:  # half a request, then gone
        sock.sendall(data[: len(data) - 10])
    with _connect(server) as sock:  # a full request, gone during the delay
        sock.sendall(data)
        time.sleep(0.05)
    assert [(r["outcome"], r["status"]) for r in server.wait_for_records(1)] == [("aborted", None)]
    assert server.ok_count == 0
    _chat(_client(server))  # still serving
    assert server.wait_for_records(2)[-1]["outcome"] == "ok"


def test_async_in_process_usage(tmp_path: Path) -> None:
    async def run() -> str:
        async with StubServer(StubConfig(delay_s=0.01)) as server:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
            results = await asyncio.gather(
                *(client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(20))
            )
            await client.close()
            assert server.connections_accepted <= 20
            return results[0].choices[0].message.content

    assert json.loads(asyncio.run(run()))["label"] in {"complaint", "praise", "question"}


def test_cli(tmp_path: Path) -> None:
    port_file, log = tmp_path / "port", tmp_path / "log.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "workbench.testing.openai_stub", "--port", "0", "--delay", "0.01",
           "--faults", "rate_limit,server_error", "--fault-rate", "0.3", "--hang-after-ok", "10",
           "--retry-after", "0.05", "--log", str(log), "--port-file", str(port_file)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "stub CLI did not start"
            time.sleep(0.02)
        port = int(port_file.read_text())
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=3)
        assert _chat(client).choices[0].finish_reason == "stop"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.strip() == f"listening on http://127.0.0.1:{port}/v1"
    assert read_request_log(log)[-1]["outcome"] == "ok"


# -- strict structured outputs (response_format json_schema) -------------------------------


def _strict(schema: dict, name: str = "answer", strict: bool = True) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def _object(properties: dict, **extra: object) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False, **extra}


# Every construct strict mode supports, nested: enum, arrays of objects, nullable unions, $defs and $ref.
VALID_SCHEMA = _object(
    {
        "reasoning": {"type": "string"},
        "label": {"type": "string", "enum": ["complaint", "request"]},
        "entities": {"type": "array", "maxItems": 5, "items": _object(
            {"text": {"type": "string", "pattern": "^\\S+$"}, "label": {"type": "string", "enum": ["DRUG"]}})},
        "score": {"type": "number", "minimum": 0.5, "maximum": 1},
        "count": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "when": {"type": "string", "format": "date-time"},
        "step": {"$ref": "#/$defs/step"},
        "either": {"anyOf": [{"type": "string", "const": "x"}, {"type": "null"}]},
    },
    **{"$defs": {"step": _object({"explanation": {"type": "string"}})}},
)


def test_schema_example_follows_the_schema() -> None:
    assert schema_example(VALID_SCHEMA) == {
        "reasoning": "", "label": "complaint", "entities": [], "score": 0.5, "count": 0, "urgent": False,
        "note": "", "when": "", "step": {"explanation": ""}, "either": "x",
    }
    assert schema_example({"type": "array", "minItems": 2, "items": {"type": "string", "enum": ["a", "b"]}}) == [
        "a", "a"]
    recursive = _object({"children": {"type": "array", "items": {"$ref": "#"}}, "next": {"$ref": "#/$defs/gone"}})
    assert schema_example(recursive) == {"children": [], "next": None}


def test_a_strict_request_that_keeps_the_rules_is_answered_following_the_schema(make_server) -> None:
    server = make_server()
    completion = _chat(_client(server), response_format=_strict(VALID_SCHEMA))
    assert json.loads(completion.choices[0].message.content) == schema_example(VALID_SCHEMA)
    # llama.cpp's json_object with a schema is answered the same way.
    completion = _chat(_client(server), response_format={"type": "json_object", "schema": VALID_SCHEMA})
    assert json.loads(completion.choices[0].message.content) == schema_example(VALID_SCHEMA)
    assert [r["outcome"] for r in server.wait_for_records(2)] == ["ok", "ok"]


def _mutated(path: tuple, change) -> dict:
    schema = json.loads(json.dumps(VALID_SCHEMA))
    node = schema
    for key in path:
        node = node[key]
    change(node)
    return schema


STRICT_VIOLATIONS = [
    # (schema, rule, context the error names, words the message must contain)
    ({"anyOf": [VALID_SCHEMA]}, "root_object", (), "root schema must be an object"),
    ({"type": "array", "items": VALID_SCHEMA}, "root_object", (), "root schema must be an object"),
    (_mutated((), lambda n: n.pop("additionalProperties")), "additional_properties", (), "'additionalProperties'"),
    (_mutated(("properties", "entities", "items"), lambda n: n.update(additionalProperties=True)),
     "additional_properties", ("properties", "entities", "items"), "to be false"),
    (_mutated((), lambda n: n["required"].remove("urgent")), "required_all", (), "Missing ['urgent']"),
    (_mutated(("$defs", "step"), lambda n: n.update(required=[])), "required_all", ("$defs", "step"),
     "Missing ['explanation']"),
    (_mutated((), lambda n: n["required"].append("ghost")), "required_all", (), "Extra required key(s) ['ghost']"),
    (_mutated(("properties", "reasoning"), lambda n: n.update(maxLength=300)), "unsupported_keyword",
     ("properties", "reasoning"), "'maxLength' is not permitted"),
    (_mutated(("properties", "entities", "items", "properties", "text"), lambda n: n.update(minLength=1)),
     "unsupported_keyword", ("properties", "entities", "items", "properties", "text"), "'minLength' is not permitted"),
    (_mutated(("properties", "entities"), lambda n: n.update(uniqueItems=True)), "unsupported_keyword",
     ("properties", "entities"), "'uniqueItems' is not permitted"),
    (_mutated((), lambda n: n.update(allOf=[{"type": "object"}])), "unsupported_keyword", (), "'allOf'"),
    (_mutated(("properties", "either", "anyOf", 0), lambda n: n.update(type="date")), "unsupported_type",
     ("properties", "either", "anyOf", 0), "type 'date' is not supported"),
    (_mutated(("properties", "when"), lambda n: n.update(format="uri")), "unsupported_format",
     ("properties", "when"), "format 'uri' is not supported"),
    (_mutated(("properties", "count"), lambda n: n.pop("type")), "type_required", ("properties", "count"),
     "must have a 'type' key"),
]


@pytest.mark.parametrize(("schema", "rule", "context", "words"), STRICT_VIOLATIONS,
                         ids=[f"{case[1]}-{i}" for i, case in enumerate(STRICT_VIOLATIONS)])
def test_a_strict_schema_that_breaks_a_rule_is_refused_with_a_400(make_server, schema, rule, context, words) -> None:
    # Faults do not matter: a request error is answered before any fault, on every attempt.
    server = make_server(faults=("rate_limit",), fault_rate=1.0)
    client = _client(server)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as info:
            _chat(client, response_format=_strict(schema))
        error = info.value
        assert error.status_code == 400 and error.code == rule
        assert error.body["type"] == "invalid_request_error" and error.body["param"] == "response_format"
        assert f"Invalid schema for response_format 'answer': In context={context!r}" in error.message
        assert words in error.message and f"strict mode rule: {rule}" in error.message
    assert _log_outcomes(server, 2) == [(1, "bad_request", 400), (2, "bad_request", 400)]


@pytest.mark.parametrize("name", ["has space", "x" * 65, "", "dots.not.allowed", None])
def test_the_schema_name_must_match_openais_pattern(make_server, name) -> None:
    server = make_server()
    response_format = _strict(VALID_SCHEMA, name=name)
    with pytest.raises(openai.BadRequestError) as info:
        _chat(_client(server), response_format=response_format)
    assert info.value.code == "name_pattern" and info.value.body["param"] == "response_format.json_schema.name"
    assert "^[a-zA-Z0-9_-]{1,64}$" in info.value.message
    assert server.wait_for_records(1)[0]["outcome"] == "bad_request"
    assert check_response_format(_strict(VALID_SCHEMA, name="a-Z_09" + "x" * 58)) is None  # 64 characters


def test_without_strict_the_schema_is_a_hint_and_not_checked(make_server) -> None:
    server = make_server()
    loose = {"type": "object", "properties": {"label": {"type": "string", "minLength": 2}}}
    completion = _chat(_client(server), response_format=_strict(loose, strict=False))
    assert json.loads(completion.choices[0].message.content) == {"label": ""}
    # The envelope is checked all the same.
    with pytest.raises(openai.BadRequestError) as info:
        _chat(_client(server), response_format={"type": "json_schema"})
    assert info.value.code == "schema_missing"


def test_strict_limits_and_keyword_sets() -> None:
    def nested(levels: int) -> dict:
        schema: dict = {"type": "string"}
        for _ in range(levels):
            schema = _object({"inner": schema})
        return schema

    assert check_response_format(_strict(nested(10))) is None  # the root counts as the first level
    violation = check_response_format(_strict(nested(11)))
    assert (violation.rule, len(violation.path)) == ("nesting_depth", 20)
    many = _object({f"p{i}": {"type": "string", "enum": [f"v{j}" for j in range(300)]} for i in range(4)})
    assert check_response_format(_strict(many)).rule == "too_many_enum_values"
    # Fine-tuned models refuse what the current guide allows for other models.
    assert {"maxItems", "pattern", "minimum"} <= STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS - STRICT_UNSUPPORTED_KEYWORDS
    violation = check_response_format(_strict(VALID_SCHEMA), unsupported_keywords=STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS)
    assert (violation.rule, violation.path) == ("unsupported_keyword", ("properties", "entities"))
    assert check_response_format({"type": "json_object"}) is None and check_response_format(None) is None


def test_the_keyword_set_is_configurable(make_server) -> None:
    server = make_server(strict_unsupported_keywords=STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS)
    with pytest.raises(openai.BadRequestError, match="'maxItems' is not permitted"):
        _chat(_client(server), response_format=_strict(VALID_SCHEMA))


# -- status_for_all, Retry-After as a date --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "code"),
    [(401, openai.AuthenticationError, "invalid_api_key"), (403, openai.PermissionDeniedError, "model_not_allowed"),
     (404, openai.NotFoundError, "model_not_found"), (503, openai.InternalServerError, None)],
)
def test_status_for_all_answers_every_chat_request_with_that_status(make_server, status, exception, code) -> None:
    server = make_server(status_for_all=status, faults=("rate_limit",), fault_rate=1.0)
    client = _client(server)
    for _ in range(2):
        with pytest.raises(exception) as info:
            _chat(client, response_format=_strict({"type": "array"}))  # refused before the body is looked at
        assert info.value.status_code == status and info.value.code == code
        assert f"status_for_all={status}" in info.value.message
    assert "'test-model'" in info.value.message or status != 404
    assert _log_outcomes(server, 2) == [(1, "status_for_all", status), (2, "status_for_all", status)]
    assert [m.id for m in client.models.list()] == ["stub-model"]  # only chat requests are refused


def test_status_for_all_must_be_an_error_status() -> None:
    for status in (200, 302, 600):
        with pytest.raises(ValueError, match="status_for_all"):
            StubConfig(status_for_all=status)


def test_retry_after_as_an_http_date(make_server) -> None:
    server = make_server(faults=("rate_limit",), fault_rate=1.0, retry_after_s=2, retry_after_http_date=True)
    before = time.time()
    with pytest.raises(openai.RateLimitError) as info:
        _chat(_client(server))
    header = info.value.response.headers["retry-after"]
    assert header.endswith(" GMT")
    when = parsedate_to_datetime(header).timestamp()
    assert before + 2 <= when <= time.time() + 3  # rounded up to a whole second, never early
