"""Build a model from a config mapping; model kinds are registered, not hard-wired.

Each model kind has a factory taking the config mapping (without ``kind``). The two shipped kinds
are registered here; a later stage (a fine-tuned adapter, another runtime) adds its own with
`register_model` without editing this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from workbench.models.base import Model
from workbench.models.llama_cpp import LlamaCppModel
from workbench.models.openai_compatible import OpenAICompatibleModel

ModelFactory = Callable[[dict[str, Any]], Model]
_FACTORIES: dict[str, ModelFactory] = {}


def register_model(kind: str, factory: ModelFactory) -> None:
    """Make ``{"kind": kind, ...}`` configs build models with `factory(config_without_kind)`."""
    _FACTORIES[kind] = factory


def model_from_config(config: dict[str, Any]) -> Model:
    """Build a model from a config mapping.

    ``{"kind": "embedded"}`` (default) is the local SmolLM2; ``{"kind": "openai_compatible",
    "model": ..., "base_url": ..., "api_key_env": "OPENAI_API_KEY", "structured_output": ...,
    "max_concurrency": 16, "timeout_s": 60}`` is an HTTP endpoint. Keys are read from the
    environment variable named by ``api_key_env``, never from the config itself.
    """
    config = dict(config or {})
    kind = config.pop("kind", "embedded")
    if "api_key" in config:
        raise ValueError("put API keys in the environment, not in the config; name the variable with api_key_env")
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ValueError(f"unknown model kind {kind!r}; use one of {sorted(_FACTORIES)}")
    return factory(config)


def _embedded(config: dict[str, Any]) -> Model:
    return LlamaCppModel(config.pop("model_path", None), **config)


def _openai_compatible(config: dict[str, Any]) -> Model:
    if "model" not in config:
        raise ValueError("an openai_compatible model needs 'model' (the name the endpoint serves)")
    key_env = config.pop("api_key_env", "OPENAI_API_KEY")
    base_url_env = config.pop("base_url_env", "OPENAI_BASE_URL")
    base_url = config.pop("base_url", None) or os.environ.get(base_url_env)
    return OpenAICompatibleModel(config.pop("model"), base_url=base_url, api_key=os.environ.get(key_env), **config)


register_model("embedded", _embedded)
register_model("openai_compatible", _openai_compatible)
