"""A transformers model, with or without a peft adapter, behind the workbench's `Model` protocol.

This is how a soft prompt is served: llama.cpp has no soft prompts (its adapters are LoRA and
control vectors), so a prompt-tuned model cannot run on the embedded runtime. To compare it on
equal terms, its base runs here too (`TransformersModel` without an adapter), greedy by default,
one request at a time. Answers are not constrained to the schema here (transformers has no
grammar decoding built in); the task's parser reads them as it reads any model's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from workbench.models.base import ChatRequest, Completion


class TransformersModel:
    """`model` (a transformers causal LM, or a peft model around one) and its `tokenizer` as a
    `Model`. `name` and `adapter` (e.g. the adapter's data hash) make up its identity."""

    max_concurrency = 1

    def __init__(self, model: Any, tokenizer: Any, *, name: str, adapter: str | None = None,
                 adapter_sha256: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        self.adapter_sha256 = adapter_sha256
        config = getattr(model, "peft_config", {}).get("default")
        self.soft_prompt = str(getattr(config, "peft_type", "")).endswith("PROMPT_TUNING")
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        """The model, and for a tuned one its training data hash and its weights' SHA-256: two
        trainings on the same rows (another method, epochs or seed) never share cache entries."""
        identity: dict[str, Any] = {"kind": "transformers", "model": self.name}
        if self.adapter:
            identity["adapter"] = self.adapter
        if self.adapter_sha256:
            identity["adapter_sha256"] = self.adapter_sha256
        return identity

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self.complete_sync, request)

    def complete_sync(self, request: ChatRequest) -> Completion:
        import torch

        prompt = self.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        device = next(self.model.parameters()).device
        encoded = {key: value.to(device) for key, value in encoded.items()}
        options = request.options
        sampling: dict[str, Any] = {"do_sample": options.temperature > 0}
        if options.temperature > 0:
            sampling.update(temperature=options.temperature, top_p=options.top_p or 1.0)
            if options.seed is not None:
                torch.manual_seed(options.seed)
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        with self._lock, torch.no_grad():
            started = time.perf_counter()
            if self.soft_prompt:
                # peft's own generate() with the key-value cache answers garbled text with a soft
                # prompt (transformers 5, peft 0.21), and without the cache every token is a whole
                # forward pass. So: the soft prompt's embeddings and then the prompt's token
                # embeddings, as peft's forward builds them, given to the base model, cache on.
                tokens = self.model.word_embeddings(encoded["input_ids"])
                inputs = torch.cat([self.model.get_prompt(batch_size=1).to(tokens.dtype), tokens], dim=1)
                new = self.model.get_base_model().generate(
                    inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long, device=device),
                    max_new_tokens=options.max_tokens, pad_token_id=pad, **sampling)[0]  # the new tokens only
            else:
                output = self.model.generate(**encoded, max_new_tokens=options.max_tokens, pad_token_id=pad,
                                             **sampling)
                new = output[0][encoded["input_ids"].shape[1]:]
            latency = time.perf_counter() - started
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finished = len(new) and int(new[-1]) == self.tokenizer.eos_token_id
        return Completion(text=text.strip(), tokens_in=int(encoded["input_ids"].shape[1]), tokens_out=int(len(new)),
                          finish_reason="stop" if finished or len(new) < options.max_tokens else "length",
                          latency_s=latency)


def load_tuned(adapter_dir: str | Path, base: tuple[Any, Any], *,
               name: str = "SmolLM2-135M-Instruct") -> TransformersModel:
    """The base (model, tokenizer) with the peft adapter saved in `adapter_dir` (LoRA or a soft
    prompt) as a `TransformersModel`; its identity names the adapter's training data hash (when
    the folder's ``training.json`` has one) and the SHA-256 of its weights."""
    import json

    from peft import PeftModel

    from workbench.finetune.base_model import file_sha256

    model, tokenizer = base
    tuned = PeftModel.from_pretrained(model, str(adapter_dir))
    record = Path(adapter_dir).parent / "training.json"
    digest = json.loads(record.read_text())["data_hash"] if record.exists() else str(adapter_dir)
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    return TransformersModel(tuned, tokenizer, name=name, adapter=digest,
                             adapter_sha256=file_sha256(str(weights)) if weights.exists() else None)
