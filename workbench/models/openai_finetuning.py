"""Hosted fine-tuning through the `openai` SDK's files and fine-tuning jobs API.

For OpenAI and providers that speak the same API: upload a chat JSONL file, create a job, poll it
until it ends, and get the fine-tuned model's name, which `OpenAICompatibleModel` then calls
through the same endpoint. The API key is passed in (the caller reads it from the environment,
`workbench.models.registry.resolve_api_key`) and goes only to `base_url`; nothing here logs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError

TERMINAL = ("succeeded", "failed", "cancelled")


class HostedFineTuneError(WorkbenchError, RuntimeError):
    """A hosted fine-tuning job failed, was cancelled, or did not end in time, or the endpoint
    refused a request (a wrong key, an unknown job id, no fine-tuning API); the message says what
    the provider said and the job's id."""


@dataclass(frozen=True)
class HostedJob:
    """A fine-tuning job as the provider reports it."""

    job_id: str
    status: str
    model: str
    fine_tuned_model: str | None
    training_file: str
    validation_file: str | None
    trained_tokens: int | None
    error: str | None


def _client(base_url: str | None, api_key: str | None, timeout_s: float) -> Any:
    import openai

    # The SDK would read OPENAI_API_KEY itself when given no key; the workbench never lets it.
    return openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=3)


def _headers(api_key: str | None) -> dict[str, Any]:
    """With no key, no Authorization header at all (as `OpenAICompatibleModel` sends none)."""
    import openai

    return {} if api_key else {"Authorization": openai.Omit()}


@contextmanager
def _provider_errors(base_url: str | None, doing: str) -> Iterator[None]:
    """The SDK's errors as HostedFineTuneError naming what was being done, at which endpoint (its
    address without credentials) and what it answered."""
    import openai

    from workbench.models.openai_compatible import OPENAI_BASE_URL, redact_url

    try:
        yield
    except openai.APIStatusError as exc:
        raise HostedFineTuneError(f"{redact_url(base_url or OPENAI_BASE_URL)} refused {doing} ({exc.status_code}): "
                                  f"{_message(exc)}") from exc
    except openai.APIError as exc:  # connection failures and timeouts, after the SDK's retries
        raise HostedFineTuneError(f"{doing} at {redact_url(base_url or OPENAI_BASE_URL)} failed: {exc}") from exc


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc)


def _job(value: Any) -> HostedJob:
    error = getattr(value, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return HostedJob(job_id=value.id, status=value.status, model=value.model, fine_tuned_model=value.fine_tuned_model,
                     training_file=value.training_file, validation_file=getattr(value, "validation_file", None),
                     trained_tokens=getattr(value, "trained_tokens", None), error=message)


def start_fine_tune(training_file: str | Path, *, model: str, base_url: str | None, api_key: str | None,
                    validation_file: str | Path | None = None, suffix: str | None = None,
                    epochs: int | None = None, seed: int | None = None, timeout_s: float = 120) -> HostedJob:
    """Upload `training_file` (and `validation_file`) with purpose "fine-tune" and create a job
    fine-tuning `model` on it; returns the job as created."""
    client = _client(base_url, api_key, timeout_s)
    with open(training_file, "rb") as handle, _provider_errors(base_url, f"the upload of {Path(training_file).name}"):
        training = client.files.create(file=handle, purpose="fine-tune", extra_headers=_headers(api_key))
    validation = None
    if validation_file is not None:
        with open(validation_file, "rb") as handle, \
                _provider_errors(base_url, f"the upload of {Path(validation_file).name}"):
            validation = client.files.create(file=handle, purpose="fine-tune", extra_headers=_headers(api_key))
    options: dict[str, Any] = {}
    if epochs is not None:
        options["hyperparameters"] = {"n_epochs": epochs}
    if seed is not None:
        options["seed"] = seed
    if suffix:
        options["suffix"] = suffix
    if validation is not None:
        options["validation_file"] = validation.id
    with _provider_errors(base_url, f"a fine-tuning job for {model!r}"):
        job = client.fine_tuning.jobs.create(model=model, training_file=training.id, extra_headers=_headers(api_key),
                                             **options)
    return _job(job)


def wait_for_fine_tune(job_id: str, *, base_url: str | None, api_key: str | None, poll_s: float = 15.0,
                       timeout_s: float = 6 * 3600, on_status: Callable[[HostedJob], None] | None = None) -> HostedJob:
    """Poll job `job_id` every `poll_s` seconds until it ends; returns it when it succeeded.
    Raises HostedFineTuneError when it failed or was cancelled (with the provider's message), or
    is still running after `timeout_s` (it keeps running: wait for it again with its id)."""
    client = _client(base_url, api_key, 60)
    deadline = time.monotonic() + timeout_s
    while True:
        with _provider_errors(base_url, f"a look at fine-tuning job {job_id}"):
            job = _job(client.fine_tuning.jobs.retrieve(job_id, extra_headers=_headers(api_key)))
        if on_status is not None:
            on_status(job)
        if job.status == "succeeded":
            return job
        if job.status in TERMINAL:
            raise HostedFineTuneError(f"fine-tuning job {job_id} {job.status}: {job.error or 'no reason given'}; fix "
                                      "the training file or settings and start a new job")
        if time.monotonic() >= deadline:
            raise HostedFineTuneError(f"fine-tuning job {job_id} is still {job.status} after {timeout_s:.0f} s; it "
                                      "keeps running: call wait_for_fine_tune with its id later")
        time.sleep(poll_s)
