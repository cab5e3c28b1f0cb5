"""Review datasets: Argilla datasets laid out by the caller, for reviewing anything but a task's answers.

The correction dataset (`push`, `pull`) is fixed: the text, the task's question, a note. Later
stages ask annotators other things: which training point an error belongs to, what a point should
be called. They describe their dataset with `ReviewLayout` (fields, choice and free-text
questions, metadata; no argilla here) and their records with `RecordData`, and push and pull
through the two functions below. Pushing again updates records in place (the record id is the
caller's), keeps submitted responses, and refuses a layout whose choices differ in their values
from the dataset already there (Argilla 2.8 may change an option's text, never its value).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.annotation import _argilla
from workbench.annotation._argilla import Client
from workbench.annotation.errors import AnnotationError
from workbench.annotation.push import MAX_BATCH_SIZE, PushResult, push_failure
from workbench.annotation.records import Field, Metadata, RecordData
from workbench.annotation.snapshots import STATUSES, utc_time, write_snapshot
from workbench.core.errors import InputError


@dataclass(frozen=True)
class Choice:
    """A question with one answer out of `options` (value -> text shown; at least two)."""

    name: str
    title: str
    options: Mapping[str, str]
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class FreeText:
    """A question answered in words."""

    name: str
    title: str
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class ReviewLayout:
    """What a review dataset shows and asks: `fields` (markdown or plain), `questions`
    (`Choice` and `FreeText`), `metadata` to filter and sort by, and markdown `guidelines`."""

    fields: Sequence[Field]
    questions: Sequence[Choice | FreeText]
    metadata: Sequence[Metadata] = ()
    guidelines: str = ""
    min_submitted: int = 1
    choices: dict[str, Choice] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", {q.name: q for q in self.questions if isinstance(q, Choice)})
        for choice in self.choices.values():
            if len(choice.options) < 2:
                raise InputError(f"question {choice.name!r} needs at least two options, got {list(choice.options)}")


def push_review(
    client: Client, layout: ReviewLayout, records: Sequence[RecordData], name: str, *,
    workspace: str | None = None, batch_size: int = 256,
) -> PushResult:
    """Create dataset `name` with `layout` when missing (else check it and update its option texts),
    then create or update `records` by id. Raises AnnotationError when the dataset there has other
    fields, questions or option values, PushError when the server fails part-way (push again)."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"batch_size must be between 1 and {MAX_BATCH_SIZE} (the server's limit), got {batch_size}")
    started = time.monotonic()
    pushed = batches = 0
    total = len(records)
    try:
        remote, created = _argilla.dataset_for_review(client, layout, name, workspace)
        for start in range(0, total, batch_size):
            chunk = list(records[start:start + batch_size])
            _argilla.log_records(remote, chunk)
            pushed, batches = pushed + len(chunk), batches + 1
    except _argilla.SERVER_ERRORS as error:
        raise push_failure(client.api_url, name, error, pushed, total, batches, -(-total // batch_size)) from error
    return PushResult(dataset=name, dataset_id=str(remote.id), workspace=remote.workspace.name,
                      url=_argilla.annotation_url(client, remote), records=pushed, batches=batches,
                      created=created, seconds=round(time.monotonic() - started, 3))


def review_columns(layout: ReviewLayout) -> list[str]:
    """The columns of `pull_review`'s frame for `layout`."""
    return (["record_id"] + [prop.name for prop in layout.metadata] + ["annotator", "status"]
            + [question.name for question in layout.questions] + ["suggested", "submitted_at"])


def pull_review(
    client: Client, layout: ReviewLayout, name: str, *, workspace: str | None = None,
    out_dir: str | Path | None = "annotations", statuses: Sequence[str] = ("submitted",),
) -> pd.DataFrame:
    """The responses in review dataset `name`, one row per record and annotator, written as a new
    snapshot `<out_dir>/<name>/<UTC timestamp>.jsonl` (never over an earlier one; its path is in
    ``frame.attrs["snapshot_path"]``; `out_dir=None` writes none).

    Columns (`review_columns`): ``record_id``, the record's metadata values (one column per
    `layout.metadata`), ``annotator`` (user name), ``status``, one column per question with the
    annotator's answer (None when left empty), ``suggested`` (question -> suggested value) and
    ``submitted_at`` (UTC, ISO 8601). Pull as an owner or admin."""
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise InputError(f"statuses may be 'submitted', 'discarded' or 'draft'; got {unknown}")
    records, question_names, usernames = _argilla.review_responses_json(client, layout, name, workspace)
    rows = review_rows(layout, records, question_names, usernames, statuses)
    frame = pd.DataFrame(rows, columns=review_columns(layout), dtype=object)
    if out_dir is not None:
        frame.attrs["snapshot_path"] = str(write_snapshot(rows, out_dir, name))
    frame.attrs["dataset"] = name
    return frame


def review_rows(layout: ReviewLayout, records: Sequence[Mapping[str, Any]], question_names: Mapping[str, str],
                usernames: Mapping[str, str], statuses: Sequence[str]) -> list[dict[str, Any]]:
    """One row per response in `statuses` (see `pull_review`), from records as the REST API lists
    them with their metadata, responses and suggestions."""
    rows = []
    for record in records:
        metadata = record.get("metadata") or {}
        suggested = {question_names.get(str(s["question_id"]), str(s["question_id"])): s["value"]
                     for s in record.get("suggestions") or []}
        for response in record.get("responses") or []:
            if response["status"] not in statuses:
                continue
            values = response.get("values") or {}
            row = {"record_id": record["external_id"]}
            row.update({prop.name: metadata.get(prop.name) for prop in layout.metadata})
            row["annotator"] = usernames.get(str(response["user_id"]), str(response["user_id"]))
            row["status"] = response["status"]
            row.update({q.name: (values.get(q.name) or {}).get("value") for q in layout.questions})
            row["suggested"] = suggested
            row["submitted_at"] = utc_time(response.get("updated_at"))
            rows.append(row)
    return rows


def check_review_columns(reviews: pd.DataFrame, layout: ReviewLayout) -> None:
    missing = [column for column in review_columns(layout) if column not in reviews.columns]
    if missing:
        raise AnnotationError(f"reviews lack columns {missing}: pass the frame pull_review returns (or a snapshot "
                              "of it read with load_review)")


def load_review(path: str | Path, layout: ReviewLayout) -> pd.DataFrame:
    """A snapshot written by `pull_review`, as the frame it returned."""
    import json

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=review_columns(layout), dtype=object)
