"""Intervals cover the truth as often as they claim; a verdict agrees with its own p-value and interval;
paired tests match hand computation; Holm's adjustment; how many examples a difference needs."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, bootstrap, norm

from workbench.core.task import task_from_dict
from workbench.evaluation.significance import _tango_z, bootstrap_ci, compare_all, compare_variants, holm
from workbench.testing.coverage import interval_coverage

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


# Measured by simulation (`workbench.testing.coverage`, also printed by benchmarks/interval_coverage.py)
# with these seeds: 1,000 simulated test sets each, nominal 95%.
#   accuracy (Wilson)            n=24: 94.8%   n=40: 94.5%   n=200: 95.8%
#   NER micro F1 (expanded BCa)  n=24: 94.2%   n=40: 94.4%   n=200: 95.3%
@pytest.mark.parametrize("metric", ["accuracy", "micro_f1"])
@pytest.mark.parametrize("n", [24, 40, 200])
def test_intervals_cover_the_truth_95_percent_of_the_time_also_at_small_n(metric, n):
    measured = interval_coverage(metric, n, trials=1000, n_resamples=1000)
    assert 0.93 <= measured["coverage"] <= 0.97, measured


def test_interval_brackets_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(*frame_from({"v": rng.random(50) < 0.6}), TASK).iloc[0]
    large = bootstrap_ci(*frame_from({"v": rng.random(2000) < 0.6}), TASK).iloc[0]
    assert small["low"] <= small["value"] <= small["high"]
    assert (large["high"] - large["low"]) < (small["high"] - small["low"]) / 3


def test_mcnemar_score_test_matches_hand_computation_and_tangos_interval():
    # 10 examples only a gets right, 2 only b gets right, 28 both right.
    a = [True] * 10 + [False] * 2 + [True] * 28
    b = [False] * 10 + [True] * 2 + [True] * 28
    predictions, gold = frame_from({"a": a, "b": b})
    comparison = compare_variants(predictions, gold, TASK, "a", "b")
    assert comparison.method == "mcnemar_score"
    assert comparison.p_value == pytest.approx(2 * norm.sf(8 / 12 ** 0.5))  # z = (b - c) / sqrt(b + c)
    # Tango's score interval: Z(low) = 1.96 and Z(high) = -1.96, checked on the statistic itself.
    assert _tango_z(10, 2, 40, comparison.low) == pytest.approx(1.959964, abs=1e-6)
    assert _tango_z(10, 2, 40, comparison.high) == pytest.approx(-1.959964, abs=1e-6)
    assert comparison.difference == pytest.approx(8 / 40)
    assert comparison.significant
    assert "significant" in comparison.statement()


def test_identical_variants_are_not_significantly_different():
    rng = np.random.default_rng(3)
    same = rng.random(100) < 0.5
    predictions, gold = frame_from({"a": same, "b": same}, repeats=2)
    comparison = compare_variants(predictions, gold, TASK, "a", "b")
    assert comparison.method == "bca_bootstrap"
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


def test_one_repeat_accuracy_uses_wilsons_interval():
    predictions, gold = frame_from({"v": [True] * 18 + [False] * 6})
    ci = bootstrap_ci(predictions, gold, TASK).iloc[0]
    wilson = binomtest(18, 24).proportion_ci(0.95, method="wilson")
    assert ci["method"] == "wilson" and ci["n_resamples"] == 0
    assert (ci["low"], ci["high"]) == pytest.approx((wilson.low, wilson.high))


def test_bca_interval_agrees_with_scipy_where_samples_are_large():
    # At small n the interval is deliberately wider (see `_expanded_z`); at n = 400 the widening is 0.4%.
    rng = np.random.default_rng(11)
    correct = rng.random(400) < 0.65
    predictions, gold = frame_from({"v": correct}, repeats=2)  # two repeats: not a plain proportion
    ci = bootstrap_ci(predictions, gold, TASK, n_resamples=20000, seed=1).iloc[0]
    per_example = np.asarray(correct, dtype=float)
    reference = bootstrap((per_example,), np.mean, n_resamples=20000, method="BCa", random_state=1).confidence_interval
    assert ci["method"] == "bca_bootstrap"
    assert ci["low"] == pytest.approx(reference.low, abs=0.01) and ci["high"] == pytest.approx(reference.high, abs=0.01)


def test_mcnemar_interval_inverts_the_same_test():
    # Near the edge: 9 of 11 discordant examples won by a gives p just below 0.05; 8 of 11 above.
    for a_only, b_only in [(9, 2), (10, 2), (8, 3), (6, 6), (12, 0), (0, 7)]:
        a = [True] * a_only + [False] * b_only + [True] * 20
        b = [False] * a_only + [True] * b_only + [True] * 20
        comparison = compare_variants(*frame_from({"a": a, "b": b}), TASK, "a", "b")
        excludes_zero = comparison.low > 0 or comparison.high < 0
        assert comparison.method == "mcnemar_score"
        assert excludes_zero == (comparison.p_value < 0.05) == comparison.significant
        assert comparison.low - 1e-12 <= comparison.difference <= comparison.high + 1e-12


def test_bootstrap_verdicts_never_contradict_their_intervals():
    rng = np.random.default_rng(21)
    disagreements = 0
    for trial in range(60):
        base = rng.random(40) < 0.6
        better = np.where(rng.random(40) < rng.uniform(0, 0.3), True, base)
        predictions, gold = frame_from({"a": better, "b": base}, repeats=2)
        comparison = compare_variants(predictions, gold, TASK, "a", "b", n_resamples=1000, seed=trial)
        excludes_zero = comparison.low > 0 or comparison.high < 0
        disagreements += excludes_zero != comparison.significant
    assert disagreements == 0


def test_holm_adjustment_matches_the_step_down_rule_and_decides_the_words():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    # Four variants, each a little better than the baseline: raw p below 0.05 need not survive.
    base = [True] * 30 + [False] * 10
    variants = {"base": base}
    for index in range(3):
        variants[f"v{index}"] = [True] * 30 + [True] * (4 + index) + [False] * (6 - index)
    predictions, gold = frame_from(variants)
    comparisons = compare_all(predictions, gold, TASK, "base")
    assert [c.adjustment for c in comparisons] == ["holm"] * 3
    assert [c.p_adjusted for c in comparisons] == pytest.approx(holm([c.p_value for c in comparisons]))
    for comparison in comparisons:
        assert comparison.significant == (comparison.p_adjusted < 0.05)
        assert "holm-adjusted p" in comparison.statement()
    assert any(c.p_value < 0.05 <= c.p_adjusted for c in comparisons)


def test_examples_needed_says_when_the_test_set_is_too_small():
    a = [True] * 3 + [False] * 1 + [True] * 20
    b = [False] * 3 + [True] * 1 + [True] * 20
    comparison = compare_variants(*frame_from({"a": a, "b": b}), TASK, "a", "b")
    # Connor's formula at discordant share 4/24 and difference 2/24.
    discordant, difference = 4 / 24, 2 / 24
    expected = (1.959964 * discordant ** 0.5 + 0.841621 * (discordant - difference ** 2) ** 0.5) ** 2 / difference ** 2
    assert comparison.examples_needed == int(np.ceil(expected)) and comparison.examples == 24
    assert not comparison.significant and comparison.too_small
    assert f"about {comparison.examples_needed:,} examples" in comparison.power_note()
    same = compare_variants(*frame_from({"a": a, "b": a}), TASK, "a", "b")
    assert same.examples_needed is None and "same accuracy" in same.power_note()


def test_tangos_interval_covers_the_paired_difference_at_small_n():
    # The interval must hold for the difference in accuracy itself, not only given how many examples
    # one variant alone got right: simulated paired answers, 1,000 test sets of 24 examples.
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(1000):
        only_a, only_b, _rest = rng.multinomial(24, [0.15, 0.05, 0.80])
        a = [True] * only_a + [False] * only_b + [True] * (24 - only_a - only_b)
        b = [False] * only_a + [True] * only_b + [True] * (24 - only_a - only_b)
        comparison = compare_variants(*frame_from({"a": a, "b": b}), TASK, "a", "b")
        covered += comparison.low <= 0.10 <= comparison.high
    assert 0.93 <= covered / 1000 <= 0.98
