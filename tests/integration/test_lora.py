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
         for text, label in [("The fee you charged me is wrong.", "complaint"), ("Please send me a new card.", "request"),
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
    from workbench.finetune.lora import LoraSettings, train_lora

    settings = LoraSettings(epochs=4, batch_size=2, checkpoint_every=100, learning_rate=2e-3)
    trained = train_lora(CHATS, tmp_path / "run", settings=settings, base=_fresh(base), progress=False)
    assert trained.steps == 8 and len(trained.losses) == 8
    assert sum(trained.losses[-2:]) < sum(trained.losses[:2])  # last epoch below the first
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["data_hash"] == trained.data_hash and record["losses"] == trained.losses
    assert record["supervised_tokens"] == trained.supervised_tokens > 0 and record["device"] == "cpu"
    assert (trained.path / "adapter_config.json").exists() and (trained.path / "adapter_model.safetensors").exists()


SCRIPT = """
import json, sys
from workbench.finetune.lora import LoraSettings, train_lora
chats = json.load(open(sys.argv[1]))
settings = LoraSettings(epochs=3, batch_size=2, checkpoint_every=2, seed=3)
train_lora(chats, sys.argv[2], settings=settings, device="cpu", progress=False,
           after_step=lambda step, loss: print(f"step {step}", flush=True))
"""


def test_a_training_killed_with_sigkill_resumes_to_the_same_weights(base, tmp_path):
    import torch
    from safetensors.torch import load_file

    from workbench.finetune.lora import CheckpointMismatch, LoraSettings, train_lora

    settings = LoraSettings(epochs=3, batch_size=2, checkpoint_every=2, seed=3)
    whole = train_lora(CHATS, tmp_path / "whole", settings=settings, base=_fresh(base), progress=False)

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

    resumed = train_lora(CHATS, killed, settings=settings, base=_fresh(base), progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == whole.steps == 6
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-5)
    first, second = (load_file(path / "adapter_model.safetensors") for path in (whole.path, resumed.path))
    assert set(first) == set(second) and all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)
    with pytest.raises(CheckpointMismatch, match="other training rows"):
        train_lora(CHATS[:3], killed, settings=settings, base=_fresh(base), progress=False)
