"""Batch request and result files: the JSONL lines of OpenAI's Batch API, which ``vllm run-batch``
and other engines read too.

A request line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; its
``custom_id`` is the request's response-cache key (`workbench.prompting.cache.cache_key`), so an
answer that comes back lands in the cache under the key a direct call would have used, and the run
is then finished from the cache. The body is the one `OpenAICompatibleModel` sends for the request.

A result line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``,
in any order. Reading a result file is strict and loses nothing: every line is checked on its own
(JSON, fields, a ``custom_id`` the run asked for and has not had an answer for), the good lines are
kept, and every refused line is reported with its number and why (`ResultFile.problems`).

Files are streamed: written line by line, split at `MAX_LINES` lines or `MAX_BYTES` bytes (OpenAI's
limits per batch file), and read line by line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.models.base import Completion

MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
CHAT_URL = "/v1/chat/completions"


class BatchResultError(InputError):
    """A result file had lines that could not be used; the message names each (line number, why).
    The usable lines were kept."""


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One request line (with its newline) of a batch file: POST `body` to the chat endpoint."""
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def write_request_files(lines: Iterable[tuple[str, dict[str, Any]]], path: str | Path, *,
                        max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> list[Path]:
    """Write (custom_id, body) pairs as request lines to `path`, or, when they are more than one file
    may hold (`max_lines` lines, `max_bytes` bytes), to ``<stem>-1.jsonl``, ``<stem>-2.jsonl``, ...
    beside it. Streams: never more than one line in memory. Each file is written under a
    ``.partial`` name and renamed when complete. Returns the files in order (none for no lines).
    Raises InputError when a single line is larger than `max_bytes`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    handle = None
    count = size = 0
    try:
        for custom_id, body in lines:
            line = request_line(custom_id, body)
            if len(line) > max_bytes:
                raise InputError(f"request {custom_id} is {len(line):,} bytes, more than a batch file may hold "
                                 f"({max_bytes:,}): shorten its prompt")
            if handle is None or count == max_lines or size + len(line) > max_bytes:
                if handle is not None:
                    handle.close()
                parts.append(path.with_name(f"{path.stem}-{len(parts) + 1}{path.suffix}"))
                handle = open(_partial(parts[-1]), "wb")  # noqa: SIM115 - closed when the next part opens
                count = size = 0
            handle.write(line)
            count += 1
            size += len(line)
    finally:
        if handle is not None:
            handle.close()
    final = [path] if len(parts) == 1 else parts
    for part, target in zip(parts, final, strict=True):
        os.replace(_partial(part), target)
    return final


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def answers_of(lines: Iterable[ResultLine], requests: Mapping[str, Any],
               failed: dict[str, str]) -> Iterator[tuple[str, Any, Completion]]:
    """(cache key, request, completion) for each answered line of `lines` whose key is in
    `requests` (key -> request); a failed line's reason goes into `failed` (key -> why)."""
    for line in lines:
        if line.completion is None:
            failed[line.custom_id] = line.error or "failed"
        elif line.custom_id in requests:
            yield line.custom_id, requests[line.custom_id], line.completion


def store_answers(cache: Any, identity: dict[str, Any], answers: Iterable[tuple[str, Any, Completion]], *,
                  chunk: int = 5_000) -> int:
    """Store (cache key, request, completion) answers in the `ResponseCache` `cache`, `chunk` to a
    transaction (a commit per answer would cost more than everything else an import does).
    Streams: at most `chunk` answers in memory. Returns how many were stored."""
    stored, pending = 0, []
    for answer in answers:
        pending.append(answer)
        if len(pending) == chunk:
            stored += cache.put_many(identity, pending)
            pending = []
    return stored + (cache.put_many(identity, pending) if pending else 0)


def completion_from_body(body: Any, latency_s: float = 0.0) -> Completion:
    """The `Completion` in a chat completion's JSON body (``choices[0].message.content``,
    ``usage``, ``finish_reason``). Raises ValueError when the body has no answer."""
    if not isinstance(body, dict) or not body.get("choices"):
        raise ValueError(f"the response has no choices: {str(body)[:200]}")
    choice = body["choices"][0]
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    return Completion(text=message.get("content") or "", tokens_in=int(usage.get("prompt_tokens") or 0),
                      tokens_out=int(usage.get("completion_tokens") or 0), finish_reason=choice.get("finish_reason"),
                      latency_s=latency_s)


@dataclass(frozen=True)
class ResultLine:
    """One usable result line: its 1-based `line` number, the request's `custom_id`, and either
    the `completion` (status 200) or the `error` saying why the request failed."""

    line: int
    custom_id: str
    completion: Completion | None
    error: str | None


@dataclass
class ResultFile:
    """A result file read line by line (iterate it for the usable `ResultLine`s). `expected` holds
    the custom ids the run asked for; a line for another id, a second line for an id already
    answered (in this file or one read before with the same `seen`), or a line that is not a
    result line, is refused and listed in `problems` ("line N: why") instead. `latency_s` is given
    to every completion (a batch answer has no latency of its own)."""

    path: Path
    expected: Container[str]
    seen: set[str] = field(default_factory=set)
    latency_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[ResultLine]:
        with open(self.path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    result = self._parse(number, text)
                except ValueError as exc:
                    self.problems.append(f"line {number}: {exc}")
                    continue
                self.seen.add(result.custom_id)
                yield result

    def _parse(self, number: int, text: str) -> ResultLine:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
            raise ValueError("no custom_id: a result line is {\"custom_id\", \"response\", \"error\"}")  # noqa: TRY004 - the line's content, not an argument's type
        custom_id = record["custom_id"]
        if custom_id not in self.expected:
            raise ValueError(f"custom_id {custom_id} is not a request of this run (another config, model or "
                             "dataset wrote it)")
        if custom_id in self.seen:
            raise ValueError(f"custom_id {custom_id} was answered already (a duplicate line)")
        response, error = record.get("response"), record.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            code = error.get("code") if isinstance(error, dict) else None
            return ResultLine(number, custom_id, None, f"batch line failed: {code + ': ' if code else ''}{message}")
        if not isinstance(response, dict) or "status_code" not in response:
            raise ValueError(f"custom_id {custom_id} has neither a response with a status_code nor an error")
        status, body = response.get("status_code"), response.get("body")
        if status != 200:
            detail = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(
                body.get("error"), dict) else str(body)[:300]
            return ResultLine(number, custom_id, None, f"batch line failed: HTTP {status}: {detail}")
        try:
            completion = completion_from_body(body, self.latency_s)
        except ValueError as exc:
            raise ValueError(f"custom_id {custom_id}: status 200 but {exc}") from None
        return ResultLine(number, custom_id, completion, None)

    def raise_problems(self) -> None:
        """Raise BatchResultError naming every refused line (the first 20 and how many more)."""
        if not self.problems:
            return
        shown = "; ".join(self.problems[:20])
        more = f"; and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        raise BatchResultError(f"{self.path}: {len(self.problems)} line(s) refused, the other lines were kept: "
                               f"{shown}{more}")
