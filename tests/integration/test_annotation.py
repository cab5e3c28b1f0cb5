"""The annotation round trip against the real embedded Argilla (the session fixture `argilla`).

Predictions come from `unit.annotation_cases` (fixed patterns, so every expectation can be worked
out by hand) or, for the multi-label task, from the runner with a fake model. Annotators answer
over the REST endpoints the web UI calls, with their own keys or, for a second annotator made by
the owner, a token from the UI's sign-in endpoint; the multi-label test uses the scripted
annotator (`workbench.testing.annotator`). The checks that need no server are in tests/unit
(test_annotation_records.py, test_annotation_snapshots.py, test_annotation_agreement.py,
test_annotation_connect.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from unit.annotation_cases import classification_predictions, ner_predictions

from workbench.annotation import (
    AnnotationError,
    ArgillaUnavailableError,
    PushError,
    annotator_agreement,
    connect,
    dataset_settings,
    load_corrections,
    pull_corrections,
    push_errors,
    push_predictions,
    suggestion_acceptance,
)
from workbench.annotation.records import NONE_OF_THESE, summarise_examples
from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.consistency import fleiss_kappa
from workbench.evaluation.errors import find_errors
from workbench.prompting.runner import run_variants
from workbench.testing.annotator import submit_responses
from workbench.testing.fake_model import FakeModel
from workbench_argilla_embedded.manage import missing_environment

pytestmark = pytest.mark.integration


MISSING = missing_environment()
needs_server = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def cls_data(complaint_test):
    return complaint_test.head(30).reset_index(drop=True)


@pytest.fixture(scope="module")
def cls_predictions(cls_data, complaint_task):
    return classification_predictions(cls_data, complaint_task.label_names)


@pytest.fixture(scope="module")
def ner_data(ae_test):
    return ae_test.head(16).reset_index(drop=True)


# Against the real server.
@pytest.fixture(scope="module")
def client(argilla):
    return connect(argilla["info"].api_url, argilla["keys"]["owner"])


def ui_client(argilla, user: str = "annotator") -> httpx.Client:
    return httpx.Client(base_url=argilla["info"].api_url, headers={"X-Argilla-Api-Key": argilla["keys"][user]},
                        timeout=30.0)


def server_records(client, name: str) -> list[dict]:
    """The dataset's records as the REST API lists them (in the order they were first logged)."""
    dataset = client.datasets(name, workspace="workbench")
    response = client.http_client.get(f"/api/v1/datasets/{dataset.id}/records",
                                      params={"include": ["responses", "suggestions"], "limit": 1000})
    response.raise_for_status()
    return response.json()["items"]


def respond(api: httpx.Client, record: dict, values: dict | None, status: str = "submitted") -> None:
    """Answer `record` as the web UI does: POST /api/v1/records/{id}/responses."""
    body = {"status": status, **({"values": {key: {"value": value} for key, value in values.items()}}
                                 if values is not None else {})}
    response = api.post(f"/api/v1/records/{record['id']}/responses", json=body)
    assert response.status_code == 201, response.text


def suggestion_of(record: dict) -> dict | None:
    return (record.get("suggestions") or [None])[0]


@needs_server
def test_connect_refuses_a_wrong_key(argilla):
    with pytest.raises(ArgillaUnavailableError, match="refused the API key"):
        connect(argilla["info"].api_url, "not-a-key")


@needs_server
def test_settings_follow_the_task(client, complaint_task, ae_task):
    settings = dataset_settings(complaint_task, client=client)
    assert [field.name for field in settings.fields] == ["text", "variant_predictions"]
    label = settings.questions["label"]
    assert list(label.labels) == list(complaint_task.label_names) and label.required
    assert not settings.questions["note"].required
    assert [prop.name for prop in settings.metadata] == [
        "variant", "error_type", "consistency", "confidence", "variants_disagreeing", "priority"]
    for item in complaint_task.labels:
        assert f"### {item.name}\n{item.definition}" in settings.guidelines
    spans = dataset_settings(ae_task, client=client).questions["spans"]
    assert spans.field == "text" and list(spans.labels) == list(ae_task.label_names)


@needs_server
def test_round_trip_classification(argilla, client, complaint_task, cls_data, cls_predictions, tmp_path):
    name = "rt-classification"
    errors = find_errors(cls_predictions, cls_data, complaint_task)
    result = push_errors(client, complaint_task, errors, cls_predictions, cls_data, variant="zero_shot", name=name,
                         progress=False)
    wrong = set(errors.loc[errors["variant"] == "zero_shot", "example_id"])
    assert (result.dataset, result.records, result.batches, result.created) == (name, len(wrong), 1, True)
    assert result.url.startswith(argilla["info"].api_url) and result.url.endswith("/annotation-mode")

    expected = summarise_examples(complaint_task, cls_predictions, cls_data, variant="zero_shot", errors=errors,
                                  example_ids=wrong).set_index("example_id")
    records = server_records(client, name)
    # Logged in priority order: the embedded server serves the queue in that order.
    assert [record["external_id"] for record in records] == list(expected.index)
    assert expected["variants_disagreeing"].is_monotonic_decreasing
    for record in records:
        row = expected.loc[record["external_id"]]
        metadata = record["metadata"]
        assert metadata["variant"] == "zero_shot" and metadata["error_type"] == row["error_type"]
        assert (metadata["consistency"], metadata["variants_disagreeing"], metadata["priority"]) == (
            row["consistency"], row["variants_disagreeing"], row["priority"])
        assert record["fields"]["variant_predictions"] == row["variant_predictions"]
        suggestion = suggestion_of(record)
        if row["suggestion"] is None:
            assert suggestion is None
        else:
            assert (suggestion["value"], suggestion["agent"], suggestion["score"]) == (
                row["suggestion"], "zero_shot", row["suggestion_score"])

    by_id = {record["external_id"]: record for record in records}
    suggested = [eid for eid in expected.index if expected.loc[eid, "suggestion"] is not None]
    gold = dict(zip(cls_data["example_id"], cls_data["label"]))
    unreadable = cls_data["example_id"][4]
    correct = next(eid for eid in suggested if expected.loc[eid, "suggestion"] != gold[eid])
    accept, discard = [eid for eid in suggested if eid != correct][:2]
    with ui_client(argilla) as api:
        respond(api, by_id[accept], {"label": expected.loc[accept, "suggestion"]})
        respond(api, by_id[correct], {"label": gold[correct], "note": "the bank's definition says otherwise"})
        respond(api, by_id[discard], None, status="discarded")
        respond(api, by_id[unreadable], {"label": gold[unreadable]})

    started = time.monotonic()
    corrections = pull_corrections(client, complaint_task, name, out_dir=tmp_path)
    print(f"\npull of {len(records)} records took {time.monotonic() - started:.2f} s")
    assert list(corrections.columns) == ["example_id", "annotator", "status", "label", "note", "suggested",
                                         "suggestion_agent", "suggestion_score", "accepted_suggestion", "submitted_at"]
    table = corrections.set_index("example_id")
    assert set(table.index) == {accept, correct, unreadable} and set(table["annotator"]) == {"annotator"}
    assert table.loc[accept, "accepted_suggestion"] and not table.loc[correct, "accepted_suggestion"]
    assert not table.loc[unreadable, "accepted_suggestion"] and table.loc[unreadable, "suggested"] is None
    assert table.loc[correct, "label"] == gold[correct] and table.loc[correct, "note"].startswith("the bank")
    assert table.loc[correct, "suggested"] == expected.loc[correct, "suggestion"]
    assert str(table["submitted_at"].dt.tz) == "UTC"
    assert (pd.Timestamp.now(tz="UTC") - table["submitted_at"]).max() < pd.Timedelta(minutes=5)

    snapshot = corrections.attrs["snapshot_path"]
    assert snapshot.startswith(str(tmp_path / name)) and snapshot.endswith(".jsonl")
    pd.testing.assert_frame_equal(load_corrections(snapshot, complaint_task), corrections)

    acceptance = suggestion_acceptance(corrections)
    assert acceptance.to_dict("records") == [
        {"agent": "zero_shot", "responses": 2, "accepted": 1, "acceptance_rate": 0.5}]
    with_discarded = pull_corrections(client, complaint_task, name, out_dir=None, statuses=("submitted", "discarded"))
    assert with_discarded.set_index("example_id").loc[discard, "status"] == "discarded"
    assert "snapshot_path" not in with_discarded.attrs
    with pytest.raises(AnnotationError, match="pull as an owner or an admin"):
        pull_corrections(connect(argilla["info"].api_url, argilla["keys"]["annotator"]), complaint_task, name,
                         workspace="workbench", out_dir=None)


@needs_server
def test_round_trip_ner(argilla, client, ae_task, ner_data, tmp_path):
    name = "rt-ner"
    predictions = ner_predictions(ner_data)
    errors = find_errors(predictions, ner_data, ae_task)
    result = push_errors(client, ae_task, errors, predictions, ner_data, variant="zero_shot", name=name,
                         progress=False)
    expected = summarise_examples(ae_task, predictions, ner_data, variant="zero_shot", errors=errors,
                                  example_ids=errors.loc[errors["variant"] == "zero_shot", "example_id"])
    records = server_records(client, name)
    assert result.records == len(records) == len(expected)
    assert [record["external_id"] for record in records] == list(expected["example_id"])
    expected = expected.set_index("example_id")
    for record in records:
        suggestion = suggestion_of(record)
        assert suggestion["value"] == expected.loc[record["external_id"], "suggestion"]
        assert suggestion["agent"] == "zero_shot"
        assert suggestion["score"] == expected.loc[record["external_id"], "suggestion_score"]
        assert set(record["metadata"]["error_type"]) <= {"false_positive", "false_negative", "wrong_label", "boundary"}

    gold = {eid: [{k: s[k] for k in ("start", "end", "label")} for s in spans]
            for eid, spans in zip(ner_data["example_id"], ner_data["spans"])}
    by_id = {record["external_id"]: record for record in records}
    nonempty = [eid for eid in expected.index if expected.loc[eid, "suggestion"]]
    empty = [eid for eid in expected.index if not expected.loc[eid, "suggestion"]]
    accept, correct, nothing = nonempty[0], nonempty[1], empty[0]
    with ui_client(argilla) as api:
        respond(api, by_id[accept], {"spans": expected.loc[accept, "suggestion"]})
        respond(api, by_id[correct], {"spans": gold[correct], "note": "wrong type for the first entity"})
        respond(api, by_id[nothing], {"spans": gold[nothing]})

    corrections = pull_corrections(client, ae_task, name, out_dir=tmp_path)
    assert "spans" in corrections.columns and "label" not in corrections.columns
    table = corrections.set_index("example_id")
    assert table.loc[accept, "accepted_suggestion"] and table.loc[accept, "spans"] == expected.loc[accept, "suggestion"]
    assert not table.loc[correct, "accepted_suggestion"]
    assert table.loc[correct, "spans"] == sorted(gold[correct], key=lambda s: (s["start"], s["end"]))
    assert table.loc[nothing, "suggested"] == [] and table.loc[nothing, "accepted_suggestion"] == (gold[nothing] == [])
    acceptance = suggestion_acceptance(corrections).iloc[0]
    assert (acceptance["agent"], acceptance["responses"]) == ("zero_shot", 3)
    assert acceptance["accepted"] == 1 + (gold[nothing] == [])
    pd.testing.assert_frame_equal(load_corrections(corrections.attrs["snapshot_path"], ae_task), corrections)


@needs_server
def test_pushing_again_updates_in_place_and_keeps_responses(argilla, client, complaint_task, cls_data,
                                                             cls_predictions, tmp_path):
    name = "re-push"
    errors = find_errors(cls_predictions, cls_data, complaint_task)
    push_errors(client, complaint_task, errors, cls_predictions, cls_data, variant="zero_shot", name=name,
                progress=False)
    first = {record["external_id"]: record for record in server_records(client, name)}
    answered = [eid for eid, record in first.items() if suggestion_of(record)][:2]
    with ui_client(argilla) as api:
        respond(api, first[answered[0]], {"label": suggestion_of(first[answered[0]])["value"]})
        respond(api, first[answered[1]], {"label": "request", "note": "kept?"})
    before = pull_corrections(client, complaint_task, name, out_dir=None)

    # Another variant's predictions for every example: records already there are updated.
    result = push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                              progress=False)
    assert (result.records, result.created) == (len(cls_data), False)
    records = server_records(client, name)
    ids = [record["external_id"] for record in records]
    assert len(ids) == len(set(ids)) == len(cls_data)
    assert {suggestion_of(record)["agent"] for record in records} == {"cot"}
    assert {record["metadata"]["variant"] for record in records} == {"cot"}
    after = pull_corrections(client, complaint_task, name, out_dir=None)
    kept = ["example_id", "annotator", "status", "label", "note", "submitted_at"]
    pd.testing.assert_frame_equal(after[kept], before[kept])
    assert after.set_index("example_id").loc[answered[0], "suggestion_agent"] == "cot"

    # The same push twice changes nothing; a variant with no usable answer leaves no stale suggestion.
    again = push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                             progress=False)
    assert again.records == len(cls_data) and len(server_records(client, name)) == len(cls_data)
    push_predictions(client, complaint_task, cls_predictions, cls_data, variant="zero_shot", name=name,
                     progress=False)
    records = {record["external_id"]: record for record in server_records(client, name)}
    assert len(records) == len(cls_data)
    assert suggestion_of(records[cls_data["example_id"][4]]) is None
    agents = {suggestion_of(r)["agent"] for eid, r in records.items() if eid != cls_data["example_id"][4]}
    assert agents == {"zero_shot"}
    pd.testing.assert_frame_equal(pull_corrections(client, complaint_task, name, out_dir=None)[kept], before[kept])

    # A dataset made for another task is refused with a clear message.
    with pytest.raises(AnnotationError, match="does not fit task"):
        push_predictions(client, dataclasses.replace(complaint_task, labels=complaint_task.labels[:3]),
                         cls_predictions, cls_data, variant="cot", name=name, progress=False)


@needs_server
def test_server_stopping_part_way_then_pushing_again_completes(argilla, complaint_task, cls_data, cls_predictions):
    from workbench_argilla_embedded import start_server, stop_server

    name = "restart"
    # No retries: a refused connection fails at once instead of after about 7 s of backoff.
    client = connect(argilla["info"].api_url, argilla["keys"]["owner"], retries=0)
    push_predictions(client, complaint_task, cls_predictions, cls_data, variant="zero_shot", name=name,
                     progress=False)
    first = server_records(client, name)
    answered = {first[0]["external_id"]: "hardship", first[-1]["external_id"]: "fraud"}
    with ui_client(argilla) as api:
        for record in (first[0], first[-1]):
            respond(api, record, {"label": answered[record["external_id"]]})

    stopped_at = []

    def stop_after_first_batch(pushed: int, total: int) -> None:
        if not stopped_at:
            stopped_at.append(pushed)
            stop_server(argilla["home"], quiet=True)

    try:
        with pytest.raises(PushError) as failure:
            push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                             batch_size=5, progress=False, on_batch=stop_after_first_batch)
        error = failure.value
        print(f"\n{error}")
        total = len(cls_data)
        assert (error.pushed, error.total, error.batches_done, error.batches_total) == (5, total, 1, 6)
        message = str(error)
        assert f"5 of {total} records (1 of 6 batches) were pushed" in message
        assert "run the same push again" in message and "keeps annotators' responses" in message
        assert argilla["info"].api_url in message and "workbench argilla up" in message

        with pytest.raises(PushError) as down:  # still down: nothing is pushed, and it says so
            push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                             progress=False)
        assert down.value.pushed == 0 and f"0 of {total} records" in str(down.value)
    finally:
        start_server(home=argilla["home"], port=argilla["port"], quiet=True)

    result = push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                              batch_size=5, progress=False)
    assert (result.records, result.batches, result.created) == (len(cls_data), 6, False)
    records = server_records(client, name)
    ids = [record["external_id"] for record in records]
    assert len(ids) == len(set(ids)) == len(cls_data)
    assert {suggestion_of(record)["agent"] for record in records} == {"cot"}
    corrections = pull_corrections(client, complaint_task, name, out_dir=None)
    assert dict(zip(corrections["example_id"], corrections["label"])) == answered


@needs_server
def test_snapshots_are_never_overwritten(argilla, client, complaint_task, cls_data, cls_predictions, tmp_path,
                                         monkeypatch):
    from workbench.annotation import snapshots

    name = "snapshots"
    push_predictions(client, complaint_task, cls_predictions, cls_data, variant="definitions", name=name,
                     progress=False)
    record = server_records(client, name)[0]
    with ui_client(argilla) as api:
        respond(api, record, {"label": "complaint"})
    first = pull_corrections(client, complaint_task, name, out_dir=tmp_path)
    content = Path(first.attrs["snapshot_path"]).read_bytes()
    second = pull_corrections(client, complaint_task, name, out_dir=tmp_path)
    assert first.attrs["snapshot_path"] != second.attrs["snapshot_path"]
    assert Path(first.attrs["snapshot_path"]).read_bytes() == content

    # Even two pulls in the same microsecond get two files.
    class Frozen(snapshots.datetime):
        @classmethod
        def now(cls, tz=None):
            return snapshots.datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=tz)

    monkeypatch.setattr(snapshots, "datetime", Frozen)
    paths = [pull_corrections(client, complaint_task, name, out_dir=tmp_path).attrs["snapshot_path"] for _ in range(3)]
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "20300102T030405.000006Z.jsonl", "20300102T030405.000006Z-1.jsonl", "20300102T030405.000006Z-2.jsonl"]
    files = sorted(path.name for path in (tmp_path / name).iterdir())
    assert len(files) == 5 and not [f for f in files if f.endswith(".partial")]


@needs_server
def test_two_annotators_agreement(argilla, client, complaint_task, cls_data, cls_predictions):
    import argilla as rg
    from sklearn.metrics import cohen_kappa_score

    password = secrets.token_urlsafe(12)
    second = rg.User(username="annotator2", password=password, role="annotator", client=client).create()
    second.add_to_workspace(client.workspaces("workbench"))
    token = httpx.post(f"{argilla['info'].api_url}/api/v1/token",
                       data={"username": "annotator2", "password": password}).json()["access_token"]

    name = "two-annotators"
    push_predictions(client, complaint_task, cls_predictions, cls_data, variant="definitions", name=name,
                     min_submitted=2, progress=False)
    records = server_records(client, name)[:6]
    labels = complaint_task.label_names
    first_answers = [labels[i % 4] for i in range(6)]
    second_answers = first_answers[:4] + [labels[(4 + 1) % 4], labels[(5 + 2) % 4]]
    with ui_client(argilla) as one, httpx.Client(base_url=argilla["info"].api_url, timeout=30.0,
                                                 headers={"Authorization": f"Bearer {token}"}) as two:
        for record, answer in zip(records, first_answers):
            respond(one, record, {"label": answer})
        # min_submitted=2: a record answered once stays pending, in the other annotator's queue.
        assert {record["status"] for record in server_records(client, name)[:6]} == {"pending"}
        for record, answer in zip(records, second_answers):
            respond(two, record, {"label": answer})
    assert {record["status"] for record in server_records(client, name)[:6]} == {"completed"}

    corrections = pull_corrections(client, complaint_task, name, out_dir=None)
    assert set(corrections["annotator"]) == {"annotator", "annotator2"} and len(corrections) == 12
    agreement = annotator_agreement(corrections)
    assert (agreement.kind, agreement.records, agreement.annotators) == ("classification", 6, 2)
    assert agreement.pairwise_agreement == pytest.approx(4 / 6)
    pair = agreement.pairs.iloc[0]
    assert (pair["annotator_a"], pair["annotator_b"], pair["records"]) == ("annotator", "annotator2", 6)
    assert pair["cohen_kappa"] == pytest.approx(cohen_kappa_score(first_answers, second_answers))
    counts = np.array([[(a == label) + (b == label) for label in labels]
                       for a, b in zip(first_answers, second_answers)])
    assert agreement.fleiss_kappa == pytest.approx(fleiss_kappa(counts))
    assert math.isnan(agreement.span_f1)


@needs_server
def test_a_dataset_made_by_an_older_workbench_gets_the_new_metadata(client, complaint_task, cls_data, cls_predictions):
    import argilla as rg

    name = "older-settings"
    current = dataset_settings(complaint_task, client=client)
    older = rg.Settings(fields=list(current.fields), questions=list(current.questions),
                        metadata=[prop for prop in current.metadata if prop.name != "priority"],
                        guidelines=current.guidelines, distribution=current.distribution)
    rg.Dataset(name=name, workspace="workbench", settings=older, client=client).create()

    result = push_predictions(client, complaint_task, cls_predictions, cls_data, variant="definitions", name=name,
                              progress=False)
    assert (result.created, result.records) == (False, len(cls_data))
    remote = client.datasets(name, workspace="workbench")
    assert {prop.name for prop in remote.settings.metadata} == {prop.name for prop in current.metadata}
    priorities = sorted(record["metadata"]["priority"] for record in server_records(client, name))
    assert priorities == list(range(1, len(cls_data) + 1))


@needs_server
def test_a_dataset_left_unpublished_is_made_again(client, complaint_task, cls_data, cls_predictions):
    name = "left-unpublished"
    workspace = client.workspaces("workbench")
    response = client.http_client.post("/api/v1/datasets", json={"name": name, "workspace_id": str(workspace.id)})
    assert response.status_code == 201 and response.json()["status"] == "draft", response.text
    result = push_predictions(client, complaint_task, cls_predictions, cls_data, variant="cot", name=name,
                              progress=False)
    assert (result.created, result.records) == (True, len(cls_data))
    assert len(server_records(client, name)) == len(cls_data)


# A multi-label task, predicted by the runner with a fake model and answered by the scripted annotator.
TOPICS = task_from_dict({
    "name": "review_topics", "kind": "multilabel",
    "labels": [
        {"name": "billing", "definition": "What the app itself costs: plans, renewals, refunds."},
        {"name": "bug", "definition": "The app does something that contradicts what it shows or promises."},
        {"name": "performance", "definition": "Slow screens, crashes, freezes, battery drain."},
    ],
})
# example_id, text, gold labels, zero_shot's answer (None: unreadable), definitions' answer
REVIEWS = [
    ("r1", "Charged twice for Plus and now the balance is wrong.", ["billing", "bug"], ["billing", "bug"],
     ["billing", "bug"]),
    ("r2", "Crashes every time I open my pots.", ["performance"], ["bug"], ["performance"]),
    ("r3", "Lovely design and it just works.", [], [], []),
    ("r4", "Slow to load, and the renewal price went up again.", ["billing", "performance"], ["performance"],
     ["billing", "performance"]),
    ("r5", "Great app, no complaints at all.", [], ["bug"], []),
    ("r6", "It froze on the transfer screen.", ["performance"], None, ["performance"]),
]


def topic_answers(request) -> str:
    """The fake model: the answer REVIEWS gives the variant (definitions' prompt has them) for the text."""
    prompt = request.messages[-1]["content"]
    example_id, text, _, zero_shot, definitions = next(review for review in REVIEWS if review[1] in prompt)
    answer = definitions if "Use these label definitions" in request.messages[0]["content"] else zero_shot
    return "I am not sure what to say here." if answer is None else json.dumps({"labels": answer})


@needs_server
def test_round_trip_multilabel(argilla, client, tmp_path):
    import argilla as rg

    name = "rt-multilabel"
    data = validate_dataset(pd.DataFrame([{"example_id": eid, "text": text, "labels": gold}
                                          for eid, text, gold, _, _ in REVIEWS]), TOPICS)
    predictions = run_variants(TOPICS, data, ["zero_shot", "definitions"], FakeModel(topic_answers), progress=False)
    assert predictions.set_index(["variant", "example_id"]).loc[("zero_shot", "r6"), "prediction"] is None
    result = push_predictions(client, TOPICS, predictions, data, variant="zero_shot", name=name, progress=False)
    assert (result.records, result.created) == (len(REVIEWS), True)

    remote = client.datasets(name, workspace="workbench")
    question = remote.settings.questions["labels"]
    assert isinstance(question, rg.MultiLabelQuestion) and question.required
    assert list(question.labels) == [*TOPICS.label_names, NONE_OF_THESE]
    assert {q.name for q in remote.settings.questions} == {"labels", "note"}
    records = {record["external_id"]: record for record in server_records(client, name)}
    suggested = {eid: (suggestion_of(record) or {}).get("value") for eid, record in records.items()}
    assert suggested == {"r1": ["billing", "bug"], "r2": ["bug"], "r3": [NONE_OF_THESE], "r4": ["performance"],
                         "r5": ["bug"], "r6": None}
    assert {suggestion_of(record)["agent"] for eid, record in records.items() if eid != "r6"} == {"zero_shot"}
    assert records["r2"]["metadata"]["error_type"] == ["false_negative", "false_positive"]
    assert records["r6"]["metadata"]["error_type"] == ["parse_failure"]
    assert "no labels" in records["r3"]["fields"]["variant_predictions"]

    annotator = connect(argilla["info"].api_url, argilla["keys"]["annotator"])
    answers = {"r1": ["billing", "bug"], "r2": ["performance"], "r3": [], "r5": [], "r6": ["performance"]}
    notes = {"r2": "a crash is performance", "r5": "praise only"}
    assert submit_responses(annotator, TOPICS, remote.id, answers, notes=notes) == len(answers)
    assert submit_responses(annotator, TOPICS, remote.id, answers) == 0  # answered already: left alone

    corrections = pull_corrections(client, TOPICS, name, out_dir=tmp_path)
    assert "labels" in corrections.columns and "label" not in corrections.columns
    table = corrections.set_index("example_id")
    assert set(table.index) == set(answers) and set(table["annotator"]) == {"annotator"}
    assert {eid: table.loc[eid, "labels"] for eid in answers} == answers
    assert {eid: bool(table.loc[eid, "accepted_suggestion"]) for eid in answers} == {
        "r1": True, "r2": False, "r3": True, "r5": False, "r6": False}
    assert table.loc["r3", "suggested"] == [] and table.loc["r5", "suggested"] == ["bug"]
    assert table.loc["r6", "suggested"] is None and table.loc["r2", "note"] == "a crash is performance"
    assert suggestion_acceptance(corrections).to_dict("records") == [
        {"agent": "zero_shot", "responses": 4, "accepted": 2, "acceptance_rate": 0.5}]
    pd.testing.assert_frame_equal(load_corrections(corrections.attrs["snapshot_path"], TOPICS), corrections)

    # Another variant's answers update the records in place and keep the responses.
    again = push_predictions(client, TOPICS, predictions, data, variant="definitions", name=name, progress=False)
    assert (again.records, again.created) == (len(REVIEWS), False)
    after = pull_corrections(client, TOPICS, name, out_dir=None).set_index("example_id")
    assert {eid: after.loc[eid, "labels"] for eid in answers} == answers
    assert after.loc["r6", "suggested"] == ["performance"] and after.loc["r6", "accepted_suggestion"]
