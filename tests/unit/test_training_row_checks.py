"""Rows to train on are checked before any training: too few, a label the task lacks, an answer the
task's parser reads as something else; each message names the example and the fix."""

import json

import pandas as pd
import pytest
from test_points import TASK

from workbench.finetune.checks import check_training_rows
from workbench.finetune.tokens import TrainingRowError

SYSTEM = {"role": "system", "content": "Label the message."}


def rows(labels, answers=None):
    answers = answers or [json.dumps({"label": label}) for label in labels]
    return pd.DataFrame({
        "example_id": [f"e{i}" for i in range(len(labels))], "text": [f"text {i}" for i in range(len(labels))],
        "target": labels,
        "messages": [[SYSTEM, {"role": "user", "content": f"text {i}"}, {"role": "assistant", "content": answer}]
                     for i, answer in enumerate(answers)]})


def test_good_rows_pass():
    labels = [label.name for label in TASK.labels]
    check_training_rows(rows((labels * 4)[:4]), TASK)


def test_too_few_rows_are_refused_with_what_to_do():
    with pytest.raises(TrainingRowError, match="2 training row.*at least 4.*prompt variant"):
        check_training_rows(rows([TASK.labels[0].name] * 2), TASK)


def test_a_label_the_task_lacks_is_named_with_its_example():
    labels = [TASK.labels[0].name] * 3 + ["refund"]
    with pytest.raises(TrainingRowError, match="example e3.*refund"):
        check_training_rows(rows(labels), TASK)


def test_an_answer_that_reads_back_as_another_label_is_refused():
    first, second = TASK.labels[0].name, TASK.labels[1].name
    answers = [json.dumps({"label": first})] * 3 + [json.dumps({"label": second})]
    with pytest.raises(TrainingRowError, match="example e3.*does not read back"):
        check_training_rows(rows([first] * 4, answers), TASK)
    with pytest.raises(TrainingRowError, match="example e0.*does not read back"):
        check_training_rows(rows([first] * 4, ["not json"] * 4), TASK)
