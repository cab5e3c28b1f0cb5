"""Scores per prompt variant: quality, and what it costs.

Every row of a predictions DataFrame counts: an answer that could not be parsed, or a call that
failed, is scored as wrong (for NER: as finding no entities), never dropped. Repeats are pooled.
Entity-level NER scores live in `workbench.core.kinds.ner_scoring`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from workbench.core.answers import UNPARSED
from workbench.core.errors import InputError

if TYPE_CHECKING:
    from workbench.core.task import Task


def _joined(predictions: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    missing = set(predictions["example_id"]) - set(gold["example_id"])
    if missing:
        raise InputError(f"{len(missing)} predicted example_id(s) are not in the gold data, e.g. {sorted(missing)[:3]}")
    truth = gold.set_index("example_id")["label"]
    predicted = predictions["prediction"].where(predictions["prediction"].notna(), UNPARSED)
    return pd.DataFrame({
        "variant": predictions["variant"].to_numpy(),
        "gold": predictions["example_id"].map(truth).to_numpy(),
        "predicted": predicted.to_numpy(),
    })


def score_classification(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Headline classification scores per variant (higher is better).

    Columns: ``variant``, ``n`` (rows), ``accuracy``, and ``precision_<avg>``, ``recall_<avg>``,
    ``f1_<avg>`` for avg in macro, micro and weighted, over the task's labels (scikit-learn's
    definitions; unparsed answers count as a wrong prediction of no label).
    """
    labels = list(task.label_names)
    rows = []
    for variant, group in _joined(predictions, gold).groupby("variant", sort=False):
        row: dict[str, object] = {"variant": variant, "n": len(group), "accuracy": float((group["gold"] == group["predicted"]).mean())}
        for average in ("macro", "micro", "weighted"):
            precision, recall, f1, _ = precision_recall_fscore_support(
                group["gold"], group["predicted"], labels=labels, average=average, zero_division=0
            )
            row.update({f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1})
        rows.append(row)
    return pd.DataFrame(rows)


def per_label_scores(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Precision, recall and F1 per (variant, label); ``support`` is the number of gold rows."""
    labels = list(task.label_names)
    rows = []
    for variant, group in _joined(predictions, gold).groupby("variant", sort=False):
        precision, recall, f1, support = precision_recall_fscore_support(
            group["gold"], group["predicted"], labels=labels, average=None, zero_division=0
        )
        for index, label in enumerate(labels):
            rows.append({"variant": variant, "label": label, "precision": precision[index],
                         "recall": recall[index], "f1": f1[index], "support": int(support[index])})
    return pd.DataFrame(rows)


def confusion(predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, variant: str) -> pd.DataFrame:
    """Confusion matrix for one variant: gold labels as rows, predicted labels as columns.

    A last column, ``<unparsed>``, counts answers that could not be read.
    """
    joined = _joined(predictions, gold)
    group = joined[joined["variant"] == variant]
    if group.empty:
        raise InputError(f"variant {variant!r} is not in the predictions")
    labels = list(task.label_names)
    matrix = confusion_matrix(group["gold"], group["predicted"], labels=[*labels, UNPARSED])
    frame = pd.DataFrame(matrix[: len(labels)], index=pd.Index(labels, name="gold"),
                         columns=pd.Index([*labels, UNPARSED], name="predicted"))
    return frame
