"""`workbench finetune RUN --method openai`: a hosted fine-tuning job on the run's training rows, then
the tuned model re-tested against its base on every point's test cases, as the local methods are.

The run's model config must be ``kind: openai_compatible``: its endpoint and key (the variable its
``api_key_env`` names, `workbench.models.registry.resolve_api_key`) serve the job and both models.
The model tuned is the config's ``model`` unless ``--base-model`` names another (e.g. the dated
snapshot the provider fine-tunes); the base in the comparison is that same model. What is written,
in ``<run>/finetune/openai/`` (never the key):

- ``train.jsonl``: the training rows uploaded, one line per example, exactly as ``workbench export
  --format openai`` writes them (`write_chat_jsonl`); the held-out test cases are not uploaded,
  not even as a validation file, so that they stay unseen until the re-test.
- ``job.json``: the job (``job_id``, ``status``, ``model``, ``fine_tuned_model``,
  ``trained_tokens``, ``training_file``, ``validation_file``, ``error``), the ``endpoint`` (no
  credentials), ``base_model``, ``training_sha256`` (of train.jsonl) and ``earlier_jobs``. It is
  written as soon as the job is created and at every status change, so that a command that is
  stopped (Ctrl-C, a closed laptop, ``--timeout``) continues with the same job when run again:
  never a second upload or job. ``--resume JOB_ID`` follows an explicit job; ``--new-job`` starts
  a new one (after a failed job, or when the training rows changed).
- after the job succeeded: ``before_after.csv``, ``efficiency.csv``, ``predictions.parquet`` (and
  ``versus_best.csv``, ``consistency.csv``) as `write_before_after` writes them, and the run's
  ``finetune/points_by_method.csv`` with an ``openai`` column.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.errors import InputError

METHOD = "openai"
ENDED = ("succeeded", "failed", "cancelled")
ADAPTER_KEYS = ("adapter", "adapter_style", "adapter_id")  # a served LoRA adapter: not what a hosted job tunes


def finetune_hosted(args: argparse.Namespace, run: Any, examples: pd.DataFrame) -> int:
    """Run (or continue) the hosted job for `run` (a loaded run folder) on `examples` (its
    training-data frame), then re-test; returns the exit status (0, or 2 when the job failed, was
    cancelled or is still running). Raises ValueError subclasses for what the user must fix first
    (the model config, too few or broken training rows); the CLI prints them and exits 2."""
    from workbench.finetune.checks import check_training_rows
    from workbench.models.openai_compatible import redact_url
    from workbench.models.registry import resolve_api_key, resolve_base_url, validate_model_config
    from workbench.trainingdata.examples import one_row_per_example
    from workbench.trainingdata.openai_jsonl import write_chat_jsonl

    config = hosted_model_config(run)
    validated = validate_model_config(config, source=f"run {run.name}'s model")
    base_url = resolve_base_url(validated, os.environ)
    api_key = resolve_api_key(validated, os.environ)  # before anything else: a missing key stops here
    endpoint = redact_url(base_url)
    base_model = args.base_model or validated.model
    if args.resume and args.new_job:
        raise InputError("--resume follows an existing job and --new-job starts one: pass one of them")
    if args.steps is not None:
        raise InputError("--steps is for local training; a hosted job trains for --epochs (default 3)")
    check_training_rows(one_row_per_example(examples[examples["split"] == "train"]), run.task)
    folder = run.path / "finetune" / METHOD
    job_file = folder / "job.json"
    with tempfile.TemporaryDirectory() as scratch:
        # Written aside first: its hash tells whether a stored job was trained on these same rows.
        export = write_chat_jsonl(examples, Path(scratch) / "train.jsonl")
        digest = hashlib.sha256(export.path.read_bytes()).hexdigest()
        stored = read_job_record(job_file)
        record = _record_to_follow(args, stored, endpoint=endpoint, digest=digest, job_file=job_file)
        if record is None:
            record = _start(args, run, export, digest, stored, base_model=base_model, base_url=base_url,
                            api_key=api_key, endpoint=endpoint, folder=folder)
    status = _follow(args, record, job_file, base_url=base_url, api_key=api_key)
    if status:
        return status
    if args.no_compare:
        return 0
    return compare_hosted(args, run, examples, config, base_model=str(record.get("base_model") or base_model),
                          fine_tuned_model=str(record["fine_tuned_model"]), folder=folder)


def hosted_model_config(run: Any) -> dict[str, Any]:
    """The run's model config, which must be ``kind: openai_compatible`` (ValueError naming the fix)."""
    config = dict(run.config.get("model") or {"kind": "embedded"})
    kind = config.get("kind", "embedded")
    if kind != "openai_compatible":
        raise InputError(
            f"run {run.name} used a {kind!r} model; --method openai runs a hosted fine-tuning job, which needs the "
            "run's model to be an endpoint with a fine-tuning API: run the experiment with `model: {kind: "
            "openai_compatible, model: <a model the provider fine-tunes, e.g. gpt-4o-mini>, api_key_env: "
            "<VARIABLE>}` (base_url for a provider other than OpenAI), or tune this model locally with "
            "--method lora")
    if config.get("adapter"):
        raise InputError(f"run {run.name}'s model is the adapter {config['adapter']!r} on a served base: a hosted "
                         "job tunes a provider's model; run the experiment on that model without adapter")
    return config


def read_job_record(path: Path) -> dict[str, Any] | None:
    """The job record in `path` (``job.json``), or None when there is none."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not JSON ({exc}): pass --resume JOB_ID to follow the job it held, or "
                         "--new-job to start one") from None
    if not isinstance(record, dict) or not record.get("job_id"):
        raise InputError(f"{path} holds no job_id: pass --resume JOB_ID, or --new-job to start a job")
    return record


def write_job_record(path: Path, record: dict[str, Any]) -> None:
    """`record` to `path` as JSON, replaced in one step (a stopped command leaves the old or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def _record_to_follow(args: argparse.Namespace, stored: dict[str, Any] | None, *, endpoint: str, digest: str,
                      job_file: Path) -> dict[str, Any] | None:
    """The job record to follow: `--resume`'s job, the stored one, or None to start a new job."""
    if args.resume:
        if stored is not None and stored["job_id"] == args.resume:
            return stored
        earlier = _earlier(stored)
        return {"job_id": args.resume, "status": None, "endpoint": endpoint, "base_model": args.base_model,
                "training_sha256": None, "earlier_jobs": earlier, "_unconfirmed": True}
    if stored is None or args.new_job:
        return None
    if stored.get("endpoint") not in (None, endpoint):
        raise InputError(f"{job_file} holds job {stored['job_id']} of {stored['endpoint']}, but the run's model is at "
                         f"{endpoint}: point the model config back there, or pass --new-job to start a job here")
    if stored.get("training_sha256") not in (None, digest):
        raise InputError(f"job {stored['job_id']} in {job_file} was trained on other training rows than "
                         "training_data/ holds now (built again since?): pass --new-job to train on these rows, or "
                         f"--resume {stored['job_id']} to re-test that job anyway")
    return stored


def _earlier(stored: dict[str, Any] | None) -> list[dict[str, Any]]:
    if stored is None:
        return []
    summary = {key: stored.get(key) for key in ("job_id", "status", "fine_tuned_model", "error")}
    return [*stored.get("earlier_jobs", []), summary]


def _start(args: argparse.Namespace, run: Any, export: Any, digest: str, stored: dict[str, Any] | None, *,
           base_model: str, base_url: str, api_key: str | None, endpoint: str, folder: Path) -> dict[str, Any]:
    from workbench.models.openai_finetuning import start_fine_tune

    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "train.jsonl"
    shutil.copyfile(export.path, train)
    print(f"uploading {train}: {export.summary().split(': ', 1)[1]}")
    job = start_fine_tune(train, model=base_model, base_url=base_url, api_key=api_key, suffix=_suffix(run.name),
                          epochs=args.epochs)
    record = {"job_id": job.job_id, "endpoint": endpoint, "base_model": base_model, "training_sha256": digest,
              "training_rows": export.examples, "epochs": args.epochs, "earlier_jobs": _earlier(stored)}
    _update(record, job)
    write_job_record(folder / "job.json", record)  # at once: a second call continues this job
    print(f"created fine-tuning job {job.job_id} on {base_model} at {endpoint}; recorded in {folder / 'job.json'}")
    return record


def _suffix(name: str) -> str:
    """The run's name as a fine-tuned model's suffix (letters, digits, - and _; OpenAI takes up to 64)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "workbench"


def _update(record: dict[str, Any], job: Any) -> None:
    record.pop("_unconfirmed", None)
    record.update(job_id=job.job_id, status=job.status, model=job.model, fine_tuned_model=job.fine_tuned_model,
                  trained_tokens=job.trained_tokens, training_file=job.training_file,
                  validation_file=job.validation_file, error=job.error,
                  updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if not record.get("base_model"):
        record["base_model"] = job.model


def _follow(args: argparse.Namespace, record: dict[str, Any], job_file: Path, *, base_url: str,
            api_key: str | None) -> int:
    """Poll the job to its end (unless job.json says it ended); 0 when it succeeded, else 2 with the reason."""
    from workbench.models.openai_finetuning import HostedFineTuneError, wait_for_fine_tune

    job_id = record["job_id"]
    if record.get("status") == "succeeded" and record.get("fine_tuned_model"):
        print(f"fine-tuning job {job_id} succeeded earlier ({job_file}): {record['fine_tuned_model']}")
        return 0
    if record.get("status") in ENDED:
        return _ended_badly(record, job_file)
    status = f" ({record['status']})" if record.get("status") else ""
    print(f"following fine-tuning job {job_id}{status} every {args.poll:g} s; Ctrl-C stops waiting, the job keeps "
          "running and the same command continues it")
    started = time.monotonic()
    seen: list[str | None] = [record.get("status")]

    def on_status(job: Any) -> None:
        if job.status == seen[-1] and not record.get("_unconfirmed"):
            return
        seen.append(job.status)
        _update(record, job)
        write_job_record(job_file, record)
        done = ""
        if job.status == "succeeded":
            done = f": {job.fine_tuned_model}, {job.trained_tokens or 0:,} tokens trained"
        print(f"fine-tuning job {job_id}: {job.status}{done} ({time.monotonic() - started:.0f} s)", flush=True)

    try:
        wait_for_fine_tune(job_id, base_url=base_url, api_key=api_key, poll_s=args.poll, timeout_s=args.timeout,
                           on_status=on_status)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; fine-tuning job {job_id} keeps running at the provider: run the same command "
              "again to continue with it", file=sys.stderr)
        return 130
    except HostedFineTuneError as exc:
        if record.get("status") in ENDED:
            return _ended_badly(record, job_file)
        if record.get("_unconfirmed"):  # --resume with a job the endpoint does not know: nothing recorded
            print(f"error: {exc}; check the job id given to --resume", file=sys.stderr)
            return 2
        if time.monotonic() - started < args.timeout:  # the endpoint refused or stopped answering
            print(f"error: {exc}; {job_file} keeps job {job_id}: run the same command again to continue with it",
                  file=sys.stderr)
            return 2
        print(f"error: fine-tuning job {job_id} is still {record.get('status')} after --timeout {args.timeout:g} s; "
              f"it keeps running at the provider: run the same command again to continue with it ({job_file} has "
              "it)", file=sys.stderr)
        return 2
    return 0


def _ended_badly(record: dict[str, Any], job_file: Path) -> int:
    reason = str(record.get("error") or "no reason given").rstrip(". ")
    print(f"error: fine-tuning job {record['job_id']} {record['status']}: {reason}. {job_file} keeps it. When the "
          "reason is in the training rows, build them again (`workbench data --overwrite`); then pass --new-job to "
          "start a new job", file=sys.stderr)
    return 2


def compare_hosted(args: argparse.Namespace, run: Any, examples: pd.DataFrame, config: dict[str, Any], *,
                   base_model: str, fine_tuned_model: str, folder: Path) -> int:
    """Base (`base_model`) against the tuned model on every point's test cases, both through the
    run's endpoint with the run's settings; writes the tables to `folder` and the run's
    ``finetune/points_by_method.csv``."""
    from workbench.models.registry import model_from_config

    plain = {key: value for key, value in config.items() if key not in ADAPTER_KEYS}
    base = model_from_config({**plain, "model": base_model})
    tuned = model_from_config({**plain, "model": fine_tuned_model})
    from workbench.cli.main import retest_tuned

    print(f"re-testing {fine_tuned_model} against {base_model} on every point's test cases")
    return retest_tuned(run, examples, base, tuned, folder, repeats=args.repeats, progress=False)
