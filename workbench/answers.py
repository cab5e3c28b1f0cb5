"""What a model's answer must look like, and how to read a messy one.

Answers are requested as JSON: ``{"label": ...}`` for classification and
``{"entities": [{"text": ..., "label": ...}]}`` for NER, with a ``reasoning`` string first when
the variant asks for chain of thought. Parsers tolerate what small models really write (prose
around the JSON, code fences, label case, trailing commas, single quotes) and give up with a
`parse_error` message rather than an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from workbench.alignment import align_entities
from workbench.tasks import Task
from workbench.variants import PromptVariant


# Bounds that keep a looping small model from spending the whole token budget; generous for real text.
REASONING_MAX_CHARS = 300
ENTITIES_MAX = 25
ENTITY_MAX_CHARS = 80


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed answer.

    `prediction` is a label (classification) or a list of ``{"start", "end", "label", "text"}``
    spans (NER), or None when `parse_error` says why the answer could not be read.
    `hallucinations` lists NER entities (``{"text", "label"}``) whose text is not in the input.
    """

    prediction: Any
    parse_error: str | None = None
    hallucinations: list[dict[str, str]] = field(default_factory=list)
    reasoning: str | None = None


def answer_schema(task: Task, variant: PromptVariant) -> dict[str, Any]:
    """JSON schema of the answer, used for constrained decoding where the endpoint supports it.

    Property order matters: constrained decoders emit properties in schema order, so
    ``reasoning`` comes before the answer it should inform. Reasoning is capped at
    `REASONING_MAX_CHARS` so that a rambling small model still reaches its answer before the token
    limit.
    """
    labels = list(task.label_names)
    properties: dict[str, Any] = {}
    if variant.cot:
        properties["reasoning"] = {"type": "string", "maxLength": REASONING_MAX_CHARS}
    if task.kind == "classification":
        properties["label"] = {"type": "string", "enum": labels}
    else:
        properties["entities"] = {
            "type": "array",
            "maxItems": ENTITIES_MAX,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": ENTITY_MAX_CHARS},
                    "label": {"type": "string", "enum": labels},
                },
                "required": ["text", "label"],
                "additionalProperties": False,
            },
        }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def format_answer(task: Task, example: dict[str, Any]) -> str:
    """The JSON answer a perfect model would give for a gold `example` (used in few-shot prompts)."""
    if task.kind == "classification":
        return json.dumps({"label": example["label"]}, ensure_ascii=False)
    text = example["text"]
    entities = [{"text": text[span["start"]:span["end"]], "label": span["label"]} for span in example["spans"]]
    return json.dumps({"entities": entities}, ensure_ascii=False)


def parse_answer(task: Task, raw: str | None, text: str, *, truncated: bool = False) -> ParsedAnswer:
    """Parse a raw model answer for `task`; `text` is the input (NER answers are aligned to it).

    `truncated` marks an answer cut off by the token limit, so the error message can say so.
    """
    if raw is None or not raw.strip():
        return ParsedAnswer(None, "empty answer")
    if task.kind == "classification":
        parsed = _parse_classification(task, raw)
    else:
        parsed = _parse_ner(task, raw, text)
    if parsed.parse_error and truncated:
        return ParsedAnswer(None, f"answer was cut off by the token limit: {parsed.parse_error}")
    return parsed


def extract_json(raw: str, *, prefer_key: tuple[str, ...] = ()) -> Any:
    """Return a JSON object or array found in `raw`, repairing common slips; None if there is none.

    Among several candidates, the first object having one of `prefer_key` wins, then the first
    object, then the first array.
    """
    cleaned = _strip_code_fences(raw)
    values = [
        value
        for value in (_loads_leniently(candidate) for candidate in _json_candidates(cleaned))
        if isinstance(value, (dict, list))
    ]
    first = min((index for index in (cleaned.find("{"), cleaned.find("[")) if index >= 0), default=-1)
    if first >= 0 and _matching_close(cleaned, first) is None:
        # The outermost value never closes (cut off by the token limit): keep its complete part.
        salvaged = _loads_leniently(close_truncated_json(cleaned))
        if isinstance(salvaged, (dict, list)):
            values.insert(0, salvaged)
    for value in values:
        if isinstance(value, dict) and _first_present(value, prefer_key) is not None:
            return value
    for kind in (dict, list):
        for value in values:
            if isinstance(value, kind):
                return value
    return None


def normalise_label(value: Any, labels: tuple[str, ...]) -> str | None:
    """Match a label written by a model to the task's labels, ignoring case, spaces and dashes."""
    if not isinstance(value, str):
        return None
    key = _label_key(value)
    for label in labels:
        if _label_key(label) == key:
            return label
    return None


@lru_cache(maxsize=8192)  # runs repeat the same few answers ({"label": "x"}) thousands of times
def _parse_classification(task: Task, raw: str) -> ParsedAnswer:
    data = extract_json(raw, prefer_key=_LABEL_KEYS)
    if isinstance(data, dict):
        reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), str) else None
        value = _first_present(data, _LABEL_KEYS)
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
    stated = _stated_labels(raw, task.label_names)
    if len(stated) == 1:
        return ParsedAnswer(stated[0])
    if stated:
        return ParsedAnswer(None, f"no JSON answer, and the text states several labels: {stated}")
    return ParsedAnswer(None, "no JSON object and no label found in the answer")


def _parse_ner(task: Task, raw: str, text: str) -> ParsedAnswer:
    data = extract_json(raw, prefer_key=_ENTITIES_KEYS)
    reasoning = None
    if isinstance(data, dict):
        reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), str) else None
        entities = _first_present(data, _ENTITIES_KEYS)
        if entities is None:
            return ParsedAnswer(None, f"JSON answer has no 'entities' key (keys: {sorted(data)})", reasoning=reasoning)
    elif isinstance(data, list):
        entities = data
    else:
        return ParsedAnswer(None, "no JSON object found in the answer")
    if not isinstance(entities, list):
        return ParsedAnswer(None, f"'entities' must be a list, got {type(entities).__name__}", reasoning=reasoning)

    wanted: list[tuple[str, str]] = []
    rejected: list[str] = []
    for item in entities:
        if not isinstance(item, dict):
            rejected.append(repr(item)[:40])
            continue
        entity_text = _first_present(item, ("text", "entity", "span", "value"))
        raw_label = _first_present(item, ("label", "type", "entity_type", "category"))
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


_LABEL_KEYS = ("label", "answer", "category", "class")
_ENTITIES_KEYS = ("entities", "entity", "spans")


def _first_present(mapping: dict, keys: tuple[str, ...]) -> Any:
    lowered = {str(key).lower(): value for key, value in mapping.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _label_key(value: str) -> str:
    return re.sub(r"[\s\-_]+", "_", value.strip().strip("\"'`.").casefold())


_STATED = re.compile(
    r"(?:label|answer|category|class(?:ification)?)[\s*]*(?:is|:|=|-)[\s:*\"'`]*"
    r"([A-Za-z][\w \-]*?)[\"'`*]*\s*(?:[.,;!\n]|$)",
    re.IGNORECASE,
)


def _stated_labels(raw: str, labels: tuple[str, ...]) -> list[str]:
    candidates = [raw.strip(), *(match.group(1) for match in _STATED.finditer(raw))]
    found = [normalise_label(candidate, labels) for candidate in candidates]
    return list(dict.fromkeys(label for label in found if label is not None))


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _strip_code_fences(raw: str) -> str:
    fenced = _FENCE.findall(raw)
    if fenced:
        return "\n".join(fenced)
    return raw.replace("```json", "").replace("```", "")


def _json_candidates(text: str) -> list[str]:
    """Balanced {...} and [...] substrings, outermost first, scanning strings correctly."""
    candidates = []
    index = 0
    while index < len(text):
        if text[index] in "{[":
            end = _matching_close(text, index)
            if end is not None:
                candidates.append(text[index:end + 1])
                index = end + 1
                continue
        index += 1
    return candidates


def _matching_close(text: str, start: int) -> int | None:
    depth = 0
    quote: str | None = None
    escaped = False
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return position
    return None


def close_truncated_json(text: str) -> str:
    """Cut a JSON text that stops mid-way back to its last complete element and close it.

    ``{"entities": [{"text": "a", "label": "X"}, {"text": "b`` becomes
    ``{"entities": [{"text": "a", "label": "X"}]}``. Returns "" when nothing complete is found.
    """
    start = min((index for index in (text.find("{"), text.find("[")) if index >= 0), default=-1)
    if start < 0:
        return ""
    stack: list[str] = []
    quote = False
    escaped = False
    best = ""
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote = False
            continue
        if char == '"':
            quote = True
        elif char == "," and stack:
            # Everything before a comma is a complete element: a safe place to cut.
            best = text[start:position] + "".join(reversed(stack))
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack:
                break
            stack.pop()
            if not stack:
                return text[start:position + 1]
            # An element just closed inside a container: a safe place to cut.
            best = text[start:position + 1] + "".join(reversed(stack))
    return best


_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def _loads_leniently(candidate: str) -> Any:
    attempts = [candidate]
    repaired = _TRAILING_COMMA.sub(r"\1", candidate.translate(_SMART_QUOTES))
    attempts.append(repaired)
    if '"' not in repaired:
        attempts.append(repaired.replace("'", '"'))
    attempts.append(re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", repaired))))
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            continue
    return None
