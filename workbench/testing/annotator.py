"""Stand-in for a person: submit annotator responses to Argilla as its web UI does.

Only for demos and tests, where nobody sits at the web UI. Real corrections come from annotators
working in Argilla's UI; `workbench.annotation.pull_corrections` reads either kind the same way.
The requests go through `workbench.annotation._argilla`, the one module that talks to Argilla.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench.annotation import _argilla
from workbench.annotation._argilla import Client
from workbench.annotation.records import NOTE_QUESTION, to_argilla_value
from workbench.core.task import Task


def submit_responses(
    client: Client,
    task: Task,
    dataset_id: str,
    answers: Mapping[str, Any],
    *,
    notes: Mapping[str, str] | None = None,
    status: str = "submitted",
) -> int:
    """Answer records of a dataset as one annotator; returns how many responses were created.

    `client`: logged in as the annotator (``connect(api_url, annotator_api_key)``).
    `dataset_id`: the pushed dataset's id (`PushResult.dataset_id`).
    `answers` maps example_id (the record id pushed by the workbench) to an answer in the task's
    gold form: a label, a list of ``{"start", "end", "label"}`` spans, or a list of labels ([]
    for "None of these"). `notes` maps example_id to the optional note. Only records in this
    annotator's pending queue are answered; those already answered are left alone.
    """
    question = task.kind.annotation_question(task)
    notes = notes or {}
    created = 0
    for record in _argilla.pending_records(client, str(dataset_id)):
        example_id = record.get("external_id")
        if example_id not in answers:
            continue
        values = {question.name: to_argilla_value(question, answers[example_id])}
        if example_id in notes:
            values[NOTE_QUESTION] = notes[example_id]
        created += _argilla.submit_response(client, record["id"], values, status=status)
    return created


def submit_review_answers(
    client: Client, dataset_id: str, answers: Mapping[str, Mapping[str, Any]], *, status: str = "submitted",
) -> int:
    """Answer records of a review dataset (`workbench.annotation.reviews`) as one annotator.

    `answers` maps a record id (the id the review pushed, e.g. `workbench.points.review.member_id`)
    to question name -> value as Argilla stores it (a `Choice` option value, a text). Only records
    in this annotator's pending queue are answered; returns how many responses were created."""
    created = 0
    for record in _argilla.pending_records(client, str(dataset_id)):
        values = answers.get(record.get("external_id"))
        if values is not None:
            created += _argilla.submit_response(client, record["id"], dict(values), status=status)
    return created
