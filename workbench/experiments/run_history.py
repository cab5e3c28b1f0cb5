"""Run history: every run of an experiment kept in its own folder, the newest one named ``latest``.

``workbench run`` writes each run to ``<runs_dir>/<name>/<run-id>/`` (a run folder, as
`workbench.experiments.runs.write_run` writes it) and points ``<runs_dir>/<name>/latest`` at it,
so nothing a run wrote is overwritten by the next one. The response cache stays one level up, in
``<runs_dir>/<name>/cache.sqlite``: a second run of the same prompts costs nothing.

Every command that takes a run folder also takes ``<runs_dir>/<name>``, which means its latest
run (`workbench.experiments.runs.resolve_run_folder`), so ``workbench points runs/complaints``
works as it did when there was one run per name. A folder written before run history (the run's
files directly in ``<runs_dir>/<name>/``) still loads, and is listed as one run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from workbench.core.errors import MissingInputError, OverwriteError
from workbench.experiments.runs import Run, is_run_folder, write_run

LATEST = "latest"

RUN_COLUMNS = ["name", "run_id", "started_at", "model", "variants", "n", "metric", "best_variant", "best_score",
               "latest", "path"]


def write_run_to_history(run: Run, run_dir: str | Path) -> Run:
    """Write `run` to ``<run_dir>/<run id>/`` and point ``<run_dir>/latest`` at it; returns the
    run with its `path` set to the new folder.

    ``latest`` is a relative symbolic link, replaced in one step (a reader never sees it missing).
    Where the file system has no symbolic links, ``latest`` is a one-line text file holding the
    run id, which `resolve_run_folder` reads the same way.
    """
    run_dir = Path(run_dir)
    written = write_run(run, run_dir / run.run_id)
    _point_latest(run_dir, run.run_id)
    return written


def list_runs(folder: str | Path) -> pd.DataFrame:
    """The runs under `folder`, oldest first: a name's folder (``runs/<name>``: its runs) or a runs
    folder (``runs``: every name's runs). One row per run with ``name``; ``run_id``; ``started_at``
    (ISO 8601, UTC); ``model`` (the model's name as its identity gives it); ``variants`` (comma
    separated); ``n`` (examples evaluated); ``metric`` (the task kind's headline score: accuracy,
    or micro F1 for NER and multi-label); ``best_variant`` and ``best_score`` (the variant scoring
    highest on it, higher is better); ``latest`` (whether ``latest`` points at it) and ``path``.

    Raises FileNotFoundError when `folder` does not exist or holds no run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{folder} is not a folder: pass a runs folder (runs/) or one experiment's "
                                "(runs/<name>/); `workbench run <config>` writes them")
    rows = [_describe(run_folder) for run_folder in _run_folders(folder)]
    if not rows:
        raise MissingInputError(f"{folder} holds no run: `workbench run <config>` writes one to "
                                "<runs_dir>/<name>/<run id>/")
    return pd.DataFrame(rows, columns=RUN_COLUMNS).sort_values(["started_at", "run_id"], ignore_index=True)


def _run_folders(folder: Path) -> list[Path]:
    if is_run_folder(folder):  # a run's folder, or a name's folder written flat before run history
        return [folder, *(child for child in sorted(folder.iterdir())
                          if child.name != LATEST and child.is_dir() and is_run_folder(child))]
    found = []
    for child in sorted(folder.iterdir()):
        if child.name == LATEST or not child.is_dir():
            continue
        if is_run_folder(child):
            found.append(child)
        else:  # a name's folder under a runs folder
            found.extend(grandchild for grandchild in sorted(child.iterdir())
                         if grandchild.name != LATEST and grandchild.is_dir() and is_run_folder(grandchild))
    return found


def _describe(folder: Path) -> dict[str, object]:
    provenance = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    task = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    name_folder = folder.parent if folder.name == provenance.get("run_id") else folder
    summary = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").exists() else pd.DataFrame()
    metric = next((column for column in ("accuracy", "f1") if column in summary.columns), None)
    best = summary.loc[summary[metric].idxmax()] if metric and summary[metric].notna().any() else None
    model = provenance.get("model") or {}
    return {
        "name": name_folder.name,
        "run_id": provenance.get("run_id", folder.name),
        "started_at": provenance.get("started_at", ""),
        "model": str(model.get("model") or model.get("name") or model.get("kind") or ""),
        "variants": ", ".join(str(v) for v in summary.get("variant", [])),
        "n": int(summary["n"].max()) if "n" in summary and len(summary) else 0,
        "metric": {"accuracy": "accuracy", "f1": "micro F1"}.get(metric or "", "") if task else "",
        "best_variant": "" if best is None else str(best["variant"]),
        "best_score": float("nan") if best is None else float(best[metric]),
        "latest": _latest_target(name_folder) == folder.name,
        "path": str(folder),
    }


def _point_latest(run_dir: Path, run_id: str) -> None:
    link = run_dir / LATEST
    staged = run_dir / f".{LATEST}.{os.getpid()}"
    staged.unlink(missing_ok=True)
    try:
        staged.symlink_to(run_id, target_is_directory=True)
    except OSError:  # no symbolic links here (some Windows set-ups): the run id as text
        staged.write_text(run_id + "\n", encoding="utf-8")
    if link.is_dir() and not link.is_symlink():
        raise OverwriteError(f"{link} is a folder, not the link to the latest run: rename it and run again")
    staged.replace(link)


def _latest_target(run_dir: Path) -> str | None:
    link = run_dir / LATEST
    if link.is_symlink():
        return os.readlink(link).rstrip("/").split("/")[-1]
    if link.is_file():
        return link.read_text(encoding="utf-8").strip()
    return None
