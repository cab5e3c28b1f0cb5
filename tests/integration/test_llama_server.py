"""The `openai` SDK against llama.cpp's real OpenAI-compatible server on the same GGUF."""

import pytest

from workbench.evaluation.efficiency import summarize_run
from workbench.models.base import GenerationOptions
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.prompting.runner import run_variants

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("structured_output", ["json_object_schema", "grammar"])
def test_constrained_classification_scored_end_to_end(
    llama_server, structured_output, complaint_task, complaint_test, complaint_train, tmp_path
):
    model = OpenAICompatibleModel(
        "smollm2", base_url=llama_server, api_key="unused", structured_output=structured_output, max_concurrency=2
    )
    dataset = complaint_test.head(4)  # every assertion is per answer or per variant: 8 answers show them
    predictions = run_variants(
        complaint_task, dataset, ["zero_shot", "definitions+few_shot2+cot"], model, examples=complaint_train,
        options=GenerationOptions(max_tokens=200), cache=tmp_path / "cache.sqlite", progress=False,
    )
    assert len(predictions) == 8
    assert predictions["request_error"].isna().all(), predictions["request_error"].dropna().tolist()
    assert predictions["parse_error"].isna().all(), predictions["raw_response"].tolist()
    assert set(predictions["prediction"]) <= set(complaint_task.label_names)
    assert (predictions["tokens_in"] > 0).all()
    summary = summarize_run(predictions, dataset, complaint_task)
    assert list(summary["variant"]) == ["zero_shot", "definitions+few_shot2+cot"]
    assert summary["parse_failure_rate"].eq(0).all()
    gold = dataset.set_index("example_id")["label"]
    expected = (predictions["prediction"] == predictions["example_id"].map(gold)).groupby(predictions["variant"]).mean()
    assert summary.set_index("variant")["accuracy"].to_dict() == pytest.approx(expected.to_dict())


def test_constrained_ner_over_http(llama_server, ae_task, ae_test, tmp_path):
    model = OpenAICompatibleModel("smollm2", base_url=llama_server, structured_output="json_object_schema")
    dataset = ae_test.head(4)
    predictions = run_variants(
        ae_task, dataset, ["definitions"], model,
        options=GenerationOptions(max_tokens=256), cache=tmp_path / "cache.sqlite", progress=False,
    )
    assert predictions["request_error"].isna().all()
    ok = predictions[predictions["parse_error"].isna()]
    assert len(ok) >= 3, predictions[["raw_response", "parse_error"]].to_string()
    texts = dataset.set_index("example_id")["text"]
    for row in ok.itertuples():
        assert all(texts[row.example_id][s["start"]:s["end"]] == s["text"] for s in row.prediction)


def test_unconstrained_answers_may_fail_to_parse_but_are_recorded(llama_server, complaint_task, complaint_test, tmp_path):
    model = OpenAICompatibleModel("smollm2", base_url=llama_server, structured_output="none")
    predictions = run_variants(
        complaint_task, complaint_test.head(4), ["cot"], model,
        options=GenerationOptions(max_tokens=60), cache=tmp_path / "cache.sqlite", progress=False,
    )
    assert len(predictions) == 4
    assert predictions["raw_response"].notna().all()
    # Each row is either a valid label or a recorded parse error: nothing is lost or raised.
    for row in predictions.itertuples():
        assert (row.prediction in complaint_task.label_names) != isinstance(row.parse_error, str)


def test_an_answer_format_the_server_does_not_take_stops_the_run_saying_what_to_set(llama_server, complaint_task,
                                                                                     complaint_test):
    """llama.cpp's server takes response_format json_object (with a schema), not OpenAI's json_schema:
    every request would fail alike, so the run stops at once and names the setting to change."""
    from workbench.models.base import FatalModelError

    model = OpenAICompatibleModel("smollm2", base_url=llama_server, api_key="unused", structured_output="json_schema")
    with pytest.raises(FatalModelError, match="set structured_output in the model config to json_object_schema"):
        run_variants(complaint_task, complaint_test.head(2), ["zero_shot"], model, progress=False)
