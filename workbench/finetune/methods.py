"""Which method fixes which training point: prompt variants, LoRA, soft prompts, or nothing.

A prompt variant fixes a point when it answers all of the point's error examples right
(``fixed_by`` of the points table, measured on the run itself). A tuned model fixes a point when
it answers all of the point's held-out test cases right (score 1.0 in its before/after table);
with the few test cases a point has, "fixes" is a hint to confirm in a later round, not a proof.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from workbench.core.frames import require_columns

METHOD_COLUMNS = ["point_id", "name", "prompt", "fixed_by"]


def points_by_method(points: pd.DataFrame, tuned: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per point of `points` (kind ``point`` or ``other``): ``point_id``, ``name``,
    ``prompt`` (the variants that fix it, comma-separated, "" when none), then per method in
    `tuned` (method name -> `before_after` table) its score on the point's test cases (NaN when
    it has none), and ``fixed_by``: the methods that fix it ("nothing" when none does)."""
    require_columns(points, ["point_id", "name", "kind", "fixed_by"], "points", "pass ErrorClusterer's points_")
    for method, table in tuned.items():
        require_columns(table, ["point_id", "tuned", "cases"], f"the {method} table", "pass BeforeAfter.table")
    rows = []
    for point in points[points["kind"].isin(["point", "other"])].to_dict("records"):
        variants = list(point["fixed_by"])
        row = {"point_id": point["point_id"], "name": point["name"], "prompt": ", ".join(variants)}
        fixers = ["prompt variant"] if variants else []
        for method, table in tuned.items():
            scores = table.set_index("point_id")["tuned"]
            score = float(scores[point["point_id"]]) if point["point_id"] in scores.index else float("nan")
            row[method] = score
            if score == 1.0:
                fixers.append(method)
        row["fixed_by"] = ", ".join(fixers) or "nothing"
        rows.append(row)
    return pd.DataFrame(rows, columns=["point_id", "name", "prompt", *tuned, "fixed_by"])
