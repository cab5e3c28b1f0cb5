"""Which method fixes which training point: prompt variants, LoRA, soft prompts, a hosted fine-tuning
job, or nothing.

A prompt variant fixes a point when it answers all of the point's error examples right
(``fixed_by`` of the points table, measured on the run itself). A tuned model fixes a point when
the base model got some of the point's held-out test cases wrong (``base`` below 1.0 in its
before/after table) and the tuned model answers all of them right (``tuned`` 1.0). A point's test
cases are some of its members and, for small points, pool neighbours the base often answers right
already: a tuned 1.0 where the base was 1.0 too is "already right", not a fix. With the few test
cases a point has, "fixes" is a hint to confirm in a later round, not a proof.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from workbench.core.frames import require_columns
from workbench.points.cluster import TRAINABLE_KINDS

METHOD_COLUMNS = ["point_id", "name", "prompt", "fixed_by"]
#: The methods `workbench finetune --method` runs, each in ``finetune/<method>/`` of a run folder.
TUNED_METHODS = ("lora", "prompt_tuning", "openai")


def read_method_tables(folder: str | Path) -> dict[str, pd.DataFrame]:
    """method -> its before/after table (``<folder>/<method>/before_after.csv``) for each of
    `TUNED_METHODS` that has one in `folder` (a run's ``finetune/``), in that order: what
    `points_by_method` takes."""
    folder = Path(folder)
    return {method: pd.read_csv(folder / method / "before_after.csv") for method in TUNED_METHODS
            if (folder / method / "before_after.csv").exists()}


def points_by_method(points: pd.DataFrame, tuned: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per point of `points` (kind ``point`` or ``other``): ``point_id``, ``name``,
    ``prompt`` (the variants that fix it, comma-separated, "" when none), then per method in
    `tuned` (method name -> `before_after` table: ``point_id``, ``cases``, ``base``, ``tuned``)
    its tuned score on the point's test cases (NaN when it has none; higher is better), and
    ``fixed_by``: the methods that fix it (base below 1.0, tuned 1.0), "already right" when none
    does and the base model answered every test case right in some table, else "nothing"."""
    require_columns(points, ["point_id", "name", "kind", "fixed_by"], "points", "pass ErrorClusterer's points_")
    for method, table in tuned.items():
        require_columns(table, ["point_id", "base", "tuned", "cases"], f"the {method} table",
                        "pass BeforeAfter.table")
    rows = []
    for point in points[points["kind"].isin(TRAINABLE_KINDS)].to_dict("records"):
        variants = list(point["fixed_by"])
        row = {"point_id": point["point_id"], "name": point["name"], "prompt": ", ".join(variants)}
        fixers = ["prompt variant"] if variants else []
        already_right = False
        for method, table in tuned.items():
            scores = table.set_index("point_id")
            found = point["point_id"] in scores.index
            score = float(scores.at[point["point_id"], "tuned"]) if found else float("nan")
            base = float(scores.at[point["point_id"], "base"]) if found else float("nan")
            row[method] = score
            if score == 1.0 and base < 1.0:  # NaN compares false: no test cases, no fix
                fixers.append(method)
            already_right = already_right or base == 1.0
        row["fixed_by"] = ", ".join(fixers) or ("already right" if already_right else "nothing")
        rows.append(row)
    return pd.DataFrame(rows, columns=["point_id", "name", "prompt", *tuned, "fixed_by"])
