"""Chat fine-tuning JSONL and the test-cases dataset, read back by their own readers."""

import json

import datasets
import pytest
from test_points import TASK
from test_training_data import built

from workbench.core.data import load_dataset
from workbench.trainingdata.openai_jsonl import (
    ChatFormatError,
    check_chat_example,
    estimate_tokens,
    read_chat_jsonl,
    write_chat_jsonl,
    write_test_cases,
)


def test_the_chat_file_is_written_checked_and_read_back(tmp_path):
    data, _, _ = built()
    train = data.examples[data.examples["split"] == "train"]
    export = write_chat_jsonl(data.examples, tmp_path / "train.jsonl", min_examples=3, price_per_million=3.0)
    assert export.examples == len(train) and export.tokens == sum(estimate_tokens(m) for m in train["messages"])
    assert export.estimated_cost == pytest.approx(export.tokens * 3 * 3.0 / 1e6) and "epochs" in export.summary()
    assert read_chat_jsonl(export.path) == [list(m) for m in train["messages"]]
    loaded = datasets.load_dataset("json", data_files=str(export.path), split="train")
    assert loaded.num_rows == len(train) and [m["role"] for m in loaded[0]["messages"]] == [
        "system", "user", "assistant"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_chat_jsonl(data.examples, export.path, min_examples=3)
    with pytest.raises(ChatFormatError, match="fewer than the 10"):
        write_chat_jsonl(data.examples, tmp_path / "few.jsonl")
    assert not (tmp_path / "few.jsonl").exists()


def test_format_rules_name_the_row():
    ok = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert check_chat_example(ok, "row 0") == estimate_tokens(ok)
    with pytest.raises(ChatFormatError, match="row 3: the last message is 'user'"):
        check_chat_example(ok[:2], "row 3")
    with pytest.raises(ChatFormatError, match="row 4: message 1 has role 'bot'"):
        check_chat_example([ok[0], {"role": "bot", "content": "x"}, ok[2]], "row 4")
    with pytest.raises(ChatFormatError, match="over the limit of 10"):
        check_chat_example(ok, "row 5", token_limit=10)
    with pytest.raises(ChatFormatError, match="weight must be 0 or 1"):
        check_chat_example([ok[0], ok[1], {**ok[2], "weight": 2}], "row 6")


def test_the_test_cases_are_a_dataset_the_workbench_loads(tmp_path):
    data, _, _ = built()
    path = write_test_cases(data.examples, tmp_path / "test_cases.jsonl", TASK)
    loaded = load_dataset(path, TASK)
    test = data.examples[data.examples["split"] == "test"]
    assert set(loaded["example_id"]) == set(test["example_id"]) and loaded["example_id"].is_unique
    first = json.loads(path.read_text().splitlines()[0])
    assert first["tags"] == [f"point:{p}" for p in first["points"]]
    assert "regression" in {p for points in loaded["points"] for p in points}


def test_an_example_several_points_share_is_written_once(tmp_path):
    import pandas as pd

    data, _, _ = built()
    train = data.examples[data.examples["split"] == "train"]
    shared = pd.concat([data.examples, train.head(2).assign(point_id="P9")], ignore_index=True)
    export = write_chat_jsonl(shared, tmp_path / "train.jsonl", min_examples=1)
    assert export.examples == train["example_id"].nunique() == len(read_chat_jsonl(export.path))
