"""The command line end to end: run writes the run folder and report; push sends errors to Argilla.
`run` goes through the installed entry point (`python -m workbench.cli`, a process of its own); the
commands after it call the same `main` in this process, which spares each a new interpreter's
imports (2 to 8 s) and still checks their exit codes, output and messages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbench.cli.main import main
from workbench.prompting.cache import ResponseCache

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_run_then_push(tmp_path, argilla, monkeypatch, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "cli_demo", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"), "limit": 5,
        "variants": ["zero_shot", "definitions"], "options": {"max_tokens": 32}, "runs_dir": str(tmp_path / "runs"),
    }))
    env = {**os.environ, "ARGILLA_API_URL": argilla["info"].api_url, "ARGILLA_API_KEY": argilla["keys"]["owner"]}
    ran = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(config), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr
    folder = tmp_path / "runs" / "cli_demo"  # the experiment's runs; latest points at this one
    assert "report: " in ran.stdout and (folder / "latest" / "report.html").exists()
    assert {"predictions.parquet", "dataset.parquet", "summary.csv", "stats.json", "provenance.json",
            "config.yaml"} <= {p.name for p in (folder / "latest").iterdir()}
    assert (folder / "cache.sqlite").exists()
    with ResponseCache(folder / "cache.sqlite") as cache:
        answers, runs = len(cache), cache.runs()
    assert len(runs) == 1 and answers > 0

    # Push reads the run folder (given directly, or through the config that wrote it): no model call.
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        monkeypatch.setenv(name, env[name])

    def cli(*arguments: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(arguments))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    for source in (folder, config):
        code, out, err = cli("push", str(source), "--suggest-from", "zero_shot", "--name", "cli_demo_errors")
        assert code == 0, err
        assert "to 'cli_demo_errors'" in out and "/dataset/" in out and runs[0]["run_id"] in out
    with ResponseCache(folder / "cache.sqlite") as cache:
        assert len(cache) == answers and cache.runs() == runs  # nothing was run, nothing was asked

    # An annotator corrects one record; `workbench pull` snapshots it, and `points --corrections` reads it.
    from workbench.annotation import connect
    from workbench.annotation._argilla import find_dataset
    from workbench.evaluation.errors import find_errors
    from workbench.experiments.runs import load_run
    from workbench.testing.annotator import submit_responses

    run = load_run(folder)
    dataset = find_dataset(connect(argilla["info"].api_url, argilla["keys"]["owner"]), "cli_demo_errors", None)
    errors = find_errors(run.predictions, run.dataset, run.task)
    first = errors[errors["variant"] == "zero_shot"]["example_id"].iloc[0]  # a record the push sent
    gold = dict(zip(run.dataset["example_id"], run.dataset["label"]))
    other = next(label for label in run.task.label_names if label != gold[first])
    assert submit_responses(connect(argilla["info"].api_url, argilla["keys"]["annotator"]), run.task,
                            str(dataset.id), {first: other}) == 1
    code, out, err = cli("pull", str(folder), "--name", "cli_demo_errors", "--out", str(tmp_path / "annotations"))
    assert code == 0, err
    assert "'cli_demo_errors': 1 submitted corrections of 1 responses; snapshot " in out
    snapshot = next((tmp_path / "annotations" / "cli_demo_errors").glob("*.jsonl"))
    assert f"next: workbench points {folder} --corrections {snapshot}" in out
    code, out, err = cli("points", str(folder), "--corrections", str(snapshot))
    assert code == 0, err
    assert "1 suspected label errors" in out
    code, _, err = cli("pull", str(folder), "--name", "nowhere", "--review-name", "nowhere")
    assert code == 2 and "push first" in err

    code, _, err = cli("push", str(config), "--suggest-from", "nope")
    assert code == 2 and "nope" in err
