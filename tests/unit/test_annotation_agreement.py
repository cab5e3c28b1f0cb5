"""Annotator agreement and suggestion acceptance on corrections frames (pure; no server)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.annotation import annotator_agreement, suggestion_acceptance
from workbench.evaluation.agreement import cohen_kappa
from workbench.evaluation.consistency import fleiss_kappa


def test_agreement_measures_match_reference_formulas():
    from sklearn.metrics import cohen_kappa_score

    first = ["a", "b", "a", "c", "a", "b", "b", "c"]
    second = ["a", "b", "b", "c", "a", "a", "b", "c"]
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))
    # Fleiss' kappa with a different number of raters per item, worked out by hand:
    # per item, agreeing ordered pairs / all ordered pairs: a a b 2/6, b b b b 12/12, a c 0/2,
    # c c c 6/6, so observed agreement = (1/3 + 1 + 0 + 1) / 4 = 7/12. Pooled over the 12 ratings,
    # a 3/12, b 5/12, c 4/12, so chance agreement = (9 + 25 + 16) / 144 = 25/72, and
    # kappa = (7/12 - 25/72) / (1 - 25/72) = 17/47.
    items = [["a", "a", "b"], ["b", "b", "b", "b"], ["a", "c"], ["c", "c", "c"]]
    counts = np.array([[ratings.count(label) for label in "abc"] for ratings in items])
    assert fleiss_kappa(counts) == pytest.approx(17 / 47)
    # With the same raters for every item it is the textbook Fleiss' kappa (a one-rater item is left out).
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [1, 1], [1, 0]])) == pytest.approx(((1 + 1 + 0) / 3 - 0.5) / 0.5)

    spans = [{"start": 0, "end": 4, "label": "DRUG"}, {"start": 10, "end": 14, "label": "DOSE"}]
    corrections = pd.DataFrame([
        {"example_id": "x", "annotator": "ann", "status": "submitted", "spans": spans},
        {"example_id": "x", "annotator": "bob", "status": "submitted", "spans": spans[:1]},
        {"example_id": "y", "annotator": "ann", "status": "submitted", "spans": []},
        {"example_id": "y", "annotator": "bob", "status": "submitted", "spans": []},
        {"example_id": "z", "annotator": "ann", "status": "submitted", "spans": spans},
        {"example_id": "z", "annotator": "bob", "status": "discarded", "spans": None},
    ])
    agreement = annotator_agreement(corrections)
    assert (agreement.kind, agreement.records, agreement.annotators) == ("ner", 2, 2)
    assert agreement.pairwise_agreement == 0.5  # y agrees exactly, x does not
    assert agreement.span_f1 == pytest.approx(2 * 1 / 3) and math.isnan(agreement.fleiss_kappa)
    assert agreement.pairs.to_dict("records")[0]["records"] == 2


def test_multilabel_agreement_pools_label_f1_and_acceptance_counts_each_agent():
    corrections = pd.DataFrame([
        {"example_id": "x", "annotator": "ann", "status": "submitted", "labels": ["billing", "bug"],
         "suggestion_agent": "v", "accepted_suggestion": True},
        {"example_id": "x", "annotator": "bob", "status": "submitted", "labels": ["bug"],
         "suggestion_agent": "v", "accepted_suggestion": False},
        {"example_id": "y", "annotator": "ann", "status": "submitted", "labels": [],
         "suggestion_agent": "w", "accepted_suggestion": True},
        {"example_id": "y", "annotator": "bob", "status": "submitted", "labels": [],
         "suggestion_agent": "w", "accepted_suggestion": True},
    ])
    agreement = annotator_agreement(corrections)
    assert (agreement.kind, agreement.records, agreement.pairwise_agreement) == ("multilabel", 2, 0.5)
    assert agreement.span_f1 == pytest.approx(2 * 1 / 3) and math.isnan(agreement.fleiss_kappa)
    assert suggestion_acceptance(corrections).to_dict("records") == [
        {"agent": "v", "responses": 2, "accepted": 1, "acceptance_rate": 0.5},
        {"agent": "w", "responses": 2, "accepted": 2, "acceptance_rate": 1.0},
    ]
