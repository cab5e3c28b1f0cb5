"""A run's requests answered over a Ray cluster: Ray Data's HTTP request processor
(`ray.data.llm.HttpRequestProcessorConfig`) in front of the experiment's OpenAI-compatible
endpoint, every answer stored in the response cache under the key a direct call would use, so
that `run_experiment` then finishes the run from the cache (optional extra: ``pip install
'workbench[scale]'``, which installs ``ray[data]``).

Ray's HTTP stage is given a session of ours (its documented ``session_factory``), for three
reasons seen in Ray 2.60's stage:

- Rows pass through Arrow between Ray's operators, which rewrites nested request bodies that differ
  in shape from row to row (a key only some bodies have is added to the others as ``null``, and an
  integer beside such a null comes back a float). So each body travels as its JSON text (``payload = {"body": TEXT}``)
  and the session posts that text unchanged: the bytes the cache key was made for.
- The stage raises on a body that is not JSON and once its retries of 408, 429, 502, 503 and 504
  are used up, which fails the whole dataset and loses the answers of that block that had arrived. The session
  answers the stage with an envelope (``status``, ``text``, ``error``) instead, so a failed request
  is one reported row and every good answer is kept.
- The stage awaits its requests one by one; the session starts each when the stage creates it, so a
  batch's requests are in flight together. It also retries like the runner: 408, 409, 429, 5xx,
  broken connections and broken bodies, honouring Retry-After (`RetryPolicy`).

Ray's workers unpickle that session and the processor's row functions from this module, so they
need workbench installed (locally they share the driver's environment).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import pandas as pd

from workbench.core.data import read_table, validate_dataset
from workbench.core.errors import InputError
from workbench.experiments.config import Experiment, load_experiment
from workbench.models.base import ChatRequest, Completion
from workbench.models.openai_compatible import retry_after_seconds
from workbench.models.registry import resolve_api_key, validate_model_config
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import RetryPolicy
from workbench.scale.batch_lines import completion_from_body
from workbench.scale.batch_runs import batch_model, experiment_requests

# Retried as the direct path (`OpenAICompatibleModel.complete`) retries them, with every 5xx.
RETRYABLE_STATUS = frozenset({408, 409, 429})
# Blocks Ray makes of the requests: about one batch each (finer failures and progress), at most this many.
MAX_BLOCKS = 2_000
_INSTALL = "pip install 'workbench[scale]' (it installs ray[data])"


@dataclass(frozen=True)
class RayPrediction:
    """What `ray_predict` did. `answered`: answers stored in the response cache; `failed`: cache
    key -> why, for the requests that got no usable answer (nothing stored for them: a later call
    sends them again); `experiment`: the experiment they were for (with the rows given as
    `dataset`), to finish with ``run_experiment(result.experiment, unsent=result.failed)``."""

    answered: int
    failed: dict[str, str]
    experiment: Experiment = field(repr=False)

    @property
    def sent(self) -> int:
        """Requests tried (answered or failed)."""
        return self.answered + len(self.failed)


def ray_predict(
    config: str | Path | Experiment,
    dataset: pd.DataFrame | str | Path | Any | None = None,
    *,
    concurrency: int = 2,
    batch_size: int | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
) -> RayPrediction:
    """Answer the requests a run of `config` (an experiment config path, or an `Experiment`)
    would send, over Ray, and store every answer in the experiment's response cache
    (``<run_dir>/cache.sqlite``). Returns a `RayPrediction`; then
    ``run_experiment(result.experiment, unsent=result.failed)`` finishes the run from the cache
    (it sends nothing that was answered here), and scoring, reports and every later stage are as
    for a direct run.

    `dataset` replaces the experiment's rows, all of them (the config's ``limit`` samples only its
    own dataset): a DataFrame with ``example_id`` and ``text`` (and the gold columns for scoring), a
    file `read_table` reads, or a ``ray.data.Dataset`` of such rows. The rows come to the driver in
    every case: the prompts are rendered there, the answers are written to the driver's cache, and
    the run that follows reads the rows there. That is light next to the requests: a million short
    texts are a few hundred MB, and what takes hours, the HTTP round trips, is what Ray spreads. For
    many millions, call it per part; the answers add up in the cache.

    The requests go to the experiment's endpoint (``base_url + "/chat/completions"``; the model must
    be ``kind: openai_compatible``) with ``Authorization: Bearer <key>`` only when the model config
    names a key (Ray holds it in memory in the workers' constructor arguments; it is never logged or
    written). `concurrency` is the most Ray workers that send (Ray's pool grows from 1 to it as the
    cluster has CPUs); each takes `batch_size` requests at a time and has them all in flight, so up
    to about ``concurrency * batch_size`` are in flight at once. By default `batch_size` shares the
    direct run's in-flight count (the config's ``concurrency:``, else the model's
    ``max_concurrency``) among the workers. `retry` (default `RetryPolicy()`)
    retries 408, 409, 429, 5xx, dropped connections and broken bodies per request, honouring
    Retry-After. A request that still fails, or is refused (another 4xx), is reported in `failed`
    and not stored. Nothing the cache holds is sent again, so a second call sends only what failed.

    Uses the Ray cluster ``ray.init()`` connected to, or starts a local one (Ray Data's default).
    `progress` shows Ray Data's progress bars. Raises InputError when Ray is not installed or the
    model is not an OpenAI-compatible endpoint.
    """
    if concurrency < 1 or (batch_size is not None and batch_size < 1):
        raise InputError(f"concurrency and batch_size must be at least 1, got {concurrency} and {batch_size}")
    experiment = _experiment(config, dataset)
    model = _endpoint_model(experiment)
    pending = experiment_requests(experiment, model)
    if not pending:
        return RayPrediction(0, {}, experiment)
    try:
        import ray.data
        from ray.data import llm
    except ImportError as exc:
        raise InputError(f"ray_predict needs Ray Data: {_INSTALL}") from exc
    in_flight = min(experiment.concurrency or model.max_concurrency, model.max_concurrency)
    batch_size = batch_size or max(1, math.ceil(in_flight / concurrency))
    key = resolve_api_key(validate_model_config(experiment.model_config), os.environ)
    processor = llm.build_processor(  # older Ray named it build_llm_processor; the floor, 2.60, has this name
        llm.HttpRequestProcessorConfig(
            url=model.base_url.rstrip("/") + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"} if key else None,
            batch_size=batch_size,
            concurrency=concurrency,
            max_retries=0,  # the session retries (and never hands the stage a status it would retry)
            session_factory=SessionFactory(timeout_s=model.timeout_s, retry=retry or RetryPolicy()),
        ),
        postprocess=_answer_row,
    )
    rows = request_rows(pending, model)
    context = ray.data.DataContext.get_current()
    shown = context.enable_progress_bars
    context.enable_progress_bars = progress  # a dataset keeps the context it was made in
    try:
        requests = ray.data.from_items(rows, override_num_blocks=max(1, min(MAX_BLOCKS, len(rows) // batch_size)))
    finally:
        context.enable_progress_bars = shown
    del rows  # the blocks hold them now
    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache:
        answered, failed = write_answers(processor(requests).iter_rows(), pending, cache, model.identity)
    return RayPrediction(answered, failed, experiment)


def request_rows(pending: Mapping[str, ChatRequest], model: Any) -> list[dict[str, Any]]:
    """The rows Ray's HTTP processor takes for `pending` (cache key -> request): ``key`` and
    ``payload``, ``{"body": TEXT}`` with TEXT the JSON of ``model.request_body(request)`` (text, so
    that Arrow cannot reshape it on the way)."""
    return [{"key": key, "payload": {"body": json.dumps(model.request_body(request), ensure_ascii=False,
                                                        separators=(",", ":"))}}
            for key, request in pending.items()]


def read_answer(row: Mapping[str, Any]) -> Completion | str:
    """The `Completion` in one row of the processor's output (``status``, ``text``, ``error``,
    ``latency_s``: see `EnvelopeSession`), or why there is none."""
    problem = row.get("error") or answer_problem(int(row.get("status") or 0), str(row.get("text") or ""))
    if problem:
        return problem
    return completion_from_body(json.loads(row["text"]), float(row.get("latency_s") or 0.0))


def answer_problem(status: int, text: str) -> str:
    """Why the HTTP answer (`status`, body `text`) holds no chat completion, or "" when it does."""
    if status != 200:
        return f"HTTP {status}: {_error_message(text)}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"malformed response body: {text[:200]!r}"
    try:
        completion_from_body(body)
    except ValueError as exc:
        return str(exc)
    return ""


def write_answers(rows: Iterable[Mapping[str, Any]], pending: Mapping[str, ChatRequest], cache: ResponseCache,
                  identity: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """Store the answers among the processor's output `rows` (``key`` and `read_answer`'s columns)
    in `cache`, each under its key, committed as it arrives. Returns (how many were stored, key ->
    why for every request of `pending` without an answer: failed, or no row came back for it)."""
    answered = 0
    failed: dict[str, str] = {}
    seen: set[str] = set()
    for row in rows:
        key = row["key"]
        if key not in pending or key in seen:
            continue  # not this run's request, or a second row for it (neither comes from the processor)
        seen.add(key)
        answer = read_answer(row)
        if isinstance(answer, str):
            failed[key] = answer
            continue
        cache.put(key, identity, pending[key], answer)
        answered += 1
    for key in pending:
        if key not in seen:
            failed[key] = "no answer came back from Ray (its block failed and was dropped)"
    return answered, failed


@dataclass(frozen=True)
class SessionFactory:
    """Ray's ``HttpRequestProcessorConfig(session_factory=...)``: a new `EnvelopeSession` per batch,
    with a timeout of `timeout_s` per request and the retries of `retry`."""

    timeout_s: float
    retry: RetryPolicy

    def __call__(self) -> EnvelopeSession:
        return EnvelopeSession(self.timeout_s, self.retry)


class EnvelopeSession:
    """The part of ``aiohttp.ClientSession`` that Ray's HTTP stage uses (``async with``; ``post(url,
    headers=, data=)``, awaited, entered, then ``.status`` and ``await .json()``).

    `post` takes the stage's JSON ``{"body": TEXT}``, starts posting TEXT at once (retrying as
    `retry` says) and gives the stage a 200 whose JSON is an envelope: ``status`` (the endpoint's;
    0 when no answer came), ``text`` (its body), ``error`` ("" when it holds a completion; else why,
    after the retries), ``latency_s`` (of the last attempt) and ``attempts``.
    """

    def __init__(self, timeout_s: float, retry: RetryPolicy):
        self._timeout_s = timeout_s
        self._retry = retry
        self._session: Any = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Self:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                                              connector=aiohttp.TCPConnector(limit=0))  # the batch is the limit
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await self._session.close()

    def post(self, url: str, *, headers: Mapping[str, str], data: str) -> _Started:
        task = asyncio.ensure_future(self._answer(url, dict(headers), json.loads(data)["body"]))
        self._tasks.append(task)
        return _Started(task)

    async def _answer(self, url: str, headers: dict[str, str], body: str) -> _Envelope:
        import aiohttp

        data = body.encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            started = time.perf_counter()
            try:
                # No redirects: the key goes to `url` and nowhere else.
                async with self._session.post(url, data=data, headers=headers, allow_redirects=False) as response:
                    status, text = response.status, (await response.read()).decode("utf-8", "replace")
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                error = answer_problem(status, text)
                retryable = status == 200 or status in RETRYABLE_STATUS or status >= 500
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, text = 0, ""
                error = f"timed out after {self._timeout_s:g} s" if isinstance(exc, TimeoutError) else (
                    f"connection failed: {type(exc).__name__}: {str(exc)[:200]}")
                retryable = True
            latency = time.perf_counter() - started
            if not error or not retryable or attempt >= self._retry.max_attempts:
                break
            await asyncio.sleep(self._retry.delay(attempt, retry_after))
        if error and attempt > 1:
            error = f"{error} (after {attempt} attempts)"
        return _Envelope({"status": status, "text": text, "error": error, "latency_s": latency, "attempts": attempt})


class _Started:
    """A request `EnvelopeSession.post` started: awaiting it gives its `_Envelope`."""

    def __init__(self, task: asyncio.Task):
        self._task = task

    def __await__(self) -> Any:
        return self._task.__await__()


class _Envelope:
    """What the stage sees of a response: status 200, `json()` the envelope."""

    status = 200
    reason = "OK"

    def __init__(self, envelope: dict[str, Any]):
        self._envelope = envelope

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def json(self) -> dict[str, Any]:
        return self._envelope


def _answer_row(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's output row: the key and the envelope, without the request body."""
    return {"key": row["key"], **row["http_response"]}


def _endpoint_model(experiment: Experiment) -> Any:
    try:
        return batch_model(experiment)
    except InputError:
        kind = experiment.model_config.get("kind", "embedded")
        raise InputError(f"experiment {experiment.name} uses a {kind!r} model; ray_predict sends OpenAI chat "
                         "requests over HTTP, so it needs `model: {kind: openai_compatible, model: ..., base_url: "
                         "...}` (vLLM, llama.cpp's server, a provider)") from None


def _experiment(config: str | Path | Experiment, dataset: Any) -> Experiment:
    """The experiment `config` names, with `dataset`'s rows when one is given."""
    if isinstance(config, (str, Path)):
        experiment = load_experiment(config)
    elif isinstance(config, Experiment):
        experiment = config
    else:
        raise InputError(f"config must be an experiment config's path or an Experiment, got {type(config).__name__}")
    if dataset is None:
        return experiment
    if isinstance(dataset, (str, Path)):
        frame, described = read_table(dataset), str(dataset)
    elif isinstance(dataset, pd.DataFrame):
        frame, described = dataset, "a DataFrame given to ray_predict"
    elif type(dataset).__module__.startswith("ray.data") and hasattr(dataset, "to_pandas"):
        frame, described = dataset.to_pandas(), "a Ray Dataset given to ray_predict"
    else:
        raise InputError("dataset must be a DataFrame, a file read_table reads (.jsonl, .json, .csv, .parquet) or a "
                         f"ray.data.Dataset, got {type(dataset).__name__}")
    # Gold labels are optional: texts to label are scored later, or not at all.
    rows = validate_dataset(frame, experiment.task, source=described, labelled=False)
    return replace(experiment, dataset=rows, source={**experiment.source, "dataset": described, "limit": None})


def _error_message(text: str) -> str:
    """The message of an OpenAI-shaped error body, else the start of the body."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    return text[:300] or "(empty body)"


