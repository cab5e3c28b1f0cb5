"""Training examples and test cases per training point: sources, one split per example, no leakage,
and messages in the prompt's own format. A bag-of-words encoder stands in for the sentence encoder:
texts that share words are similar, equal texts have cosine 1."""

import json

import pandas as pd
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from test_points import TASK, KeywordEncoder, run_of

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.points.cluster import ErrorClusterer
from workbench.trainingdata.examples import (
    REGRESSION,
    TRAINING_COLUMNS,
    add_examples,
    build_training_data,
    consensus_corrections,
)
from workbench.trainingdata.leakage import LeakageError, find_leaks


class WordsEncoder:
    def __init__(self):
        self.vectorizer = HashingVectorizer(n_features=512, alternate_sign=False, norm="l2")

    def encode(self, texts):
        return self.vectorizer.transform([t.lower() for t in texts]).toarray()


# More members than the shared fixture: eight fee complaints read as requests, two card ones.
FEES = {f"f{i}": text for i, text in enumerate([
    "the fee was wrong", "another fee charged twice", "fee again on my statement", "a monthly fee I never agreed",
    "overdraft fee after I paid in", "why this fee for a transfer", "late fee though I paid early",
    "the fee was wrong!"], 1)}  # f8 repeats f1 but for its punctuation
CARDS = {"c1": "my card was blocked abroad", "c2": "card declined at the till"}
POOL = pd.DataFrame({"example_id": ["p1", "p2", "p3", "p4", "p5"],
                     "text": ["a fee I was charged for nothing", "card stopped working in the shop",
                              "please send a new card", "the fee was wrong", "fee charged on a closed account"],
                     "label": ["complaint", "complaint", "request", "complaint", "complaint"]})


def built(**options):
    texts = {**FEES, **CARDS, "x1": "hello there", "ok1": "thanks for the help", "ok2": "lovely service"}
    gold = {e: "complaint" for e in texts} | {"ok2": "request"}
    answers = {"zero_shot": {e: "request" for e in texts} | {"ok1": "complaint", "ok2": "request"},
               "definitions": {e: "complaint" if e.startswith("f") else "request" for e in texts}
               | {"ok1": "complaint", "ok2": "request"}}
    predictions, dataset, errors = run_of(answers, texts, gold)
    encoder = WordsEncoder()
    clusterer = ErrorClusterer(encoder=KeywordEncoder(), min_size=2).fit(errors, predictions, TASK)
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, encoder=encoder,
                               **options)
    return data, clusterer, dataset


def test_members_split_in_halves_with_one_split_per_example_and_near_duplicates_together():
    data, clusterer, _ = built()
    frame = data.examples
    assert list(frame.columns) == TRAINING_COLUMNS
    fees = frame[frame["point_id"] == "P1"]
    assert set(fees["example_id"]) == set(FEES) and set(fees["source"]) == {"members"}
    assert fees["split"].value_counts().to_dict() == {"train": 4, "test": 4}
    split = dict(zip(frame["example_id"], frame["split"]))
    assert split["f1"] == split["f8"]  # near-duplicates stay on one side
    # An example has one split everywhere, and nothing leaks.
    assert frame.groupby("example_id")["split"].nunique().max() == 1
    assert data.leakage["leaks"].sum() == 0 and find_leaks(frame, WordsEncoder()).empty


def test_messages_are_the_prompt_plus_the_answer_and_few_shot_variants_are_refused():
    data, _, _ = built(variant="definitions")
    row = data.examples.iloc[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][-1]["content"] == row["answer"] == TASK.kind.format_answer(
        TASK, {"text": row["text"], "label": row["target"]})
    assert "Use these label definitions" in row["messages"][0]["content"]
    assert row["text"] in row["messages"][1]["content"]
    with pytest.raises(ValueError, match="few-shot examples"):
        built(variant="few_shot")


def test_a_small_point_trains_and_takes_its_test_cases_from_neighbours():
    data, clusterer, _ = built(pool=POOL, min_members_to_split=3)
    frame = data.examples
    cards = frame[frame["point_id"] == "P2"]
    assert set(cards.loc[cards["source"] == "members", "split"]) == {"train"}
    assert any("P2 has 2 member(s): too small to split" in note for note in data.notes)
    neighbours = cards[cards["source"] == "neighbours"]
    assert (neighbours["split"] == "test").sum() >= 2 and neighbours["distance"].notna().all()
    assert "p2" in set(neighbours["example_id"])  # the card text nearest the card members
    # p4 repeats a fee member's text word for word: it may train beside it, never test.
    assert "test" not in set(frame.loc[frame["example_id"] == "p4", "split"]) and data.leakage["leaks"].sum() == 0


def test_corrections_replace_the_gold_with_the_annotators_consensus():
    corrections = pd.DataFrame({
        "example_id": ["f2", "f2", "f3", "f3"], "status": ["submitted"] * 4,
        "label": ["request", "request", "fraud", "complaint"],
        "submitted_at": ["2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z", "2026-12-01T10:02:00Z",
                         "2026-12-01T10:03:00Z"]})
    assert consensus_corrections(corrections, TASK) == {"f2": "request", "f3": "complaint"}  # a tie: the latest
    data, _, _ = built(corrections=corrections)
    rows = data.examples.set_index("example_id")
    assert rows.at["f2", "source"] == "corrections" and rows.at["f2", "target"] == "request"
    assert '"request"' in rows.at["f2", "answer"] and rows.at["f4", "source"] == "members"


def test_the_regression_set_holds_test_examples_in_no_point():
    data, _, dataset = built()
    regression = data.examples[data.examples["point_id"] == REGRESSION]
    assert set(regression["example_id"]) == {"ok1", "ok2"} and set(regression["split"]) == {"test"}


def test_added_rows_that_repeat_a_test_case_fail_with_the_pair():
    data, _, _ = built()
    test_fee = data.examples[(data.examples["point_id"] == "P1") & (data.examples["split"] == "test")].iloc[0]
    generated = pd.DataFrame([{"point_id": "P1", "split": "train", "source": "generated", "example_id": "g-1",
                               "text": test_fee["text"].upper(), "target": "complaint"}])
    with pytest.raises(LeakageError, match=rf"test {test_fee['example_id']} of P1 and training example g-1") as caught:
        add_examples(data, generated, TASK, encoder=WordsEncoder())
    assert caught.value.pairs.iloc[0]["equal_text"]
    fine = generated.assign(text="a brand new sentence about a fee", example_id="g-2")
    grown = add_examples(data, fine, TASK, encoder=WordsEncoder())
    assert grown.examples.set_index("example_id").at["g-2", "synthetic"]


def test_bad_input_is_named():
    data, clusterer, dataset = built()
    with pytest.raises(ValueError, match="no points of kind"):
        build_training_data(clusterer.points_.iloc[0:0], clusterer.assignments_, dataset, TASK, encoder=WordsEncoder())
    ner = task_from_dict({"name": "n", "kind": "ner", "labels": [{"name": "DRUG", "definition": "d"},
                                                                  {"name": "DOSE", "definition": "e"}]})
    text = "aspirin twice"
    ner_data = validate_dataset(pd.DataFrame({"example_id": ["n1", "n2"], "text": [text, "ibuprofen once"],
                                              "spans": [[{"start": 0, "end": 7, "label": "DRUG"}],
                                                        [{"start": 0, "end": 9, "label": "DRUG"}]]}), ner)
    points = pd.DataFrame({"point_id": ["P1"], "kind": ["point"], "example_ids": [["n1", "n2"]]})
    assignments = pd.DataFrame({"example_id": ["n1", "n2"], "signature": ["missed DRUG"] * 2, "point_id": ["P1"] * 2})
    good = build_training_data(points, assignments, ner_data, ner, encoder=WordsEncoder())
    assert '"aspirin"' in good.examples.set_index("example_id").at["n1", "answer"]
    broken = ner_data.copy()
    broken.at[0, "spans"] = [{"start": 0, "end": 7}]  # no label
    with pytest.raises(ValueError, match=r"point P1, example n1: the target"):
        build_training_data(points, assignments, broken, ner, encoder=WordsEncoder())


def test_writing_never_replaces_without_being_asked(tmp_path):
    data, _, _ = built()
    data.write(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        data.write(tmp_path)
    data.write(tmp_path, overwrite=True)
    from workbench.core.frames import read_frame

    again = read_frame(tmp_path / "examples.parquet")
    assert again["messages"].iloc[0] == data.examples["messages"].iloc[0]


def test_the_regression_set_is_topped_up_from_the_pool_when_every_example_erred():
    data, _, _ = built(pool=POOL, regression_size=3, max_neighbours=1)  # leaves pool examples unused
    regression = data.examples[data.examples["point_id"] == REGRESSION]
    assert len(regression) == 3 and {"ok1", "ok2"} <= set(regression["example_id"])
    pool_ids = set(regression["example_id"]) - {"ok1", "ok2"}
    assert pool_ids <= set(POOL["example_id"]) and data.leakage["leaks"].sum() == 0
    assert not set(data.examples.loc[data.examples["point_id"] != REGRESSION, "example_id"]) & pool_ids


def test_generated_texts_are_kept_only_when_an_independent_labelling_agrees(tmp_path):
    from workbench.testing.fake_model import FakeModel
    from workbench.trainingdata.generated import generate_examples

    data, _, _ = built()
    existing = data.examples["text"].iloc[0]
    generator = FakeModel(json.dumps({"examples": [
        {"text": "they took a service fee from my savings without asking", "answer": {"label": "complaint"}},
        {"text": "a transfer fee appeared twice this month", "answer": {"label": "complaint"}},
        {"text": existing.upper(), "answer": {"label": "complaint"}},  # repeats an existing text
        {"text": "fee question", "answer": {"label": "refund"}},          # not a label of the task
        {"answer": {"label": "complaint"}},                                # no text
    ]}))
    validator = FakeModel(lambda request: '{"label": "request"}' if "twice" in request.messages[1]["content"]
                          else '{"label": "complaint"}')
    made = generate_examples(data.examples, TASK, generator, validator, points=["P1"], encoder=WordsEncoder(),
                             cache=tmp_path / "cache.sqlite")
    assert list(made.accepted["text"]) == ["they took a service fee from my savings without asking"]
    assert made.accepted["synthetic"].all() and set(made.accepted["source"]) == {"generated"}
    reasons = dict(zip(made.rejected["text"].fillna("(none)"), made.rejected["reason"]))
    assert reasons["a transfer fee appeared twice this month"] == "the validator answered otherwise"
    assert reasons[existing.upper().strip()] == "equals or nearly repeats an existing text"
    assert "cannot be read" in reasons["fee question"] and "not an example with a text" in reasons["(none)"]
    grown = add_examples(data, made.accepted, TASK, encoder=WordsEncoder())
    assert grown.examples["synthetic"].sum() == 1 and grown.leakage["leaks"].sum() == 0


def test_targeted_candidates_are_the_unlabelled_texts_nearest_each_point():
    from workbench.trainingdata.targeted import targeted_candidates, targeted_rows

    data, _, _ = built()
    unlabelled = pd.DataFrame({"example_id": ["u1", "u2", "u3", "u4"],
                               "text": ["one more fee charged for nothing", "my card was blocked abroad",
                                        "the card got declined in the shop", "the FEE was wrong"]})
    candidates = targeted_candidates(data.examples, unlabelled, per_point=2, encoder=WordsEncoder())
    by_point = candidates.groupby("point_id")["example_id"].apply(list).to_dict()
    assert by_point["P1"] == ["u1"]  # u4 repeats a member's text: it could leak, so it is never offered
    assert "u2" not in set(candidates["example_id"])  # equal to a card member's text
    assert "u3" in by_point["P2"] and candidates["distance"].between(0, 1).all()
    corrections = pd.DataFrame({"example_id": ["u1", "u3"], "status": ["submitted"] * 2,
                                "label": ["complaint", "complaint"]})
    rows = targeted_rows(candidates, corrections, data.examples, TASK, min_test=10)
    assert list(rows["example_id"]) == ["u1", "u3"] and set(rows["split"]) == {"test"}
    grown = add_examples(data, rows, TASK, encoder=WordsEncoder())
    assert set(grown.examples.loc[grown.examples["source"] == "targeted", "example_id"]) == {"u1", "u3"}


def test_the_training_data_chart_has_train_right_and_test_left_by_source():
    from workbench.reporting.plots import plot_training_data

    data, _, _ = built(pool=POOL)
    figure = plot_training_data(data.examples)
    bars = {(trace.name, sign): trace for trace in figure.data for sign in {int(x > 0) for x in trace.x}}
    test_fees = int(((data.examples["point_id"] == "P1") & (data.examples["split"] == "test")
                     & (data.examples["source"] == "members")).sum())
    members_test = bars[("members", 0)]
    assert dict(zip(members_test.y, members_test.x))["P1"] == -test_fees
    assert [trace.showlegend for trace in figure.data if trace.name == "members"] == [True, False]


def test_a_chain_of_thought_answer_cites_the_clients_definitions_first():
    data, _, _ = built(variant="cot")
    row = data.examples.iloc[0]
    answer = json.loads(row["answer"])
    assert list(answer) == ["reasoning", "label"] and answer["label"] == row["target"]
    definition = {label.name: label.definition for label in TASK.labels}[row["target"]]
    assert answer["reasoning"] == f"{row['target']}: {definition}."
    from workbench.core.answers import parse_answer

    assert parse_answer(TASK, row["answer"], row["text"]).prediction == row["target"]  # the parser reads it back


def test_a_second_batch_of_generated_examples_gets_ids_of_its_own_and_a_reused_id_is_refused(tmp_path):
    """Ids of generated examples come from their text: two batches for one point used to share
    gen-P1-1, and the second batch's rows were dropped without a word."""
    from workbench.core.errors import InputError
    from workbench.testing.fake_model import FakeModel
    from workbench.trainingdata.generated import generate_examples

    data, _, _ = built()

    def batch(text):
        generator = FakeModel(json.dumps({"examples": [{"text": text, "answer": {"label": "complaint"}}]}))
        return generate_examples(data.examples, TASK, generator, FakeModel('{"label": "complaint"}'), points=["P1"],
                                 encoder=WordsEncoder(), cache=tmp_path / f"{len(text)}.sqlite").accepted

    first, second = batch("a service charge nobody explained to me"), batch("my statement shows a mystery levy")
    assert first["example_id"].iloc[0] != second["example_id"].iloc[0]
    grown = add_examples(add_examples(data, first, TASK, encoder=WordsEncoder()), second, TASK,
                         encoder=WordsEncoder())
    assert grown.examples["synthetic"].sum() == 2
    reused = second.assign(example_id=first["example_id"].iloc[0])
    with pytest.raises(InputError, match=r"example id 'gen-P1-[0-9a-f]{12}' already names another text "
                                         r"\('a service charge nobody explained to me'\)"):
        add_examples(add_examples(data, first, TASK, encoder=WordsEncoder()), reused, TASK, encoder=WordsEncoder())
