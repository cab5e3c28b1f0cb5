"""A run's training points on disk: the four files ``workbench points`` writes into the run folder
and ``workbench data`` reads, so that a notebook and the CLI continue from each other.

In the run folder (`workbench.experiments.runs`):

- ``points.parquet``: the points (`ErrorClusterer.points_`, after naming and review if any);
- ``point_assignments.parquet``: which point each error row is in (`ErrorClusterer.assignments_`);
- ``label_issues.parquet``: `find_label_issues`' frame;
- ``point_map.parquet``: the 2-D map of the errors (`ErrorClusterer.map_`), its ``point_id``
  following the assignments (`map_points`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.core.errors import MissingInputError
from workbench.core.frames import read_frame, write_frame

POINT_FILES = ("points.parquet", "point_assignments.parquet", "label_issues.parquet", "point_map.parquet")


@dataclass(frozen=True)
class RunPoints:
    """The point files of one run folder, read back (`read_points`)."""

    points: pd.DataFrame
    assignments: pd.DataFrame
    label_issues: pd.DataFrame
    point_map: pd.DataFrame
    folder: Path


def map_points(point_map: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """`point_map` (``example_id``, ``signature``, ...) with ``point_id`` taken from `assignments`
    (``example_id``, ``signature``, ``point_id``): after a review moved errors between points, the
    map shows where they are now. Rows with no assignment get a missing value."""
    point_of = dict(zip(zip(assignments["example_id"], assignments["signature"]), assignments["point_id"]))
    return point_map.assign(point_id=[point_of.get(key) for key in zip(point_map["example_id"],
                                                                      point_map["signature"])])


def write_points(folder: str | Path, points: pd.DataFrame, assignments: pd.DataFrame, label_issues: pd.DataFrame,
                 point_map: pd.DataFrame) -> Path:
    """Write the four `POINT_FILES` into the run folder `folder` (replacing earlier ones, as
    ``workbench points`` does); the map's ``point_id`` follows `assignments`. Returns `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{folder} is not a run folder: write the run first (`workbench run <config>`)")
    write_frame(points, folder / "points.parquet")
    write_frame(assignments, folder / "point_assignments.parquet")
    write_frame(label_issues, folder / "label_issues.parquet")
    write_frame(map_points(point_map, assignments), folder / "point_map.parquet")
    return folder


def read_points(folder: str | Path) -> RunPoints | None:
    """The points ``workbench points`` (or notebook 04) wrote into the run folder `folder`, or None
    when it has none yet. Raises FileNotFoundError naming the file when only some were written."""
    folder = Path(folder)
    present = [name for name in POINT_FILES if (folder / name).exists()]
    if not present:
        return None
    missing = [name for name in POINT_FILES if name not in present]
    if missing:
        raise MissingInputError(f"{folder} has {', '.join(present)} but not {', '.join(missing)}: run "
                                f"`workbench points {folder}` again to write all of them")
    frames = [read_frame(folder / name) for name in POINT_FILES]
    return RunPoints(*frames, folder=folder)
