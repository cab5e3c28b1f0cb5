"""Training points: errors grouped by signature, then by content; nothing lost; what fixes each;
suspected label errors set apart. A keyword encoder stands in for the sentence encoder here."""

import numpy as np
import pandas as pd
import pytest

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.points.cluster import ErrorClusterer
from workbench.points.label_issues import find_label_issues

TASK = task_from_dict({"name": "triage", "kind": "classification", "labels": [
    {"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}, {"name": "fraud", "definition": "z"}]})


class KeywordEncoder:
    """Texts about fees, cards or anything else land in three far-apart directions."""

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        rows = []
        for text in texts:
            vector = np.array([1.0 if "fee" in text else 0.0, 1.0 if "card" in text else 0.0, 0.1])
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows)


def run_of(answers: dict[str, dict[str, str | None]], texts: dict[str, str], gold: dict[str, str]):
    dataset = validate_dataset(pd.DataFrame({"example_id": list(texts), "text": list(texts.values()),
                                             "label": [gold[e] for e in texts]}), TASK)
    rows = [{"variant": variant, "example_id": example, "repeat": 0, "prediction": answer,
             "raw_response": str(answer), "parse_error": None if answer else "unreadable", "request_error": None,
             "hallucinations": [], "latency_s": 0.1, "tokens_in": 10, "tokens_out": 2, "cost": 0.0}
            for variant, by_example in answers.items() for example, answer in by_example.items()]
    predictions = pd.DataFrame(rows)
    return predictions, dataset, find_errors(predictions, dataset, TASK)


TEXTS = {"f1": "the fee was wrong", "f2": "another fee charged", "f3": "fee again",
         "c1": "my card was blocked", "c2": "card declined", "x1": "hello there", "g1": "card stolen"}
GOLD = {"f1": "complaint", "f2": "complaint", "f3": "complaint", "c1": "complaint", "c2": "complaint",
        "x1": "complaint", "g1": "fraud"}
ANSWERS = {
    "zero_shot": {"f1": "request", "f2": "request", "f3": "request", "c1": "request", "c2": "request",
                  "x1": "request", "g1": "request"},
    "definitions": {"f1": "complaint", "f2": "complaint", "f3": "complaint", "c1": "request", "c2": "request",
                    "x1": None, "g1": "request"},
    # Wrong on the card examples too, but not in agreement with the others: a mistake, not a gold error.
    "few_shot": {"f1": "request", "f2": "request", "f3": "request", "c1": "fraud", "c2": "fraud",
                 "x1": "complaint", "g1": "request"},
}


def fitted(**parameters):
    predictions, dataset, errors = run_of(ANSWERS, TEXTS, GOLD)
    issues = find_label_issues(predictions, dataset, TASK)
    clusterer = ErrorClusterer(encoder=KeywordEncoder(), **parameters).fit(errors, predictions, TASK, issues)
    return clusterer, errors, issues


def test_signatures_say_what_went_wrong_for_every_kind():
    assert TASK.kind.error_signature({"error_type": "wrong_label", "gold": "complaint", "predicted": "request"}) \
        == "complaint read as request"
    assert TASK.kind.error_signature({"error_type": "parse_failure", "gold": "fraud", "predicted": None}) \
        == "fraud unparsed"
    ner = task_from_dict({"name": "n", "kind": "ner", "labels": [{"name": "DRUG", "definition": "d"},
                                                                  {"name": "DOSE", "definition": "e"}]})
    drug, dose = {"start": 0, "end": 7, "label": "DRUG"}, {"start": 0, "end": 7, "label": "DOSE"}
    wide = {"start": 0, "end": 10, "label": "DRUG"}
    cases = [("false_negative", drug, None, "missed DRUG"), ("false_positive", None, dose, "spurious DOSE"),
             ("wrong_label", dose, drug, "DOSE read as DRUG"), ("boundary", drug, wide, "boundary of DRUG"),
             ("parse_failure", None, None, "unparsed")]
    for error_type, gold, predicted, expected in cases:
        assert ner.kind.error_signature({"error_type": error_type, "gold": gold, "predicted": predicted}) == expected
    assert ner.kind.error_context({"text": "aspirin twice", "gold": drug, "predicted": None}) == "[[aspirin]] twice"
    topics = task_from_dict({"name": "m", "kind": "multilabel", "labels": [{"name": "bug", "definition": "b"},
                                                                            {"name": "fee", "definition": "f"}]})
    assert topics.kind.error_signature({"error_type": "false_negative", "label": "bug"}) == "missed bug"
    assert topics.kind.error_signature({"error_type": "false_positive", "label": "fee"}) == "extra fee"


def test_every_error_belongs_to_exactly_one_point():
    clusterer, errors, _ = fitted()
    assigned = clusterer.assignments_
    assert len(assigned) == len(errors) and assigned["point_id"].notna().all()
    points = clusterer.points_.set_index("point_id")
    assert points["share_of_errors"].sum() == pytest.approx(1.0)
    for point_id, rows in assigned.groupby("point_id"):
        assert set(rows["example_id"]) == set(points.at[point_id, "example_ids"])
    # An (example, signature) is in one point only.
    assert assigned.groupby(["example_id", "signature"])["point_id"].nunique().max() == 1


def test_errors_split_by_signature_then_by_content_with_small_groups_in_other():
    clusterer, _, _ = fitted()
    points = clusterer.points_
    real = points[points["kind"] == "point"]
    assert [sorted(ids) for ids in real["example_ids"]] == [["f1", "f2", "f3"], ["c1", "c2"], ["c1", "c2"]]
    assert list(real["signature"]) == ["complaint read as request", "complaint read as request",
                                       "complaint read as fraud"]
    assert "'fee'" in real.iloc[0]["name"] and real.iloc[0]["representatives"][0] in {"f1", "f2", "f3"}
    other = points[points["kind"] == "other"]
    # x1 is alone in its content cluster and in its signature (unparsed by one variant).
    assert {e for ids in other["example_ids"] for e in ids} == {"x1"}
    assert list(points["kind"]) == ["point"] * 3 + ["other"] * 2 + ["relabel"]
    assert set(other["signature"]) == {"complaint read as request", "complaint unparsed"}


def test_what_fixes_each_point():
    clusterer, _, _ = fitted()
    points = clusterer.points_.set_index("point_id")
    fees, cards = points.loc["P1"], points.loc["P2"]
    assert fees["fixed_by"] == ["definitions"] and fees["action"] == "add/clarify a definition"
    assert not fees["persistent"] and fees["variants_affected"] == ["zero_shot", "few_shot"]
    assert cards["fixed_by"] == [] and cards["persistent"] and cards["action"] == "fine-tune"
    assert "fixed by definitions" in fees["description"]


def test_a_planted_gold_error_is_ranked_first_and_kept_out_of_the_training_points():
    clusterer, _, issues = fitted()
    # g1: gold says fraud, every variant says request: the gold answer is the suspect.
    assert issues.iloc[0]["example_id"] == "g1" and issues.iloc[0]["is_label_issue"]
    assert issues.iloc[0]["label_quality"] == 0.0 and issues.iloc[0]["variants_against"] == 3
    assert issues["is_label_issue"].sum() == 1  # the persistent card mistakes are not suspected
    assert not issues.set_index("example_id").at["f1", "is_label_issue"]  # definitions got it right
    relabel = clusterer.points_.set_index("point_id").loc["relabel"]
    assert "g1" in relabel["example_ids"] and relabel["action"] == "relabel"
    assert not any("g1" in ids for ids in clusterer.points_.loc[clusterer.points_["kind"] == "point", "example_ids"])


def test_an_annotators_correction_marks_a_label_issue():
    predictions, dataset, _ = run_of(ANSWERS, TEXTS, GOLD)
    corrections = pd.DataFrame({"example_id": ["f1"], "status": ["submitted"], "label": ["request"]})
    issues = find_label_issues(predictions, dataset, TASK, corrections).set_index("example_id")
    assert issues.at["f1", "annotator_changed"] and issues.at["f1", "is_label_issue"]


def test_no_errors_gives_no_points_and_foreign_errors_are_refused():
    perfect = {"v": {example: GOLD[example] for example in TEXTS}}
    predictions, _, errors = run_of(perfect, TEXTS, GOLD)
    encoder = KeywordEncoder()
    clusterer = ErrorClusterer(encoder=encoder).fit(errors, predictions, TASK)
    assert clusterer.points_.empty and encoder.calls == 0
    foreign = pd.DataFrame({"example_id": ["a"], "variant": ["v"], "error_type": ["missed_entity"], "text": ["t"]})
    with pytest.raises(ValueError, match="missed_entity"):
        ErrorClusterer(encoder=encoder).fit(foreign, predictions, TASK)
    with pytest.raises(ValueError, match="error_type"):
        ErrorClusterer(encoder=encoder).fit(foreign.drop(columns="error_type"), predictions, TASK)
    other_run = foreign.assign(error_type="wrong_label", example_id="zz9")
    with pytest.raises(ValueError, match=r"not in the predictions, e.g. \['zz9'\]"):
        ErrorClusterer(encoder=encoder).fit(other_run, predictions, TASK)


def test_points_appear_in_the_report_with_charts_and_escaped_cards(tmp_path):
    from workbench.reporting.sections import write_report

    texts = {**TEXTS, "f1": "the fee <script>alert(1)</script> was wrong"}
    predictions, dataset, errors = run_of(ANSWERS, texts, GOLD)
    clusterer = ErrorClusterer(encoder=KeywordEncoder()).fit(errors, predictions, TASK,
                                                             find_label_issues(predictions, dataset, TASK))
    assert set(clusterer.map_.columns) == {"example_id", "signature", "point_id", "x", "y", "text"}
    assert clusterer.points_.set_index("point_id").at["P1", "right_by_variant"]["definitions"] == 1.0
    html = write_report(tmp_path / "r.html", TASK, dataset, predictions, points=clusterer.points_,
                        point_map=clusterer.map_).read_text()
    assert html.count('class="card point"') == len(clusterer.points_)
    for chart in ("points", "point_fixes", "point_map"):
        assert f'id="chart-{chart}"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "action: <b>add/clarify a definition</b>" in html


def test_keywords_are_words_of_the_points_own_texts():
    from workbench.points.cluster import class_keywords

    documents = ["hello there", "card blocked again", "blocked card"]
    keywords = class_keywords(documents, 3)
    assert keywords[0] == ["hello"]  # "there" is a stop word; other points' words have no weight here
    for words, document in zip(keywords, documents):
        assert words and all(word in document for word in words)


def test_label_quality_is_the_share_of_answers_that_equal_gold():
    """cleanlab's self-confidence. Before, 1 minus the top wrong answer's share scored an example
    whose answers split 50/50 between gold and one wrong label (0.5) like one whose answers split
    between two wrong labels (also 0.5), though the second has no answer for gold at all."""
    gold = pd.DataFrame({"example_id": ["half", "none"], "text": ["my card fee", "card blocked"],
                         "label": ["complaint", "complaint"]})
    rows = [("half", "zero_shot", "complaint"), ("half", "definitions", "request"),
            ("none", "zero_shot", "request"), ("none", "definitions", "fraud")]
    predictions = pd.DataFrame([{"example_id": e, "variant": v, "prediction": p, "repeat": 0} for e, v, p in rows])
    quality = find_label_issues(predictions, gold, TASK).set_index("example_id")["label_quality"]
    assert quality.to_dict() == {"none": 0.0, "half": 0.5}


class WideEncoder:
    """A fixed random 768-dimensional vector per text: wide enough that PCA picks its randomized solver."""

    def encode(self, texts):
        return np.array([np.random.default_rng(sum(map(ord, text))).normal(size=768) for text in texts])


def test_the_map_of_the_same_errors_is_the_same_on_every_fit():
    predictions, dataset, errors = run_of(ANSWERS, TEXTS, GOLD)
    maps = [ErrorClusterer(encoder=WideEncoder()).fit(errors, predictions, TASK).map_ for _ in range(3)]
    for other in maps[1:]:
        assert np.array_equal(maps[0][["x", "y"]].to_numpy(), other[["x", "y"]].to_numpy())
