"""A run's missing requests through OpenAI's Batch API, their answers into the response cache.

`run_batches` writes the requests the cache does not hold as batch files (`batch_lines`: each
``custom_id`` is the request's cache key), uploads each (``files.create``, purpose ``batch``),
starts a batch on it (``batches.create``, 24-hour window), polls until every batch has ended, and
stores every answer under its key. The run is then finished from the cache
(`workbench.experiments.runs.run_experiment`), so scoring, reports and every later stage are the
same as for a direct run.

What was submitted is kept in ``batches.json`` in the folder given (the experiment's folder of runs,
``<runs_dir>/<name>/batches/``), written after every step, so a killed or restarted run resumes
each batch by its id and submits nothing twice:

- ``file`` (the request file), ``input_file_id``, ``batch_id`` (None until created: a resume creates
  it on the uploaded file), ``status`` (the provider's), ``imported`` (answers stored), and
  ``failed``: custom id -> why, for the lines that came back failed or not at all (a batch that
  failed, expired or was cancelled keeps its finished lines; the rest are listed here).

A request that is already in a batch is never put in another one, except by `retry_failed`
(``--batch-retry batch``), which submits the failed lines once more in a new batch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError
from workbench.models.base import ChatRequest
from workbench.prompting.cache import ResponseCache
from workbench.scale.batch_lines import (
    CHAT_URL,
    MAX_BYTES,
    MAX_LINES,
    BatchResultError,
    ResultFile,
    answers_of,
    store_answers,
    write_request_files,
)

STATE = "batches.json"
ENDED = ("completed", "failed", "expired", "cancelled")
WINDOW = "24h"


class BatchError(WorkbenchError):
    """A batch could not be submitted or followed; the message says which and what to do."""


@dataclass
class BatchOutcome:
    """What `run_batches` did: `submitted` requests in new batches, `resumed` batches followed from
    an earlier call, `answered` answers stored in the cache, and `failed` (cache key -> why) for
    the requests whose lines failed or never came back."""

    submitted: int = 0
    resumed: int = 0
    answered: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def run_batches(model: Any, pending: Mapping[str, ChatRequest], cache: ResponseCache, folder: str | Path, *,
                client: Any = None, poll_s: float = 15.0, timeout_s: float | None = None, progress: bool = True,
                max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES, retry_failed: bool = False,
                sleep: Callable[[float], None] = time.sleep) -> BatchOutcome:
    """Answer `pending` (cache key -> request of `model`, an `OpenAICompatibleModel`) through the
    Batch API, storing every answer in `cache` (see the module docstring). `client` is an
    ``openai.OpenAI`` (default: `model.batch_client()`, the model's endpoint and key). Polls every
    `poll_s` seconds; after `timeout_s` raises BatchError (the batches keep running: call again to
    continue). With `retry_failed`, the requests whose lines failed in an earlier batch are
    submitted once more. Returns the `BatchOutcome`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    client = client or model.batch_client()
    state = _load(folder)
    outcome = BatchOutcome(resumed=sum(1 for entry in state if not entry.get("imported")))
    in_batches = {key for entry in state for key in _keys_of(folder, entry)}
    failed_before = {key for entry in state if entry.get("imported") for key in entry.get("failed", {})}
    fresh = {key: request for key, request in pending.items()
             if key not in in_batches or (retry_failed and key in failed_before)}
    if fresh:
        outcome.submitted = len(fresh)
        number = len(state) + 1
        bodies = ((key, model.request_body(request)) for key, request in fresh.items())
        for path in write_request_files(bodies, folder / f"batch-{number}.jsonl", max_lines=max_lines,
                                        max_bytes=max_bytes):
            state.append({"file": path.name, "input_file_id": None, "batch_id": None, "status": None,
                          "imported": False, "failed": {}})
            _save(folder, state)
    for entry in state:
        if entry["batch_id"] is None:
            _submit(client, folder, entry, state)
    _follow(client, folder, state, model, pending, cache, outcome, poll_s, timeout_s, progress, sleep)
    failed = {key: why for entry in state for key, why in entry.get("failed", {}).items() if key in pending}
    answered = cache.get_many(failed)  # failed in one batch, answered in a later one
    outcome.failed = {key: why for key, why in failed.items() if key not in answered}
    return outcome


def _submit(client: Any, folder: Path, entry: dict[str, Any], state: list[dict[str, Any]]) -> None:
    """Upload the entry's file (unless an earlier call did) and create its batch, saving the state
    after each step: a kill between them uploads nothing twice and creates no second batch."""
    if entry["input_file_id"] is None:
        with open(folder / entry["file"], "rb") as handle:
            entry["input_file_id"] = client.files.create(file=handle, purpose="batch").id
        _save(folder, state)
    batch = client.batches.create(input_file_id=entry["input_file_id"], endpoint=CHAT_URL, completion_window=WINDOW,
                                  metadata={"workbench_file": entry["file"]})
    entry["batch_id"], entry["status"] = batch.id, batch.status
    _save(folder, state)


def _follow(client: Any, folder: Path, state: list[dict[str, Any]], model: Any, pending: Mapping[str, ChatRequest],
            cache: ResponseCache, outcome: BatchOutcome, poll_s: float, timeout_s: float | None, progress: bool,
            sleep: Callable[[float], None]) -> None:
    """Poll every batch not imported yet until it has ended, then import it (`_import`)."""
    waiting = [entry for entry in state if not entry.get("imported")]
    if not waiting:
        return
    sizes = {entry["file"]: _line_count(folder, entry) for entry in waiting}
    bar = _bar(progress, sum(sizes.values()))
    started, ended = time.monotonic(), 0
    problems: list[str] = []
    try:
        while waiting:
            running = 0
            for entry in list(waiting):
                batch = client.batches.retrieve(entry["batch_id"])
                if batch.status != entry["status"]:
                    entry["status"] = batch.status
                    _save(folder, state)
                if batch.status in ENDED:
                    answered, refused = _import(client, folder, entry, batch, model, pending, cache)
                    outcome.answered += answered
                    problems += refused
                    _save(folder, state)
                    waiting.remove(entry)
                    ended += sizes[entry["file"]]
                else:
                    counts = getattr(batch, "request_counts", None)
                    running += int(counts.completed + counts.failed) if counts is not None else 0
            if bar is not None:
                bar.n = ended + running
                bar.refresh()
            if not waiting:
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                ids = ", ".join(entry["batch_id"] for entry in waiting)
                raise BatchError(f"batch(es) {ids} still running after {timeout_s:g} s; they keep running at the "
                                 f"provider: run the same command again to continue ({folder / STATE} keeps them)")
            sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()
    if problems:
        # The provider's files held lines this run cannot use; every usable line was stored.
        raise BatchResultError("the batch results held lines that were refused (the usable lines were stored): "
                               + "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20
                                                             else ""))


def _import(client: Any, folder: Path, entry: dict[str, Any], batch: Any, model: Any,
            pending: Mapping[str, ChatRequest], cache: ResponseCache) -> tuple[int, list[str]]:
    """Store the answers of an ended batch; record in ``entry["failed"]`` every line that failed or
    never came back. Returns (how many answers were stored, the refused lines: "file line N: why")."""
    expected = set(_keys_of(folder, entry))
    wall = max(0.0, float((getattr(batch, "completed_at", None) or time.time()) - (batch.created_at or time.time())))
    seen: set[str] = set()
    answered = 0
    failed: dict[str, str] = {}
    problems: list[str] = []
    identity = model.identity
    for kind in ("output_file_id", "error_file_id"):
        file_id = getattr(batch, kind, None)
        if not file_id:
            continue
        local = folder / f"{Path(entry['file']).stem}.{'results' if kind == 'output_file_id' else 'errors'}.jsonl"
        client.files.content(file_id).write_to_file(local)
        results = ResultFile(local, expected, seen=seen, latency_s=wall)
        answered += store_answers(cache, identity, answers_of(results, pending, failed))
        problems += [f"{local.name} {problem}" for problem in results.problems]
    reason = f"batch {entry['batch_id']} {batch.status}"
    if batch.status == "failed" and getattr(batch, "errors", None):
        reason += ": " + "; ".join(str(getattr(e, "message", e)) for e in (batch.errors.data or [])[:3])
    for key in expected - seen:
        failed[key] = f"{reason}: no result line came back"
    entry["failed"], entry["imported"] = failed, True
    return answered, problems


def _keys_of(folder: Path, entry: dict[str, Any]) -> Iterator[str]:
    """The custom ids in an entry's request file, streamed."""
    with open(folder / entry["file"], encoding="utf-8") as handle:
        for text in handle:
            if text.strip():
                yield json.loads(text)["custom_id"]


def _line_count(folder: Path, entry: dict[str, Any]) -> int:
    with open(folder / entry["file"], "rb") as handle:
        return sum(1 for _ in handle)


def _load(folder: Path) -> list[dict[str, Any]]:
    path = folder / STATE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _save(folder: Path, state: list[dict[str, Any]]) -> None:
    partial = folder / (STATE + ".partial")
    partial.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(partial, folder / STATE)


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="batch requests", unit="request")
