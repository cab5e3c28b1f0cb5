"""Bootstrap intervals cover the truth as often as they claim; paired tests match hand computation."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from workbench.core.task import task_from_dict
from workbench.evaluation.significance import bootstrap_ci, compare_variants

TASK = task_from_dict({"name": "t", "kind": "classification",
                       "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})


def frame_from(correct_by_variant, repeats=1):
    n = len(next(iter(correct_by_variant.values())))
    gold = pd.DataFrame({"example_id": [str(i) for i in range(n)], "text": "t", "label": "a"})
    rows = []
    for variant, correct in correct_by_variant.items():
        for repeat in range(repeats):
            for example_id, ok in zip(gold["example_id"], correct):
                rows.append({"variant": variant, "example_id": example_id, "repeat": repeat,
                             "prediction": "a" if ok else "b"})
    return pd.DataFrame(rows), gold


def test_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for trial in range(trials):
        predictions, gold = frame_from({"v": rng.random(200) < 0.7})
        ci = bootstrap_ci(predictions, gold, TASK, "accuracy", n_resamples=1000, seed=trial).iloc[0]
        covered += ci["low"] <= 0.7 <= ci["high"]
    assert 0.90 <= covered / trials <= 0.99


def test_interval_brackets_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(*frame_from({"v": rng.random(50) < 0.6}), TASK).iloc[0]
    large = bootstrap_ci(*frame_from({"v": rng.random(2000) < 0.6}), TASK).iloc[0]
    assert small["low"] <= small["value"] <= small["high"]
    assert (large["high"] - large["low"]) < (small["high"] - small["low"]) / 3


def test_mcnemar_exact_matches_the_binomial_test():
    # 10 examples only a gets right, 2 only b gets right, 28 both right.
    a = [True] * 10 + [False] * 2 + [True] * 28
    b = [False] * 10 + [True] * 2 + [True] * 28
    predictions, gold = frame_from({"a": a, "b": b})
    comparison = compare_variants(predictions, gold, TASK, "a", "b")
    assert comparison.method == "mcnemar_exact"
    assert comparison.p_value == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert comparison.difference == pytest.approx(8 / 40)
    assert comparison.significant
    assert "significant" in comparison.statement()


def test_identical_variants_are_not_significantly_different():
    rng = np.random.default_rng(3)
    same = rng.random(100) < 0.5
    predictions, gold = frame_from({"a": same, "b": same}, repeats=2)
    comparison = compare_variants(predictions, gold, TASK, "a", "b")
    assert comparison.method == "paired_bootstrap"
    assert comparison.difference == 0 and not comparison.significant
    assert comparison.p_value == 1.0
    assert "not significant" in comparison.statement()


def test_macro_f1_interval_for_classification():
    rng = np.random.default_rng(5)
    gold = pd.DataFrame({"example_id": [str(i) for i in range(100)], "text": "t", "label": rng.choice(["a", "b"], 100)})
    predicted = np.where(rng.random(100) < 0.8, gold["label"], np.where(gold["label"] == "a", "b", "a"))
    predictions = pd.DataFrame({"variant": "v", "example_id": gold["example_id"], "prediction": predicted})
    ci = bootstrap_ci(predictions, gold, TASK, "macro_f1").iloc[0]
    from sklearn.metrics import f1_score

    assert ci["value"] == pytest.approx(f1_score(gold["label"], predicted, average="macro"))
    assert ci["low"] < ci["value"] < ci["high"]
