"""A small OpenAI-compatible HTTP/1.1 stub server with deterministic fault injection.

The stub speaks just enough of the OpenAI REST API for the official ``openai``
SDK to talk to it over real TCP: ``POST /v1/chat/completions`` and
``GET /v1/models`` (both also without the ``/v1`` prefix).  It exists for two
jobs:

* integration tests that need faults injected into a *real* HTTP exchange
  (429 with ``Retry-After``, 500, slow answers, broken bodies, dropped
  connections, unusable model output, a server that stops answering);
* throughput benchmarks, which is why the server is a hand-written
  :class:`asyncio.Protocol` with HTTP keep-alive and no framework: the cost per
  request is a header split, one ``json.loads`` and one ``json.dumps``.

Faults are chosen from the SHA-256 of the raw request body, so a given request
always meets the same fate, independent of timing and concurrency.  Transport
faults only hit the first attempt of a body (a retry succeeds); the two
"content" faults are answers and hit every attempt.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: the module stays stdlib-only at run time
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

# Guards against a client streaming garbage at us forever.
_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}

_LABELS_RE = re.compile(r"^[ \t]*labels[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})


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


def _count_words(text: str) -> int:
    return max(1, len(text.split()))


def _error_json(message: str, type_: str, code: str | None) -> bytes:
    # Same envelope as the OpenAI API so the SDK's error parsing is exercised.
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def _format_seconds(value: float) -> str:
    # "1" rather than "1.0": some clients only accept integer Retry-After.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


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


class _Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time (no pipelining overlap)."""

    def __init__(self, server: StubServer) -> None:
        assert server._loop is not None, "connections only exist once the server started"
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server._loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # (method, path, version, headers, content_length) once the head is parsed.
        self.head: tuple[str, str, str, dict[str, str], int] | None = None
        self.task: asyncio.Task | None = None
        self.lost = False
        self.paused = False
        self.drain_waiter: asyncio.Future | None = None

    # -- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # high=0: the transport pauses us whenever anything is left unsent and
        # resumes us exactly when its buffer is empty again, which is what
        # "response fully written" needs (see _drain).
        transport.set_write_buffer_limits(high=0)
        self.server._connections.add(self)
        self.server.connections_accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server._connections.discard(self)
        if self.drain_waiter is not None:
            # The handler is waiting for its response to flush: let the waiter
            # decide (the flush may have completed just before the close).
            if not self.drain_waiter.done():
                self.drain_waiter.set_exception(ConnectionResetError("connection lost"))
        elif self.task is not None and not self.task.done():
            # The handler logs "aborted" (if it had not logged yet) on cancel.
            self.task.cancel()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._process()

    def eof_received(self) -> bool | None:
        # Treat the client's FIN as "gone" (a killed client's kernel sends FIN,
        # not RST), never as a half-close: answering anyway would log "ok" for
        # a response nobody reads. Returning None makes the transport close,
        # which cancels an in-flight request (logged "aborted").
        return None

    # -- request parsing -------------------------------------------------------------

    def _process(self) -> None:
        """Parse and dispatch buffered requests until one needs to wait."""
        while self.task is None and not self.lost and self.transport is not None and not self.transport.is_closing():
            request = self._parse()
            if request is None:
                return
            self._dispatch(*request)

    def _parse(self) -> tuple[str, str, str, dict[str, str], bytes] | None:
        buf = self.buf
        if self.head is None:
            # RFC 9112 2.2: ignore empty lines before a request line.
            while buf[:2] == b"\r\n":
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD_BYTES:
                    self._fail(431, "request head too large")
                return None
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._fail(400, "malformed request line")
                return None
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._fail(400, "malformed header line")
                    return None
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding", "identity").lower() != "identity":
                self._fail(501, "chunked request bodies are not supported")
                return None
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "bad Content-Length")
                return None
            if length < 0 or length > _MAX_BODY_BYTES:
                self._fail(413, "bad or too large Content-Length")
                return None
            self.head = (method, target.split("?", 1)[0], version, headers, length)
        method, path, version, headers, length = self.head
        if len(buf) < length:
            return None
        body = bytes(buf[:length])
        del buf[:length]
        self.head = None
        return method, path, version, headers, body

    def _fail(self, status: int, message: str) -> None:
        """Answer a protocol error and close: the byte stream can't be trusted any more."""
        self._write(status, _error_json(message, "invalid_request_error", None), keep_alive=False)
        self.buf.clear()
        self.head = None

    def _dispatch(self, method: str, path: str, version: str, headers: dict[str, str], body: bytes) -> None:
        conn_tokens = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in conn_tokens
        else:
            keep_alive = "keep-alive" in conn_tokens
        if path in _CHAT_PATHS:
            if method != "POST":
                self._write(405, _error_json("use POST", "invalid_request_error", None), keep_alive)
                return
            # A task per chat request: it may sleep (delay, slow, hang) and must
            # wait for the write buffer to drain before logging.
            self.task = self.loop.create_task(self._handle_chat(body, keep_alive))
            self.task.add_done_callback(self._task_done)
        elif path in _MODELS_PATHS and method == "GET":
            payload = {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "workbench"}],
            }
            self._write(200, json.dumps(payload).encode(), keep_alive)
        else:
            self._write(404, _error_json(f"no route for {method} {path}", "invalid_request_error", None), keep_alive)

    def _task_done(self, task: asyncio.Task) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            # A bug in the handler must neither pass silently nor leave the
            # client waiting forever.
            self.loop.call_exception_handler(
                {"message": "openai stub: request handler failed", "exception": task.exception(), "task": task}
            )
            if self.transport is not None:
                self.transport.abort()
            return
        if self.buf and not self.lost:
            self._process()

    # -- writing ---------------------------------------------------------------------

    def _write(
        self,
        status: int,
        body: bytes,
        keep_alive: bool,
        extra_headers: str = "",
        content_length: int | None = None,
        close_after: bool = False,
    ) -> bool:
        """Write one response (optionally a lie about its length); False if the peer is gone."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return False
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
            f"{extra_headers}"
            f"Connection: {'keep-alive' if keep_alive and not close_after else 'close'}\r\n\r\n"
        )
        transport.write(head.encode("latin-1") + body)
        if not keep_alive or close_after:
            # close() still flushes what is buffered before closing the socket.
            transport.close()
        return True

    async def _drain(self) -> None:
        """Wait until the transport's write buffer is empty (raises if the peer is gone)."""
        if self.lost:
            raise ConnectionResetError("connection lost")
        if not self.paused:
            return
        self.drain_waiter = self.loop.create_future()
        try:
            await self.drain_waiter
        finally:
            self.drain_waiter = None

    async def _respond(self, status: int, body: bytes, keep_alive: bool, extra_headers: str = "") -> None:
        """Write a full response and wait until it is flushed; ConnectionError if the peer is gone."""
        if not self._write(status, body, keep_alive, extra_headers):
            raise ConnectionResetError("connection lost before the response was written")
        await self._drain()

    # -- the chat completion handler -----------------------------------------------------

    async def _handle_chat(self, raw: bytes, keep_alive: bool) -> None:
        srv = self.server
        cfg = srv.config
        digest = hashlib.sha256(raw).hexdigest()
        attempt = srv._attempts.get(digest, 0) + 1
        srv._attempts[digest] = attempt
        logged = False
        reserved_ok = False
        try:
            if cfg.hang_after_ok is not None and srv._ok_reserved >= cfg.hang_after_ok:
                srv._log(digest, attempt, "hang", None)
                logged = True
                # Never answer; the connection stays open until the client or
                # stop() closes it, which cancels this task.
                await self.loop.create_future()
                return

            try:
                body = json.loads(raw)
            except ValueError as exc:
                body = f"invalid JSON body: {exc}"
            if not isinstance(body, dict):
                if cfg.delay_s:
                    await asyncio.sleep(cfg.delay_s)
                message = body if isinstance(body, str) else "request body must be a JSON object"
                await self._respond(400, _error_json(message, "invalid_request_error", None), keep_alive)
                srv._log(digest, attempt, "bad_request", 400)
                logged = True
                return

            fault = select_fault(digest, cfg.faults, cfg.fault_rate)
            if fault is not None and attempt > 1 and fault not in PERMANENT_FAULTS:
                fault = None
            if fault is None:
                # Reserve the ok now so hang_after_ok yields exactly N oks even
                # with many requests in flight; released below if it fails.
                srv._ok_reserved += 1
                reserved_ok = True

            if cfg.delay_s:
                await asyncio.sleep(cfg.delay_s)

            if fault == "disconnect":
                srv._log(digest, attempt, "disconnect", None)
                logged = True
                if self.transport is not None:
                    self.transport.close()
                return
            if fault == "slow":
                srv._log(digest, attempt, "slow", 200)
                logged = True
                await asyncio.sleep(cfg.slow_s)
            elif fault == "rate_limit":
                await self._respond(
                    429,
                    _error_json("Rate limit reached (stub fault injection)", "requests", "rate_limit_exceeded"),
                    keep_alive,
                    extra_headers=f"Retry-After: {_format_seconds(cfg.retry_after_s)}\r\n",
                )
                srv._log(digest, attempt, fault, 429)
                logged = True
                return
            elif fault == "server_error":
                error = _error_json("Internal server error (stub fault injection)", "server_error", None)
                await self._respond(500, error, keep_alive)
                srv._log(digest, attempt, fault, 500)
                logged = True
                return

            try:
                content = srv.answer(body)
                if not isinstance(content, str):
                    raise TypeError(f"answer() must return str, got {type(content).__name__}")
            except Exception as exc:  # noqa: BLE001 -- a broken custom answer() becomes a 500, not a dead server
                await self._respond(500, _error_json(f"answer() raised {exc!r}", "server_error", None), keep_alive)
                srv._log(digest, attempt, "answer_error", 500)
                logged = True
                return

            finish_reason = "stop"
            if fault == "malformed_content":
                content = MALFORMED_CONTENT
            elif fault == "truncated_content":
                # Cut mid-value (e.g. '{"label": "compl'): a strict prefix of
                # a JSON object is never valid JSON.
                content = content[: max(1, min(len(content) - 1, len(content) * 3 // 4))]
                finish_reason = "length"

            payload = self._completion(body, digest, attempt, content, finish_reason)
            if fault == "malformed_body":
                await self._respond(200, payload[: len(payload) // 2], keep_alive)
                srv._log(digest, attempt, fault, 200)
                logged = True
                return
            if fault == "truncated_body":
                # Promise the full length, deliver half, hang up.
                half = payload[: len(payload) // 2]
                self._write(200, half, keep_alive, content_length=len(payload), close_after=True)
                srv._log(digest, attempt, fault, 200)
                logged = True
                return

            await self._respond(200, payload, keep_alive)
            if fault is None:
                srv._ok_done += 1
                reserved_ok = False  # consumed, not released
            srv._log(digest, attempt, fault or "ok", 200)
            logged = True
        except asyncio.CancelledError:
            # Peer went away (connection_lost cancels us) or the server stops.
            if not logged:
                srv._log(digest, attempt, "aborted", None)
            raise
        except ConnectionError:
            # Lost before or while the response was being written.
            if not logged:
                srv._log(digest, attempt, "aborted", None)
        finally:
            if reserved_ok:
                srv._ok_reserved -= 1

    @staticmethod
    def _completion(body: dict, digest: str, attempt: int, content: str, finish_reason: str) -> bytes:
        messages = body.get("messages")
        prompt_tokens = 0
        if isinstance(messages, list):
            prompt_tokens = sum(len(_message_text(m).split()) for m in messages)
        prompt_tokens = max(1, prompt_tokens)
        completion_tokens = _count_words(content)
        model = body.get("model")
        return json.dumps(
            {
                "id": f"chatcmpl-{digest[:24]}-{attempt}",
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
        self._attempts: dict[str, int] = {}
        self._ok_reserved = 0
        self._ok_done = 0
        self._connections: set[_Connection] = set()
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

    async def start(self) -> None:
        """Bind and start listening; sets :attr:`port` to the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        if self.config.log_path:
            # Kept open for the server's lifetime; a local append-open is instant.
            self._log_file = open(self.config.log_path, "a", encoding="utf-8")  # noqa: ASYNC230, SIM115
        try:
            self._server = await self._loop.create_server(
                lambda: _Connection(self), self.host, self.port, backlog=1024, reuse_address=True
            )
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
        tasks = [c.task for c in self._connections if c.task is not None]
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
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
