"""What a notebook runs: the config's experiment with only the parameters it overrides, and the run
folder's latest run when that run is the one it would make.

A notebook and ``workbench run`` on the same config are then the same run: the notebook's
parameters default to None (the config's value), so with nothing changed it asks for what
``workbench run`` ran, loads that run instead of running it again, and writes a run it did make
to the run history (`workbench.experiments.run_history`) as the new latest, which the CLI's next
stage reads.

The matching rule (`run_mismatch`): the latest run is reused when it was made

- on the same examples: the same example ids, texts and gold answers (so the same LIMIT sample),
  and the same few-shot pool;
- with the same task (labels, definitions, instructions), model, options and repeats;
- with every requested variant, under the same template file (a run with more variants matches:
  it is used whole, as ``workbench points`` would use it).

Anything else runs the experiment again; the response cache answers every call made before, so
only what is missing is sent to the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from workbench.core.task import task_to_dict
from workbench.experiments.config import Experiment, load_experiment
from workbench.experiments.run_history import write_run_to_history
from workbench.experiments.runs import Run, load_run, redacted_config, run_experiment
from workbench.models.base import Model
from workbench.prompting.templates import TEMPLATE_DIR, template_file
from workbench.prompting.variants import parse_variant


@dataclass(frozen=True)
class RunChoice:
    """The run a notebook works on. `loaded`: read from the run folder (nothing was run); else run
    (cached answers reused) and written as the latest run. `reason` says which, and why, in a
    sentence a notebook prints."""

    run: Run
    loaded: bool
    reason: str

    def __str__(self) -> str:
        return self.reason


def load_notebook_experiment(config: str | Path, *, limit: int | str | None = None,
                             variants: Sequence[str | dict[str, Any]] | None = None, repeats: int | None = None,
                             options: Mapping[str, Any] | None = None, runs_dir: str | Path | None = None,
                             run_dir: str | Path | None = None) -> Experiment:
    """`load_experiment` where every None means the config's value, options one by one:
    ``options={"temperature": 0.7, "max_tokens": None}`` changes the temperature and keeps the
    config's max_tokens (`load_experiment`'s ``options=`` replaces the whole mapping)."""
    given = {key: value for key, value in (options or {}).items() if value is not None}
    merged = None
    if given:
        raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) if Path(config).exists() else None
        merged = {**((raw.get("options") or {}) if isinstance(raw, dict) else {}), **given}
    return load_experiment(config, limit=limit, variants=list(variants) if variants is not None else None,
                           repeats=repeats, options=merged, runs_dir=str(runs_dir) if runs_dir is not None else None,
                           run_dir=run_dir)


def run_mismatch(run: Run, experiment: Experiment) -> str | None:
    """None when `run` is the run `experiment` would make (the module's matching rule); else what
    differs, in words (e.g. "it evaluated 40 examples, not these 6")."""
    if _rows(run.dataset, experiment) != _rows(experiment.dataset, experiment):
        if len(run.dataset) != len(experiment.dataset):
            return f"it evaluated {len(run.dataset)} examples, not these {len(experiment.dataset)} (LIMIT)"
        return f"it evaluated other examples, or other texts or gold answers, than these {len(experiment.dataset)}"
    if _rows(run.examples, experiment) != _rows(experiment.examples, experiment):
        return "its few-shot pool differs from the config's"
    if task_to_dict(run.task) != task_to_dict(experiment.task):
        return f"its task differs from {experiment.task.name!r} as the task file now defines it"
    wanted = redacted_config(experiment.source)
    for key in ("model", "options", "repeats"):
        if run.config.get(key) != wanted.get(key):
            return f"its {key} {run.config.get(key)!r} differs from {wanted.get(key)!r}"
    had = [parse_variant(spec) for spec in run.config.get("variants") or []]
    missing = [variant.name for variant in map(parse_variant, experiment.variants)
               if variant not in had or variant.name not in set(run.predictions["variant"])]
    if missing:
        return f"it has no answers for the variant(s) {', '.join(missing)}"
    templates = run.provenance.get("templates") or {}
    for variant in map(parse_variant, experiment.variants):
        name = template_file(experiment.task, variant)
        digest = hashlib.sha256((TEMPLATE_DIR / name).read_bytes()).hexdigest()
        if (templates.get(variant.name) or {}).get("sha256") != digest:
            return f"{variant.name}'s template {name} changed since"
    return None


def write_run_if_needed(experiment: Experiment, *, rerun: bool = False, progress: bool = True,
                        model: Model | None = None) -> RunChoice:
    """The latest run in ``experiment.run_dir`` when it matches (`run_mismatch`) and not `rerun`;
    else the experiment run on `model` (default: the config's; the cache answers what was asked
    before) and written to the run history as the new latest (`write_run_to_history`)."""
    try:
        found: Run | None = load_run(experiment.run_dir)
        why = run_mismatch(found, experiment)
    except FileNotFoundError:
        found, why = None, f"{experiment.run_dir} holds no run yet"
    if found is not None and why is None and not rerun:
        return RunChoice(found, True, f"loaded run {found.run_id} from {found.path}: it is the run these parameters "
                                      "ask for (RERUN = True runs it again)")
    if found is not None and why is None:
        why = "RERUN is True"
    elif found is not None:
        why = f"the latest run {found.run_id} does not match: {why}"
    run = write_run_to_history(run_experiment(experiment, progress=progress, model=model), experiment.run_dir)
    stats = run.stats
    return RunChoice(run, False, f"ran the experiment ({why}): {stats.get('calls_sent', 0)} calls sent, "
                                 f"{stats.get('cache_hits', 0)} from the cache; wrote run {run.run_id} to {run.path}")


def _rows(frame: pd.DataFrame | None, experiment: Experiment) -> str | None:
    """A frame's example ids, texts and gold answers as canonical text (order ignored), to compare
    a stored frame with a freshly loaded one whatever the dtypes."""
    if frame is None:
        return None
    columns = [c for c in ("example_id", "text", experiment.task.kind.target_column) if c in frame.columns]
    records = frame[columns].to_dict("records")
    return json.dumps(sorted(records, key=lambda row: str(row["example_id"])), sort_keys=True, default=str)
