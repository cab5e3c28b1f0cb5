"""The re-test on llama.cpp's server: a tiny LoRA (4 rows, 3 steps) converted to GGUF and served by
llama-cpp-python's server under its own model alias beside the base; the served tuned model answers
as the in-process one does at temperature 0, and a name the server does not list is refused before
anything is sent."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import llama_cpp_server

from workbench.finetune.serving import ServingError, pull_served_pair, validate_serve_config
from workbench.models.base import ChatRequest, GenerationOptions

pytestmark = pytest.mark.integration
SYSTEM = {"role": "system", "content": "Label the customer's message as complaint or request. Answer in JSON."}
ROWS = [("The fee you charged me is wrong.", "complaint"), ("Please send me a new card.", "request"),
        ("Your app keeps crashing, useless.", "complaint"), ("Can I raise my limit?", "request")]
CHATS = [[SYSTEM, {"role": "user", "content": text}, {"role": "assistant", "content": json.dumps({"label": label})}]
         for text, label in ROWS]
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["complaint", "request"]}}, "required": ["label"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(training folder, base URL): the adapter trained once, served with the base by llama.cpp's server."""
    from workbench.finetune.gguf_adapter import train_for_llama_cpp
    from workbench.finetune.lora import AdapterSettings
    from workbench.models.llama_cpp import embedded_model_path

    folder = tmp_path_factory.mktemp("served") / "finetune" / "lora"
    settings = AdapterSettings(max_steps=3, batch_size=2, learning_rate=3e-3, checkpoint_every=100)
    _, adapter = train_for_llama_cpp(CHATS, folder, settings=settings)
    common = {"model": str(embedded_model_path()), "n_threads": 2, "n_ctx": 1024}
    models = [{**common, "model_alias": "smollm2"},
              {**common, "model_alias": "smollm2-tuned", "lora_path": str(adapter)}]
    with llama_cpp_server(models, folder.parent) as url:
        yield folder, url


def block(url: str, adapter: str) -> dict:
    return validate_serve_config({"base_url": url, "api_key_env": None, "model": "smollm2", "adapter": adapter,
                                  "structured_output": "json_object_schema"})


def test_the_served_tuned_model_answers_as_the_in_process_one(served):
    from workbench.models.llama_cpp import LlamaCppModel

    folder, url = served
    pair = pull_served_pair(block(url, "smollm2-tuned"), folder)
    options = GenerationOptions(temperature=0.0, max_tokens=16)
    requests = [ChatRequest((SYSTEM, {"role": "user", "content": text}), options, SCHEMA)
                for text in ["The fee you charged me is wrong.", "I want to close my account.", "Where is my card?"]]
    local_tuned = LlamaCppModel(lora_path=folder / "adapter.gguf", n_ctx=1024, n_threads=2)
    local_base = LlamaCppModel(n_ctx=1024, n_threads=2)

    async def answers(model):
        return [(await model.complete(r)).text for r in requests]

    tuned = asyncio.run(answers(pair.tuned))
    assert tuned == [local_tuned.complete_sync(r).text for r in requests]
    assert asyncio.run(answers(pair.base)) == [local_base.complete_sync(r).text for r in requests]
    assert pair.tuned.request_model == "smollm2-tuned" and pair.base.request_model == "smollm2"


def test_a_name_the_server_does_not_list_is_refused_before_the_re_test(served):
    folder, url = served
    # llama-cpp-python's server would answer an unknown model with its first one, the base: refused here.
    listed = r"lists \['smollm2', 'smollm2-tuned'\]\) does not serve the adapter 'smollm2-r2'"
    with pytest.raises(ServingError, match=listed):
        pull_served_pair(block(url, "smollm2-r{round}"), folder, round_number=2)
