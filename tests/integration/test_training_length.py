"""The training-length check with SmolLM2's own tokenizer, read from the embedded GGUF without its
weights: on 150 labels, zero-shot rows (the label list twice) are refused naming the row, its length
and --max-length; the compact tuned rows fit, and are counted as training counts them."""

import json

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.finetune.checks import TrainingLengthError, check_training_length
from workbench.finetune.tokens import load_tokenizer, tokenize_chat
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import parse_variant

pytestmark = pytest.mark.integration

INTENTS = task_from_dict({"name": "intents", "kind": "classification",
                          "labels": [{"name": f"intent_number_{index}"} for index in range(150)]})
TEXTS = pd.DataFrame({"example_id": ["a", "b"], "text": ["how do i reset my pin", "book a table for two"],
                      "label": ["intent_number_3", "intent_number_149"]})


def test_zero_shot_rows_on_150_labels_are_refused_and_tuned_rows_fit():
    tokenizer = load_tokenizer()
    with pytest.raises(TrainingLengthError, match=r"example [ab], rendered with variant 'zero_shot'.*\(2 of 2 texts"
                                                  r".*: \d{4} tokens, more than the 1024 .*--max-length 1024"):
        check_training_length(INTENTS, "zero_shot", TEXTS, tokenizer, max_length=1024)
    check = check_training_length(INTENTS, "tuned", TEXTS, tokenizer, max_length=1024)
    assert check.longest < 100
    row = TEXTS.set_index("example_id").loc[check.example_id]
    chat = [*render_messages(INTENTS, parse_variant("tuned"), row["text"]),
            {"role": "assistant", "content": json.dumps({"label": row["label"]})}]
    assert check.longest == len(tokenize_chat(tokenizer, chat, "row", max_length=1024).input_ids)
