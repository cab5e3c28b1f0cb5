"""Named-entity recognition: each text gets zero or more non-overlapping labelled character spans."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.core.answers import (
    ENTITIES_KEYS,
    ENTITIES_MAX,
    ENTITY_MAX_CHARS,
    ParsedAnswer,
    extract_list,
    first_present,
    is_missing,
    normalise_label,
    span_key,
)
from workbench.core.kinds import ner_scoring as scoring
from workbench.core.kinds.base import AnnotationQuestion, AnswerView, Highlight, TaskKind, submitted_empty
from workbench.core.kinds.classification import majority
from workbench.core.spans import align_entities, highlight, keep_longest, spans_to_iob2, token_offsets

if TYPE_CHECKING:
    from workbench.core.task import Task


class NerKind(TaskKind):
    """Spans ``[{"start", "end", "label"}]`` in the data; ``{"entities": [{"text", "label"}]}`` in
    answers, aligned back to offsets in the input (entities not in the input are hallucinations)."""

    name = "ner"
    target_column = "spans"
    headline_metric = "micro_f1"
    summary_column = "f1"
    error_types = scoring.ERROR_TYPES
    error_columns = ("start", "end", "label")
    target_noun = "every entity span"
    headline_name = "strict entity F1 (micro average; exact span and type)"
    counted = ('Entities per type', 'entities')

    def validate_targets(self, targets, texts, task):
        labels = set(task.label_names)
        clean, problems = [], []
        for spans, text in zip(targets, texts):
            normalised, found = _validate_spans(spans, text if isinstance(text, str) else None, labels)
            clean.append(normalised)
            problems.append(found)
        return clean, problems

    def target_labels(self, target):
        return [str(span["label"]) for span in target or []]

    def answer_properties(self, task):
        return {
            "entities": {
                "type": "array",
                "maxItems": ENTITIES_MAX,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "maxLength": ENTITY_MAX_CHARS},
                        "label": {"type": "string", "enum": list(task.label_names)},
                    },
                    "required": ["text", "label"],
                    "additionalProperties": False,
                },
            }
        }

    def answer_object(self, task, example):
        text = example["text"]
        return {"entities": [{"text": text[span["start"]:span["end"]], "label": span["label"]} for span in example["spans"]]}

    def parse(self, task, raw, text):
        return _parse(task, raw, text)

    def score(self, predictions, gold, task):
        """Strict, boundary and type micro F1 per variant (``variant``, ``n``, ``f1``, ``boundary_f1``, ``type_f1``)."""
        scores = scoring.score_ner(predictions, gold, task.label_names)
        overall = scores[scores["label"] == scoring.OVERALL].pivot(index="variant", columns="mode", values="f1")
        variants = list(dict.fromkeys(predictions["variant"]))
        overall = overall.reindex(variants).rename(columns={"strict": "f1", "boundary": "boundary_f1", "type": "type_f1"})
        counts = predictions.groupby("variant", sort=False).size().rename("n")
        return overall.join(counts).reset_index()[["variant", "n", "f1", "boundary_f1", "type_f1"]]

    def report_scores(self, predictions, gold, task):
        scores = self.score(predictions, gold, task)
        return scores.rename(columns={"f1": "strict_f1"})[["variant", "strict_f1", "boundary_f1", "type_f1"]]

    def per_label_scores(self, predictions, gold, task):
        scores = scoring.score_ner(predictions, gold, task.label_names, modes=("strict",))
        return scores[scores["label"] != scoring.OVERALL].reset_index(drop=True)

    def example_statistics(self, group, truth, task):
        counts = [_strict_counts(predicted, truth[example_id])
                  for predicted, example_id in zip(group["prediction"], group["example_id"])]
        tp, fp, fn = (np.array(values, dtype=float) for values in zip(*counts)) if counts else ([], [], [])
        return {"rows": np.ones(len(group)), "tp": tp, "fp": fp, "fn": fn}

    def errors(self, predictions, gold, task):
        return scoring.ner_errors(predictions, gold)

    def error_sides(self, error):
        # Only a changed type is a confusion of one type for another (a boundary error that also
        # changed the label included); missed and spurious entities name one type already.
        kind, gold, predicted = error.get("error_type"), error.get("gold"), error.get("predicted")
        if (kind in ("wrong_label", "boundary") and isinstance(gold, dict) and isinstance(predicted, dict)
                and gold.get("label") and predicted.get("label") and gold["label"] != predicted["label"]):
            return str(gold["label"]), str(predicted["label"])
        return None, None

    def error_signature(self, error):
        kind, gold, predicted = error["error_type"], error.get("gold"), error.get("predicted")
        if kind == "parse_failure":
            return "unparsed"
        if kind == "false_negative":
            return f"missed {gold['label']}"
        if kind == "false_positive":
            return f"spurious {predicted['label']}"
        if kind == "hallucination":
            return f"invented {predicted.get('label', '')}".strip()
        if kind == "wrong_label":
            return f"{gold['label']} read as {predicted['label']}"
        if gold["label"] == predicted["label"]:
            return f"boundary of {gold['label']}"
        return f"boundary of {gold['label']} read as {predicted['label']}"

    def error_context(self, error):
        """The text with the entity concerned in double brackets, so that similar entities in
        similar contexts embed close together (the input text alone for a parse failure)."""
        text = str(error["text"])
        span = error.get("gold") if isinstance(error.get("gold"), dict) else error.get("predicted")
        if not isinstance(span, dict) or "start" not in span:
            entity = span.get("text") if isinstance(span, dict) else None
            return f"{text} [[{entity}]]" if entity else text
        start, end = int(span["start"]), int(span["end"])
        return f"{text[:start]}[[{text[start:end]}]]{text[end:]}"

    def annotation_question(self, task):
        return AnnotationQuestion("span", "spans", task.label_names, "Entities",
                                  "Every entity span, by the definitions in the guidelines. "
                                  "Submit with none if the text has none.")

    def read_response(self, value, *, submitted):
        if value is None:
            return submitted_empty(value, submitted)  # submitted without spans: "no entities"
        return sorted(
            ({"start": int(s["start"]), "end": int(s["end"]), "label": str(s["label"])} for s in value),
            key=lambda s: (s["start"], s["end"], s["label"]),
        )

    def vote(self, predictions):
        """Entities kept by a majority of the samples (overlaps resolved longest first); the share
        is the fraction of samples whose whole answer equals the voted one."""
        usable = [prediction for prediction in predictions if not is_missing(prediction)]
        if not usable:
            return None, 0.0
        votes: dict[tuple[int, int, str], int] = {}
        first: dict[tuple[int, int, str], dict] = {}
        for prediction in usable:
            for key in {span_key(span) for span in prediction}:
                votes[key] = votes.get(key, 0) + 1
            for span in prediction:
                first.setdefault(span_key(span), span)
        majority = [key for key, count in votes.items() if count > len(predictions) / 2]
        voted = [dict(first[key]) for key in keep_longest(sorted(majority))]
        share = sum(self.answer_key(p) == self.answer_key(voted) for p in usable) / len(predictions)
        return voted, share

    def answer_parts(self, value):
        return frozenset(span_key(span) for span in ([] if is_missing(value) else value))

    def suggestion(self, task, predictions, text):
        value, _count, repeats = majority(self, predictions)
        if value is None:
            return None, None, 0
        spans, dropped = suggestable_spans(value, text, set(task.label_names))
        if not spans or repeats == 1:
            return spans, None, dropped
        repeat_spans = [set() if is_missing(p) else {span_key(s) for s in p} for p in predictions]
        scores = [sum(span_key(span) in found for found in repeat_spans) / repeats for span in spans]
        return spans, scores, dropped

    def describe(self, text, prediction):
        if not prediction:
            return "no entities"
        parts = []
        for span in sorted(prediction, key=lambda s: (int(s["start"]), int(s["end"]))):
            quoted = span.get("text") or text[int(span["start"]):int(span["end"])]
            parts.append(f"“{quoted}” {span['label']}")
        return "; ".join(parts)

    def view(self, text, value, gold=None):
        if is_missing(value):
            return AnswerView(empty_note="no usable answer")
        return AnswerView(highlights=tuple(Highlight(*part) for part in highlight(text, value, gold)))


    def iob2_tags(self, task) -> list[str]:
        """The token tags of `hf_features`, in `ClassLabel` order: ``O``, then B- and I- per label."""
        return ["O", *(f"{prefix}-{label}" for label in task.label_names for prefix in ("B", "I"))]

    def hf_features(self, task):
        """Token classification: ``tokens`` and IOB2 ``ner_tags`` (`workbench.core.spans.token_offsets`)."""
        from datasets import ClassLabel, Features, Sequence, Value

        return Features({"example_id": Value("string"), "tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=self.iob2_tags(task)))})

    def hf_row(self, task, example):
        text = example["text"]
        offsets = token_offsets(text)
        tags = self.iob2_tags(task)
        return {"example_id": str(example["example_id"]), "tokens": [text[start:end] for start, end in offsets],
                "ner_tags": [tags.index(tag) for tag in spans_to_iob2(offsets, example["spans"])]}

    def to_doc(self, task, nlp, example):
        """``doc.ents`` from the gold spans, each snapped to spaCy's tokens with `alignment_mode`
        ``"strict"`` (a span must start and end on token boundaries); spans that do not align are
        left out and listed in ``doc.user_data["unaligned_spans"]``, never silently changed."""
        doc = nlp.make_doc(example["text"])
        entities, unaligned = [], []
        for span in example["spans"]:
            entity = doc.char_span(int(span["start"]), int(span["end"]), label=str(span["label"]), alignment_mode="strict")
            (entities.append(entity) if entity is not None else unaligned.append(dict(span)))
        doc.ents = entities
        doc.user_data["unaligned_spans"] = unaligned
        return doc


def suggestable_spans(spans, text: str, labels: set[str]) -> tuple[list[dict], int]:
    """Spans Argilla accepts as a suggestion: known label, inside the text, not overlapping (the
    longer span wins, `workbench.core.spans.keep_longest`). Returns (spans by start, number left out)."""
    candidates = []
    for span in spans:
        try:
            start, end, label = span_key(span)
        except (KeyError, TypeError, ValueError):
            continue
        if label in labels and 0 <= start < end <= len(text):
            candidates.append((start, end, label))
    kept = keep_longest(sorted(candidates))
    return [{"start": start, "end": end, "label": label} for start, end, label in kept], len(spans) - len(kept)


def _strict_counts(predicted: object, gold_spans: list[dict]) -> tuple[int, int, int]:
    gold_set = {span_key(span) for span in gold_spans}
    if not isinstance(predicted, list):
        return 0, 0, len(gold_set)
    predicted_set = {span_key(span) for span in predicted}
    tp = len(predicted_set & gold_set)
    return tp, len(predicted_set) - tp, len(gold_set) - tp


def _parse(task: Task, raw: str, text: str) -> ParsedAnswer:
    entities, problem, reasoning = extract_list(raw, ENTITIES_KEYS, "entities")
    if problem is not None:
        return ParsedAnswer(None, problem, reasoning=reasoning)
    if not isinstance(entities, list):
        return ParsedAnswer(None, f"'entities' must be a list, got {type(entities).__name__}", reasoning=reasoning)

    wanted: list[tuple[str, str]] = []
    rejected: list[str] = []
    for item in entities:
        if not isinstance(item, dict):
            rejected.append(repr(item)[:40])
            continue
        entity_text = first_present(item, ("text", "entity", "span", "value"))
        raw_label = first_present(item, ("label", "type", "entity_type", "category"))
        label = normalise_label(raw_label, task.label_names)
        if not isinstance(entity_text, str) or not entity_text.strip() or label is None:
            rejected.append(repr(item)[:60])
            continue
        wanted.append((entity_text.strip(), label))
    if rejected and not wanted:
        return ParsedAnswer(
            None, f"no usable entity: each needs 'text' and a label from {list(task.label_names)}; got {rejected[:3]}",
            reasoning=reasoning,
        )
    spans, missing = align_entities(text, wanted)
    hallucinations = [{"text": entity_text, "label": label} for entity_text, label in missing]
    return ParsedAnswer(spans, hallucinations=hallucinations, reasoning=reasoning)


def _validate_spans(spans: Any, text: str | None, labels: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    problems: list[str] = []
    if isinstance(spans, str):
        try:
            spans = json.loads(spans) if spans.strip() else []
        except json.JSONDecodeError:
            return [], [f"field 'spans' is a string that is not JSON: {spans[:60]!r}"]
    if spans is None or (isinstance(spans, float) and math.isnan(spans)):
        return [], ["field 'spans' is missing; use [] for a text with no entities"]
    if hasattr(spans, "tolist"):  # numpy arrays from Parquet
        spans = spans.tolist()
    if not isinstance(spans, list):
        return [], [f"field 'spans' must be a list of {{start, end, label}}, got {type(spans).__name__}"]

    clean: list[dict[str, Any]] = []
    for index, span in enumerate(spans):
        field = f"spans[{index}]"
        if not isinstance(span, dict) or not {"start", "end", "label"} <= set(span):
            problems.append(f"field '{field}' must be a mapping with start, end and label, got {span!r}")
            continue
        start, end, label = span["start"], span["end"], span["label"]
        if not is_int(start) or not is_int(end):
            problems.append(f"field '{field}': start and end must be integers, got {start!r} and {end!r}")
            continue
        start, end = int(start), int(end)
        if label not in labels:
            problems.append(f"field '{field}': label {label!r} is not one of the task's labels {sorted(labels)}")
        if end <= start:
            problems.append(f"field '{field}': end ({end}) must be greater than start ({start})")
            continue
        if text is not None and (start < 0 or end > len(text)):
            problems.append(
                f"field '{field}': offsets {start}..{end} are outside the text (length {len(text)})"
            )
            continue
        clean.append({**span, "start": start, "end": end, "label": label})

    clean.sort(key=lambda span: (span["start"], span["end"]))
    for previous, current in zip(clean, clean[1:]):
        if current["start"] < previous["end"]:
            problems.append(
                f"field 'spans': span {current['start']}..{current['end']} ({current['label']}) overlaps "
                f"span {previous['start']}..{previous['end']} ({previous['label']}); overlapping entities "
                "are not supported"
            )
    return clean, problems


def is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()
