"""A transformers model, with or without a peft adapter, behind the workbench's `Model` protocol.

This is how a soft prompt is served: llama.cpp has no soft prompts (its adapters are LoRA and
control vectors), so a prompt-tuned model cannot run on the embedded runtime. To compare it on
equal terms, its base runs here too (`TransformersModel` without an adapter), greedy by default,
one request at a time. The runtime itself, `TransformersModel`, lives with the other runtimes in
`workbench.models.transformers_local` (model kind ``transformers`` builds on it); it is imported
here for the callers that load it from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.models.transformers_local import TransformersModel

__all__ = ["TransformersModel", "load_tuned"]


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
