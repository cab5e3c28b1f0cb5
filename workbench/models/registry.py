"""Build a model from a config mapping; model kinds are registered, not hard-wired.

Each model kind has a pydantic schema for its config (unknown keys refused) and a factory that
builds the model from a validated config. `validate_model_config` checks a config when an
experiment is loaded, long before anything is built or called; `model_from_config` builds. The three
shipped kinds are registered here; a later stage (a fine-tuned adapter, another runtime) adds its
own with `register_model` without editing this module.

``kind: transformers`` runs a causal LM that transformers loads from a local folder, in-process
(`workbench.models.transformers_local`): ``{kind: transformers, base_model: FOLDER, device:
auto|cpu|cuda, dtype: float32|bfloat16|float16, adapter: PEFT_FOLDER}``; only ``base_model`` is
required. How many tokens an answer may have is the experiment's ``options.max_tokens``, as for
every kind.

Keys. A key goes only to the endpoint it belongs to:

- ``api_key_env: SOME_VAR`` sends the value of ``SOME_VAR`` and nothing else; the run stops
  before any call when ``SOME_VAR`` is unset.
- ``api_key_env: null`` sends no key at all (local servers that need none).
- Without ``api_key_env``, ``OPENAI_API_KEY`` is sent, but only to OpenAI's own endpoint
  (``https://api.openai.com``). Any other ``base_url`` must say which variable holds its key, or
  that it needs none, so that an OpenAI key never reaches a third party.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench.core.errors import InputError
from workbench.models.base import Model
from workbench.models.llama_cpp import LlamaCppModel
from workbench.models.openai_compatible import OPENAI_BASE_URL, OpenAICompatibleModel, redact_url
from workbench.models.transformers_local import LocalTransformersModel

OPENAI_HOST = "api.openai.com"


class ModelConfigError(InputError):
    """A model config is invalid or asks for a key that is not there; the message says how to fix it."""


@dataclass(frozen=True)
class _Registered:
    schema: type[BaseModel]
    factory: Callable[[Any, Mapping[str, str]], Model]


_KINDS: dict[str, _Registered] = {}


def register_model(kind: str, schema: type[BaseModel], factory: Callable[[Any, Mapping[str, str]], Model]) -> None:
    """Make ``{"kind": kind, ...}`` configs valid by `schema` and built by `factory(validated, environ)`."""
    _KINDS[kind] = _Registered(schema, factory)


def validate_model_config(config: Mapping[str, Any] | None, *, source: str = "model") -> BaseModel:
    """The config validated by its kind's schema (``kind`` defaults to ``embedded``).

    Raises ModelConfigError naming each bad field, the unknown kind, or a key put in the config.
    """
    config = dict(config or {})
    kind = config.pop("kind", "embedded")
    if "api_key" in config:
        raise ModelConfigError(
            f"{source}: put API keys in the environment, not in the config; name the variable with api_key_env"
        )
    registered = _KINDS.get(kind)
    if registered is None:
        raise ModelConfigError(f"{source}: unknown model kind {kind!r}; use one of {sorted(_KINDS)}")
    try:
        return registered.schema.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ModelConfigError(f"{source} ({kind}) is not valid: {problems}") from None


def model_from_config(config: Mapping[str, Any] | None, *, environ: Mapping[str, str] | None = None) -> Model:
    """Build a model from a config mapping (see the module docstring for keys).

    ``{"kind": "embedded"}`` (default) is the local SmolLM2; ``{"kind": "openai_compatible",
    "model": ..., "base_url": ..., "api_key_env": ..., "structured_output": ...,
    "max_concurrency": 16, "timeout_s": 60}`` is an HTTP endpoint; ``{"kind": "transformers",
    "base_model": FOLDER, ...}`` a transformers model from a local folder (`TransformersConfig`).
    `environ` defaults to ``os.environ``. Raises ModelConfigError for an invalid config, and the
    kind's own errors when it cannot be built (e.g. `ModelFolderError` for a missing folder).
    """
    config = dict(config or {})
    validated = validate_model_config(config)
    factory = _KINDS[config.get("kind", "embedded")].factory
    return factory(validated, os.environ if environ is None else environ)


class EmbeddedConfig(BaseModel):
    """``kind: embedded``: a GGUF run in-process by llama.cpp (default: the embedded SmolLM2)."""

    model_config = ConfigDict(extra="forbid")
    model_path: str | None = None
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)
    lora_path: str | None = None  # a LoRA adapter in GGUF (a tuned model on the same runtime)


class OpenAICompatibleConfig(BaseModel):
    """``kind: openai_compatible``: an HTTP endpoint spoken to through the `openai` SDK.

    ``adapter: NAME`` selects a LoRA adapter the server serves on top of ``model`` (the base), the
    way ``adapter_style`` says: ``model_name`` (default; vLLM ``--lora-modules NAME=PATH``: the
    request's model is NAME) or ``llama_cpp`` (llama-server ``--lora FILE``: the request carries
    ``lora: [{"id": adapter_id, "scale": 1.0}]``; ``adapter_id`` is the adapter's place among the
    server's ``--lora`` options, default 0). See `OpenAICompatibleModel`."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    base_url: str | None = None
    base_url_env: str = "OPENAI_BASE_URL"
    api_key_env: str | None = Field(None, min_length=1)
    structured_output: Literal["json_schema", "json_object_schema", "grammar", "json_object", "none"] = "json_schema"
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    adapter: str | None = Field(None, min_length=1)
    adapter_style: Literal["model_name", "llama_cpp"] = "model_name"
    adapter_id: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _adapter_settings(self) -> OpenAICompatibleConfig:
        given = self.model_fields_set
        if self.adapter is None and given & {"adapter_style", "adapter_id"}:
            raise InputError("adapter_style and adapter_id describe an adapter: add adapter: <its name>")
        if "adapter_id" in given and self.adapter_style != "llama_cpp":
            raise InputError("adapter_id is llama-server's adapter number: it needs adapter_style: llama_cpp "
                             "(vLLM-style servers select the adapter by its name, adapter)")
        if self.adapter is not None and self.adapter_style == "llama_cpp" and "lora" in self.extra_body:
            raise InputError("extra_body.lora and adapter both choose llama-server's adapters: keep one")
        return self


class TransformersConfig(BaseModel):
    """``kind: transformers``: a causal LM that transformers loads from the local folder
    `base_model` (``config.json``, weights, a tokenizer with a chat template), run in-process on
    `device` ("auto": CUDA when visible, else the CPU) in `dtype`; `adapter` is a peft adapter
    folder put on top (a tuned model on the same runtime as its base, what `workbench finetune`
    trains)."""

    model_config = ConfigDict(extra="forbid")
    base_model: str = Field(min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    adapter: str | None = Field(None, min_length=1)


def resolve_base_url(config: OpenAICompatibleConfig, environ: Mapping[str, str]) -> str:
    """The endpoint: the config's ``base_url``, else the variable ``base_url_env``, else OpenAI's."""
    return config.base_url or environ.get(config.base_url_env) or OPENAI_BASE_URL


def resolve_api_key(config: OpenAICompatibleConfig, environ: Mapping[str, str]) -> str | None:
    """The key to send to the config's endpoint, or None to send none (see the module docstring).

    Raises ModelConfigError, before any call, when the named variable is unset or when a
    non-OpenAI endpoint does not say where its key is.
    """
    base_url = resolve_base_url(config, environ)
    if "api_key_env" in config.model_fields_set:
        if config.api_key_env is None:
            return None
        key = environ.get(config.api_key_env)
        if not key:
            raise ModelConfigError(
                f"the model config names api_key_env: {config.api_key_env}, but {config.api_key_env} is not set; "
                f"set it to the key for {redact_url(base_url)} (no other variable is read instead)"
            )
        return key
    if urlsplit(base_url).hostname == OPENAI_HOST:
        key = environ.get("OPENAI_API_KEY")
        if not key:
            raise ModelConfigError(f"OPENAI_API_KEY is not set; it holds the key for {redact_url(base_url)}")
        return key
    raise ModelConfigError(
        f"the model config points at {redact_url(base_url)} but does not say where its key is: add "
        "api_key_env: <VARIABLE> (the variable holding that endpoint's key) or api_key_env: null (it needs "
        f"none). OPENAI_API_KEY is only ever sent to {OPENAI_HOST}."
    )


def _embedded(config: EmbeddedConfig, environ: Mapping[str, str]) -> Model:
    return LlamaCppModel(config.model_path, n_ctx=config.n_ctx, n_threads=config.n_threads, lora_path=config.lora_path)


def _openai_compatible(config: OpenAICompatibleConfig, environ: Mapping[str, str]) -> Model:
    return OpenAICompatibleModel(
        config.model, base_url=resolve_base_url(config, environ), api_key=resolve_api_key(config, environ),
        structured_output=config.structured_output, max_concurrency=config.max_concurrency,
        timeout_s=config.timeout_s, extra_body=config.extra_body, adapter=config.adapter,
        adapter_style=config.adapter_style, adapter_id=config.adapter_id,
    )


def _transformers(config: TransformersConfig, environ: Mapping[str, str]) -> Model:
    return LocalTransformersModel(config.base_model, device=config.device, dtype=config.dtype, adapter=config.adapter)


register_model("embedded", EmbeddedConfig, _embedded)
register_model("openai_compatible", OpenAICompatibleConfig, _openai_compatible)
register_model("transformers", TransformersConfig, _transformers)
