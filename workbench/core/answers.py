"""The answer vocabulary every kind shares, and how to find JSON in a messy answer.

Answers are requested as JSON (each task kind says which keys: `workbench.core.kinds`), with a
``reasoning`` string first when the variant asks for chain of thought. The helpers here tolerate
what small models really write (prose around the JSON, code fences, label case, trailing commas,
single quotes); a kind's parser gives up with a `parse_error` message rather than an exception.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.core.task import Task


UNPARSED = "<unparsed>"


def is_missing(value: Any) -> bool:
    """True for None and float NaN (how pandas fills a missing cell); lists and dicts never are."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def answer_key(prediction: Any) -> str:
    """A hashable category for one prediction, the same for equal answers of any kind: the label;
    a canonical list of (start, end, label) spans; a sorted list of labels; or `UNPARSED`."""
    if is_missing(prediction):
        return UNPARSED
    if isinstance(prediction, str):
        return prediction
    if hasattr(prediction, "tolist"):  # numpy arrays from Parquet
        prediction = prediction.tolist()
    if all(isinstance(item, str) for item in prediction):
        return json.dumps(sorted(set(prediction)))
    return json.dumps(sorted(span_key(span) for span in prediction))


def span_key(span: dict[str, Any]) -> tuple[int, int, str]:
    """The identity of one span: (start, end, label). Two spans are the same span when these are."""
    return int(span["start"]), int(span["end"]), str(span["label"])


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


def format_answer(task: Task, example: dict[str, Any]) -> str:
    """The JSON answer a perfect model would give for a gold `example` row (few-shot prompts)."""
    return task.kind.format_answer(task, example)


def parse_answer(task: Task, raw: str | None, text: str, *, truncated: bool = False) -> ParsedAnswer:
    """Parse a raw model answer for `task`; `text` is the input (NER answers are aligned to it).

    `truncated` marks an answer cut off by the token limit, so the error message can say so.
    """
    if raw is None or not raw.strip():
        return ParsedAnswer(None, "empty answer")
    parsed = task.kind.parse(task, raw, text)
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
        if isinstance(value, dict) and first_present(value, prefer_key) is not None:
            return value
    for kind in (dict, list):
        for value in values:
            if isinstance(value, kind):
                return value
    return None


def extract_list(raw: str, keys: tuple[str, ...], name: str) -> tuple[Any, str | None, str | None]:
    """``(value, parse_error, reasoning)`` for answers that hold a list: the value under the first
    of `keys` in a JSON object (or a bare JSON array), with the object's ``reasoning`` if any.

    `value` is None, with `parse_error` saying why, when there is no JSON or no such key; a value
    that is not a list is returned as it is, for the kind to accept or refuse.
    """
    data = extract_json(raw, prefer_key=keys)
    if isinstance(data, list):
        return data, None, None
    if not isinstance(data, dict):
        return None, "no JSON object found in the answer", None
    reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), str) else None
    value = first_present(data, keys)
    if value is None:
        return None, f"JSON answer has no {name!r} key (keys: {sorted(data)})", reasoning
    return value, None, reasoning


def normalise_label(value: Any, labels: tuple[str, ...]) -> str | None:
    """Match a label written by a model to the task's labels, ignoring case, spaces, dashes and
    underscores (``Sci fi/fantasy`` finds ``Sci-Fi/Fantasy``), and quotes and dots at the ends.

    Every other character must be as in the label (``payment_reverted`` does not find
    ``payment_reverted?``). A whole number (``{"label": 5}``) is read as its digits. Returns the
    label as the task spells it, or None.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    key = _label_key(value)
    for label in labels:
        if _label_key(label) == key:
            return label
    return None


LABEL_KEYS = ("label", "answer", "category", "class")
ENTITIES_KEYS = ("entities", "entity", "spans")


def first_present(mapping: dict, keys: tuple[str, ...]) -> Any:
    lowered = {str(key).lower(): value for key, value in mapping.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


@lru_cache(maxsize=65536)  # called for every label of the task on every answer
def _label_key(value: str) -> str:
    return re.sub(r"[\s\-_]+", "_", value.strip().strip("\"'`.").casefold())


# "The answer is: x", "**Label:** x", "category = x": the rest of the line is captured in a
# lookahead, so that a second statement on the same line is found too.
_STATED = re.compile(
    r"(?:label|answer|category|class(?:ification)?)[\s*]*(?:is|:|=|-)[\s:*\"'`]*(?=([^\n]*))",
    re.IGNORECASE,
)
# Where a stated label may end: before punctuation that closes a sentence or clause, or a quote.
_STATED_END = re.compile(r"[\"'`*]*\s*(?:[.,;!\n]|$)")


def stated_labels(raw: str, labels: tuple[str, ...]) -> list[str]:
    """The labels an answer without JSON states: the whole answer when it is one label, and the
    label after each "label is" / "answer:" / "category =" (the longest label that ends there at a
    punctuation mark or the end of the line, so ``Answer: Books, Comics.`` finds ``Books, Comics``
    before ``Books``). Labels are matched by `normalise_label`; returned in order, each once."""
    found = [normalise_label(raw.strip(), labels)]
    for match in _STATED.finditer(raw):
        tail = match.group(1)
        ends = sorted({end.start() for end in _STATED_END.finditer(tail)}, reverse=True)
        found.append(next((label for label in (normalise_label(tail[:end], labels) for end in ends if end)
                           if label is not None), None))
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
