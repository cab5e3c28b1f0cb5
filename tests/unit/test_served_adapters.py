"""The re-test on a server: the serve: block, the listing check against the stub (vLLM's shape and
llama-server's /lora-adapters), and the vLLM request shape (the request's model is the adapter)."""

from __future__ import annotations

import asyncio
import json

import pytest

from workbench.finetune.serving import (
    ServingError,
    adapter_name,
    pull_served_pair,
    served_configs,
    validate_serve_config,
)
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.testing.openai_stub import StubConfig, StubLoraModule, StubServer

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def trained(tmp_path):
    """A training folder as `workbench finetune` leaves it: the peft adapter folder and the GGUF."""
    folder = tmp_path / "finetune" / "lora"
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"weights of this training")
    (folder / "adapter.gguf").write_bytes(b"gguf of this training")
    return folder


def stub(tmp_path, **config):
    bodies = []

    def answer(body):
        bodies.append(body)
        return json.dumps({"label": "complaint"})

    server = StubServer(StubConfig(**config), answer=answer)
    server.start_in_thread()
    return server, bodies


def ask(model, request):
    return asyncio.run(model.complete(request))


def serve_block(server, adapter="complaints-r{round}", **extra):
    return validate_serve_config({"base_url": server.base_url, "api_key_env": None, "model": BASE,
                                  "adapter": adapter, "structured_output": "none", **extra})


def test_a_listed_adapter_answers_with_its_name_as_the_requests_model(tmp_path, trained):
    server, bodies = stub(tmp_path, models=(BASE,),
                          lora_modules=(StubLoraModule("complaints-r1", str(trained / "adapter")),))
    try:
        pair = pull_served_pair(serve_block(server), trained, round_number=1)
        request = ChatRequest(({"role": "user", "content": "The fee is wrong."},), GenerationOptions(max_tokens=8))
        assert ask(pair.tuned, request).text == '{"label": "complaint"}'
        ask(pair.base, request)
    finally:
        server.stop_thread()
    assert [body["model"] for body in bodies] == ["complaints-r1", BASE]  # vLLM's shape: no lora field
    assert "lora" not in bodies[0] and pair.notes == ()
    assert pair.tuned.identity["adapter"] == "complaints-r1" and "adapter" not in pair.base.identity


def test_an_adapter_the_server_does_not_list_is_refused_before_any_chat_request(tmp_path, trained):
    server, bodies = stub(tmp_path, models=(BASE,),
                          lora_modules=(StubLoraModule("complaints-r1", str(trained / "adapter")),))
    try:
        with pytest.raises(ServingError) as refused:
            pull_served_pair(serve_block(server), trained, round_number=2)
    finally:
        server.stop_thread()
    message = str(refused.value)
    assert server.records == [] and bodies == []  # nothing was asked to answer
    assert "does not serve the adapter 'complaints-r2'" in message
    assert f"127.0.0.1:{server.port}/v1" in message and "['" + BASE + "', 'complaints-r1']" in message
    assert f"--enable-lora --lora-modules complaints-r2={(trained / 'adapter').resolve()}" in message
    assert f"lora_path: {(trained / 'adapter.gguf').resolve()}" in message  # llama.cpp's servers too


def test_an_adapter_served_from_another_training_or_base_is_refused(tmp_path, trained):
    other = tmp_path / "other" / "adapter"
    other.mkdir(parents=True)
    (other / "adapter_model.safetensors").write_bytes(b"weights of another training")
    copy = tmp_path / "copy" / "adapter"
    copy.mkdir(parents=True)
    (copy / "adapter_model.safetensors").write_bytes(b"weights of this training")
    server, bodies = stub(tmp_path, models=(BASE, "other-base"), lora_modules=(
        StubLoraModule("wrong-root", str(other)), StubLoraModule("a-copy", str(copy)),
        StubLoraModule("elsewhere", "/srv/models/adapter"), StubLoraModule("wrong-base", str(copy), "other-base")))
    try:
        with pytest.raises(ServingError, match=f"serves the adapter 'wrong-root' from {other}, which is not this "
                                               "training's adapter"):
            pull_served_pair(serve_block(server, "wrong-root"), trained)
        with pytest.raises(ServingError, match="on the base 'other-base', not on '" + BASE):
            pull_served_pair(serve_block(server, "wrong-base"), trained)
        assert pull_served_pair(serve_block(server, "a-copy"), trained).notes == ()  # the same weights
        notes = pull_served_pair(serve_block(server, "elsewhere"), trained).notes
    finally:
        server.stop_thread()
    assert bodies == [] and "/srv/models/adapter, which is not on this machine: not checked" in notes[0]


def test_a_base_the_server_does_not_list_and_an_unlisted_model_request_are_refused(tmp_path, trained):
    server, _ = stub(tmp_path, models=("another-model",))
    try:
        with pytest.raises(ServingError, match=f"does not serve the base model '{BASE}'"):
            pull_served_pair(serve_block(server, "x"), trained)
        import openai

        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        with pytest.raises(openai.NotFoundError, match="The model `x` does not exist"):  # as vLLM answers
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    finally:
        server.stop_thread()
    assert [r["outcome"] for r in server.records] == ["model_not_found"]


def test_llama_servers_adapter_numbers_are_checked_with_lora_adapters(tmp_path, trained):
    adapters = ({"id": 0, "path": str(trained / "adapter.gguf"), "scale": 0.0},)
    server, bodies = stub(tmp_path, models=(BASE,), lora_adapters=adapters)
    try:
        pair = pull_served_pair(serve_block(server, "tuned", adapter_style="llama_cpp", adapter_id=0), trained)
        ask(pair.tuned, ChatRequest(({"role": "user", "content": "hi"},), GenerationOptions(max_tokens=4)))
        with pytest.raises(ServingError, match="has no adapter number 1 .*lists \\['0: "):
            pull_served_pair(serve_block(server, "tuned", adapter_style="llama_cpp", adapter_id=1), trained)
    finally:
        server.stop_thread()
    assert bodies[0]["model"] == BASE and bodies[0]["lora"] == [{"id": 0, "scale": 1.0}]


def test_the_serve_block_is_validated_and_names_each_rounds_adapter():
    serve = validate_serve_config({"base_url": "http://gpu:8000/v1", "api_key_env": None, "model": BASE,
                                   "adapter": "c-r{round}"})
    assert adapter_name(serve, 3) == "c-r3"
    base, tuned = served_configs(serve, tuned="c-r3", base="c-r2")
    assert (base["adapter"], tuned["adapter"]) == ("c-r2", "c-r3")
    assert "adapter" not in served_configs(serve, tuned="c-r1")[0]
    with pytest.raises(ValueError, match="only the loop fills in"):
        adapter_name(serve, None)
    with pytest.raises(ValueError, match=r"holds \['name'\]; the only placeholder is \{round\}"):
        validate_serve_config({**serve, "adapter": "c-{name}"})
    with pytest.raises(ValueError, match="adapter: is missing"):
        validate_serve_config({"model": BASE, "api_key_env": None})
    with pytest.raises(ValueError, match="adapters"):  # an unknown key, refused by the model schema
        validate_serve_config({**serve, "adapters": "x"})
    with pytest.raises(ValueError, match="kind 'embedded'"):
        validate_serve_config({**serve, "kind": "embedded"})


def test_a_finished_training_is_recognised_only_with_the_same_rows_settings_and_adapter(tmp_path):
    from dataclasses import asdict, replace

    from workbench.finetune.lora import AdapterSettings
    from workbench.finetune.serving import read_finished_training
    from workbench.finetune.tokens import data_hash

    chats = [[{"role": "user", "content": "The fee is wrong."}, {"role": "assistant", "content": "complaint"}]]
    settings = AdapterSettings(max_steps=3, batch_size=2)
    served = tmp_path / "adapter.gguf"
    record = {"settings": asdict(settings), "data_hash": data_hash(chats), "steps": 3, "losses": [1.0, 0.9, 0.8],
              "rows": 1}
    (tmp_path / "training.json").write_text(json.dumps(record))
    assert read_finished_training(tmp_path, chats, settings, served) is None  # no adapter written yet
    served.write_bytes(b"gguf")
    assert read_finished_training(tmp_path, chats, settings, served)["rows"] == 1
    assert read_finished_training(tmp_path, chats, replace(settings, max_steps=4), served) is None
    assert read_finished_training(tmp_path, chats + chats, settings, served) is None
    (tmp_path / "training.json").write_text(json.dumps({**record, "losses": [1.0]}))  # stopped after one step
    assert read_finished_training(tmp_path, chats, settings, served) is None


def test_has_round_tells_a_name_per_round_from_one_name():
    from workbench.finetune.serving import has_round

    assert has_round({"adapter": "c-r{round}"}) and not has_round({"adapter": "c-tuned"})
    assert not has_round({"adapter": "c-{{round}}"})  # escaped braces: a literal name
