"""Multi-label classification, the third task kind: data, answers, scores (checked against
scikit-learn) and errors, all through `task.kind`."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from workbench.core.data import DatasetError, label_counts, validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.evaluation.scores import confusion, per_label_scores, score
from workbench.evaluation.significance import bootstrap_ci, compare_variants
from workbench.prompting.runner import run_variants
from workbench.prompting.templates import answer_schema, render_messages
from workbench.prompting.variants import parse_variant
from workbench.testing.fake_model import FakeModel

TASK = task_from_dict({"name": "topics", "kind": "multilabel", "labels": [
    {"name": "billing", "definition": "Subscription fees."},
    {"name": "bug", "definition": "The app contradicts what it promises."},
    {"name": "performance", "definition": "Slow, crashes, freezes."},
]})
GOLD = validate_dataset(pd.DataFrame({
    "example_id": ["a", "b", "c", "d", "e", "f"],
    "text": ["charged twice", "it crashed", "great app", "slow and charged", "shows wrong total", "lag"],
    "labels": [["billing"], ["performance"], [], ["billing", "performance"], ["bug"], ["performance"]],
}), TASK)


def test_labels_are_validated_with_the_row_and_field():
    bad = pd.DataFrame({"example_id": ["x", "y", "z", "w"], "text": ["t"] * 4,
                        "labels": [["billing", "nope"], "not json", ["bug", "bug"], None]})
    with pytest.raises(DatasetError) as caught:
        validate_dataset(bad, TASK)
    message = str(caught.value)
    assert "row 0 (example_id='x'): field 'labels[1]' is 'nope'" in message
    assert "row 1 (example_id='y'): field 'labels' is a string that is not a JSON list" in message
    assert "row 2 (example_id='z'): field 'labels' lists ['bug'] more than once" in message
    assert "row 3 (example_id='w'): field 'labels' is missing; use []" in message
    # JSON text (as in a CSV) is read as a list; labels come back sorted.
    frame = validate_dataset(pd.DataFrame({"example_id": ["q"], "text": ["t"], "labels": ['["performance", "bug"]']}), TASK)
    assert frame.at[0, "labels"] == ["bug", "performance"]


def test_label_counts_count_every_label_of_every_text():
    assert label_counts(GOLD, TASK).to_dict() == {"billing": 2, "bug": 1, "performance": 3}


def test_schema_asks_for_a_list_of_known_labels_and_the_prompt_says_none_is_fine():
    schema = answer_schema(TASK, parse_variant("cot"))
    assert list(schema["properties"]) == ["reasoning", "labels"]
    assert schema["properties"]["labels"]["items"]["enum"] == ["billing", "bug", "performance"]
    system = render_messages(TASK, parse_variant("definitions"), "x")[0]["content"]
    assert "none, one or several of billing, bug, performance" in system
    assert "- bug: The app contradicts what it promises." in system
    assert TASK.kind.format_answer(TASK, {"text": "t", "labels": ["bug"]}) == '{"labels": ["bug"]}'


@pytest.mark.parametrize(("raw", "prediction", "error"), [
    ('{"labels": ["Performance", "billing"]}', ["billing", "performance"], None),
    ('Sure! ```json\n{"labels": []}\n```', [], None),
    ('{"reasoning": "slow", "labels": ["performance", "performance"]}', ["performance"], None),
    ('["bug"]', ["bug"], None),
    ('{"labels": "billing"}', ["billing"], None),
    ('{"labels": ["billing", "refunds"]}', None, "'refunds'"),
    ('{"topics_found": 2}', None, "no 'labels' key"),
    ("billing I think", None, "no JSON"),
])
def test_messy_answers_parse_or_say_why_not(raw, prediction, error):
    parsed = TASK.kind.parse(TASK, raw, "text")
    assert parsed.prediction == prediction
    if error is None:
        assert parsed.parse_error is None
    else:
        assert error in parsed.parse_error


def predictions_for(answers: dict[str, dict[str, list[str] | None]]) -> pd.DataFrame:
    rows = [{"variant": variant, "example_id": example_id, "repeat": 0, "prediction": prediction,
             "raw_response": "r", "parse_error": None if prediction is not None else "bad", "request_error": None}
            for variant, by_example in answers.items() for example_id, prediction in by_example.items()]
    return pd.DataFrame(rows)


PREDICTED = {
    "v1": {"a": ["billing"], "b": ["performance"], "c": [], "d": ["billing"], "e": ["performance"], "f": None},
    "v2": {"a": ["billing", "bug"], "b": ["performance"], "c": ["bug"], "d": ["billing", "performance"],
           "e": ["bug"], "f": ["performance"]},
}


def test_scores_match_scikit_learn():
    predictions = predictions_for(PREDICTED)
    scores = score(predictions, GOLD, TASK).set_index("variant")
    binarizer = MultiLabelBinarizer(classes=list(TASK.label_names))
    truth = binarizer.fit_transform(GOLD["labels"])
    for variant, answers in PREDICTED.items():
        predicted = binarizer.transform([answer or [] for answer in answers.values()])
        row = scores.loc[variant]
        assert row["f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
        assert row["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
        assert row["samples_f1"] == pytest.approx(f1_score(truth, predicted, average="samples", zero_division=1.0))
        assert row["hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
        usable = np.array([answer is not None for answer in answers.values()])
        exact = (truth == predicted).all(axis=1) & usable
        assert row["exact_match"] == pytest.approx(exact.mean())
    # The unparsed answer to "f" is wrong for exact match, though "no labels" would not be wrong on "c".
    assert scores.loc["v1", "exact_match"] == pytest.approx(3 / 6)
    assert scores.loc["v2", "exact_match"] == pytest.approx(accuracy_score(truth, binarizer.transform(
        list(PREDICTED["v2"].values()))))
    per_label = per_label_scores(predictions, GOLD, TASK)
    mine = per_label[per_label["variant"] == "v2"].set_index("label")
    p, r, f, s = precision_recall_fscore_support(truth, binarizer.transform(list(PREDICTED["v2"].values())),
                                                 average=None, zero_division=0)
    assert mine["f1"].tolist() == pytest.approx(list(f)) and mine["support"].tolist() == list(s)
    assert confusion(predictions, GOLD, TASK, "v1") is None


def test_intervals_and_comparisons_use_micro_f1():
    predictions = predictions_for(PREDICTED)
    ci = bootstrap_ci(predictions, GOLD, TASK, n_resamples=200).set_index("variant")
    scores = score(predictions, GOLD, TASK).set_index("variant")
    assert (ci["metric"] == "micro_f1").all()
    assert ci.loc["v2", "value"] == pytest.approx(scores.loc["v2", "f1"])
    assert ci.loc["v1", "low"] <= ci.loc["v1", "value"] <= ci.loc["v1", "high"]
    comparison = compare_variants(predictions, GOLD, TASK, "v2", "v1", n_resamples=200)
    assert comparison.difference == pytest.approx(scores.loc["v2", "f1"] - scores.loc["v1", "f1"])
    macro = bootstrap_ci(predictions, GOLD, TASK, "macro_f1", n_resamples=50).set_index("variant")
    assert macro.loc["v2", "value"] == pytest.approx(scores.loc["v2", "macro_f1"])


def test_errors_name_each_missed_and_extra_label():
    predictions = predictions_for(PREDICTED)
    errors = find_errors(predictions, GOLD, TASK)
    v1 = errors[errors["variant"] == "v1"]
    assert set(zip(v1["example_id"], v1["error_type"], v1["label"].where(v1["label"].notna(), None))) == {
        ("d", "false_negative", "performance"), ("e", "false_negative", "bug"),
        ("e", "false_positive", "performance"), ("f", "parse_failure", None)}
    assert v1.loc[v1["example_id"] == "e", "gold"].iloc[0] == ["bug"]
    assert v1.loc[v1["error_type"] == "parse_failure", "parse_error"].iloc[0] == "bad"


def test_the_runner_parses_multilabel_answers_end_to_end():
    model = FakeModel(lambda request: '{"labels": ["performance"]}' if "crash" in request.messages[1]["content"]
                      else '{"labels": []}')
    predictions = run_variants(TASK, GOLD, ["zero_shot"], model, progress=False)
    assert predictions.set_index("example_id").at["b", "prediction"] == ["performance"]
    assert predictions.set_index("example_id").at["c", "prediction"] == []
    assert score(predictions, GOLD, TASK).iloc[0]["exact_match"] == pytest.approx(2 / 6)
    assert not math.isnan(score(predictions, GOLD, TASK).iloc[0]["f1"])
