"""The embedded SmolLM2 (llama.cpp in-process) end to end on a slice of the demo data."""

import pytest

from workbench.evaluation.efficiency import summarize_run
from workbench.models.base import GenerationOptions
from workbench.prompting.runner import run_variants

pytestmark = pytest.mark.integration


def test_classification_variants_end_to_end(embedded_model, complaint_task, complaint_test, complaint_train, tmp_path):
    dataset = complaint_test.head(6)
    variants = ["zero_shot", "definitions+few_shot2", "cot"]
    cache = tmp_path / "cache.sqlite"
    predictions = run_variants(
        complaint_task, dataset, variants, embedded_model, examples=complaint_train,
        options=GenerationOptions(max_tokens=200), cache=cache, progress=False,
    )
    assert len(predictions) == 18
    assert predictions["request_error"].isna().all()
    # Constrained decoding: every answer is JSON with a label from the task, even from a 135M model.
    assert predictions["parse_error"].isna().all(), predictions["parse_error"].dropna().tolist()
    assert set(predictions["prediction"]) <= set(complaint_task.label_names)
    cot = predictions[predictions["variant"] == "cot"]
    assert cot["reasoning"].map(lambda text: isinstance(text, str) and len(text) > 0).all()
    assert (predictions["tokens_in"] > 0).all() and (predictions["tokens_out"] > 0).all()
    assert (predictions["latency_s"] > 0).all() and (predictions["cost"] == 0).all()
    stats = predictions.attrs["run_stats"]
    assert stats["calls_sent"] == 18 and stats["cache_hits"] == 0

    summary = summarize_run(predictions, dataset, complaint_task)
    gold = dataset.set_index("example_id")["label"]
    for row in summary.itertuples():
        group = predictions[predictions["variant"] == row.variant]
        assert row.accuracy == pytest.approx((group["prediction"] == group["example_id"].map(gold)).mean())

    again = run_variants(
        complaint_task, dataset, variants, embedded_model, examples=complaint_train,
        options=GenerationOptions(max_tokens=200), cache=cache, progress=False,
    )
    assert again.attrs["run_stats"]["calls_sent"] == 0
    assert again["cached"].all()
    assert again["prediction"].tolist() == predictions["prediction"].tolist()


def test_ner_answers_are_aligned_to_the_text(embedded_model, ae_task, ae_test, tmp_path):
    dataset = ae_test.head(5)
    predictions = run_variants(
        ae_task, dataset, ["zero_shot", "definitions"], embedded_model,
        options=GenerationOptions(max_tokens=256), cache=tmp_path / "cache.sqlite", progress=False,
    )
    texts = dataset.set_index("example_id")["text"]
    assert predictions["request_error"].isna().all()
    parsed = predictions[predictions["parse_error"].isna()]
    assert len(parsed) >= 8, predictions[["raw_response", "parse_error"]].to_string()
    for row in parsed.itertuples():
        text = texts[row.example_id]
        for span in row.prediction:
            assert text[span["start"]:span["end"]] == span["text"]
            assert span["label"] in ae_task.label_names
        for entity in row.hallucinations:
            assert entity["text"].casefold() not in text.casefold()


def test_repeats_at_temperature_are_distinct_samples(embedded_model, complaint_task, complaint_test, tmp_path):
    """Repeats at temperature 1 are samples with seeds of their own. (48 tokens of reasoning are
    enough to tell samples apart; at 120 the test took twice as long for the same assertion.)"""
    dataset = complaint_test.head(3)
    predictions = run_variants(
        complaint_task, dataset, ["cot"], embedded_model, repeats=3,
        options=GenerationOptions(temperature=1.0, max_tokens=48), cache=tmp_path / "c.sqlite", progress=False,
    )
    assert predictions.attrs["run_stats"]["calls_sent"] == 9
    per_example = predictions.groupby("example_id")["raw_response"].nunique()
    # Three samples at temperature 1 with different seeds: reasoning text differs somewhere.
    assert (per_example > 1).any()
