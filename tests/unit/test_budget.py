"""Prompts that cannot fit in the model's context window stop the run before any model call."""

import json

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.prompting.budget import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_OVERHEAD_TOKENS,
    PromptTooLongError,
    check_context,
    check_model_context,
    context_limit,
    estimate_tokens,
    prompt_tokens,
)
from workbench.prompting.runner import run_variants
from workbench.testing.fake_model import FakeModel

NAMES = [f"intent_{index:03d}_{'x' * (index % 7)}" for index in range(150)]
TASK = task_from_dict({"name": "intents", "kind": "classification", "labels": [{"name": name} for name in NAMES]})
DATA = pd.DataFrame({"example_id": ["a", "b", "c"], "text": ["short", "a much longer text " * 20, "mid text"],
                     "label": NAMES[:3]})


def request(text: str, max_tokens: int = 100) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": text},), options=GenerationOptions(max_tokens=max_tokens))


def test_estimate_counts_letters_by_three_digits_and_marks_one_each_and_other_bytes_by_one_and_a_half():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdef") == 2
    assert estimate_tokens("123456") == 6
    assert estimate_tokens('"a?",') == 5  # 4 marks + a third of a letter, rounded up
    assert estimate_tokens("日本") == 4  # 6 UTF-8 bytes
    overhead = MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS
    assert prompt_tokens([{"role": "user", "content": "abcdef"}]) == 2 + overhead


def test_limit_comes_from_context_tokens_or_n_ctx_and_is_unknown_otherwise():
    model = FakeModel()
    assert context_limit(model) is None
    model.n_ctx = 4096
    assert context_limit(model) == 4096
    model.context_tokens = 8192
    assert context_limit(model) == 8192


def test_no_limit_checks_nothing():
    check = check_context([("v", "e", request("x" * 100_000))], None)
    assert check.limit is None and check.fits and "not checked" in check.describe()


def test_too_long_prompt_names_its_length_the_limit_and_where_it_is():
    requests = [("zero_shot", "a", request("x" * 300)), ("definitions", "b", request("x" * 3000))]
    with pytest.raises(PromptTooLongError) as raised:
        check_context(requests, 1000)
    message = str(raised.value)
    tokens = 1000 + MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS
    assert f"longest prompt is {tokens} tokens (estimated" in message
    assert "variant 'definitions' and example 'b'" in message
    assert f"max_tokens 100 for the answer it needs {tokens + 100} tokens" in message
    assert "context window is 1000" in message and "Nothing was sent" in message
    check = raised.value.check
    assert (check.prompt_tokens, check.limit, check.variant, check.example_id, check.too_long) == (
        tokens, 1000, "definitions", "b", 1)


def test_max_tokens_counts_against_the_window():
    fits = check_context([("v", "e", request("x" * 300, max_tokens=100))], 300)
    assert fits.fits and fits.prompt_tokens + fits.max_tokens <= 300
    with pytest.raises(PromptTooLongError, match="max_tokens 250"):
        check_context([("v", "e", request("x" * 300, max_tokens=250))], 300)


def test_the_tokenizer_decides_for_prompts_near_the_limit_and_is_loaded_only_then():
    loads = []

    def load_counter():
        loads.append(1)
        return lambda text: len(text.split())  # one token per word: far fewer than the estimate

    far = check_context([("v", "e", request("word " * 10))], 10_000, load_counter=load_counter)
    assert far.method == "estimate" and not loads
    near = check_context([("v", "e", request("word " * 600))], 1000, load_counter=load_counter)
    assert near.method == "tokenizer" and near.prompt_tokens == 600 + MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS
    assert loads == [1]
    with pytest.raises(PromptTooLongError, match=r"counted by the model's tokenizer"):
        check_context([("v", "e", request("word " * 2000))], 1000, count_tokens=lambda text: len(text.split()))


def test_model_count_tokens_is_used_when_it_has_one():
    model = FakeModel()
    model.n_ctx = 500
    model.count_tokens = lambda text: 1
    check = check_model_context(model, [("v", "e", request("x" * 3000))])
    assert check.method == "tokenizer" and check.prompt_tokens == 1 + MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS


def test_run_with_150_labels_stops_before_any_call_when_prompts_do_not_fit():
    model = FakeModel(json.dumps({"label": NAMES[0]}))
    model.n_ctx = 512
    with pytest.raises(PromptTooLongError, match=r"for variant 'zero_shot' and example 'b'.*context window is 512"):
        run_variants(TASK, DATA, ["zero_shot"], model, progress=False)
    assert model.calls == []


def test_run_with_150_labels_goes_ahead_when_prompts_fit():
    model = FakeModel(json.dumps({"label": NAMES[0]}))
    model.n_ctx = 4096
    predictions = run_variants(TASK, DATA, ["zero_shot"], model, progress=False)
    assert len(model.calls) == 3 and list(predictions["prediction"]) == [NAMES[0]] * 3
