"""Runs as artifacts: run an experiment, write its run folder, and read it back.

A run folder (``runs/<experiment>/<run id>/``, see `workbench.experiments.run_history`) holds everything the later stages need, so they read it
instead of running the model again:

- ``predictions.parquet``: the predictions DataFrame of `workbench.prompting.runner.run_variants`;
- ``dataset.parquet``: the gold rows the run evaluated (after sampling);
- ``examples.parquet``: the few-shot pool, when the experiment has one;
- ``task.json``: the task specification;
- ``config.yaml``: the experiment config (credentials in URLs redacted);
- ``stats.json``: calls sent, cache hits, retries, failures;
- ``provenance.json``: run id, start and end time, model identity, prompt template files with
  their SHA-256, and the versions of workbench, Python and the libraries that shape results;
- ``summary.csv``: one row per variant (`summarize_run`), for reading without Python;
- ``cache.sqlite``: the response cache, whose run log says which answer each run used. It lives in
  the experiment's ``run_dir``: beside these files for a folder `write_run` wrote there, one level
  up (shared by all of an experiment's runs) under run history.

Cells holding lists or dicts (NER spans, multi-label lists, hallucinations, tags) are stored as
JSON text in Parquet and decoded on reading, so `load_run` gives back equal DataFrames.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from workbench.core.errors import MissingInputError
from workbench.core.frames import read_frame, write_frame  # noqa: F401  (where callers found them first)
from workbench.core.task import Task, task_from_dict, task_to_dict
from workbench.evaluation.efficiency import summarize_run
from workbench.experiments.config import Experiment
from workbench.models.base import Model
from workbench.models.openai_compatible import redact_url
from workbench.prompting.runner import run_variants
from workbench.prompting.templates import find_template
from workbench.prompting.variants import parse_variant

_LIBRARIES = ("pandas", "numpy", "scikit-learn", "scipy", "openai", "llama_cpp_python")


@dataclass(frozen=True)
class Run:
    """One run of an experiment: what was asked, what came back, and how it was made.

    `dataset` is the gold rows evaluated; `predictions` has the columns of `run_variants`;
    `stats` counts ``calls_sent``, ``cache_hits``, ``retries``, ``failed``, ``rows``;
    `provenance` holds ``run_id``, ``started_at``/``finished_at`` (ISO 8601, UTC), ``model``
    (identity, no credentials), ``templates`` (per variant: file, folder and sha256),
    ``template_dir`` (the config's own template folder, or None) and ``versions``.
    `path` is the run folder once written or loaded.
    """

    name: str
    task: Task
    dataset: pd.DataFrame
    predictions: pd.DataFrame
    stats: dict[str, Any]
    provenance: dict[str, Any]
    config: dict[str, Any]
    examples: pd.DataFrame | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def run_id(self) -> str:
        return str(self.provenance["run_id"])

    @property
    def template_dir(self) -> Path | None:
        """The experiment's own template folder (its config's ``templates:``), or None."""
        folder = self.provenance.get("template_dir")
        return Path(folder) if folder else None

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(self.predictions["variant"]))

    def summary(self) -> pd.DataFrame:
        """One row per variant: headline quality, cost and speed (`summarize_run`)."""
        return summarize_run(self.predictions, self.dataset, self.task)


def run_experiment(experiment: Experiment, *, progress: bool = True, model: Model | None = None,
                   unsent: Mapping[str, str] | None = None) -> Run:
    """Run an experiment with its response cache in ``<run_dir>/cache.sqlite``; returns the `Run`.

    Nothing but the cache is written; `write_run` writes the run folder. `unsent` (cache key ->
    why) names requests not to send, recorded as their rows' ``request_error`` when the cache has
    no answer for them (`run_variants`; a batch's lines that kept failing).
    """
    model = model or experiment.build_model()
    run_id = f"{experiment.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    config = redacted_config(experiment.source)
    started = time.time()
    experiment.run_dir.mkdir(parents=True, exist_ok=True)
    predictions = run_variants(
        experiment.task, experiment.dataset, experiment.variants, model,
        examples=experiment.examples, repeats=experiment.repeats, options=experiment.options,
        cache=experiment.run_dir / "cache.sqlite", concurrency=experiment.concurrency,
        prices=experiment.prices, progress=progress, template_dir=experiment.template_dir, run_id=run_id,
        run_description={"experiment": experiment.name, "variants": config.get("variants"),
                         "options": config.get("options"), "repeats": experiment.repeats},
        unsent=unsent,
    )
    stats = dict(predictions.attrs.get("run_stats", {}))
    predictions.attrs.clear()  # stats live on the Run, where merges cannot drop them
    provenance = {
        "run_id": run_id,
        "started_at": _iso(started),
        "finished_at": _iso(time.time()),
        "model": model.identity,
        "templates": _templates(experiment),
        # The config's own template folder, for the later stages that render prompts again.
        "template_dir": str(Path(experiment.template_dir).resolve()) if experiment.template_dir else None,
        "versions": _versions(),
    }
    return Run(name=experiment.name, task=experiment.task, dataset=experiment.dataset, predictions=predictions,
               stats=stats, provenance=provenance, config=config, examples=experiment.examples)


def write_run(run: Run, folder: str | Path) -> Run:
    """Write `run` to `folder` (see the module docstring); returns the run with its `path` set."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_frame(run.predictions, folder / "predictions.parquet")
    write_frame(run.dataset, folder / "dataset.parquet")
    if run.examples is not None:
        write_frame(run.examples, folder / "examples.parquet")
    else:
        (folder / "examples.parquet").unlink(missing_ok=True)
    _write_text(folder / "task.json", json.dumps(task_to_dict(run.task), indent=2, ensure_ascii=False))
    _write_text(folder / "config.yaml", yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True))
    _write_text(folder / "stats.json", json.dumps(run.stats, indent=2))
    _write_text(folder / "provenance.json", json.dumps(run.provenance, indent=2, ensure_ascii=False))
    run.summary().to_csv(folder / "summary.csv", index=False)
    return replace(run, path=folder)


_RUN_FILES = ["predictions.parquet", "dataset.parquet", "task.json", "config.yaml", "stats.json", "provenance.json"]


def is_run_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a run's files (`write_run`), not only other runs."""
    return (Path(folder) / "predictions.parquet").exists() and (Path(folder) / "provenance.json").exists()


def resolve_run_folder(path: str | Path) -> Path:
    """The run folder `path` means: the run its ``latest`` points at when it has one, else `path`
    itself (``runs/<name>`` means that experiment's newest run; see
    `workbench.experiments.run_history`). A `path` that is neither comes back unchanged."""
    folder = Path(path)
    # `latest` first: a folder that holds a run written before run history (its files directly
    # in runs/<name>/) and newer runs beside them means the newest.
    latest = folder / "latest"
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve()
    if latest.is_file():  # where there are no symbolic links: the run id as text
        return folder / latest.read_text(encoding="utf-8").strip()
    return folder


def load_run(path: str | Path) -> Run:
    """Read a run folder written by `write_run` back into the `Run` it was written from. `path`
    may also be an experiment's folder of runs (``runs/<name>``): its latest run is read."""
    folder = resolve_run_folder(path)
    needed = _RUN_FILES
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise MissingInputError(
            f"{folder} is not a complete run folder (missing {missing}); run the experiment first "
            "(`workbench run <config>`)"
        )
    task = task_from_dict(json.loads((folder / "task.json").read_text(encoding="utf-8")), source=str(folder / "task.json"))
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    examples_path = folder / "examples.parquet"
    return Run(
        name=str(config.get("name", folder.name)),
        task=task,
        dataset=read_frame(folder / "dataset.parquet"),
        predictions=read_frame(folder / "predictions.parquet"),
        stats=json.loads((folder / "stats.json").read_text(encoding="utf-8")),
        provenance=json.loads((folder / "provenance.json").read_text(encoding="utf-8")),
        config=config,
        examples=read_frame(examples_path) if examples_path.exists() else None,
        path=folder,
    )


def redacted_config(source: dict[str, Any]) -> dict[str, Any]:
    """The experiment config with credentials in the model's and the serve: block's URLs removed
    (user:password@, query)."""
    config = dict(source)
    model = dict(config.get("model") or {})
    if isinstance(model.get("base_url"), str):
        model["base_url"] = redact_url(model["base_url"])
    config["model"] = model
    if isinstance(config.get("serve"), dict) and isinstance(config["serve"].get("base_url"), str):
        config["serve"] = {**config["serve"], "base_url": redact_url(config["serve"]["base_url"])}
    return config


def _templates(experiment: Experiment) -> dict[str, dict[str, str]]:
    # The file each variant was rendered from, in the folder it was found in (the experiment's
    # templates: folder or the packaged one), so a run names exactly which prompt made it.
    found = {}
    for spec in experiment.variants:
        variant = parse_variant(spec)
        path = find_template(experiment.task, variant, experiment.template_dir)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[variant.name] = {"file": path.name, "sha256": digest, "folder": str(path.parent)}
    return found


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("workbench", *_LIBRARIES):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat()


def _write_text(path: Path, content: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)
