"""Annotators correct model outputs in Argilla; corrections come back as DataFrames.

With `workbench.annotation_client` (connecting) and `workbench.annotation_pull` (pulling), the only
modules of the package that import `argilla` (the 2.x SDK); this module re-exports their API.
One dataset per task (named after it by default): a text field, the task's question
(`LabelQuestion` "label" or `SpanQuestion` "spans"), an optional note on why the model was
wrong, guidelines built from the task's definitions, metadata for filtering, and a markdown
field showing what every prompt variant answered (`workbench.annotation_records` builds these).

Record id = example_id, so pushing again updates records in place: suggestions, metadata and the
variants table are replaced, and the responses annotators already submitted are kept (the
server's bulk upsert never deletes responses it is not sent; a test checks this). Records go in
priority order. The embedded server serves each annotator's queue in the order records were first
logged; Elasticsearch-backed servers shuffle it per annotator, and a record pushed again keeps its
first place. So every record also carries a ``priority`` metadata value (1 = first): sorting by
it in the UI gives the intended order on any server.

A push is a sequence of bulk upserts, each one transaction on the server. When the server stops
answering part-way, `PushError` says how many records got there; running the same push again
completes it (the SDK's client first retries a refused connection with backoff, about 7 s for its
default 5 retries, so a quick restart goes unnoticed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import argilla as rg
import httpx
import pandas as pd
from argilla._exceptions import ArgillaAPIError
from tqdm.auto import tqdm

from workbench.annotation.client import AnnotationError, find_dataset, records_json, resolve_workspace
from workbench.annotation.pull import NOTE_QUESTION
from workbench.annotation.records import guidelines, summarise_examples
from workbench.core.task import Task


TEXT_FIELD, TABLE_FIELD = "text", "variant_predictions"
DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 500  # the server's limit per bulk upsert
_UNREACHABLE_STATUS = {502, 503, 504}


class PushError(AnnotationError):
    """A push stopped part-way. `pushed` of `total` records (`batches_done` of `batches_total`
    batches) reached the server; running the same push again completes it."""

    def __init__(self, message: str, *, dataset: str, pushed: int, total: int, batches_done: int, batches_total: int):
        super().__init__(message)
        self.dataset, self.pushed, self.total = dataset, pushed, total
        self.batches_done, self.batches_total = batches_done, batches_total


@dataclass(frozen=True)
class PushResult:
    """What a push did. records: records sent (created or updated); batches: requests made;
    created: whether the dataset was made by this push; url: where annotators open it."""

    dataset: str
    workspace: str
    url: str
    records: int
    batches: int
    created: bool
    seconds: float


# Settings.
def dataset_settings(task: Task, *, client: rg.Argilla | None = None, min_submitted: int = 1) -> rg.Settings:
    """Argilla settings for correcting `task`'s model outputs.

    Fields: "text" (the input) and "variant_predictions" (markdown: what each prompt variant
    answered). Questions: "label" (`LabelQuestion`, classification) or "spans" (`SpanQuestion`
    on "text", NER; the UI lets a text with no entities be submitted with none), and "note" (optional
    free text: why the model was wrong). Metadata: variant and error_type (terms), consistency
    (float), variants_disagreeing and priority (integer). `min_submitted`: submitted responses
    after which a record leaves everyone's queue (2 or more to measure agreement between
    annotators). `client` defaults to the SDK's default client (the last one made).
    """
    if min_submitted < 1:
        raise ValueError(f"min_submitted must be at least 1, got {min_submitted}")
    kw = {"client": client}
    labels = list(task.label_names)
    if task.kind == "classification":
        question = rg.LabelQuestion(
            name="label", labels=labels, title="Label",
            description="The right label, by the definitions in the guidelines.", **kw,
        )
    else:
        question = rg.SpanQuestion(
            name="spans", field=TEXT_FIELD, labels=labels, title="Entities",
            description=(
                "Every entity span, by the definitions in the guidelines. Submit with none if the text has none."
            ),
            **kw,
        )
    return rg.Settings(
        fields=[
            rg.TextField(name=TEXT_FIELD, title="Text", client=client),
            rg.TextField(name=TABLE_FIELD, title="What the prompt variants answered", use_markdown=True, client=client),
        ],
        questions=[
            question,
            rg.TextQuestion(
                name=NOTE_QUESTION, title="Note", required=False,
                description="Why was the model wrong? (optional)", **kw,
            ),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="variant", title="Suggested by variant", **kw),
            rg.TermsMetadataProperty(name="error_type", title="Error type", **kw),
            rg.FloatMetadataProperty(name="consistency", title="Consistency across repeats", **kw),
            rg.IntegerMetadataProperty(name="variants_disagreeing", title="Variants disagreeing", **kw),
            rg.IntegerMetadataProperty(name="priority", title="Priority (1 = first)", **kw),
        ],
        guidelines=guidelines(task),
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


# Pushing.
def push_predictions(
    client: rg.Argilla,
    task: Task,
    predictions: pd.DataFrame,
    dataset: pd.DataFrame,
    *,
    variant: str,
    name: str | None = None,
    workspace: str | None = None,
    order: str | None = "disagreement",
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_submitted: int = 1,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Push one record per example that `variant` answered, with its answer as the suggestion.

    `predictions`: the runner's frame (all variants: the others are shown to the annotator).
    `dataset`: ``example_id``, ``text`` and, when present, the gold ``label``/``spans`` (used
    only for the ``error_type`` metadata, never shown). `name`: the dataset (default: the task's
    name), made when missing. `workspace`: default the first one the client sees. `order`: see
    `workbench.annotation_records.summarise_examples`. Records go in batches of `batch_size`
    (at most 500); `on_batch(pushed, total)` is called after each. Raises PushError when the
    server fails part-way (run the same push again to complete it).
    """
    errors = None
    target = "label" if task.kind == "classification" else "spans"
    if target in dataset.columns:
        from workbench.evaluation.errors import find_errors

        mine = predictions[predictions["variant"] == variant]
        optional = {column: None for column in ("raw_response", "parse_error", "request_error") if column not in mine}
        errors = find_errors(mine.assign(**optional), dataset, task)
    summaries = summarise_examples(task, predictions, dataset, variant=variant, errors=errors, order=order)
    return _push(client, task, summaries, name=name, workspace=workspace, batch_size=batch_size,
                 min_submitted=min_submitted, progress=progress, on_batch=on_batch)


def push_errors(
    client: rg.Argilla,
    task: Task,
    errors: pd.DataFrame,
    predictions: pd.DataFrame,
    dataset: pd.DataFrame,
    *,
    variant: str,
    name: str | None = None,
    workspace: str | None = None,
    order: str | None = "disagreement",
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_submitted: int = 1,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Push one record per example on which `variant` made an error (`errors` from
    `workbench.errors.find_errors`), as `push_predictions` does; ``error_type`` lists its errors
    there. Raises ValueError when `errors` holds none for `variant`."""
    if "variant" not in errors.columns or "example_id" not in errors.columns:
        raise ValueError(
            f"errors need 'variant' and 'example_id' columns (find_errors' frame); got {list(errors.columns)}"
        )
    mine = errors[errors["variant"] == variant]
    if mine.empty:
        raise ValueError(
            f"errors hold no rows for variant {variant!r} "
            f"(variants with errors: {sorted(errors['variant'].unique())}); "
            "nothing to push"
        )
    summaries = summarise_examples(
        task, predictions, dataset, variant=variant, errors=mine, example_ids=mine["example_id"].astype(str).unique(),
        order=order,
    )
    return _push(client, task, summaries, name=name, workspace=workspace, batch_size=batch_size,
                 min_submitted=min_submitted, progress=progress, on_batch=on_batch)


def _push(
    client: rg.Argilla,
    task: Task,
    summaries: pd.DataFrame,
    *,
    name: str | None,
    workspace: str | None,
    batch_size: int,
    min_submitted: int,
    progress: bool,
    on_batch: Callable[[int, int], None] | None,
) -> PushResult:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE} (the server's limit), got {batch_size}")
    name = name or task.name
    started = time.monotonic()
    total = len(summaries)
    batches_total = -(-total // batch_size)
    try:
        remote, created = _dataset_for_push(client, task, name, workspace, min_submitted)
    except (httpx.HTTPError, ArgillaAPIError) as error:
        raise _push_error(client, name, error, 0, total, 0, batches_total) from error

    question = "label" if task.kind == "classification" else "spans"
    models = [_record(row, question, remote).api_model() for row in summaries.to_dict("records")]
    pushed = batches = 0
    with tqdm(total=total, unit="record", desc=f"Pushing to {name}", disable=not progress) as bar:
        for start in range(0, total, batch_size):
            chunk = models[start:start + batch_size]
            try:
                client.api.records.bulk_upsert(dataset_id=remote.id, records=chunk)
            except (httpx.HTTPError, ArgillaAPIError) as error:
                raise _push_error(client, name, error, pushed, total, batches, batches_total) from error
            pushed, batches = pushed + len(chunk), batches + 1
            bar.update(len(chunk))
            if on_batch is not None:
                on_batch(pushed, total)
    if not created:
        # An update leaves a suggestion in place when none is sent; drop those now out of date.
        unsuggested = {row["example_id"] for row in summaries.to_dict("records") if _missing(row["suggestion"])}
        if unsuggested:
            try:
                _delete_suggestions(client, remote, question, unsuggested)
            except (httpx.HTTPError, ArgillaAPIError) as error:
                raise _push_error(client, name, error, pushed, total, batches, batches_total) from error
    return PushResult(
        dataset=name,
        workspace=remote.workspace.name,
        url=f"{client.api_url.rstrip('/')}/dataset/{remote.id}/annotation-mode",
        records=pushed,
        batches=batches,
        created=created,
        seconds=round(time.monotonic() - started, 3),
    )


def _record(row: dict, question: str, remote: rg.Dataset) -> rg.Record:
    metadata: dict[str, Any] = {
        "variant": str(row["variant"]),
        "consistency": float(row["consistency"]),
        "variants_disagreeing": int(row["variants_disagreeing"]),
        "priority": int(row["priority"]),
    }
    if not _missing(row["error_type"]):
        metadata["error_type"] = [str(kind) for kind in row["error_type"]]
    suggestions = []
    if not _missing(row["suggestion"]):
        score = row["suggestion_score"]
        if isinstance(score, list):
            score = [float(value) for value in score]
        else:
            score = None if _missing(score) else float(score)
        suggestions.append(rg.Suggestion(question, row["suggestion"], score=score, agent=str(row["variant"])))
    record = rg.Record(
        id=str(row["example_id"]),
        fields={TEXT_FIELD: row["text"], TABLE_FIELD: row["variant_predictions"]},
        metadata=metadata,
        suggestions=suggestions,
    )
    record.dataset = remote
    return record


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _push_error(client, name, error, pushed, total, batches, batches_total) -> PushError:
    where = client.api_url
    status = getattr(error, "status_code", None)
    progress = f"{pushed} of {total} records ({batches} of {batches_total} batches) were pushed"
    if isinstance(error, httpx.TransportError) or status in _UNREACHABLE_STATUS:
        message = (
            f"Argilla at {where} stopped answering while pushing to dataset {name!r}: {progress} before "
            f"{type(error).__name__}: {error}. Once the server is back (`workbench argilla up` for the embedded one, "
            "or check ARGILLA_API_URL), run the same push again: it completes the dataset, updating the records "
            "already there instead of duplicating them, and keeps annotators' responses."
        )
    else:
        message = (
            f"Argilla at {where} rejected a request while pushing to dataset {name!r}: {progress} before it. "
            f"The server said: {error}. Fix the cause and run the push again; records already there are updated, "
            "not duplicated."
        )
    return PushError(
        message, dataset=name, pushed=pushed, total=total, batches_done=batches, batches_total=batches_total
    )


def _dataset_for_push(
    client: rg.Argilla, task: Task, name: str, workspace: str | None, min_submitted: int
) -> tuple[rg.Dataset, bool]:
    """The dataset `name` (checked against `task`), made when missing. Returns (dataset, created)."""
    existing = find_dataset(client, name, workspace)
    # A dataset left unpublished by a failed creation holds no records: make it again.
    if existing is not None and getattr(existing._model, "status", "ready") != "ready":
        existing.delete()
        existing = None
    if existing is not None:
        existing.get()
        _check_compatible(existing, task, client)
        return existing, False
    settings = dataset_settings(task, client=client, min_submitted=min_submitted)
    created = rg.Dataset(name=name, workspace=resolve_workspace(client, workspace), settings=settings, client=client)
    return created.create(), True


def _check_compatible(remote: rg.Dataset, task: Task, client: rg.Argilla) -> None:
    """Raise AnnotationError when `remote` cannot hold `task`'s records; add missing metadata."""
    question = "label" if task.kind == "classification" else "spans"
    fields = {field.name for field in remote.settings.fields}
    questions = {q.name: q for q in remote.settings.questions}
    problems = []
    if not {TEXT_FIELD, TABLE_FIELD} <= fields:
        problems.append(f"fields {sorted(fields)} lack {sorted({TEXT_FIELD, TABLE_FIELD} - fields)}")
    if question not in questions:
        problems.append(f"it has no question {question!r} (questions: {sorted(questions)})")
    elif sorted(questions[question].labels) != sorted(task.label_names):
        problems.append(
            f"its {question!r} labels are {sorted(questions[question].labels)}, the task's {sorted(task.label_names)}"
        )
    if problems:
        raise AnnotationError(
            f"Dataset {remote.name!r} exists but does not fit task {task.name!r}: {'; '.join(problems)}. "
            "Push under another name= or delete that dataset."
        )
    present = {prop.name for prop in remote.settings.metadata}
    for prop in dataset_settings(task, client=client).metadata:
        if prop.name not in present:  # made by an older workbench: add what is new
            prop.dataset = remote
            prop.create()


def _delete_suggestions(client: rg.Argilla, remote: rg.Dataset, question: str, example_ids: set[str]) -> None:
    question_id = str(remote.settings.questions[question].id)
    for record in records_json(client, remote, include=("suggestions",)):
        if record.get("external_id") in example_ids:
            for suggestion in record.get("suggestions") or []:
                if suggestion["question_id"] == question_id:
                    client.http_client.delete(f"/api/v1/suggestions/{suggestion['id']}").raise_for_status()
