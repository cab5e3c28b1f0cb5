"""What an annotator is shown for each example, built from a run's predictions (pure; no argilla).

`summarise_examples` turns the runner's predictions into one row per example: the chosen
variant's answer as the suggestion (with its agreement across repeats as the score), what every
variant answered as a markdown table, and the numbers used for filtering and for the order in
which examples are annotated. `build_records` turns these rows into `RecordData`, the records
`workbench.annotation._argilla` logs. The dataset's layout (fields, metadata, the note question)
and how an answer is stored for the task's question (`to_argilla_value`, `from_argilla_value`)
are here too, so that everything but the requests themselves is tested without a server.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.core.answers import UNPARSED, is_missing
from workbench.core.errors import InputError
from workbench.core.kinds.base import AnnotationQuestion, TaskKind
from workbench.core.task import NONE_OF_THESE, Task  # a reserved word no label may use

SUMMARY_COLUMNS = [
    "example_id", "text", "variant", "suggestion", "suggestion_score", "consistency", "confidence", "repeats",
    "variants_disagreeing", "variants_compared", "error_type", "variant_predictions", "priority",
]
ORDERS = ("disagreement", "consistency", "confidence", None)
NO_ERROR = "correct"
NO_DEFINITION = "(no definition: use the everyday meaning of the name)"
_NUMERIC = {"consistency": float, "confidence": float, "repeats": int, "variants_disagreeing": int, "variants_compared": int}
# Longest answer text shown in one cell of the variants table.
_MAX_CELL = 300


def summarise_examples(
    task: Task,
    predictions: pd.DataFrame,
    dataset: pd.DataFrame,
    *,
    variant: str,
    errors: pd.DataFrame | None = None,
    example_ids: Iterable[str] | None = None,
    order: str | None = "disagreement",
) -> pd.DataFrame:
    """One row per example that `variant` answered (or per id in `example_ids`), in priority order.

    `predictions` is the runner's frame (``variant``, ``example_id``, ``repeat``, ``prediction``;
    ``parse_error``, ``request_error`` and ``raw_response`` are shown when present). `dataset`
    needs ``example_id`` and ``text``. `errors` (`workbench.evaluation.errors.find_errors`) fills
    ``error_type``; without it the column holds None.

    Columns:
    - ``suggestion``: the variant's most common readable answer over its repeats, in the task's
      gold form (a label; a list of ``{start, end, label}`` spans; a list of labels), from
      `TaskKind.suggestion`; None when no repeat gave a usable answer. Parts that could not be
      shown (unknown label, span outside the text or overlapping) are left out.
    - ``suggestion_score``: with several repeats, the share of repeats giving that answer (one
      label) or, per span or label, the share of repeats containing it (set-valued answers);
      None with one repeat (no agreement to measure) or an empty answer.
    - ``consistency``: share of repeats giving the variant's most common answer, unreadable
      answers counted as one answer (`workbench.evaluation.consistency`); 1.0 with one repeat. Higher is steadier.
    - ``repeats``; ``variants_disagreeing``: how many other variants' most common answer differs
      from this variant's; ``variants_compared``: how many other variants answered this example.
    - ``error_type``: sorted distinct error types of this variant on this example over its
      repeats, ``["correct"]`` when it made none (None when `errors` is not given).
    - ``variant_predictions``: markdown for the annotator: every variant's answer, this one first.
    - ``priority``: 1 for the example to annotate first. `order` "disagreement": most
      disagreeing variants first, then least consistent; "consistency": least consistent first,
      then most disagreement; "confidence": lowest self-consistency confidence first (rows
      without one last), then most disagreement; None: the order of `dataset`. Ties keep the
      dataset's order.
    - ``confidence``: for a self-consistency variant (``sc<n>``), the mean over repeats of the
      share of samples that gave the voted answer (higher is surer); NaN otherwise.
    """
    _require(predictions, ["variant", "example_id", "repeat", "prediction"], "predictions")
    _require(dataset, ["example_id", "text"], "dataset")
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}, got {order!r}")
    variants = list(dict.fromkeys(predictions["variant"]))
    if variant not in variants:
        raise InputError(f"variant {variant!r} is not in the predictions; they hold {variants}")

    texts = dict(zip(dataset["example_id"].astype(str), dataset["text"]))
    answers = _group_answers(predictions, task.kind)
    answered = [example_id for (name, example_id) in answers if name == variant]
    if example_ids is None:
        wanted = set(answered)
    else:
        wanted = {str(example_id) for example_id in example_ids}
        unanswered = sorted(wanted - set(answered))
        if unanswered:
            raise InputError(
                f"variant {variant!r} has no predictions for {len(unanswered)} example(s), e.g. {unanswered[:5]}; "
                "pass the predictions of the run these errors came from"
            )
    missing = sorted(wanted - set(texts))
    if missing:
        raise InputError(
            f"{len(missing)} example(s) with predictions are not in the dataset, e.g. {missing[:5]}; "
            "pass the dataset the predictions were made on"
        )
    # Dataset order first, so that ties in priority keep it.
    ordered_ids = [example_id for example_id in texts if example_id in wanted]
    error_types = _error_types(errors, variant) if errors is not None else None

    confidence: dict[str, float] = {}
    if "confidence" in predictions.columns:
        voted = predictions[predictions["variant"] == variant]
        confidence = voted.groupby(voted["example_id"].astype(str))["confidence"].mean().to_dict()
    rows = []
    for example_id in ordered_ids:
        text = texts[example_id]
        mine = answers[(variant, example_id)]
        others = [(name, answers[(name, example_id)]) for name in variants if name != variant
                  and (name, example_id) in answers]
        suggestion, score, dropped = task.kind.suggestion(task, mine.predictions, text)
        rows.append({
            "example_id": example_id,
            "text": text,
            "variant": variant,
            "suggestion": suggestion,
            "suggestion_score": score,
            "consistency": float(mine.majority_share),
            "confidence": float(confidence.get(example_id, math.nan)),
            "repeats": mine.repeats,
            "variants_disagreeing": sum(other.majority_key != mine.majority_key for _, other in others),
            "variants_compared": len(others),
            "error_type": None if error_types is None else error_types.get(example_id, [NO_ERROR]),
            "variant_predictions": variant_table(task, text, variant, mine, others, dropped),
        })
    # Object columns keep None for "no suggestion" (pandas 3 would infer str and turn it into NaN).
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS[:-1], dtype=object).astype(_NUMERIC)
    return prioritise(frame, order)


def prioritise(summaries: pd.DataFrame, order: str | None) -> pd.DataFrame:
    """`summaries` sorted by `order` (see `summarise_examples`) with ``priority`` set to 1..n."""
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "disagreement":
        keys, ascending = ["variants_disagreeing", "consistency"], [False, True]
    elif order == "consistency":
        keys, ascending = ["consistency", "variants_disagreeing"], [True, False]
    elif order == "confidence":
        keys, ascending = ["confidence", "variants_disagreeing"], [True, False]
    else:
        keys, ascending = [], []
    frame = summaries.sort_values(keys, ascending=ascending, kind="stable") if keys else summaries.copy()
    frame = frame.reset_index(drop=True)
    frame["priority"] = range(1, len(frame) + 1)
    return frame


def guidelines(task: Task) -> str:
    """Markdown guidelines for annotators: the task, its instructions and each label's definition."""
    parts = [f"# {task.name}"]
    if task.description:
        parts.append(task.description)
    what_to_do = (
        "## What to do\n"
        "Each record shows a model's answer as a suggestion, already filled in. Check "
        f"{task.kind.target_noun} against the definitions below: submit it unchanged when it is right, "
        "correct it when it is wrong, and say briefly in the note why the model was wrong. The table "
        "under the text shows what each prompt variant answered; it is there to help, not to decide. "
        "Records come in priority order (where the variants disagree most first); the `priority` "
        "metadata sorts them that way on any server, and `variant`, `error_type`, `consistency` and "
        "`variants_disagreeing` filter them."
    )
    if NONE_OF_THESE in question_options(task.kind.annotation_question(task)):
        what_to_do += " When no label applies, choose “None of these”."
    parts.append(what_to_do)
    if task.instructions:
        parts.append(f"## Instructions given to the model\n{task.instructions}")
    parts.append("## Labels")
    parts.extend(f"### {label.name}\n{label.definition or NO_DEFINITION}" for label in task.labels)
    return "\n\n".join(parts)


# The dataset's layout: what `workbench.annotation._argilla` makes in Argilla.
TEXT_FIELD, TABLE_FIELD, NOTE_QUESTION = "text", "variant_predictions", "note"


@dataclass(frozen=True)
class Field:
    """A record field: `markdown` fields are rendered, others shown as plain text."""

    name: str
    title: str
    markdown: bool = False


@dataclass(frozen=True)
class Metadata:
    """A metadata property annotators filter and sort by; `type` is "terms", "float" or "integer"."""

    name: str
    type: str
    title: str


FIELDS = (Field(TEXT_FIELD, "Text"), Field(TABLE_FIELD, "What the prompt variants answered", markdown=True))
NOTE = Field(NOTE_QUESTION, "Note")  # an optional text question: why the model was wrong
NOTE_DESCRIPTION = "Why was the model wrong? (optional)"
METADATA = (
    Metadata("variant", "terms", "Suggested by variant"),
    Metadata("error_type", "terms", "Error type"),
    Metadata("consistency", "float", "Consistency across repeats"),
    Metadata("confidence", "float", "Self-consistency confidence (vote share)"),
    Metadata("variants_disagreeing", "integer", "Variants disagreeing"),
    Metadata("priority", "integer", "Priority (1 = first)"),
)


def question_options(question: AnnotationQuestion) -> dict[str, str]:
    """The options Argilla offers for `question` (value -> text shown): its labels and, for a
    multi-label question, "None of these". Argilla 2.8 refuses an empty multi-label answer and a
    dataset without a required question, so "no label applies" is an option of its own."""
    options = {label: label for label in question.labels}
    if question.question_type == "multi_label":
        options[NONE_OF_THESE] = "None of these"
    return options


def to_argilla_value(question: AnnotationQuestion, value: Any) -> Any:
    """A gold-form answer (a label, spans, a list of labels) as Argilla stores it for `question`:
    spans as ``{start, end, label}`` only, no labels as ``["(none)"]`` ("None of these")."""
    if question.question_type == "span":
        return [{"start": int(s["start"]), "end": int(s["end"]), "label": str(s["label"])} for s in value]
    if question.question_type == "multi_label":
        return [str(label) for label in value] or [NONE_OF_THESE]
    return value


def from_argilla_value(question: AnnotationQuestion, value: Any) -> Any:
    """An answer or suggestion as Argilla returns it, ready for `TaskKind.read_response`: for a
    multi-label question "None of these" counts as no label (also when other labels are ticked)."""
    if question.question_type == "multi_label" and value is not None:
        return [label for label in value if label != NONE_OF_THESE]
    return value


@dataclass(frozen=True)
class Suggested:
    """A suggestion for one record: `value` as Argilla stores it for `question`; `score` one
    number, one per part of the value, or None; `agent` the prompt variant that made it."""

    question: str
    value: Any
    score: float | list[float] | None
    agent: str


@dataclass(frozen=True)
class RecordData:
    """One Argilla record without argilla: `id` is the example_id (so pushing again updates the
    record instead of adding one; a review dataset chooses its own stable ids); `fields` and
    `metadata` are keyed by `FIELDS` and `METADATA` names (or a `ReviewLayout`'s); `suggestion`
    is None when the variant gave no usable answer."""

    id: str
    fields: dict[str, str]
    metadata: dict[str, Any]
    suggestion: Suggested | None


def build_records(task: Task, summaries: pd.DataFrame) -> list[RecordData]:
    """The records for `summaries` (`summarise_examples`' frame), in its (priority) order."""
    _require(summaries, SUMMARY_COLUMNS, "summaries")
    question = task.kind.annotation_question(task)
    records = []
    for row in summaries.to_dict("records"):
        metadata: dict[str, Any] = {
            "variant": str(row["variant"]),
            "consistency": float(row["consistency"]),
            "variants_disagreeing": int(row["variants_disagreeing"]),
            "priority": int(row["priority"]),
        }
        if not is_missing(row["confidence"]):
            metadata["confidence"] = float(row["confidence"])
        if not is_missing(row["error_type"]):
            metadata["error_type"] = [str(kind) for kind in row["error_type"]]
        suggestion = None
        if not is_missing(row["suggestion"]):
            score = row["suggestion_score"]
            if isinstance(score, list):
                score = [float(value) for value in score]
            else:
                score = None if is_missing(score) else float(score)
            suggestion = Suggested(question.name, to_argilla_value(question, row["suggestion"]), score,
                                   str(row["variant"]))
        records.append(RecordData(
            id=str(row["example_id"]),
            fields={TEXT_FIELD: row["text"], TABLE_FIELD: row["variant_predictions"]},
            metadata=metadata,
            suggestion=suggestion,
        ))
    return records


# Per-variant answers.
class _Answers:
    """One variant's answers to one example, over its repeats (in repeat order)."""

    __slots__ = ("counts", "keys", "majority_key", "majority_share", "predictions", "reasons", "repeats")

    def __init__(self, predictions: list[Any], reasons: list[str | None], kind: TaskKind):
        self.predictions = predictions
        self.reasons = reasons
        # The kind's identity of an answer: equal keys are the same answer (UNPARSED: none usable).
        self.keys = [UNPARSED if is_missing(prediction) else kind.answer_key(prediction) for prediction in predictions]
        self.counts = Counter(self.keys)
        self.repeats = len(self.keys)
        # Most common answer; a tie goes to the answer given first.
        self.majority_key = max(self.counts, key=lambda key: (self.counts[key], -self.keys.index(key)))
        self.majority_share = self.counts[self.majority_key] / self.repeats


def _group_answers(predictions: pd.DataFrame, kind: TaskKind) -> dict[tuple[str, str], _Answers]:
    frame = predictions.sort_values(["variant", "example_id", "repeat"], kind="stable")
    reasons = _reasons(frame)
    grouped: dict[tuple[str, str], tuple[list[Any], list[str | None]]] = {}
    for variant, example_id, prediction, reason in zip(
        frame["variant"], frame["example_id"].astype(str), frame["prediction"], reasons
    ):
        values, why = grouped.setdefault((variant, example_id), ([], []))
        values.append(_clean(prediction))
        why.append(reason)
    return {key: _Answers(values, why, kind) for key, (values, why) in grouped.items()}


def _reasons(frame: pd.DataFrame) -> list[str | None]:
    """Why each answer is unusable (parse or request error, else the raw answer), for display."""
    n = len(frame)
    columns = [frame[name].tolist() if name in frame.columns else [None] * n
               for name in ("parse_error", "request_error", "raw_response")]
    reasons = []
    for parse_error, request_error, raw in zip(*columns):
        parts = [str(value) for value in (parse_error or request_error, raw) if _present(value)]
        reasons.append(" — answer: ".join(parts) if parts else None)
    return reasons


def _present(value: Any) -> bool:
    return not is_missing(value) and str(value) != ""


def _clean(prediction: Any) -> Any:
    if is_missing(prediction):
        return None
    if hasattr(prediction, "tolist"):  # numpy arrays from Parquet
        prediction = prediction.tolist()
    return prediction


def _error_types(errors: pd.DataFrame, variant: str) -> dict[str, list[str]]:
    _require(errors, ["example_id", "variant", "error_type"], "errors")
    mine = errors[errors["variant"] == variant]
    return {
        str(example_id): sorted(set(group))
        for example_id, group in mine.groupby(mine["example_id"].astype(str), sort=False)["error_type"]
    }


# The annotator's table.
def variant_table(
    task: Task, text: str, variant: str, mine: _Answers, others: list[tuple[str, _Answers]], dropped: int = 0
) -> str:
    """Markdown: a sentence on the suggestion and a table of each variant's most common answer."""
    several = any(answers.repeats > 1 for answers in [mine, *(a for _, a in others)])
    disagreeing = sum(other.majority_key != mine.majority_key for _, other in others)
    lines = [
        f"**Suggested**: the answer of prompt variant **{_escape(variant)}**"
        + (f" ({mine.counts[mine.majority_key]} of {mine.repeats} repeats agree)" if mine.repeats > 1 else "")
        + (f". {disagreeing} of {len(others)} other variant(s) answered differently." if others else ".")
    ]
    if dropped:
        lines.append(
            f"({dropped} part(s) of its answer could not be shown: a span overlapping another or outside "
            "the text, or an unknown label.)"
        )
    lines.append("")
    header = "| Variant | Answer |" + (" Repeats agreeing |" if several else "")
    lines += [header, "|:--|:--|" + (":--|" if several else "")]
    for name, answers in [(variant, mine), *others]:
        label = f"**{_escape(name)}** (suggested)" if name == variant else _escape(name)
        cell = _answer_cell(task, text, answers)
        agree = f" {answers.counts[answers.majority_key]}/{answers.repeats} |" if several else ""
        lines.append(f"| {label} | {cell} |{agree}")
    return "\n".join(lines)


def _answer_cell(task: Task, text: str, answers: _Answers) -> str:
    if answers.majority_key == UNPARSED:
        reason = next((why for why in answers.reasons if why), None)
        return "_no usable answer_" + (f": {_escape(_shorten(reason))}" if reason else "")
    value = answers.predictions[answers.keys.index(answers.majority_key)]
    return _escape(_shorten(task.kind.describe(text, value)))


def _shorten(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= _MAX_CELL else value[: _MAX_CELL - 1] + "…"


_MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"})


def _escape(value: str) -> str:
    """Text shown literally in a markdown table cell (no markup, no HTML, one line)."""
    return " ".join(value.split()).translate(_MARKDOWN)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")
