"""Checks on the DataFrames passed between stages, and how a stage's frames are stored.

Frames are stored as Parquet; object cells holding lists or dicts (spans, messages, example ids)
are written as JSON text and read back as the same values, with the JSON columns named in the
file's schema metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.core.answers import is_missing
from workbench.core.errors import InputError

_JSON_COLUMNS_KEY = b"workbench.json_columns"


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, hint: str = "") -> None:
    """Raise ValueError naming the columns `frame` lacks (`what` names the frame, `hint` says what to pass)."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}" + (f"; {hint}" if hint else ""))


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as Parquet, object cells holding lists or dicts as JSON text (see module doc)."""
    encoded = frame.copy()
    json_columns = [column for column in frame.columns if frame[column].dtype == object
                    and frame[column].map(lambda value: isinstance(value, (list, dict, tuple))).any()]
    for column in json_columns:
        encoded[column] = frame[column].map(lambda value: json.dumps(plain(value, missing_as_none=True), ensure_ascii=False))
    table = pa.Table.from_pandas(encoded, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _JSON_COLUMNS_KEY: json.dumps(json_columns).encode()}
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table.replace_schema_metadata(metadata), partial)
    partial.replace(path)  # a reader never sees half a file


def read_frame(path: Path) -> pd.DataFrame:
    """Read a file written by `write_frame` back into the same DataFrame."""
    table = pq.read_table(path)
    json_columns = json.loads((table.schema.metadata or {}).get(_JSON_COLUMNS_KEY, b"[]"))
    frame = table.to_pandas()
    for column in json_columns:
        frame[column] = pd.Series([json.loads(value) for value in frame[column]], index=frame.index, dtype=object)
    return frame


def plain(value: Any, *, missing_as_none: bool = False) -> Any:
    """`value` as plain Python, as JSON and comparisons want it: dicts and lists (tuples and numpy
    arrays, as a frame read back from Parquet holds them, become lists) recursively, numpy scalars
    as Python numbers; with `missing_as_none`, missing values (NaN, None, pd.NA) as None."""
    if isinstance(value, dict):
        return {key: plain(item, missing_as_none=missing_as_none) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and hasattr(value, "ndim") and value.ndim):
        return [plain(item, missing_as_none=missing_as_none) for item in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars, 0-d arrays
        value = value.item()
    return None if missing_as_none and is_missing(value) else value
