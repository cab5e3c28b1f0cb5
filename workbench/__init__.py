"""workbench: find where a general LLM fails on a client's task, and fix it.

One import line per stage; optional and heavy parts (plotly, ipywidgets, argilla) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.core.data import DatasetError, label_counts, load_dataset, sample_dataset, validate_dataset
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
    "score": "workbench.evaluation.scores",
    "per_label_scores": "workbench.evaluation.scores",
    "confusion": "workbench.evaluation.scores",
    "summarize_run": "workbench.evaluation.efficiency",
    "score_efficiency": "workbench.evaluation.efficiency",
    "example_consistency": "workbench.evaluation.consistency",
    "variant_disagreements": "workbench.evaluation.consistency",
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
    "annotator_agreement": "workbench.annotation",
    "suggestion_acceptance": "workbench.annotation",
    "load_corrections": "workbench.annotation",
    "ErrorClusterer": "workbench.points.cluster",
    "cluster_errors": "workbench.points.cluster",
    "find_label_issues": "workbench.points.label_issues",
    "push_label_issues": "workbench.points.label_issues",
    "push_point_review": "workbench.points.review",
    "pull_point_review": "workbench.points.review",
    "apply_point_review": "workbench.points.review",
    "PointExplorer": "workbench.reporting.point_explorer",
    "name_points": "workbench.points.naming",
    "description_fit": "workbench.points.naming",
    "load_experiment": "workbench.experiments.config",
    "Run": "workbench.experiments.runs",
    "run_experiment": "workbench.experiments.runs",
    "write_run": "workbench.experiments.runs",
    "load_run": "workbench.experiments.runs",
}

__all__ = [
    "DatasetError", "GenerationOptions", "Model", "PromptVariant", "ResponseCache", "RetryPolicy", "Task",
    "TaskSpecError", "build_requests", "format_messages", "label_counts", "load_dataset", "load_prices", "load_task",
    "model_from_config", "parse_variant", "render_messages", "run_variants", "sample_dataset", "validate_dataset",
    *_LAZY,
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
