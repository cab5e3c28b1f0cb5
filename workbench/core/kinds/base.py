"""What every task kind provides: the one place where behaviour may depend on the kind of task.

A kind (classification, NER, multi-label) owns its gold targets, its answer format, its parser,
its scores and error types, its annotation question, how its answers are shown, and the hooks the
training-data stages need. Everything else in the workbench asks the task's kind
(``task.kind.<method>``) and never compares kind names. A new kind is one module here plus one
line in `workbench.core.kinds.KINDS`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from workbench.core.answers import ParsedAnswer, answer_key, is_missing

if TYPE_CHECKING:
    from workbench.core.task import Task


# The answer side of an error whose answer could not be read as any label.
UNPARSED_SIDE = "unparsed"


@dataclass(frozen=True)
class AnnotationQuestion:
    """The Argilla question annotators answer for a kind, described without importing argilla.

    `question_type` is ``"label"`` (one label), ``"multi_label"`` (zero or more labels) or
    ``"span"`` (character spans on the text field). `name` is the question's name and also the
    column the pulled corrections hold the answer in.
    """

    question_type: str
    name: str
    labels: tuple[str, ...]
    title: str
    description: str


@dataclass(frozen=True)
class Highlight:
    """A piece of text to show, marked when it is an entity.

    `status` is None for plain text, ``"gold"`` for a gold entity, ``"ok"`` for a predicted
    entity that matches gold exactly, ``"bad"`` for a predicted entity that does not.
    """

    text: str
    label: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class AnswerView:
    """How one answer is shown in a report or notebook card: `labels` as chips with a status
    (``"gold"``, ``"ok"``, ``"bad"``), or `highlights` over the whole text, or `empty_note`."""

    labels: tuple[tuple[str, str], ...] = ()
    highlights: tuple[Highlight, ...] = ()
    empty_note: str | None = None


class TaskKind:
    """Base class of the task kinds; subclasses fill in the class attributes and methods.

    Class attributes:
    - `name`: the value of ``kind:`` in a task file.
    - `target_column`: the gold column of a dataset (``label``, ``spans`` or ``labels``).
    - `headline_metric`: the metric reports lead with and compare variants by (a metric name
      `workbench.evaluation.significance.metric_from_totals` knows; higher is better).
    - `summary_column`: the column `summarize_run` puts it in.
    - `error_types`: the kinds of mistake `errors` can report, in display order.
    - `error_columns`: columns `errors` adds after the shared ones.
    - `target_noun`: what an annotator checks, in words ("the label").
    - `headline_name`: the headline metric in words, for reports.
    - `counted`: what the dataset chart counts per label, as (title, axis) words.
    """

    name: ClassVar[str]
    target_column: ClassVar[str]
    headline_metric: ClassVar[str]
    summary_column: ClassVar[str]
    error_types: ClassVar[tuple[str, ...]]
    error_columns: ClassVar[tuple[str, ...]] = ()
    target_noun: ClassVar[str]
    headline_name: ClassVar[str]
    counted: ClassVar[tuple[str, str]]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"

    # Data.
    def validate_targets(self, targets: Sequence[Any], texts: Sequence[Any], task: Task) -> tuple[list[Any], list[list[str]]]:
        """Normalised gold targets and, per row, the problems found (field names included)."""
        raise NotImplementedError

    def target_labels(self, target: Any) -> list[str]:
        """The labels one gold target uses (for label counts and few-shot balancing)."""
        raise NotImplementedError

    # Prompting.
    def answer_properties(self, task: Task) -> dict[str, Any]:
        """JSON-schema properties of the answer, after the optional reasoning."""
        raise NotImplementedError

    def format_answer(self, task: Task, example: dict[str, Any]) -> str:
        """The JSON answer a perfect model would give for a gold `example` row."""
        return json.dumps(self.answer_object(task, example), ensure_ascii=False)

    def answer_object(self, task: Task, example: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, task: Task, raw: str, text: str) -> ParsedAnswer:
        """A raw (non-empty) model answer read into a prediction, or a parse error."""
        raise NotImplementedError

    def answer_key(self, prediction: Any) -> str:
        """A hashable identity of one prediction (two answers are the same answer when equal)."""
        return answer_key(prediction)

    def vote(self, predictions: Sequence[Any]) -> tuple[Any, float]:
        """Self-consistency: the majority answer of several sampled answers, and its vote share.

        The answer most samples gave (a tie goes to the one given first); unusable samples vote
        for nothing. The share is the fraction of all samples whose answer equals the voted one
        (higher is more confident). None and 0.0 when no sample is usable.
        """
        usable = [prediction for prediction in predictions if not is_missing(prediction)]
        if not usable:
            return None, 0.0
        keys = [self.answer_key(prediction) for prediction in usable]
        counts = Counter(keys)
        best = max(counts, key=lambda key: (counts[key], -keys.index(key)))
        return usable[keys.index(best)], counts[best] / len(predictions)

    # Evaluation.
    def score(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
        """Headline scores, one row per variant (``variant``, ``n``, then the kind's metrics)."""
        raise NotImplementedError

    def report_scores(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
        """Secondary scores a report's summary shows beside the headline: ``variant`` + columns."""
        raise NotImplementedError

    def per_label_scores(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
        """``variant``, ``label``, ``precision``, ``recall``, ``f1``, ``support`` per label."""
        raise NotImplementedError

    def confusion(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task, variant: str) -> pd.DataFrame | None:
        """A gold x predicted count table for one variant, or None where the kind has none."""
        return None

    def example_statistics(self, group: pd.DataFrame, truth: pd.Series, task: Task) -> dict[str, Any]:
        """Additive per-row statistics (arrays) of one variant's rows, for bootstrap resampling.

        `truth` maps example_id to the gold target. Always includes ``rows``.
        """
        raise NotImplementedError

    def errors(self, predictions: pd.DataFrame, gold: pd.DataFrame, task: Task) -> pd.DataFrame:
        """One row per error: ``example_id``, ``variant``, ``repeat``, ``error_type``, ``gold``,
        ``predicted`` and the kind's `error_columns`."""
        raise NotImplementedError

    # Training points.
    def error_signature(self, error: dict[str, Any]) -> str:
        """What went wrong in one error row of `errors`, in words (the first grouping of errors
        into training points), e.g. "complaint read as request", "missed DRUG"."""
        raise NotImplementedError

    def error_sides(self, error: dict[str, Any]) -> tuple[str | None, str | None]:
        """(gold side, answer side) of one error row: the gold label and the label answered
        instead, where the error is a confusion of one label for another; None for a side that is
        no label. Training points group errors by either side alone when there are many labels
        (`workbench.points.families`). By default an error has no sides: its signature already
        names the one label concerned ("missed X", "extra X")."""
        return None, None

    def error_context(self, error: dict[str, Any]) -> str:
        """The text to embed for one error row when clustering errors: the input text, with the
        entity concerned marked for span kinds."""
        return str(error["text"])

    # Annotation.
    def annotation_question(self, task: Task) -> AnnotationQuestion:
        raise NotImplementedError

    def read_response(self, value: Any, *, submitted: bool) -> Any:
        """An annotator's answer (as Argilla returns it) in the form of a gold target."""
        raise NotImplementedError

    def answer_parts(self, value: Any) -> frozenset | None:
        """The elements of a set-valued answer (spans, labels), or None where an answer is atomic."""
        return None

    def same_answer(self, first: Any, second: Any) -> bool:
        """Whether two gold-form answers are the same (for 'accepted the suggestion')."""
        return first is not None and second is not None and self.answer_key(first) == self.answer_key(second)

    def suggestion(self, task: Task, predictions: list[Any], text: str) -> tuple[Any, Any, int]:
        """From one variant's predictions over its repeats: the value to suggest to annotators,
        its score (None with one repeat) and how many parts of it could not be shown."""
        raise NotImplementedError

    def describe(self, text: str, prediction: Any) -> str:
        """A prediction as one line of plain text (for tables shown to annotators)."""
        raise NotImplementedError

    # Reporting.
    def view(self, text: str, value: Any, gold: Any | None = None) -> AnswerView:
        """How to show a gold target (`gold` None) or a prediction checked against `gold`."""
        raise NotImplementedError

    # Training data (the next stages).
    def chat_messages(self, task: Task, messages: list[dict[str, str]], example: dict[str, Any]) -> list[dict[str, str]]:
        """A gold example as a chat: the rendered prompt `messages` plus the perfect answer."""
        return [*messages, {"role": "assistant", "content": self.format_answer(task, example)}]

    def hf_features(self, task: Task) -> Any:
        """The Hugging Face `datasets.Features` of `hf_row`'s rows (labels as `ClassLabel`)."""
        raise NotImplementedError

    def hf_row(self, task: Task, example: dict[str, Any]) -> dict[str, Any]:
        """A gold example row (``example_id``, ``text``, target) as a row of `hf_features`."""
        raise NotImplementedError

    def to_doc(self, task: Task, nlp: Any, example: dict[str, Any]) -> Any:
        """A gold example as a spaCy `Doc` made by `nlp`, e.g. ``spacy.blank("en")`` (``doc.cats``
        with every label of the task, or ``doc.ents``)."""
        raise NotImplementedError


def submitted_empty(value: Any, submitted: bool) -> Any:
    """An answer a submitted response left empty: "none of these" for list-valued answers."""
    return [] if value is None and submitted else value
