"""Checks on the DataFrames passed between stages."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, hint: str = "") -> None:
    """Raise ValueError naming the columns `frame` lacks (`what` names the frame, `hint` says what to pass)."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}" + (f"; {hint}" if hint else ""))
