"""Batch request and result files: split at the limits, streamed, and a result file read line by
line, refusing what it cannot use by line number and keeping every usable line."""

import json

import pytest

from workbench.scale.batch_lines import (
    CHAT_URL,
    BatchResultError,
    ResultFile,
    completion_from_body,
    write_request_files,
)


def body(n):
    return {"model": "m", "messages": [{"role": "user", "content": f"text {n}"}], "temperature": 0.0}


def answer(custom_id, text='{"label": "a"}', status=200):
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": {
        "status_code": status, "request_id": "r", "body": {"choices": [{"message": {"content": text},
                                                                     "finish_reason": "stop"}],
                                                          "usage": {"prompt_tokens": 7, "completion_tokens": 3}}},
        "error": None}


def test_request_lines_are_batch_api_lines_split_at_the_line_and_byte_limits(tmp_path):
    one = write_request_files(((f"k{n}", body(n)) for n in range(5)), tmp_path / "one.jsonl")
    assert one == [tmp_path / "one.jsonl"]
    lines = [json.loads(line) for line in one[0].read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == [f"k{n}" for n in range(5)]
    assert all(line["method"] == "POST" and line["url"] == CHAT_URL for line in lines)
    assert lines[2]["body"] == body(2)

    parts = write_request_files(((f"k{n}", body(n)) for n in range(7)), tmp_path / "lines.jsonl", max_lines=3)
    assert [p.name for p in parts] == ["lines-1.jsonl", "lines-2.jsonl", "lines-3.jsonl"]
    assert [len(p.read_text().splitlines()) for p in parts] == [3, 3, 1]
    size = len(one[0].read_bytes().splitlines(keepends=True)[0])
    by_bytes = write_request_files(((f"k{n}", body(n)) for n in range(5)), tmp_path / "bytes.jsonl",
                                   max_bytes=2 * size + 1)
    assert [len(p.read_text().splitlines()) for p in by_bytes] == [2, 2, 1]
    assert all(p.stat().st_size <= 2 * size + 1 for p in by_bytes)
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="request k0 is .* bytes, more than a batch file may hold"):
        write_request_files([("k0", body(0))], tmp_path / "tiny.jsonl", max_bytes=10)


def test_a_result_file_keeps_every_usable_line_and_refuses_the_rest_naming_each_line(tmp_path):
    lines = [
        json.dumps(answer("k2")),                                  # 1: out of order, fine
        "{not json",                                               # 2: malformed
        json.dumps(answer("stranger")),                            # 3: a request the run never made
        json.dumps(answer("k1", status=500)),                      # 4: a failed line
        json.dumps(answer("k2")),                                  # 5: a duplicate of line 1
        json.dumps({"custom_id": "k3", "response": None, "error": {"code": "batch_expired",
                                                                   "message": "expired"}}),  # 6
        json.dumps({"custom_id": "k4"}),                           # 7: neither response nor error
        "",
        json.dumps(answer("k0", text='{"label": "b"}')),           # 9
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    results = ResultFile(path, {"k0", "k1", "k2", "k3", "k4"}, latency_s=12.5)
    usable = list(results)
    assert [(r.line, r.custom_id) for r in usable] == [(1, "k2"), (4, "k1"), (6, "k3"), (9, "k0")]
    assert usable[0].completion.text == '{"label": "a"}' and usable[0].completion.tokens_in == 7
    assert usable[0].completion.latency_s == 12.5
    assert usable[1].completion is None and usable[1].error.startswith("batch line failed: HTTP 500")
    assert usable[2].error == "batch line failed: batch_expired: expired"
    assert [problem.split(":")[0] for problem in results.problems] == ["line 2", "line 3", "line 5", "line 7"]
    assert "not a request of this run" in results.problems[1] and "duplicate" in results.problems[2]
    with pytest.raises(BatchResultError, match=r"4 line\(s\) refused, the other lines were kept: line 2: not JSON"):
        results.raise_problems()


def test_an_answer_without_choices_is_refused():
    with pytest.raises(ValueError, match="no choices"):
        completion_from_body({"object": "error"})
