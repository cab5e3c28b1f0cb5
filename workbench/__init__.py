"""workbench: find where a general LLM fails on a client's task, and fix it.

One import line per stage; optional and heavy parts (plotly, ipywidgets, argilla) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.core.data import DatasetError, load_dataset, validate_dataset
from workbench.core.task import Task, TaskSpecError, load_task
from workbench.models.base import GenerationOptions, Model
from workbench.models.pricing import load_prices
from workbench.models.registry import model_from_config
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import RetryPolicy, build_requests, run_variants
from workbench.prompting.templates import format_messages, render_messages
from workbench.prompting.variants import PromptVariant, parse_variant

# Verbs whose modules import heavy or optional dependencies, loaded on first attribute access.
_LAZY = {
    "summarize_run": "workbench.evaluation.efficiency",
    "find_errors": "workbench.evaluation.errors",
    "score_consistency": "workbench.evaluation.consistency",
    "bootstrap_ci": "workbench.evaluation.significance",
    "compare_all": "workbench.evaluation.significance",
    "compare_variants": "workbench.evaluation.significance",
    "score_ner": "workbench.core.kinds.ner_scoring",
    "write_report": "workbench.reporting.sections",
    "plots": "workbench.reporting.plots",
    "ErrorBrowser": "workbench.reporting.browser",
    "connect": "workbench.annotation",
    "push_errors": "workbench.annotation",
    "push_predictions": "workbench.annotation",
    "pull_corrections": "workbench.annotation",
    "load_experiment": "workbench.experiments.config",
    "run_experiment": "workbench.experiments.config",
}

__all__ = [
    "DatasetError", "GenerationOptions", "Model", "PromptVariant", "ResponseCache", "RetryPolicy", "Task",
    "TaskSpecError", "build_requests", "format_messages", "load_dataset", "load_prices", "load_task",
    "model_from_config", "parse_variant", "render_messages", "run_variants", "validate_dataset", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "plots" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
