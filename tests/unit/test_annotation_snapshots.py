"""Corrections read from Argilla's REST JSON, and the snapshot files they are kept in (no server)."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.annotation import correction_columns, load_corrections, snapshots
from workbench.annotation.records import NONE_OF_THESE
from workbench.annotation.snapshots import correction_rows, corrections_frame, write_snapshot
from workbench.core.task import task_from_dict

TOPICS = task_from_dict({
    "name": "topics", "kind": "multilabel",
    "labels": [{"name": "billing", "definition": "charges"}, {"name": "bug", "definition": "wrong behaviour"}],
})
QUESTIONS = {"q-answer": "label", "q-spans": "spans", "q-labels": "labels", "q-note": "note"}
USERS = {"u1": "ann", "u2": "bob"}
STAMP = "2030-01-02T03:04:05.000006"


def response(user, status, values, stamp=STAMP):
    return {"user_id": user, "status": status, "updated_at": stamp,
            "values": {name: {"value": value} for name, value in values.items()}}


def suggestion(question, value, agent="zero_shot", score=None):
    return {"question_id": question, "value": value, "agent": agent, "score": score}


def test_classification_rows_follow_the_responses(complaint_task):
    records = [
        {"external_id": "a", "suggestions": [suggestion("q-answer", "fraud", score=0.5)],
         "responses": [response("u1", "submitted", {"label": "fraud"}),
                       response("u2", "submitted", {"label": "hardship", "note": "not fraud"}),
                       response("u3", "discarded", {})]},
        {"external_id": "b", "suggestions": [], "responses": [response("u1", "draft", {"label": "fraud"})]},
    ]
    rows = correction_rows(complaint_task, records, QUESTIONS, USERS)
    assert [(r["example_id"], r["annotator"], r["label"], r["accepted_suggestion"]) for r in rows] == [
        ("a", "ann", "fraud", True), ("a", "bob", "hardship", False)]
    assert rows[1]["note"] == "not fraud" and rows[0]["note"] is None
    assert (rows[0]["suggested"], rows[0]["suggestion_agent"], rows[0]["suggestion_score"]) == (
        "fraud", "zero_shot", 0.5)
    assert rows[0]["submitted_at"] == "2030-01-02T03:04:05.000006+00:00"
    every = correction_rows(complaint_task, records, QUESTIONS, USERS, statuses=("submitted", "discarded", "draft"))
    assert [(r["annotator"], r["status"]) for r in every] == [
        ("ann", "submitted"), ("bob", "submitted"), ("u3", "discarded"), ("ann", "draft")]
    assert every[2]["label"] is None and not every[2]["accepted_suggestion"]
    assert every[3]["suggested"] is None and not every[3]["accepted_suggestion"]  # a draft is never "accepted"
    with pytest.raises(ValueError, match="statuses may be"):
        correction_rows(complaint_task, records, QUESTIONS, USERS, statuses=("pending",))


def test_ner_rows_sort_spans_and_read_a_submission_without_spans_as_none(ae_task):
    drug, dose = {"start": 0, "end": 7, "label": "DRUG"}, {"start": 8, "end": 13, "label": "DOSE"}
    records = [
        {"external_id": "a", "suggestions": [suggestion("q-spans", [dose, drug], score=[1.0, 0.5])],
         "responses": [response("u1", "submitted", {"spans": [dose, drug]}),
                       response("u2", "submitted", {"spans": [drug]})]},
        {"external_id": "b", "suggestions": [suggestion("q-spans", [])],
         "responses": [response("u1", "submitted", {"note": "nothing here"}),
                       response("u2", "draft", {"note": "later"})]},
    ]
    rows = correction_rows(ae_task, records, QUESTIONS, USERS, statuses=("submitted", "draft"))
    assert rows[0]["spans"] == [drug, dose] and rows[0]["suggested"] == [drug, dose] and rows[0]["accepted_suggestion"]
    assert rows[1]["spans"] == [drug] and not rows[1]["accepted_suggestion"]
    assert rows[2]["spans"] == [] and rows[2]["suggested"] == [] and rows[2]["accepted_suggestion"]
    assert rows[3]["spans"] is None  # a draft without spans has no answer yet


def test_multilabel_rows_read_none_of_these_as_no_labels():
    records = [
        {"external_id": "a", "suggestions": [suggestion("q-labels", ["bug", "billing"], score=[1.0, 0.5])],
         "responses": [response("u1", "submitted", {"labels": ["billing", "bug"]}),
                       response("u2", "submitted", {"labels": ["bug"]})]},
        {"external_id": "b", "suggestions": [suggestion("q-labels", [NONE_OF_THESE])],
         "responses": [response("u1", "submitted", {"labels": [NONE_OF_THESE]}),
                       response("u2", "submitted", {"labels": ["bug", NONE_OF_THESE]})]},
    ]
    rows = correction_rows(TOPICS, records, QUESTIONS, USERS)
    assert [(r["labels"], r["suggested"], r["accepted_suggestion"]) for r in rows] == [
        (["billing", "bug"], ["billing", "bug"], True),
        (["bug"], ["billing", "bug"], False),
        ([], [], True),
        (["bug"], [], False),
    ]
    frame = corrections_frame(rows, TOPICS)
    assert list(frame.columns) == correction_columns(TOPICS) and "labels" in frame.columns
    assert str(frame["submitted_at"].dt.tz) == "UTC" and frame["accepted_suggestion"].dtype == bool


def test_snapshots_are_new_files_that_load_back_as_the_same_frame(tmp_path, monkeypatch, complaint_task):
    rows = correction_rows(complaint_task, [
        {"external_id": "a", "suggestions": [], "responses": [response("u1", "submitted", {"label": "fraud"})]},
    ], QUESTIONS, USERS)

    class Frozen(snapshots.datetime):
        @classmethod
        def now(cls, tz=None):
            return snapshots.datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=tz)

    monkeypatch.setattr(snapshots, "datetime", Frozen)
    paths = [write_snapshot(rows, tmp_path, "my data/set") for _ in range(3)]
    assert [path.name for path in paths] == [
        "20300102T030405.000006Z.jsonl", "20300102T030405.000006Z-1.jsonl", "20300102T030405.000006Z-2.jsonl"]
    assert {path.parent.name for path in paths} == {"my data_set"}
    assert {p.name for p in paths[0].parent.iterdir()} == {p.name for p in paths}  # no .partial left
    loaded = load_corrections(paths[0], complaint_task)
    pd.testing.assert_frame_equal(loaded, corrections_frame(rows, complaint_task))
    empty = load_corrections(write_snapshot([], tmp_path, "empty"), complaint_task)
    assert empty.empty and list(empty.columns) == correction_columns(complaint_task)
