"""Rows to train on are checked before any training: too few, a label the task lacks, an answer the
task's parser reads as something else, and (before any model call) texts whose training row would
be longer than the limit; each message names the example and the fix."""

import json

import pandas as pd
import pytest
from test_points import TASK

from workbench.core.task import task_from_dict
from workbench.finetune.checks import TrainingLengthError, check_training_length, check_training_rows
from workbench.finetune.tokens import TrainingRowError
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import parse_variant

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


class WordTokenizer:
    """A fake chat tokenizer at our seam: one token per whitespace-separated word, ChatML markers."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        assert not tokenize  # transformers returns a BatchEncoding then; the workbench tokenizes the text itself
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [len(word) for word in text.split()]}


MANY = task_from_dict({"name": "intents", "kind": "classification",
                       "labels": [{"name": f"intent_{i}"} for i in range(150)]})


def pool(long_text_id="p3"):
    texts = {f"p{i}": f"short message {i}" for i in range(5)}
    texts[long_text_id] = "word " * 300
    return pd.DataFrame({"example_id": list(texts), "text": list(texts.values()),
                         "label": [f"intent_{i}" for i in range(len(texts))]})


def test_a_row_over_the_limit_is_named_with_its_length_the_limit_and_the_flag():
    with pytest.raises(TrainingLengthError,
                       match=r"example p3, rendered with variant 'tuned' as a training row \(1 of 5 texts.*\): 3\d\d tokens, more than the 200 .*--max-length"):
        check_training_length(MANY, "tuned", pool(), WordTokenizer(), max_length=200)


def test_rows_within_the_limit_pass_and_the_longest_is_reported():
    check = check_training_length(MANY, "tuned", [pool(), None], WordTokenizer(), max_length=400)
    assert (check.rows, check.example_id, check.max_length) == (5, "p3", 400)
    chat = [*render_messages(MANY, parse_variant("tuned"), "word " * 300),
            {"role": "assistant", "content": json.dumps({"label": "intent_3"})}]
    assert check.longest == len(WordTokenizer().apply_chat_template(chat).split())


def test_the_label_list_of_zero_shot_is_what_makes_rows_too_long():
    short = pool().head(3)
    assert check_training_length(MANY, "tuned", short, WordTokenizer(), max_length=100).longest < 40
    with pytest.raises(TrainingLengthError, match=r"example p\d, rendered with variant 'zero_shot' .*\(3 of 3 texts"):
        check_training_length(MANY, "zero_shot", short, WordTokenizer(), max_length=100)


def test_texts_without_a_gold_are_counted_by_their_prompt_and_cot_rows_with_their_reasoning():
    unlabelled = pool().drop(columns=["label"])
    plain = check_training_length(MANY, "tuned", unlabelled, WordTokenizer(), max_length=400)
    labelled = check_training_length(MANY, "tuned", pool(), WordTokenizer(), max_length=400)
    reasoned = check_training_length(MANY, "tuned+cot", pool(), WordTokenizer(), max_length=400)
    assert plain.longest < labelled.longest < reasoned.longest


def test_texts_need_ids_and_text():
    with pytest.raises(ValueError, match="example_id"):
        check_training_length(MANY, "tuned", pd.DataFrame({"text": ["x"]}), WordTokenizer())
