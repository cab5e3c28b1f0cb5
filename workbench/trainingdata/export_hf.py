"""Training data as Hugging Face `datasets`: chat rows for SFT, and tokens with IOB2 tags for NER.

Both exports read the canonical training-data frame, one row per (point, example), with columns
``point_id``, ``split`` (``"train"`` or ``"test"``), ``source``, ``example_id``, ``text``,
``target`` (the gold-form answer of the task's kind: a label, a list of ``{"start", "end",
"label"}`` spans, or a list of labels), ``answer``, ``messages`` (a list of ``{"role",
"content"}`` dicts), ``synthetic`` and ``signature``. Each returns a `datasets.DatasetDict` with
one split per value of ``split``, typed by explicit `datasets.Features`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.core.errors import InputError, OverwriteError
from workbench.core.frames import plain, require_columns
from workbench.trainingdata.examples import one_row_per_example

if TYPE_CHECKING:
    from datasets import DatasetDict

    from workbench.core.task import Task

CHAT_COLUMNS = ["point_id", "split", "source", "example_id", "messages", "synthetic"]
TOKEN_COLUMNS = ["point_id", "split", "source", "example_id", "text", "target", "synthetic"]
SPLIT_ORDER = ("train", "test")
HINT = "pass the canonical training-data frame (one row per point and example)"


def to_chat_dataset(frame: pd.DataFrame, task: Task) -> DatasetDict:
    """The frame as conversational rows, the format TRL's `SFTTrainer` reads.

    Returns a `DatasetDict` with one split per value of ``split``; each row has ``messages`` (a
    list of ``{"role", "content"}`` dicts: system, user, assistant), ``point_id``, ``source``,
    ``example_id`` and ``synthetic``. `task` is not needed to build the rows (the messages already
    hold the rendered prompt and answer); it is taken so that every export has one signature.
    """
    from datasets import Features, List, Value

    require_columns(frame, CHAT_COLUMNS, "the training-data frame", HINT)
    features = Features({
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "point_id": Value("string"),
        "source": Value("string"),
        "example_id": Value("string"),
        "synthetic": Value("bool"),
    })

    def row(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "messages": _messages(record),
            "point_id": str(record["point_id"]),
            "source": str(record["source"]),
            "example_id": str(record["example_id"]),
            "synthetic": bool(record["synthetic"]),
        }

    return _dataset_dict(frame, features, row)


def to_token_classification(frame: pd.DataFrame, task: Task) -> DatasetDict:
    """The frame as token-classification rows for a span kind (NER).

    Returns a `DatasetDict` with one split per value of ``split``; each row has the kind's
    `hf_features` (``example_id``, ``tokens``, IOB2 ``ner_tags`` as a `ClassLabel` sequence, made
    by `hf_row` from the row's ``target``) plus ``point_id``, ``source`` and ``synthetic``.
    Raises ValueError for a kind whose rows are not tagged tokens (use `to_chat_dataset`), and for
    a span that does not start and end on a token boundary (naming the row).
    """
    from datasets import Value

    require_columns(frame, TOKEN_COLUMNS, "the training-data frame", HINT)
    kind_features = task.kind.hf_features(task)
    # Token classification is defined by its columns, not by a kind's name: a kind whose own HF
    # rows carry IOB2 `ner_tags` (the column name transformers' token-classification examples
    # read) is token-tagged; any other kind's rows (a label, a list of labels) are not.
    if "ner_tags" not in kind_features:
        raise InputError(
            f"task {task.name!r} is of kind {task.kind.name!r}, whose rows are not tagged tokens "
            f"(its Hugging Face features are {list(kind_features)}); token classification needs a "
            "span kind such as NER. Use to_chat_dataset for this task."
        )
    features = kind_features.copy()
    features.update({"point_id": Value("string"), "source": Value("string"), "synthetic": Value("bool")})

    def row(record: dict[str, Any]) -> dict[str, Any]:
        try:
            values = task.kind.hf_row(task, gold_example(record, task))
        except ValueError as exc:
            raise InputError(
                f"row {record['example_id']!r} of point {record['point_id']!r} cannot be written as "
                f"tags: {exc}. Fix or drop the span in its target."
            ) from None
        return {**values, "point_id": str(record["point_id"]), "source": str(record["source"]),
                "synthetic": bool(record["synthetic"])}

    return _dataset_dict(frame, features, row)


def save_dataset(dataset_dict: DatasetDict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write `dataset_dict` with `save_to_disk` to `path` (a folder) and return the path.

    Refuses an existing `path` unless `overwrite`. The dataset is written to a new folder beside
    `path` first and moved into place, so a failed write leaves the old one whole, and a dataset
    memory-mapped from `path` itself can be written back there.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} already exists; pass overwrite=True to replace it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        dataset_dict.save_to_disk(str(staging / "dataset"))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        (staging / "dataset").rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def gold_example(record: dict[str, Any], task: Task) -> dict[str, Any]:
    """A frame row as a gold example row of the task: ``example_id``, ``text`` and the target
    under the kind's target column (what the kinds' `hf_row` and `to_doc` read)."""
    return {"example_id": str(record["example_id"]), "text": record["text"],
            task.kind.target_column: plain(record["target"])}


def _dataset_dict(frame: pd.DataFrame, features: Any, row) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    if frame.empty:
        raise InputError("the training-data frame has no rows; there is nothing to export")
    frame = one_row_per_example(frame)  # a trainer sees an example once, under its first point
    splits = list(dict.fromkeys(frame["split"].astype(str)))
    # Train before test, whatever order the rows come in; any other split after them, as found.
    ordered = [name for name in SPLIT_ORDER if name in splits] + [name for name in splits if name not in SPLIT_ORDER]
    out = {}
    for name in ordered:
        records = frame[frame["split"].astype(str) == name].to_dict("records")
        rows = [row(record) for record in records]
        columns = {column: [values[column] for values in rows] for column in features}
        out[name] = Dataset.from_dict(columns, features=features)
    return DatasetDict(out)


def _messages(record: dict[str, Any]) -> list[dict[str, str]]:
    messages = plain(record["messages"])
    well_formed = isinstance(messages, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                     for m in messages)
    if not well_formed:
        raise InputError(
            f"row {record['example_id']!r} of point {record['point_id']!r} has messages {str(messages)[:120]!r}; "
            "expected a list of {'role', 'content'} dicts"
        )
    return [{"role": str(message["role"]), "content": str(message["content"])} for message in messages]
