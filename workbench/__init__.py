"""workbench: find where a general LLM fails on a client's task, and fix it."""

from workbench.cache import ResponseCache, cache_key
from workbench.datasets import DatasetError, load_dataset, validate_dataset
from workbench.models import (
    ChatRequest,
    Completion,
    GenerationOptions,
    LlamaCppModel,
    Model,
    OpenAICompatibleModel,
    model_from_config,
)
from workbench.pricing import PriceTable, load_prices
from workbench.prompts import format_messages, render_messages
from workbench.runner import RetryPolicy, build_requests, run_variants
from workbench.tasks import Task, TaskSpecError, load_task
from workbench.variants import PromptVariant, parse_variant

__all__ = [
    "ChatRequest",
    "Completion",
    "DatasetError",
    "GenerationOptions",
    "LlamaCppModel",
    "Model",
    "OpenAICompatibleModel",
    "PriceTable",
    "PromptVariant",
    "ResponseCache",
    "RetryPolicy",
    "Task",
    "TaskSpecError",
    "build_requests",
    "cache_key",
    "format_messages",
    "load_dataset",
    "load_prices",
    "load_task",
    "model_from_config",
    "parse_variant",
    "render_messages",
    "run_variants",
    "validate_dataset",
]
