"""A small OpenAI-compatible HTTP stub server, built on aiohttp, with deterministic fault injection.

The stub speaks just enough of the OpenAI REST API for the official ``openai``
SDK to talk to it over real TCP: ``POST /v1/chat/completions`` and
``GET /v1/models`` (both also without the ``/v1`` prefix).  It exists for two
jobs:

* integration tests that need faults injected into a *real* HTTP exchange
  (429 with ``Retry-After``, 500, slow answers, broken bodies, dropped
  connections, unusable model output, a server that stops answering);
* throughput benchmarks, which is why it runs on aiohttp's low-level
  :class:`aiohttp.web.Server` (HTTP keep-alive, no router, no middlewares, no
  access log): the cost per request is aiohttp's parser, one ``json.loads`` and
  one ``json.dumps``.

Faults are chosen from the SHA-256 of the raw request body, so a given request
always meets the same fate, independent of timing and concurrency.  Transport
faults only hit the first attempt of a body (a retry succeeds); the two
"content" faults are answers and hit every attempt.  Each fault is one small
handler in ``_FAULT_HANDLERS``.

Every chat request gets one line in the optional JSON-lines request log (see
:func:`read_request_log`).  Outcomes that are full responses (``ok``,
``rate_limit``, ``server_error``, ``malformed_body``, ``malformed_content``,
``truncated_content``, ``bad_request``, ``answer_error``) are logged only after
the response bytes were written to the socket, so "logged ok" means the client
was sent a complete response.  ``slow``, ``hang``, ``disconnect`` and
``truncated_body`` are logged when the fault starts, because the client may
never see an answer.  A request whose connection is lost (or whose server is
stopped) before its response was written is logged as ``aborted`` with status
``null``.

Run as a process::

    python -m workbench.testing.openai_stub --port 0 --delay 0.1 \\
        --faults rate_limit,server_error --fault-rate 0.3 \\
        --hang-after-ok 10 --log /tmp/log.jsonl --port-file /tmp/port
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:  # only for annotations
    from typing_extensions import Self

__all__ = [
    "FAULTS",
    "PERMANENT_FAULTS",
    "StubConfig",
    "StubServer",
    "default_answer",
    "main",
    "read_request_log",
    "select_fault",
]

#: Every fault name the stub understands.
FAULTS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "slow",
    "malformed_body",
    "truncated_body",
    "disconnect",
    "malformed_content",
    "truncated_content",
)

#: Faults that are answers rather than transport errors: they hit every attempt.
PERMANENT_FAULTS: frozenset[str] = frozenset({"malformed_content", "truncated_content"})

MODEL_ID = "stub-model"

# Content sent for the ``malformed_content`` fault: looks like what a chatty
# model produces when it ignores the JSON instruction.
MALFORMED_CONTENT = "Sure! The label is {label: complaint,,"

# Guards against a client streaming garbage at us forever; aiohttp's own
# default (1 MiB) would turn a long prompt into a 413.
_MAX_BODY_BYTES = 64 * 1024 * 1024

_LABELS_RE = re.compile(r"^[ \t]*labels[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MODELS_BODY = json.dumps(
    {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "workbench"}]}
).encode()


@dataclass
class StubConfig:
    """Behaviour of a :class:`StubServer`.

    Attributes:
        delay_s: fixed delay before every response (simulates model latency).
        faults: fault names (see :data:`FAULTS`) that may be injected.
        fault_rate: fraction (0..1) of distinct request bodies that get a fault.
        retry_after_s: value of the ``Retry-After`` header on 429 answers.
        slow_s: extra delay of the ``slow`` fault; meant to exceed the client timeout.
        hang_after_ok: after this many ``ok`` answers every further chat
            request is logged as ``hang`` and never answered.
        log_path: JSON-lines request log to append to, or ``None``.
    """

    delay_s: float = 0.0
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.0
    retry_after_s: float = 1.0
    slow_s: float = 30.0
    hang_after_ok: int | None = None
    log_path: str | None = None

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate}")
        if self.delay_s < 0 or self.slow_s < 0 or self.retry_after_s < 0:
            raise ValueError("delay_s, slow_s and retry_after_s must be >= 0")
        if self.hang_after_ok is not None and self.hang_after_ok < 0:
            raise ValueError("hang_after_ok must be >= 0 or None")


def select_fault(body_sha256: str, faults: tuple[str, ...] | list[str], fault_rate: float) -> str | None:
    """Return the fault configured for a request body hash, or ``None``.

    This ignores the attempt number; :class:`StubServer` applies non-permanent
    faults on the first attempt only.  Exposed so tests can predict outcomes.
    """
    if not faults or fault_rate <= 0.0:
        return None
    if (int(body_sha256[:8], 16) % 1000) / 1000 >= fault_rate:
        return None
    return faults[int(body_sha256[8:16], 16) % len(faults)]


def _message_text(message: Any) -> str:
    """Flatten a chat message's content (string or list of parts) to text."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def _last_user_text(body: dict) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def default_answer(body: dict) -> str:
    """Deterministic default answer: ``{"label": X}`` as a JSON string.

    X is picked from a ``Labels: a, b, c`` line in the last user message by the
    SHA-256 of that message's text, so the same prompt always gets the same
    label; without such a line the label is ``"unknown"``.
    """
    text = _last_user_text(body)
    match = _LABELS_RE.search(text)
    labels = [s.strip() for s in match.group(1).split(",")] if match else []
    labels = [s for s in labels if s]
    if not labels:
        return json.dumps({"label": "unknown"})
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return json.dumps({"label": labels[int(digest[:8], 16) % len(labels)]})


def _error_json(message: str, type_: str, code: str | None) -> bytes:
    # Same envelope as the OpenAI API so the SDK's error parsing is exercised.
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def _format_seconds(value: float) -> str:
    # "1" rather than "1.0": some clients only accept integer Retry-After.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _json_response(
    request: web.BaseRequest, status: int, body: bytes, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    if request.keep_alive:
        # aiohttp leaves the header out on HTTP/1.1 keep-alive; saying it lets a
        # raw-socket client (and the tests) see the connection is kept.
        response.headers["Connection"] = "keep-alive"
    return response


def read_request_log(path: str | os.PathLike[str]) -> list[dict]:
    """Read a request log written by the stub; returns one dict per line.

    A partially written last line (e.g. the server was killed mid-write) is
    ignored rather than raising.
    """
    records: list[dict] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return []
    return records


class _AnswerFailed(Exception):
    """The server's ``answer()`` raised or returned a non-string; becomes a 500."""


class _Call:
    """One chat completion request on its way through a fault handler."""

    __slots__ = ("server", "request", "digest", "attempt", "body", "logged", "ok_reserved")

    def __init__(self, server: StubServer, request: web.BaseRequest, digest: str, attempt: int) -> None:
        self.server = server
        self.request = request
        self.digest = digest
        self.attempt = attempt
        self.body: dict = {}
        self.logged = False
        self.ok_reserved = False

    def log(self, outcome: str, status: int | None) -> None:
        self.server._log(self.digest, self.attempt, outcome, status)
        self.logged = True

    async def send(
        self, status: int, payload: bytes, outcome: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        """Write a whole response, wait until the kernel took every byte, then log it.

        Raises ConnectionError if the peer is gone.  Not logged again if the
        fault already logged itself when it started (``slow``).
        """
        response = _json_response(self.request, status, payload, headers)
        await response.prepare(self.request)
        # write_eof() drains; with the transport's high-water mark at 0 (see
        # StubServer._chat) that means "nothing left unsent".
        await response.write_eof()
        if not self.logged:
            self.log(outcome, status)
        return response

    def content(self) -> str:
        """The answer to this request from the server's ``answer()``; raises _AnswerFailed."""
        try:
            content = self.server.answer(self.body)
        except Exception as exc:  # noqa: BLE001 -- a broken custom answer() becomes a 500, not a dead server
            raise _AnswerFailed(f"answer() raised {exc!r}") from exc
        if not isinstance(content, str):
            raise _AnswerFailed(f"answer() must return str, got {type(content).__name__}")
        return content

    def completion(self, content: str, finish_reason: str = "stop") -> bytes:
        messages = self.body.get("messages")
        prompt_tokens = 0
        if isinstance(messages, list):
            prompt_tokens = sum(len(_message_text(m).split()) for m in messages)
        prompt_tokens = max(1, prompt_tokens)
        completion_tokens = max(1, len(content.split()))
        model = self.body.get("model")
        return json.dumps(
            {
                "id": f"chatcmpl-{self.digest[:24]}-{self.attempt}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model if isinstance(model, str) and model else MODEL_ID,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "stub",
            },
            separators=(",", ":"),
        ).encode()


# -- one handler per outcome -----------------------------------------------------------------


async def _ok(call: _Call) -> web.StreamResponse:
    response = await call.send(200, call.completion(call.content()), "ok")
    call.server._ok_done += 1
    call.ok_reserved = False  # consumed, not released
    return response


async def _rate_limit(call: _Call) -> web.StreamResponse:
    error = _error_json("Rate limit reached (stub fault injection)", "requests", "rate_limit_exceeded")
    retry_after = _format_seconds(call.server.config.retry_after_s)
    return await call.send(429, error, "rate_limit", headers={"Retry-After": retry_after})


async def _server_error(call: _Call) -> web.StreamResponse:
    error = _error_json("Internal server error (stub fault injection)", "server_error", None)
    return await call.send(500, error, "server_error")


async def _slow(call: _Call) -> web.StreamResponse:
    call.log("slow", 200)
    await asyncio.sleep(call.server.config.slow_s)
    # A patient client still gets a good answer (already logged above, so once).
    return await call.send(200, call.completion(call.content()), "slow")


async def _malformed_body(call: _Call) -> web.StreamResponse:
    payload = call.completion(call.content())
    # A complete HTTP response whose JSON body stops half-way.
    return await call.send(200, payload[: len(payload) // 2], "malformed_body")


async def _truncated_body(call: _Call) -> web.StreamResponse:
    payload = call.completion(call.content())
    call.log("truncated_body", 200)
    # Promise the full length, deliver half, hang up.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(payload)
    response.force_close()
    await response.prepare(call.request)
    await response.write(payload[: len(payload) // 2])
    if call.request.transport is not None:
        call.request.transport.close()  # close() still flushes what was written before the FIN
    return response


async def _disconnect(call: _Call) -> web.StreamResponse:
    call.log("disconnect", None)
    if call.request.transport is not None:
        # A FIN with no response, as from a server that crashed mid-request.
        call.request.transport.close()
    # Never sent: aiohttp's write to the closing transport fails and is ignored.
    return web.Response(status=500)


async def _malformed_content(call: _Call) -> web.StreamResponse:
    call.content()  # a broken answer() is still an answer_error, as without the fault
    return await call.send(200, call.completion(MALFORMED_CONTENT), "malformed_content")


async def _truncated_content(call: _Call) -> web.StreamResponse:
    content = call.content()
    # Cut mid-value (e.g. '{"label": "compl'): a strict prefix of a JSON
    # object is never valid JSON.
    content = content[: max(1, min(len(content) - 1, len(content) * 3 // 4))]
    return await call.send(200, call.completion(content, finish_reason="length"), "truncated_content")


async def _hang(call: _Call) -> web.StreamResponse:
    call.log("hang", None)
    # Never answer; the connection stays open until the client or stop()
    # closes it, which cancels this handler.
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable: only cancellation ends the wait")


async def _bad_request(call: _Call, message: str) -> web.StreamResponse:
    if call.server.config.delay_s:
        await asyncio.sleep(call.server.config.delay_s)
    return await call.send(400, _error_json(message, "invalid_request_error", None), "bad_request")


#: Handler per fault; ``None`` is the normal answer.
_FAULT_HANDLERS: dict[str | None, Callable[[_Call], Awaitable[web.StreamResponse]]] = {
    None: _ok,
    "rate_limit": _rate_limit,
    "server_error": _server_error,
    "slow": _slow,
    "malformed_body": _malformed_body,
    "truncated_body": _truncated_body,
    "disconnect": _disconnect,
    "malformed_content": _malformed_content,
    "truncated_content": _truncated_content,
}


class StubServer:
    """OpenAI-compatible stub server; run it in-process (async or in a thread).

    Example (pytest fixture)::

        server = StubServer(StubConfig(delay_s=0.01))
        server.start_in_thread()
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...
        server.stop_thread()
    """

    def __init__(
        self,
        config: StubConfig | None = None,
        answer: Callable[[dict], str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else StubConfig()
        self.answer: Callable[[dict], str] = answer if answer is not None else default_answer
        self.host = host
        self.port = port
        #: Every log record written by this server instance, in order (also when no log file).
        self.records: list[dict] = []
        #: TCP connections accepted so far (lets tests check keep-alive reuse).
        self.connections_accepted = 0
        #: The ``Authorization`` header of every chat request received, in order (None when absent),
        #: so tests can assert which key reached this endpoint. Kept in memory only, never in the log.
        self.authorizations: list[str | None] = []
        self._attempts: dict[str, int] = {}
        self._ok_reserved = 0
        self._ok_done = 0
        self._chat_tasks: set[asyncio.Task] = set()
        self._web: web.Server | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_file: Any = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """Base URL for the OpenAI SDK, e.g. ``http://127.0.0.1:12345/v1``."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ok_count(self) -> int:
        """Number of ``ok`` responses fully written so far."""
        return self._ok_done

    def attempts(self, body_sha256: str) -> int:
        """How many requests with this body hash were seen so far."""
        return self._attempts.get(body_sha256, 0)

    def wait_for_records(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Wait until at least ``count`` log records exist; returns a copy of them.

        A line is written just *after* its response, so a client thread can
        see the response a moment before the line exists: poll, don't assume.
        Raises TimeoutError if the records do not appear in time.
        """
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self.records)} of {count} log records after {timeout}s")
            time.sleep(0.002)
        return list(self.records)

    def _log(self, digest: str, attempt: int, outcome: str, status: int | None) -> None:
        record = {"t": time.time(), "body_sha256": digest, "attempt": attempt, "outcome": outcome, "status": status}
        self.records.append(record)
        if self._log_file is not None:
            # One write + flush per line so a killed client or server leaves a
            # log that is complete up to the last finished request.
            self._log_file.write(json.dumps(record) + "\n")
            self._log_file.flush()

    # -- request handling ------------------------------------------------------------------------

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path in _CHAT_PATHS:
            if method == "POST":
                return await self._chat(request)
            return _json_response(request, 405, _error_json("use POST", "invalid_request_error", None))
        if path in _MODELS_PATHS and method == "GET":
            return _json_response(request, 200, _MODELS_BODY)
        return _json_response(request, 404, _error_json(f"no route for {method} {path}", "invalid_request_error", None))

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            message = f"request body larger than {_MAX_BODY_BYTES} bytes"
            return _json_response(request, 413, _error_json(message, "invalid_request_error", None))
        except ConnectionError:
            return web.Response(status=400)  # the client left mid-body: nobody to answer, nothing to log
        if request.transport is not None:
            # high=0: the transport pauses aiohttp's writer whenever anything is
            # left unsent, so write_eof() returns only once the kernel has every
            # byte, which is what "logged after the response was written" needs.
            request.transport.set_write_buffer_limits(high=0)
        self.authorizations.append(request.headers.get("Authorization"))
        digest = hashlib.sha256(raw).hexdigest()
        attempt = self._attempts.get(digest, 0) + 1
        self._attempts[digest] = attempt
        call = _Call(self, request, digest, attempt)
        cfg = self.config
        task = asyncio.current_task()
        if task is not None:
            self._chat_tasks.add(task)  # stop() cancels these and waits for their "aborted" lines
        try:
            if cfg.hang_after_ok is not None and self._ok_reserved >= cfg.hang_after_ok:
                return await _hang(call)
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body = f"invalid JSON body: {exc}"
            if not isinstance(body, dict):
                return await _bad_request(call, body if isinstance(body, str) else "request body must be a JSON object")
            call.body = body

            fault = select_fault(digest, cfg.faults, cfg.fault_rate)
            if fault is not None and attempt > 1 and fault not in PERMANENT_FAULTS:
                fault = None
            if fault is None:
                # Reserve the ok now so hang_after_ok yields exactly N oks even
                # with many requests in flight; released below if it fails.
                self._ok_reserved += 1
                call.ok_reserved = True
            if cfg.delay_s:
                await asyncio.sleep(cfg.delay_s)
            try:
                return await _FAULT_HANDLERS[fault](call)
            except _AnswerFailed as exc:
                return await call.send(500, _error_json(str(exc), "server_error", None), "answer_error")
        except asyncio.CancelledError:
            # The peer went away (aiohttp cancels the handler: handler_cancellation)
            # or the server stops.
            if not call.logged:
                self._log(digest, attempt, "aborted", None)
            raise
        except ConnectionError:
            # Lost before or while the response was being written; aiohttp's own
            # attempt to send this placeholder fails the same way and is ignored.
            if not call.logged:
                self._log(digest, attempt, "aborted", None)
            return web.Response(status=500)
        finally:
            if task is not None:
                self._chat_tasks.discard(task)
            if call.ok_reserved:
                self._ok_reserved -= 1

    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        # aiohttp's default request factory, with our body limit.
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop, client_max_size=_MAX_BODY_BYTES)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start listening; sets :attr:`port` to the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = loop = asyncio.get_running_loop()
        # handler_cancellation: a client that hangs up (or half-closes: aiohttp
        # does not keep half-open connections) cancels its handler, which logs
        # "aborted" instead of claiming a response reached a dead client.
        self._web = web_server = web.Server(
            self._route, request_factory=self._make_request, handler_cancellation=True, access_log=None
        )

        def accept() -> web.RequestHandler:
            self.connections_accepted += 1
            return web_server()

        if self.config.log_path:
            # Kept open for the server's lifetime; a local append-open is instant.
            self._log_file = open(self.config.log_path, "a", encoding="utf-8")  # noqa: ASYNC230, SIM115
        try:
            self._server = await loop.create_server(accept, self.host, self.port, backlog=1024, reuse_address=True)
        except BaseException:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop open connections (in-flight requests log ``aborted``)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._chat_tasks)
        connections = self._web.connections if self._web is not None else []
        for handler in connections:
            if handler.transport is not None:
                handler.transport.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        # Let abort()'s connection_lost callbacks run before closing the log.
        await asyncio.sleep(0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Start the server on its own event loop in a daemon thread (for sync tests)."""
        if self._thread is not None:
            raise RuntimeError("server thread already running")
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread below
                error.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"openai-stub-{id(self):x}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError("stub server did not start in time")
        if error:
            self._thread.join()
            self._thread = None
            raise error[0]

    def stop_thread(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.stop(), loop)
        try:
            future.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._thread_loop = None

    def __enter__(self) -> Self:
        self.start_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_thread()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.testing.openai_stub",
        description="OpenAI-compatible stub server with deterministic fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="answer delay in seconds")
    parser.add_argument("--faults", default="", help=f"comma-separated subset of: {','.join(FAULTS)}")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429")
    parser.add_argument("--slow", type=float, default=30.0, help="extra delay of the 'slow' fault")
    parser.add_argument("--hang-after-ok", type=int, default=None)
    parser.add_argument("--log", default=None, help="JSON-lines request log path")
    parser.add_argument("--port-file", default=None, help="write the bound port here once listening")
    return parser.parse_args(argv)


def _write_port_file(path: str, port: int) -> None:
    # Write-then-rename so a poller never reads a half-written port.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


async def _serve(args: argparse.Namespace) -> None:
    config = StubConfig(
        delay_s=args.delay,
        faults=tuple(f.strip() for f in args.faults.split(",") if f.strip()),
        fault_rate=args.fault_rate,
        retry_after_s=args.retry_after,
        slow_s=args.slow,
        hang_after_ok=args.hang_after_ok,
        log_path=args.log,
    )
    server = StubServer(config, host=args.host, port=args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.port_file:
        _write_port_file(args.port_file, server.port)
    print(f"listening on {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; serves until SIGTERM/SIGINT. Returns the exit status."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # bad --faults / --fault-rate
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
