"""The points x methods table: a prompt variant, LoRA, a soft prompt, or nothing fixes each point."""

import math

import pandas as pd

from workbench.finetune.methods import points_by_method


def test_each_point_says_which_methods_fix_it():
    points = pd.DataFrame({"point_id": ["P1", "P2", "P3", "relabel"], "name": ["fees", "cards", "scams", "gold?"],
                           "kind": ["point", "point", "other", "relabel"],
                           "fixed_by": [["definitions"], [], [], []]})
    lora = pd.DataFrame({"point_id": ["P1", "P2", "P3"], "base": [0.0, 0.5, 0.0], "tuned": [1.0, 1.0, 0.5],
                         "cases": [3, 2, 2]})
    soft = pd.DataFrame({"point_id": ["P1", "P2"], "base": [0.0, 0.5], "tuned": [0.5, 1.0], "cases": [3, 2]})
    table = points_by_method(points, {"lora": lora, "prompt_tuning": soft}).set_index("point_id")
    assert list(table.columns) == ["name", "prompt", "lora", "prompt_tuning", "fixed_by"]
    assert "relabel" not in table.index  # suspected label errors are not for training
    assert table.at["P1", "fixed_by"] == "prompt variant, lora" and table.at["P1", "prompt"] == "definitions"
    assert table.at["P2", "fixed_by"] == "lora, prompt_tuning"
    assert table.at["P3", "fixed_by"] == "nothing" and math.isnan(table.at["P3", "prompt_tuning"])


def test_a_method_does_not_fix_a_point_the_base_model_already_had_right():
    # P1's test cases are neighbours the base already answers right: tuned 1.0 there is no fix.
    points = pd.DataFrame({"point_id": ["P1", "P2"], "name": ["fees", "cards"], "kind": ["point", "point"],
                           "fixed_by": [[], ["definitions"]]})
    lora = pd.DataFrame({"point_id": ["P1", "P2"], "base": [1.0, 1.0], "tuned": [1.0, 1.0], "cases": [3, 2]})
    table = points_by_method(points, {"lora": lora}).set_index("point_id")
    assert table.at["P1", "fixed_by"] == "already right" and table.at["P1", "lora"] == 1.0
    assert table.at["P2", "fixed_by"] == "prompt variant"  # the variant fixed its errors; LoRA did not


def test_a_learning_curve_trains_on_growing_shares_of_one_points_rows(tmp_path):
    from test_points import TASK
    from test_training_data import built

    from workbench.finetune.learning_curve import learning_curve
    from workbench.testing.fake_model import FakeModel

    data, _, _ = built()
    fees = data.examples[(data.examples["point_id"] == "P1") & (data.examples["split"] == "train")]
    trained_on = []

    def train(chats, folder):
        trained_on.append(len(chats))
        # A model that has seen at least two fee rows answers "complaint": the curve must show it.
        seen = sum('fee' in chat[1]["content"] for chat in chats)
        return FakeModel('{"label": "complaint"}' if seen >= 2 else '{"label": "request"}')

    curve = learning_curve(data.examples, TASK, "P1", train, tmp_path, sizes=(2, 4, 99))
    assert list(curve["examples"]) == [0, 2, 4]  # 99 is more than P1 has
    assert list(curve["value"]) == [0.0, 1.0, 1.0] and curve["small"].all()
    others = trained_on[0]
    assert trained_on == [others, others + 2, others + 4] and len(fees) >= 4
