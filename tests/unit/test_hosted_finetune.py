"""Hosted fine-tuning through the openai SDK against the stub's files and fine-tuning jobs endpoints
(a real HTTP server on localhost): the exported JSONL is uploaded, a job created and polled to its
end, and the fine-tuned model's name answers through the same endpoint; a file that breaks the
format makes the job fail with the provider's message. The key reaches that endpoint only."""

import asyncio
import json

import openai
import pytest
from test_training_data import built

from workbench.models.base import ChatRequest
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.models.openai_finetuning import HostedFineTuneError, start_fine_tune, wait_for_fine_tune
from workbench.testing.openai_stub import StubServer
from workbench.trainingdata.openai_jsonl import write_chat_jsonl


@pytest.fixture()
def stub():
    seen = []

    def answer(body):
        seen.append(body["model"])
        return '{"label": "complaint"}'

    server = StubServer(answer=answer)
    server.start_in_thread()
    server.seen_models = seen
    yield server
    server.stop_thread()


def test_a_hosted_job_runs_from_upload_to_a_model_that_answers(stub, tmp_path):
    data, _, _ = built()
    train = write_chat_jsonl(data.examples, tmp_path / "train.jsonl", min_examples=1)
    lines = train.path.read_text().splitlines()
    train.path.write_text("\n".join(lines * 3) + "\n")  # at least 10 examples, as OpenAI requires
    statuses = []
    job = start_fine_tune(train.path, model="gpt-4o-mini", base_url=stub.base_url, api_key="sk-test-1",
                          suffix="triage", epochs=2, seed=1)
    assert job.status == "validating_files" and job.fine_tuned_model is None
    done = wait_for_fine_tune(job.job_id, base_url=stub.base_url, api_key="sk-test-1", poll_s=0.01,
                              on_status=lambda j: statuses.append(j.status))
    assert statuses == ["running", "succeeded"] and done.fine_tuned_model.startswith("ft:gpt-4o-mini:workbench:triage:")
    assert done.trained_tokens > 0
    tuned = OpenAICompatibleModel(done.fine_tuned_model, base_url=stub.base_url, api_key="sk-test-1",
                                  structured_output="none")
    answer = asyncio.run(tuned.complete(ChatRequest(tuple(data.examples["messages"].iloc[0][:-1]))))
    assert json.loads(answer.text) == {"label": "complaint"} and stub.seen_models == [done.fine_tuned_model]
    assert set(stub.authorizations) == {"Bearer sk-test-1"}


def test_a_file_that_breaks_the_format_fails_the_job_with_the_reason(stub, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n" for _ in range(12)))
    job = start_fine_tune(bad, model="gpt-4o-mini", base_url=stub.base_url, api_key=None)
    with pytest.raises(HostedFineTuneError, match=rf"{job.job_id} failed: .*the last message is 'user'"):
        wait_for_fine_tune(job.job_id, base_url=stub.base_url, api_key=None, poll_s=0.01)
    assert set(stub.authorizations) == {None}  # no key: no Authorization header at all


def test_a_fine_tuned_models_schema_leaves_out_what_strict_mode_refuses_for_fine_tuned_models():
    from workbench.testing.openai_stub import STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS, StubConfig

    server = StubServer(StubConfig(strict_unsupported_keywords=STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS))
    server.start_in_thread()
    schema = {"type": "object", "additionalProperties": False, "required": ["labels"], "properties": {
        "labels": {"type": "array", "items": {"type": "string", "enum": ["billing", "bugs"]}, "maxItems": 2}}}
    request = ChatRequest(({"role": "user", "content": "Labels: billing, bugs\nText: charged twice"},), schema=schema)
    try:
        tuned = OpenAICompatibleModel("ft:gpt-4o-mini:workbench:triage:abc123", base_url=server.base_url)
        assert json.loads(asyncio.run(tuned.complete(request)).text) == {"labels": []}
        base = OpenAICompatibleModel("gpt-4o-mini", base_url=server.base_url)  # its schema keeps maxItems
        # A schema the endpoint refuses is its 400, as every strict-rule refusal is
        # (tests/integration/test_openai_compatible.py), not a hint about the answer format.
        with pytest.raises(openai.BadRequestError, match="'maxItems' is not permitted"):
            asyncio.run(base.complete(request))
    finally:
        server.stop_thread()
