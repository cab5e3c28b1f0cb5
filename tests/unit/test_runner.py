"""The runner with a fake model: caching, resuming, repeats, retries and recorded failures."""

import asyncio
import math

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.models.base import FatalModelError, GenerationOptions, RetryableModelError
from workbench.models.pricing import load_prices
from workbench.prompting.runner import PREDICTION_COLUMNS, RetryPolicy, build_requests, run_variants
from workbench.testing.fake_model import FakeModel

TASK = task_from_dict({
    "name": "triage", "kind": "classification",
    "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}],
})
DATA = pd.DataFrame({
    "example_id": ["a", "b", "c"],
    "text": ["The app is slow.", "New card please.", "Fees are too high."],
    "label": ["complaint", "request", "complaint"],
})
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01)


def label_by_text(request):
    return '{"label": "complaint"}' if "slow" in request.messages[-1]["content"] else '{"label": "request"}'


def test_predictions_have_the_documented_columns_and_one_row_per_call():
    model = FakeModel(label_by_text)
    predictions = run_variants(TASK, DATA, ["zero_shot", "definitions"], model, repeats=2, progress=False)
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert len(predictions) == 12
    # Temperature 0: repeats share one answer, so only one call per (variant, example).
    assert len(model.calls) == 6
    assert predictions.loc[predictions["example_id"] == "a", "prediction"].eq("complaint").all()


def test_repeats_at_temperature_are_separate_samples_with_their_own_seeds():
    model = FakeModel(label_by_text)
    run_variants(TASK, DATA.head(1), ["zero_shot"], model, repeats=3,
                 options=GenerationOptions(temperature=0.8, seed=10), progress=False)
    assert sorted(call.options.seed for call in model.calls) == [10, 11, 12]


def test_second_run_is_served_from_the_cache(tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = FakeModel(label_by_text)
    run_variants(TASK, DATA, ["zero_shot"], first, cache=cache, progress=False)
    second = FakeModel(label_by_text)
    again = run_variants(TASK, DATA, ["zero_shot"], second, cache=cache, progress=False)
    assert len(second.calls) == 0
    assert again["cached"].all()
    assert again.attrs["run_stats"]["cache_hits"] == 3


def test_failed_calls_are_recorded_then_resumed_without_resending_successes(tmp_path):
    cache = tmp_path / "cache.sqlite"

    def fail_on_fees(request):
        if "Fees" in request.messages[-1]["content"]:
            return RuntimeError("400 bad request")
        return label_by_text(request)

    first = FakeModel(fail_on_fees)
    predictions = run_variants(TASK, DATA, ["zero_shot"], first, cache=cache, retry=FAST_RETRY, progress=False)
    failed = predictions[predictions["example_id"] == "c"].iloc[0]
    assert pd.isna(failed["prediction"]) and "400 bad request" in failed["request_error"]
    assert predictions["request_error"].notna().sum() == 1

    second = FakeModel(label_by_text)
    resumed = run_variants(TASK, DATA, ["zero_shot"], second, cache=cache, progress=False)
    assert len(second.calls) == 1 and "Fees" in second.calls[0].messages[-1]["content"]
    assert resumed["request_error"].isna().all()


def test_retryable_errors_are_retried_until_they_succeed():
    answers = [RetryableModelError("429", retry_after_s=0.01), RetryableModelError("500"), '{"label": "request"}']
    model = FakeModel(answers, max_concurrency=1)
    predictions = run_variants(TASK, DATA.head(1), ["zero_shot"], model, retry=FAST_RETRY, progress=False)
    assert predictions.loc[0, "prediction"] == "request"
    assert predictions.attrs["run_stats"] == {"calls_sent": 3, "retries": 2, "failed": 0, "cache_hits": 0, "rows": 1}


def test_retries_give_up_and_record_the_last_error():
    model = FakeModel(lambda request: RetryableModelError("server error (500)"))
    predictions = run_variants(TASK, DATA.head(2), ["zero_shot"], model, retry=FAST_RETRY, progress=False)
    assert predictions["request_error"].str.contains("gave up after 3 attempts: server error").all()
    assert len(model.calls) == 6


def test_fatal_errors_stop_the_run_but_keep_what_succeeded(tmp_path):
    cache = tmp_path / "cache.sqlite"
    answers = ['{"label": "request"}', FatalModelError("401 bad key")]
    model = FakeModel(answers, max_concurrency=1)
    with pytest.raises(FatalModelError, match="bad key"):
        run_variants(TASK, DATA.head(2), ["zero_shot"], model, cache=cache, progress=False)
    resumed_model = FakeModel(label_by_text)
    run_variants(TASK, DATA.head(2), ["zero_shot"], resumed_model, cache=cache, progress=False)
    assert len(resumed_model.calls) == 1


def test_unparseable_answers_are_rows_not_exceptions():
    model = FakeModel("I think it is a tricky one")
    predictions = run_variants(TASK, DATA, ["zero_shot"], model, progress=False)
    assert predictions["prediction"].isna().all()
    assert predictions["parse_error"].str.contains("no JSON object and no label").all()
    assert predictions["raw_response"].eq("I think it is a tricky one").all()


def test_concurrency_is_bounded():
    running = 0
    peak = 0

    class Tracking(FakeModel):
        async def complete(self, request):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return await super().complete(request)

    many = pd.DataFrame({"example_id": [str(i) for i in range(20)], "text": [f"t{i}" for i in range(20)],
                         "label": ["request"] * 20})
    run_variants(TASK, many, ["zero_shot"], Tracking(label_by_text, max_concurrency=8), concurrency=3, progress=False)
    assert peak == 3


def test_runs_inside_an_already_running_event_loop_as_in_jupyter():
    async def inside_loop():
        return run_variants(TASK, DATA, ["zero_shot"], FakeModel(label_by_text), progress=False)

    predictions = asyncio.run(inside_loop())
    assert len(predictions) == 3


def test_cost_comes_from_the_price_table_and_is_nan_when_unknown():
    prices = load_prices({"models": {"fake": {"input_per_million": 1000, "output_per_million": 2000}}})
    predictions = run_variants(TASK, DATA.head(1), ["zero_shot"], FakeModel('{"label": "request"}'),
                               prices=prices, progress=False)
    row = predictions.iloc[0]
    assert row["cost"] == pytest.approx((row["tokens_in"] * 1000 + row["tokens_out"] * 2000) / 1e6)
    unpriced = run_variants(TASK, DATA.head(1), ["zero_shot"], FakeModel('{"label": "request"}'), progress=False)
    assert math.isnan(unpriced.loc[0, "cost"])


def test_few_shot_without_examples_explains_what_to_pass():
    with pytest.raises(ValueError, match="pass examples="):
        run_variants(TASK, DATA, ["few_shot"], FakeModel(), progress=False)


def test_bad_dataset_fails_before_any_call():
    model = FakeModel()
    bad = DATA.assign(label=["complaint", "praise", "request"])
    with pytest.raises(ValueError, match="'praise'"):
        run_variants(TASK, bad, ["zero_shot"], model, progress=False)
    assert model.calls == []


def test_build_requests_previews_without_calling_a_model():
    requests = build_requests(TASK, DATA, ["zero_shot", "few_shot1"], examples=DATA)
    assert len(requests) == 6
    few_shot_user = requests.iloc[3]["messages"][1]["content"]
    assert "Labelled examples:" in few_shot_user and few_shot_user.endswith("Text: The app is slow.")


def test_pending_requests_are_what_a_run_would_send_and_unsent_ones_are_recorded_not_sent(tmp_path):
    """A batch engine answers `pending_requests` under their keys; the run then sends nothing for
    them, and a request named in `unsent` is not sent: its row records the reason instead."""
    from workbench.prompting.cache import ResponseCache
    from workbench.prompting.runner import pending_requests

    cache = tmp_path / "cache.sqlite"
    variants = ["zero_shot", "sc3"]  # self-consistency: three samples per example, each its own request
    pending = pending_requests(TASK, DATA, variants, FakeModel(label_by_text), cache=cache)
    assert len(pending) == 3 + 9 and len(set(pending)) == len(pending)
    answerer = FakeModel(label_by_text)
    with ResponseCache(cache) as store:
        first, *rest = list(pending.items())
        completion = asyncio.run(answerer.complete(first[1]))
        store.put(first[0], answerer.identity, first[1], completion)
    left = pending_requests(TASK, DATA, variants, FakeModel(label_by_text), cache=cache)
    assert list(left) == [key for key, _ in rest]

    model = FakeModel(label_by_text)
    unsent = {key: "batch line failed: HTTP 500: boom" for key, _ in rest[:1]}
    predictions = run_variants(TASK, DATA, variants, model, cache=cache, unsent=unsent, progress=False)
    assert len(model.calls) == len(rest) - 1  # neither the cached one nor the unsent one was sent
    failed = predictions[predictions["request_error"].notna()]
    assert list(failed["request_error"]) == ["batch line failed: HTTP 500: boom"]
