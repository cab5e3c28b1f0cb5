"""Consistency across repeats against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from workbench.evaluation.consistency import example_consistency, fleiss_kappa, score_consistency


def repeated(answers_by_example):
    rows = []
    for example_id, answers in answers_by_example.items():
        for repeat, answer in enumerate(answers):
            rows.append({"variant": "v", "example_id": example_id, "repeat": repeat, "prediction": answer})
    return pd.DataFrame(rows)


def test_hand_computed_consistency():
    frame = repeated({"e1": ["a", "a", "a"], "e2": ["a", "b", "a"], "e3": [None, None, "b"]})
    row = score_consistency(frame).iloc[0]
    assert row["all_agree_share"] == pytest.approx(1 / 3)
    assert row["mean_pairwise_agreement"] == pytest.approx(5 / 9)
    # Categories a, b, unparsed: P-bar 5/9, P-e 11/27, kappa (5/9 - 11/27) / (16/27) = 1/4.
    assert row["fleiss_kappa"] == pytest.approx(0.25)
    per_example = example_consistency(frame).set_index("example_id")
    assert per_example.loc["e2", "majority_share"] == pytest.approx(2 / 3)
    assert per_example.loc["e3", "distinct_answers"] == 2


def test_fleiss_kappa_matches_the_published_worked_example():
    # Fleiss (1971) style example: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    counts = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)


def test_ner_answers_compare_as_span_sets_regardless_of_order():
    first = [{"start": 0, "end": 3, "label": "X", "text": "abc"}, {"start": 5, "end": 6, "label": "Y", "text": "d"}]
    frame = repeated({"e1": [first, list(reversed(first))], "e2": [first, []]})
    row = score_consistency(frame).iloc[0]
    assert row["all_agree_share"] == 0.5


def test_single_repeat_has_no_kappa_and_unequal_repeats_are_refused():
    assert math.isnan(score_consistency(repeated({"e1": ["a"], "e2": ["b"]})).iloc[0]["fleiss_kappa"])
    with pytest.raises(ValueError, match="different numbers of repeats"):
        score_consistency(repeated({"e1": ["a", "a"], "e2": ["b"]}))
