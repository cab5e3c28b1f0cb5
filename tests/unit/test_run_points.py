"""A run's point files: written where `workbench points` writes them, read back equal, the map
following the assignments."""

import pandas as pd
import pytest

from workbench.points.run_points import POINT_FILES, map_points, read_points, write_points


def frames():
    points = pd.DataFrame({"point_id": ["P1", "P2"], "name": ["a", "b"], "keywords": [["x"], []]})
    assignments = pd.DataFrame({"example_id": ["e1", "e2"], "signature": ["s", "s"], "point_id": ["P2", "P1"]})
    issues = pd.DataFrame({"example_id": ["e1"], "is_label_issue": [False]})
    point_map = pd.DataFrame({"example_id": ["e1", "e2", "e3"], "signature": ["s", "s", "t"],
                              "point_id": ["P1", "P1", "P1"], "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0]})
    return points, assignments, issues, point_map


def test_written_points_read_back_and_the_map_follows_the_assignments(tmp_path):
    assert read_points(tmp_path) is None
    points, assignments, issues, point_map = frames()
    write_points(tmp_path, points, assignments, issues, point_map)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(POINT_FILES)
    stored = read_points(tmp_path)
    pd.testing.assert_frame_equal(stored.points, points)
    pd.testing.assert_frame_equal(stored.assignments, assignments)
    assert list(stored.point_map["point_id"].fillna("-")) == ["P2", "P1", "-"]
    assert list(map_points(point_map, assignments)["point_id"].fillna("-")) == ["P2", "P1", "-"]


def test_half_written_points_and_a_missing_folder_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        write_points(tmp_path / "nope", *frames())
    write_points(tmp_path, *frames())
    (tmp_path / "point_map.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="not point_map.parquet"):
        read_points(tmp_path)
