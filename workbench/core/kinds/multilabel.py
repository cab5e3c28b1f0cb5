"""Multi-label classification: each text gets zero or more of the task's labels.

Scores follow scikit-learn's multi-label conventions (labels binarised per text): per-label
precision/recall/F1, micro/macro/samples F1, the exact-match ratio (subset accuracy) and Hamming
loss. An unusable answer predicts no labels for F1 and Hamming loss (like an NER answer that finds
no entities) and is always wrong for the exact-match ratio.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

from workbench.core.answers import ParsedAnswer, extract_list, is_missing, normalise_label
from workbench.core.errors import InputError
from workbench.core.kinds.base import AnnotationQuestion, AnswerView, TaskKind, submitted_empty
from workbench.core.kinds.classification import majority

if TYPE_CHECKING:
    from workbench.core.task import Task

LABELS_KEYS = ("labels", "label", "categories", "topics")
SCORE_COLUMNS = ["variant", "n", "f1", "macro_f1", "samples_f1", "exact_match", "hamming_loss"]


class MultiLabelKind(TaskKind):
    """A list of labels per text: ``labels`` in the data, ``{"labels": [...]}`` in answers."""

    name = "multilabel"
    target_column = "labels"
    headline_metric = "micro_f1"
    summary_column = "f1"
    error_types = ("false_negative", "false_positive", "parse_failure")
    error_columns = ("label",)
    target_noun = "every label that applies (or none)"
    headline_name = "micro F1 over labels"
    counted = ('Examples per label', 'examples')

    def validate_targets(self, targets, texts, task):
        known = set(task.label_names)
        clean, problems = [], []
        for value in targets:
            labels, found = _label_list(value, known)
            clean.append(labels)
            problems.append(found)
        return clean, problems

    def target_labels(self, target):
        return list(target or [])

    def answer_properties(self, task):
        labels = list(task.label_names)
        return {"labels": {"type": "array", "items": {"type": "string", "enum": labels}, "maxItems": len(labels)}}

    def answer_object(self, task, example):
        return {"labels": list(example["labels"])}

    def parse(self, task, raw, text):
        value, problem, reasoning = extract_list(raw, LABELS_KEYS, "labels")
        if problem is not None:
            return ParsedAnswer(None, problem, reasoning=reasoning)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return ParsedAnswer(None, f"'labels' must be a list, got {type(value).__name__}", reasoning=reasoning)
        labels, unknown = [], []
        for item in value:
            label = normalise_label(item, task.label_names)
            (labels if label is not None else unknown).append(label if label is not None else item)
        if unknown:
            return ParsedAnswer(None, f"label(s) {unknown} are not among {list(task.label_names)}", reasoning=reasoning)
        order = {label: index for index, label in enumerate(task.label_names)}
        return ParsedAnswer(sorted(set(labels), key=order.__getitem__), reasoning=reasoning)

    def _binarised(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task):
        truth = gold.set_index("example_id")["labels"]
        missing = set(predictions["example_id"]) - set(truth.index)
        if missing:
            raise InputError(f"{len(missing)} predicted example_id(s) are not in the gold data, e.g. {sorted(missing)[:3]}")
        labels = list(task.label_names)
        index = {label: position for position, label in enumerate(labels)}

        def matrix(values) -> np.ndarray:
            out = np.zeros((len(values), len(labels)), dtype=int)
            for row, value in enumerate(values):
                for label in ([] if is_missing(value) else value):
                    out[row, index[label]] = 1
            return out

        expected = matrix(predictions["example_id"].map(truth).tolist())
        predicted = matrix(predictions["prediction"].tolist())
        usable = ~predictions["prediction"].map(is_missing).to_numpy()
        return expected, predicted, usable

    def score(self, predictions, gold, task):
        """Per variant, higher is better except ``hamming_loss``: ``f1`` (micro), ``macro_f1``,
        ``samples_f1``, ``exact_match`` (share of texts whose label set is exactly right) and
        ``hamming_loss`` (share of text x label decisions that are wrong)."""
        rows = []
        for variant, group in predictions.groupby("variant", sort=False):
            expected, predicted, usable = self._binarised(group, gold, task)
            rows.append({
                "variant": variant,
                "n": len(group),
                "f1": f1_score(expected, predicted, average="micro", zero_division=1.0),
                "macro_f1": f1_score(expected, predicted, average="macro", zero_division=0.0),
                "samples_f1": f1_score(expected, predicted, average="samples", zero_division=1.0),
                "exact_match": float(((expected == predicted).all(axis=1) & usable).mean()),
                "hamming_loss": hamming_loss(expected, predicted),
            })
        return pd.DataFrame(rows, columns=SCORE_COLUMNS)

    def report_scores(self, predictions, gold, task):
        return self.score(predictions, gold, task).drop(columns=["n", "f1"])

    def per_label_scores(self, predictions, gold, task):
        rows = []
        for variant, group in predictions.groupby("variant", sort=False):
            expected, predicted, _ = self._binarised(group, gold, task)
            precision, recall, f1, support = precision_recall_fscore_support(
                expected, predicted, average=None, zero_division=0
            )
            for position, label in enumerate(task.label_names):
                rows.append({"variant": variant, "label": label, "precision": precision[position],
                             "recall": recall[position], "f1": f1[position], "support": int(support[position])})
        return pd.DataFrame(rows)

    def example_statistics(self, group, truth, task):
        expected, predicted, usable = self._binarised(group, truth.rename("labels").reset_index(), task)
        columns: dict[str, Any] = {
            "rows": np.ones(len(group)),
            "correct": ((expected == predicted).all(axis=1) & usable).astype(float),
            "tp": (expected & predicted).sum(axis=1).astype(float),
            "fp": ((1 - expected) & predicted).sum(axis=1).astype(float),
            "fn": (expected & (1 - predicted)).sum(axis=1).astype(float),
        }
        for position, label in enumerate(task.label_names):
            columns[f"tp:{label}"] = (expected[:, position] & predicted[:, position]).astype(float)
            columns[f"fp:{label}"] = ((1 - expected[:, position]) & predicted[:, position]).astype(float)
            columns[f"fn:{label}"] = (expected[:, position] & (1 - predicted[:, position])).astype(float)
        return columns

    def errors(self, predictions, gold, task):
        """One row per missed label (``false_negative``), extra label (``false_positive``) or
        unusable answer (``parse_failure``); ``gold`` and ``predicted`` are the label lists and
        ``label`` the label concerned (None for a parse failure)."""
        truth = gold.set_index("example_id")["labels"]
        rows = []
        for example_id, variant, repeat, prediction in zip(
            predictions["example_id"], predictions["variant"], predictions["repeat"], predictions["prediction"]
        ):
            expected = list(truth[example_id])
            base = {"example_id": example_id, "variant": variant, "repeat": repeat, "gold": expected}
            if is_missing(prediction):
                rows.append({**base, "error_type": "parse_failure", "predicted": None, "label": None})
                continue
            predicted = list(prediction)
            for label in task.label_names:
                if label in expected and label not in predicted:
                    rows.append({**base, "error_type": "false_negative", "predicted": predicted, "label": label})
                elif label in predicted and label not in expected:
                    rows.append({**base, "error_type": "false_positive", "predicted": predicted, "label": label})
        columns = ["example_id", "variant", "repeat", "error_type", "gold", "predicted", "label"]
        # Object columns keep None for "no label" (pandas 3 would infer str and turn it into NaN).
        return pd.DataFrame(rows, columns=columns, dtype=object).astype({"repeat": int})

    def error_signature(self, error):
        if error["error_type"] == "parse_failure":
            return "unparsed"
        verb = "missed" if error["error_type"] == "false_negative" else "extra"
        return f"{verb} {error['label']}"

    def annotation_question(self, task):
        return AnnotationQuestion("multi_label", "labels", task.label_names, "Labels",
                                  "Every label that applies, by the definitions in the guidelines. "
                                  "If none applies, choose “None of these”.")

    def read_response(self, value, *, submitted):
        if value is None:
            return submitted_empty(value, submitted)
        return sorted(str(label) for label in value)

    def answer_parts(self, value):
        return frozenset([] if is_missing(value) else value)

    def same_answer(self, first, second):
        return first is not None and second is not None and set(first) == set(second)

    def suggestion(self, task, predictions, text):
        value, _count, repeats = majority(self, predictions)
        if value is None:
            return None, None, 0
        labels = [label for label in value if label in task.label_names]
        if not labels or repeats == 1:
            return labels, None, len(value) - len(labels)
        shares = [sum(label in (p or []) for p in predictions if not is_missing(p)) / repeats for label in labels]
        return labels, shares, len(value) - len(labels)

    def describe(self, text, prediction):
        return ", ".join(prediction) if prediction else "no labels"

    def view(self, text, value, gold=None):
        if is_missing(value):
            return AnswerView(empty_note="no usable answer")
        if not value:
            return AnswerView(empty_note="no labels")
        chips = tuple((label, "gold" if gold is None else ("ok" if label in gold else "bad")) for label in value)
        return AnswerView(labels=chips)

    def hf_features(self, task):
        from datasets import ClassLabel, Features, Sequence, Value

        return Features({"example_id": Value("string"), "text": Value("string"),
                         "labels": Sequence(ClassLabel(names=list(task.label_names)))})

    def hf_row(self, task, example):
        return {"example_id": str(example["example_id"]), "text": example["text"],
                "labels": [task.label_names.index(label) for label in example["labels"]]}

    def to_doc(self, task, nlp, example):
        doc = nlp.make_doc(example["text"])
        doc.cats = {label: float(label in example["labels"]) for label in task.label_names}
        return doc


def _label_list(value: Any, known: set[str]) -> tuple[list[str], list[str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return [], [f"field 'labels' is a string that is not a JSON list: {value[:60]!r}"]
    if is_missing(value):
        return [], ["field 'labels' is missing; use [] for a text with none of the labels"]
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list):
        return [], [f"field 'labels' must be a list of label names, got {type(value).__name__}"]
    problems = [
        f"field 'labels[{index}]' is {label!r}, which is not one of the task's labels {sorted(known)}"
        for index, label in enumerate(value) if label not in known
    ]
    repeated = sorted({label for label in value if isinstance(label, str) and value.count(label) > 1})
    if repeated:
        problems.append(f"field 'labels' lists {repeated} more than once")
    return sorted({label for label in value if label in known}), problems
