"""Does a LoRA training killed mid-way and resumed end with the weights of an uninterrupted one, on this device?

`workbench.finetune.lora.train_adapter` checkpoints every `checkpoint_every` steps and resumes from the
newest checkpoint. Its dropout masks draw from the random generator of the device it trains on: the
CPU's on a CPU, the GPU's own on CUDA. A checkpoint that kept only the CPU's state resumes on a GPU
with other masks, so the weights drift from the uninterrupted run's. This script trains a tiny
Llama model made here (random weights, a word-level tokenizer built here: no download) three ways
on the device it finds (or `--device`):

1. uninterrupted, `--steps` steps;
2. killed after step `--kill` (an exception from `after_step`, after the checkpoint at
   `--checkpoint-every`), then resumed in the same folder to `--steps`;
3. the same kill and resume with the device's random state NOT restored (the state the checkpoint
   holds for the device is dropped, as before this was saved), to show the check can fail.

It prints the largest absolute difference of the adapter weights and of the loss curves between
(1) and (2), and between (1) and (3), the device, and wall times. On a CPU (3) equals (1) too: the
CPU's state was always restored. No asserts: a figure of 0 for (2) is the pass, and on CUDA a
non-zero (3) shows what the saved state is for.

Run:  .venv/bin/python benchmarks/resume_check.py [--device cuda] [--steps 12 --kill 7 --checkpoint-every 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from workbench.finetune import lora
from workbench.finetune.lora import AdapterSettings, train_adapter

WORDS = ("the card was declined my transfer is late refund please help where is money account blocked "
         "label answer billing fraud other request complaint question").split()
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


class Killed(RuntimeError):
    """Stands in for the process being killed after a step."""


def tiny_model_and_tokenizer(device: str):
    """A 2-layer Llama with random weights (seed 0) and a word-level tokenizer over `WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "</s>", "<system>", "<user>", "<assistant>"]
    vocab = {word: i for i, word in enumerate(specials + sorted(set(WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=vocab["<pad>"], eos_token_id=vocab["</s>"])
    return LlamaForCausalLM(config).to(device), tokenizer


def chats(count: int) -> list[list[dict[str, str]]]:
    """`count` training chats of words from `WORDS`, the answer one of five labels."""
    labels = ["billing", "fraud", "other", "request", "complaint"]
    rows = []
    for n in range(count):
        text = " ".join(WORDS[(n * 7 + k) % 20] for k in range(6 + n % 5))
        rows.append([{"role": "system", "content": "label the request"}, {"role": "user", "content": text},
                     {"role": "assistant", "content": f"label {labels[n % 5]}"}])
    return rows


def train(folder: Path, device: str, settings: AdapterSettings, kill: int | None):
    """Train in `folder`; with `kill`, stop after that step once, then resume to the end."""
    rows = chats(24)
    folder.mkdir(parents=True, exist_ok=True)

    def after_step(step: int, _loss: float) -> None:
        if kill is not None and step == kill and not (folder / "killed").exists():
            (folder / "killed").touch()
            raise Killed(step)

    started = time.monotonic()
    try:
        trained = train_adapter(rows, folder, settings=settings, device=device, progress=False,
                                base=lambda: tiny_model_and_tokenizer(device), after_step=after_step)
    except Killed:
        trained = train_adapter(rows, folder, settings=settings, device=device, progress=False,
                                base=lambda: tiny_model_and_tokenizer(device), after_step=after_step)
    from safetensors.torch import load_file

    weights = load_file(str(Path(trained.path) / "adapter_model.safetensors"))
    import json

    record = json.loads((folder / "training.json").read_text())
    return weights, record["losses"], record.get("resumed_from"), time.monotonic() - started


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--kill", type=int, default=7)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        # Bitwise-repeatable kernels, so that a difference is the random state's, not the kernels'.
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    settings = AdapterSettings(max_steps=args.steps, batch_size=4, learning_rate=5e-3, r=4, alpha=8, dropout=0.3,
                               checkpoint_every=args.checkpoint_every, seed=0)
    work = Path(tempfile.mkdtemp(prefix="resume_check_"))
    try:
        whole, whole_losses, _, whole_seconds = train(work / "whole", args.device, settings, None)
        resumed, resumed_losses, resumed_at, resumed_seconds = train(work / "resumed", args.device, settings, args.kill)
        restore = lora._restore_device_rng
        lora._restore_device_rng = lambda *_: None  # as before the device's state was saved
        try:
            lost, lost_losses, lost_at, _ = train(work / "lost", args.device, settings, args.kill)
        finally:
            lora._restore_device_rng = restore
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"device: {args.device} ({name}); torch {torch.__version__}; {args.steps} steps, killed after step "
              f"{args.kill}, checkpoints every {args.checkpoint_every} (resumed from step {resumed_at}, {lost_at})")
        print(f"uninterrupted: {whole_seconds:.1f} s; killed and resumed: {resumed_seconds:.1f} s")
        loss_gap = max(abs(a - b) for a, b in zip(whole_losses, resumed_losses))
        lost_gap = max(abs(a - b) for a, b in zip(whole_losses, lost_losses))
        print(f"resumed vs uninterrupted: largest weight difference {largest_difference(whole, resumed):.3g}, "
              f"largest loss difference {loss_gap:.3g}")
        print(f"resumed without the device's random state: largest weight difference "
              f"{largest_difference(whole, lost):.3g}, largest loss difference {lost_gap:.3g}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
