"""Hugging Face exports of the training-data frame, written and read back with `datasets` itself:
chat rows for SFT (any kind) and tokens with IOB2 tags (span kinds only)."""

import pandas as pd
import pytest
from datasets import ClassLabel, load_from_disk

from workbench.core.data import load_dataset
from workbench.core.task import load_task
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import parse_variant
from workbench.trainingdata.export_hf import save_dataset, to_chat_dataset, to_token_classification

ZERO_SHOT = parse_variant("zero_shot")


def training_frame(task, train: pd.DataFrame, test: pd.DataFrame, point_id: str = "P1") -> pd.DataFrame:
    """The canonical training-data frame, built by hand from gold rows (one point, two splits)."""
    rows = []
    for split, data in (("train", train), ("test", test)):
        for example in data.to_dict("records"):
            messages = task.kind.chat_messages(task, render_messages(task, ZERO_SHOT, example["text"]), example)
            rows.append({
                "point_id": point_id, "split": split, "source": "members", "example_id": example["example_id"],
                "text": example["text"], "target": example[task.kind.target_column],
                "answer": task.kind.format_answer(task, example), "messages": messages,
                "synthetic": False, "signature": None,
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def complaint_frame(complaint_task, complaint_train, complaint_test):
    return training_frame(complaint_task, complaint_train.head(12), complaint_test.head(8))


@pytest.fixture(scope="module")
def ae_frame(ae_task, ae_train, ae_test):
    return training_frame(ae_task, ae_train.head(12), ae_test.head(8))


@pytest.mark.parametrize("name", ["complaint", "ae"])
def test_chat_rows_are_written_and_read_back_as_sft_conversations(request, tmp_path, name):
    task, frame = request.getfixturevalue(f"{name}_task"), request.getfixturevalue(f"{name}_frame")
    path = save_dataset(to_chat_dataset(frame, task), tmp_path / "chat")
    loaded = load_from_disk(str(path))

    assert path == tmp_path / "chat"
    assert list(loaded) == ["train", "test"]
    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (12, 8)
    assert set(loaded["train"].column_names) == {"messages", "point_id", "source", "example_id", "synthetic"}
    assert loaded["train"].features["synthetic"].dtype == "bool"
    first = loaded["train"][0]
    assert [message["role"] for message in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][-1]["content"] == frame["answer"].iloc[0]
    assert first["messages"][1]["content"] == frame["messages"].iloc[0][1]["content"]
    assert (first["point_id"], first["source"], first["example_id"]) == ("P1", "members", frame["example_id"].iloc[0])
    assert loaded["test"]["example_id"] == frame[frame["split"] == "test"]["example_id"].tolist()


def test_splits_follow_train_then_test_whatever_the_row_order(complaint_task, complaint_frame):
    dataset = to_chat_dataset(complaint_frame.iloc[::-1], complaint_task)
    assert list(dataset) == ["train", "test"]


def test_ner_rows_become_tokens_with_iob2_tags_and_classlabel_names(ae_task, ae_frame, tmp_path):
    path = save_dataset(to_token_classification(ae_frame, ae_task), tmp_path / "tokens")
    loaded = load_from_disk(str(path))

    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (12, 8)
    tags = loaded["train"].features["ner_tags"].feature
    assert isinstance(tags, ClassLabel)
    assert tags.names == ["O", "B-DRUG", "I-DRUG", "B-ADVERSE_EVENT", "I-ADVERSE_EVENT",
                          "B-INDICATION", "I-INDICATION", "B-DOSE", "I-DOSE"]
    rows = {row["example_id"]: row for row in loaded["train"]}
    # "Mirtazapine 15mg for poor appetite and insomnia in an elderly patient; now has daytime sleepiness."
    row = rows["ae-0002"]
    assert row["tokens"][:7] == ["Mirtazapine", "15mg", "for", "poor", "appetite", "and", "insomnia"]
    assert [tags.int2str(tag) for tag in row["ner_tags"]] == [
        "B-DRUG", "B-DOSE", "O", "B-INDICATION", "I-INDICATION", "O", "B-INDICATION",
        "O", "O", "O", "O", "O", "O", "O", "B-ADVERSE_EVENT", "I-ADVERSE_EVENT", "O",
    ]
    assert (row["point_id"], row["source"], row["synthetic"]) == ("P1", "members", False)


def test_an_existing_path_is_refused_unless_overwrite(complaint_task, complaint_frame, tmp_path):
    dataset = to_chat_dataset(complaint_frame, complaint_task)
    path = save_dataset(dataset, tmp_path / "chat")
    with pytest.raises(FileExistsError, match=r"chat.*overwrite=True"):
        save_dataset(dataset, path)

    smaller = to_chat_dataset(complaint_frame[complaint_frame["split"] == "train"], complaint_task)
    save_dataset(smaller, path, overwrite=True)
    assert list(load_from_disk(str(path))) == ["train"]  # replaced whole: no stale test split
    assert [p.name for p in tmp_path.iterdir()] == ["chat"]  # no staging folder left behind


@pytest.mark.parametrize("name", ["complaint_triage", "app_review_topics"])
def test_token_classification_refuses_a_kind_without_spans(name):
    task = load_task(f"data/{name}/task.yaml")
    test = load_dataset(f"data/{name}/test.jsonl", task).head(3)
    frame = training_frame(task, test, test)
    with pytest.raises(ValueError, match=rf"{task.kind.name}.*to_chat_dataset"):
        to_token_classification(frame, task)
    assert to_chat_dataset(frame, task)["train"].num_rows == 3


def test_a_span_off_token_boundaries_names_its_row(ae_task):
    text = "Took Benylin for a cough."
    frame = pd.DataFrame([{
        "point_id": "P2", "split": "train", "source": "corrections", "example_id": "half", "text": text,
        "target": [{"start": 5, "end": 9, "label": "DRUG"}],  # "Beny|lin": cuts a token in half
        "answer": "", "messages": [], "synthetic": False, "signature": None,
    }])
    with pytest.raises(ValueError, match=r"'half' of point 'P2'.*token boundaries"):
        to_token_classification(frame, ae_task)


def test_a_frame_missing_columns_is_refused_with_what_it_has(complaint_task, complaint_frame):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['messages'\].*canonical training-data frame"):
        to_chat_dataset(complaint_frame.drop(columns=["messages"]), complaint_task)
    with pytest.raises(ValueError, match="no rows"):
        to_chat_dataset(complaint_frame.iloc[:0], complaint_task)
