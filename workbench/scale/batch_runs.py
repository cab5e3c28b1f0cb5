"""An experiment run through a batch engine instead of one request at a time.

Three ways, all through the response cache, so that the run that follows is an ordinary run
(`run_experiment`) that finds its answers there and every later stage is unchanged:

- `batch_run`: OpenAI's Batch API at the config's endpoint (``workbench run CONFIG --batch openai``;
  `openai_batch.run_batches`), then the run;
- `export_batch` and `import_batch`: the same request lines to a file, for ``vllm run-batch -i
  IN.jsonl -o OUT.jsonl`` or any engine that reads them, and its result lines back into the cache
  (``workbench batch export`` / ``import``); then ``workbench run CONFIG`` sends nothing.

The requests are the ones a direct run would send for the config (`pending_requests`): the same
rendering, options and cache keys, so an answer stored here is the one a direct call would have
stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.experiments.config import Experiment
from workbench.experiments.runs import Run, run_experiment
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import pending_requests
from workbench.scale.batch_lines import (
    MAX_BYTES,
    MAX_LINES,
    BatchResultError,
    ResultFile,
    answers_of,
    store_answers,
    write_request_files,
)
from workbench.scale.openai_batch import BatchOutcome, run_batches

RETRIES = ("direct", "batch")


def batch_model(experiment: Experiment) -> Any:
    """The experiment's model when a batch engine can answer for it: an `OpenAICompatibleModel`
    (its request body is what the lines carry). Raises InputError naming the kind otherwise."""
    from workbench.models.openai_compatible import OpenAICompatibleModel

    model = experiment.build_model()
    if not isinstance(model, OpenAICompatibleModel):
        kind = experiment.model_config.get("kind", "embedded")
        raise InputError(f"experiment {experiment.name} uses model kind {kind!r}; batch files carry OpenAI chat "
                         "requests, so --batch and `workbench batch` need `model: {kind: openai_compatible, model: "
                         "..., base_url: ...}` (OpenAI, vLLM, or any server with the Batch API or run-batch)")
    return model


def experiment_requests(experiment: Experiment, model: Any) -> dict[str, Any]:
    """Cache key -> request for every request of `experiment` the cache lacks (`pending_requests`)."""
    return pending_requests(experiment.task, experiment.dataset, experiment.variants, model,
                            examples=experiment.examples, repeats=experiment.repeats, options=experiment.options,
                            cache=experiment.run_dir / "cache.sqlite", template_dir=experiment.template_dir)


def batch_folder(experiment: Experiment) -> Path:
    """Where the experiment's batches are kept: ``<runs_dir>/<name>/batches/``."""
    return experiment.run_dir / "batches"


def batch_run(experiment: Experiment, *, retry: str = "direct", client: Any = None, poll_s: float = 15.0,
              timeout_s: float | None = None, progress: bool = True, max_lines: int = MAX_LINES,
              max_bytes: int = MAX_BYTES) -> tuple[Run, BatchOutcome]:
    """`experiment` answered through OpenAI's Batch API (`run_batches`, kept in `batch_folder`),
    then run from the cache. `retry` decides what happens to the lines that failed: "direct"
    sends them one at a time in the run (with its retries); "batch" submits them once more in a
    new batch, and those that fail again are recorded as their rows' ``request_error`` unsent.
    Returns (the `Run`, the `BatchOutcome`)."""
    if retry not in RETRIES:
        raise InputError(f"--batch-retry must be one of {RETRIES}, got {retry!r}")
    model = batch_model(experiment)
    pending = experiment_requests(experiment, model)
    settings = {"client": client, "poll_s": poll_s, "timeout_s": timeout_s, "progress": progress,
                "max_lines": max_lines, "max_bytes": max_bytes}
    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache:
        outcome = run_batches(model, pending, cache, batch_folder(experiment), **settings)
        if retry == "batch" and outcome.failed:
            again = run_batches(model, {key: pending[key] for key in outcome.failed}, cache,
                                batch_folder(experiment), retry_failed=True, **settings)
            outcome = replace(outcome, submitted=outcome.submitted + again.submitted,
                              answered=outcome.answered + again.answered, failed=again.failed)
    unsent = outcome.failed if retry == "batch" else {}
    return run_experiment(experiment, model=model, progress=progress, unsent=unsent), outcome


def export_batch(experiment: Experiment, out: str | Path, *, max_lines: int = MAX_LINES,
                 max_bytes: int = MAX_BYTES) -> tuple[int, list[Path]]:
    """Write the requests of `experiment` that its cache lacks as batch request lines to `out`
    (split beside it at `max_lines` lines or `max_bytes` bytes: `write_request_files`). Returns
    (how many requests, the files)."""
    model = batch_model(experiment)
    pending = experiment_requests(experiment, model)
    files = write_request_files(((key, model.request_body(request)) for key, request in pending.items()), out,
                                max_lines=max_lines, max_bytes=max_bytes)
    return len(pending), files


@dataclass
class ImportOutcome:
    """What `import_batch` stored: `answered` answers, `failed` (custom id -> why) for the lines
    that came back failed, and `remaining` requests of the run still without an answer."""

    answered: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    remaining: int = 0


def import_batch(experiment: Experiment, results: Sequence[str | Path]) -> ImportOutcome:
    """Store the answers in the result files `results` (from ``vllm run-batch`` or the Batch API)
    in the experiment's cache. Every line is checked (`ResultFile`): a line for a request the run
    does not make, a second answer for a request, or a line that is not a result line is refused,
    naming the file and line; every usable line is stored first, then BatchResultError lists the
    refused ones. Returns the `ImportOutcome`."""
    model = batch_model(experiment)
    planned = pending_requests(experiment.task, experiment.dataset, experiment.variants, model,
                               examples=experiment.examples, repeats=experiment.repeats, options=experiment.options,
                               template_dir=experiment.template_dir)
    outcome = ImportOutcome()
    problems: list[str] = []
    identity = model.identity
    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache:
        seen = set(cache.get_many(planned))  # answered already: a second answer is refused as a duplicate
        before = len(seen)
        for path in results:
            if not Path(path).is_file():
                raise InputError(f"{path} is not a file: give the result file `vllm run-batch -o` wrote")
            lines = ResultFile(Path(path), planned, seen=seen)
            outcome.answered += store_answers(cache, identity, answers_of(lines, planned, outcome.failed))
            problems += [f"{path} {problem}" for problem in lines.problems]
    outcome.remaining = len(planned) - before - outcome.answered
    if problems:
        raise BatchResultError(f"{len(problems)} result line(s) refused, the other {outcome.answered} answer(s) "
                               "were stored: " + "; ".join(problems[:20])
                               + (f"; and {len(problems) - 20} more" if len(problems) > 20 else ""))
    return outcome
