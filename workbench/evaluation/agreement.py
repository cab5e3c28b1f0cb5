"""How far annotators agree with each other and with the models' suggestions (pure; no argilla).

Both functions take the corrections frame of `workbench.annotation.pull_corrections` and use its
submitted responses only: one answer per (example_id, annotator), in the task kind's answer
column (``label``, ``spans`` or ``labels``: `TaskKind.target_column`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from workbench.core.answers import answer_key
from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.kinds import KINDS
from workbench.evaluation.consistency import fleiss_kappa

PAIR_COLUMNS = ["annotator_a", "annotator_b", "records", "agreement", "cohen_kappa", "span_f1"]
ACCEPTANCE_COLUMNS = ["agent", "responses", "accepted", "acceptance_rate"]
_HINT = "pass the frame pull_corrections returns"


@dataclass(frozen=True)
class AnnotatorAgreement:
    """Agreement among annotators on records that two or more of them submitted. Higher is better.

    kind: the task kind's name. records: records answered by two or more annotators;
    annotators: how many annotators answered those. pairwise_agreement: share of pairs of
    annotators on the same record giving the identical answer (the same label; the same set of
    spans). fleiss_kappa: classification only (NaN for NER), agreement beyond chance over those
    records, 1 perfect, 0 chance level; records may have different numbers of annotators (each
    record's agreement is over its own pairs; NaN for kinds whose answers are sets). span_f1: for
    set-valued answers (NER spans, multi-label labels; NaN otherwise), F1 between annotators over
    the answers' elements, pooled over all pairs: 2 x exact matches / (elements of both), NaN when
    no one marked any. pairs: one row per pair of annotators with columns
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
    set_valued = kind.answer_parts([]) is not None
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
        if not set_valued:
            row["cohen_kappa"] = cohen_kappa([a for a, _ in shared], [b for _, b in shared])
        else:
            matched, size = _span_overlap(shared)
            matched_all, size_all = matched_all + matched, size_all + size
            row["span_f1"] = 2 * matched / size if size else math.nan
        pairs.append(row)

    fleiss = math.nan
    if not set_valued and by_record:
        records = [[_key(answer) for answer in record.values()] for record in by_record.values()]
        categories = sorted({answer for record in records for answer in record})
        fleiss = fleiss_kappa(np.array([[record.count(c) for c in categories] for record in records]))
    return AnnotatorAgreement(
        kind=kind.name,
        records=len(by_record),
        annotators=len(annotators),
        pairwise_agreement=agree_pairs / total_pairs if total_pairs else math.nan,
        fleiss_kappa=fleiss,
        span_f1=(2 * matched_all / size_all if size_all else math.nan) if set_valued else math.nan,
        pairs=pd.DataFrame(pairs, columns=PAIR_COLUMNS),
    )


def suggestion_acceptance(corrections: pd.DataFrame) -> pd.DataFrame:
    """How often annotators submitted each agent's (variant's) suggestion unchanged.

    Returns one row per ``agent`` with ``responses`` (submitted responses to records suggested by
    it), ``accepted`` (of those, equal to the suggestion) and ``acceptance_rate`` (accepted /
    responses; higher means its answers needed fewer corrections). Records without a
    suggestion are left out.
    """
    require_columns(corrections, ["status", "suggestion_agent", "accepted_suggestion"], "corrections", _HINT)
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
    """Cohen's kappa of two annotators' answers on the same items (scikit-learn's), over answer
    identities; NaN when it is undefined (no items, or both gave one and the same answer throughout)."""
    if not first or len(first) != len(second):
        return math.nan
    keys_a, keys_b = [answer_key(a) for a in first], [answer_key(b) for b in second]
    if len(set(keys_a) | set(keys_b)) < 2:
        return math.nan
    return float(cohen_kappa_score(keys_a, keys_b))


def _submitted_answers(corrections: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    found = [kind for kind in KINDS.values() if kind.target_column in corrections.columns]
    if len(found) != 1:
        columns = sorted({kind.target_column for kind in KINDS.values()})
        raise InputError(
            f"corrections need exactly one answer column of {columns}; got {list(corrections.columns)}"
        )
    kind = found[0]
    require_columns(corrections, ["example_id", "annotator", "status"], "corrections", _HINT)
    submitted = corrections[corrections["status"] == "submitted"]
    # One answer per annotator and record: the last one listed wins.
    submitted = submitted.drop_duplicates(["example_id", "annotator"], keep="last")
    answers = submitted[["example_id", "annotator"]].copy()
    values = submitted[kind.target_column].tolist()
    if kind.answer_parts([]) is not None:
        values = [kind.answer_parts(value) for value in values]
    answers["_answer"] = values
    return kind, answers


def _key(answer: Any) -> Any:
    if isinstance(answer, frozenset):
        return answer
    return answer_key(answer)


def _span_overlap(shared: list[tuple[frozenset, frozenset]]) -> tuple[int, int]:
    matched = sum(len(a & b) for a, b in shared)
    size = sum(len(a) + len(b) for a, b in shared)
    return matched, size
