"""Load labelled datasets and reject bad rows before any model is called.

A dataset is a DataFrame with the columns

- ``example_id`` (str): unique per row.
- ``text`` (str): non-empty input text.
- ``label`` (str): the gold label, for classification tasks; one of the task's labels.
- ``spans`` (list of dict): for NER tasks, gold entities as ``{"start", "end", "label"}`` with
  Python character offsets into ``text`` (``text[start:end]`` is the entity), sorted by start and
  not overlapping.

Other columns (``tags``, metadata) are kept as they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.tasks import Task

_MAX_PROBLEMS_SHOWN = 12


class DatasetError(ValueError):
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
        raise FileNotFoundError(f"dataset file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows = []
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(str(path), [f"line {line_number}: not valid JSON ({exc.msg})"]) from None
            if not isinstance(row, dict):
                raise DatasetError(str(path), [f"line {line_number}: expected a JSON object"])
            rows.append(row)
        return pd.DataFrame(rows)
    if suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"example_id": str}, keep_default_na=False)
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet")


def load_dataset(source: str | Path | pd.DataFrame, task: Task) -> pd.DataFrame:
    """Load and validate a labelled dataset for `task`.

    `source` is a path (.jsonl, .json, .csv, .parquet) or a DataFrame. Returns a new DataFrame
    with ``example_id`` and ``text`` as strings and either ``label`` (classification) or
    ``spans`` (NER, as lists of ``{"start", "end", "label"}`` dicts). Raises `DatasetError`
    naming every bad row and field.
    """
    name = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    frame = source.copy() if isinstance(source, pd.DataFrame) else read_table(source)
    return validate_dataset(frame, task, source=name)


def validate_dataset(frame: pd.DataFrame, task: Task, *, source: str = "dataset") -> pd.DataFrame:
    """Validate a DataFrame against `task` and return a normalised copy (see `load_dataset`)."""
    target = "label" if task.kind == "classification" else "spans"
    missing = [column for column in ("example_id", "text", target) if column not in frame.columns]
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
    labels = set(task.label_names)

    example_ids: list[str] = []
    for row, value in enumerate(frame["example_id"]):
        if _is_missing(value) or str(value).strip() == "":
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
        if _is_missing(text):
            problems.append(f"{where}: field 'text' is missing")
        elif not isinstance(text, str):
            problems.append(f"{where}: field 'text' must be a string, got {type(text).__name__} {text!r}")
        elif not text.strip():
            problems.append(f"{where}: field 'text' is empty")

    if task.kind == "classification":
        for row, (example_id, label) in enumerate(zip(example_ids, frame["label"])):
            where = f"row {row} (example_id={example_id!r})"
            if not isinstance(label, str) or not label:
                problems.append(f"{where}: field 'label' must be a non-empty string, got {label!r}")
            elif label not in labels:
                problems.append(
                    f"{where}: field 'label' is {label!r}, which is not one of the task's labels {sorted(labels)}"
                )
    else:
        normalised: list[list[dict[str, Any]]] = []
        for row, (example_id, text, spans) in enumerate(zip(example_ids, frame["text"], frame["spans"])):
            where = f"row {row} (example_id={example_id!r})"
            clean, span_problems = _validate_spans(spans, text if isinstance(text, str) else None, labels)
            problems.extend(f"{where}: {problem}" for problem in span_problems)
            normalised.append(clean)
        frame["spans"] = normalised

    if problems:
        raise DatasetError(source, problems)
    return frame


def _validate_spans(spans: Any, text: str | None, labels: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    problems: list[str] = []
    if isinstance(spans, str):
        try:
            spans = json.loads(spans) if spans.strip() else []
        except json.JSONDecodeError:
            return [], [f"field 'spans' is a string that is not JSON: {spans[:60]!r}"]
    if spans is None or (isinstance(spans, float) and math.isnan(spans)):
        return [], ["field 'spans' is missing; use [] for a text with no entities"]
    if hasattr(spans, "tolist"):  # numpy arrays from Parquet
        spans = spans.tolist()
    if not isinstance(spans, list):
        return [], [f"field 'spans' must be a list of {{start, end, label}}, got {type(spans).__name__}"]

    clean: list[dict[str, Any]] = []
    for index, span in enumerate(spans):
        field = f"spans[{index}]"
        if not isinstance(span, dict) or not {"start", "end", "label"} <= set(span):
            problems.append(f"field '{field}' must be a mapping with start, end and label, got {span!r}")
            continue
        start, end, label = span["start"], span["end"], span["label"]
        if not _is_int(start) or not _is_int(end):
            problems.append(f"field '{field}': start and end must be integers, got {start!r} and {end!r}")
            continue
        start, end = int(start), int(end)
        if label not in labels:
            problems.append(f"field '{field}': label {label!r} is not one of the task's labels {sorted(labels)}")
        if end <= start:
            problems.append(f"field '{field}': end ({end}) must be greater than start ({start})")
            continue
        if text is not None and (start < 0 or end > len(text)):
            problems.append(
                f"field '{field}': offsets {start}..{end} are outside the text (length {len(text)})"
            )
            continue
        clean.append({**span, "start": start, "end": end, "label": label})

    clean.sort(key=lambda span: (span["start"], span["end"]))
    for previous, current in zip(clean, clean[1:]):
        if current["start"] < previous["end"]:
            problems.append(
                f"field 'spans': span {current['start']}..{current['end']} ({current['label']}) overlaps "
                f"span {previous['start']}..{previous['end']} ({previous['label']}); overlapping entities "
                "are not supported"
            )
    return clean, problems


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
