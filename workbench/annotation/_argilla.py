"""The one module that talks to Argilla: the 2.8 SDK, and its REST API where the SDK drops data.

Everything else in `workbench.annotation` is built from plain values (`records.RecordData`, REST
JSON, `AnnotationQuestion`) and tested without a server; the functions here make the requests.
The SDK is used wherever it has a public call. Straight REST requests, through the SDK's own
HTTP client, remain for what it does not offer: reading responses with their timestamps (the
SDK drops them), deleting a stale suggestion, and answering as an annotator does in the web UI
(`workbench.testing.annotator`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import argilla as rg
import httpx

# Argilla 2.8 exports its exceptions from this private module only.
from argilla._exceptions import ArgillaCredentialsError, ArgillaError

from workbench.annotation.errors import AnnotationError, ArgillaUnavailableError
from workbench.annotation.records import (
    FIELDS,
    METADATA,
    NOTE,
    NOTE_DESCRIPTION,
    Field,
    Metadata,
    RecordData,
    guidelines,
    question_options,
)
from workbench.core.errors import InputError
from workbench.core.kinds.base import AnnotationQuestion
from workbench.core.task import Task

if TYPE_CHECKING:
    from workbench.annotation.reviews import ReviewLayout

Client = rg.Argilla

# What a request to the server may raise: the connection failed, or the server said no.
SERVER_ERRORS = (httpx.HTTPError, ArgillaError)
_UNREACHABLE_STATUS = {502, 503, 504}
_PAGE = 1000  # the server's largest page of records
HOW_TO_CONNECT = (
    "pass api_url and api_key to connect(), or set ARGILLA_API_URL and ARGILLA_API_KEY. To use the embedded "
    "server, start it with `workbench argilla up` (it prints the URL; the owner's API key is in "
    ".workbench/argilla/credentials.json), or in Python with "
    "`info = workbench_argilla_embedded.resolve_server()` (or `start_server()`) and then "
    "`connect(info.api_url, info.api_key)`"
)
_QUESTIONS = {"label": rg.LabelQuestion, "multi_label": rg.MultiLabelQuestion, "span": rg.SpanQuestion}
_METADATA = {"terms": rg.TermsMetadataProperty, "float": rg.FloatMetadataProperty,
             "integer": rg.IntegerMetadataProperty}


# Connecting.
def connect(
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    timeout: int = 60,
    retries: int = 5,
) -> rg.Argilla:
    """An SDK client for `api_url` + `api_key`, else for ARGILLA_API_URL + ARGILLA_API_KEY.
    Never starts a server. `retries` is how often a refused connection is retried (with backoff,
    about 7 s in all for 5) before giving up. Raises ArgillaUnavailableError when neither is
    given, when only one of a pair is, or when the server does not answer or refuses the key;
    the message says how to start the embedded server."""
    if api_url or api_key:
        if not (api_url and api_key):
            raise ArgillaUnavailableError(f"Give both api_url and api_key, or neither. To fix: {HOW_TO_CONNECT}.")
        url, key = api_url, api_key
    else:
        url, key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
        if bool(url) != bool(key):
            only, missing = ("ARGILLA_API_URL", "ARGILLA_API_KEY") if url else ("ARGILLA_API_KEY", "ARGILLA_API_URL")
            raise ArgillaUnavailableError(f"Only {only} is set, not {missing}. To fix: {HOW_TO_CONNECT}.")
        if not url:
            raise ArgillaUnavailableError(
                "No Argilla server is configured: connect() got no api_url and ARGILLA_API_URL is not set "
                f"(connect() never starts a server). To fix: {HOW_TO_CONNECT}."
            )
    url = url.rstrip("/")
    try:
        return rg.Argilla(api_url=url, api_key=key, timeout=timeout, retries=retries)
    except ArgillaCredentialsError as error:
        raise ArgillaUnavailableError(
            f"Argilla at {url} refused the API key. Check api_key or ARGILLA_API_KEY (for the embedded server it is "
            "the `api_key` of the ServerInfo that start_server() or resolve_server() returns, or a key in "
            ".workbench/argilla/credentials.json)."
        ) from error
    except SERVER_ERRORS as error:
        raise ArgillaUnavailableError(
            f"No Argilla server answered at {url} ({error}). To fix: {HOW_TO_CONNECT}."
        ) from error


def is_unreachable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) means the server did not answer, rather than refused."""
    while error is not None:
        if isinstance(error, httpx.TransportError) or getattr(error, "status_code", None) in _UNREACHABLE_STATUS:
            return True
        error = error.__cause__
    return False


# Workspaces and datasets.
def resolve_workspace(client: rg.Argilla, workspace: str | None) -> rg.Workspace:
    if workspace is None:
        try:
            return client.workspaces.default
        except ArgillaError as error:
            raise AnnotationError(
                f"Argilla at {client.api_url} has no workspace this user can use; create one "
                "(rg.Workspace(name=...).create()) and add the user to it, or pass workspace="
            ) from error
    found = client.workspaces(workspace)
    if found is None:
        names = [ws.name for ws in client.workspaces]
        raise AnnotationError(f"No workspace {workspace!r} on Argilla at {client.api_url}; available: {names}")
    return found


def find_dataset(client: rg.Argilla, name: str, workspace: str | None) -> rg.Dataset | None:
    for candidate in resolve_workspace(client, workspace).datasets:
        if candidate.name == name:
            return candidate
    return None


def _ready_dataset(client: rg.Argilla, name: str, workspace: str | None) -> rg.Dataset | None:
    """Dataset `name`, or None; one left unpublished by a failed creation holds no records and is
    deleted, so that it is made again."""
    existing = find_dataset(client, name, workspace)
    if existing is not None and existing.serialize().get("status", "ready") != "ready":
        existing.delete()
        return None
    return existing


def annotation_url(client: rg.Argilla, remote: rg.Dataset) -> str:
    """Where annotators open `remote` in the web UI."""
    return f"{client.api_url.rstrip('/')}/dataset/{remote.id}/annotation-mode"


# Settings.
def dataset_settings(task: Task, *, client: rg.Argilla | None = None, min_submitted: int = 1) -> rg.Settings:
    """Argilla settings for correcting `task`'s model outputs.

    Fields: "text" (the input) and "variant_predictions" (markdown: what each prompt variant
    answered). Questions: the task kind's (`TaskKind.annotation_question`): "label"
    (`LabelQuestion`), "spans" (`SpanQuestion` on "text"; a text with no entities is submitted
    with none) or "labels" (`MultiLabelQuestion`, with a "None of these" option because Argilla
    refuses an empty multi-label answer); and "note" (optional free text: why the model was
    wrong). Metadata: variant and error_type (terms), consistency (float), variants_disagreeing
    and priority (integer). `min_submitted`: submitted responses after which a record leaves
    everyone's queue (2 or more to measure agreement between annotators). `client` defaults to
    the SDK's default client (the last one made).
    """
    if min_submitted < 1:
        raise InputError(f"min_submitted must be at least 1, got {min_submitted}")
    return rg.Settings(
        fields=_text_fields(FIELDS, client),
        questions=[
            _question(task.kind.annotation_question(task), client),
            rg.TextQuestion(name=NOTE.name, title=NOTE.title, required=False, description=NOTE_DESCRIPTION,
                            client=client),
        ],
        metadata=_metadata_properties(client),
        guidelines=guidelines(task),
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def _question(question: AnnotationQuestion, client: rg.Argilla | None):
    try:
        make = _QUESTIONS[question.question_type]
    except KeyError:
        raise InputError(
            f"question type {question.question_type!r} has no Argilla question; use one of {sorted(_QUESTIONS)}"
        ) from None
    extra = {"field": FIELDS[0].name} if question.question_type == "span" else {}
    return make(name=question.name, labels=question_options(question), title=question.title,
                description=question.description, client=client, **extra)


def _metadata_properties(client: rg.Argilla | None, metadata: Sequence[Metadata] = METADATA) -> list:
    return [_METADATA[prop.type](name=prop.name, title=prop.title, client=client) for prop in metadata]


def _text_fields(fields: Sequence[Field], client: rg.Argilla | None) -> list:
    return [rg.TextField(name=f.name, title=f.title, use_markdown=f.markdown, client=client) for f in fields]


def dataset_for_push(
    client: rg.Argilla, task: Task, name: str, workspace: str | None, min_submitted: int
) -> tuple[rg.Dataset, bool]:
    """The dataset `name` (checked against `task`, missing metadata added), made when missing.
    Returns (dataset, created)."""
    existing = _ready_dataset(client, name, workspace)
    if existing is not None:
        existing.get()
        _check_compatible(existing, task, client)
        return existing, False
    settings = dataset_settings(task, client=client, min_submitted=min_submitted)
    created = rg.Dataset(name=name, workspace=resolve_workspace(client, workspace), settings=settings, client=client)
    return created.create(), True


def _check_compatible(remote: rg.Dataset, task: Task, client: rg.Argilla) -> None:
    """Raise AnnotationError when `remote` cannot hold `task`'s records; add missing metadata."""
    question = task.kind.annotation_question(task)
    fields = {field.name for field in remote.settings.fields}
    questions = {q.name: q for q in remote.settings.questions}
    wanted_fields = {field.name for field in FIELDS}
    problems = []
    if not wanted_fields <= fields:
        problems.append(f"fields {sorted(fields)} lack {sorted(wanted_fields - fields)}")
    found = questions.get(question.name)
    if found is None:
        problems.append(f"it has no question {question.name!r} (questions: {sorted(questions)})")
    elif not isinstance(found, _QUESTIONS[question.question_type]):
        problems.append(f"its question {question.name!r} is a {type(found).__name__}, not a "
                        f"{_QUESTIONS[question.question_type].__name__}")
    elif sorted(found.labels) != sorted(question_options(question)):
        problems.append(
            f"its {question.name!r} labels are {sorted(found.labels)}, the task's {sorted(question_options(question))}"
        )
    if problems:
        raise AnnotationError(
            f"Dataset {remote.name!r} exists but does not fit task {task.name!r}: {'; '.join(problems)}. "
            "Push under another name= or delete that dataset."
        )
    present = {prop.name for prop in remote.settings.metadata}
    missing = [prop for prop in _metadata_properties(client) if prop.name not in present]
    if missing:  # made by an older workbench: add what is new
        for prop in missing:
            remote.settings.metadata.add(prop)
        remote.update()


# Review datasets (`workbench.annotation.reviews`): the caller's layout.
def review_settings(layout: ReviewLayout, client: rg.Argilla | None = None) -> rg.Settings:
    """Argilla settings for `layout`: its fields as text fields, each `Choice` as a
    `LabelQuestion` and each `FreeText` as a `TextQuestion`, its metadata and guidelines."""
    questions = []
    for question in layout.questions:
        if question.name in layout.choices:
            questions.append(rg.LabelQuestion(name=question.name, labels=dict(question.options), title=question.title,
                                              description=question.description or None, required=question.required,
                                              client=client))
        else:
            questions.append(rg.TextQuestion(name=question.name, title=question.title, required=question.required,
                                             description=question.description or None, client=client))
    return rg.Settings(fields=_text_fields(layout.fields, client), questions=questions,
                       metadata=_metadata_properties(client, layout.metadata), guidelines=layout.guidelines or None,
                       distribution=rg.TaskDistribution(min_submitted=layout.min_submitted))


def dataset_for_review(client: rg.Argilla, layout: ReviewLayout, name: str,
                       workspace: str | None) -> tuple[rg.Dataset, bool]:
    """The review dataset `name`, made with `layout` when missing; when there, checked against it
    and its options' texts brought up to date. Returns (dataset, created)."""
    existing = _ready_dataset(client, name, workspace)
    if existing is None:
        settings = review_settings(layout, client)
        created = rg.Dataset(name=name, workspace=resolve_workspace(client, workspace), settings=settings,
                             client=client)
        return created.create(), True
    existing.get()
    fields = {f.name for f in existing.settings.fields}
    questions = {q.name: q for q in existing.settings.questions}
    problems = [f"it has no field {f.name!r}" for f in layout.fields if f.name not in fields]
    problems += [f"it has no question {q.name!r}" for q in layout.questions if q.name not in questions]
    for choice in layout.choices.values():
        found = questions.get(choice.name)
        if found is None:
            continue
        values = _option_values(found)
        new = [value for value in choice.options if value not in values]
        if new:
            problems.append(f"its question {choice.name!r} has no option {new} (Argilla cannot add options to a "
                            f"question; it has {sorted(values)})")
    if problems:
        raise AnnotationError(f"Dataset {name!r} exists but does not fit this review: {'; '.join(problems)}. "
                              "Push under another name or delete that dataset.")
    for choice in layout.choices.values():
        _update_option_texts(client, questions[choice.name], choice.options)
    return existing, False


def _option_values(question: Any) -> list[str]:
    return [option["value"] for option in question.serialize()["settings"]["options"]]


def _update_option_texts(client: rg.Argilla, question: Any, texts: dict[str, str]) -> None:
    """Give the options of `question` the texts in `texts` (others keep theirs): the server
    allows new texts but never new values or a different number of options."""
    settings = question.serialize()["settings"]
    options = [{**option, "text": texts.get(option["value"], option["text"])} for option in settings["options"]]
    if options == settings["options"]:
        return
    client.http_client.patch(f"/api/v1/questions/{question.id}",
                             json={"settings": {"type": settings["type"], "options": options}}).raise_for_status()


def review_responses_json(client: rg.Argilla, layout: ReviewLayout, name: str,
                          workspace: str | None) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """For pulling a review: (every record of dataset `name` with its metadata, responses and
    suggestions, question id -> name, user id -> username). Raises AnnotationError when the
    dataset is missing, lacks the layout's questions, or the user may not read others' answers."""
    return _responses(client, name, workspace, [q.name for q in layout.questions], "push the review first",
                      "it was not made for this review")


def _responses(client: rg.Argilla, name: str, workspace: str | None, questions: Sequence[str], push_first: str,
               not_made_for: str) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Records with responses and suggestions of dataset `name`, which must have `questions`."""
    remote = find_dataset(client, name, workspace)
    if remote is None:
        raise AnnotationError(f"No dataset {name!r} on Argilla at {client.api_url}; {push_first}.")
    remote.get()
    missing = [q for q in questions if q not in {question.name for question in remote.settings.questions}]
    if missing:
        shown = missing[0] if len(missing) == 1 else missing
        raise AnnotationError(f"Dataset {name!r} has no question {shown!r}: {not_made_for}.")
    try:
        records = records_json(client, remote, include=("responses", "suggestions"))
    except httpx.HTTPStatusError as error:
        if error.response.status_code != 403:
            raise
        raise AnnotationError(f"User {client.me.username!r} may not read every annotator's responses in {name!r}: "
                              "pull as an owner or an admin of its workspace.") from error
    return records, {str(q.id): q.name for q in remote.settings.questions}, _usernames(client)


# Records.
def log_records(remote: rg.Dataset, records: Sequence[RecordData]) -> None:
    """Create or update `records` (by id) in one request: suggestions, metadata and fields are
    replaced; responses already submitted are kept (the server's bulk upsert never deletes a
    response it is not sent)."""
    remote.records.log([_record(record) for record in records], batch_size=len(records))


def _record(record: RecordData) -> rg.Record:
    suggestions = []
    if record.suggestion is not None:
        suggested = record.suggestion
        suggestions.append(rg.Suggestion(suggested.question, suggested.value, score=suggested.score,
                                         agent=suggested.agent))
    return rg.Record(id=record.id, fields=dict(record.fields), metadata=dict(record.metadata), suggestions=suggestions)


def delete_suggestions(client: rg.Argilla, remote: rg.Dataset, question: str, example_ids: set[str]) -> None:
    """Delete the suggestions for `question` on the records `example_ids` (an update leaves a
    suggestion in place when it sends none, and the SDK has no call to delete one)."""
    question_id = str(remote.settings.questions[question].id)
    for record in records_json(client, remote, include=("suggestions",)):
        if record.get("external_id") in example_ids:
            for suggestion in record.get("suggestions") or []:
                if suggestion["question_id"] == question_id:
                    client.http_client.delete(f"/api/v1/suggestions/{suggestion['id']}").raise_for_status()


def records_json(client: rg.Argilla, remote: rg.Dataset, include: Sequence[str]) -> list[dict]:
    """Every record of `remote` as the REST API lists them (in the order first logged), page by page."""
    records: list[dict] = []
    while True:
        response = client.http_client.get(
            f"/api/v1/datasets/{remote.id}/records",
            params={"include": list(include), "offset": len(records), "limit": _PAGE},
        )
        response.raise_for_status()
        items = response.json()["items"]
        records.extend(items)
        if len(items) < _PAGE:
            return records


def responses_json(
    client: rg.Argilla, task: Task, name: str, workspace: str | None
) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """For pulling corrections: (every record of dataset `name` with its responses and
    suggestions, question id -> name, user id -> username). Raises AnnotationError when the
    dataset is missing, was made for another kind of task, or the user may not read others' answers."""
    return _responses(client, name, workspace, [task.kind.annotation_question(task).name],
                      "push predictions or errors first", f"it was not made for a {task.kind} task")


def _usernames(client: rg.Argilla) -> dict[str, str]:
    try:
        return {str(user.id): user.username for user in client.users}
    except ArgillaError:  # not allowed to list users: ids stand in for names
        return {}


# Answering as an annotator does in the web UI (for `workbench.testing.annotator`).
def pending_records(client: rg.Argilla, dataset_id: str) -> list[dict]:
    """The records in the queue of `client`'s user (pending for them), as the UI asks for them."""
    body = {"query": {}, "filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                              "values": ["pending"]}]}}
    records: list[dict] = []
    while True:
        response = client.http_client.post(f"/api/v1/me/datasets/{dataset_id}/records/search",
                                           params={"offset": len(records), "limit": 100}, json=body)
        response.raise_for_status()
        items = [item["record"] for item in response.json()["items"]]
        records.extend(items)
        if len(items) < 100:
            return records


def submit_response(client: rg.Argilla, record_id: str, values: dict[str, Any], status: str = "submitted") -> bool:
    """Answer one record as `client`'s user, with `values` (question name -> value as Argilla
    stores it). Returns False when that user had already answered it."""
    body = {"status": status, "values": {name: {"value": value} for name, value in values.items()}}
    response = client.http_client.post(f"/api/v1/records/{record_id}/responses", json=body)
    if response.status_code == 409:
        return False
    if response.status_code == 422:
        raise AnnotationError(f"Argilla refused the response {body} for record {record_id}: {response.text}")
    response.raise_for_status()
    return True
