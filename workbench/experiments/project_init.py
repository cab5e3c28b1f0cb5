"""A project folder from a user's imported data: the task file, a seeded split, an experiment config.

`write_project` writes, into one folder (``workbench init`` uses ``./<task name>/`` unless told
otherwise):

- ``task.yaml``: every label found, each with an empty definition to fill in (optional), and
  empty description and instructions;
- ``test.jsonl``: the rows `workbench run` scores, and ``train.jsonl``: the pool that few-shot
  examples (and the later stages' training rows) come from; a seeded stratified split
  (`split_dataset`);
- ``experiment.yaml``: an experiment config in the format of ``configs/demo_complaints.yaml``
  (paths relative to itself, the embedded model), checked with `load_experiment` before it is
  put in place.

Everything is written to a temporary folder beside the target and moved in only once the config
loads, so that a refusal leaves nothing behind; files of these names already in the folder are
refused unless `overwrite`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

from workbench.core.data import label_counts
from workbench.core.errors import InputError
from workbench.core.frames import plain
from workbench.core.importing import ImportedData
from workbench.core.task import Task, task_to_dict
from workbench.experiments.config import load_experiment

PROJECT_FILES = ("task.yaml", "train.jsonl", "test.jsonl", "experiment.yaml")
DEFAULT_TEST_SIZE = 0.3
# Variants that need no definitions: `definitions` would only tell the model that there are none.
FIRST_VARIANTS = ("zero_shot", "few_shot", "few_shot_similar")
_NO_LABEL = "(no label)"  # the stratification group of a row with no label (multilabel, NER)


class ProjectError(InputError):
    """The project cannot be written as asked (a too large test size, files already there)."""


@dataclass(frozen=True)
class Split:
    """A dataset split in two: `train` (the pool) and `test`, each with the dataset's columns, in
    the dataset's row order; `notes` say what the split did that a user would not guess."""

    train: pd.DataFrame
    test: pd.DataFrame
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    """A written project folder: `folder`, the paths of its files, the split, and the label counts.

    `counts` has one row per label (task order) and the columns ``label``, ``all`` (in the whole
    dataset; entities for NER), ``test`` and ``pool``.
    """

    folder: Path
    task_path: Path
    train_path: Path
    test_path: Path
    config_path: Path
    split: Split
    counts: pd.DataFrame


def split_dataset(dataset: pd.DataFrame, task: Task, *, test_size: float = DEFAULT_TEST_SIZE,
                  seed: int = 0) -> Split:
    """Split a validated dataset into a pool and a test set, seeded and stratified by label.

    `test_size` is a fraction of the rows (0 < f < 1, rounded up, as scikit-learn does) or a
    number of rows (1 or more). Each row's stratification group is its rarest label (its label,
    for classification; ``(no label)`` for a row with none). Rows whose group has a single row
    cannot be in both files: they stay in the pool, and a note names them (for classification: a
    label on one row is never tested). When the test set is too small to hold every group, the
    split is random (not stratified), and a note says so. Raises `ProjectError` when either side
    would be empty.
    """
    rows = len(dataset)
    wanted = test_size if test_size < 1 else int(test_size)
    if test_size <= 0 or (test_size >= 1 and not float(test_size).is_integer()):
        raise ProjectError(f"test size {test_size!r} must be a fraction between 0 and 1 (0.3) or a number of rows (50)")
    # Rounded first: 0.55 of 100 rows is 55, not ceil(55.00000000000001).
    n_test = math.ceil(round(wanted * rows, 9)) if wanted < 1 else wanted
    if not 1 <= n_test < rows:
        raise ProjectError(f"a test size of {test_size!r} leaves {rows - n_test} of {rows} rows for the pool and "
                           f"{n_test} for the test set; both need at least one: give a smaller test size")
    groups = _groups(dataset, task)
    sizes = Counter(groups)
    rare = [index for index, group in enumerate(groups) if sizes[group] < 2]
    common = [index for index, group in enumerate(groups) if sizes[group] >= 2]
    notes = []
    if rare:
        shown = sorted({groups[index] for index in rare})
        notes.append(f"{len(rare)} row(s) kept in the pool (train.jsonl), not tested: the split is stratified by "
                     "each row's rarest label, and no other row shares theirs "
                     f"({', '.join(repr(label) for label in shown[:10])}"
                     f"{' ...' if len(shown) > 10 else ''}; "
                     f"example_id {', '.join(dataset['example_id'].iloc[rare][:5])}"
                     f"{' ...' if len(rare) > 5 else ''})")
    common_groups = len({groups[index] for index in common})
    # scikit-learn's conditions for a stratified split: each side holds every group at least once.
    if common_groups <= n_test <= len(common) - common_groups:
        _, test_rows = train_test_split(common, test_size=n_test, random_state=seed,
                                        stratify=[groups[index] for index in common])
    else:
        notes = [(f"the split is random, not stratified: {n_test} test rows and {rows - n_test} pool rows cannot "
                  f"each hold every one of the {len(sizes)} labels (as each row's rarest label)")]
        _, test_rows = train_test_split(list(range(rows)), test_size=n_test, random_state=seed)
    is_test = pd.Series(False, index=range(rows))
    is_test[list(test_rows)] = True
    frame = dataset.reset_index(drop=True)
    return Split(train=frame[~is_test.values].reset_index(drop=True), test=frame[is_test.values].reset_index(drop=True),
                 notes=tuple(notes))


def experiment_config(name: str) -> dict[str, Any]:
    """The experiment config of a new project (paths relative to the config file's folder)."""
    return {
        "name": name, "task": "task.yaml", "dataset": "test.jsonl", "examples": "train.jsonl", "limit": None,
        "variants": list(FIRST_VARIANTS), "repeats": 1,
        "options": {"temperature": 0.0, "max_tokens": 200},  # the demos' NER answers fit in 200 tokens
        "model": {"kind": "embedded"},
    }


def write_project(imported: ImportedData, folder: str | Path, *, test_size: float = DEFAULT_TEST_SIZE, seed: int = 0,
                  overwrite: bool = False) -> Project:
    """Split `imported` and write the project files (`PROJECT_FILES`) into `folder`.

    Raises `ProjectError`, before anything is written, when `folder` already holds one of the files and
    `overwrite` is False (other files there are never touched), or when the split cannot be made.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ProjectError(f"{folder} is a file, not a folder: choose another output folder (--out)")
    existing = [name for name in PROJECT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise ProjectError(f"{folder} already holds {', '.join(existing)}: pass --overwrite to replace them "
                           "(other files in it are left alone), or choose another folder (--out)")
    task = imported.task
    split = split_dataset(imported.dataset, task, test_size=test_size, seed=seed)
    header = f"# Written by workbench init from {imported.source} (test size {test_size:g}, seed {seed}).\n"
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.init-", dir=folder.parent))
    try:
        (staging / "task.yaml").write_text(header + _task_yaml(task), encoding="utf-8")
        _write_jsonl(split.train, staging / "train.jsonl", task)
        _write_jsonl(split.test, staging / "test.jsonl", task)
        (staging / "experiment.yaml").write_text(header + _config_yaml(experiment_config(task.name)),
                                                 encoding="utf-8")
        load_experiment(staging / "experiment.yaml")  # `workbench run` must load what we write
        folder.mkdir(exist_ok=True)
        for name in PROJECT_FILES:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = pd.DataFrame({
        "label": list(task.label_names),
        "all": label_counts(imported.dataset, task).to_list(),
        "test": label_counts(split.test, task).to_list(),
        "pool": label_counts(split.train, task).to_list(),
    })
    return Project(folder=folder, task_path=folder / "task.yaml", train_path=folder / "train.jsonl",
                   test_path=folder / "test.jsonl", config_path=folder / "experiment.yaml", split=split, counts=counts)


def next_commands(project: Project) -> list[str]:
    """The commands a user types next, as lines to print (paths as `project.folder` gives them)."""
    config = project.config_path.as_posix()
    return [
        f"  edit {project.task_path.as_posix()}     # optional: the client's definition of each label, instructions",
        f"  workbench preview {config}     # the prompts the model will see",
        f"  workbench run {config} --limit 20     # a first look on 20 test rows",
        f"  workbench run {config}     # every test row; prints where the report is",
    ]


def _groups(dataset: pd.DataFrame, task: Task) -> list[str]:
    """Each row's stratification group: its rarest label (by rows that have it), or `_NO_LABEL`."""
    labels = [sorted(set(task.kind.target_labels(target))) for target in dataset[task.kind.target_column]]
    frequency = Counter(label for row in labels for label in row)
    return [min(row, key=lambda label: (frequency[label], label)) if row else _NO_LABEL for row in labels]


def _task_yaml(task: Task) -> str:
    spec = task_to_dict(task)
    guide = ("# Fill in what you can; all of it is optional. `description` and `instructions` go into every\n"
             "# prompt; a label's `definition` (the client's meaning, which may differ from everyday usage)\n"
             "# is shown by the `definitions` variant: add it to experiment.yaml's variants once written.\n")
    head = yaml.safe_dump({key: spec[key] for key in ("name", "kind", "description", "instructions")},
                          sort_keys=False, allow_unicode=True)
    labels = yaml.safe_dump({"labels": spec["labels"]}, sort_keys=False, allow_unicode=True)
    return guide + head + labels


def _config_yaml(config: dict[str, Any]) -> str:
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    text = text.replace("limit: null\n", "limit: null  # every test row; a number runs a seeded sample of that many\n")
    return text.replace("repeats:", "# with label definitions in task.yaml, add: definitions, definitions+few_shot\n"
                        "repeats:", 1)


def _write_jsonl(frame: pd.DataFrame, path: Path, task: Task) -> None:
    columns = ["example_id", "text", task.kind.target_column]
    with path.open("w", encoding="utf-8") as out:
        for row in frame[columns].to_dict(orient="records"):
            out.write(json.dumps(plain(row), ensure_ascii=False) + "\n")
