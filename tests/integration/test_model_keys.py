"""A key goes only where it belongs: which Authorization header reaches an endpoint, per config.

Over real TCP, through the real `openai` SDK, against the stub server; a second stub stands for a
third-party endpoint that must never see the OpenAI key.
"""

from __future__ import annotations

import pytest

from workbench.core.task import task_from_dict
from workbench.models.registry import ModelConfigError, model_from_config, resolve_api_key, validate_model_config
from workbench.prompting.runner import run_variants
from workbench.testing.openai_stub import StubConfig, StubServer

pytestmark = pytest.mark.integration

TASK = task_from_dict({"name": "t", "kind": "classification", "labels": [
    {"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]})
OPENAI_KEY = "sk-openai-PLANTED-0001"
OTHER_KEY = "sk-other-PLANTED-0002"


@pytest.fixture
def stub():
    server = StubServer(StubConfig())
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def call_once(config: dict, environ: dict[str, str]) -> None:
    import pandas as pd

    model = model_from_config(config, environ=environ)
    dataset = pd.DataFrame({"example_id": ["e1"], "text": ["hello"], "label": ["request"]})
    predictions = run_variants(TASK, dataset, ["zero_shot"], model, progress=False)
    assert predictions["request_error"].isna().all()


def endpoint(stub: StubServer, **fields) -> dict:
    return {"kind": "openai_compatible", "model": "stub-model", "base_url": stub.base_url,
            "structured_output": "none", **fields}


def test_the_named_variable_is_sent_and_nothing_else(stub):
    call_once(endpoint(stub, api_key_env="OTHER_KEY"), {"OTHER_KEY": OTHER_KEY, "OPENAI_API_KEY": OPENAI_KEY})
    assert stub.authorizations == [f"Bearer {OTHER_KEY}"]


def test_a_named_variable_that_is_unset_stops_before_any_call(stub):
    with pytest.raises(ModelConfigError, match="OTHER_KEY is not set"):
        call_once(endpoint(stub, api_key_env="OTHER_KEY"), {"OPENAI_API_KEY": OPENAI_KEY})
    assert stub.authorizations == []


def test_no_key_configured_sends_no_authorization_header(stub):
    call_once(endpoint(stub, api_key_env=None), {"OPENAI_API_KEY": OPENAI_KEY})
    assert stub.authorizations == [None]


def test_the_openai_key_never_goes_to_another_endpoint_by_default(stub):
    with pytest.raises(ModelConfigError, match="api_key_env: null"):
        call_once(endpoint(stub), {"OPENAI_API_KEY": OPENAI_KEY})
    assert stub.authorizations == []


def test_the_openai_key_is_the_default_only_for_openai_itself():
    config = validate_model_config({"kind": "openai_compatible", "model": "gpt-4o-mini"})
    assert resolve_api_key(config, {"OPENAI_API_KEY": OPENAI_KEY}) == OPENAI_KEY
    via_env = validate_model_config({"kind": "openai_compatible", "model": "m"})
    assert resolve_api_key(via_env, {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": "https://api.openai.com/v1"}) \
        == OPENAI_KEY
    with pytest.raises(ModelConfigError, match="does not say where its key is"):
        resolve_api_key(via_env, {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": "https://llm.example.org/v1"})
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY is not set"):
        resolve_api_key(config, {})
    # Look-alike hosts are other endpoints.
    lookalike = validate_model_config({"kind": "openai_compatible", "model": "m",
                                       "base_url": "https://api.openai.com.evil.example/v1"})
    with pytest.raises(ModelConfigError, match="does not say where its key is"):
        resolve_api_key(lookalike, {"OPENAI_API_KEY": OPENAI_KEY})
