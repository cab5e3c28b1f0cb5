"""A run through OpenAI's Batch API against the stub (a real HTTP server spoken to through the
`openai` SDK: files, batches, chat), and through files for `vllm run-batch`: the answers land in
the response cache under the keys a direct call uses, so the run that follows gives the same
predictions as a direct run; a killed run resumes its batch and submits nothing twice; failed
lines are sent directly or re-batched; result files with lines the run cannot use are refused
line by line and lose nothing."""

import json

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment
from workbench.prompting.cache import ResponseCache
from workbench.scale.batch_lines import MAX_LINES, write_request_files
from workbench.scale.batch_runs import batch_folder, batch_model, batch_run, experiment_requests
from workbench.scale.openai_batch import run_batches
from workbench.testing.openai_stub import StubServer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
KEY = "sk-batch-PLANTED-7373"
COLUMNS = ["variant", "example_id", "repeat", "raw_response", "prediction", "parse_error"]
LABELS = ["complaint", "request", "fraud", "hardship"]


@pytest.fixture()
def stub(monkeypatch):
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    server = StubServer()
    server.start_in_thread()
    yield server
    server.stop_thread()


def write_config(tmp_path, stub, rows, *, name="batched", variants=("zero_shot", "definitions")):
    data = tmp_path / f"{name}.jsonl"
    pd.DataFrame({"example_id": [f"e{n}" for n in range(rows)],
                  "text": [f"message {n}: my card was charged {n % 97} times" for n in range(rows)],
                  "label": [LABELS[n % 4] for n in range(rows)]}).to_json(data, orient="records", lines=True)
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "name": name, "task": str(ROOT / "data/complaint_triage/task.yaml"), "dataset": str(data),
        "variants": list(variants), "runs_dir": str(tmp_path / f"runs-{name}"), "options": {"max_tokens": 32},
        "model": {"kind": "openai_compatible", "model": "gpt-4o-mini", "base_url": stub.base_url,
                  "api_key_env": "BATCH_TEST_KEY"}}))
    return config


def chat_calls(stub):
    return sum(1 for record in stub.records if record["outcome"] == "ok")


def test_ten_thousand_requests_through_the_batch_api_give_the_direct_runs_predictions(stub, tmp_path):
    experiment = load_experiment(write_config(tmp_path, stub, 5_000))
    direct = run_experiment(load_experiment(write_config(tmp_path, stub, 5_000, name="direct")), progress=False)
    direct_calls = chat_calls(stub)
    assert direct_calls == 10_000
    run, outcome = batch_run(experiment, poll_s=0.0, progress=False, max_lines=4_000)
    assert outcome.submitted == 10_000 and outcome.answered == 10_000 and not outcome.failed
    assert len(stub.batches.created) == 3  # split at max_lines: 4,000 + 4,000 + 2,000
    assert chat_calls(stub) == direct_calls  # the run itself sent nothing: every answer came from the cache
    assert run.stats["cache_hits"] == 10_000 and run.stats.get("calls_sent", 0) == 0
    pd.testing.assert_frame_equal(run.predictions[COLUMNS], direct.predictions[COLUMNS])
    assert set(stub.batches.submitted().values()) == {1}
    # The key went to the endpoint, and into no file the batch path keeps.
    assert set(stub.authorizations) == {f"Bearer {KEY}"}
    assert not [path for path in batch_folder(experiment).iterdir() if KEY in path.read_text()]


def test_a_run_killed_while_polling_resumes_its_batch_and_submits_nothing_twice(stub, tmp_path):
    experiment = load_experiment(write_config(tmp_path, stub, 30))
    model = batch_model(experiment)

    def killed(_seconds):
        raise KeyboardInterrupt

    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache, pytest.raises(KeyboardInterrupt):
        run_batches(model, experiment_requests(experiment, model), cache, batch_folder(experiment), sleep=killed,
                    progress=False)
    state = json.loads((batch_folder(experiment) / "batches.json").read_text())
    assert len(state) == 1 and state[0]["batch_id"] in stub.batches.created and not state[0]["imported"]

    run, outcome = batch_run(experiment, poll_s=0.0, progress=False)
    assert outcome.submitted == 0 and outcome.resumed == 1 and outcome.answered == 60
    assert len(stub.batches.created) == 1 and set(stub.batches.submitted().values()) == {1}
    assert run.stats["cache_hits"] == 60 and chat_calls(stub) == 0
    again, more = batch_run(experiment, poll_s=0.0, progress=False)  # all answered: no batch, no call
    assert more.submitted == 0 and more.resumed == 0 and len(stub.batches.created) == 1
    assert again.stats["cache_hits"] == 60


def test_failed_lines_are_sent_directly_or_batched_again_and_recorded_when_they_keep_failing(stub, tmp_path):
    config = write_config(tmp_path, stub, 20, variants=("zero_shot",))
    experiment = load_experiment(config)
    keys = list(experiment_requests(experiment, batch_model(experiment)))
    stub.batches.fail_ids = set(keys[:3])  # these fail in the first batch they are in
    run, outcome = batch_run(experiment, poll_s=0.0, progress=False)  # --batch-retry direct
    assert len(outcome.failed) == 3 and chat_calls(stub) == 3  # sent one at a time by the run
    assert run.predictions["request_error"].isna().all() and len(stub.batches.created) == 1

    # The same requests in two more experiments: the stub fails a line only the first time it sees
    # its custom id, so each case fails lines of its own.
    second = load_experiment(write_config(tmp_path, stub, 20, name="rebatched", variants=("zero_shot",)))
    stub.batches.fail_ids = set(keys[3:6])
    run, outcome = batch_run(second, retry="batch", poll_s=0.0, progress=False)
    assert not outcome.failed and len(stub.batches.created) == 3 and chat_calls(stub) == 3
    assert run.predictions["request_error"].isna().all()

    third = load_experiment(write_config(tmp_path, stub, 20, name="stubborn", variants=("zero_shot",)))
    stub.batches.fail_ids, stub.batches.fail_permanently = set(keys[6:8]), True
    run, outcome = batch_run(third, retry="batch", poll_s=0.0, progress=False)
    assert len(outcome.failed) == 2 and chat_calls(stub) == 3  # nothing sent directly
    errors = run.predictions["request_error"].dropna()
    assert len(errors) == 2 and errors.str.startswith("batch line failed: HTTP 500").all()


def test_an_expired_batch_keeps_its_finished_lines_and_says_which_remain(stub, tmp_path):
    experiment = load_experiment(write_config(tmp_path, stub, 10, variants=("zero_shot",)))
    stub.batches.expire_after = 4
    run, outcome = batch_run(experiment, poll_s=0.0, progress=False)
    assert outcome.answered == 4 and len(outcome.failed) == 6
    assert all("batch_expired" in why or "expired" in why for why in outcome.failed.values())
    assert chat_calls(stub) == 6 and run.predictions["request_error"].isna().all()


def test_requests_split_at_fifty_thousand_lines(tmp_path):
    files = write_request_files(((f"k{n}", {"n": n}) for n in range(MAX_LINES + 1)), tmp_path / "requests.jsonl")
    assert [path.name for path in files] == ["requests-1.jsonl", "requests-2.jsonl"]
    assert [path.read_text().count("\n") for path in files] == [MAX_LINES, 1]


def test_exported_lines_answered_elsewhere_are_imported_line_by_line(stub, tmp_path, capsys):
    """`workbench batch export`, an engine answering the lines (the stub's own answers, as `vllm
    run-batch` would write them), `workbench batch import`, then `workbench run` sends nothing."""
    config = write_config(tmp_path, stub, 12)
    assert main(["batch", "export", str(config), str(tmp_path / "requests.jsonl")]) == 0
    assert "24 request(s)" in capsys.readouterr().out
    requests = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    answered = [{"id": f"r{n}", "custom_id": line["custom_id"], "error": None,
                 "response": {"status_code": 200, "body": stub._answer_without_fault(line["body"])[1]}}
                for n, line in enumerate(requests)]
    lines = [json.dumps(line) for line in reversed(answered[:20])]  # out of order, 4 left unanswered
    lines.insert(3, json.dumps({**answered[0], "custom_id": "not-a-request"}))
    lines.insert(6, json.dumps(answered[5]))  # a duplicate
    lines.insert(9, '{"custom_id": ')  # malformed
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["batch", "import", str(config), str(tmp_path / "results.jsonl")]) == 2
    error = capsys.readouterr().err
    assert "3 result line(s) refused, the other 20 answer(s) were stored" in error
    assert "line 4: custom_id not-a-request is not a request of this run" in error
    # answered[5] is line 7 (the planted copy) and line 18 (its place in the reversed list): the second is refused.
    assert f"line 18: custom_id {answered[5]['custom_id']} was answered already (a duplicate line)" in error
    assert "line 10: not JSON" in error
    before = chat_calls(stub)
    assert main(["run", str(config), "--no-progress"]) == 0
    assert chat_calls(stub) - before == 4  # only the four never answered
    assert "from cache: 20" in capsys.readouterr().out


def test_batch_commands_refuse_a_local_model(tmp_path, capsys):
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({"name": "local", "task": str(ROOT / "data/complaint_triage/task.yaml"),
                                      "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
                                      "variants": ["zero_shot"], "runs_dir": str(tmp_path / "runs")}))
    assert main(["run", str(config), "--batch", "openai"]) == 2
    assert "uses model kind 'embedded'; batch files carry OpenAI chat requests, so --batch and `workbench batch` need `model: {kind: openai_compatible" in capsys.readouterr().err


def test_workbench_run_batch_openai_reports_the_batch_and_writes_the_run(stub, tmp_path, capsys):
    config = write_config(tmp_path, stub, 8)
    assert main(["run", str(config), "--batch", "openai", "--poll", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "batch: 16 request(s) submitted, 0 batch(es) resumed, 16 answer(s) stored, 0 failed line(s)" in out
    assert "from cache: 16" in out and chat_calls(stub) == 0
    assert (tmp_path / "runs-batched" / "batched" / "latest" / "report.html").exists()
