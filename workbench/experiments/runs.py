"""Run folders: what a run wrote, so that later stages read it instead of running again."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from workbench.experiments.config import Experiment
from workbench.models.openai_compatible import redact_url


def write_run(experiment: Experiment, predictions: pd.DataFrame, summary: pd.DataFrame) -> Path:
    """Write ``predictions.jsonl``, ``summary.csv``, ``run_stats.json`` and ``config.yaml`` to the run folder."""
    folder = experiment.run_dir
    folder.mkdir(parents=True, exist_ok=True)
    predictions.to_json(folder / "predictions.jsonl", orient="records", lines=True, force_ascii=False)
    summary.to_csv(folder / "summary.csv", index=False)
    (folder / "run_stats.json").write_text(json.dumps(predictions.attrs.get("run_stats", {}), indent=2))
    source = dict(experiment.source)
    model = dict(source.get("model") or {})
    if isinstance(model.get("base_url"), str):
        model["base_url"] = redact_url(model["base_url"])  # user:password@ must not land in run folders
    source["model"] = model
    (folder / "config.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    return folder
