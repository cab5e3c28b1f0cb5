"""Annotators' corrections as a DataFrame, and the snapshot files they are kept in (no argilla).

`correction_rows` reads the records Argilla's REST API returns (with their responses and
suggestions) into rows; `corrections_frame` makes the documented frame of them;
`write_snapshot` writes them to a new JSONL file that never replaces an earlier one, and
`load_corrections` reads such a file back as the same frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.annotation.errors import AnnotationError
from workbench.annotation.records import NOTE_QUESTION, from_argilla_value
from workbench.core.errors import InputError
from workbench.core.task import Task

STATUSES = ("submitted", "discarded", "draft")


def correction_columns(task: Task) -> list[str]:
    """The columns of `pull_corrections`' frame for `task`; the answer column is named after the
    task's question (``label``, ``spans`` or ``labels``: `TaskKind.target_column`)."""
    answer = task.kind.annotation_question(task).name
    return ["example_id", "annotator", "status", answer, "note", "suggested", "suggestion_agent",
            "suggestion_score", "accepted_suggestion", "submitted_at"]


def correction_rows(
    task: Task,
    records: Iterable[Mapping[str, Any]],
    question_names: Mapping[str, str],
    usernames: Mapping[str, str],
    statuses: Sequence[str] = ("submitted",),
) -> list[dict[str, Any]]:
    """One row per response whose status is in `statuses` (see `pull_corrections` for the columns).

    `records`: records as ``GET /api/v1/datasets/{id}/records?include=responses&include=suggestions``
    lists them (``external_id``, ``responses`` with ``user_id``, ``status``, ``values``,
    ``updated_at``; ``suggestions`` with ``question_id``, ``value``, ``agent``, ``score``).
    `question_names` maps question ids to names; `usernames` maps user ids to names (an id
    stands in for a name it lacks).
    """
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise InputError(f"statuses may be 'submitted', 'discarded' or 'draft'; got {unknown}")
    kind = task.kind
    question = kind.annotation_question(task)
    rows = []
    for record in records:
        suggestion = next(
            (s for s in record.get("suggestions") or [] if question_names.get(str(s["question_id"])) == question.name),
            None,
        )
        suggested = None
        if suggestion is not None:
            suggested = kind.read_response(from_argilla_value(question, suggestion["value"]), submitted=True)
        for response in record.get("responses") or []:
            status = response["status"]
            if status not in statuses:
                continue
            values = response.get("values") or {}
            value = from_argilla_value(question, (values.get(question.name) or {}).get("value"))
            answer = kind.read_response(value, submitted=status == "submitted")
            rows.append({
                "example_id": record["external_id"],
                "annotator": usernames.get(str(response["user_id"]), str(response["user_id"])),
                "status": status,
                question.name: answer,
                "note": (values.get(NOTE_QUESTION) or {}).get("value"),
                "suggested": suggested,
                "suggestion_agent": None if suggestion is None else suggestion.get("agent"),
                "suggestion_score": None if suggestion is None else suggestion.get("score"),
                "accepted_suggestion": bool(
                    status == "submitted" and suggested is not None and kind.same_answer(answer, suggested)
                ),
                "submitted_at": utc_time(response.get("updated_at")),
            })
    return rows


def corrections_frame(rows: list[dict], task: Task) -> pd.DataFrame:
    """`rows` (`correction_rows`, or a snapshot's lines) as the frame `pull_corrections` returns."""
    # Object columns keep None for "no answer"/"no suggestion" (pandas 3 would infer str with NaN).
    frame = pd.DataFrame(rows, columns=correction_columns(task), dtype=object)
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True, format="ISO8601")
    frame["accepted_suggestion"] = frame["accepted_suggestion"].astype(bool)
    return frame


def load_corrections(path: str | Path, task: Task) -> pd.DataFrame:
    """A snapshot written by `pull_corrections`, as the frame it returned."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return corrections_frame(rows, task)


def write_snapshot(rows: list[dict], out_dir: str | Path, name: str) -> Path:
    """Write `rows` as JSONL to a new file `<out_dir>/<name>/<UTC timestamp>.jsonl` and return its
    path. Never replaces an existing file: a second snapshot in the same microsecond gets ``-1``."""
    folder = Path(out_dir) / "".join(c if c.isalnum() or c in "-_. " else "_" for c in name)
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


def utc_time(value: str | None) -> str | None:
    """The server's naive UTC timestamp as ISO 8601 with its zone."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()
