"""Anchor rows balance the labels of the training rows with pool examples, and never leak."""

from collections import Counter

import pandas as pd
import pytest
from test_points import TASK
from test_training_data import WordsEncoder, built

from workbench.trainingdata.anchors import ANCHORS, choose_anchors, label_counts
from workbench.trainingdata.examples import REGRESSION
from workbench.trainingdata.leakage import find_leaks

# Gold in `built()` is "complaint" for every point member: the rows lean entirely one way.
POOL = pd.DataFrame({"example_id": [f"r{i}" for i in range(6)] + [f"z{i}" for i in range(4)] + ["dup", "old"],
                     "text": ["please send me a statement", "can I change my address", "I want a new pin",
                              "open a savings account for me", "request a paper copy", "update my phone number",
                              "someone used my card in Paris", "a payment I never made", "my account was hacked",
                              "strangers took money from me", "the fee was wrong", "fee again"],
                     "label": ["request"] * 6 + ["fraud"] * 4 + ["complaint", "complaint"]})


def test_anchors_bring_every_label_up_to_the_most_common_one():
    data, _, _ = built()
    before = label_counts(data.examples, TASK)
    assert before["request"] == 0 and before["fraud"] == 0 and before["complaint"] > 4
    anchors = choose_anchors(data.examples, POOL, TASK, share=2.0, encoder=WordsEncoder())
    after = before + Counter(anchors["target"])
    # The pool has 6 requests and 4 frauds: request reaches complaint's count (capped by the pool), fraud all 4.
    assert after["fraud"] == 4 and after["request"] == min(6, before["complaint"])
    assert after["complaint"] == before["complaint"], "no complaint anchor: complaint was already the most common"
    assert set(anchors["split"]) == {"train"} and set(anchors["point_id"]) == {ANCHORS} == set(anchors["source"])


def test_training_data_built_with_anchors_renders_them_and_tops_up_the_regression_set_after_them():
    data, _, _ = built(pool=POOL, anchors=2.0, regression_size=20)
    frame = data.examples
    anchors = frame[frame["source"] == ANCHORS]
    assert len(anchors) > 0 and all(m[-1]["role"] == "assistant" and t in m[-1]["content"]
                                    for m, t in zip(anchors["messages"], anchors["target"]))
    # The anchors took pool examples first; the regression top-up used only what was left.
    assert not set(anchors["example_id"]) & set(frame.loc[frame["point_id"] == REGRESSION, "example_id"])
    assert any("anchor row(s)" in note for note in data.notes)
    assert find_leaks(frame, WordsEncoder()).empty and data.leakage["leaks"].sum() == 0
    without = built(pool=POOL, regression_size=20)[0].examples
    assert (without["source"] == REGRESSION).sum() > (frame["source"] == REGRESSION).sum()


def test_anchors_are_capped_by_share_and_taken_from_the_label_furthest_behind():
    data, _, _ = built()
    points_rows = len(data.examples[data.examples["split"] == "train"].drop_duplicates("example_id"))
    one = choose_anchors(data.examples, POOL, TASK, share=1 / points_rows, encoder=WordsEncoder())
    assert len(one) == 1
    three = choose_anchors(data.examples, POOL, TASK, share=3 / points_rows, encoder=WordsEncoder())
    # Request and fraud start level at zero; each pick raises one, so the picks alternate.
    assert sorted(three["target"]) in (["fraud", "fraud", "request"], ["fraud", "request", "request"])
    assert choose_anchors(data.examples, POOL, TASK, share=0, encoder=WordsEncoder()).empty
    with pytest.raises(ValueError, match="share"):
        choose_anchors(data.examples, POOL, TASK, share=-1, encoder=WordsEncoder())


def test_anchors_never_repeat_a_test_case_or_an_example_the_frame_uses():
    data, _, _ = built()
    anchors = choose_anchors(data.examples, POOL, TASK, share=5.0, encoder=WordsEncoder(), exclude={"z0"})
    assert not {"dup", "old"} & set(anchors["example_id"]), "texts that repeat the frame's test cases are not anchors"
    assert not set(anchors["example_id"]) & (set(data.examples["example_id"]) | {"z0"})
    frame = pd.concat([data.examples, anchors], ignore_index=True)
    assert find_leaks(frame, WordsEncoder()).empty


def test_a_pool_without_the_target_column_is_named():
    data, _, _ = built()
    with pytest.raises(ValueError, match="label"):
        choose_anchors(data.examples, POOL.drop(columns="label"), TASK, encoder=WordsEncoder())
