"""The points x methods table: a prompt variant, LoRA, a soft prompt, or nothing fixes each point."""

import math

import pandas as pd

from workbench.finetune.methods import points_by_method


def test_each_point_says_which_methods_fix_it():
    points = pd.DataFrame({"point_id": ["P1", "P2", "P3", "relabel"], "name": ["fees", "cards", "scams", "gold?"],
                           "kind": ["point", "point", "other", "relabel"],
                           "fixed_by": [["definitions"], [], [], []]})
    lora = pd.DataFrame({"point_id": ["P1", "P2", "P3"], "tuned": [1.0, 1.0, 0.5], "cases": [3, 2, 2]})
    soft = pd.DataFrame({"point_id": ["P1", "P2"], "tuned": [0.5, 1.0], "cases": [3, 2]})
    table = points_by_method(points, {"lora": lora, "prompt_tuning": soft}).set_index("point_id")
    assert list(table.columns) == ["name", "prompt", "lora", "prompt_tuning", "fixed_by"]
    assert "relabel" not in table.index  # suspected label errors are not for training
    assert table.at["P1", "fixed_by"] == "prompt variant, lora" and table.at["P1", "prompt"] == "definitions"
    assert table.at["P2", "fixed_by"] == "lora, prompt_tuning"
    assert table.at["P3", "fixed_by"] == "nothing" and math.isnan(table.at["P3", "prompt_tuning"])
