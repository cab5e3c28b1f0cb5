"""Pull annotators' corrections from Argilla into a DataFrame and a snapshot file that is never overwritten.

Responses are read through the SDK's own HTTP client rather than `dataset.records(...)` because
the SDK drops the responses' timestamps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import argilla as rg
import httpx
import pandas as pd
from argilla._exceptions import ArgillaAPIError

from workbench.annotation.client import AnnotationError, find_dataset, records_json
from workbench.core.task import Task

NOTE_QUESTION = "note"


def correction_columns(task: Task) -> list[str]:
    """The columns of `pull_corrections`' frame for `task`."""
    answer = "label" if task.kind == "classification" else "spans"
    return ["example_id", "annotator", "status", answer, "note", "suggested", "suggestion_agent",
            "suggestion_score", "accepted_suggestion", "submitted_at"]


def pull_corrections(
    client: rg.Argilla,
    task: Task,
    name: str | None = None,
    *,
    workspace: str | None = None,
    out_dir: str | Path | None = "annotations",
    statuses: Sequence[str] = ("submitted",),
) -> pd.DataFrame:
    """Annotators' responses in dataset `name` (default: the task's name), one row per record
    and annotator, written as a new snapshot `<out_dir>/<name>/<UTC timestamp>.jsonl` (never
    over an earlier one; its path is in ``frame.attrs["snapshot_path"]``; `out_dir=None` writes none).

    Columns: ``example_id``, ``annotator`` (user name), ``status`` (one of `statuses`:
    "submitted", "discarded", "draft"), ``label`` (classification) or ``spans`` (NER: list of
    ``{start, end, label}`` sorted by start; [] for a submitted "no entities"), ``note``,
    ``suggested`` (the record's suggestion now on the server, or None), ``suggestion_agent``
    (the variant that made it), ``suggestion_score``, ``accepted_suggestion`` (True when the
    submitted answer equals the suggestion unchanged), ``submitted_at`` (UTC time of the
    response's last change). Pull as an owner or admin (annotators cannot list others' answers).
    """
    name = name or task.name
    unknown = sorted(set(statuses) - {"submitted", "discarded", "draft"})
    if unknown:
        raise ValueError(f"statuses may be 'submitted', 'discarded' or 'draft'; got {unknown}")
    remote = find_dataset(client, name, workspace)
    if remote is None:
        raise AnnotationError(
            f"No dataset {name!r} on Argilla at {client.api_url}; push predictions or errors first."
        )
    remote.get()
    question = "label" if task.kind == "classification" else "spans"
    if question not in {q.name for q in remote.settings.questions}:
        raise AnnotationError(
            f"Dataset {name!r} has no question {question!r}: it was not made for a {task.kind} task."
        )
    question_ids = {str(q.id): q.name for q in remote.settings.questions}
    usernames = _usernames(client)

    try:
        records = records_json(client, remote, include=("responses", "suggestions"))
    except httpx.HTTPStatusError as error:
        if error.response.status_code != 403:
            raise
        raise AnnotationError(
            f"User {client.me.username!r} may not read every annotator's responses in {name!r}: "
            "pull as an owner or an admin of its workspace."
        ) from error
    rows = []
    for record in records:
        suggestion = next(
            (s for s in record.get("suggestions") or [] if question_ids.get(str(s["question_id"])) == question), None
        )
        suggested = None if suggestion is None else _answer(task, suggestion["value"])
        for response in record.get("responses") or []:
            if response["status"] not in statuses:
                continue
            values = response.get("values") or {}
            answer = (values.get(question) or {}).get("value")
            answer = _answer(task, answer)
            if task.kind == "ner" and answer is None and response["status"] == "submitted":
                answer = []  # submitted without spans: "no entities"
            rows.append({
                "example_id": record["external_id"],
                "annotator": usernames.get(str(response["user_id"]), str(response["user_id"])),
                "status": response["status"],
                question: answer,
                "note": (values.get(NOTE_QUESTION) or {}).get("value"),
                "suggested": suggested,
                "suggestion_agent": None if suggestion is None else suggestion.get("agent"),
                "suggestion_score": None if suggestion is None else suggestion.get("score"),
                "accepted_suggestion": bool(
                    response["status"] == "submitted" and suggested is not None and _same(task, answer, suggested)
                ),
                "submitted_at": _utc(response.get("updated_at")),
            })
    frame = _corrections_frame(rows, task)
    if out_dir is not None:
        frame.attrs["snapshot_path"] = str(_write_snapshot(rows, Path(out_dir), name))
    frame.attrs["dataset"] = name
    return frame


def load_corrections(path: str | Path, task: Task) -> pd.DataFrame:
    """A snapshot written by `pull_corrections`, as the frame it returned."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return _corrections_frame(rows, task)


def _corrections_frame(rows: list[dict], task: Task) -> pd.DataFrame:
    # Object columns keep None for "no answer"/"no suggestion" (pandas 3 would infer str with NaN).
    frame = pd.DataFrame(rows, columns=correction_columns(task), dtype=object)
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True, format="ISO8601")
    frame["accepted_suggestion"] = frame["accepted_suggestion"].astype(bool)
    return frame


def _answer(task: Task, value: Any) -> Any:
    if value is None or task.kind == "classification":
        return value
    return sorted(
        ({"start": int(s["start"]), "end": int(s["end"]), "label": str(s["label"])} for s in value),
        key=lambda s: (s["start"], s["end"], s["label"]),
    )


def _same(task: Task, answer: Any, suggested: Any) -> bool:
    if task.kind == "classification":
        return answer == suggested
    return answer is not None and {tuple(s.values()) for s in answer} == {tuple(s.values()) for s in suggested}


def _utc(value: str | None) -> str | None:
    """The server's naive UTC timestamp as ISO 8601 with its zone."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def _usernames(client: rg.Argilla) -> dict[str, str]:
    try:
        return {str(user.id): user.username for user in client.users}
    except ArgillaAPIError:  # not allowed to list users: ids stand in for names
        return {}


def _write_snapshot(rows: list[dict], out_dir: Path, name: str) -> Path:
    """Write `rows` as JSONL to a new file under out_dir/name; never replaces an existing file."""
    folder = out_dir / "".join(c if c.isalnum() or c in "-_. " else "_" for c in name)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    partial = folder / f".{stamp}.{os.getpid()}.partial"
    partial.write_text(content, encoding="utf-8")
    try:
        for attempt in range(1000):
            path = folder / (f"{stamp}.jsonl" if attempt == 0 else f"{stamp}-{attempt}.jsonl")
            try:
                os.link(partial, path)  # atomic, and fails rather than replace an existing file
            except FileExistsError:
                continue
            return path
        raise AnnotationError(f"Could not find a free snapshot name in {folder}")
    finally:
        partial.unlink(missing_ok=True)
