"""Experiment configs: validation, relative paths, sampling, and no secrets in run folders."""

import pandas as pd
import pytest
import yaml

from workbench.experiments.config import load_experiment
from workbench.experiments.runs import write_run
from workbench.evaluation.efficiency import summarize_run
from workbench.prompting.runner import run_variants
from workbench.testing.fake_model import FakeModel

TASK = {"name": "t", "kind": "classification",
        "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "task.yaml").write_text(yaml.safe_dump(TASK))
    rows = pd.DataFrame({"example_id": [f"e{i}" for i in range(10)], "text": [f"text {i}" for i in range(10)],
                         "label": ["complaint", "request"] * 5})
    rows.to_json(tmp_path / "data" / "test.jsonl", orient="records", lines=True)
    return tmp_path


def write(project, **overrides):
    config = {"name": "exp", "task": "data/task.yaml", "dataset": "data/test.jsonl", "variants": ["zero_shot"],
              "runs_dir": str(project / "runs"), **overrides}
    path = project / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_paths_resolve_beside_the_config_and_limit_samples(project):
    experiment = load_experiment(write(project, limit=4))
    assert len(experiment.dataset) == 4
    assert list(experiment.dataset["example_id"]) == sorted(experiment.dataset["example_id"])
    assert len(load_experiment(write(project, limit=4), limit=0).dataset) == 10


def test_unknown_keys_and_keys_in_config_are_refused(project):
    with pytest.raises(ValueError, match="variantz"):
        load_experiment(write(project, variantz=["x"]))
    experiment = load_experiment(write(project, model={"kind": "openai_compatible", "model": "m", "api_key": "sk-1"}))
    with pytest.raises(ValueError, match="environment"):
        experiment.build_model()


def test_run_folder_holds_results_but_no_credentials(project):
    experiment = load_experiment(write(project, model={
        "kind": "openai_compatible", "model": "m", "base_url": "http://user:hunter2@127.0.0.1:9/v1"}))
    predictions = run_variants(experiment.task, experiment.dataset, experiment.variants,
                               FakeModel('{"label": "request"}'), progress=False)
    folder = write_run(experiment, predictions, summarize_run(predictions, experiment.dataset, experiment.task))
    assert {p.name for p in folder.iterdir()} >= {"predictions.jsonl", "summary.csv", "run_stats.json", "config.yaml"}
    assert "hunter2" not in (folder / "config.yaml").read_text()
    assert len(pd.read_json(folder / "predictions.jsonl", lines=True)) == 10
