"""The stub's Batch API (workbench.testing.openai_stub_batches), driven by the real ``openai`` SDK's
sync client over TCP: upload, create, poll, download, cancel, as the workbench's batch path does.
Every line is answered as the chat endpoint answers the same body; injected failures, expiry,
cancels and refused files behave as the module docstring says."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from workbench.testing.openai_stub import StubServer
from workbench.testing.openai_stub_batches import EXPIRED_MESSAGE, fails_by_rate

KEY = "sk-batch-PLANTED-7788"
MODEL = "gpt-4o-mini"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def client(stub: StubServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub.base_url, api_key=KEY, max_retries=0, timeout=5)


def _request(custom_id: str, text: str | None = None, **line: object) -> dict:
    text = text if text is not None else f"Message {custom_id} about a parcel.\nLabels: complaint, praise, question"
    body = {"model": MODEL, "messages": [{"role": "system", "content": "You label messages."},
                                         {"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **line}


def _requests(count: int) -> list[dict]:
    return [_request(f"row-{index}") for index in range(count)]


def _jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _upload(client: openai.OpenAI, tmp_path: Path, content: bytes, purpose: str = "batch") -> str:
    path = tmp_path / f"requests-{time.monotonic_ns()}.jsonl"
    path.write_bytes(content)
    with path.open("rb") as handle:
        return client.files.create(file=handle, purpose=purpose).id


def _create(client: openai.OpenAI, file_id: str, **kwargs: object):
    kwargs = {"endpoint": "/v1/chat/completions", "completion_window": "24h", **kwargs}
    return client.batches.create(input_file_id=file_id, **kwargs)


def _submit(client: openai.OpenAI, tmp_path: Path, lines: list[dict], **kwargs: object):
    return _create(client, _upload(client, tmp_path, _jsonl(lines)), **kwargs)


def _poll(client: openai.OpenAI, batch_id: str) -> list:
    """Every retrieval until the batch ends (at most 20)."""
    seen = []
    for _ in range(20):
        seen.append(client.batches.retrieve(batch_id))
        if seen[-1].status in TERMINAL:
            return seen
    raise AssertionError(f"batch {batch_id} still {seen[-1].status} after 20 retrievals")


def _download(client: openai.OpenAI, file_id: str | None, tmp_path: Path) -> list[dict]:
    if file_id is None:
        return []
    path = tmp_path / f"{file_id}.jsonl"
    client.files.content(file_id).write_to_file(path)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_id(completion: dict) -> dict:
    return {key: value for key, value in completion.items() if key not in ("id", "created")}


def test_a_batch_answers_every_request_out_of_order_as_the_chat_endpoint_does(stub, client, tmp_path) -> None:
    lines = _requests(20)
    lines[5]["body"]["messages"][1]["content"] = "No labels line in this one, many more words than the others."
    batch = _submit(client, tmp_path, lines, metadata={"run": "r1", "round": "0"})
    assert batch.id.startswith("batch_") and batch.object == "batch" and batch.status == "validating"
    assert batch.metadata == {"run": "r1", "round": "0"} and batch.request_counts.total == 0
    assert batch.expires_at == batch.created_at + 24 * 3600 and batch.output_file_id is None

    polls = _poll(client, batch.id)
    assert [poll.status for poll in polls] == ["in_progress", "in_progress", "finalizing", "completed"]
    done = [poll.request_counts.completed for poll in polls]
    assert done == [6, 13, 20, 20]  # grows while in progress, so a progress bar moves
    final = polls[-1]
    assert final.request_counts.model_dump() == {"total": 20, "completed": 20, "failed": 0}
    assert final.in_progress_at and final.finalizing_at and final.completed_at and final.error_file_id is None
    assert final.model == MODEL

    stored = client.files.retrieve(final.output_file_id)
    assert stored.purpose == "batch_output"
    output = _download(client, final.output_file_id, tmp_path)
    assert stored.bytes == (tmp_path / f"{final.output_file_id}.jsonl").stat().st_size
    assert sorted(row["custom_id"] for row in output) == sorted(line["custom_id"] for line in lines)
    assert [row["custom_id"] for row in output] != [line["custom_id"] for line in lines]
    by_id = {line["custom_id"]: line["body"] for line in lines}
    for row in output:
        assert row["id"].startswith("batch_req_") and row["error"] is None
        assert row["response"]["status_code"] == 200 and row["response"]["request_id"].startswith("req_")
        chat = client.chat.completions.with_raw_response.create(**by_id[row["custom_id"]]).http_response.json()
        assert _without_id(row["response"]["body"]) == _without_id(chat)
    prompt = sum(row["response"]["body"]["usage"]["prompt_tokens"] for row in output)
    assert final.usage.input_tokens == prompt and final.usage.total_tokens > prompt

    again = _submit(client, tmp_path, lines)
    _poll(client, again.id)
    repeat = _download(client, client.batches.retrieve(again.id).output_file_id, tmp_path)
    assert [row["custom_id"] for row in repeat] == [row["custom_id"] for row in output]  # a fixed order
    assert list(stub.batches.created) == [batch.id, again.id]
    assert set(stub.batches.submitted().values()) == {2}
    listed = client.batches.list(limit=1)
    assert [item.id for item in listed.data] == [again.id] and listed.has_more


def test_a_line_the_chat_endpoint_refuses_is_refused_in_the_error_file(client, tmp_path) -> None:
    loose = {"type": "json_schema", "json_schema": {"name": "label", "strict": True, "schema": {
        "type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}}}
    lines = _requests(3)
    lines[1]["body"]["response_format"] = loose
    final = _poll(client, _submit(client, tmp_path, lines).id)[-1]
    assert final.status == "completed" and final.request_counts.model_dump() == {"total": 3, "completed": 2,
                                                                                   "failed": 1}
    [error] = _download(client, final.error_file_id, tmp_path)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**lines[1]["body"])
    assert error["custom_id"] == "row-1" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"] == refused.value.body["message"]
    assert error["response"]["body"]["error"]["code"] == "additional_properties"


@pytest.mark.parametrize("status", [500, 429, None])
def test_failed_lines_are_in_the_error_file_and_succeed_when_sent_again(stub, client, tmp_path, status) -> None:
    stub.batches.fail_ids = {"row-3", "row-7"}
    stub.batches.fail_status = status
    lines = _requests(10)
    final = _poll(client, _submit(client, tmp_path, lines).id)[-1]
    assert final.status == "completed"
    assert final.request_counts.model_dump() == {"total": 10, "completed": 8, "failed": 2}
    errors = _download(client, final.error_file_id, tmp_path)
    assert sorted(row["custom_id"] for row in errors) == ["row-3", "row-7"]
    for row in errors:
        if status is None:
            assert row["response"] is None and row["error"]["code"] == "request_timeout"
        else:
            assert row["error"] is None and row["response"]["status_code"] == status
            assert row["response"]["body"]["error"]["message"]
    assert len(_download(client, final.output_file_id, tmp_path)) == 8

    retry = _poll(client, _submit(client, tmp_path, [lines[3], lines[7]]).id)[-1]
    assert retry.request_counts.model_dump() == {"total": 2, "completed": 2, "failed": 0}
    assert retry.error_file_id is None
    assert sorted(row["custom_id"] for row in _download(client, retry.output_file_id, tmp_path)) == ["row-3", "row-7"]
    submitted = stub.batches.submitted()
    assert submitted["row-3"] == submitted["row-7"] == 2 and submitted["row-0"] == 1


def test_a_fail_rate_picks_lines_by_their_custom_id_and_can_be_permanent(stub, client, tmp_path) -> None:
    stub.batches.fail_rate, stub.batches.fail_permanently = 0.3, True
    lines = _requests(20)
    expected = sorted(line["custom_id"] for line in lines if fails_by_rate(line["custom_id"], 0.3))
    assert 0 < len(expected) < 20
    for _ in range(2):  # permanent: a second try fails the same lines
        final = _poll(client, _submit(client, tmp_path, lines).id)[-1]
        assert sorted(row["custom_id"] for row in _download(client, final.error_file_id, tmp_path)) == expected


def test_a_cancel_keeps_the_lines_answered_before_it(stub, client, tmp_path) -> None:
    stub.batches.fail_ids = {"row-0"}
    batch = _submit(client, tmp_path, _requests(9))
    first = client.batches.retrieve(batch.id)
    assert first.status == "in_progress" and first.request_counts.completed + first.request_counts.failed == 3
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    final = _poll(client, batch.id)[-1]
    assert final.status == "cancelled" and final.cancelled_at and final.request_counts.total == 9
    output = _download(client, final.output_file_id, tmp_path)
    errors = _download(client, final.error_file_id, tmp_path)
    answered = {row["custom_id"] for row in output} | {row["custom_id"] for row in errors if row["response"]}
    assert len(answered) == 3 and len(output) + len(errors) == 9
    assert [row["error"]["code"] for row in errors if not row["response"]] == ["batch_cancelled"] * 6
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_a_batch_cancelled_while_validating_has_no_files(client, tmp_path) -> None:
    batch = _submit(client, tmp_path, _requests(4))
    assert client.batches.cancel(batch.id).status == "cancelling"
    final = _poll(client, batch.id)[-1]
    assert final.status == "cancelled" and final.output_file_id is None and final.error_file_id is None


def test_an_expired_batch_keeps_its_finished_lines_and_reports_the_rest(stub, client, tmp_path) -> None:
    stub.batches.expire_after = 4
    polls = _poll(client, _submit(client, tmp_path, _requests(10)).id)
    final = polls[-1]
    assert [poll.status for poll in polls][-1] == "expired" and "finalizing" not in [poll.status for poll in polls]
    assert final.expired_at and final.request_counts.model_dump() == {"total": 10, "completed": 4, "failed": 0}
    output = _download(client, final.output_file_id, tmp_path)
    errors = _download(client, final.error_file_id, tmp_path)
    assert len(output) == 4 and len(errors) == 6
    assert {row["custom_id"] for row in output + errors} == {f"row-{index}" for index in range(10)}
    assert all(row["response"] is None and row["error"] == {"code": "batch_expired", "message": EXPIRED_MESSAGE}
               for row in errors)


@pytest.mark.parametrize(("change", "param"), [
    ({"input_file_id": "file-nope"}, "input_file_id"),
    ({"endpoint": "/v1/embeddings"}, "endpoint"),
    ({"completion_window": "48h"}, "completion_window"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
])
def test_a_batch_with_wrong_parameters_is_refused(stub, client, tmp_path, change, param) -> None:
    file_id = _upload(client, tmp_path, _jsonl(_requests(2)))
    kwargs = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **change}
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(**kwargs)
    assert refused.value.body["param"] == param and refused.value.body["message"]
    assert stub.batches.created == {}


def test_an_input_file_needs_the_batch_purpose(stub, client, tmp_path) -> None:
    file_id = _upload(client, tmp_path, _jsonl(_requests(2)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        _create(client, file_id)


def _bad(lines: list[dict], index: int, **change: object) -> bytes:
    lines[index].update(change)
    return _jsonl(lines)


@pytest.mark.parametrize(("content", "code", "line"), [
    (_jsonl(_requests(2)) + b'{"custom_id": "row-9", "method": "POST",\n', "invalid_json_line", 3),
    (_bad(_requests(3), 2, custom_id="row-0"), "duplicate_custom_id", 3),
    (_bad(_requests(3), 1, url="/v1/embeddings"), "url_mismatch", 2),
    (_bad(_requests(3), 1, method="GET"), "invalid_request", 2),
    (_bad(_requests(2), 1, body="hello"), "invalid_request", 2),
    (_jsonl(_requests(1)) + b'{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"}\n',
     "missing_required_parameter", 2),
    (_bad(_requests(3), 2, body={"model": "gpt-4o", "messages": []}), "model_mismatch", 3),
    (b"\n\n", "empty_file", None),
    (_jsonl(_requests(4)), "too_many_tasks", None),
])
def test_a_file_that_is_not_batch_jsonl_fails_validation_naming_the_line(stub, client, tmp_path, content, code,
                                                                          line) -> None:
    stub.batches.max_lines = 3
    batch = _create(client, _upload(client, tmp_path, content))
    assert batch.status == "validating" and batch.errors is None
    final = _poll(client, batch.id)[-1]
    assert final.status == "failed" and final.failed_at and final.output_file_id is None
    assert final.errors.object == "list"
    problem = final.errors.data[0]
    assert (problem.code, problem.line) == (code, line)
    if line is not None:
        assert problem.message.startswith(f"Line {line}: ")
    assert stub.batches.custom_ids[batch.id] == []


def test_an_invalid_file_can_be_refused_at_once(stub, client, tmp_path) -> None:
    stub.batches.refuse_invalid_files = True
    with pytest.raises(openai.BadRequestError, match="Line 2: ") as refused:
        _create(client, _upload(client, tmp_path, _bad(_requests(2), 1, custom_id="row-0")))
    assert refused.value.body["code"] == "duplicate_custom_id" and stub.batches.created == {}


def test_fail_with_fails_every_new_batch_at_validation(stub, client, tmp_path) -> None:
    stub.batches.fail_with = "Your organization has too many tokens enqueued."
    final = _poll(client, _submit(client, tmp_path, _requests(2)).id)[-1]
    assert final.status == "failed" and final.errors.data[0].message == stub.batches.fail_with


def test_over_the_byte_limit_fails_validation(stub, client, tmp_path) -> None:
    stub.batches.max_bytes = 100
    final = _poll(client, _submit(client, tmp_path, _requests(2)).id)[-1]
    assert final.status == "failed" and final.errors.data[0].code == "file_too_large"


def test_steps_can_be_seconds_instead_of_retrievals(stub, client, tmp_path) -> None:
    stub.batches.step_seconds = 0.05
    batch = _submit(client, tmp_path, _requests(3))
    time.sleep(0.3)  # four steps of 0.05 s have passed, with no retrieval in between
    final = client.batches.retrieve(batch.id)
    assert final.status == "completed" and final.request_counts.completed == 3


def test_settings_are_checked_when_a_batch_is_created(stub, client, tmp_path) -> None:
    stub.batches.fail_rate = 2.0
    with pytest.raises(openai.InternalServerError, match="fail_rate must be within"):
        _submit(client, tmp_path, _requests(1))
    with pytest.raises(AttributeError):
        stub.batches.fail_ratio = 0.5  # a misspelt setting is an error, not silently ignored


def test_files_serve_their_content_and_can_be_deleted(client, tmp_path) -> None:
    content = _jsonl(_requests(2))
    file_id = _upload(client, tmp_path, content)
    assert client.files.content(file_id).content == content
    assert client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.content(file_id)


def test_the_key_reaches_the_stub_only_as_the_client_sent_it(stub, client, tmp_path) -> None:
    stub.batches.fail_ids = {"row-1"}
    final = _poll(client, _submit(client, tmp_path, _requests(3)).id)[-1]
    _download(client, final.output_file_id, tmp_path)
    _download(client, final.error_file_id, tmp_path)
    assert set(stub.authorizations) == {f"Bearer {KEY}"} and len(stub.authorizations) >= 8
    assert not any(KEY.encode() in content for content in stub.fine_tuning.contents.values())
    assert KEY not in json.dumps(stub.batches.created)
