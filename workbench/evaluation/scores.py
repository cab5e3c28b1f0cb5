"""Scores of a run for any task kind: the task's kind decides what is scored and how."""

from __future__ import annotations

import pandas as pd

from workbench.core.task import Task


def score(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Headline scores per variant (higher is better, except ``hamming_loss``).

    Columns: ``variant``, ``n``, then by kind: classification ``accuracy`` and precision, recall
    and F1 macro/micro/weighted; NER ``f1`` (strict), ``boundary_f1``, ``type_f1``; multi-label
    ``f1`` (micro), ``macro_f1``, ``samples_f1``, ``exact_match``, ``hamming_loss``.
    """
    return task.kind.score(predictions, gold, task)


def per_label_scores(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Per (variant, label): ``precision``, ``recall``, ``f1`` (strict for NER), ``support``."""
    return task.kind.per_label_scores(predictions, gold, task)


def confusion(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, variant: str) -> pd.DataFrame | None:
    """Gold x predicted counts for one variant, or None for kinds that have no confusion matrix."""
    return task.kind.confusion(predictions, gold, task, variant)
