"""Training points with many labels: a default answer is one point, confusions spread over unique
signatures merge by content, a confusion and its reverse are one point, "X read as anything" and
"anything read as X" group. A topic encoder stands in for the sentence encoder."""

import numpy as np
import pandas as pd
import pytest
from test_points import fitted

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.points.cluster import ErrorClusterer

LABELS = [f"intent_{number:02d}" for number in range(30)]
TASK = task_from_dict({"name": "intents", "kind": "classification",
                       "labels": [{"name": label, "definition": "d"} for label in LABELS]})


class TopicEncoder:
    """Texts naming a topic word share its direction; every other text gets a direction of its own,
    so unrelated texts are far apart (cosine distance 1)."""

    TOPICS = ("card", "transfer", "loan")

    def __init__(self):
        self.own: dict[str, int] = {}

    def encode(self, texts):
        rows = np.zeros((len(texts), len(self.TOPICS) + 500))
        for row, text in enumerate(texts):
            topic = next((i for i, word in enumerate(self.TOPICS) if word in text), None)
            if topic is None:
                topic = len(self.TOPICS) + self.own.setdefault(text, len(self.own))
            rows[row, topic] = 1.0
        return rows


def run_of(cases: list[tuple[str, str, str]], variant: str = "zero_shot", task=TASK):
    """cases: (text, gold, answer) per example; one variant answers them all."""
    ids = [f"e{number:03d}" for number in range(len(cases))]
    dataset = validate_dataset(pd.DataFrame({"example_id": ids, "text": [c[0] for c in cases],
                                             "label": [c[1] for c in cases]}), task)
    predictions = pd.DataFrame([
        {"variant": variant, "example_id": example, "repeat": 0, "prediction": answer, "raw_response": answer,
         "parse_error": None, "request_error": None, "hallucinations": [], "latency_s": 0.1, "tokens_in": 10,
         "tokens_out": 2, "cost": 0.0} for example, (_, _, answer) in zip(ids, cases)])
    return predictions, dataset, find_errors(predictions, dataset, task)


def fit(cases, **parameters):
    predictions, dataset, errors = run_of(cases)
    clusterer = ErrorClusterer(encoder=TopicEncoder(), **parameters).fit(errors, predictions, TASK)
    return clusterer, predictions, dataset, errors


def one_point_each(clusterer, errors):
    assigned = clusterer.assignments_
    assert len(assigned) == len(errors) and assigned["point_id"].notna().all()
    assert clusterer.points_["share_of_errors"].sum() == pytest.approx(1.0)
    assert assigned.groupby(["example_id", "signature"])["point_id"].nunique().max() == 1
    for point_id, rows in assigned.groupby("point_id"):
        assert set(rows["example_id"]) == set(clusterer.points_.set_index("point_id").at[point_id, "example_ids"])


def test_one_answer_given_to_most_errors_is_one_default_answer_point_not_dozens_of_singletons(tmp_path):
    # The first label answered to 26 examples of 26 different intents, unrelated texts: every
    # (gold, answer) signature is unique, which made 26 one-example "other" points.
    cases = [(f"unrelated message number {n}", LABELS[n + 1], LABELS[0]) for n in range(26)]
    cases += [(f"something else {n}", LABELS[n + 1], LABELS[n + 2]) for n in range(3)]  # other mistakes
    clusterer, predictions, dataset, errors = fit(cases)
    one_point_each(clusterer, errors)
    points = clusterer.points_.set_index("point_id")
    default = points.loc["P1"]
    assert default["family"] == "default answer" and default["kind"] == "point"
    assert default["size"] == 26 and (points["family"] == "default answer").sum() == 1
    assert default["name"].startswith(f"default answer: '{LABELS[0]}' given to 26 of 29 errors of zero_shot")
    assert default["family_note"] == f"zero_shot gave '{LABELS[0]}' to 26 of 29 of its errors (90%)"
    assert default["signature"] == f"anything read as {LABELS[0]}"
    assert len(points) <= 3  # the default point and the three leftovers' shared "other" point
    # The assignments keep each error's own signature (training data stratifies by it).
    assert clusterer.assignments_["signature"].nunique() == 29

    from workbench.reporting.sections import write_report

    html = write_report(tmp_path / "r.html", TASK, dataset, predictions, points=clusterer.points_).read_text()
    line = f"zero_shot gave &#39;{LABELS[0]}&#39; to 26 of 29 of its errors (90%): one default-answer point, P1"
    assert line in html and html.index(line) < html.index('class="card point"')


def test_a_common_answer_of_one_confusion_is_not_a_default_and_three_labels_make_none():
    # 10 of 12 errors answered intent_00, but all from one gold: a confusion, not a default.
    cases = [(f"card problem {n}", LABELS[1], LABELS[0]) for n in range(10)]
    cases += [("loan one", LABELS[2], LABELS[3]), ("transfer two", LABELS[4], LABELS[5])]
    clusterer, _, _, errors = fit(cases)
    one_point_each(clusterer, errors)
    assert "default answer" not in set(clusterer.points_["family"])
    top = clusterer.points_.iloc[0]
    assert top["family"] == "signature" and top["signature"] == f"{LABELS[1]} read as {LABELS[0]}"
    few, _, _ = fitted()  # three labels: zero_shot answers "request" to every example, yet no default
    assert "default answer" not in set(few.points_["family"])
    assert set(few.points_["family"]) == {"signature", "other", "relabel"}


def test_confusions_spread_over_unique_signatures_merge_by_content():
    # Card intents confused with each other, each (gold, answer) once: 5 unique signatures with
    # similar texts; unrelated mistakes elsewhere.
    cards = [(f"my card {word}", LABELS[1 + n], LABELS[2 + n]) for n, word in
             enumerate(["is blocked", "did not arrive", "was declined", "expired", "got eaten"])]
    noise = [(f"message {n}", LABELS[10 + n], LABELS[20 + n]) for n in range(6)]
    clusterer, _, _, errors = fit(cards + noise)
    one_point_each(clusterer, errors)
    points = clusterer.points_
    content = points[points["family"] == "content"]
    assert len(content) == 1 and sorted(content.iloc[0]["example_ids"]) == [f"e{n:03d}" for n in range(5)]
    assert content.iloc[0]["kind"] == "point" and "and 2 more" in content.iloc[0]["signature"]
    # The unrelated ones are not six "other" points but one shared one.
    others = points[points["kind"] == "other"]
    assert len(others) == 1 and others.iloc[0]["size"] == 6 and "no recurring pattern" in others.iloc[0]["name"]


def test_three_labels_confused_with_each_other_pairwise_merge_though_their_texts_differ():
    # intent_01..03 confused pairwise in both directions, each signature once, texts unrelated (as
    # "rules for toothpaste" read as lost_luggage and "status of my flight" read as carry_on are):
    # the confusions close triangles in the label graph, which chance rarely does. A chain of
    # confusions (intent_10 -> 11 -> 12 -> 13) closes none and stays apart, as does the noise.
    web = [(f"web text {n}", LABELS[1 + a], LABELS[1 + b]) for n, (a, b) in
           enumerate([(0, 1), (1, 2), (2, 0), (0, 2), (1, 0), (2, 1)])]
    chain = [(f"chain text {n}", LABELS[10 + n], LABELS[11 + n]) for n in range(3)]
    noise = [(f"message {n}", LABELS[14 + n], LABELS[22 + n]) for n in range(4)]
    clusterer, _, _, errors = fit(web + chain + noise)
    one_point_each(clusterer, errors)
    content = clusterer.points_[clusterer.points_["family"] == "content"]
    assert len(content) == 1 and sorted(content.iloc[0]["example_ids"]) == [f"e{n:03d}" for n in range(6)]
    others = clusterer.points_[clusterer.points_["kind"] == "other"]
    assert len(others) == 1 and others.iloc[0]["size"] == 7


def test_a_confusion_and_its_reverse_are_one_pair_point():
    cases = [("transfer money to mum", LABELS[1], LABELS[2]), ("transfer to savings", LABELS[1], LABELS[2]),
             ("transfer my balance", LABELS[2], LABELS[1]), ("transfer back", LABELS[2], LABELS[1]),
             ("a loan please", LABELS[3], LABELS[4]), ("loan rates", LABELS[3], LABELS[4])]
    clusterer, _, _, errors = fit(cases)
    one_point_each(clusterer, errors)
    points = clusterer.points_.set_index("point_id")
    assert points.at["P1", "family"] == "pair" and points.at["P1", "size"] == 4
    assert points.at["P1", "signature"] == f"{LABELS[1]} and {LABELS[2]} confused"
    assert points.at["P2", "family"] == "signature"
    assert points.at["P2", "signature"] == f"{LABELS[3]} read as {LABELS[4]}"


def test_x_read_as_anything_and_anything_read_as_x_group_when_unlikely_by_chance():
    weak = [(f"weak {n}", LABELS[1], LABELS[10 + n]) for n in range(5)]   # one gold, five answers
    sink = [(f"sunk {n}", LABELS[2 + n], LABELS[29]) for n in range(5)]   # five golds, one answer
    noise = [(f"noise {n}", LABELS[15 + n], LABELS[22 + n]) for n in range(6)]
    clusterer, _, _, errors = fit(weak + sink + noise)
    one_point_each(clusterer, errors)
    points = clusterer.points_
    by_family = {family: rows for family, rows in points.groupby("family")}
    assert "default answer" not in by_family  # 5 of 16 errors: not most of them
    answer, gold = by_family["answer"].iloc[0], by_family["gold"].iloc[0]
    assert answer["signature"] == f"anything read as {LABELS[29]}" and answer["size"] == 5
    assert gold["signature"] == f"{LABELS[1]} read as anything" and gold["size"] == 5
    assert "binomial p" in gold["family_note"]
    # Two of them are not enough: chance is a likely explanation.
    few = weak[:2] + sink[:2] + noise
    clusterer, _, _, errors = fit(few)
    assert not {"answer", "gold"} & set(clusterer.points_["family"])


def test_which_errors_have_a_gold_side_and_an_answer_side():
    drug_task = task_from_dict({"name": "n", "kind": "ner", "labels": [{"name": "DRUG"}, {"name": "DOSE"}]})
    tags = task_from_dict({"name": "m", "kind": "multilabel", "labels": [{"name": "bug"}, {"name": "ui"}]})

    def error_sides(row):
        gold = row.get("gold")
        task = drug_task if isinstance(gold, dict) else tags if isinstance(gold, list) else TASK
        return task.kind.error_sides(row)

    assert error_sides({"error_type": "wrong_label", "gold": "a", "predicted": "b"}) == ("a", "b")
    assert error_sides({"error_type": "parse_failure", "gold": "a", "predicted": None}) == (None, "unparsed")
    drug, dose = {"start": 0, "end": 3, "label": "DRUG"}, {"start": 0, "end": 3, "label": "DOSE"}
    assert error_sides({"error_type": "wrong_label", "gold": drug, "predicted": dose}) == ("DRUG", "DOSE")
    assert error_sides({"error_type": "boundary", "gold": drug, "predicted": {**dose, "end": 5}}) == ("DRUG", "DOSE")
    assert error_sides({"error_type": "boundary", "gold": drug, "predicted": {**drug, "end": 5}}) == (None, None)
    assert error_sides({"error_type": "false_negative", "gold": drug, "predicted": None}) == (None, None)
    assert error_sides({"error_type": "false_negative", "gold": ["bug"], "predicted": [], "label": "bug"}) \
        == (None, None)


def test_ner_errors_go_through_the_families_and_keep_one_point_each():
    ner = task_from_dict({"name": "n", "kind": "ner", "labels": [
        {"name": name, "definition": "d"} for name in ("DRUG", "DOSE", "ROUTE", "FREQ")]})
    texts = [f"took aspirin card {n}" for n in range(4)] + ["take loan pills", "a transfer of ibuprofen"]
    spans = [[{"start": 5, "end": 12, "label": "DRUG"}]] * 4 + [[{"start": 10, "end": 15, "label": "DRUG"}],
                                                                 [{"start": 14, "end": 23, "label": "DRUG"}]]
    dataset = validate_dataset(pd.DataFrame({"example_id": [f"n{n}" for n in range(6)], "text": texts,
                                             "spans": spans}), ner)
    answers = [[{**span[0], "label": "DOSE"}] for span in spans[:4]] + [[], [{**spans[5][0], "label": "ROUTE"}]]
    predictions = pd.DataFrame([
        {"variant": "v", "example_id": f"n{n}", "repeat": 0, "prediction": answer, "raw_response": "",
         "parse_error": None, "request_error": None, "hallucinations": [], "latency_s": 0.1, "tokens_in": 1,
         "tokens_out": 1, "cost": 0.0} for n, answer in enumerate(answers)])
    errors = find_errors(predictions, dataset, ner)
    clusterer = ErrorClusterer(encoder=TopicEncoder()).fit(errors, predictions, ner)
    one_point_each(clusterer, errors)
    points = clusterer.points_.set_index("point_id")
    # Four golds of one type read as DOSE are one confusion, not a default (one gold type only).
    assert points.at["P1", "signature"] == "DRUG read as DOSE" and points.at["P1", "family"] == "signature"
    assert set(clusterer.assignments_["signature"]) == {"DRUG read as DOSE", "missed DRUG", "DRUG read as ROUTE"}
