"""What a notebook runs: the config's values unless a parameter says otherwise, and the latest run
loaded instead of run again when it is the one the parameters ask for."""

import pandas as pd
import pytest
import yaml

from workbench.experiments.notebook_runs import load_notebook_experiment, run_mismatch, write_run_if_needed
from workbench.experiments.run_history import list_runs
from workbench.experiments.runs import load_run
from workbench.testing.fake_model import FakeModel

TASK = {"name": "t", "kind": "classification",
        "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]}


@pytest.fixture
def config(tmp_path):
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(TASK))
    rows = pd.DataFrame({"example_id": [f"e{i}" for i in range(10)], "text": [f"text {i}" for i in range(10)],
                         "label": ["complaint", "request"] * 5})
    rows.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "exp", "task": "task.yaml", "dataset": "test.jsonl", "limit": 6, "variants": ["zero_shot", "definitions"],
        "options": {"temperature": 0.0, "max_tokens": 99, "seed": 7}, "runs_dir": str(tmp_path / "runs")}))
    return path


def test_none_means_the_configs_value_and_options_are_overridden_one_by_one(config):
    experiment = load_notebook_experiment(config, limit=None, variants=None, repeats=None,
                                          options={"temperature": None, "max_tokens": None})
    assert (len(experiment.dataset), experiment.variants, experiment.repeats) == (6, ["zero_shot", "definitions"], 1)
    assert (experiment.options.max_tokens, experiment.options.seed) == (99, 7)
    changed = load_notebook_experiment(config, limit=4, variants=["zero_shot"], options={"temperature": 0.7})
    assert (len(changed.dataset), changed.variants) == (4, ["zero_shot"])
    assert (changed.options.temperature, changed.options.max_tokens, changed.options.seed) == (0.7, 99, 7)


def test_a_matching_run_is_loaded_and_anything_else_runs_again(config):
    experiment = load_notebook_experiment(config)
    model = FakeModel('{"label": "request"}')
    first = write_run_if_needed(experiment, progress=False, model=model)
    assert not first.loaded and "holds no run yet" in first.reason and len(model.calls) == 12
    assert load_run(experiment.run_dir).run_id == first.run.run_id  # the latest run, as the CLI reads it

    again = write_run_if_needed(load_notebook_experiment(config), progress=False, model=model)
    assert again.loaded and again.run.run_id == first.run.run_id and len(model.calls) == 12
    # Fewer variants than the run has: still that run, whole.
    fewer = write_run_if_needed(load_notebook_experiment(config, variants=["definitions"]), progress=False, model=model)
    assert fewer.loaded and fewer.run.variants == ["zero_shot", "definitions"]

    for changed, words in [(load_notebook_experiment(config, limit=4), "evaluated 6 examples, not these 4"),
                           (load_notebook_experiment(config, variants=["cot"]), "variant(s) cot"),
                           (load_notebook_experiment(config, options={"max_tokens": 20}), "its options")]:
        assert words in run_mismatch(first.run, changed)
    rerun = write_run_if_needed(experiment, rerun=True, progress=False, model=model)
    assert not rerun.loaded and "RERUN" in rerun.reason and len(model.calls) == 12  # every answer from the cache
    assert list(list_runs(experiment.run_dir)["latest"]) == [False, True]


def test_other_gold_answers_or_another_task_do_not_match(config, tmp_path):
    experiment = load_notebook_experiment(config)
    run = load_run(write_run_if_needed(experiment, progress=False, model=FakeModel('{"label": "request"}')).run.path)
    assert run_mismatch(run, experiment) is None  # read back from disk, it still matches
    original = (tmp_path / "test.jsonl").read_text()
    relabelled = pd.read_json(tmp_path / "test.jsonl", lines=True, dtype=False)
    relabelled["label"] = "complaint"
    relabelled.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    assert "other texts or gold answers" in run_mismatch(run, load_notebook_experiment(config))
    (tmp_path / "test.jsonl").write_text(original)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({**TASK, "description": "new words"}))
    assert "task differs" in run_mismatch(run, load_notebook_experiment(config))
