"""Single-label classification: each text gets exactly one of the task's labels."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.core.answers import (
    LABEL_KEYS,
    ParsedAnswer,
    answer_key,
    extract_json,
    first_present,
    is_missing,
    normalise_label,
    stated_labels,
)
from workbench.core.kinds import classification_scoring as scoring
from workbench.core.kinds.base import UNPARSED_SIDE, AnnotationQuestion, AnswerView, TaskKind

if TYPE_CHECKING:
    from workbench.core.task import Task


class ClassificationKind(TaskKind):
    """One label per text: ``label`` in the data, ``{"label": ...}`` in answers."""

    name = "classification"
    target_column = "label"
    headline_metric = "accuracy"
    summary_column = "accuracy"
    error_types = ("wrong_label", "parse_failure")
    target_noun = "the label"
    headline_name = "accuracy"
    counted = ('Examples per label', 'examples')

    def validate_targets(self, targets, texts, task):
        labels = set(task.label_names)
        problems = []
        for label in targets:
            if not isinstance(label, str) or not label:
                problems.append([f"field 'label' must be a non-empty string, got {label!r}"])
            elif label not in labels:
                problems.append([f"field 'label' is {label!r}, which is not one of the task's labels {sorted(labels)}"])
            else:
                problems.append([])
        return list(targets), problems

    def target_labels(self, target: Any) -> list[str]:
        return [str(target)]

    def answer_properties(self, task: Task) -> dict[str, Any]:
        return {"label": {"type": "string", "enum": list(task.label_names)}}

    def answer_object(self, task: Task, example: dict[str, Any]) -> dict[str, Any]:
        return {"label": example["label"]}

    def parse(self, task: Task, raw: str, text: str) -> ParsedAnswer:
        return _parse(task, raw)

    def score(self, predictions, gold, task):
        return scoring.score_classification(predictions, gold, task)

    def report_scores(self, predictions, gold, task):
        scores = scoring.score_classification(predictions, gold, task)[["variant", "f1_macro"]]
        return scores.rename(columns={"f1_macro": "macro_f1"})

    def per_label_scores(self, predictions, gold, task):
        return scoring.per_label_scores(predictions, gold, task)

    def confusion(self, predictions, gold, task, variant):
        return scoring.confusion(predictions, gold, task, variant)

    def example_statistics(self, group, truth, task):
        expected = group["example_id"].map(truth)
        predicted = group["prediction"].where(group["prediction"].notna(), None)
        columns = {"rows": np.ones(len(group)), "correct": (predicted == expected).to_numpy(float)}
        for label in task.label_names:
            columns[f"tp:{label}"] = ((predicted == label) & (expected == label)).to_numpy(float)
            columns[f"fp:{label}"] = ((predicted == label) & (expected != label)).to_numpy(float)
            columns[f"fn:{label}"] = ((predicted != label) & (expected == label)).to_numpy(float)
        return columns

    def errors(self, predictions, gold, task):
        return label_errors(predictions, gold, "label")

    def error_signature(self, error):
        if error["error_type"] == "parse_failure" or is_missing(error.get("predicted")):
            return f"{error['gold']} unparsed"
        return f"{error['gold']} read as {error['predicted']}"

    def error_sides(self, error):
        # A parse failure has an answer side ("unparsed": format failures group together) but no
        # gold side: it is not a confusion of the gold label.
        kind, gold, predicted = error.get("error_type"), error.get("gold"), error.get("predicted")
        if kind == "wrong_label" and isinstance(gold, str) and isinstance(predicted, str):
            return gold, predicted
        if kind == "parse_failure" and isinstance(gold, str):
            return None, UNPARSED_SIDE
        return None, None

    def annotation_question(self, task):
        return AnnotationQuestion("label", "label", task.label_names, "Label",
                                  "The right label, by the definitions in the guidelines.")

    def read_response(self, value, *, submitted):
        return value

    def same_answer(self, first, second):
        return first is not None and first == second

    def suggestion(self, task, predictions, text):
        value, count, repeats = majority(self, predictions)
        if value is None or value not in task.label_names:
            return None, None, 0
        return value, (count / repeats if repeats > 1 else None), 0

    def describe(self, text, prediction):
        return str(prediction)

    def view(self, text, value, gold=None):
        if is_missing(value):
            return AnswerView(empty_note="no usable answer")
        status = "gold" if gold is None else ("ok" if value == gold else "bad")
        return AnswerView(labels=((str(value), status),))

    def hf_features(self, task):
        from datasets import ClassLabel, Features, Value

        return Features({"example_id": Value("string"), "text": Value("string"),
                         "label": ClassLabel(names=list(task.label_names))})

    def hf_row(self, task, example):
        return {"example_id": str(example["example_id"]), "text": example["text"],
                "label": task.label_names.index(example["label"])}

    def to_doc(self, task, nlp, example):
        doc = nlp.make_doc(example["text"])
        doc.cats = {label: float(label == example["label"]) for label in task.label_names}
        return doc



@lru_cache(maxsize=8192)  # runs repeat the same few answers ({"label": "x"}) thousands of times
def _parse(task: Task, raw: str) -> ParsedAnswer:
    data = extract_json(raw, prefer_key=LABEL_KEYS)
    if isinstance(data, dict):
        reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), str) else None
        value = first_present(data, LABEL_KEYS)
        if value is None:
            return ParsedAnswer(None, f"JSON answer has no 'label' key (keys: {sorted(data)})", reasoning=reasoning)
        label = normalise_label(value, task.label_names)
        if label is None:
            return ParsedAnswer(
                None, f"label {value!r} is not one of {list(task.label_names)}", reasoning=reasoning
            )
        return ParsedAnswer(label, reasoning=reasoning)
    # No JSON: accept a bare label ("complaint") or a stated answer ("The answer is: complaint"),
    # but not a label word in passing prose ("happy to help with your request").
    stated = stated_labels(raw, task.label_names)
    if len(stated) == 1:
        return ParsedAnswer(stated[0])
    if stated:
        return ParsedAnswer(None, f"no JSON answer, and the text states several labels: {stated}")
    return ParsedAnswer(None, "no JSON object and no label found in the answer")


def majority(kind: TaskKind, predictions: list[Any]) -> tuple[Any, int, int]:
    """(most common usable prediction, repeats giving it, repeats); a tie goes to the one given first."""
    keys = [None if is_missing(p) else kind.answer_key(p) for p in predictions]
    usable = [key for key in keys if key is not None]
    if not usable:
        return None, 0, len(predictions)
    counts = {key: usable.count(key) for key in dict.fromkeys(usable)}
    best = max(counts, key=lambda key: (counts[key], -keys.index(key)))
    return predictions[keys.index(best)], counts[best], len(predictions)


def label_errors(predictions: pd.DataFrame, gold: pd.DataFrame, column: str) -> pd.DataFrame:
    """``wrong_label`` / ``parse_failure`` rows for kinds whose answer is compared whole with gold."""
    truth = gold.set_index("example_id")[column]
    expected = predictions["example_id"].map(truth)
    unusable = predictions["prediction"].map(is_missing)
    wrong = ~unusable & (predictions["prediction"].map(answer_key) != expected.map(answer_key))
    selected = predictions[unusable | wrong]
    return pd.DataFrame({
        "example_id": selected["example_id"],
        "variant": selected["variant"],
        "repeat": selected["repeat"],
        "error_type": ["parse_failure" if flag else "wrong_label" for flag in unusable[unusable | wrong]],
        "gold": expected[unusable | wrong],
        "predicted": selected["prediction"].where(~unusable[unusable | wrong], None),
    })
