"""The embedded Argilla: the real argilla-server 2.8 in .argilla-venv, with the workbench's search
engine that answers from the server's own database.

A session fixture starts it in a fresh home. The tests log a dataset with the SDK as the owner,
answer as the annotator over the same REST endpoints the web UI calls, then check every query
shape the UI sends (the queue per response status, text search, metadata/suggestion/response
filters, sorting, pagination, progress, metadata metrics) against the records' known state.
"""

from __future__ import annotations

import json
import re
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from workbench_argilla_embedded import (
    ArgillaServerError,
    main,
    resolve_server,
    server_status,
    start_server,
    stop_server,
)
from workbench_argilla_embedded.manage import missing_environment, venv_python
from workbench_argilla_embedded.text_query import score_texts

pytestmark = pytest.mark.integration


MISSING = missing_environment()
needs_server = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

LABELS = ["pos", "neg", "neu"]
TEXTS = [
    "The refund arrived late and the agent was rude",
    "Aspirin caused a severe headache",
    "My package arrived late again",
    "Great service, refund processed quickly",
    "Ibuprofen relieved the headache",
    "The late fee was refunded",
    "Nothing arrived",
    "Late delivery, refund please",
    "Headache after the second dose",
    "The agent arrived early",
    "No suggestion for this one",
    "No metadata for this one",
]


def _record_state(i: int) -> dict:
    """What record `i` holds: metadata (none for 11) and a label suggestion (none for 10)."""
    state: dict = {"id": f"r{i:02d}", "text": TEXTS[i], "metadata": None, "suggestion": None}
    if i != 11:
        state["metadata"] = {
            "variant": "zero_shot" if i % 2 == 0 else "few_shot",
            "n_disagree": i % 4,
            "consistency": round(i / 11, 3),
        }
    if i != 10:
        state["suggestion"] = {
            "value": LABELS[i % 3],
            "score": round((i + 1) / 20, 2),
            "agent": "zero_shot" if i % 2 == 0 else "cot",
        }
    return state


RECORDS = [_record_state(i) for i in range(len(TEXTS))]
IDS = [record["id"] for record in RECORDS]
# The annotator's answers (record id -> (status, label)); the owner submits r05.
ANNOTATOR_RESPONSES = {
    "r00": ("submitted", "pos"),
    "r01": ("submitted", "neg"),
    "r02": ("submitted", "neg"),
    "r03": ("discarded", None),
    "r04": ("draft", "neu"),
}
OWNER_RESPONSES = {"r05": ("submitted", "pos")}
# min_submitted is 1: a record with a submitted response by anyone is completed.
COMPLETED = {rid for rid, (status, _) in {**ANNOTATOR_RESPONSES, **OWNER_RESPONSES}.items() if status == "submitted"}


def in_order(selected) -> list[str]:
    """The ids in `selected`, in logging order (the engine's default order)."""
    chosen = set(selected)
    return [rid for rid in IDS if rid in chosen]


# Pure checks of the text matcher (no server needed).
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("refund", {0, 3, 7}),  # whole words only: not "refunded"
        ("refund*", {0, 3, 5, 7}),
        ('"arrived late"', {0, 2}),
        ("arrived late", {0, 2}),  # AND: both words anywhere
        ("late -refund", {2, 5}),
        ("headache | aspirin", {1, 4, 8}),
        ("HEADACHE", {1, 4, 8}),
        ("zzz", set()),
    ],
)
def test_text_matcher_follows_simple_query_string(query, expected):
    assert {i for i, text in enumerate(TEXTS) if score_texts(query, [text]) is not None} == expected


def test_missing_server_environment_says_how_to_make_it(tmp_path):
    with pytest.raises(ArgillaServerError, match="scripts/setup_argilla.sh"):
        venv_python(tmp_path / "nowhere")


def test_resolve_server_uses_the_configured_server(monkeypatch, tmp_path):
    monkeypatch.setenv("ARGILLA_API_URL", "https://argilla.example.org/")
    monkeypatch.setenv("ARGILLA_API_KEY", "secret-key")
    info = resolve_server(home=tmp_path / "never-started")
    assert (info.api_url, info.api_key, info.embedded) == ("https://argilla.example.org", "secret-key", False)
    assert "secret-key" not in repr(info)
    assert not (tmp_path / "never-started").exists()
    monkeypatch.delenv("ARGILLA_API_KEY")
    with pytest.raises(ArgillaServerError, match="ARGILLA_API_KEY"):
        resolve_server(home=tmp_path / "never-started")


# The real server: the session fixtures `argilla_home` and `argilla` live in tests/conftest.py,
# shared with the other Argilla tests.
def http(argilla, user: str) -> httpx.Client:
    return httpx.Client(
        base_url=argilla["info"].api_url, headers={"X-Argilla-Api-Key": argilla["keys"][user]}, timeout=30.0
    )


@pytest.fixture(scope="session")
def dataset(argilla):
    """A dataset logged with the SDK as the owner, answered over REST as the UI does."""
    import argilla as rg

    client = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[
            rg.LabelQuestion(name="label", labels=LABELS),
            rg.SpanQuestion(name="spans", field="text", labels=["DRUG", "EVENT"], required=False),
            rg.TextQuestion(name="note", required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="variant"),
            rg.IntegerMetadataProperty(name="n_disagree"),
            rg.FloatMetadataProperty(name="consistency"),
        ],
    )
    created = rg.Dataset(
        name="ui-queries", workspace=argilla["info"].workspace, settings=settings, client=client
    ).create()
    records = []
    for state in RECORDS:
        suggestions = []
        if state["suggestion"]:
            s = state["suggestion"]
            suggestions.append(rg.Suggestion("label", s["value"], score=s["score"], agent=s["agent"]))
        if state["id"] == "r01":
            suggestions.append(rg.Suggestion("spans", [{"label": "DRUG", "start": 0, "end": 7}], agent="ner"))
        records.append(
            rg.Record(
                id=state["id"], fields={"text": state["text"]}, metadata=state["metadata"], suggestions=suggestions
            )
        )
    created.records.log(records)

    dataset_id = str(created.id)
    with http(argilla, "owner") as owner:
        items = owner.get(f"/api/v1/datasets/{dataset_id}/records", params={"limit": 100}).json()["items"]
    server_ids = {item["external_id"]: item["id"] for item in items}
    assert set(server_ids) == set(IDS)

    for user, answers in (("annotator", ANNOTATOR_RESPONSES), ("owner", OWNER_RESPONSES)):
        with http(argilla, user) as api:
            for rid, (status, label) in answers.items():
                values = {"label": {"value": label}} if label else None
                if rid == "r01":
                    values["spans"] = {"value": [{"label": "DRUG", "start": 0, "end": 7}]}
                body = {"status": status, **({"values": values} if values else {})}
                response = api.post(f"/api/v1/records/{server_ids[rid]}/responses", json=body)
                assert response.status_code == 201, response.text

    with http(argilla, "owner") as owner:
        properties = owner.get(f"/api/v1/me/datasets/{dataset_id}/metadata-properties").json()["items"]
    return {
        "id": dataset_id,
        "name": created.name,
        "server_ids": server_ids,
        "metadata_ids": {p["name"]: p["id"] for p in properties},
    }


def ui_search(
    argilla,
    dataset,
    user: str,
    filters=(),
    status: str | None = None,
    text=None,
    sort=None,
    offset: int = 0,
    limit: int = 50,
    me: bool = True,
) -> tuple[list[str], int]:
    """POST the search the web UI sends; returns (external ids in the order given, total)."""
    conditions = list(filters)
    if status:
        conditions.insert(
            0, {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": [status]}
        )
        if status == "pending":  # as the UI does: pending for me, and not yet completed by others
            conditions.append(
                {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]}
            )
    body: dict = {"query": {"text": text} if text else {}}
    if conditions:
        body["filters"] = {"and": conditions}
    if sort:
        body["sort"] = sort
    path = f"/api/v1/{'me/' if me else ''}datasets/{dataset['id']}/records/search"
    with http(argilla, user) as api:
        response = api.post(
            path, json=body, params={"include": ["responses", "suggestions"], "offset": offset, "limit": limit}
        )
    assert response.status_code == 200, response.text
    data = response.json()
    return [item["record"]["external_id"] for item in data["items"]], data["total"]


def terms(entity: str, values: list, **scope) -> dict:
    return {"type": "terms", "scope": {"entity": entity, **scope}, "values": values}


def range_(entity: str, ge=None, le=None, **scope) -> dict:
    condition = {"type": "range", "scope": {"entity": entity, **scope}}
    condition.update({key: value for key, value in (("ge", ge), ("le", le)) if value is not None})
    return condition


@needs_server
def test_server_starts_with_owner_annotator_and_private_credentials(argilla):
    import argilla as rg

    home = argilla["home"]
    mode = stat.S_IMODE((home / "credentials.json").stat().st_mode)
    assert mode == 0o600, oct(mode)
    owner = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    assert (owner.me.username, owner.me.role) == ("owner", "owner")
    users = {user.username: user.role for user in owner.users}
    assert users["annotator"] == "annotator"
    annotator = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["annotator"])
    assert annotator.me.username == "annotator"
    status = server_status(home)
    assert status.running and status.healthy, status.detail
    with http(argilla, "owner") as api:
        engine = api.get("/api/v1/status").json()["search_engine"]
    assert engine["name"] == "workbench-sql"
    # No secret is written to a log or shown by repr.
    secrets = [value for user in argilla["credentials"]["users"] for value in (user["password"], user["api_key"])]
    logs = "".join(path.read_text(errors="replace") for path in (home / "logs").glob("*.log"))
    assert not [secret for secret in secrets if secret in logs or secret in repr(argilla["info"])]


@needs_server
def test_queue_per_response_status(argilla, dataset):
    answered = set(ANNOTATOR_RESPONSES)
    pending = [rid for rid in IDS if rid not in answered and rid not in COMPLETED]
    ids, total = ui_search(argilla, dataset, "annotator", status="pending")
    assert (ids, total) == (pending, len(pending))  # default order: the order records were logged
    for status in ("submitted", "discarded", "draft"):
        expected = in_order(rid for rid, (s, _) in ANNOTATOR_RESPONSES.items() if s == status)
        assert ui_search(argilla, dataset, "annotator", status=status) == (expected, len(expected))
    # Pending by response alone (no record-status filter) still shows r05, which the owner completed.
    ids, _ = ui_search(argilla, dataset, "annotator", filters=[terms("response", ["pending"], property="status")])
    assert ids == [rid for rid in IDS if rid not in answered]
    # The owner's own queue: records the annotator completed are gone from it too.
    ids, _ = ui_search(argilla, dataset, "owner", status="pending")
    assert ids == [rid for rid in IDS if rid not in OWNER_RESPONSES and rid not in COMPLETED]
    # Several statuses at once, including pending.
    ids, _ = ui_search(
        argilla, dataset, "annotator", filters=[terms("response", ["pending", "draft"], property="status")]
    )
    assert ids == [rid for rid in IDS if ANNOTATOR_RESPONSES.get(rid, ("draft",))[0] == "draft"]


@needs_server
def test_pagination_keeps_the_total(argilla, dataset):
    full, total = ui_search(argilla, dataset, "annotator", status="pending")
    page, page_total = ui_search(argilla, dataset, "annotator", status="pending", offset=2, limit=3)
    assert page == full[2:5] and page_total == total


@needs_server
@pytest.mark.parametrize("query", ["refund", '"arrived late"', "late -refund", "headache | aspirin", "refund*"])
def test_text_search(argilla, dataset, query):
    expected = {rid for rid, text in zip(IDS, TEXTS) if score_texts(query, [text]) is not None}
    assert expected, "the query should match something"
    ids, total = ui_search(argilla, dataset, "owner", text={"q": query})
    assert set(ids) == expected and total == len(expected)
    ids, _ = ui_search(argilla, dataset, "owner", text={"q": query, "field": "text"}, me=False)
    assert set(ids) == expected


@needs_server
def test_text_search_through_the_sdk(argilla, dataset):
    import argilla as rg

    client = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    found = client.datasets(dataset["name"]).records(query=rg.Query(query="headache")).to_list(flatten=True)
    assert {record["id"] for record in found} == {"r01", "r04", "r08"}


@needs_server
def test_text_search_combined_with_the_queue(argilla, dataset):
    ids, _ = ui_search(argilla, dataset, "annotator", status="pending", text={"q": "arrived"})
    assert ids == [
        rid
        for rid, text in zip(IDS, TEXTS)
        if "arrived" in text.lower().split() and rid not in ANNOTATOR_RESPONSES and rid not in COMPLETED
    ]


def _metadata(rid: str, key: str):
    metadata = RECORDS[IDS.index(rid)]["metadata"]
    return None if metadata is None else metadata[key]


@needs_server
def test_metadata_filters(argilla, dataset):
    ids, _ = ui_search(
        argilla, dataset, "owner", filters=[terms("metadata", ["few_shot"], metadata_property="variant")]
    )
    assert ids == [rid for rid in IDS if _metadata(rid, "variant") == "few_shot"]
    ids, _ = ui_search(argilla, dataset, "owner", filters=[range_("metadata", 2, 3, metadata_property="n_disagree")])
    assert ids == [rid for rid in IDS if _metadata(rid, "n_disagree") in (2, 3)]
    ids, _ = ui_search(
        argilla, dataset, "owner", filters=[range_("metadata", 0.3, 0.7, metadata_property="consistency")]
    )
    assert ids == [
        rid for rid in IDS if _metadata(rid, "consistency") is not None and 0.3 <= _metadata(rid, "consistency") <= 0.7
    ]
    both = [
        terms("metadata", ["zero_shot"], metadata_property="variant"),
        range_("metadata", ge=0.5, metadata_property="consistency"),
    ]
    ids, _ = ui_search(argilla, dataset, "owner", filters=both)
    assert ids == [
        rid for rid in IDS if _metadata(rid, "variant") == "zero_shot" and _metadata(rid, "consistency") >= 0.5
    ]


def _suggestion(rid: str, key: str):
    suggestion = RECORDS[IDS.index(rid)]["suggestion"]
    return None if suggestion is None else suggestion[key]


@needs_server
def test_suggestion_filters(argilla, dataset):
    ids, _ = ui_search(
        argilla, dataset, "annotator", filters=[terms("suggestion", ["pos"], question="label", property="value")]
    )
    assert ids == [rid for rid in IDS if _suggestion(rid, "value") == "pos"]
    ids, _ = ui_search(
        argilla, dataset, "annotator", filters=[range_("suggestion", 0.3, 0.5, question="label", property="score")]
    )
    assert ids == [
        rid for rid in IDS if _suggestion(rid, "score") is not None and 0.3 <= _suggestion(rid, "score") <= 0.5
    ]
    ids, _ = ui_search(
        argilla, dataset, "annotator", filters=[terms("suggestion", ["cot"], question="label", property="agent")]
    )
    assert ids == [rid for rid in IDS if _suggestion(rid, "agent") == "cot"]
    # Span suggestions by label (Elasticsearch does not index them; this engine does).
    ids, _ = ui_search(
        argilla, dataset, "annotator", filters=[terms("suggestion", ["DRUG"], question="spans", property="value")]
    )
    assert ids == ["r01"]
    # Combined with the queue, as the UI sends it.
    ids, _ = ui_search(
        argilla,
        dataset,
        "annotator",
        status="pending",
        filters=[terms("suggestion", ["zero_shot"], question="label", property="agent")],
    )
    assert ids == [
        rid
        for rid in IDS
        if _suggestion(rid, "agent") == "zero_shot" and rid not in ANNOTATOR_RESPONSES and rid not in COMPLETED
    ]


@needs_server
def test_response_filters_are_scoped_to_the_user(argilla, dataset):
    neg = in_order(rid for rid, (_, label) in ANNOTATOR_RESPONSES.items() if label == "neg")
    assert ui_search(argilla, dataset, "annotator", filters=[terms("response", ["neg"], question="label")])[0] == neg
    # The owner's own responses hold no "neg"; across all users (the owner's non-"me" search) they do.
    assert ui_search(argilla, dataset, "owner", filters=[terms("response", ["neg"], question="label")])[0] == []
    assert (
        ui_search(argilla, dataset, "owner", me=False, filters=[terms("response", ["neg"], question="label")])[0] == neg
    )
    ids, _ = ui_search(argilla, dataset, "annotator", filters=[terms("response", ["DRUG"], question="spans")])
    assert ids == ["r01"]


@needs_server
def test_sorting(argilla, dataset):
    ids, _ = ui_search(
        argilla,
        dataset,
        "owner",
        sort=[{"scope": {"entity": "metadata", "metadata_property": "n_disagree"}, "order": "desc"}],
    )
    with_value = sorted(
        (rid for rid in IDS if _metadata(rid, "n_disagree") is not None),
        key=lambda rid: (-_metadata(rid, "n_disagree"), IDS.index(rid)),
    )
    assert ids == with_value + [rid for rid in IDS if _metadata(rid, "n_disagree") is None]  # missing last

    ids, _ = ui_search(
        argilla,
        dataset,
        "owner",
        sort=[{"scope": {"entity": "suggestion", "question": "label", "property": "score"}, "order": "asc"}],
    )
    scored = sorted(
        (rid for rid in IDS if _suggestion(rid, "score") is not None), key=lambda rid: _suggestion(rid, "score")
    )
    assert ids == scored + [rid for rid in IDS if _suggestion(rid, "score") is None]

    ids, _ = ui_search(
        argilla,
        dataset,
        "owner",
        sort=[{"scope": {"entity": "suggestion", "question": "label", "property": "score"}, "order": "desc"}],
    )
    assert ids == scored[::-1] + [rid for rid in IDS if _suggestion(rid, "score") is None]

    # By the annotator's own answer, within their submitted records.
    ids, _ = ui_search(
        argilla,
        dataset,
        "annotator",
        status="submitted",
        sort=[{"scope": {"entity": "response", "question": "label"}, "order": "asc"}],
    )
    submitted = [rid for rid in IDS if ANNOTATOR_RESPONSES.get(rid, ("",))[0] == "submitted"]
    assert ids == sorted(submitted, key=lambda rid: (ANNOTATOR_RESPONSES[rid][1], IDS.index(rid)))

    ids, _ = ui_search(
        argilla, dataset, "owner", sort=[{"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"}]
    )
    assert ids == IDS


@needs_server
def test_progress(argilla, dataset):
    with http(argilla, "annotator") as api:
        progress = api.get(f"/api/v1/datasets/{dataset['id']}/progress").json()
        mine = api.get(f"/api/v1/me/datasets/{dataset['id']}/metrics").json()["responses"]
    assert (progress["total"], progress["completed"], progress["pending"]) == (
        len(IDS),
        len(COMPLETED),
        len(IDS) - len(COMPLETED),
    )
    assert {user["username"] for user in progress["users"]} == {"annotator", "owner"}
    statuses = [status for status, _ in ANNOTATOR_RESPONSES.values()]
    assert mine == {
        "total": len(IDS),
        "submitted": statuses.count("submitted"),
        "discarded": statuses.count("discarded"),
        "draft": statuses.count("draft"),
        "pending": len(IDS) - len(statuses),
    }


@needs_server
def test_metadata_metrics(argilla, dataset):
    with http(argilla, "owner") as api:

        def metrics(name):
            response = api.get(f"/api/v1/metadata-properties/{dataset['metadata_ids'][name]}/metrics")
            assert response.status_code == 200, response.text
            return response.json()

        variant = metrics("variant")
        values = [_metadata(rid, "variant") for rid in IDS if _metadata(rid, "variant") is not None]
        assert variant["type"] == "terms" and variant["total"] == len(values)
        assert {v["term"]: v["count"] for v in variant["values"]} == {v: values.count(v) for v in set(values)}
        for name in ("n_disagree", "consistency"):
            present = [_metadata(rid, name) for rid in IDS if _metadata(rid, name) is not None]
            result = metrics(name)
            assert (result["min"], result["max"]) == (min(present), max(present))
            assert result["type"] == ("integer" if name == "n_disagree" else "float")


@needs_server
def test_worker_changes_are_seen_at_once(argilla):
    """Raising min_submitted queues a job on the rq worker that recomputes every record's status;
    the progress the UI shows reflects it as soon as the worker has written it."""
    import argilla as rg

    client = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    settings = rg.Settings(
        fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="label", labels=LABELS)]
    )
    created = rg.Dataset(
        name="worker-check", workspace=argilla["info"].workspace, settings=settings, client=client
    ).create()
    created.records.log([rg.Record(id=f"w{i}", fields={"text": f"text {i}"}) for i in range(3)])
    with http(argilla, "owner") as owner:
        items = owner.get(f"/api/v1/datasets/{created.id}/records").json()["items"]
        for item in items[:2]:
            body = {"status": "submitted", "values": {"label": {"value": "pos"}}}
            assert owner.post(f"/api/v1/records/{item['id']}/responses", json=body).status_code == 201
        assert owner.get(f"/api/v1/datasets/{created.id}/progress").json()["completed"] == 2
        patch = owner.patch(
            f"/api/v1/datasets/{created.id}", json={"distribution": {"strategy": "overlap", "min_submitted": 2}}
        )
        assert patch.status_code == 200, patch.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progress = owner.get(f"/api/v1/datasets/{created.id}/progress").json()
            if progress["completed"] == 0:
                break
            time.sleep(0.3)
        assert (progress["completed"], progress["pending"]) == (0, 3), (progress, _tail(argilla["home"], "worker"))


def _tail(home: Path, name: str) -> str:
    return (home / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]


@needs_server
def test_cli_status_and_data_survive_a_restart(argilla, dataset, capsys):
    home, port = argilla["home"], argilla["port"]
    assert main(["status", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "running at" in out and not re.search(re.escape(argilla["keys"]["owner"]), out)
    before = ui_search(argilla, dataset, "annotator", status="pending")

    assert sorted(stop_server(home, quiet=True)) == ["redis", "server", "worker"]
    status = server_status(home)
    assert not status.running and not any(status.pids.values())
    assert main(["status", "--home", str(home)]) == 3

    started = time.monotonic()
    info = start_server(home=home, port=port, quiet=True)
    print(f"\nrestart took {time.monotonic() - started:.1f} s")
    assert info.api_url == argilla["info"].api_url
    assert json.loads((home / "credentials.json").read_text()) == argilla["credentials"]
    assert ui_search(argilla, dataset, "annotator", status="pending") == before
    assert ui_search(argilla, dataset, "annotator", status="submitted")[1] == 3
    # A second `up` finds it running and changes nothing.
    assert start_server(home=home, port=port, quiet=True).api_url == info.api_url


@needs_server
def test_similarity_search(argilla):
    import argilla as rg

    client = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=LABELS)],
        vectors=[rg.VectorField(name="emb", dimensions=3)],
    )
    created = rg.Dataset(name="vectors", workspace=argilla["info"].workspace, settings=settings, client=client).create()
    vectors = {
        "v0": [1.0, 0.0, 0.0],
        "v1": [0.9, 0.1, 0.0],
        "v2": [0.0, 1.0, 0.0],
        "v3": [-1.0, 0.0, 0.0],
        "v4": [0.5, 0.5, 0.0],
    }
    created.records.log(
        [rg.Record(id=rid, fields={"text": rid}, vectors={"emb": value}) for rid, value in vectors.items()]
    )
    dataset = {"id": str(created.id)}

    def similar(vector_query: dict, limit: int = 10) -> list[tuple[str, float]]:
        with http(argilla, "owner") as api:
            response = api.post(
                f"/api/v1/me/datasets/{dataset['id']}/records/search",
                json={"query": {"vector": {"name": "emb", **vector_query}}},
                params={"limit": limit},
            )
        assert response.status_code == 200, response.text
        return [(item["record"]["external_id"], item["query_score"]) for item in response.json()["items"]]

    found = similar({"value": [1.0, 0.0, 0.0]})
    assert [rid for rid, _ in found] == ["v0", "v1", "v4", "v2", "v3"]
    assert dict(found)["v2"] == pytest.approx(0.5) and dict(found)["v0"] == pytest.approx(1.0)
    assert [rid for rid, _ in similar({"value": [1.0, 0.0, 0.0], "order": "least_similar"}, limit=2)] == ["v3", "v2"]
    with http(argilla, "owner") as api:
        items = api.get(f"/api/v1/datasets/{dataset['id']}/records").json()["items"]
    v0 = next(item["id"] for item in items if item["external_id"] == "v0")
    assert [rid for rid, _ in similar({"record_id": v0})] == ["v1", "v4", "v2", "v3"]


@needs_server
def test_a_start_that_fails_leaves_nothing_running(tmp_path):
    home = tmp_path / "argilla"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ArgillaServerError, match="did not answer within") as error:
        start_server(home=home, port=port, timeout_s=0.5, quiet=True)
    assert "log ends" in str(error.value)
    status = server_status(home)
    assert not any(status.pids.values()) and not list((home / "run").glob("*.pid"))
    # The port is still free for a later start.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
