"""`workbench finetune RUN --method openai` end to end against the stub's files, fine-tuning jobs and
chat endpoints (a real HTTP server on localhost, spoken to through the `openai` SDK): the run's
training rows are uploaded, the job is followed to its end and recorded in finetune/openai/job.json,
and the tuned model is re-tested against its base on every point's test cases. A second call
continues the recorded job (no second upload or job); a failed job exits 2 with the provider's
reason; a run on the embedded model is refused naming the fix; the key is in no file of the run.
A bag-of-words encoder stands in for the sentence encoder (`workbench points` and `workbench data`
run in-process)."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.core.frames import read_frame
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment, write_run
from workbench.testing.fake_model import FakeModel
from workbench.testing.openai_stub import StubServer, default_answer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
KEY = "sk-hosted-PLANTED-4242"


class WordsEncoder:
    """Each text a hashed bag of words: texts sharing words sit close, others far apart."""

    def encode(self, texts):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=256, alternate_sign=False, norm="l2").transform(texts).toarray() + 1e-6


@pytest.fixture(scope="module")
def stub():
    """The stub; the tuned models (``ft:...``) answer every test case right, the base like the
    stub's default (the first label)."""
    gold: dict[str, str] = {}
    models: list[str] = []

    def answer(body):
        models.append(body["model"])
        if body["model"].startswith("ft:"):
            user = body["messages"][-1]["content"]
            label = next((label for text, label in gold.items() if text in user), None)
            if label is not None:
                return json.dumps({"label": label})
        return default_answer(body)

    server = StubServer(answer=answer)
    server.start_in_thread()
    server.gold, server.models = gold, models
    yield server
    server.stop_thread()


@pytest.fixture(scope="module")
def template(stub, tmp_path_factory):
    """A run folder with points and training data whose model is the stub (openai_compatible); its
    answers came from a fake model that always says "request"."""
    from workbench.points.encoder import CachedEncoder

    tmp = tmp_path_factory.mktemp("hosted")
    config = tmp / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "hosted", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 10,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp / "runs"), "options": {"max_tokens": 32},
        "model": {"kind": "openai_compatible", "model": "gpt-4o-mini", "base_url": stub.base_url,
                  "api_key_env": "HOSTED_TEST_KEY"}}))
    experiment = load_experiment(config)
    run = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                    experiment.run_dir)
    with pytest.MonkeyPatch.context() as patch:
        words = CachedEncoder(WordsEncoder())
        for module in ("encoder", "cluster", "naming"):
            patch.setattr(f"workbench.points.{module}.default_encoder", lambda: words)
        assert main(["points", str(run.path)]) == 0
        assert main(["data", str(run.path), "--train-variant", "zero_shot"]) == 0
    examples = read_frame(run.path / "training_data" / "examples.parquet")
    test = examples[examples["split"] == "test"]
    stub.gold.update(zip(test["text"], test["target"]))
    return run.path


@pytest.fixture()
def run_path(template, tmp_path, monkeypatch):
    monkeypatch.setenv("HOSTED_TEST_KEY", KEY)
    path = tmp_path / "run"
    shutil.copytree(template, path)
    return path


def finetune(run_path, *more):
    return main(["finetune", str(run_path), "--method", "openai", "--poll", "0.01", *more])


def test_a_hosted_job_is_created_followed_recorded_and_its_model_re_tested(stub, run_path, capsys):
    jobs, files, asked = len(stub.fine_tuning.jobs), len(stub.fine_tuning.files), len(stub.models)
    assert finetune(run_path) == 0
    out = capsys.readouterr().out
    folder = run_path / "finetune" / "openai"
    job = json.loads((folder / "job.json").read_text())
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:gpt-4o-mini:workbench:hosted:")
    assert job["trained_tokens"] > 0 and job["training_file"] in stub.fine_tuning.files and job["model"] == "gpt-4o-mini"
    assert job["endpoint"] == stub.base_url and job["training_rows"] == len((folder / "train.jsonl").read_text()
                                                                             .splitlines())
    # The uploaded file is the export's: one line per training example, the test cases left out.
    examples = read_frame(run_path / "training_data" / "examples.parquet")
    assert job["training_rows"] == examples.loc[examples["split"] == "train", "example_id"].nunique()
    assert stub.fine_tuning.contents[job["training_file"]] == (folder / "train.jsonl").read_bytes()
    assert f"fine-tuning job {job['job_id']}: running" in out and f"fine-tuning job {job['job_id']}: succeeded" in out
    assert len(stub.fine_tuning.jobs) == jobs + 1 and len(stub.fine_tuning.files) == files + 1
    # Base and tuned model answered every test case, through the same endpoint.
    cases = examples.loc[examples["split"] == "test", "example_id"].nunique()
    sent = stub.models[asked:]
    assert sent.count(job["fine_tuned_model"]) == cases and sent.count("gpt-4o-mini") >= cases
    table = pd.read_csv(folder / "before_after.csv").set_index("point_id")
    assert table.at["(all test cases)", "tuned"] == 1.0 and table.at["(all test cases)", "base"] < 1.0
    assert (folder / "efficiency.csv").exists() and (folder / "predictions.parquet").exists()
    methods = pd.read_csv(run_path / "finetune" / "points_by_method.csv")
    assert list(methods.columns) == ["point_id", "name", "prompt", "openai", "fixed_by"]
    assert methods["fixed_by"].str.contains("openai").any()
    assert set(stub.authorizations[-3:]) == {f"Bearer {KEY}"}

    # A second call continues the recorded job: no second upload, no second job, the answers cached.
    asked = len(stub.models)
    assert finetune(run_path) == 0
    assert "succeeded earlier" in capsys.readouterr().out
    assert len(stub.fine_tuning.jobs) == jobs + 1 and len(stub.fine_tuning.files) == files + 1
    assert len(stub.models) == asked

    # The key is in no file under the run folder.
    for path in run_path.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path


def test_a_command_stopped_while_the_job_runs_continues_the_same_job(stub, run_path, capsys):
    jobs = len(stub.fine_tuning.jobs)
    # --timeout 0: the first look finds it running and the command stops waiting (exit 2), job.json kept.
    assert finetune(run_path, "--timeout", "0", "--no-compare") == 2
    job = json.loads((run_path / "finetune" / "openai" / "job.json").read_text())
    assert job["status"] == "running" and "keeps running" in capsys.readouterr().err
    assert finetune(run_path, "--no-compare") == 0
    done = json.loads((run_path / "finetune" / "openai" / "job.json").read_text())
    assert done["job_id"] == job["job_id"] and done["status"] == "succeeded"
    assert len(stub.fine_tuning.jobs) == jobs + 1
    # --resume follows an explicit job; --new-job starts another one, keeping the earlier in job.json.
    assert finetune(run_path, "--resume", job["job_id"], "--no-compare") == 0
    assert finetune(run_path, "--new-job", "--no-compare") == 0
    again = json.loads((run_path / "finetune" / "openai" / "job.json").read_text())
    assert again["job_id"] != job["job_id"] and again["earlier_jobs"][-1]["job_id"] == job["job_id"]
    assert len(stub.fine_tuning.jobs) == jobs + 2
    assert finetune(run_path, "--resume", "ftjob-nosuchjob", "--no-compare") == 2
    assert "no fine-tuning job 'ftjob-nosuchjob'" in capsys.readouterr().err


def test_a_failed_job_exits_2_with_the_providers_reason_and_job_json_keeps_it(stub, run_path, capsys):
    stub.fine_tuning.fail_with = "Your organization has reached its fine-tuning quota."
    try:
        assert finetune(run_path) == 2
    finally:
        stub.fine_tuning.fail_with = None
    job = json.loads((run_path / "finetune" / "openai" / "job.json").read_text())
    err = capsys.readouterr().err
    assert job["status"] == "failed" and "quota" in job["error"]
    assert f"fine-tuning job {job['job_id']} failed: Your organization has reached its fine-tuning quota" in err
    assert "--new-job" in err and not (run_path / "finetune" / "openai" / "before_after.csv").exists()
    jobs = len(stub.fine_tuning.jobs)
    assert finetune(run_path) == 2  # still that failed job: no new one until --new-job
    assert len(stub.fine_tuning.jobs) == jobs


def test_changed_training_rows_are_not_silently_re_tested_with_an_old_job(stub, run_path, capsys):
    assert finetune(run_path, "--no-compare") == 0
    examples = read_frame(run_path / "training_data" / "examples.parquet")
    from workbench.core.frames import write_frame

    dropped = examples.loc[examples["split"] == "train", "example_id"].iloc[0]  # one training example fewer
    write_frame(examples[examples["example_id"] != dropped].reset_index(drop=True),
                run_path / "training_data" / "examples.parquet")
    assert finetune(run_path, "--no-compare") == 2
    assert "trained on other training rows" in capsys.readouterr().err


def test_a_run_on_the_embedded_model_is_refused_naming_the_fix(run_path, capsys):
    config = run_path / "config.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["model"] = {"kind": "embedded"}
    config.write_text(yaml.safe_dump(settings))
    assert finetune(run_path) == 2
    err = capsys.readouterr().err
    assert "'embedded' model" in err and "kind: openai_compatible" in err and "--method lora" in err
    assert not (run_path / "finetune" / "openai").exists()


def test_a_missing_key_stops_before_any_upload(stub, run_path, monkeypatch, capsys):
    monkeypatch.delenv("HOSTED_TEST_KEY")
    files = len(stub.fine_tuning.files)
    assert finetune(run_path) == 2
    assert "HOSTED_TEST_KEY is not set" in capsys.readouterr().err and len(stub.fine_tuning.files) == files
