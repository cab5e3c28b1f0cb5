"""spaCy exports against real spaCy: DocBins read back by spaCy, `spacy train` run on them from
the generated config, and the trained baselines' predictions scored by the workbench scorer.

Run with ``pytest -s`` to see the baseline scores, steps and wall times."""

import time

import pandas as pd
import pytest
import spacy
from spacy.tokens import DocBin

from workbench.evaluation.errors import find_errors
from workbench.evaluation.scores import score
from workbench.trainingdata.export_spacy import spacy_predictions, train_spacy, write_docbins

pytestmark = pytest.mark.integration

# Measured here (2 CPU cores): 40 steps train either demo in about 4 to 7 s. Over seeds 0-3 the
# classification baseline scored accuracy 0.52 to 0.71 and the NER baseline strict F1 0.21 to 0.42.
STEPS = 40


def training_frame(task, train: pd.DataFrame, test: pd.DataFrame, point_id: str = "P1") -> pd.DataFrame:
    """The canonical training-data frame, built by hand from gold rows (one point, two splits).
    spaCy reads only the split, ids, text and target; the chat columns are placeholders here."""
    rows = []
    for split, data in (("train", train), ("test", test)):
        for example in data.to_dict("records"):
            rows.append({
                "point_id": point_id, "split": split, "source": "members", "example_id": example["example_id"],
                "text": example["text"], "target": example[task.kind.target_column],
                "answer": task.kind.format_answer(task, example), "messages": [],
                "synthetic": False, "signature": None,
            })
    return pd.DataFrame(rows)


def read_docs(path) -> list:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def train_and_score(export, frame, task, test, tmp_path, name):
    started = time.monotonic()
    model_dir = train_spacy(export, tmp_path / "model", max_steps=STEPS, seed=0, timeout_s=300)
    trained_s = time.monotonic() - started
    predictions = spacy_predictions(model_dir, frame, task)
    scores = score(predictions, test, task)
    print(f"\nspaCy {export.pipeline} baseline on {name}: {STEPS} steps, trained in {trained_s:.1f} s, "
          f"{len(test)} test examples\n{scores.to_string(index=False)}")
    assert model_dir.name == "model-last"  # never chosen on the test cases it is scored on
    assert len(predictions) == len(test) and set(predictions["example_id"]) == set(test["example_id"])
    assert (predictions["repeat"] == 0).all() and predictions["parse_error"].isna().all()
    find_errors(predictions, test, task)  # the error table accepts the rows too
    return predictions, scores.iloc[0]


def test_classification_docbins_train_a_baseline_that_beats_the_majority_class(
    complaint_task, complaint_train, complaint_test, tmp_path
):
    frame = training_frame(complaint_task, complaint_train, complaint_test)
    export = write_docbins(frame, complaint_task, tmp_path / "export")

    assert export.pipeline == "textcat" and export.docs == {"train": len(complaint_train), "test": len(complaint_test)}
    assert export.unaligned == 0 and export.config_path.name == "config.cfg"
    assert spacy.util.load_config(export.config_path)["nlp"]["pipeline"] == ["textcat"]
    docs = read_docs(export.train_path)
    assert len(docs) == len(complaint_train) and len(read_docs(export.test_path)) == len(complaint_test)
    first = complaint_train.iloc[0]
    assert docs[0].text == first["text"] and docs[0].user_data["example_id"] == first["example_id"]
    assert docs[0].cats == {label: float(label == first["label"]) for label in complaint_task.label_names}

    predictions, scores = train_and_score(export, frame, complaint_task, complaint_test, tmp_path, "complaint_triage")
    assert set(predictions["prediction"]) <= set(complaint_task.label_names)
    assert all(0.0 <= scores[column] <= 1.0 for column in ("accuracy", "f1_macro", "f1_micro"))
    # A model that learned nothing from the texts does no better than always answering the most
    # common test label (0.28 here; chance is 0.25). 40 steps scored 0.52 or more on every seed tried.
    majority = complaint_test["label"].value_counts(normalize=True).iloc[0]
    assert scores["accuracy"] > majority


def test_ner_docbins_train_a_baseline_that_finds_entities(ae_task, ae_train, ae_test, tmp_path):
    frame = training_frame(ae_task, ae_train, ae_test)
    export = write_docbins(frame, ae_task, tmp_path / "export")

    assert export.pipeline == "ner" and export.docs == {"train": len(ae_train), "test": len(ae_test)}
    assert export.unaligned == 0  # the demo's spans all fall on spaCy's token boundaries
    docs = read_docs(export.train_path)
    assert len(docs) == len(ae_train) and len(read_docs(export.test_path)) == len(ae_test)
    for doc, spans in zip(docs, ae_train["spans"]):
        assert [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents] == [
            (span["start"], span["end"], span["label"]) for span in spans
        ]

    predictions, scores = train_and_score(export, frame, ae_task, ae_test, tmp_path, "adverse_events")
    texts = ae_test.set_index("example_id")["text"]
    for example_id, spans in zip(predictions["example_id"], predictions["prediction"]):
        assert [span["start"] for span in spans] == sorted(span["start"] for span in spans)
        for span in spans:
            assert span["label"] in ae_task.label_names
            assert texts[example_id][span["start"]:span["end"]] == span["text"]
    assert all(0.0 <= scores[column] <= 1.0 for column in ("f1", "boundary_f1", "type_f1"))
    # Predicting no entities scores strict F1 0; 40 steps scored 0.2 or more on every seed tried.
    assert scores["f1"] > 0.0


def test_multilabel_docbins_get_a_multilabel_textcat(tmp_path):
    from workbench.core.data import load_dataset
    from workbench.core.task import load_task

    task = load_task("data/app_review_topics/task.yaml")
    test = load_dataset("data/app_review_topics/test.jsonl", task)
    export = write_docbins(training_frame(task, test.head(10), test.tail(5)), task, tmp_path / "export")
    assert export.pipeline == "textcat_multilabel" and export.docs == {"train": 10, "test": 5}
    first = read_docs(export.train_path)[0]
    assert first.cats == {label: float(label in test["labels"].iloc[0]) for label in task.label_names}


def test_a_non_empty_folder_is_refused_unless_overwrite(complaint_task, complaint_test, tmp_path):
    frame = training_frame(complaint_task, complaint_test.head(6), complaint_test.tail(4))
    export = write_docbins(frame, complaint_task, tmp_path / "export")
    with pytest.raises(FileExistsError, match=r"export.*overwrite=True"):
        write_docbins(frame, complaint_task, tmp_path / "export")
    smaller = write_docbins(frame.head(8), complaint_task, tmp_path / "export", overwrite=True)
    assert smaller.train_path == export.train_path and smaller.docs == {"train": 6, "test": 2}
    assert len(read_docs(smaller.test_path)) == 2


def test_a_span_cutting_a_token_in_half_is_counted_not_moved(ae_task, ae_train, tmp_path):
    text = "Took Benylin for a cough."
    half = {"start": 5, "end": 9, "label": "DRUG"}  # "Beny|lin"
    whole = {"start": 19, "end": 24, "label": "INDICATION"}  # "cough"
    frame = pd.concat([
        training_frame(ae_task, ae_train.head(3), ae_train.iloc[3:5]),
        pd.DataFrame([{"point_id": "P2", "split": "train", "source": "corrections", "example_id": "half",
                       "text": text, "target": [half, whole], "answer": "", "messages": [],
                       "synthetic": False, "signature": None}]),
    ], ignore_index=True)
    export = write_docbins(frame, ae_task, tmp_path / "export")

    assert export.unaligned == 1 and export.unaligned_examples == (("half", half),)
    doc = read_docs(export.train_path)[-1]
    assert doc.user_data["example_id"] == "half"
    assert [(ent.text, ent.label_) for ent in doc.ents] == [("cough", "INDICATION")]


def test_training_without_test_docs_says_why(complaint_task, complaint_test, tmp_path):
    frame = training_frame(complaint_task, complaint_test.head(5), complaint_test.iloc[:0])
    export = write_docbins(frame, complaint_task, tmp_path / "export")
    with pytest.raises(ValueError, match="no test docs"):
        train_spacy(export, tmp_path / "model")


def test_a_failed_training_raises_with_the_end_of_spacys_output(complaint_task, complaint_test, tmp_path):
    frame = training_frame(complaint_task, complaint_test.head(5), complaint_test.tail(3))
    export = write_docbins(frame, complaint_task, tmp_path / "export")
    export.config_path.write_text(export.config_path.read_text().replace('"spacy.TextCatBOW.v3"', '"no.such.v1"'))
    with pytest.raises(RuntimeError, match=r"spacy train failed[\s\S]*no\.such\.v1"):
        train_spacy(export, tmp_path / "model", max_steps=2)
