"""Leak-free training data by construction: near-duplicate groups over every text a build may use,
one split per group, asked by members, neighbours, anchors and regression cases alike. Real pools
are full of paraphrases; these pools are built of them. The bag-of-words encoder of the
training-data tests stands in for the sentence encoder: eight-word texts that differ in one word
have cosine 7/8 = 0.875, above the 0.85 threshold."""

import numpy as np
import pandas as pd
import pytest
from test_points import TASK, KeywordEncoder, run_of
from test_training_data import WordsEncoder

from workbench.points.cluster import ErrorClusterer
from workbench.points.encoder import CachedEncoder
from workbench.trainingdata.examples import REGRESSION, build_training_data
from workbench.trainingdata.groups import SplitLedger
from workbench.trainingdata.leakage import find_leaks, near_duplicate_groups


def paraphrases(stem: str, endings: list[str]) -> list[str]:
    """Eight-word texts sharing the first seven words."""
    assert len(stem.split()) == 7
    return [f"{stem} {ending}" for ending in endings]


CARD = paraphrases("my card got blocked abroad on the", ["beach", "train", "bus", "ferry", "plane", "road"])
FEE = paraphrases("why is there a fee on my", ["statement", "account", "bill", "loan", "mortgage", "savings"])
# Near both points: a fee charged on a card, close to each other, across the points' neighbourhoods.
BOTH = paraphrases("the card fee was charged to me", ["again", "twice", "today", "monthly"])


def run():
    texts = {"c1": "card blocked abroad", "f1": "a fee on my statement", "f2": "another fee on my account",
             "f3": "fee charged again", "ok1": "thanks for the help", "ok2": CARD[0] + " please",
             "ok3": "lovely service today"}
    gold = {e: "complaint" for e in texts} | {"ok1": "request", "ok3": "request"}
    right = {"ok1": "request", "ok2": "complaint", "ok3": "request"}
    answers = {"zero_shot": {"c1": "fraud", "f1": "request", "f2": "request", "f3": "request"} | right}
    predictions, dataset, errors = run_of(answers, texts, gold)
    clusterer = ErrorClusterer(encoder=KeywordEncoder(), min_size=1).fit(errors, predictions, TASK)
    return clusterer, dataset


POOL = pd.DataFrame({
    "example_id": [f"card{i}" for i in range(len(CARD))] + [f"fee{i}" for i in range(len(FEE))]
    + [f"both{i}" for i in range(len(BOTH))] + ["req1", "req2", "fr1"],
    "text": CARD + FEE + BOTH + ["please send me a new card", "can I order a cheque book", "someone stole my card"],
    "label": ["complaint"] * (len(CARD) + len(FEE) + len(BOTH)) + ["request", "request", "fraud"],
})


def test_the_encoders_paraphrases_are_near_duplicates_and_the_groups_join_them_transitively():
    encoder = WordsEncoder()
    vectors = encoder.encode(CARD[:2])
    assert float(vectors[0] @ vectors[1]) == pytest.approx(7 / 8)
    # a ~ b and b ~ c, but a and c further apart: still one group (transitive), and equal texts join.
    chain = ["one two three four five six seven eight", "one two three four five six seven nine",
             "one two three four five six ten nine", "ONE two three  four five six seven eight", "unrelated words"]
    groups = near_duplicate_groups(chain, encoder, 0.85)
    assert groups.tolist() == [0, 0, 0, 0, 1]
    assert float(encoder.encode([chain[0]])[0] @ encoder.encode([chain[2]])[0]) < 0.85


def test_a_paraphrase_pool_near_one_point_and_across_points_builds_with_no_leak():
    clusterer, dataset = run()
    # min_members_to_split=5: every point is too small to split, so its test cases come from the
    # pool's paraphrase clusters: the nearest paraphrase tests, and its siblings could only train,
    # which is the leak the split used to make ("43 test case(s) leak into training data").
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=POOL,
                               encoder=WordsEncoder(), min_members_to_split=5, anchors=1.0, regression_size=10)
    frame = data.examples
    assert find_leaks(frame, WordsEncoder()).empty and data.leakage["leaks"].sum() == 0
    tests = frame[frame["split"] == "test"]
    assert not tests.empty and (tests["source"] == "neighbours").any()
    # Every paraphrase family lies on one side of the split, whichever point or source took it.
    for family in ("card", "fee", "both"):
        used = frame[frame["example_id"].str.startswith(family)]
        assert used["split"].nunique() <= 1, used[["point_id", "example_id", "split"]]
    assert frame.groupby("example_id")["split"].nunique().max() == 1
    # The groups kept together are listed, and the notes say how many groups the texts formed.
    groups = data.groups
    assert list(groups.columns) == ["group", "size", "split", "example_id", "text"]
    assert (groups["size"] > 1).all() and groups.groupby("group")["split"].nunique().max() == 1
    assert any("near-duplicate group(s)" in note for note in data.notes)


def test_regression_cases_and_anchors_never_nearly_repeat_a_training_row():
    clusterer, dataset = run()
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=POOL,
                               encoder=WordsEncoder(), min_members_to_split=5, anchors=2.0, regression_size=10)
    frame = data.examples
    train_texts = set(frame.loc[frame["split"] == "train", "text"])
    regression = frame[frame["point_id"] == REGRESSION]
    # ok2 is a run example in no point, a paraphrase of the card family: a regression case only if
    # that family tests, never beside a training card paraphrase.
    if "ok2" in set(regression["example_id"]):
        assert not set(CARD) & train_texts
    assert find_leaks(frame, WordsEncoder()).empty
    anchors = frame[frame["source"] == "anchors"]
    assert set(anchors["split"]) <= {"train"}


def test_texts_trained_on_elsewhere_keep_their_families_out_of_the_test_cases():
    clusterer, dataset = run()
    replayed = [FEE[0], CARD[0]]  # a loop round's replayed rows
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=POOL,
                               encoder=WordsEncoder(), min_members_to_split=5, regression_size=10,
                               trained_texts=replayed)
    tests = data.examples[data.examples["split"] == "test"]
    assert not tests.empty
    against = pd.concat([tests, pd.DataFrame({"point_id": "replay", "split": "train", "example_id": ["r1", "r2"],
                                              "text": replayed})], ignore_index=True)
    assert find_leaks(against, WordsEncoder()).empty


def test_a_pool_of_one_paraphrase_family_still_builds_and_says_how_few_groups_it_had():
    clusterer, dataset = run()
    pool = pd.DataFrame({"example_id": [f"p{i}" for i in range(6)], "text": FEE, "label": "complaint"})
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=pool,
                               encoder=WordsEncoder(), min_members_to_split=5)
    assert find_leaks(data.examples, WordsEncoder()).empty
    note = next(note for note in data.notes if "near-duplicate group(s)" in note)
    assert "5 text(s) share a group" in note  # the six fee paraphrases are one group


def test_the_ledger_refuses_a_text_on_the_other_side_of_its_group():
    ledger = SplitLedger(CARD[:2] + ["something else entirely"], WordsEncoder())
    assert ledger.groups == 2 and ledger.side(CARD[1]) is None
    ledger.take(CARD[0], "test", "a")
    assert ledger.side(CARD[1]) == "test" and not ledger.allows(CARD[1], "train")
    assert ledger.allows("something else entirely", "train")
    with pytest.raises(RuntimeError, match="bug: text"):
        ledger.take(CARD[1], "train", "b")
    with pytest.raises(KeyError, match="was not given to the SplitLedger"):
        ledger.side("a text nobody mentioned")


def test_the_vector_cache_encodes_each_text_once_and_keeps_the_vectors_on_disk(tmp_path):
    class Counting(WordsEncoder):
        def __init__(self):
            super().__init__()
            self.seen: list[str] = []

        def encode(self, texts):
            self.seen.extend(texts)
            return super().encode(texts)

    inner = Counting()
    cache = CachedEncoder(inner, path=tmp_path / "embeddings.npz")
    # An empty cache is still an encoder: `encoder or SentenceEncoder()` must keep it.
    assert (cache or None) is cache and cache.size == 0
    first = cache.encode(["a b", "c d", "a b"])
    again = cache.encode(["c d", "e f"])
    assert inner.seen == ["a b", "c d", "e f"] and np.array_equal(first[1], again[0])
    cache.save()
    fresh = Counting()
    reloaded = CachedEncoder(fresh, path=tmp_path / "embeddings.npz")
    assert np.allclose(reloaded.encode(["a b", "e f"]), cache.encode(["a b", "e f"])) and fresh.seen == []
    assert cache.encode([]).shape == (0, first.shape[1])


def test_a_pool_the_points_use_up_leaves_no_anchor_or_regression_candidate_and_still_builds():
    clusterer, dataset = run()
    tiny = POOL[POOL["example_id"].isin(["card0", "fee0"])]  # both become neighbours of their points
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=tiny,
                               encoder=WordsEncoder(), min_members_to_split=5, anchors=1.0, regression_size=10)
    assert find_leaks(data.examples, WordsEncoder()).empty
    assert not (data.examples["source"] == "anchors").any()
