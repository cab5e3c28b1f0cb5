"""LoRA fine-tuning of the embedded SmolLM2 (loaded by transformers from its GGUF) on CPU: the loss
falls on the answer tokens only, a tiny training lowers the loss on its rows, and a training killed
with SIGKILL resumes from its last checkpoint to the same weights as one never interrupted."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from workbench.finetune.tokens import IGNORE, TrainingRowError, tokenize_chat

pytestmark = pytest.mark.integration
SYSTEM = {"role": "system", "content": "Label the customer's message as complaint or request. Answer in JSON."}
CHATS = [[SYSTEM, {"role": "user", "content": text}, {"role": "assistant", "content": json.dumps({"label": label})}]
         for text, label in [("The fee you charged me is wrong.", "complaint"),
                             ("Please send me a new card.", "request"),
                             ("Your app keeps crashing, useless.", "complaint"), ("Can I raise my limit?", "request")]]


@pytest.fixture(scope="module")
def base():
    from workbench.finetune.base_model import load_base

    return load_base(device="cpu")


def test_only_the_answer_and_its_end_of_turn_are_supervised(base):
    _, tokenizer = base
    row = tokenize_chat(tokenizer, CHATS[0], "row 0", max_length=512)
    answer = tokenizer('{"label": "complaint"}<|im_end|>\n', add_special_tokens=False)["input_ids"]
    supervised = [label for label in row.labels if label != IGNORE]
    assert supervised == answer and row.supervised == len(answer)
    prompt = len(row.input_ids) - len(answer)
    assert row.labels[:prompt] == [IGNORE] * prompt and row.input_ids[prompt:] == answer
    assert "helpful AI assistant named SmolLM" not in tokenizer.decode(row.input_ids)  # our system message only
    with pytest.raises(TrainingRowError, match="row 7: the chat must start with a system message"):
        tokenize_chat(tokenizer, CHATS[0][1:], "row 7", max_length=512)
    with pytest.raises(TrainingRowError, match=r"row 8: \d+ tokens, more than the 10"):
        tokenize_chat(tokenizer, CHATS[0], "row 8", max_length=10)


def _fresh(base):
    model, tokenizer = base
    return lambda: (copy.deepcopy(model), tokenizer)


def test_a_tiny_training_lowers_the_loss_and_records_what_made_it(base, tmp_path):
    from workbench.finetune.lora import AdapterSettings, train_adapter

    settings = AdapterSettings(epochs=4, batch_size=2, checkpoint_every=100, learning_rate=2e-3)
    trained = train_adapter(CHATS, tmp_path / "run", settings=settings, base=_fresh(base), progress=False)
    assert trained.steps == 8 and len(trained.losses) == 8
    assert sum(trained.losses[-2:]) < sum(trained.losses[:2])  # last epoch below the first
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["data_hash"] == trained.data_hash and record["losses"] == trained.losses
    assert record["supervised_tokens"] == trained.supervised_tokens > 0 and record["device"] == "cpu"
    assert (trained.path / "adapter_config.json").exists() and (trained.path / "adapter_model.safetensors").exists()


SCRIPT = """
import json, sys
from workbench.finetune.lora import AdapterSettings, train_adapter
chats = json.load(open(sys.argv[1]))
settings = AdapterSettings(epochs=3, batch_size=2, checkpoint_every=2, seed=3)
train_adapter(chats, sys.argv[2], settings=settings, device="cpu", progress=False,
              after_step=lambda step, loss: print(f"step {step}", flush=True))
"""


def test_a_training_killed_with_sigkill_resumes_to_the_same_weights(base, tmp_path):
    import torch
    from safetensors.torch import load_file

    from workbench.finetune.lora import AdapterSettings, CheckpointMismatch, train_adapter

    settings = AdapterSettings(epochs=3, batch_size=2, checkpoint_every=2, seed=3)
    whole = train_adapter(CHATS, tmp_path / "whole", settings=settings, base=_fresh(base), progress=False)

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(CHATS))
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(rows), str(killed)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 300
    for line in process.stdout:  # kill it once it is past its first checkpoint, mid-way
        if line.strip() == "step 3" or time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (killed / "checkpoints").glob("*.pt")) == ["step-0000002.pt"]
    assert not (killed / "adapter").exists()

    resumed = train_adapter(CHATS, killed, settings=settings, base=_fresh(base), progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == whole.steps == 6
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-5)
    first, second = (load_file(path / "adapter_model.safetensors") for path in (whole.path, resumed.path))
    assert set(first) == set(second) and all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)
    with pytest.raises(CheckpointMismatch, match="other training rows"):
        train_adapter(CHATS[:3], killed, settings=settings, base=_fresh(base), progress=False)


def test_the_tuned_adapter_converts_to_gguf_and_answers_in_llama_cpp(base, tmp_path):
    """llama.cpp's own converter (fetched from the llama-cpp-python source distribution on PyPI)
    turns the peft adapter into a GGUF adapter that llama.cpp loads on top of the same base file.
    It runs in this process, and writes the same bytes as in a new interpreter, its own."""
    from workbench.finetune.gguf_adapter import convert_adapter, converter, save_base_config
    from workbench.finetune.lora import AdapterSettings, train_adapter
    from workbench.models.base import ChatRequest, GenerationOptions
    from workbench.models.llama_cpp import LlamaCppModel

    settings = AdapterSettings(epochs=6, batch_size=2, learning_rate=3e-3, checkpoint_every=100)
    fresh = _fresh(base)
    model, tokenizer = fresh()
    trained = train_adapter(CHATS, tmp_path / "run", settings=settings, base=lambda: (model, tokenizer), progress=False)
    config = save_base_config(model, tokenizer, tmp_path / "base_config")
    adapter = convert_adapter(trained.path, tmp_path / "adapter.gguf", config)
    assert adapter.stat().st_size > 100_000
    alone = tmp_path / "alone.gguf"
    subprocess.run([sys.executable, str(converter()), "--base", str(config), "--outtype", "f32", "--outfile",
                    str(alone), str(trained.path)], check=True, capture_output=True)
    assert alone.read_bytes() == adapter.read_bytes()
    request = ChatRequest(tuple(CHATS[0][:-1]), GenerationOptions(temperature=0.0, max_tokens=24))
    tuned = LlamaCppModel(lora_path=adapter, n_ctx=512, n_threads=2)
    plain = LlamaCppModel(n_ctx=512, n_threads=2)
    assert tuned.identity["lora"]["sha256"] and "lora" not in plain.identity  # never one cache entry for both
    answer = tuned.complete_sync(request).text
    assert json.loads(answer) == {"label": "complaint"}, answer  # learnt on four rows, six epochs
    assert plain.complete_sync(request).text != answer

    # As people deploy it: llama.cpp's OpenAI-compatible server with --lora_path, through the openai SDK.
    import asyncio

    from conftest import free_port, wait_for_http

    from workbench.models.llama_cpp import embedded_model_path
    from workbench.models.openai_compatible import OpenAICompatibleModel

    port, log = free_port(), tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
                                   "--lora_path", str(adapter), "--model_alias", "smollm2-tuned", "--host",
                                   "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "512"],
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", server, timeout_s=120, log=log)
        served = OpenAICompatibleModel("smollm2-tuned", base_url=f"http://127.0.0.1:{port}/v1", api_key=None,
                                       structured_output="none")
        completion = asyncio.run(served.complete(request))
        assert json.loads(completion.text) == {"label": "complaint"}, completion.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_adapter_on_another_base_is_refused_before_it_runs(tmp_path):
    from workbench.finetune.base_model import AdapterBaseMismatch, base_identity, check_adapter_base

    record = tmp_path / "training.json"
    record.write_text(json.dumps({"base": base_identity()}))
    check_adapter_base(record)  # the embedded model: fine
    record.write_text(json.dumps({"base": {"file": "other.gguf", "sha256": "0" * 64}}))
    with pytest.raises(AdapterBaseMismatch, match="trained on other.gguf"):
        check_adapter_base(record)


def test_a_soft_prompt_learns_the_answer_and_is_served_through_transformers(base, tmp_path):
    """Prompt tuning on the same rows; llama.cpp has no soft prompts, so it is served by
    transformers + peft, with its base on the same runtime for a fair comparison."""
    from workbench.finetune.lora import AdapterSettings, train_adapter
    from workbench.finetune.transformers_model import TransformersModel, load_tuned
    from workbench.models.base import ChatRequest, GenerationOptions

    settings = AdapterSettings(method="prompt_tuning", virtual_tokens=16, epochs=8, batch_size=2, learning_rate=3e-2,
                               checkpoint_every=100)
    trained = train_adapter(CHATS, tmp_path / "soft", settings=settings, base=_fresh(base), progress=False)
    assert sum(trained.losses[-2:]) < sum(trained.losses[:2]) / 4
    config = json.loads((trained.path / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 16
    tuned = load_tuned(trained.path, _fresh(base)())
    plain = TransformersModel(*_fresh(base)(), name="SmolLM2-135M-Instruct")
    request = ChatRequest(tuple(CHATS[0][:-1]), GenerationOptions(temperature=0.0, max_tokens=24))
    answer = tuned.complete_sync(request)
    assert json.loads(answer.text) == {"label": "complaint"}
    assert plain.complete_sync(request).text != answer.text
    assert tuned.identity["adapter"] == trained.data_hash and "adapter" not in plain.identity
    assert len(tuned.identity["adapter_sha256"]) == 64  # two trainings on the same rows never share answers

    # The cached decoding (soft prompt + token embeddings to the base model) gives the tokens peft's
    # own step-by-step forward gives, without the key-value cache.
    import torch

    prompt = tuned.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
    ids = tuned.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(answer.tokens_out):
            logits = tuned.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    stepwise = tuned.tokenizer.decode(ids[0][-answer.tokens_out:], skip_special_tokens=True).strip()
    assert stepwise == answer.text


def test_a_soft_prompt_is_not_sent_to_llama_cpps_converter(tmp_path):
    from workbench.finetune.gguf_adapter import AdapterConversionError, convert_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(AdapterConversionError, match="PROMPT_TUNING adapter; llama.cpp runs LoRA adapters only"):
        convert_adapter(adapter, tmp_path / "out.gguf", tmp_path)
