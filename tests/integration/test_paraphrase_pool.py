"""Training data from a paraphrase-rich pool, with the real sentence encoder (all-MiniLM-L6-v2).

Customer messages in real pools repeat each other in other words ("what is my balance", "what's
my balance?"). The pool here is written that way: for each intent, requests that differ in a word
or two, which the encoder puts within 0.85 cosine of each other, next to distinct requests of
the same intent. The run's model answered one intent to most of its examples (the default answer
a small model gives with many labels). The build must finish with no leak, keep every paraphrase
family on one side of the split, and say how many near-duplicate groups the texts formed."""

import pandas as pd
import pytest

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.points.cluster import ErrorClusterer
from workbench.points.encoder import default_encoder
from workbench.trainingdata.examples import build_training_data
from workbench.trainingdata.leakage import find_leaks, near_duplicate_groups

pytestmark = pytest.mark.integration

FAMILIES = {
    "balance": ["what is my balance", "what's my balance?", "what is my balance please", "What is my balance now",
                "tell me what my balance is"],
    "lost_card": ["i lost my card", "I have lost my card", "i think i lost my card", "I lost my card today"],
    "transfer": ["send money to my sister", "send some money to my sister", "transfer money to my sister",
                 "please send money to my sister"],
    "pin": ["how do i change my pin", "how can i change my pin", "how do I change my PIN number"],
}
DISTINCT = {
    "balance": ["how much money is in my current account", "show the funds left in savings"],
    "lost_card": ["my debit card went missing on holiday", "someone might have found my visa"],
    "transfer": ["move 50 pounds into the joint account", "pay my landlord the rent from checking"],
    "pin": ["I forgot the four digits for the cash machine", "set a new code for my card"],
}
RUN = {"r1": ("whats my balance", "balance"), "r2": ("i have lost my card", "lost_card"),
       "r3": ("send money to my brother", "transfer"), "r4": ("how do i change the pin", "pin"),
       "r5": ("how much is left in my account", "balance"), "r6": ("my card is gone", "lost_card")}
TASK = task_from_dict({"name": "bank_intents", "kind": "classification",
                       "labels": [{"name": name} for name in FAMILIES]})


def pool() -> pd.DataFrame:
    rows = [(f"{intent}-p{i}", text, intent) for intent, texts in FAMILIES.items() for i, text in enumerate(texts)]
    rows += [(f"{intent}-d{i}", text, intent) for intent, texts in DISTINCT.items() for i, text in enumerate(texts)]
    return validate_dataset(pd.DataFrame(rows, columns=["example_id", "text", "label"]), TASK)


def test_paraphrase_families_are_near_duplicates_for_the_real_encoder():
    encoder = default_encoder()
    for texts in FAMILIES.values():
        assert len(set(near_duplicate_groups(texts, encoder).tolist())) == 1, texts


def test_a_paraphrase_pool_builds_without_a_leak_and_keeps_each_family_on_one_side():
    encoder = default_encoder()
    dataset = validate_dataset(pd.DataFrame({"example_id": list(RUN), "text": [t for t, _ in RUN.values()],
                                             "label": [g for _, g in RUN.values()]}), TASK)
    answers = {e: "balance" for e in RUN} | {"r1": "balance"}  # one answer to everything: a default answer
    predictions = pd.DataFrame({"variant": "zero_shot", "example_id": list(answers), "repeat": 0,
                                "prediction": list(answers.values()), "raw_response": list(answers.values()),
                                "parse_error": None, "request_error": None, "hallucinations": [[]] * len(answers),
                                "latency_s": 0.1, "tokens_in": 10, "tokens_out": 2, "cost": 0.0})
    errors = find_errors(predictions, dataset, TASK)
    clusterer = ErrorClusterer(encoder=encoder).fit(errors, predictions, TASK)
    data = build_training_data(clusterer.points_, clusterer.assignments_, dataset, TASK, pool=pool(),
                               encoder=encoder, anchors=1.0, min_test=2)
    frame = data.examples
    assert find_leaks(frame, encoder).empty and data.leakage["leaks"].sum() == 0
    assert (frame["split"] == "test").any() and (frame["split"] == "train").any()
    for intent in FAMILIES:
        used = frame[frame["example_id"].str.startswith(f"{intent}-p")]
        assert used["split"].nunique() <= 1, used[["point_id", "example_id", "split"]]
    assert len(data.groups) and data.groups.groupby("group")["split"].nunique().max() == 1
    assert any("near-duplicate group(s)" in note for note in data.notes)
