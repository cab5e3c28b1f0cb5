"""Align entities a model quoted back to character offsets in the input text.

Models answer NER with entity text, not offsets. We find each quoted text in the input: exactly,
then ignoring case, then ignoring differences in whitespace. Matches that would cut a word in two
are used only when no whole-word match exists. Every occurrence of a quoted entity is tagged,
because models list each distinct entity once even when it recurs. Entities whose text is not in
the input are returned separately as hallucinations, never silently dropped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from workbench.core.errors import InputError


def align_entities(
    text: str, entities: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Map ``(entity_text, label)`` pairs to spans in `text`.

    Returns ``(spans, missing)``: spans are ``{"start", "end", "label", "text"}`` dicts sorted by
    start and free of overlaps (a longer span wins over one it overlaps; on equal length the
    entity listed first wins); `missing` holds the pairs not found in `text`.
    """
    candidates: list[tuple[int, int, int, str]] = []  # (start, end, order listed, label)
    missing: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for order, (entity_text, label) in enumerate(entities):
        key = (entity_text, label)
        if key in seen:
            continue
        seen.add(key)
        matches = find_occurrences(text, entity_text)
        if not matches:
            missing.append(key)
            continue
        candidates.extend((start, end, order, label) for start, end in matches)

    # Candidates are in listing order, each entity's matches by position: longest first, then that.
    spans = [
        {"start": start, "end": end, "label": label, "text": text[start:end]}
        for start, end, _order, label in keep_longest(candidates)
    ]
    return spans, missing


def keep_longest(candidates: Sequence[tuple]) -> list[tuple]:
    """The non-overlapping subset of `candidates` (tuples starting ``start, end``) that a greedy
    pass keeps: longest first, on equal length the one listed first. Returned sorted by start.

    Overlapping entities are not supported anywhere in the workbench; this is the one rule that
    decides which of two overlapping spans stays.
    """
    ordered = sorted(candidates, key=lambda item: -(item[1] - item[0]))  # stable: ties keep list order
    kept: list[tuple] = []
    for candidate in ordered:
        start, end = candidate[0], candidate[1]
        if all(end <= other[0] or other[1] <= start for other in kept):
            kept.append(candidate)
    return sorted(kept, key=lambda item: (item[0], item[1]))


def highlight(text: str, spans: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]] | None = None) -> list[tuple[str, str | None, str | None]]:
    """`text` cut into ``(piece, label, status)`` parts, entity parts carrying their label.

    Without `gold`, `spans` are gold entities (status ``"gold"``). With it, `spans` are
    predictions: ``"ok"`` where a gold span matches exactly (start, end and label), else
    ``"bad"``. Plain text has label and status None. Spans that overlap an earlier one or fall
    outside the text are skipped rather than garbling the text.
    """
    exact = {(int(span["start"]), int(span["end"]), str(span["label"])) for span in gold or []}
    parts: list[tuple[str, str | None, str | None]] = []
    position = 0
    for span in sorted(spans, key=lambda span: (int(span["start"]), int(span["end"]))):
        start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
        if start < position or end > len(text) or end <= start:
            continue
        if start > position:
            parts.append((text[position:start], None, None))
        status = "gold" if gold is None else ("ok" if (start, end, label) in exact else "bad")
        parts.append((text[start:end], label, status))
        position = end
    if position < len(text):
        parts.append((text[position:], None, None))
    return parts


def find_occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """All ``(start, end)`` places where `needle` occurs in `text`, tried from strict to loose."""
    needle = needle.strip()
    if not needle:
        return []
    exact = re.escape(needle)
    loose_spacing = r"\s+".join(re.escape(part) for part in needle.split())
    for pattern, flags in ((exact, 0), (exact, re.IGNORECASE), (loose_spacing, re.IGNORECASE)):
        matches = [(match.start(), match.end()) for match in re.finditer(pattern, text, flags)]
        if matches:
            whole_words = [match for match in matches if _on_word_boundaries(text, *match)]
            return whole_words or matches
    return []


def _on_word_boundaries(text: str, start: int, end: int) -> bool:
    before_ok = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    after_ok = end == len(text) or not (text[end].isalnum() and text[end - 1].isalnum())
    return before_ok and after_ok


_TOKEN = re.compile(r"\w+|[^\w\s]")


def token_offsets(text: str) -> list[tuple[int, int]]:
    """Split `text` into tokens, returned as ``(start, end)`` character offsets.

    A token is a run of word characters (``\\w+``: letters, digits, underscore) or a single other
    non-space character, so "500mg, twice" gives "500mg", ",", "twice".
    """
    return [match.span() for match in _TOKEN.finditer(text)]


def spans_to_iob2(text_or_tokens: str | Sequence[tuple[int, int]], spans: Sequence[dict[str, Any]] | None) -> list[str]:
    """IOB2 tags (``"B-DRUG"``, ``"I-DRUG"``, ``"O"``), one per token, for character-offset spans.

    `text_or_tokens` is the text (tokenised by `token_offsets`) or its tokens as ``(start, end)``
    offsets. Each span must start at a token's start and end at a token's end, and spans must not
    overlap; otherwise ValueError, because a misaligned span cannot be written as tags without
    changing it. None (an unusable prediction) gives all ``"O"``.
    """
    tokens = token_offsets(text_or_tokens) if isinstance(text_or_tokens, str) else list(text_or_tokens)
    tags = ["O"] * len(tokens)
    starts = [start for start, _ in tokens]
    ends = [end for _, end in tokens]
    for span in spans or []:
        start, end, label = span["start"], span["end"], span["label"]
        first = bisect_left(starts, start)
        last = bisect_left(ends, end)
        if first == len(tokens) or starts[first] != start or last == len(tokens) or ends[last] != end or last < first:
            raise InputError(
                f"span {start}..{end} ({label}) does not start and end on token boundaries "
                f"(tokens: {tokens[:12]}{' ...' if len(tokens) > 12 else ''}); only token-aligned spans "
                "can be written as IOB2 tags"
            )
        if any(tag != "O" for tag in tags[first:last + 1]):
            raise InputError(f"span {start}..{end} ({label}) overlaps another span; IOB2 cannot hold overlapping spans")
        tags[first] = f"B-{label}"
        for index in range(first + 1, last + 1):
            tags[index] = f"I-{label}"
    return tags
