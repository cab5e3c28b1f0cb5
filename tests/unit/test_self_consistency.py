"""Self-consistency: n sampled answers per example, the kind's majority vote, its share as confidence;
every sample cached on its own; confidence in the report and as an annotation priority."""

import math

import pandas as pd
import pytest

from workbench.annotation.records import summarise_examples
from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.consistency import reliability_table
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import run_variants
from workbench.prompting.variants import parse_variant
from workbench.reporting.sections import report_sections
from workbench.testing.fake_model import FakeModel

LABELS = [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]
TASK = task_from_dict({"name": "t", "kind": "classification", "labels": LABELS})
NER = task_from_dict({"name": "n", "kind": "ner", "labels": [{"name": "DRUG", "definition": "d"},
                                                              {"name": "DOSE", "definition": "e"}]})
GOLD = validate_dataset(pd.DataFrame({"example_id": ["e1", "e2"], "text": ["hi", "yo"],
                                      "label": ["complaint", "request"]}), TASK)


def by_seed(answers):
    """A fake model whose answer depends on the sample's seed, as a sampled model's does."""
    return FakeModel(lambda request: answers[(request.options.seed or 0) % len(answers)])


def test_sc_names_parse_and_bad_ones_say_what_is_allowed():
    assert parse_variant("cot+sc5").samples == 5 and parse_variant("cot+sc5").cot
    assert parse_variant({"cot": True, "samples": 3}).name == "cot+sc3"
    with pytest.raises(ValueError, match=r"sc<n> \(n >= 2"):
        parse_variant("sc1")
    with pytest.raises(ValueError, match="zero_shot cannot be combined"):
        parse_variant("zero_shot+sc3")
    with pytest.raises(ValueError, match="temperature"):
        parse_variant({"samples": 3, "sample_temperature": 0})


def test_the_majority_of_samples_wins_with_its_share_as_confidence(tmp_path):
    answers = ['{"label": "complaint"}', '{"label": "complaint"}', '{"label": "request"}',
               '{"label": "complaint"}', "no idea"]
    model = by_seed(answers)
    predictions = run_variants(TASK, GOLD, ["sc5", "zero_shot"], model, cache=tmp_path / "c.sqlite", progress=False)
    voted = predictions[predictions["variant"] == "sc5"].set_index("example_id")
    assert voted["prediction"].tolist() == ["complaint", "complaint"]
    assert voted["confidence"].tolist() == [pytest.approx(3 / 5)] * 2 and (voted["samples"] == 5).all()
    assert voted.at["e1", "raw_response"] == '{"label": "complaint"}' and voted["parse_error"].isna().all()
    plain = predictions[predictions["variant"] == "zero_shot"]
    assert plain["samples"].tolist() == [1, 1] and plain["confidence"].isna().all()
    # Five sampled calls per example (at the sampling temperature, each its own seed), one greedy call.
    sampled = [call for call in model.calls if call.options.temperature == pytest.approx(0.7)]
    assert len(sampled) == 10 and len({(call.messages[1]["content"], call.options.seed) for call in sampled}) == 10
    assert len(model.calls) == 12
    # Every sample is cached on its own: a re-run sends nothing.
    again = by_seed(answers)
    rerun = run_variants(TASK, GOLD, ["sc5", "zero_shot"], again, cache=tmp_path / "c.sqlite", progress=False)
    assert again.calls == [] and rerun["cached"].all()
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 12  # 5 samples x 2 examples, and the greedy answer to each example
    pd.testing.assert_series_equal(rerun["prediction"], predictions["prediction"])


def test_no_usable_sample_is_a_parse_failure_that_says_so():
    predictions = run_variants(TASK, GOLD.head(1), ["sc3"], FakeModel("what?"), progress=False)
    row = predictions.iloc[0]
    assert row["prediction"] is None and row["confidence"] == 0.0
    assert row["parse_error"].startswith("no usable answer in 3 samples:")


def test_ner_keeps_the_entities_most_samples_found():
    text = "aspirin 500mg daily"
    gold = validate_dataset(pd.DataFrame({"example_id": ["d"], "text": [text], "spans": [[]]}), NER)
    answers = ['{"entities": [{"text": "aspirin", "label": "DRUG"}, {"text": "500mg", "label": "DOSE"}]}',
               '{"entities": [{"text": "aspirin", "label": "DRUG"}]}',
               '{"entities": [{"text": "aspirin", "label": "DRUG"}, {"text": "daily", "label": "DOSE"}]}']
    predictions = run_variants(NER, gold, ["sc3"], by_seed(answers), progress=False)
    row = predictions.iloc[0]
    assert [(s["start"], s["end"], s["label"]) for s in row["prediction"]] == [(0, 7, "DRUG")]
    assert row["confidence"] == pytest.approx(1 / 3)  # only the second sample said exactly that


def test_confidence_drives_the_reliability_chart_and_the_annotation_order():
    predictions = pd.DataFrame({
        "variant": ["sc3"] * 4, "example_id": ["a", "b", "c", "d"], "repeat": 0,
        "prediction": ["complaint", "request", "complaint", "complaint"],
        "confidence": [1.0, 1 / 3, 2 / 3, 1.0], "samples": 3,
    })
    gold = validate_dataset(pd.DataFrame({"example_id": list("abcd"), "text": ["t1", "t2", "t3", "t4"],
                                          "label": ["complaint", "complaint", "complaint", "request"]}), TASK)
    table = reliability_table(predictions, gold, TASK, bins=3)
    assert table[["rows", "accuracy"]].values.tolist() == [[1, 0.0], [1, 1.0], [2, 0.5]]
    assert table["mean_confidence"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    summaries = summarise_examples(TASK, predictions, gold, variant="sc3", order="confidence")
    assert summaries["example_id"].tolist()[:2] == ["b", "c"] and summaries["priority"].tolist() == [1, 2, 3, 4]
    plain = summarise_examples(TASK, predictions.drop(columns="confidence"), gold, variant="sc3")
    assert plain["confidence"].map(math.isnan).all()


def test_the_report_shows_reliability_only_when_a_variant_votes():
    answers = ['{"label": "complaint"}', '{"label": "request"}', '{"label": "complaint"}']
    predictions = run_variants(TASK, GOLD, ["sc3", "zero_shot"], by_seed(answers), progress=False)
    assert "reliability" in report_sections(TASK, GOLD, predictions).figures
    plain = predictions[predictions["variant"] == "zero_shot"]
    assert "reliability" not in report_sections(TASK, GOLD, plain).figures
