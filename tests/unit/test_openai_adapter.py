"""A LoRA adapter on an OpenAI-compatible server, chosen by the model config's ``adapter``: vLLM-style
servers get the adapter's name as the request's model, llama.cpp's llama-server gets its
``lora: [{id, scale}]`` body field; the stub (a real HTTP server) records the bodies it received.
The adapter is part of the model's identity, so base and adapter never share a cache entry."""

import asyncio

import pytest

from workbench.models.base import ChatRequest, FatalModelError
from workbench.models.registry import ModelConfigError, model_from_config, validate_model_config
from workbench.prompting.cache import cache_key
from workbench.reporting.provenance import describe_model
from workbench.testing.openai_stub import StubConfig, StubServer

REQUEST = ChatRequest(({"role": "user", "content": "Labels: complaint, request\nText: my card broke"},))


@pytest.fixture()
def stub():
    bodies = []

    def answer(body):
        bodies.append(body)
        return '{"label": "complaint"}'

    server = StubServer(answer=answer)
    server.start_in_thread()
    server.bodies = bodies
    yield server
    server.stop_thread()


def ask(model):
    async def once():
        try:
            return await model.complete(REQUEST)
        finally:
            await model.aclose()

    return asyncio.run(once())


def config(stub, **more):
    return {"kind": "openai_compatible", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_url": stub.base_url,
            "api_key_env": None, "structured_output": "none", **more}


def test_a_vllm_style_adapter_is_the_requests_model_name(stub):
    base = model_from_config(config(stub))
    tuned = model_from_config(config(stub, adapter="points"))
    ask(base)
    ask(tuned)
    assert [body["model"] for body in stub.bodies] == ["HuggingFaceTB/SmolLM2-135M-Instruct", "points"]
    assert all("lora" not in body for body in stub.bodies)
    assert tuned.identity["model"] == base.identity["model"] and tuned.identity["adapter"] == "points"
    assert "adapter" not in base.identity  # a base model's identity, and its cache keys, are as before
    assert cache_key(base.identity, REQUEST) != cache_key(tuned.identity, REQUEST)
    assert describe_model(tuned.identity).endswith("with adapter points")


def test_a_llama_server_adapter_is_chosen_by_its_lora_field(stub):
    tuned = model_from_config(config(stub, adapter="adapter.gguf", adapter_style="llama_cpp", adapter_id=1,
                                     extra_body={"cache_prompt": True}))
    ask(tuned)
    body = stub.bodies[-1]
    assert body["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert body["lora"] == [{"id": 1, "scale": 1.0}] and body["cache_prompt"] is True
    assert tuned.identity["adapter"] == "adapter.gguf" and tuned.identity["adapter_id"] == 1
    other = model_from_config(config(stub, adapter="adapter.gguf", adapter_style="llama_cpp"))
    assert other.identity["adapter_id"] == 0 and cache_key(other.identity, REQUEST) != cache_key(tuned.identity,
                                                                                                    REQUEST)


@pytest.mark.parametrize("settings, message", [
    ({"adapter_style": "llama_cpp"}, "add adapter: <its name>"),
    ({"adapter": "points", "adapter_id": 2}, "needs adapter_style: llama_cpp"),
    ({"adapter": "a", "adapter_style": "llama_cpp", "extra_body": {"lora": []}}, "keep one"),
    ({"adapter": "a", "adapter_style": "peft"}, "adapter_style"),
])
def test_adapter_settings_that_do_not_fit_are_refused_when_the_config_is_loaded(settings, message):
    with pytest.raises(ModelConfigError, match=message):
        validate_model_config({"kind": "openai_compatible", "model": "base", "api_key_env": None, **settings})


def test_a_server_that_does_not_serve_the_adapter_says_how_to_serve_it():
    server = StubServer(StubConfig(status_for_all=404))
    server.start_in_thread()
    try:
        tuned = model_from_config({"kind": "openai_compatible", "model": "base", "base_url": server.base_url,
                                   "api_key_env": None, "adapter": "points"})
        with pytest.raises(FatalModelError, match=r"refused model 'points'.*--lora-modules points=PATH"):
            ask(tuned)
    finally:
        server.stop_thread()


@pytest.mark.parametrize("more", [
    {"structured_output": "json_schema"},
    {"adapter": "adapter.gguf", "adapter_style": "llama_cpp", "adapter_id": 1, "extra_body": {"cache_prompt": True}},
    {"adapter": "points", "structured_output": "json_object_schema"},
])
def test_the_batch_body_of_a_request_is_the_body_a_direct_call_posts(stub, more):
    """A batch line carries `request_body`: it must be what `complete` sends, or a batch answer
    would be stored under the key of another request."""
    model = model_from_config(config(stub, **more))
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["complaint", "request"]}},
              "required": ["label"], "additionalProperties": False}
    request = ChatRequest(REQUEST.messages, schema=schema)

    async def once():
        try:
            return await model.complete(request)
        finally:
            await model.aclose()

    asyncio.run(once())
    assert model.request_body(request) == stub.bodies[-1]
