"""Reviewing training points: the Argilla layout and records (no server), and applying annotators'
answers to the points: moves, renames, ties, label verdicts, and the same answers applied twice."""

import pandas as pd
import pytest
from test_points import ANSWERS, GOLD, TASK, TEXTS, KeywordEncoder, fitted, run_of

from workbench.annotation.reviews import review_columns, review_rows
from workbench.points.cluster import ErrorClusterer
from workbench.points.label_issues import find_label_issues
from workbench.points.review import (
    NO_POINT,
    POINT_QUESTION,
    RELABEL,
    RENAME_QUESTION,
    apply_point_review,
    member_id,
    point_review_layout,
    point_review_records,
)


def reviews_of(answers, layout):
    """answers: (example_id, signature, point, name, minute) tuples, one per response."""
    rows = []
    for number, (example_id, signature, point, name, minute) in enumerate(answers):
        rows.append({"record_id": member_id(example_id, signature), "example_id": example_id,
                     "signature": signature, "proposed_point": "?", "priority": number + 1,
                     "annotator": f"a{number}", "status": "submitted", POINT_QUESTION: point,
                     RENAME_QUESTION: name, "note": None, "suggested": {},
                     "submitted_at": f"2026-12-01T10:{minute:02d}:00+00:00"})
    return pd.DataFrame(rows, columns=review_columns(layout), dtype=object)


def test_one_record_per_member_with_its_point_suggested_and_stable_ids():
    clusterer, _, _ = fitted()
    points, assignments = clusterer.points_, clusterer.assignments_
    layout = point_review_layout(TASK, points)
    records = point_review_records(TASK, points, assignments)
    members = assignments.drop_duplicates(["example_id", "signature"])
    assert len(records) == len(members) == len({r.id for r in records})
    assert [r.metadata["priority"] for r in records] == list(range(1, len(records) + 1))
    options = layout.choices[POINT_QUESTION].options
    assert list(options)[: len(points)] == list(points["point_id"]) and {NO_POINT, RELABEL} <= set(options)
    fee = next(r for r in records if r.metadata["example_id"] == "f1")
    assert fee.suggestion.value == "P1" and fee.metadata["proposed_point"] == "P1"
    assert "complaint read as request" in fee.fields["error"] and "zero_shot" in fee.fields["error"]
    # The same example under another signature is another record; ids do not change between builds.
    assert member_id("c1", "complaint read as request") != member_id("c1", "complaint read as fraud")
    assert [r.id for r in point_review_records(TASK, points, assignments)] == [r.id for r in records]
    # Records come point by point, in the order of the points table.
    assert [r.metadata["proposed_point"] for r in records] == sorted(
        (r.metadata["proposed_point"] for r in records), key=list(points["point_id"]).index)


def test_moves_renames_and_ties_and_the_same_review_applied_twice_changes_nothing():
    clusterer, errors, _ = fitted()
    predictions, _, _ = run_of(ANSWERS, TEXTS, GOLD)
    points, assignments = clusterer.points_, clusterer.assignments_
    layout = point_review_layout(TASK, points)
    request = "complaint read as request"
    reviews = reviews_of([
        ("c1", request, "P1", "fees and cards", 1),     # two of three move c1 to P1 ...
        ("c1", request, "P1", "Fees and  cards ", 2),
        ("c1", request, "P2", None, 3),
        ("c2", request, NO_POINT, None, 4),             # ... c2 fits no point: P2 is left empty
        ("f1", request, "P1", "fee charged as a request", 5),
        ("f2", request, "P1", None, 6), ("f2", request, RELABEL, None, 7),  # a tie: the proposed point wins
        ("f3", request, RELABEL, None, 8),
    ], layout)
    updated, moved = apply_point_review(points, assignments, reviews, predictions, TASK)
    table = updated.set_index("point_id")
    assert "P2" not in table.index  # emptied
    assert sorted(table.at["P1", "example_ids"]) == ["c1", "f1", "f2"]
    assert table.at["P1", "name"] == "Fees and cards" and table.at["P1", "name_source"] == "annotators"
    assert table.at["P1", "reviewed"] == 3 and table.at["P1", "fixed_by"] == []  # definitions get c1 wrong
    other = points.set_index("point_id")
    other_request = other.index[(other["kind"] == "other") & (other["signature"] == request)][0]
    assert "c2" in table.at[other_request, "example_ids"]
    assert "f3" in table.at[RELABEL, "example_ids"] and "g1" in table.at[RELABEL, "example_ids"]
    # Nothing lost: every error row in exactly one point, shares adding up.
    assert len(moved) == len(errors) and moved["point_id"].isin(table.index).all()
    assert table["share_of_errors"].sum() == pytest.approx(1.0)
    for point_id, rows in moved.groupby("point_id"):
        assert set(rows["example_id"]) == set(table.at[point_id, "example_ids"])
    assert (moved["proposed_point_id"] == assignments["point_id"]).all()
    # Untouched points keep their row; applying the same answers again changes nothing.
    assert table.at["P3", "name"] == other.at["P3", "name"] and table.at["P3", "name_source"] == "keywords"
    again, moved_again = apply_point_review(updated, moved, reviews, predictions, TASK)
    pd.testing.assert_frame_equal(again, updated)
    pd.testing.assert_frame_equal(moved_again, moved)


def test_a_review_naming_an_unknown_point_is_refused_with_the_record():
    clusterer, _, _ = fitted()
    predictions, _, _ = run_of(ANSWERS, TEXTS, GOLD)
    layout = point_review_layout(TASK, clusterer.points_)
    reviews = reviews_of([("f1", "complaint read as request", "P9", None, 1)], layout)
    with pytest.raises(ValueError, match=rf"record {member_id('f1', 'complaint read as request')}.*'P9'"):
        apply_point_review(clusterer.points_, clusterer.assignments_, reviews, predictions, TASK)


def test_a_verdict_that_keeps_the_gold_clears_a_suspected_label_error():
    predictions, dataset, errors = run_of(ANSWERS, TEXTS, GOLD)
    issues = find_label_issues(predictions, dataset, TASK)
    assert issues.set_index("example_id").at["g1", "consensus_variant"] == "zero_shot"
    clusterer = ErrorClusterer(encoder=KeywordEncoder()).fit(errors, predictions, TASK, issues)
    kept = pd.DataFrame({"example_id": ["g1", "c1"], "status": ["submitted"] * 2, "label": ["fraud", "request"]})
    verdict = find_label_issues(predictions, dataset, TASK, kept).set_index("example_id")
    assert verdict.at["g1", "annotator_kept_gold"] and not verdict.at["g1", "is_label_issue"]
    assert verdict.at["c1", "annotator_changed"] and verdict.at["c1", "is_label_issue"]
    updated, moved = apply_point_review(clusterer.points_, clusterer.assignments_, None, predictions, TASK,
                                        label_issues=verdict.reset_index())
    table = updated.set_index("point_id")
    assert table.at[RELABEL, "example_ids"] == ["c1"]
    g1 = moved[moved["example_id"] == "g1"]
    assert g1["point_id"].str.startswith("other-").all()  # back among the errors, in its signature's other point
    assert table.at[g1["point_id"].iloc[0], "signature"] == "fraud read as request"


def test_review_rows_read_the_records_the_rest_api_lists():
    clusterer, _, _ = fitted()
    layout = point_review_layout(TASK, clusterer.points_)
    records = [{"external_id": "f1~x", "metadata": {"example_id": "f1", "signature": "s", "proposed_point": "P1",
                                                     "priority": 1},
                "suggestions": [{"question_id": "q1", "value": "P1"}],
                "responses": [{"user_id": "u1", "status": "submitted", "updated_at": "2026-12-01T10:00:00",
                               "values": {POINT_QUESTION: {"value": "P3"}, RENAME_QUESTION: {"value": "cards"}}},
                              {"user_id": "u2", "status": "draft", "updated_at": "2026-12-01T10:00:00",
                               "values": {POINT_QUESTION: {"value": "P2"}}}]}]
    rows = review_rows(layout, records, {"q1": POINT_QUESTION}, {"u1": "ann"}, ("submitted",))
    assert rows == [{"record_id": "f1~x", "example_id": "f1", "signature": "s", "proposed_point": "P1",
                     "priority": 1, "annotator": "ann", "status": "submitted", POINT_QUESTION: "P3",
                     RENAME_QUESTION: "cards", "note": None, "suggested": {POINT_QUESTION: "P1"},
                     "submitted_at": "2026-12-01T10:00:00+00:00"}]


def test_the_point_explorer_shows_each_points_card_and_its_errors():
    from workbench.reporting.point_explorer import PointExplorer

    clusterer, _, _ = fitted()
    predictions, dataset, _ = run_of(ANSWERS, TEXTS, GOLD)
    explorer = PointExplorer(clusterer.points_, clusterer.assignments_, TASK, dataset, predictions)
    assert [value for _, value in explorer.point.options] == list(clusterer.points_["point_id"])
    assert "P1 · " in explorer.card.value and "the fee was wrong" in explorer.card.value
    assert explorer.count.value == "1 of 6 errors"  # f1, f2, f3, each wrong in zero_shot and few_shot
    explorer.action.value = "relabel"
    assert [value for _, value in explorer.point.options] == [RELABEL] and "g1" in explorer.card.value
    assert "card stolen" in explorer.error.value and "fraud" in explorer.error.value


def test_llm_names_are_cached_and_checked_against_their_members(tmp_path):
    from workbench.points.naming import name_points
    from workbench.testing.fake_model import FakeModel

    clusterer, _, _ = fitted()
    points, assignments = clusterer.points_, clusterer.assignments_

    def answer(request):
        texts = request.messages[1]["content"].split("Texts of the group")[1]
        if "fee" in texts:
            return '{"name": "Fee complaints read as requests", "description": "Complaints about a fee charged."}'
        if "fraud" in request.messages[1]["content"].split("What went wrong")[1].splitlines()[0]:
            return "I cannot name this group."  # no JSON: the point keeps its keyword name
        return '{"name": "Fee trouble", "description": "A fee was wrong."}'  # fluent, and wrong for cards

    model = FakeModel(answer)
    named = name_points(points, assignments, TASK, model, cache=tmp_path / "cache.sqlite", encoder=KeywordEncoder())
    table = named.set_index("point_id")
    assert table.at["P1", "name"] == "Fee complaints read as requests" and table.at["P1", "name_source"] == "llm"
    assert table.at["P3", "name"] == points.set_index("point_id").at["P3", "name"]
    assert "no name in the answer" in table.at["P3", "naming_error"]
    assert table.at["P1", "llm_fit"] == 1.0  # every fee error is nearer "a fee charged" than the others
    # The card point's fluent but wrong name fits worse than its keywords: it keeps the keyword name.
    card = table.loc["P2"]
    assert card["llm_fit"] < 0.5 < card["keyword_fit"] and card["llm_name"] == "Fee trouble"
    assert card["name_source"] == "keywords" and "fits its members less well" in card["naming_error"]
    kept = name_points(points, assignments, TASK, model, cache=tmp_path / "cache.sqlite", encoder=KeywordEncoder(),
                       keep_better_fit=False).set_index("point_id")
    assert kept.at["P2", "name"] == "Fee trouble" and kept.at["P2", "name_source"] == "llm"
    assert table.loc[["other-1", "relabel"], "name_source"].eq("keywords").all()
    assert len(model.calls) == 3  # the second time every answer came from the cache
