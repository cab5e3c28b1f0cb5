"""Bad input is rejected before any model call, with an error naming the row and field."""

import json

import pandas as pd
import pytest

from workbench.core.data import DatasetError, load_dataset
from workbench.core.task import TaskSpecError, load_task, task_from_dict

CLASSIFICATION = task_from_dict({
    "name": "triage", "kind": "classification",
    "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}],
})
NER = task_from_dict({
    "name": "ae", "kind": "ner",
    "labels": [{"name": "DRUG", "definition": "x"}, {"name": "AE", "definition": "y"}],
})


def classification_rows(**overrides):
    rows = [
        {"example_id": "a", "text": "The app is slow.", "label": "complaint"},
        {"example_id": "b", "text": "New card please.", "label": "request"},
    ]
    rows[1].update(overrides)
    return pd.DataFrame(rows)


def ner_rows(spans):
    return pd.DataFrame([{"example_id": "n1", "text": "Took aspirin, got a rash.", "spans": spans}])


def test_valid_classification_dataset_loads_and_keeps_extra_columns():
    frame = classification_rows()
    frame["tags"] = [["hard"], []]
    loaded = load_dataset(frame, CLASSIFICATION)
    assert list(loaded["example_id"]) == ["a", "b"]
    assert list(loaded["tags"]) == [["hard"], []]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text": "   "}, "row 1 (example_id='b'): field 'text' is empty"),
        ({"text": 42}, "row 1 (example_id='b'): field 'text' must be a string, got int"),
        ({"text": None}, "row 1 (example_id='b'): field 'text' is missing"),
        ({"example_id": "a"}, "row 1 (example_id='a'): duplicate example_id, first used in row 0"),
        ({"label": "praise"}, "row 1 (example_id='b'): field 'label' is 'praise', which is not one of"),
        ({"label": None}, "row 1 (example_id='b'): field 'label' must be a non-empty string"),
        ({"example_id": None}, "row 1: field 'example_id' is empty"),
    ],
)
def test_bad_classification_rows_are_named(overrides, message):
    with pytest.raises(DatasetError) as raised:
        load_dataset(classification_rows(**overrides), CLASSIFICATION)
    assert message in str(raised.value)


def test_missing_columns_are_listed():
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['label'\]"):
        load_dataset(pd.DataFrame({"example_id": ["a"], "text": ["x"]}), CLASSIFICATION)


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([{"start": 5, "end": 40, "label": "DRUG"}], "offsets 5..40 are outside the text (length 25)"),
        ([{"start": -1, "end": 3, "label": "DRUG"}], "offsets -1..3 are outside the text"),
        ([{"start": 12, "end": 5, "label": "DRUG"}], "end (5) must be greater than start (12)"),
        ([{"start": 5, "end": 5, "label": "DRUG"}], "end (5) must be greater than start (5)"),
        ([{"start": 5, "end": 12, "label": "MEDICINE"}], "label 'MEDICINE' is not one of"),
        ([{"start": 5, "end": 12, "label": "DRUG"}, {"start": 10, "end": 13, "label": "AE"}], "overlaps span 5..12"),
        ([{"start": "five", "end": 12, "label": "DRUG"}], "start and end must be integers"),
        ([{"begin": 5, "end": 12, "label": "DRUG"}], "must be a mapping with start, end and label"),
        ("not json", "is a string that is not JSON"),
        (None, "field 'spans' is missing"),
    ],
)
def test_bad_spans_are_named(spans, message):
    with pytest.raises(DatasetError) as raised:
        load_dataset(ner_rows(spans), NER)
    assert "row 0 (example_id='n1')" in str(raised.value)
    assert message in str(raised.value)


def test_every_problem_is_reported_at_once():
    frame = pd.DataFrame([
        {"example_id": "a", "text": "", "label": "complaint"},
        {"example_id": "a", "text": "ok", "label": "nope"},
    ])
    with pytest.raises(DatasetError) as raised:
        load_dataset(frame, CLASSIFICATION)
    assert len(raised.value.problems) == 3


def test_files_in_each_format_load_the_same(tmp_path):
    rows = [{"example_id": "n1", "text": "Took aspirin.", "spans": [{"start": 5, "end": 12, "label": "DRUG"}]}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    csv = tmp_path / "d.csv"
    pd.DataFrame([{**rows[0], "spans": json.dumps(rows[0]["spans"])}]).to_csv(csv, index=False)
    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    for path in (jsonl, csv, parquet):
        loaded = load_dataset(path, NER)
        assert loaded.loc[0, "spans"] == [{"start": 5, "end": 12, "label": "DRUG"}], path.suffix


def test_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"example_id": "a", "text": "x", "label": "request"}\n{"example_id": \n')
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        load_dataset(path, CLASSIFICATION)


def test_numeric_ids_become_strings():
    frame = pd.DataFrame([{"example_id": 7, "text": "x", "label": "request"}])
    assert load_dataset(frame, CLASSIFICATION).loc[0, "example_id"] == "7"


def test_task_spec_errors_name_the_field(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("name: t\nkind: sentiment\nlabels:\n  - name: a\n    definition: x\n  - name: ' b'\n")
    with pytest.raises(TaskSpecError) as raised:
        load_task(path)
    assert "kind" in str(raised.value) and "labels.1.name" in str(raised.value)


def test_task_labels_must_be_unique_ignoring_case():
    with pytest.raises(TaskSpecError, match="'Drug' and 'DRUG' cannot be told apart"):
        task_from_dict({"name": "t", "kind": "ner", "labels": [
            {"name": "Drug", "definition": "x"}, {"name": "DRUG", "definition": "y"}]})


def test_texts_to_label_need_no_gold_column_but_a_present_one_is_checked():
    from workbench.core.data import DatasetError, validate_dataset
    from workbench.core.task import task_from_dict

    task = task_from_dict({"name": "t", "kind": "classification", "labels": [{"name": "a"}, {"name": "b"}]})
    texts = pd.DataFrame({"example_id": ["u1"], "text": ["hello"]})
    assert list(validate_dataset(texts, task, labelled=False).columns) == ["example_id", "text"]
    with pytest.raises(DatasetError, match="missing column"):
        validate_dataset(texts, task)
    with pytest.raises(DatasetError, match="u1"):
        validate_dataset(texts.assign(label=["c"]), task, labelled=False)


def test_plain_turns_parquet_and_numpy_values_into_json_ones():
    import numpy as np

    from workbench.core.frames import plain

    value = {"spans": np.array([{"start": np.int64(0), "end": np.int64(4)}], dtype=object),
             "labels": ("a", "b"), "score": np.float32(0.5), "missing": float("nan")}
    assert plain(value)["spans"] == [{"start": 0, "end": 4}] and type(plain(value)["spans"][0]["end"]) is int
    assert plain(value)["labels"] == ["a", "b"] and plain(value)["score"] == 0.5
    assert plain(value)["missing"] != plain(value)["missing"]  # NaN kept unless asked
    assert plain(value, missing_as_none=True)["missing"] is None
