"""Push a run's predictions, or its errors, to Argilla for annotators to correct.

One dataset per task (named after it by default; `workbench.annotation._argilla.dataset_settings`
describes it): the text, the task kind's question with the chosen variant's answer suggested,
an optional note on why the model was wrong, guidelines built from the task's definitions,
metadata for filtering, and a markdown field showing what every prompt variant answered
(`workbench.annotation.records` builds the records).

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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from workbench.annotation import _argilla
from workbench.annotation._argilla import Client
from workbench.annotation.errors import PushError
from workbench.annotation.records import build_records, summarise_examples
from workbench.core.errors import InputError
from workbench.core.task import Task

DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 500  # the server's limit per bulk upsert


@dataclass(frozen=True)
class PushResult:
    """What a push did. dataset, dataset_id: the Argilla dataset's name and id; records: records
    sent (created or updated); batches: requests made; created: whether the dataset was made by
    this push; url: where annotators open it."""

    dataset: str
    dataset_id: str
    workspace: str
    url: str
    records: int
    batches: int
    created: bool
    seconds: float


def push_predictions(
    client: Client,
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
    `dataset`: ``example_id``, ``text`` and, when present, the gold target column (used only for
    the ``error_type`` metadata, never shown). `name`: the dataset (default: the task's name),
    made when missing. `workspace`: default the first one the client sees. `order`: see
    `workbench.annotation.records.summarise_examples`. `min_submitted`: see `dataset_settings`
    (used when the dataset is made). Records go in batches of `batch_size` (at most 500);
    `on_batch(pushed, total)` is called after each. Raises PushError when the server fails
    part-way (run the same push again to complete it).
    """
    errors = None
    if task.kind.target_column in dataset.columns:
        from workbench.evaluation.errors import find_errors

        mine = predictions[predictions["variant"] == variant]
        optional = {column: None for column in ("raw_response", "parse_error", "request_error") if column not in mine}
        errors = find_errors(mine.assign(**optional), dataset, task)
    summaries = summarise_examples(task, predictions, dataset, variant=variant, errors=errors, order=order)
    return push_summaries(client, task, summaries, name=name, workspace=workspace, batch_size=batch_size,
                 min_submitted=min_submitted, progress=progress, on_batch=on_batch)


def push_errors(
    client: Client,
    task: Task,
    errors: pd.DataFrame,
    predictions: pd.DataFrame,
    dataset: pd.DataFrame,
    *,
    variant: str,
    order: str | None = "disagreement",
    **options: Any,
) -> PushResult:
    """Push one record per example on which `variant` made an error (`errors` from
    `workbench.evaluation.errors.find_errors`), as `push_predictions` does; ``error_type`` lists
    its errors there. `options`: `push_predictions`' name, workspace, batch_size, min_submitted,
    progress and on_batch. Raises ValueError when `errors` holds none for `variant`."""
    if "variant" not in errors.columns or "example_id" not in errors.columns:
        raise InputError(
            f"errors need 'variant' and 'example_id' columns (find_errors' frame); got {list(errors.columns)}"
        )
    mine = errors[errors["variant"] == variant]
    if mine.empty:
        raise InputError(
            f"errors hold no rows for variant {variant!r} "
            f"(variants with errors: {sorted(errors['variant'].unique())}); "
            "nothing to push"
        )
    summaries = summarise_examples(
        task, predictions, dataset, variant=variant, errors=mine, example_ids=mine["example_id"].astype(str).unique(),
        order=order,
    )
    return push_summaries(client, task, summaries, **options)


def push_summaries(
    client: Client,
    task: Task,
    summaries: pd.DataFrame,
    *,
    name: str | None = None,
    workspace: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_submitted: int = 1,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Push one record per row of `summaries` (`summarise_examples`' frame, in its priority
    order) to dataset `name` of the task's layout; `push_predictions` documents the options."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"batch_size must be between 1 and {MAX_BATCH_SIZE} (the server's limit), got {batch_size}")
    if min_submitted < 1:
        raise InputError(f"min_submitted must be at least 1, got {min_submitted}")
    name = name or task.name
    started = time.monotonic()
    records = build_records(task, summaries)
    total = len(records)
    batches_total = -(-total // batch_size)
    pushed = batches = 0

    def failed(error: BaseException) -> PushError:
        return push_failure(client.api_url, name, error, pushed, total, batches, batches_total)

    try:
        remote, created = _argilla.dataset_for_push(client, task, name, workspace, min_submitted)
    except _argilla.SERVER_ERRORS as error:
        raise failed(error) from error
    with tqdm(total=total, unit="record", desc=f"Pushing to {name}", disable=not progress) as bar:
        for start in range(0, total, batch_size):
            chunk = records[start:start + batch_size]
            try:
                _argilla.log_records(remote, chunk)
            except _argilla.SERVER_ERRORS as error:
                raise failed(error) from error
            pushed, batches = pushed + len(chunk), batches + 1
            bar.update(len(chunk))
            if on_batch is not None:
                on_batch(pushed, total)
    if not created:
        # An update leaves a suggestion in place when none is sent; drop those now out of date.
        unsuggested = {record.id for record in records if record.suggestion is None}
        if unsuggested:
            try:
                _argilla.delete_suggestions(client, remote, task.kind.annotation_question(task).name, unsuggested)
            except _argilla.SERVER_ERRORS as error:
                raise failed(error) from error
    return PushResult(
        dataset=name,
        dataset_id=str(remote.id),
        workspace=remote.workspace.name,
        url=_argilla.annotation_url(client, remote),
        records=pushed,
        batches=batches,
        created=created,
        seconds=round(time.monotonic() - started, 3),
    )


def push_failure(where: str, name: str, error: BaseException, pushed: int, total: int, batches: int,
                batches_total: int) -> PushError:
    progress = f"{pushed} of {total} records ({batches} of {batches_total} batches) were pushed"
    if _argilla.is_unreachable(error):
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
