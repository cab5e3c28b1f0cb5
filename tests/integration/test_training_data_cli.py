"""`workbench points`, `workbench data` and `workbench export` on real run folders of the three demo
tasks, with the real sentence encoder: training data per point with no leak, every export loaded
back by its own library, the spaCy baseline trained and scored per point, and the test cases run
by `workbench run` on the embedded model. `points` and `data` run in this process (`main`); `run`, and
for one kind (`ENTRY_POINT_KIND`) `export` and the refused second `data`, as a user runs them
(`python -m workbench.cli`)."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from spacy.tokens import DocBin

from workbench.cli.main import main
from workbench.core.frames import read_frame
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment, write_run
from workbench.testing.fake_model import FakeModel
from workbench.trainingdata.openai_jsonl import read_chat_jsonl

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# The kind whose refused second `data` and `export` run as a user runs them; the others call the same
# `main` in this process (a new interpreter imports torch, spaCy and the encoder again: 3 to 8 s a call).
ENTRY_POINT_KIND = "adverse_events"
# A fake model that is wrong in a stable way per kind, so that every task has points.
CASES = {
    "complaint_triage": ('{"label": "complaint"}', '{"label": "request"}'),
    "adverse_events": ('{"entities": []}', '{"entities": []}'),
    "app_review_topics": ('{"labels": ["billing"]}', '{"labels": []}'),
}


def cli(*arguments, cwd):
    """The command run as a user runs it: `python -m workbench.cli` in a process of its own."""
    done = subprocess.run([sys.executable, "-m", "workbench.cli", *arguments], capture_output=True, text=True,
                          timeout=900, cwd=cwd)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def in_process(capsys, *arguments):
    """The command through `main` in this process: the same code as `cli`, without a new interpreter
    loading torch and the sentence encoder again (about 8 s of CPU a call); `cli` still runs the
    export and the refused second build, so the entry point is tested in every case."""
    capsys.readouterr()
    code = main(list(arguments))
    out = capsys.readouterr()
    assert code == 0, out.out[-2000:] + out.err[-3000:]
    return out.out


@pytest.mark.parametrize("name", list(CASES))
def test_training_data_and_exports_for_each_kind(name, tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": f"{name}_data", "task": str(ROOT / f"data/{name}/task.yaml"),
        "dataset": str(ROOT / f"data/{name}/test.jsonl"), "examples": str(ROOT / f"data/{name}/train.jsonl"),
        "limit": 30, "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs")}))
    experiment = load_experiment(config)
    with_definitions, without = CASES[name]
    model = FakeModel(lambda request: with_definitions if "definition" in request.messages[0]["content"].lower()
                      else without)
    run = write_run(run_experiment(experiment, model=model, progress=False), experiment.run_dir)
    in_process(capsys, "points", str(run.path))

    built = in_process(capsys, "data", str(run.path))
    assert "leaks: 0" in built
    examples = read_frame(run.path / "training_data" / "examples.parquet")
    assert {"members", "neighbours"} <= set(examples["source"]) and set(examples["split"]) == {"train", "test"}
    assert examples.groupby("example_id")["split"].nunique().max() == 1
    # Written once; replacing needs --overwrite: one line with the fix, exit 2, no traceback.
    if name == ENTRY_POINT_KIND:
        again = subprocess.run([sys.executable, "-m", "workbench.cli", "data", str(run.path)], capture_output=True,
                               text=True, timeout=900, cwd=tmp_path)
        code, refused = again.returncode, again.stderr
    else:
        capsys.readouterr()
        code, refused = main(["data", str(run.path)]), capsys.readouterr().err
    assert code == 2 and "holds training data already: pass --overwrite" in refused
    assert "Traceback" not in refused

    export = ["export", str(run.path), "--train-spacy", "20", "--min-examples", "1"]
    exported = cli(*export, cwd=tmp_path) if name == ENTRY_POINT_KIND else in_process(capsys, *export)
    out = run.path / "exports"
    chat = read_chat_jsonl(out / "openai" / "train.jsonl")
    # One line per training example: an example several points share is written once.
    train_examples = examples.loc[examples["split"] == "train", "example_id"].nunique()
    assert len(chat) == train_examples and chat[0][-1]["role"] == "assistant"
    assert "tokens per epoch" in exported
    loaded = datasets.load_from_disk(str(out / "hf_chat"))
    assert set(loaded) == {"train", "test"} and loaded["train"].num_rows == len(chat)
    train_docs = list(DocBin().from_disk(out / "spacy" / "train.spacy").get_docs(
        __import__("spacy").blank("en").vocab))
    assert len(train_docs) == len(chat)
    tokens = out / "hf_tokens"
    if name == "adverse_events":
        ner = datasets.load_from_disk(str(tokens))
        assert "ner_tags" in ner["train"].features and ner["train"].features["ner_tags"].feature.names[0] == "O"
    else:
        assert not tokens.exists()
    # The baseline's scores per point, from the workbench's scorer, end with all test cases.
    assert "(all test cases)" in exported and "baseline trained for 20 steps" in exported

    cases = run.path / "training_data" / "test_cases.jsonl"
    lines = [json.loads(line) for line in cases.read_text().splitlines()]
    assert len(lines) == examples.loc[examples["split"] == "test", "example_id"].nunique()


def test_workbench_run_evaluates_the_test_cases_on_the_embedded_model(tmp_path, capsys):
    name = "complaint_triage"
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "cases_source", "task": str(ROOT / f"data/{name}/task.yaml"),
        "dataset": str(ROOT / f"data/{name}/test.jsonl"), "examples": str(ROOT / f"data/{name}/train.jsonl"),
        "limit": 12, "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs")}))
    experiment = load_experiment(config)
    model = FakeModel(lambda request: '{"label": "request"}')
    run = write_run(run_experiment(experiment, model=model, progress=False), experiment.run_dir)
    in_process(capsys, "points", str(run.path))
    in_process(capsys, "data", str(run.path))
    cases = tmp_path / "cases.yaml"
    cases.write_text(yaml.safe_dump({
        "name": "test_cases", "task": str(ROOT / f"data/{name}/task.yaml"),
        "dataset": str(run.path / "training_data" / "test_cases.jsonl"), "limit": 6, "variants": ["zero_shot"],
        "runs_dir": str(tmp_path / "runs"), "options": {"max_tokens": 48}}))
    ran = cli("run", str(cases), "--no-progress", cwd=tmp_path)
    assert "test_cases: 6 examples x 1 variants" in ran and "failed: 0" in ran
