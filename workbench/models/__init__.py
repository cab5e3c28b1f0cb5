"""The model seam: every model call goes through a `Model` (the only place provider SDKs are imported)."""

from workbench.models.base import (
    ChatRequest,
    Completion,
    FatalModelError,
    GenerationOptions,
    Model,
    RetryableModelError,
)
from workbench.models.llama_cpp import LlamaCppModel, embedded_model_path
from workbench.models.openai_compatible import OpenAICompatibleModel, redact_url
from workbench.models.pricing import Price, PriceTable, load_prices
from workbench.models.registry import (
    ModelConfigError,
    model_from_config,
    register_model,
    resolve_api_key,
    validate_model_config,
)
from workbench.models.transformers_local import LocalTransformersModel, ModelFolderError

__all__ = [
    "ChatRequest", "Completion", "FatalModelError", "GenerationOptions", "LlamaCppModel", "LocalTransformersModel",
    "Model", "ModelFolderError",
    "OpenAICompatibleModel", "Price", "PriceTable", "RetryableModelError", "embedded_model_path",
    "ModelConfigError", "load_prices", "model_from_config", "redact_url", "register_model", "resolve_api_key",
    "validate_model_config",
]
