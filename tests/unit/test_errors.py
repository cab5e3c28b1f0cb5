"""find_errors: one row per mistake with its text and raw answer."""

import pandas as pd

from workbench.core.task import task_from_dict
from workbench.evaluation.errors import ERROR_COLUMNS, find_errors

CLS = task_from_dict({"name": "t", "kind": "classification",
                      "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})
NER = task_from_dict({"name": "n", "kind": "ner",
                      "labels": [{"name": "DRUG", "definition": "x"}, {"name": "AE", "definition": "y"}]})


def rows(variant, example_ids, predictions, raw=None, parse_errors=None, hallucinations=None):
    n = len(example_ids)
    return pd.DataFrame({
        "variant": variant, "example_id": example_ids, "repeat": 0, "prediction": predictions,
        "raw_response": raw or ["r"] * n, "parse_error": parse_errors or [None] * n, "request_error": None,
        "hallucinations": hallucinations or [[] for _ in range(n)],
    })


def test_classification_errors_are_wrong_labels_and_parse_failures():
    gold = pd.DataFrame({"example_id": ["1", "2", "3"], "text": ["t1", "t2", "t3"], "label": ["a", "b", "a"]})
    predictions = rows("v", ["1", "2", "3"], ["a", "a", None], raw=["x", "y", "oops"], parse_errors=[None, None, "no JSON"])
    errors = find_errors(predictions, gold, CLS)
    assert list(errors.columns) == ERROR_COLUMNS
    assert errors[["example_id", "error_type", "gold", "text", "raw_response"]].values.tolist() == [
        ["2", "wrong_label", "b", "t2", "y"],
        ["3", "parse_failure", "a", "t3", "oops"],
    ]
    assert errors.loc[0, "predicted"] == "a" and pd.isna(errors.loc[1, "predicted"])
    assert pd.isna(errors.loc[0, "parse_error"]) and errors.loc[1, "parse_error"] == "no JSON"


def test_no_errors_gives_an_empty_frame_with_the_columns():
    gold = pd.DataFrame({"example_id": ["1"], "text": ["t"], "label": ["a"]})
    errors = find_errors(rows("v", ["1"], ["a"]), gold, CLS)
    assert errors.empty and list(errors.columns) == ERROR_COLUMNS


def test_ner_errors_carry_text_and_raw_response():
    text = "Took aspirin, got a rash."
    gold = pd.DataFrame({"example_id": ["1"], "text": [text], "spans": [[
        {"start": 5, "end": 12, "label": "DRUG"}, {"start": 20, "end": 24, "label": "AE"}]]})
    predicted = [[{"start": 5, "end": 12, "label": "AE", "text": "aspirin"}]]
    errors = find_errors(rows("v", ["1"], predicted, raw=["{...}"], hallucinations=[[{"text": "ibuprofen", "label": "DRUG"}]]), gold, NER)
    assert sorted(errors["error_type"]) == ["false_negative", "hallucination", "wrong_label"]
    assert (errors["text"] == text).all() and (errors["raw_response"] == "{...}").all()
