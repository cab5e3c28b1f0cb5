"""Classification scores and cost/speed, against hand-computed values and scikit-learn."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from workbench.core.kinds.classification_scoring import confusion, per_label_scores, score_classification
from workbench.core.task import task_from_dict
from workbench.evaluation.efficiency import score_efficiency, summarize_run

TASK = task_from_dict({"name": "t", "kind": "classification",
                       "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})
GOLD = pd.DataFrame({"example_id": ["1", "2", "3", "4"], "text": ["w", "x", "y", "z"], "label": ["a", "a", "b", "b"]})


def predictions(variant, labels, **columns):
    n = len(labels)
    frame = pd.DataFrame({
        "variant": variant, "example_id": GOLD["example_id"][:n].tolist(), "repeat": 0, "prediction": labels,
        "parse_error": [None if label is not None else "bad" for label in labels], "request_error": None,
        "hallucinations": [[] for _ in labels], "latency_s": columns.get("latency", [0.1] * n),
        "tokens_in": 10, "tokens_out": 2, "cost": columns.get("cost", [0.001] * n),
    })
    return frame


def test_hand_computed_scores_with_an_unparsed_answer():
    scores = score_classification(predictions("v", ["a", "b", "b", None]), GOLD, TASK).iloc[0]
    assert scores["accuracy"] == 0.5
    # a: P 1, R .5, F1 2/3; b: P .5, R .5, F1 .5
    assert scores["f1_macro"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert scores["precision_micro"] == pytest.approx(2 / 3)
    assert scores["recall_micro"] == pytest.approx(0.5)
    assert scores["f1_micro"] == pytest.approx(4 / 7)
    per_label = per_label_scores(predictions("v", ["a", "b", "b", None]), GOLD, TASK).set_index("label")
    assert per_label.loc["a", "precision"] == 1.0 and per_label.loc["b", "precision"] == 0.5
    assert per_label["support"].tolist() == [2, 2]


def test_all_wrong_and_all_unparsed_score_zero():
    assert score_classification(predictions("v", ["b", "b", "a", "a"]), GOLD, TASK).iloc[0]["f1_macro"] == 0
    unparsed = score_classification(predictions("v", [None] * 4), GOLD, TASK).iloc[0]
    assert unparsed["accuracy"] == 0 and unparsed["f1_weighted"] == 0


def test_agrees_with_scikit_learn_on_random_labels():
    rng = np.random.default_rng(1)
    labels = [f"l{i}" for i in range(5)]
    task = task_from_dict({"name": "t", "kind": "classification", "labels": [{"name": l, "definition": "d"} for l in labels]})
    gold = pd.DataFrame({"example_id": [str(i) for i in range(300)], "text": "t", "label": rng.choice(labels, 300)})
    predicted = rng.choice(labels, 300).tolist()
    frame = pd.DataFrame({"variant": "v", "example_id": gold["example_id"], "prediction": predicted})
    scores = score_classification(frame, gold, task).iloc[0]
    for average in ("macro", "micro", "weighted"):
        assert scores[f"f1_{average}"] == pytest.approx(f1_score(gold["label"], predicted, average=average))


def test_confusion_matrix_counts_unparsed_answers_in_their_own_column():
    matrix = confusion(predictions("v", ["a", "b", "b", None]), GOLD, TASK, "v")
    assert matrix.loc["a"].tolist() == [1, 1, 0]
    assert matrix.loc["b"].tolist() == [0, 1, 1]
    assert list(matrix.columns) == ["a", "b", "<unparsed>"]


def test_efficiency_percentiles_and_cost_per_thousand():
    frame = predictions("v", ["a", "b", "b", "a"], latency=[0.1, 0.2, 0.3, 1.0], cost=[0.001, 0.001, 0.002, 0.0])
    row = score_efficiency(frame).iloc[0]
    assert row["latency_p50_s"] == pytest.approx(0.25)
    assert row["latency_p95_s"] == pytest.approx(np.percentile([0.1, 0.2, 0.3, 1.0], 95))
    assert row["cost_per_1000"] == pytest.approx(0.004 / 4 * 1000)
    frame.loc[0, "cost"] = math.nan
    assert math.isnan(score_efficiency(frame).iloc[0]["cost_per_1000"])


def test_summary_keeps_run_order_and_headline_first():
    frame = pd.concat([predictions("z", ["a", "a", "b", "b"]), predictions("y", ["b", "a", "b", "b"])])
    summary = summarize_run(frame, GOLD, TASK)
    assert summary["variant"].tolist() == ["z", "y"]
    assert summary.columns[:3].tolist() == ["variant", "n", "accuracy"]
    assert summary["accuracy"].tolist() == [1.0, 0.75]


def test_unknown_example_ids_are_refused():
    frame = predictions("v", ["a"]).assign(example_id="nope")
    with pytest.raises(ValueError, match="not in the gold data"):
        score_classification(frame, GOLD, TASK)
