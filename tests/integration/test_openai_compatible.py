"""`OpenAICompatibleModel` with its default, ``structured_output="json_schema"``, end to end.

Over real TCP, through the real `openai` SDK, against the stub server, which checks every
``json_schema`` request the way OpenAI's strict mode does (workbench.testing.openai_stub) and answers
following the schema. Also: which endpoint errors stop a run (401, 403, 404), an HTTP-date
``Retry-After`` and a broken 200 body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pandas as pd
import pytest

from workbench.core.data import validate_dataset
from workbench.core.task import Task, task_from_dict
from workbench.models.base import ChatRequest, FatalModelError
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.prompting.runner import RetryPolicy, run_variants
from workbench.prompting.templates import answer_schema
from workbench.prompting.variants import parse_variant
from workbench.testing.openai_stub import StubConfig, StubServer, check_response_format, default_answer

pytestmark = pytest.mark.integration

LABELS = [{"name": "DRUG", "definition": "A medicine."}, {"name": "DOSE", "definition": "An amount of it."},
          {"name": "EVENT", "definition": "What happened to the patient."}]
TEXTS = ["Took aspirin 500mg and got a headache.", "Ibuprofen 200 mg, then a rash.", "No medicine taken."]
TASKS = {kind: task_from_dict({"name": f"t_{kind}", "kind": kind, "labels": LABELS})
         for kind in ("classification", "ner", "multilabel")}
GOLD = {"classification": ["DRUG", "DOSE", "EVENT"],
        "ner": [[{"start": 5, "end": 12, "label": "DRUG"}], [{"start": 0, "end": 9, "label": "DRUG"}], []],
        "multilabel": [["DRUG", "DOSE"], ["DRUG"], []]}
# What the stub's schema-following answer parses to: the first label, no entities, no labels.
EXPECTED = {"classification": "DRUG", "ner": [], "multilabel": []}
EXPECTED_KEYS = {"classification": ("label",), "ner": ("entities",), "multilabel": ("labels",)}
VARIANTS = ["zero_shot", "definitions", "cot", "definitions+cot"]
QUICK = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def dataset(task: Task) -> pd.DataFrame:
    frame = pd.DataFrame({"example_id": [f"e{i}" for i in range(len(TEXTS))], "text": TEXTS,
                          task.kind.target_column: GOLD[task.kind.name]})
    return validate_dataset(frame, task)


@pytest.fixture
def make_stub() -> Iterator:
    """Start stubs in threads (a custom `answer` may see the bodies), stop them all afterwards."""
    servers: list[StubServer] = []

    def make(answer: Any = None, **config: Any) -> StubServer:
        server = StubServer(StubConfig(**config), answer=answer)
        server.start_in_thread()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop_thread()


def model_for(server: StubServer, **kwargs: Any) -> OpenAICompatibleModel:
    return OpenAICompatibleModel("stub-model", base_url=server.base_url, api_key="test-key", **kwargs)


def outcomes(server: StubServer) -> list[str]:
    server.stop_thread()  # every line due is written
    return [record["outcome"] for record in server.records]


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_json_schema_runs_pass_openais_strict_checks_and_parse(make_stub, kind):
    task = TASKS[kind]
    bodies: list[dict] = []

    def answer(body: dict) -> str:
        bodies.append(body)
        return default_answer(body)

    server = make_stub(answer=answer)
    model = model_for(server)
    assert model.structured_output == "json_schema"  # the default under test
    predictions = run_variants(task, dataset(task), VARIANTS, model, retry=QUICK, progress=False)

    assert outcomes(server) == ["ok"] * len(VARIANTS) * len(TEXTS)  # no bad_request, nothing retried
    assert predictions["request_error"].isna().all(), predictions["request_error"].dropna().tolist()
    assert predictions["parse_error"].isna().all(), predictions["parse_error"].dropna().tolist()
    assert all(prediction == EXPECTED[kind] for prediction in predictions["prediction"])
    # What was sent is the strict json_schema the workbench builds (reasoning first for cot), less
    # the keyword strict mode refuses.
    sent = [json.loads(text) for text in {json.dumps(body["response_format"]) for body in bodies}]
    for response_format in sent:
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == "answer" and response_format["json_schema"]["strict"] is True
        assert check_response_format(response_format) is None
        assert "maxLength" not in json.dumps(response_format)
    built = {tuple(answer_schema(task, parse_variant(variant))["properties"]) for variant in VARIANTS}
    assert {tuple(rf["json_schema"]["schema"]["properties"]) for rf in sent} == built
    assert ("reasoning", *EXPECTED_KEYS[kind]) in built
    cot = predictions[predictions["variant"].str.contains("cot")]
    assert cot["reasoning"].eq("").all()  # the schema's reasoning string came back and was read


def test_the_workbench_schemas_would_be_refused_unless_maxlength_is_stripped():
    """Why `_add_structure` strips maxLength: the schemas as built break strict mode's keyword rule."""
    task = TASKS["ner"]
    schema = answer_schema(task, parse_variant("cot"))
    raw = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    violation = check_response_format(raw)
    assert violation is not None and violation.rule == "unsupported_keyword" and "'maxLength'" in violation.message
    kwargs: dict[str, Any] = {}
    OpenAICompatibleModel("m", base_url="http://127.0.0.1:9/v1")._add_structure(kwargs, {}, schema)
    assert check_response_format(kwargs["response_format"]) is None


def complete(model: OpenAICompatibleModel, schema: dict) -> Any:
    async def call() -> Any:
        try:
            return await model.complete(ChatRequest(messages=({"role": "user", "content": "hi"},), schema=schema))
        finally:
            await model.aclose()

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("schema", "rule", "words"),
    [
        ({"type": "object", "properties": {"label": {"type": "string", "minLength": 1}}, "required": ["label"],
          "additionalProperties": False}, "unsupported_keyword", "In context=('properties', 'label'), 'minLength'"),
        ({"type": "object", "properties": {"labels": {"type": "array", "items": {"type": "string"}}},
          "required": ["labels"]}, "additional_properties", "In context=(), 'additionalProperties' is required"),
        ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}, "required_all", "Missing ['b']"),
    ],
)
def test_a_schema_that_breaks_a_strict_rule_is_refused_with_the_rule_named(make_stub, schema, rule, words):
    server = make_stub()
    with pytest.raises(openai.BadRequestError) as info:
        complete(model_for(server), schema)
    assert info.value.status_code == 400 and info.value.code == rule
    assert words in info.value.message and f"strict mode rule: {rule}" in info.value.message
    assert outcomes(server) == ["bad_request"]


def test_a_property_named_like_a_keyword_is_kept(make_stub):
    """Stripping the keyword maxLength must not strip a property called maxLength (required would name it)."""
    schema = {"type": "object", "additionalProperties": False, "required": ["maxLength", "note"],
              "properties": {"maxLength": {"type": "integer"}, "note": {"type": "string", "maxLength": 5}}}
    server = make_stub()
    completion = complete(model_for(server), schema)
    assert json.loads(completion.text) == {"maxLength": 0, "note": ""}
    assert outcomes(server) == ["ok"]


# -- errors that stop a run, and ones that are retried ------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_key_account_or_model_stops_the_run_after_one_request(make_stub, status):
    task = TASKS["classification"]
    server = make_stub(status_for_all=status)
    model = model_for(server, max_concurrency=1)
    with pytest.raises(FatalModelError) as info:
        run_variants(task, dataset(task), ["zero_shot", "definitions"], model, retry=QUICK, progress=False)
    message = str(info.value)
    assert server.base_url in message and "'stub-model'" in message and f"({status})" in message
    assert "api_key_env" in message and "base_url" in message and "model name" in message
    assert outcomes(server) == ["status_for_all"]  # exactly one request: a fatal error is not retried


def test_the_refusal_never_repeats_a_key_in_the_url(make_stub):
    server = make_stub(status_for_all=401)
    model = OpenAICompatibleModel("stub-model", base_url=f"{server.base_url}?key=sk-PLANTED-0003", api_key="k")
    with pytest.raises(FatalModelError) as info:
        complete(model, {"type": "object", "properties": {}, "required": [], "additionalProperties": False})
    assert "PLANTED" not in str(info.value)
    assert f"http://{server.host}:{server.port}/v1" in str(info.value)


def test_a_client_side_error_is_not_retried_as_a_malformed_body(make_stub):
    """The SDK's aiohttp client refuses a key together with user:password in base_url (a ValueError)
    before sending anything; that is no broken response, and retrying it would repeat it."""
    server = make_stub()
    model = OpenAICompatibleModel("stub-model", base_url=f"http://user:pw@{server.host}:{server.port}/v1",
                                  api_key="k", structured_output="none")
    task = TASKS["classification"]
    predictions = run_variants(task, dataset(task).head(1), ["zero_shot"], model, retry=QUICK, progress=False)
    # Without openai[aiohttp] (httpx) the call may simply succeed; either way nothing is retried.
    assert not any("malformed response body" in error for error in predictions["request_error"].dropna())
    assert predictions.attrs["run_stats"]["retries"] == 0


def test_an_http_date_retry_after_is_honoured(make_stub):
    task = TASKS["classification"]
    server = make_stub(faults=("rate_limit",), fault_rate=1.0, retry_after_s=2, retry_after_http_date=True)
    started = time.monotonic()
    predictions = run_variants(task, dataset(task).head(1), ["zero_shot"], model_for(server), progress=False)
    waited = time.monotonic() - started
    assert 1.0 <= waited <= 6.0, f"waited {waited:.2f} s for a Retry-After date 2 s ahead"
    assert predictions["request_error"].isna().all() and predictions["prediction"].eq("DRUG").all()
    assert predictions.attrs["run_stats"]["retries"] == 1
    assert outcomes(server) == ["rate_limit", "ok"]
    assert server.records[1]["t"] - server.records[0]["t"] >= 1.0


def test_a_malformed_200_body_is_retried(make_stub):
    task = TASKS["multilabel"]
    server = make_stub(faults=("malformed_body",), fault_rate=1.0)
    predictions = run_variants(task, dataset(task), ["zero_shot"], model_for(server), retry=QUICK, progress=False)
    assert predictions["request_error"].isna().all(), predictions["request_error"].dropna().tolist()
    assert predictions["parse_error"].isna().all()
    assert predictions.attrs["run_stats"]["retries"] == len(TEXTS)
    assert sorted(outcomes(server)) == ["malformed_body"] * len(TEXTS) + ["ok"] * len(TEXTS)
