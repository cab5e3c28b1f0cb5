"""How far annotators agree with each other and with the models' suggestions (pure; no argilla).

Both functions take the corrections frame of `workbench.annotation.pull_corrections` and use its
submitted responses only: one answer per (example_id, annotator), the ``label`` column for
classification or the ``spans`` column for NER.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.consistency import answer_key

PAIR_COLUMNS = ["annotator_a", "annotator_b", "records", "agreement", "cohen_kappa", "span_f1"]
ACCEPTANCE_COLUMNS = ["agent", "responses", "accepted", "acceptance_rate"]


@dataclass(frozen=True)
class AnnotatorAgreement:
    """Agreement among annotators on records that two or more of them submitted. Higher is better.

    kind: "classification" or "ner". records: records answered by two or more annotators;
    annotators: how many annotators answered those. pairwise_agreement: share of pairs of
    annotators on the same record giving the identical answer (the same label; the same set of
    spans). fleiss_kappa: classification only (NaN for NER), agreement beyond chance over those
    records, 1 perfect, 0 chance level; records may have different numbers of annotators (each
    record's agreement is over its own pairs). span_f1: NER only (NaN for classification),
    span-level F1 between annotators, pooled over all pairs: 2 x exact matches / (spans of both),
    NaN when no one marked a span. pairs: one row per pair of annotators with columns
    ``annotator_a``, ``annotator_b``, ``records`` (both answered), ``agreement`` (share
    identical), ``cohen_kappa`` (classification; NaN when chance agreement is 1) and ``span_f1`` (NER).
    """

    kind: str
    records: int
    annotators: int
    pairwise_agreement: float
    fleiss_kappa: float
    span_f1: float
    pairs: pd.DataFrame = field(repr=False, compare=False)


def annotator_agreement(corrections: pd.DataFrame) -> AnnotatorAgreement:
    """Agreement between annotators where several submitted the same record (see `AnnotatorAgreement`)."""
    kind, answers = _submitted_answers(corrections)
    by_record = {
        example_id: dict(zip(group["annotator"], group["_answer"]))
        for example_id, group in answers.groupby("example_id", sort=False)
        if group["annotator"].nunique() >= 2
    }
    annotators = sorted({name for record in by_record.values() for name in record})

    agree_pairs = total_pairs = 0
    for record in by_record.values():
        for a, b in itertools.combinations(record.values(), 2):
            total_pairs += 1
            agree_pairs += _key(a) == _key(b)

    pairs = []
    matched_all = size_all = 0
    for first, second in itertools.combinations(annotators, 2):
        shared = [
            (record[first], record[second]) for record in by_record.values() if first in record and second in record
        ]
        if not shared:
            continue
        row: dict[str, Any] = {
            "annotator_a": first,
            "annotator_b": second,
            "records": len(shared),
            "agreement": sum(_key(a) == _key(b) for a, b in shared) / len(shared),
            "cohen_kappa": math.nan,
            "span_f1": math.nan,
        }
        if kind == "classification":
            row["cohen_kappa"] = cohen_kappa([a for a, _ in shared], [b for _, b in shared])
        else:
            matched, size = _span_overlap(shared)
            matched_all, size_all = matched_all + matched, size_all + size
            row["span_f1"] = 2 * matched / size if size else math.nan
        pairs.append(row)

    fleiss = math.nan
    if kind == "classification" and by_record:
        fleiss = fleiss_kappa_variable([list(record.values()) for record in by_record.values()])
    return AnnotatorAgreement(
        kind=kind,
        records=len(by_record),
        annotators=len(annotators),
        pairwise_agreement=agree_pairs / total_pairs if total_pairs else math.nan,
        fleiss_kappa=fleiss,
        span_f1=(2 * matched_all / size_all if size_all else math.nan) if kind == "ner" else math.nan,
        pairs=pd.DataFrame(pairs, columns=PAIR_COLUMNS),
    )


def suggestion_acceptance(corrections: pd.DataFrame) -> pd.DataFrame:
    """How often annotators submitted each agent's (variant's) suggestion unchanged.

    Returns one row per ``agent`` with ``responses`` (submitted responses to records suggested by
    it), ``accepted`` (of those, equal to the suggestion) and ``acceptance_rate`` (accepted /
    responses; higher means its answers needed fewer corrections). Records without a
    suggestion are left out.
    """
    _require(corrections, ["status", "suggestion_agent", "accepted_suggestion"])
    submitted = corrections[(corrections["status"] == "submitted") & corrections["suggestion_agent"].notna()]
    if submitted.empty:
        return pd.DataFrame(columns=ACCEPTANCE_COLUMNS)
    grouped = submitted.groupby("suggestion_agent", sort=True)["accepted_suggestion"]
    frame = pd.DataFrame({
        "agent": grouped.size().index,
        "responses": grouped.size().to_numpy(),
        "accepted": grouped.sum().astype(int).to_numpy(),
    })
    frame["acceptance_rate"] = frame["accepted"] / frame["responses"]
    return frame[ACCEPTANCE_COLUMNS]


def cohen_kappa(first: list[Any], second: list[Any]) -> float:
    """Cohen's kappa of two annotators' labels on the same items; NaN when chance agreement is 1."""
    n = len(first)
    if n == 0 or n != len(second):
        return math.nan
    observed = sum(a == b for a, b in zip(first, second)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / (n * n)
    if math.isclose(expected, 1.0):
        return math.nan
    return (observed - expected) / (1 - expected)


def fleiss_kappa_variable(items: list[list[Any]]) -> float:
    """Fleiss' kappa where items may have different numbers (>= 2) of ratings.

    Each item's observed agreement is the share of agreeing ordered pairs among its own raters;
    chance agreement comes from the pooled label proportions. With equal raters per item this is
    Fleiss' kappa exactly. NaN when every rating is the same label.
    """
    items = [ratings for ratings in items if len(ratings) >= 2]
    if not items:
        return math.nan
    observed = np.mean([
        sum(c * (c - 1) for c in Counter(ratings).values()) / (len(ratings) * (len(ratings) - 1))
        for ratings in items
    ])
    pooled = Counter(label for ratings in items for label in ratings)
    total = sum(pooled.values())
    expected = sum((count / total) ** 2 for count in pooled.values())
    if math.isclose(expected, 1.0):
        return math.nan
    return float((observed - expected) / (1 - expected))


def _submitted_answers(corrections: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    if "label" in corrections.columns:
        kind, column = "classification", "label"
    elif "spans" in corrections.columns:
        kind, column = "ner", "spans"
    else:
        raise ValueError(
            f"corrections need a 'label' (classification) or 'spans' (NER) column; got {list(corrections.columns)}"
        )
    _require(corrections, ["example_id", "annotator", "status"])
    submitted = corrections[corrections["status"] == "submitted"]
    # One answer per annotator and record: the last one listed wins.
    submitted = submitted.drop_duplicates(["example_id", "annotator"], keep="last")
    answers = submitted[["example_id", "annotator"]].copy()
    values = submitted[column].tolist()
    if kind == "ner":
        values = [frozenset(_span_tuples(value)) for value in values]
    answers["_answer"] = values
    return kind, answers


def _span_tuples(spans: Any) -> list[tuple[int, int, str]]:
    if spans is None or (isinstance(spans, float) and math.isnan(spans)):
        return []
    return [(int(s["start"]), int(s["end"]), str(s["label"])) for s in spans]


def _key(answer: Any) -> Any:
    if isinstance(answer, frozenset):
        return answer
    return answer_key(answer)


def _span_overlap(shared: list[tuple[frozenset, frozenset]]) -> tuple[int, int]:
    matched = sum(len(a & b) for a, b in shared)
    size = sum(len(a) + len(b) for a, b in shared)
    return matched, size


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"corrections lack column(s) {missing}; pass the frame pull_corrections returns")
