"""Align entities a model quoted back to character offsets in the input text.

Models answer NER with entity text, not offsets. We find each quoted text in the input: exactly,
then ignoring case, then ignoring differences in whitespace. Matches that would cut a word in two
are used only when no whole-word match exists. Every occurrence of a quoted entity is tagged,
because models list each distinct entity once even when it recurs. Entities whose text is not in
the input are returned separately as hallucinations, never silently dropped.
"""

from __future__ import annotations

import re
from typing import Any


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

    # Longest first, then earliest listed: a greedy pass keeps the best non-overlapping spans.
    candidates.sort(key=lambda item: (-(item[1] - item[0]), item[2], item[0]))
    taken: list[tuple[int, int]] = []
    spans: list[dict[str, Any]] = []
    for start, end, _order, label in candidates:
        if any(start < other_end and other_start < end for other_start, other_end in taken):
            continue
        taken.append((start, end))
        spans.append({"start": start, "end": end, "label": label, "text": text[start:end]})
    spans.sort(key=lambda span: span["start"])
    return spans, missing


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
