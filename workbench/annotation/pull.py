"""Pull annotators' corrections from Argilla into a DataFrame and a snapshot file that is never overwritten."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workbench.annotation import _argilla
from workbench.annotation._argilla import Client
from workbench.annotation.snapshots import STATUSES, correction_rows, corrections_frame, write_snapshot
from workbench.core.errors import InputError
from workbench.core.task import Task


def pull_corrections(
    client: Client,
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
    "submitted", "discarded", "draft"), the answer in the task's gold form, in the column named
    after the task's question (`TaskKind.target_column`): ``label`` (classification), ``spans``
    (NER: list of ``{start, end, label}`` sorted by start; [] for a submitted "no entities") or
    ``labels`` (multi-label: sorted list; [] for a submitted "None of these"); ``note``,
    ``suggested`` (the record's suggestion now on the server, in the same form, or None),
    ``suggestion_agent`` (the variant that made it), ``suggestion_score``,
    ``accepted_suggestion`` (True when the submitted answer equals the suggestion unchanged),
    ``submitted_at`` (UTC time of the response's last change). Pull as an owner or admin
    (annotators cannot list others' answers).

    Responses are read over the REST API rather than with `dataset.records(...)` because the SDK
    drops their timestamps.
    """
    name = name or task.name
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise InputError(f"statuses may be 'submitted', 'discarded' or 'draft'; got {unknown}")
    records, question_names, usernames = _argilla.responses_json(client, task, name, workspace)
    rows = correction_rows(task, records, question_names, usernames, statuses)
    frame = corrections_frame(rows, task)
    if out_dir is not None:
        frame.attrs["snapshot_path"] = str(write_snapshot(rows, out_dir, name))
    frame.attrs["dataset"] = name
    return frame
