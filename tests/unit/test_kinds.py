"""The task kinds' hooks for the training-data stages, loaded back by their own libraries:
a gold example as chat messages, Hugging Face `datasets` features and rows, a spaCy `Doc`."""

import json

import pandas as pd
import pytest
import spacy
from datasets import Dataset

from workbench.core.data import validate_dataset
from workbench.core.kinds import KINDS, get_kind
from workbench.core.task import task_from_dict
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import parse_variant

LABELS = [{"name": "DRUG", "definition": "A medicine."}, {"name": "DOSE", "definition": "An amount."}]
NER = task_from_dict({"name": "ae", "kind": "ner", "labels": LABELS})
TOPICS = task_from_dict({"name": "topics", "kind": "multilabel", "labels": LABELS})
CLASSES = task_from_dict({"name": "triage", "kind": "classification", "labels": LABELS})
TEXT = "Took aspirin 500mg, then more aspirin."
NER_ROW = {"example_id": "e1", "text": TEXT, "spans": [
    {"start": 5, "end": 12, "label": "DRUG"}, {"start": 13, "end": 18, "label": "DOSE"},
    {"start": 14, "end": 18, "label": "DRUG"}]}


def test_kinds_are_registered_by_name_and_unknown_kinds_say_what_exists():
    assert set(KINDS) == {"classification", "ner", "multilabel"}
    assert get_kind("ner") is NER.kind and str(NER.kind) == "ner"
    with pytest.raises(ValueError, match="multilabel"):
        get_kind("relations")
    with pytest.raises(ValueError, match="kind"):
        task_from_dict({"name": "x", "kind": "relations", "labels": LABELS})


def test_a_gold_example_becomes_a_chat_ending_with_the_perfect_answer():
    example = {"example_id": "e1", "text": TEXT, "labels": ["DRUG"]}
    messages = render_messages(TOPICS, parse_variant("definitions"), TEXT)
    chat = TOPICS.kind.chat_messages(TOPICS, messages, example)
    assert [m["role"] for m in chat] == ["system", "user", "assistant"]
    assert json.loads(chat[-1]["content"]) == {"labels": ["DRUG"]}
    assert TOPICS.kind.parse(TOPICS, chat[-1]["content"], TEXT).prediction == ["DRUG"]


@pytest.mark.parametrize(("task", "row", "column", "expected"), [
    (CLASSES, {"example_id": "e1", "text": TEXT, "label": "DOSE"}, "label", "DOSE"),
    (TOPICS, {"example_id": "e1", "text": TEXT, "labels": ["DOSE", "DRUG"]}, "labels", ["DOSE", "DRUG"]),
])
def test_label_kinds_load_into_datasets_with_class_labels(task, row, column, expected, tmp_path):
    features = task.kind.hf_features(task)
    dataset = Dataset.from_list([task.kind.hf_row(task, row)], features=features)
    dataset.save_to_disk(tmp_path / "set")
    loaded = Dataset.load_from_disk(tmp_path / "set")
    names = loaded.features[column].names if column == "label" else loaded.features[column].feature.names
    value = loaded[0][column]
    assert (names[value] if column == "label" else [names[v] for v in value]) == expected


def test_ner_loads_into_datasets_as_iob2_token_tags(tmp_path):
    gold = validate_dataset(pd.DataFrame([{**NER_ROW, "spans": NER_ROW["spans"][:2]}]), NER)
    features = NER.kind.hf_features(NER)
    dataset = Dataset.from_list([NER.kind.hf_row(NER, gold.iloc[0].to_dict())], features=features)
    tags = dataset.features["ner_tags"].feature
    row = dataset[0]
    assert row["tokens"][:4] == ["Took", "aspirin", "500mg", ","]
    assert [tags.int2str(tag) for tag in row["ner_tags"][:4]] == ["O", "B-DRUG", "B-DOSE", "O"]
    assert tags.names == ["O", "B-DRUG", "I-DRUG", "B-DOSE", "I-DOSE"]


def test_spacy_docs_carry_cats_or_entities_and_report_spans_that_do_not_align():
    nlp = spacy.blank("en")
    doc = CLASSES.kind.to_doc(CLASSES, nlp, {"text": TEXT, "label": "DOSE"})
    assert doc.cats == {"DRUG": 0.0, "DOSE": 1.0}
    doc = TOPICS.kind.to_doc(TOPICS, nlp, {"text": TEXT, "labels": ["DRUG"]})
    assert doc.cats == {"DRUG": 1.0, "DOSE": 0.0}
    # The DRUG span 14..18 ("00mg") starts inside a spaCy token, so it cannot align: it is reported, not moved.
    doc = NER.kind.to_doc(NER, nlp, NER_ROW)
    assert [(ent.text, ent.label_) for ent in doc.ents] == [("aspirin", "DRUG"), ("500mg", "DOSE")]
    assert doc.user_data["unaligned_spans"] == [{"start": 14, "end": 18, "label": "DRUG"}]
