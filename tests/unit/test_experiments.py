"""Experiment configs: validation, relative paths, sampling, and no secrets in run folders."""

import pandas as pd
import pytest
import yaml

from workbench.experiments.config import load_experiment
from workbench.experiments.runs import load_run, run_experiment, write_run
from workbench.prompting.cache import ResponseCache
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
    # A key in the config, a typo in a model field or an unknown model kind fail when the config is loaded.
    with pytest.raises(ValueError, match="environment"):
        load_experiment(write(project, model={"kind": "openai_compatible", "model": "m", "api_key": "sk-1"}))
    with pytest.raises(ValueError, match="timeout_sec"):
        load_experiment(write(project, model={"kind": "openai_compatible", "model": "m", "timeout_sec": 5}))
    with pytest.raises(ValueError, match="unknown model kind 'ollama'"):
        load_experiment(write(project, model={"kind": "ollama"}))


def test_run_folder_holds_results_but_no_credentials(project):
    experiment = load_experiment(write(project, model={
        "kind": "openai_compatible", "model": "m", "base_url": "http://user:hunter2@127.0.0.1:9/v1", "api_key_env": None}))
    run = run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False)
    folder = write_run(run, experiment.run_dir).path
    assert {p.name for p in folder.iterdir()} >= {
        "predictions.parquet", "dataset.parquet", "task.json", "summary.csv", "stats.json", "provenance.json",
        "config.yaml", "cache.sqlite"}
    for name in ("config.yaml", "provenance.json", "stats.json", "task.json"):
        assert "hunter2" not in (folder / name).read_text()
    assert len(pd.read_parquet(folder / "predictions.parquet")) == 10


def test_a_run_folder_round_trips_through_load_run(project):
    experiment = load_experiment(write(project, variants=["zero_shot", "definitions"], repeats=2,
                                       options={"temperature": 0.7}))
    model = FakeModel(lambda request: '{"label": "complaint"}' if "Use these" in request.messages[0]["content"]
                      else "no idea")
    run = write_run(run_experiment(experiment, model=model, progress=False), experiment.run_dir)
    loaded = load_run(run.path)
    pd.testing.assert_frame_equal(loaded.predictions, run.predictions)
    pd.testing.assert_frame_equal(loaded.dataset, run.dataset)
    assert loaded.stats == run.stats and loaded.stats["calls_sent"] == len(model.calls) == 40
    assert loaded.provenance == run.provenance and loaded.task == run.task
    assert loaded.provenance["templates"]["zero_shot"]["file"] == "default.classification.v1.jinja"
    assert loaded.provenance["model"] == {"kind": "fake", "model": "fake"}
    pd.testing.assert_frame_equal(loaded.summary(), run.summary())
    # The cache's run log says which answer the run used for every row.
    with ResponseCache(experiment.run_dir / "cache.sqlite") as cache:
        assert [entry["run_id"] for entry in cache.runs()] == [run.run_id]
        items = cache.run_items(run.run_id)
    assert len(items) == len(run.predictions) and not any(item["cached"] for item in items)
    assert {item["text"] for item in items} == {'{"label": "complaint"}', "no idea"}


def test_load_run_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="predictions.parquet"):
        load_run(tmp_path)


def test_a_serve_block_is_checked_when_loaded_and_written_to_the_run_without_credentials(project):
    serve = {"base_url": "http://user:hunter2@gpu:8000/v1", "api_key_env": None, "model": "base",
             "adapter": "c-r{round}"}
    experiment = load_experiment(write(project, serve=serve))
    assert experiment.serve_config == {"kind": "openai_compatible", **serve}
    folder = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                       experiment.run_dir).path
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["serve"]["base_url"] == "http://gpu:8000/v1" and written["serve"]["adapter"] == "c-r{round}"
    assert "hunter2" not in (folder / "config.yaml").read_text()
    # Without one, the run's config holds no serve key (as before serve: existed).
    plain = load_experiment(write(project))
    assert plain.serve_config is None and "serve" not in plain.source
    with pytest.raises(ValueError, match="exp.yaml: serve: adapter: is missing"):
        load_experiment(write(project, serve={"model": "base", "api_key_env": None}))
    with pytest.raises(ValueError, match="timeout_sec"):
        load_experiment(write(project, serve={**serve, "timeout_sec": 5}))
