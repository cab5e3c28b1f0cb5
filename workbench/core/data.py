"""Load labelled datasets and reject bad rows before any model is called.

A dataset is a DataFrame with the columns

- ``example_id`` (str): unique per row.
- ``text`` (str): non-empty input text.
- the task kind's gold column (`TaskKind.target_column`): ``label`` (str, one of the task's
  labels) for classification; ``spans`` (list of ``{"start", "end", "label"}`` with Python
  character offsets into ``text``, sorted by start, not overlapping) for NER; ``labels`` (list of
  zero or more of the task's labels) for multi-label classification.

Other columns (``tags``, metadata) are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.errors import InputError, MissingInputError
from workbench.core.task import Task

_MAX_PROBLEMS_SHOWN = 12


class DatasetError(InputError):
    """A dataset has rows that cannot be used; the message names each row and field."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        shown = "\n".join(f"  - {problem}" for problem in self.problems[:_MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - _MAX_PROBLEMS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{source}: {len(self.problems)} problem(s); fix these rows and load again:\n{shown}{tail}"
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a JSONL, JSON, CSV or Parquet file into a DataFrame without validating it."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"dataset file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return pd.DataFrame(jsonl_records(path, path.read_text(encoding="utf-8"))[0])
    if suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"example_id": str}, keep_default_na=False)
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    raise InputError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet")


def jsonl_records(path: str | Path, text: str) -> tuple[list[dict], list[int]]:
    """The JSON objects of `text` (the JSONL file `path` read) and the line each is on, from 1.
    Blank lines are skipped; a line that is not a JSON object raises DatasetError naming it."""
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(str(path), [f"line {number}: not valid JSON ({exc.msg})"]) from None
        if not isinstance(row, dict):
            raise DatasetError(str(path), [f"line {number}: expected a JSON object, got {type(row).__name__}"])
        rows.append(row)
        lines.append(number)
    return rows, lines


def load_dataset(source: str | Path | pd.DataFrame, task: Task) -> pd.DataFrame:
    """Load and validate a labelled dataset for `task`.

    `source` is a path (.jsonl, .json, .csv, .parquet) or a DataFrame. Returns a new DataFrame
    with ``example_id`` and ``text`` as strings and the kind's gold column normalised (see the
    module docstring). Raises `DatasetError` naming every bad row and field.
    """
    name = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    frame = source.copy() if isinstance(source, pd.DataFrame) else read_table(source)
    return validate_dataset(frame, task, source=name)


def validate_dataset(frame: pd.DataFrame, task: Task, *, source: str = "dataset",
                     labelled: bool = True) -> pd.DataFrame:
    """Validate a DataFrame against `task` and return a normalised copy (see `load_dataset`).
    With `labelled` False the gold column may be absent (texts to label); when present it is checked."""
    target = task.kind.target_column
    required = ("example_id", "text", target) if labelled or target in frame.columns else ("example_id", "text")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DatasetError(
            source,
            [f"missing column(s) {missing}; a {task.kind} dataset needs example_id, text and {target} "
             f"(found {list(frame.columns)})"],
        )
    if frame.empty:
        raise DatasetError(source, ["the dataset has no rows"])

    frame = frame.reset_index(drop=True).copy()
    problems: list[str] = []

    example_ids: list[str] = []
    for row, value in enumerate(frame["example_id"]):
        if is_missing(value) or str(value).strip() == "":
            problems.append(f"row {row}: field 'example_id' is empty")
            example_ids.append("")
        else:
            example_ids.append(str(value))
    frame["example_id"] = example_ids
    seen: dict[str, int] = {}
    for row, example_id in enumerate(example_ids):
        if example_id and example_id in seen:
            problems.append(
                f"row {row} (example_id={example_id!r}): duplicate example_id, first used in row {seen[example_id]}"
            )
        else:
            seen.setdefault(example_id, row)

    for row, (example_id, text) in enumerate(zip(example_ids, frame["text"])):
        where = f"row {row} (example_id={example_id!r})"
        if is_missing(text):
            problems.append(f"{where}: field 'text' is missing")
        elif not isinstance(text, str):
            problems.append(f"{where}: field 'text' must be a string, got {type(text).__name__} {text!r}")
        elif not text.strip():
            problems.append(f"{where}: field 'text' is empty")

    if target in frame.columns:
        targets, target_problems = task.kind.validate_targets(list(frame[target]), list(frame["text"]), task)
        for row, (example_id, found) in enumerate(zip(example_ids, target_problems)):
            problems.extend(f"row {row} (example_id={example_id!r}): {problem}" for problem in found)
        frame[target] = targets

    if problems:
        raise DatasetError(source, problems)
    return frame


def label_counts(dataset: pd.DataFrame, task: Task) -> pd.Series:
    """How often each label occurs in the gold targets (a text with two entities of one label
    counts twice), indexed by label in the task's order, labels never used included (0)."""
    counts = pd.Series(0, index=pd.Index(task.label_names, name="label"), name="count")
    for target in dataset[task.kind.target_column]:
        for label in task.kind.target_labels(target):
            counts[label] = counts.get(label, 0) + 1
    return counts


def sample_dataset(dataset: pd.DataFrame, limit: int | None, *, seed: int = 0) -> pd.DataFrame:
    """A seeded random sample of `limit` rows, in example_id order; the whole dataset when
    `limit` is None, 0 or not smaller than it. The same limit and seed give the same rows."""
    if not limit or limit >= len(dataset):
        return dataset
    return dataset.sample(n=limit, random_state=seed).sort_values("example_id").reset_index(drop=True)
