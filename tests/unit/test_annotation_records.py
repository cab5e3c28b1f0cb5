"""What annotators are shown, built from predictions without a server: summaries, priorities,
suggestions per task kind, the variants table, guidelines and the records sent to Argilla."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
from unit.annotation_cases import classification_predictions

from workbench.annotation.records import (
    NONE_OF_THESE,
    RecordData,
    Suggested,
    build_records,
    from_argilla_value,
    guidelines,
    question_options,
    summarise_examples,
    to_argilla_value,
)
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors

ANNOTATION = Path(__file__).resolve().parents[2] / "workbench" / "annotation"
TOPICS = task_from_dict({
    "name": "topics", "kind": "multilabel",
    "labels": [{"name": "billing", "definition": "charges"}, {"name": "bug", "definition": "wrong behaviour"},
               {"name": "performance", "definition": "slow or crashing"}],
})


@pytest.fixture(scope="module")
def cls_data(complaint_test):
    return complaint_test.head(30).reset_index(drop=True)


@pytest.fixture(scope="module")
def cls_predictions(cls_data, complaint_task):
    return classification_predictions(cls_data, complaint_task.label_names)


def test_summaries_follow_the_predictions(complaint_task, cls_data, cls_predictions):
    errors = find_errors(cls_predictions, cls_data, complaint_task)
    summaries = summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot", errors=errors,
                                   order=None)
    by_id = summaries.set_index("example_id")
    labels, gold = complaint_task.label_names, dict(zip(cls_data["example_id"], cls_data["label"]))
    for i, example_id in enumerate(cls_data["example_id"]):
        row = by_id.loc[example_id]
        other = labels[(labels.index(gold[example_id]) + 1) % len(labels)]
        if i == 4:  # unreadable twice: no suggestion, the table says why
            assert row["suggestion"] is None and row["consistency"] == 1.0
            assert "no usable answer" in row["variant_predictions"] and "no JSON object" in row["variant_predictions"]
            assert "\\|" in row["variant_predictions"] and "<b>" not in row["variant_predictions"]
            continue
        expected = other if i % 3 == 0 else gold[example_id]
        assert row["suggestion"] == expected  # a tie goes to the first repeat's answer
        assert row["suggestion_score"] == (0.5 if i % 5 == 0 else 1.0)
        assert row["consistency"] == (0.5 if i % 5 == 0 else 1.0)
        others = [other if i % 4 == 0 else gold[example_id], other if i % 2 == 0 else gold[example_id]]
        assert row["variants_disagreeing"] == sum(answer != expected for answer in others)
        assert row["variants_compared"] == 2
        wrong = i % 3 == 0 or i % 5 == 0
        assert row["error_type"] == (["wrong_label"] if wrong else ["correct"])
        assert "**zero\\_shot** (suggested)" in row["variant_predictions"] and "| cot |" in row["variant_predictions"]
    assert list(summaries["priority"]) == list(range(1, len(cls_data) + 1))
    assert list(summaries["example_id"]) == list(cls_data["example_id"])


def test_priority_orders(complaint_task, cls_data, cls_predictions):
    by_disagreement = summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot")
    keys = list(zip(-by_disagreement["variants_disagreeing"], by_disagreement["consistency"]))
    assert keys == sorted(keys) and by_disagreement["variants_disagreeing"].iloc[0] == 2
    by_consistency = summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot",
                                        order="consistency")
    keys = list(zip(by_consistency["consistency"], -by_consistency["variants_disagreeing"]))
    assert keys == sorted(keys) and by_consistency["consistency"].iloc[0] == 0.5
    # Ties keep the dataset's order.
    position = {example_id: i for i, example_id in enumerate(cls_data["example_id"])}
    for frame, columns in ((by_disagreement, ["variants_disagreeing", "consistency"]),
                           (by_consistency, ["consistency", "variants_disagreeing"])):
        for _, group in frame.groupby(columns):
            assert list(group["example_id"]) == sorted(group["example_id"], key=position.get)
    with pytest.raises(ValueError, match="order must be one of"):
        summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot", order="random")
    with pytest.raises(ValueError, match="'nope' is not in the predictions"):
        summarise_examples(complaint_task, cls_predictions, cls_data, variant="nope")


def test_ner_suggestions_score_each_span_and_drop_what_argilla_rejects(ae_task):
    text = "Aspirin 75 mg gave me a rash"
    data = pd.DataFrame([{"example_id": "a", "text": text, "spans": []}])
    drug, dose, rash = ({"start": 0, "end": 7, "label": "DRUG"}, {"start": 8, "end": 13, "label": "DOSE"},
                        {"start": 24, "end": 28, "label": "ADVERSE_EVENT"})
    overlapping = {"start": 0, "end": 10, "label": "DRUG"}  # overlaps both drug and dose: longest wins
    unknown = {"start": 24, "end": 28, "label": "SIDE_EFFECT"}
    predictions = pd.DataFrame([
        {"variant": "v", "example_id": "a", "repeat": 0, "prediction": [drug, dose, rash]},
        {"variant": "v", "example_id": "a", "repeat": 1, "prediction": [drug, dose, rash]},
        {"variant": "v", "example_id": "a", "repeat": 2, "prediction": [drug, rash]},
        {"variant": "w", "example_id": "a", "repeat": 0, "prediction": [overlapping, dose, unknown]},
    ])
    row = summarise_examples(ae_task, predictions, data, variant="v").iloc[0]
    assert row["suggestion"] == [drug, dose, rash]
    assert row["suggestion_score"] == pytest.approx([1.0, 2 / 3, 1.0])
    assert row["consistency"] == pytest.approx(2 / 3) and row["variants_disagreeing"] == 1
    assert "“Aspirin” DRUG" in row["variant_predictions"]
    row = summarise_examples(ae_task, predictions, data, variant="w").iloc[0]
    assert row["suggestion"] == [overlapping] and row["suggestion_score"] is None
    assert "2 part(s) of its answer could not be shown" in row["variant_predictions"]


def test_multilabel_suggestions_score_each_label_and_the_table_says_no_labels():
    data = pd.DataFrame([{"example_id": "a", "text": "Charged twice and it crashes", "labels": ["billing", "bug"]},
                         {"example_id": "b", "text": "Lovely app", "labels": []}])
    predictions = pd.DataFrame([
        {"variant": "v", "example_id": "a", "repeat": 0, "prediction": ["billing", "performance"]},
        {"variant": "v", "example_id": "a", "repeat": 1, "prediction": ["billing", "performance"]},
        {"variant": "v", "example_id": "a", "repeat": 2, "prediction": ["billing"]},
        {"variant": "v", "example_id": "b", "repeat": 0, "prediction": []},
        {"variant": "v", "example_id": "b", "repeat": 1, "prediction": []},
        {"variant": "v", "example_id": "b", "repeat": 2, "prediction": None},
        {"variant": "w", "example_id": "a", "repeat": 0, "prediction": ["billing", "nonsense"]},
        {"variant": "w", "example_id": "b", "repeat": 0, "prediction": ["bug"]},
    ])
    rows = summarise_examples(TOPICS, predictions, data, variant="v", order=None).set_index("example_id")
    assert rows.loc["a", "suggestion"] == ["billing", "performance"]
    assert rows.loc["a", "suggestion_score"] == pytest.approx([1.0, 2 / 3])
    assert rows.loc["b", "suggestion"] == [] and rows.loc["b", "suggestion_score"] is None
    assert "| **v** (suggested) | no labels |" in rows.loc["b", "variant_predictions"]
    assert "| w | bug |" in rows.loc["b", "variant_predictions"]
    row = summarise_examples(TOPICS, predictions, data, variant="w").set_index("example_id").loc["a"]
    assert row["suggestion"] == ["billing"] and row["suggestion_score"] is None
    assert "1 part(s) of its answer could not be shown" in row["variant_predictions"]


def test_the_table_escapes_markdown_and_shortens_long_answers(complaint_task):
    long = "x" * 400
    data = pd.DataFrame([{"example_id": "a", "text": "t", "label": "complaint"}])
    predictions = pd.DataFrame([
        {"variant": "v|1", "example_id": "a", "repeat": 0, "prediction": None, "parse_error": "bad *JSON*",
         "raw_response": long},
        {"variant": "w", "example_id": "a", "repeat": 0, "prediction": "complaint"},
    ])
    table = summarise_examples(complaint_task, predictions, data, variant="v|1").iloc[0]["variant_predictions"]
    assert "**v\\|1** (suggested)" in table and "bad \\*JSON\\*" in table
    cell = table.splitlines()[-2]
    assert "…" in cell and len(cell) < 400


def test_guidelines_name_what_to_check_and_define_every_label(complaint_task, ae_task):
    for task in (complaint_task, ae_task, TOPICS):
        text = guidelines(task)
        assert text.startswith(f"# {task.name}") and f"Check {task.kind.target_noun} against" in text
        for label in task.labels:
            assert f"### {label.name}\n{label.definition}" in text
        assert ("None of these" in text) == (task is TOPICS)


def test_records_carry_the_summary_and_argilla_ready_suggestions(complaint_task, cls_data, cls_predictions, ae_task):
    errors = find_errors(cls_predictions, cls_data, complaint_task)
    summaries = summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot", errors=errors)
    records = build_records(complaint_task, summaries)
    assert [record.id for record in records] == list(summaries["example_id"])
    for record, row in zip(records, summaries.to_dict("records")):
        assert record.fields == {"text": row["text"], "variant_predictions": row["variant_predictions"]}
        assert record.metadata == {"variant": "zero_shot", "consistency": row["consistency"],
                                   "variants_disagreeing": row["variants_disagreeing"],
                                   "priority": row["priority"], "error_type": row["error_type"]}
        if row["suggestion"] is None:
            assert record.suggestion is None
        else:
            assert record.suggestion == Suggested("label", row["suggestion"], row["suggestion_score"], "zero_shot")
            assert isinstance(record.suggestion.score, float)
    # Without errors there is no error_type; with one repeat no score.
    single = cls_predictions[cls_predictions["repeat"] == 0]
    plain = build_records(complaint_task, summarise_examples(complaint_task, single, cls_data, variant="cot"))
    assert "error_type" not in plain[0].metadata and plain[0].suggestion.score is None

    text = "Aspirin 75 mg"
    spans = [{"start": 0, "end": 7, "label": "DRUG", "text": "Aspirin"}, {"start": 8, "end": 13, "label": "DOSE"}]
    ner = build_records(ae_task, summarise_examples(
        ae_task, pd.DataFrame([{"variant": "v", "example_id": "a", "repeat": 0, "prediction": spans}]),
        pd.DataFrame([{"example_id": "a", "text": text}]), variant="v"))[0]
    assert ner.suggestion == Suggested("spans", [{"start": 0, "end": 7, "label": "DRUG"},
                                                 {"start": 8, "end": 13, "label": "DOSE"}], None, "v")

    predictions = pd.DataFrame([{"variant": "v", "example_id": eid, "repeat": 0, "prediction": answer}
                                for eid, answer in (("a", ["bug", "billing"]), ("b", []))])
    data = pd.DataFrame([{"example_id": "a", "text": "x"}, {"example_id": "b", "text": "y"}])
    topics = build_records(TOPICS, summarise_examples(TOPICS, predictions, data, variant="v", order=None))
    assert [record.suggestion.value for record in topics] == [["bug", "billing"], [NONE_OF_THESE]]
    assert all(isinstance(record, RecordData) and record.suggestion.question == "labels" for record in topics)


def test_answers_are_stored_as_argilla_wants_them(complaint_task, ae_task):
    label = complaint_task.kind.annotation_question(complaint_task)
    assert (label.question_type, label.name) == ("label", "label")
    assert question_options(label) == {name: name for name in complaint_task.label_names}
    assert to_argilla_value(label, "fraud") == from_argilla_value(label, "fraud") == "fraud"

    spans = ae_task.kind.annotation_question(ae_task)
    assert (spans.question_type, spans.name) == ("span", "spans")
    assert to_argilla_value(spans, [{"start": 0.0, "end": 4, "label": "DRUG", "text": "Asp"}]) == [
        {"start": 0, "end": 4, "label": "DRUG"}]
    assert to_argilla_value(spans, []) == []

    labels = TOPICS.kind.annotation_question(TOPICS)
    assert (labels.question_type, labels.name) == ("multi_label", "labels") and labels.name == TOPICS.kind.target_column
    assert list(question_options(labels)) == ["billing", "bug", "performance", NONE_OF_THESE]
    assert NONE_OF_THESE not in TOPICS.label_names
    assert to_argilla_value(labels, []) == [NONE_OF_THESE] and to_argilla_value(labels, ["bug"]) == ["bug"]
    assert from_argilla_value(labels, [NONE_OF_THESE]) == [] and from_argilla_value(labels, None) is None
    assert from_argilla_value(labels, ["bug", NONE_OF_THESE]) == ["bug"]
    for value in ([], ["billing", "bug"]):
        assert TOPICS.kind.read_response(from_argilla_value(labels, to_argilla_value(labels, value)),
                                         submitted=True) == value


def test_only_the_argilla_module_imports_argilla_and_nothing_branches_on_the_kind():
    importers = []
    for path in sorted(ANNOTATION.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(re.match(r"(argilla|httpx|workbench_argilla_embedded)(\.|$)", name) for name in names):
                importers.append(path.name)
        source = path.read_text(encoding="utf-8")
        assert not re.search(r'kind ==|"classification"|"ner"', source), f"{path.name} branches on the task kind"
    assert sorted(set(importers)) == ["_argilla.py"]
