"""workbench: find where a general LLM fails on a client's task, and fix it.

One import line for every stage's verbs, from the task and the prompt variants to the training
data, the fine-tuning and the loop's rounds; optional and heavy parts (plotly, ipywidgets, argilla,
spaCy, datasets, torch, transformers, peft) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.core.data import DatasetError, label_counts, load_dataset, read_table, sample_dataset, validate_dataset
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
    "read_points": "workbench.points.run_points",
    "write_points": "workbench.points.run_points",
    "TrainingData": "workbench.trainingdata.examples",
    "build_training_data": "workbench.trainingdata.examples",
    "add_examples": "workbench.trainingdata.examples",
    "score_points": "workbench.trainingdata.scoring",
    "write_chat_jsonl": "workbench.trainingdata.openai_jsonl",
    "read_chat_jsonl": "workbench.trainingdata.openai_jsonl",
    "write_test_cases": "workbench.trainingdata.openai_jsonl",
    "to_chat_dataset": "workbench.trainingdata.export_hf",
    "to_token_classification": "workbench.trainingdata.export_hf",
    "save_dataset": "workbench.trainingdata.export_hf",
    "write_docbins": "workbench.trainingdata.export_spacy",
    "train_spacy": "workbench.trainingdata.export_spacy",
    "spacy_predictions": "workbench.trainingdata.export_spacy",
    "targeted_candidates": "workbench.trainingdata.targeted",
    "push_targeted": "workbench.trainingdata.targeted",
    "targeted_rows": "workbench.trainingdata.targeted",
    "AdapterSettings": "workbench.finetune.lora",
    "TrainedAdapter": "workbench.finetune.lora",
    "train_adapter": "workbench.finetune.lora",
    "before_after": "workbench.finetune.before_after",
    "learning_curve": "workbench.finetune.learning_curve",
    "llama_cpp_lora_trainer": "workbench.finetune.learning_curve",
    "load_experiment": "workbench.experiments.config",
    "load_notebook_experiment": "workbench.experiments.notebook_runs",
    "write_run_if_needed": "workbench.experiments.notebook_runs",
    "Run": "workbench.experiments.runs",
    "run_experiment": "workbench.experiments.runs",
    "write_run": "workbench.experiments.runs",
    "load_run": "workbench.experiments.runs",
    "cluster_run_errors": "workbench.experiments.stages",
    "build_run_training_data": "workbench.experiments.stages",
    "write_training_data": "workbench.experiments.stages",
    "retest": "workbench.experiments.stages",
    "best_variant": "workbench.experiments.stages",
    "RoundSettings": "workbench.experiments.rounds",
    "run_round": "workbench.experiments.rounds",
    "loop_folder": "workbench.experiments.rounds",
    "finished_rounds": "workbench.experiments.rounds",
    "load_rounds": "workbench.experiments.rounds",
    "batch_run": "workbench.scale.batch_runs",
    "export_batch": "workbench.scale.batch_runs",
    "import_batch": "workbench.scale.batch_runs",
    "compare_rounds": "workbench.experiments.round_comparison",
    "write_loop_report": "workbench.experiments.round_comparison",
    "plot_corrections": "workbench.reporting.annotation_plots",
    "plot_rounds": "workbench.reporting.rounds_report",
    "plot_point_status": "workbench.reporting.rounds_report",
    "load_training_losses": "workbench.reporting.training_plots",
    "plot_training_loss": "workbench.reporting.training_plots",
    "plot_learning_curve": "workbench.reporting.training_plots",
}

__all__ = [
    "DatasetError", "GenerationOptions", "Model", "PromptVariant", "ResponseCache", "RetryPolicy", "Task",
    "TaskSpecError", "build_requests", "format_messages", "label_counts", "load_dataset", "load_prices", "load_task",
    "model_from_config", "parse_variant", "read_table", "render_messages", "run_variants", "sample_dataset",
    "validate_dataset",
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
