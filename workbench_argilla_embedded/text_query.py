"""Full-text matching for the embedded Argilla's search engine, in plain Python (stdlib only).

Argilla's Elasticsearch engine answers a text search with a `simple_query_string` query (default
operator AND) over the record's text fields, analysed by the standard analyzer (Unicode words,
lower-cased). This module gives the same answers for the part of that syntax people type:

- `refund late`        both words, in any text field (default operator AND)
- `refund | late`      either side of `|`
- `"arrived late"`     the words next to each other, in one field
- `-refund`            records without the word (`-"arrived late"` for a phrase)
- `ref*`               any word starting with `ref`
- `+`, `(`, `)`, `~N`  accepted and ignored (no grouping, no fuzzy matching)

Matching is by whole words, as in Elasticsearch: `cat` does not match `category` (`cat*` does).
A query word that splits into several words (`e-mail`) must match them as a phrase.

`score` returns None where a record does not match, else a relevance figure (higher is better):
how often the query's words occur, divided by the square root of the record's length in words.
The search engine registers it as an SQLite function, so filtering happens inside the query.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_CLAUSE = re.compile(r'(-?)"([^"]*)"?|(\S+)')


@dataclass(frozen=True)
class Clause:
    """One clause of a query: a phrase of one or more words; `prefix` applies to its last word."""

    words: tuple[str, ...]
    negated: bool = False
    prefix: bool = False


def words(text: str) -> list[str]:
    """The lower-cased words of `text`, in order, as the standard analyzer splits them."""
    return [word.lower() for word in _WORD.findall(text)]


@lru_cache(maxsize=256)
def parse(query: str) -> tuple[tuple[Clause, ...], ...]:
    """`query` as alternatives (split at `|`), each a tuple of clauses that must all hold."""
    alternatives: list[tuple[Clause, ...]] = []
    for part in _split_or(query):
        clauses = []
        for match in _CLAUSE.finditer(part):
            negated_phrase, phrase, bare = match.groups()
            if phrase is not None:
                clause_words = tuple(words(phrase))
                negated, prefix = bool(negated_phrase), False
            else:
                token = bare.strip("()+")
                negated = token.startswith("-")
                token = re.sub(r"~\d*$", "", token.lstrip("-"))
                prefix = token.endswith("*")
                clause_words = tuple(words(token))
            if clause_words:
                clauses.append(Clause(clause_words, negated=negated, prefix=prefix))
        if clauses:
            alternatives.append(tuple(clauses))
    return tuple(alternatives)


def _split_or(query: str) -> list[str]:
    """Split at `|` outside double quotes."""
    parts, current, quoted = [], [], False
    for char in query:
        if char == '"':
            quoted = not quoted
        if char == "|" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _occurrences(clause: Clause, field_words: list[str]) -> int:
    """How often `clause`'s words occur, in order and next to each other, in one field's words."""
    size = len(clause.words)
    count = 0
    for start in range(len(field_words) - size + 1):
        window = field_words[start : start + size]
        if window[:-1] != list(clause.words[:-1]):
            continue
        last, wanted = window[-1], clause.words[-1]
        if last == wanted or (clause.prefix and last.startswith(wanted)):
            count += 1
    return count


def score_texts(query: str, texts: list[str]) -> float | None:
    """Relevance of a record whose searchable fields hold `texts`; None where it does not match."""
    alternatives = parse(query)
    if not alternatives:
        return None
    per_field = [words(text) for text in texts]
    best: float | None = None
    for clauses in alternatives:
        hits = 0
        matched = True
        for clause in clauses:
            found = sum(_occurrences(clause, field_words) for field_words in per_field)
            if clause.negated == (found > 0):
                matched = False
                break
            hits += 0 if clause.negated else found
        if matched:
            length = sum(len(field_words) for field_words in per_field)
            value = hits / math.sqrt(max(length, 1))
            best = value if best is None else max(best, value)
    return best


def searchable_texts(fields: dict, names: list[str]) -> list[str]:
    """The text a record's fields offer to search: strings as they are, chat turns' `content`,
    and every string inside custom (structured) fields. Fields not in `names` are left out."""
    texts: list[str] = []
    for name in names:
        _collect(fields.get(name), texts)
    return texts


def _collect(value: object, texts: list[str]) -> None:
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item.get("content") if isinstance(item, dict) and "content" in item else item, texts)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, texts)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        texts.append(str(value))


# SQLite may evaluate the function several times per row in one statement (WHERE, ORDER BY, the
# result columns) and again for the count and the next page: remember recent answers.
@lru_cache(maxsize=8192)
def sql_score(query: str | None, fields_json: str | None, names_json: str | None) -> float | None:
    """The SQLite function `workbench_text_score(query, records.fields, '["field", ...]')`."""
    if not query or not fields_json:
        return None
    try:
        fields = json.loads(fields_json)
        names = json.loads(names_json) if names_json else list(fields)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    return score_texts(query, searchable_texts(fields, names))
