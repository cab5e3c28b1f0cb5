"""Run prompt variants over a labelled dataset: cached, resumable, and tolerant of faults.

`run_variants` renders every (variant, example, repeat), serves what the cache already holds,
sends the rest to the model with bounded concurrency and retries, commits each answer to the cache
as it arrives, and parses every answer into a predictions DataFrame. A run that is interrupted
(Ctrl-C, a killed process, a dead endpoint) is resumed by running it again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.answers import parse_answer
from workbench.core.data import validate_dataset
from workbench.core.errors import InputError
from workbench.core.task import Task
from workbench.models.base import (
    ChatRequest,
    Completion,
    FatalModelError,
    GenerationOptions,
    Model,
    RetryableModelError,
)
from workbench.models.pricing import PriceTable
from workbench.prompting.budget import check_model_context
from workbench.prompting.cache import ResponseCache, cache_key
from workbench.prompting.fewshot import ExampleSelector
from workbench.prompting.templates import answer_schema, render_messages
from workbench.prompting.variants import PromptVariant, parse_variant

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = [
    "variant", "example_id", "repeat", "raw_response", "prediction", "parse_error", "request_error",
    "hallucinations", "reasoning", "finish_reason", "latency_s", "tokens_in", "tokens_out", "cost", "cached",
    "samples", "confidence",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried: exponential backoff with jitter, honouring Retry-After."""

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 1)."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_retry_after_s) + random.uniform(0, 0.1)
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Job:
    variant: PromptVariant
    example_id: str
    repeat: int
    sample: int
    text: str
    key: str
    request: ChatRequest


def build_requests(
    task: Task,
    dataset: pd.DataFrame,
    variants: Sequence[str | dict | PromptVariant],
    *,
    examples: pd.DataFrame | None = None,
    template_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Render every (variant, example) request without calling a model, for previews and checks.

    Returns columns ``variant``, ``example_id``, ``messages`` (list of chat messages) and
    ``schema`` (the answer's JSON schema).
    """
    dataset = validate_dataset(dataset, task, labelled=False)
    rows = [
        {"variant": variant.name, "example_id": example_id, "messages": messages, "schema": schema}
        for variant, example_id, _text, messages, schema in _render_all(
            task, dataset, _parse_variants(variants), examples, template_dir
        )
    ]
    return pd.DataFrame(rows, columns=["variant", "example_id", "messages", "schema"])


def pending_requests(
    task: Task,
    dataset: pd.DataFrame,
    variants: Sequence[str | dict | PromptVariant],
    model: Model,
    *,
    examples: pd.DataFrame | None = None,
    repeats: int = 1,
    options: GenerationOptions | None = None,
    cache: ResponseCache | str | Path | None = None,
    template_dir: str | Path | None = None,
) -> dict[str, ChatRequest]:
    """The requests `run_variants` with the same arguments would send: cache key -> `ChatRequest`,
    in the run's order, each key once, leaving out what `cache` holds already. A batch engine
    answers these (`workbench.scale`), storing each answer under its key; the run then finishes
    from the cache."""
    options = options or GenerationOptions()
    dataset = validate_dataset(dataset, task, labelled=False)
    jobs = _plan_jobs(task, dataset, variants, model.identity, examples=examples, repeats=repeats, options=options,
                      template_dir=template_dir)
    planned = {job.key: job.request for job in jobs}
    if cache is None:
        return planned
    store = ResponseCache(cache) if isinstance(cache, (str, Path)) else cache
    try:
        found = store.get_many(planned)
    finally:
        if store is not cache:
            store.close()
    return {key: request for key, request in planned.items() if key not in found}


def _plan_jobs(task: Task, dataset: pd.DataFrame, variants: Sequence[str | dict | PromptVariant],
               identity: dict[str, Any], *, examples: pd.DataFrame | None, repeats: int, options: GenerationOptions,
               template_dir: str | Path | None) -> list[_Job]:
    """Every (variant, example, repeat, sample) of a run, rendered, with its request and cache key."""
    sampled = options.temperature > 0
    jobs: list[_Job] = []
    for variant, example_id, text, messages, schema in _render_all(
        task, dataset, _parse_variants(variants), examples, template_dir
    ):
        for repeat in range(repeats):
            for sample in range(variant.samples):
                if variant.samples > 1:
                    # Self-consistency: every sample of every repeat is its own draw, cached on its own.
                    index = repeat * variant.samples + sample
                    temperature = options.temperature if sampled else variant.sample_temperature
                    request_options = replace(options, temperature=temperature, seed=(options.seed or 0) + index)
                else:
                    index = repeat if sampled else 0
                    request_options = replace(options, seed=(options.seed or 0) + repeat) if sampled else options
                request = ChatRequest(messages=tuple(messages), options=request_options, schema=schema)
                key = cache_key(identity, request, sample=index)
                jobs.append(_Job(variant, example_id, repeat, sample, text, key, request))
    return jobs


def run_variants(
    task: Task,
    dataset: pd.DataFrame,
    variants: Sequence[str | dict | PromptVariant],
    model: Model,
    *,
    examples: pd.DataFrame | None = None,
    repeats: int = 1,
    options: GenerationOptions | None = None,
    cache: ResponseCache | str | Path | None = None,
    concurrency: int | None = None,
    prices: PriceTable | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
    template_dir: str | Path | None = None,
    run_id: str | None = None,
    run_description: dict[str, Any] | None = None,
    unsent: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Run each prompt variant over `dataset` with `model`, `repeats` times.

    `examples` is the labelled pool few-shot examples are drawn from (usually the train split).
    With ``options.temperature > 0`` every repeat is a separate sample (its own seed and cache
    key); at temperature 0 repeats share one answer. `cache` is a `ResponseCache` or a path to one;
    without it nothing is cached and an interrupted run starts over. With a cache and a `run_id`,
    the cache also logs which answer this run used for every row (`ResponseCache.run_items`),
    with `run_description` (no credentials: the model's identity, variants, options).

    Returns one row per (variant, example, repeat) with columns:
    ``variant``, ``example_id``, ``repeat`` (0-based), ``raw_response`` (answer text or None),
    ``prediction`` (label, or list of ``{start, end, label, text}`` spans for NER; None when
    unusable), ``parse_error`` (why the answer could not be read), ``request_error`` (why no
    answer came back after all retries), ``hallucinations`` (NER entities not found in the text),
    ``reasoning`` (chain-of-thought text, if any), ``finish_reason``, ``latency_s`` (of the
    original call, also for cached rows), ``tokens_in``, ``tokens_out``, ``cost`` (in the price
    table's currency; NaN when the model has no price), ``cached`` (served from the cache),
    ``samples`` (answers sampled for the row: 1, or n for a self-consistency variant ``sc<n>``)
    and ``confidence`` (for ``sc<n>``: the share of the samples that gave the voted answer, higher
    is surer; NaN otherwise). For ``sc<n>`` the row's text fields come from a sample that gave the
    voted answer, tokens and cost are summed over the samples and latency is the slowest sample's.
    ``DataFrame.attrs["run_stats"]`` counts calls sent, cache hits, retries and failures.

    `unsent` maps cache keys (`pending_requests`) to a reason: those requests are not sent, and a
    row whose answer the cache lacks gets the reason as its ``request_error`` (a batch line that
    kept failing, `workbench.scale.openai_batch`).
    """
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    options = options or GenerationOptions()
    retry = retry or RetryPolicy()
    prices = prices or PriceTable()
    dataset = validate_dataset(dataset, task, labelled=False)  # the runner labels texts; gold is for scoring
    identity = model.identity

    jobs = _plan_jobs(task, dataset, variants, identity, examples=examples, repeats=repeats, options=options,
                      template_dir=template_dir)
    check_model_context(model, ((job.variant.name, job.example_id, job.request) for job in jobs))

    owns_cache = cache is not None and not isinstance(cache, ResponseCache)
    store = ResponseCache(cache) if owns_cache else cache
    started_at = time.time()
    try:
        cached = store.get_many(job.key for job in jobs) if store is not None else {}
        unsent = dict(unsent or {})
        pending: dict[str, ChatRequest] = {}
        for job in jobs:
            if job.key not in cached and job.key not in unsent:
                pending.setdefault(job.key, job.request)
        limit = max(1, min(concurrency or model.max_concurrency, model.max_concurrency))
        answers, failures, stats = _run_sync(_send_all(model, pending, store, identity, limit, retry, progress))
        failures.update({key: why for key, why in unsent.items() if key not in cached})
        if store is not None and run_id is not None:
            store.log_run(
                run_id, {"model": identity, **(run_description or {})},
                ((_logged_variant(job), job.example_id, job.repeat, job.key, job.key in cached)
                 for job in jobs if job.key in cached or job.key in answers),
                started_at=started_at, finished_at=time.time(),
            )
    finally:
        if owns_cache and store is not None:
            store.close()

    stats.update(cache_hits=len({job.key for job in jobs if job.key in cached}), rows=len(jobs))
    price = prices.for_model(identity)
    rows = []
    for group in _row_groups(jobs):
        sample_rows = [
            _prediction_row(task, job, cached.get(job.key) or answers.get(job.key), failures.get(job.key),
                            job.key in cached, price)
            for job in group
        ]
        rows.append(sample_rows[0] if len(sample_rows) == 1 else _voted_row(task, sample_rows))
    frame = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    frame.attrs["run_stats"] = stats
    return frame


def send_requests(
    model: Model,
    requests: Sequence[ChatRequest],
    *,
    cache: ResponseCache | str | Path | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
) -> list[Completion | str]:
    """Send `requests` that are not prompt variants over a dataset (a point's name, a check) as
    the runner sends its own: cached by the same key, retried, `model.max_concurrency` at a time.
    Returns, per request in order, its `Completion`, or a string saying why it failed; a
    `FatalModelError` stops everything, as in a run."""
    store = ResponseCache(cache) if isinstance(cache, (str, Path)) else cache
    identity = model.identity
    keys = [cache_key(identity, request) for request in requests]
    found = store.get_many(keys) if store is not None else {}
    pending = {key: request for key, request in zip(keys, requests) if key not in found}
    answers, failures, _ = _run_sync(_send_all(model, pending, store, identity, max(1, model.max_concurrency),
                                               retry or RetryPolicy(), progress))
    answers.update(found)
    return [answers.get(key, failures.get(key, "no answer")) for key in keys]


def _prediction_row(
    task: Task, job: _Job, completion: Completion | None, failure: str | None, from_cache: bool, price: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": job.variant.name, "example_id": job.example_id, "repeat": job.repeat,
                           "samples": 1, "confidence": math.nan}
    if completion is None:
        row.update(
            raw_response=None, prediction=None, parse_error=None,
            request_error=failure or "not sent: the run stopped before this call",
            hallucinations=[], reasoning=None, finish_reason=None, latency_s=math.nan,
            tokens_in=0, tokens_out=0, cost=0.0, cached=False,
        )
        return row
    parsed = parse_answer(task, completion.text, job.text, truncated=completion.finish_reason == "length")
    row.update(
        raw_response=completion.text, prediction=parsed.prediction, parse_error=parsed.parse_error,
        request_error=None, hallucinations=list(parsed.hallucinations), reasoning=parsed.reasoning,
        finish_reason=completion.finish_reason, latency_s=completion.latency_s,
        tokens_in=completion.tokens_in, tokens_out=completion.tokens_out,
        cost=price.cost(completion.tokens_in, completion.tokens_out) if price else math.nan,
        cached=from_cache,
    )
    return row


def _row_groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped into prediction rows: one job each, or a self-consistency variant's samples."""
    groups: list[list[_Job]] = []
    for job in jobs:
        if job.sample == 0:
            groups.append([job])
        else:
            groups[-1].append(job)
    return groups


def _voted_row(task: Task, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One prediction row from a self-consistency variant's sample rows (see `run_variants`)."""
    prediction, share = task.kind.vote([row["prediction"] for row in samples])
    key = None if prediction is None else task.kind.answer_key(prediction)
    chosen = next((row for row in samples if row["prediction"] is not None
                   and task.kind.answer_key(row["prediction"]) == key), samples[0])
    row = dict(chosen)
    row.update(
        prediction=prediction, samples=len(samples), confidence=share,
        latency_s=max((r["latency_s"] for r in samples if not math.isnan(r["latency_s"])), default=math.nan),
        tokens_in=sum(r["tokens_in"] for r in samples), tokens_out=sum(r["tokens_out"] for r in samples),
        cost=sum(r["cost"] for r in samples), cached=all(r["cached"] for r in samples),
    )
    if prediction is None:
        row["parse_error"] = next((f"no usable answer in {len(samples)} samples: {r['parse_error']}"
                                   for r in samples if r["parse_error"]), None)
        row["request_error"] = None if row["parse_error"] else samples[0]["request_error"]
    else:
        row.update(parse_error=None, request_error=None)
    return row


def _logged_variant(job: _Job) -> str:
    """The variant name in the cache's run log; a self-consistency sample also says which sample."""
    return job.variant.name if job.variant.samples == 1 else f"{job.variant.name}#sample{job.sample}"


async def _send_all(
    model: Model,
    pending: dict[str, ChatRequest],
    store: ResponseCache | None,
    identity: dict[str, Any],
    limit: int,
    retry: RetryPolicy,
    progress: bool,
) -> tuple[dict[str, Completion], dict[str, str], dict[str, Any]]:
    answers: dict[str, Completion] = {}
    failures: dict[str, str] = {}
    stats = {"calls_sent": 0, "retries": 0, "failed": 0}
    if not pending:
        return answers, failures, stats
    queue: asyncio.Queue[tuple[str, ChatRequest]] = asyncio.Queue()
    for item in pending.items():
        queue.put_nowait(item)
    bar = _progress_bar(len(pending), progress)

    async def worker() -> None:
        while True:
            try:
                key, request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for attempt in range(1, retry.max_attempts + 1):
                stats["calls_sent"] += 1
                try:
                    completion = await model.complete(request)
                except RetryableModelError as exc:
                    if attempt == retry.max_attempts:
                        failures[key] = f"gave up after {attempt} attempts: {exc}"
                        break
                    stats["retries"] += 1
                    wait = retry.delay(attempt, exc.retry_after_s)
                    logger.info("retrying in %.2f s (attempt %d): %s", wait, attempt, exc)
                    await asyncio.sleep(wait)
                    continue
                except FatalModelError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad request must not sink the run
                    failures[key] = f"{type(exc).__name__}: {exc}"
                    break
                answers[key] = completion
                if store is not None:
                    store.put(key, identity, request, completion)
                break
            if key in failures:
                stats["failed"] += 1
            if bar is not None:
                bar.update(1)

    workers = [asyncio.create_task(worker()) for _ in range(min(limit, len(pending)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        # Connections belong to this run's event loop, which ends with the run.
        close = getattr(model, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - a failed close must not hide the run's outcome
                logger.debug("closing the model's connections failed", exc_info=True)
    return answers, failures, stats


def _run_sync(coroutine: Any) -> Any:
    """Run a coroutine to completion, also from inside Jupyter's already-running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="model calls", unit="call", mininterval=0.5)


def _parse_variants(variants: Sequence[str | dict | PromptVariant]) -> list[PromptVariant]:
    if isinstance(variants, (str, PromptVariant, dict)):
        variants = [variants]
    parsed = [parse_variant(variant) for variant in variants]
    if not parsed:
        raise InputError("give at least one prompt variant, e.g. ['zero_shot', 'definitions']")
    names = [variant.name for variant in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"variant names must be unique; repeated: {repeated}")
    return parsed


def _render_all(
    task: Task,
    dataset: pd.DataFrame,
    variants: list[PromptVariant],
    examples: pd.DataFrame | None,
    template_dir: str | Path | None,
) -> Any:
    """Yield ``(variant, example_id, text, messages, schema)`` for every variant and example."""
    selector = ExampleSelector(task, examples) if examples is not None else None
    for variant in variants:
        if variant.few_shot and selector is None:
            raise InputError(
                f"variant {variant.name!r} needs few-shot examples: pass examples=<labelled DataFrame> "
                "(usually the train split)"
            )
        schema = answer_schema(task, variant)
        for example_id, text in zip(dataset["example_id"], dataset["text"]):
            shots = selector.select(text, variant.few_shot, variant.example_selection) if selector else []
            yield variant, example_id, text, render_messages(task, variant, text, shots, template_dir), schema
