"""The stub server's Batch API, as OpenAI documents it, for chat completions.

``POST /v1/batches`` (``{input_file_id, endpoint, completion_window, metadata?}``) creates a batch
on a file uploaded with purpose ``batch``, ``GET /v1/batches/{id}`` reports it, ``GET /v1/batches``
lists them (newest first; ``limit``, ``after``) and ``POST /v1/batches/{id}/cancel`` cancels one;
each also without the ``/v1`` prefix. The output and error files are stored with the uploads
(`workbench.testing.openai_stub_finetuning`, purpose ``batch_output``), so ``GET /v1/files/{id}``
and ``GET /v1/files/{id}/content`` serve them.

Life of a batch: ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed``, one *step*
at a time; a step is one retrieval of that batch (default) or `BatchEndpoints.step_seconds`
seconds. It validates for `validating_steps` steps, runs for `in_progress_steps` (its lines are
answered a share per step, so ``request_counts.completed`` grows), finalizes for
`finalizing_steps`. Cancelling takes `cancelling_steps` (-> ``cancelled``). The settings are read
when a batch is created; changing them later leaves that batch alone.

Each line's ``body`` is answered as the chat endpoint answers it when no fault is drawn (the same
content, usage and ``finish_reason``; 400 when its ``response_format`` breaks strict mode, 500 when
``answer()`` fails); the chat endpoint's faults, request log and ``status_for_all`` do not apply.
Lines are answered in a fixed shuffled order (by the SHA-256 of the ``custom_id``, never the input
order when there are two lines or more), and the output file lists them in that order. Lines are
answered lazily, as the batch reaches them; a batch keeps the input file's bytes, a few numbers per
line and one answer line per answered line.

What OpenAI documents, and what the stub chose where it does not say:

* Refused at once with a 400 (OpenAI-style error body, ``param`` naming the field): a missing or
  unknown ``input_file_id``, a file whose purpose is not ``batch``, an ``endpoint`` other than
  ``/v1/chat/completions`` (the only one the stub serves), a ``completion_window`` other than
  ``24h``, ``metadata`` beyond OpenAI's limits (16 string pairs, keys up to 64 characters, values
  up to 512).
* A file that is not valid batch JSONL is accepted, and the batch moves from ``validating`` to
  ``failed`` with ``errors = {"object": "list", "data": [{"code", "message", "line", "param"}]}``,
  as OpenAI reports it. Codes: ``invalid_json_line`` (not JSON, or not an object), ``empty_file``,
  ``too_many_tasks`` (more than `max_lines`, 50,000), ``url_mismatch`` (``url`` is not the
  batch's endpoint), ``model_mismatch`` (a second model in one file), ``duplicate_custom_id``,
  are OpenAI's; ``file_too_large`` (over `max_bytes`, 200,000,000 bytes: OpenAI's "200 MB", read
  as decimal so a client that keeps under the stub keeps under OpenAI),
  ``missing_required_parameter`` and ``invalid_request`` (a ``method`` other than ``POST``, a
  ``custom_id`` that is not a non-empty string, a ``body`` that is not an object) are the stub's.
  Each message begins ``Line N:`` (``line`` holds N too); at most 100 problems are listed. Blank
  lines are skipped (numbering counts them). `refuse_invalid_files` makes such a file a 400 at
  creation instead; `fail_with` fails every new batch at validation with that message (code
  ``batch_failed``, the stub's).
* ``request_counts.total`` is 0 while validating (as in OpenAI's example), then the line count;
  ``completed`` counts 200 answers, ``failed`` the other answered lines. Lines that never ran
  (expired, cancelled) are in neither.
* Output line: ``{"id": "batch_req_...", "custom_id", "response": {"status_code": 200,
  "request_id": "req_...", "body": <chat.completion>}, "error": null}``. A failed line goes to the
  error file, either with an HTTP answer (``"response": {"status_code": 500|429|400|..., "request_id",
  "body": {"error": {...}}}, "error": null``) or with none (``"response": null, "error": {"code",
  "message"}``). A file is created only when it has a line: ``output_file_id`` is null when no line
  succeeded, ``error_file_id`` when none failed.
* Which lines fail: those whose ``custom_id`` is in `fail_ids`, or drawn by `fail_rate` from the
  SHA-256 of the ``custom_id`` (:func:`fails_by_rate`). Such a line fails the first time it is
  answered (in whichever batch) and succeeds after, as a retry does, unless `fail_permanently`.
  `fail_status` picks the answer: an HTTP status (default 500), or None for ``"response": null``
  with error code ``request_timeout``.
* ``expire_after``: a batch runs only that many lines, then ends ``expired`` (no finalizing): the
  lines that ran are in the output and error files, every other line is in the error file with
  ``"response": null`` and code ``batch_expired`` and OpenAI's message.
* Cancel (``validating``, ``in_progress``, ``finalizing``): ``cancelling``, then ``cancelled``; the
  lines answered before the cancel are kept in the output and error files, the unanswered ones are
  in the error file with code ``batch_cancelled`` (a code OpenAI's spec lists). A batch cancelled
  while validating gets no files. Cancelling a batch that is already cancelling answers it as it is;
  cancelling a finished one is a 409.

For tests, `StubServer.batches` is this object: ``stub.batches.fail_ids = {"row-3"}`` before the
batch is created, ``stub.batches.created`` (every batch created, by id, in order) and
``stub.batches.submitted()`` (how many batches each ``custom_id`` was sent in).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:  # only for annotations
    from workbench.testing.openai_stub_finetuning import FineTuningEndpoints

PREFIXES = ("/v1/batches", "/batches")
ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
#: OpenAI's limits on one batch's input file.
MAX_LINES = 50_000
MAX_BYTES = 200_000_000
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."

_WINDOW_S = 24 * 60 * 60
_TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})
_MAX_REPORTED_ERRORS = 100
_INJECTED_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request (stub: batch fault injection).", "invalid_request_error", None),
    429: ("Rate limit reached (stub: batch fault injection).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request (stub: batch fault injection).", "server_error",
          None),
}


def fails_by_rate(custom_id: str, fail_rate: float) -> bool:
    """Whether `fail_rate` picks the line `custom_id` to fail (from the SHA-256 of the id, as
    `select_fault` picks a request body); exposed so tests can predict which lines fail."""
    digest = hashlib.sha256(custom_id.encode("utf-8")).hexdigest()
    return fail_rate > 0 and (int(digest[:8], 16) % 1000) / 1000 < fail_rate


@dataclass(frozen=True)
class _Settings:
    """The endpoints' settings as a batch was created."""

    steps: tuple[int, int, int]
    cancelling_steps: int
    step_seconds: float | None
    fail_ids: frozenset[str]
    fail_rate: float
    fail_permanently: bool
    fail_status: int | None
    expire_after: int | None


class _Run:
    """One batch's working state: the input and where its lines are, the answers so far."""

    __slots__ = ("batch", "cancel_tick", "content", "custom_ids", "done", "ends", "errors", "order", "output",
                 "problems", "settings", "started", "starts", "ticks")

    def __init__(self, batch: dict[str, Any], settings: _Settings, content: bytes) -> None:
        self.batch = batch
        self.settings = settings
        self.content = content
        self.starts = array("Q")
        self.ends = array("Q")
        self.custom_ids: list[str] = []
        self.order = array("L")
        self.done = 0
        self.ticks = 0
        self.started = time.monotonic()
        self.cancel_tick: int | None = None
        self.output: list[bytes] = []
        self.errors: list[bytes] = []
        self.problems: list[dict[str, Any]] = []  # shown as ``errors`` once validation ends


class BatchEndpoints:
    """Batches kept in memory, their files in `files`; `handle` answers a request under `PREFIXES`.

    `answer` gives the (status, JSON body) that answers one line's ``body``. Settings (plain
    attributes, read when a batch is created; see the module docstring):

    * ``validating_steps`` (1), ``in_progress_steps`` (2), ``finalizing_steps`` (1),
      ``cancelling_steps`` (1): how long each state lasts, in steps;
    * ``step_seconds`` (None): None, a step is one ``GET /v1/batches/{id}`` of that batch; a number,
      a step is that many seconds, however often it is asked for;
    * ``fail_ids`` (empty), ``fail_rate`` (0.0), ``fail_permanently`` (False), ``fail_status`` (500):
      which lines fail and how;
    * ``expire_after`` (None): end each batch ``expired`` after that many lines;
    * ``fail_with`` (None): fail each batch at validation with this message;
    * ``refuse_invalid_files`` (False): answer a 400 at creation for a file that is not valid batch
      JSONL, instead of a batch that fails validation;
    * ``max_lines`` (50,000), ``max_bytes`` (200,000,000): the input file's limits.

    Records: ``created`` (batch id -> Batch object, in creation order), ``custom_ids`` (batch id ->
    its lines' custom ids, in input order), `submitted`.
    """

    # Slots, so that a misspelt setting (``fail_ratio = 0.5``) is an AttributeError, not ignored.
    __slots__ = ("_failed_once", "_runs", "answer", "cancelling_steps", "created", "custom_ids", "expire_after",
                 "fail_ids", "fail_permanently", "fail_rate", "fail_status", "fail_with", "files",
                 "finalizing_steps", "in_progress_steps", "max_bytes", "max_lines", "refuse_invalid_files",
                 "step_seconds", "validating_steps")

    def __init__(self, files: FineTuningEndpoints, answer: Callable[[dict], tuple[int, dict]]) -> None:
        self.files = files
        self.answer = answer
        self.created: dict[str, dict[str, Any]] = {}
        self.custom_ids: dict[str, list[str]] = {}
        self.validating_steps = 1
        self.in_progress_steps = 2
        self.finalizing_steps = 1
        self.cancelling_steps = 1
        self.step_seconds: float | None = None
        self.fail_ids: Iterable[str] = frozenset()
        self.fail_rate = 0.0
        self.fail_permanently = False
        self.fail_status: int | None = 500
        self.expire_after: int | None = None
        self.fail_with: str | None = None
        self.refuse_invalid_files = False
        self.max_lines = MAX_LINES
        self.max_bytes = MAX_BYTES
        self._runs: dict[str, _Run] = {}
        self._failed_once: set[str] = set()

    def submitted(self) -> Counter[str]:
        """How many created batches each ``custom_id`` was in (a line listed twice was sent twice)."""
        return Counter(custom_id for ids in self.custom_ids.values() for custom_id in ids)

    async def handle(self, request: web.BaseRequest) -> web.Response:
        parts = [part for part in request.path.removeprefix("/v1").split("/") if part]
        method = request.method
        if parts == ["batches"] and method == "POST":
            return await self._create(request)
        if parts == ["batches"] and method == "GET":
            return self._list(request)
        if len(parts) in (2, 3) and parts[0] == "batches":
            run = self._runs.get(parts[1])
            if run is None:
                return _error(404, f"No batch found with id {parts[1]!r}.", "batch_id")
            if len(parts) == 2 and method == "GET":
                self._advance(run, poll=True)
                return _json(200, run.batch)
            if parts[2:] == ["cancel"] and method == "POST":
                return self._cancel(run)
        return _error(404, f"no route for {method} {request.path}")

    # -- creating ----------------------------------------------------------------------------------

    async def _create(self, request: web.BaseRequest) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "The request body must be JSON.")
        if not isinstance(body, dict):
            return _error(400, f"The request body must be a JSON object, got {type(body).__name__}.")
        refusal = self._refusal(body)
        if refusal is not None:
            return refusal
        try:
            settings = self._settings()
        except (TypeError, ValueError) as error:
            return _error(500, f"The stub's batch settings are wrong: {error}")
        file_id = body["input_file_id"]
        now = int(time.time())
        batch_id = f"batch_{secrets.token_hex(12)}"
        batch: dict[str, Any] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "model": None, "errors": None,
            "input_file_id": file_id, "completion_window": body["completion_window"], "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + _WINDOW_S, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
            "metadata": body.get("metadata"),
        }
        run = _Run(batch, settings, self.files.contents[file_id])
        problems = self._scan(run, body["endpoint"])
        if self.fail_with is not None:
            problems.insert(0, {"code": "batch_failed", "message": self.fail_with, "line": None, "param": None})
        if problems and self.refuse_invalid_files:
            first = problems[0]
            message = " ".join(problem["message"] for problem in problems[:5])
            return _error(400, f"The input file is not valid batch JSONL: {message}", "input_file_id", first["code"])
        if problems:
            run.problems = problems[:_MAX_REPORTED_ERRORS]
            run.starts, run.ends, run.custom_ids = array("Q"), array("Q"), []
        else:
            run.order = _shuffled(run.custom_ids)
        self._runs[batch_id] = run
        self.created[batch_id] = batch
        self.custom_ids[batch_id] = run.custom_ids
        return _json(200, batch)

    def _refusal(self, body: dict[str, Any]) -> web.Response | None:
        """The 400 that `body`'s parameters earn, or None."""
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            return _error(400, "Missing required parameter: 'input_file_id'.", "input_file_id",
                          "missing_required_parameter")
        if file_id not in self.files.files:
            return _error(400, f"Invalid 'input_file_id': no file {file_id!r}. Upload the requests first "
                               "(POST /v1/files with purpose 'batch') and pass the id it answers.", "input_file_id")
        purpose = self.files.files[file_id]["purpose"]
        if purpose != "batch":
            return _error(400, f"Invalid 'input_file_id': file {file_id!r} was uploaded with purpose {purpose!r}; "
                               "a batch's input file must be uploaded with purpose 'batch'.", "input_file_id")
        if body.get("endpoint") != ENDPOINT:
            return _error(400, f"Invalid 'endpoint': {body.get('endpoint')!r}. The stub runs batches for "
                               f"{ENDPOINT!r} only.", "endpoint")
        if body.get("completion_window") != COMPLETION_WINDOW:
            return _error(400, f"Invalid 'completion_window': {body.get('completion_window')!r}. Only "
                               f"{COMPLETION_WINDOW!r} is supported.", "completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and len(metadata) <= 16
            and all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                    for k, v in metadata.items())
        ):
            return _error(400, "Invalid 'metadata': at most 16 pairs of strings, keys up to 64 characters and "
                               f"values up to 512, got {json.dumps(metadata)[:200]}.", "metadata")
        return None

    def _settings(self) -> _Settings:
        steps = (self.validating_steps, self.in_progress_steps, self.finalizing_steps, self.cancelling_steps)
        if not all(isinstance(step, int) and step >= 0 for step in steps):
            raise ValueError(f"the *_steps settings must be whole numbers >= 0, got {steps}")
        if self.step_seconds is not None and not self.step_seconds > 0:
            raise ValueError(f"step_seconds must be None or > 0, got {self.step_seconds!r}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], got {self.fail_rate!r}")
        if self.fail_status is not None and not 400 <= self.fail_status <= 599:
            raise ValueError(f"fail_status must be None or within [400, 599], got {self.fail_status!r}")
        if self.expire_after is not None and self.expire_after < 0:
            raise ValueError(f"expire_after must be None or >= 0, got {self.expire_after!r}")
        if isinstance(self.fail_ids, str):
            raise TypeError(f"fail_ids must be a collection of custom ids, got the string {self.fail_ids!r}")
        return _Settings(steps[:3], steps[3], self.step_seconds, frozenset(self.fail_ids), self.fail_rate,
                         self.fail_permanently, self.fail_status, self.expire_after)

    def _scan(self, run: _Run, endpoint: str) -> list[dict[str, Any]]:
        """Note where `run`'s lines are; returns the file's problems (OpenAI's ``errors.data`` items)."""
        content = run.content
        problems: list[dict[str, Any]] = []

        def problem(code: str, message: str, line: int | None = None, param: str | None = None) -> None:
            if len(problems) < _MAX_REPORTED_ERRORS:
                text = f"Line {line}: {message}" if line is not None else message
                problems.append({"code": code, "message": text, "line": line, "param": param})

        if len(content) > self.max_bytes:
            problem("file_too_large", f"The input file has {len(content):,} bytes; a batch's input file may have at "
                                      f"most {self.max_bytes:,}. Split the requests into several batches.")
            return problems
        seen: dict[str, int] = {}
        model: Any = None
        count, number, position = 0, 0, 0
        while position < len(content):
            end = content.find(b"\n", position)
            end = len(content) if end < 0 else end
            number += 1
            start, position = position, end + 1
            raw = content[start:end]
            if not raw.strip():
                continue
            count += 1
            try:
                line = json.loads(raw)
            except ValueError:
                problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
                continue
            if not isinstance(line, dict):
                problem("invalid_json_line", f"This line is JSON but not an object ({type(line).__name__}).", number)
                continue
            missing = [key for key in ("custom_id", "method", "url", "body") if key not in line]
            if missing:
                problem("missing_required_parameter", f"Missing required parameter(s): {missing}; each line needs "
                        "custom_id, method, url and body.", number, missing[0])
                continue
            custom_id = line["custom_id"]
            if not isinstance(custom_id, str) or not custom_id:
                problem("invalid_request", f"custom_id must be a non-empty string, got {custom_id!r}.", number,
                        "custom_id")
                continue
            if custom_id in seen:
                problem("duplicate_custom_id", f"The custom_id {custom_id!r} is a duplicate of line "
                        f"{seen[custom_id]}'s; each request's custom_id must be unique within a batch.", number,
                        "custom_id")
                continue
            seen[custom_id] = number
            if line["method"] != "POST":
                problem("invalid_request", f"method must be 'POST', got {line['method']!r}.", number, "method")
            elif line["url"] != endpoint:
                problem("url_mismatch", f"The url {line['url']!r} does not match the batch's endpoint {endpoint!r}.",
                        number, "url")
            elif not isinstance(line["body"], dict):
                problem("invalid_request", f"body must be a JSON object (the request to {endpoint}), got "
                        f"{type(line['body']).__name__}.", number, "body")
            elif run.custom_ids and line["body"].get("model") != model:
                problem("model_mismatch", f"The model {line['body'].get('model')!r} differs from {model!r} of the "
                        "lines before; a batch's requests must all use one model.", number, "body.model")
            else:
                model = model if run.custom_ids else line["body"].get("model")
                run.starts.append(start)
                run.ends.append(end)
                run.custom_ids.append(custom_id)
        if count > self.max_lines:
            problems.insert(0, {"code": "too_many_tasks", "line": None, "param": None,
                                "message": f"The input file has {count:,} requests; a batch may have at most "
                                           f"{self.max_lines:,}. Split the requests into several batches."})
        elif count == 0:
            problem("empty_file", "The input file has no requests.")
        run.batch["model"] = model
        return problems

    # -- running -----------------------------------------------------------------------------------

    def _advance(self, run: _Run, poll: bool) -> None:
        """Move `run` on by the time passed (or by one step, for a poll when steps are retrievals)."""
        if run.batch["status"] in _TERMINAL:
            return
        seconds = run.settings.step_seconds
        if seconds is None:
            run.ticks += 1 if poll else 0
        else:
            run.ticks = int((time.monotonic() - run.started) / seconds)
        self._settle(run)

    def _settle(self, run: _Run) -> None:
        batch, ticks = run.batch, run.ticks
        validating, in_progress, finalizing = run.settings.steps
        now = int(time.time())
        if batch["status"] == "validating":
            if ticks < validating:
                return
            if run.problems:
                batch.update(status="failed", failed_at=now, errors={"object": "list", "data": run.problems})
                return
            batch.update(status="in_progress", in_progress_at=now)
            batch["request_counts"]["total"] = len(run.custom_ids)
        if batch["status"] == "in_progress":
            total = len(run.custom_ids)
            limit = total if run.settings.expire_after is None else min(total, run.settings.expire_after)
            running = ticks - validating
            if running < in_progress:
                self._answer_upto(run, min(limit, total * (running + 1) // (in_progress + 1)))
                return
            self._answer_upto(run, limit)
            if limit < total:
                self._finish(run, "expired", "batch_expired", EXPIRED_MESSAGE)
                batch["expired_at"] = now
                return
            batch.update(status="finalizing", finalizing_at=now)
        if batch["status"] == "finalizing" and ticks >= validating + in_progress + finalizing:
            self._finish(run, "completed", "", "")
            batch["completed_at"] = now
        cancel_tick = run.cancel_tick
        cancelled = cancel_tick is not None and ticks >= cancel_tick + run.settings.cancelling_steps
        if batch["status"] == "cancelling" and cancelled:
            self._finish(run, "cancelled", "batch_cancelled", CANCELLED_MESSAGE)
            batch["cancelled_at"] = now

    def _cancel(self, run: _Run) -> web.Response:
        self._advance(run, poll=False)
        status = run.batch["status"]
        if status in _TERMINAL:
            return _error(409, f"Cannot cancel a batch with status {status!r}.", None, "batch_not_cancellable")
        if status != "cancelling":
            if status == "validating":
                run.custom_ids, run.order = [], array("L")  # nothing was accepted: no lines to report
            run.cancel_tick = run.ticks
            run.batch.update(status="cancelling", cancelling_at=int(time.time()))
            self._settle(run)
        return _json(200, run.batch)

    def _answer_upto(self, run: _Run, count: int) -> None:
        """Answer `run`'s lines, in its order, until `count` of them are answered."""
        counts, usage = run.batch["request_counts"], run.batch["usage"]
        for index in run.order[run.done:count]:
            line = json.loads(run.content[run.starts[index]:run.ends[index]])
            ok, record = self._answer_line(run, line["custom_id"], line["body"], usage)
            (run.output if ok else run.errors).append(record)
            counts["completed" if ok else "failed"] += 1
        run.done = max(run.done, count)

    def _answer_line(self, run: _Run, custom_id: str, body: dict, usage: dict[str, Any]) -> tuple[bool, bytes]:
        line_id, request_id = _ids(run.batch["id"], custom_id)
        record: dict[str, Any] = {"id": line_id, "custom_id": custom_id, "response": None, "error": None}
        settings = run.settings
        if self._fails(settings, custom_id):
            if settings.fail_status is None:
                record["error"] = {"code": "request_timeout",
                                   "message": "The request timed out (stub: batch fault injection)."}
            else:
                message, type_, code = _INJECTED_ERRORS.get(
                    settings.fail_status, (f"HTTP {settings.fail_status} (stub: batch fault injection).",
                                           "server_error" if settings.fail_status >= 500 else "invalid_request_error",
                                           None))
                record["response"] = {"status_code": settings.fail_status, "request_id": request_id,
                                      "body": {"error": {"message": message, "type": type_, "param": None,
                                                         "code": code}}}
            return False, _line(record)
        status, answer = self.answer(body)
        record["response"] = {"status_code": status, "request_id": request_id, "body": answer}
        if status == 200:
            tokens = answer.get("usage", {})
            usage["input_tokens"] += tokens.get("prompt_tokens", 0)
            usage["output_tokens"] += tokens.get("completion_tokens", 0)
            usage["total_tokens"] += tokens.get("total_tokens", 0)
        return status == 200, _line(record)

    def _fails(self, settings: _Settings, custom_id: str) -> bool:
        if custom_id not in settings.fail_ids and not fails_by_rate(custom_id, settings.fail_rate):
            return False
        if settings.fail_permanently:
            return True
        if custom_id in self._failed_once:
            return False  # a retry succeeds
        self._failed_once.add(custom_id)
        return True

    def _finish(self, run: _Run, status: str, code: str, message: str) -> None:
        """End `run` with `status`: the lines never answered go to the error file with `code`."""
        batch = run.batch
        for index in run.order[run.done:]:
            custom_id = run.custom_ids[index]
            record = {"id": _ids(batch["id"], custom_id)[0], "custom_id": custom_id, "response": None,
                      "error": {"code": code, "message": message}}
            run.errors.append(_line(record))
        for key, lines, name in (("output_file_id", run.output, "output"), ("error_file_id", run.errors, "error")):
            if lines:
                stored = self.files.add_file(b"".join(lines), f"{batch['id']}_{name}.jsonl", "batch_output")
                batch[key] = stored["id"]
        batch["status"] = status
        # The answers now live in the files; keep only the record of the lines.
        run.output, run.errors, run.content = [], [], b""
        run.starts, run.ends, run.order = array("Q"), array("Q"), array("L")

    def _list(self, request: web.BaseRequest) -> web.Response:
        runs = list(self._runs.values())[::-1]
        for run in runs:
            self._advance(run, poll=False)
        after = request.query.get("after")
        ids = [run.batch["id"] for run in runs]
        if after is not None:
            runs = runs[ids.index(after) + 1:] if after in ids else []
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, f"Invalid 'limit': {request.query.get('limit')!r}; expected a whole number.", "limit")
        page = [run.batch for run in runs[:max(1, min(limit, 100))]]
        return _json(200, {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None, "has_more": len(runs) > len(page)})


def _shuffled(custom_ids: list[str]) -> array:
    """Line indices in a fixed order unlike the input's: by the SHA-256 of each ``custom_id``."""
    order = sorted(range(len(custom_ids)), key=lambda index: hashlib.sha256(custom_ids[index].encode()).digest())
    if len(order) > 1 and order == sorted(order):
        order = order[1:] + order[:1]  # the hash kept the input order: rotate so it is never kept
    return array("L", order)


def _ids(batch_id: str, custom_id: str) -> tuple[str, str]:
    """A line's ``batch_req_`` id and its answer's ``req_`` request id (fixed per batch and line)."""
    digest = hashlib.sha256(f"{batch_id}\n{custom_id}".encode()).hexdigest()
    return f"batch_req_{digest[:24]}", f"req_{digest[24:48]}"


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _json(status: int, value: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode(), content_type="application/json")


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return _json(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})
