"""`workbench run` options: --fail-under (a CI gate), --model, --dataset, --name and limit: all.

The model is the fake one, put in where the experiment builds its model, so no test here sends a
real call; a refused command must not even build it.
"""

import json

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.core.data import load_dataset
from workbench.core.task import task_from_dict
from workbench.experiments import config as config_module
from workbench.experiments.config import load_experiment, load_model_config, parse_limit
from workbench.experiments.run_history import list_runs
from workbench.experiments.runs import load_run, resolve_run_folder
from workbench.experiments.score_gate import apply_thresholds, gate_metrics, gate_scores, parse_threshold
from workbench.testing.fake_model import FakeModel

TASK = {"name": "t", "kind": "classification",
        "labels": [{"name": "complaint", "definition": "x"}, {"name": "request", "definition": "y"}]}


def rows(n, prefix="e"):
    return pd.DataFrame({"example_id": [f"{prefix}{i}" for i in range(n)],
                         "text": [f"{['complaint', 'request'][i % 2]} number {i}" for i in range(n)],
                         "label": ["complaint", "request"] * (n // 2)})


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "task.yaml").write_text(yaml.safe_dump(TASK))
    rows(10).to_json(tmp_path / "data" / "test.jsonl", orient="records", lines=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def models(monkeypatch):
    """The model configs the run built models from; each model is a FakeModel.

    zero_shot always answers "request" (accuracy 0.5); definitions reads the label off the text (1.0).
    """
    built = []

    def answer(request):
        if "Use these" not in request.messages[0]["content"]:
            return '{"label": "request"}'
        return '{"label": "complaint"}' if "complaint number" in request.messages[-1]["content"] else \
            '{"label": "request"}'

    def model_from_config(config, **_):
        built.append(dict(config))
        return FakeModel(answer)

    monkeypatch.setattr(config_module, "model_from_config", model_from_config)
    return built


def write(project, **overrides):
    config = {"name": "exp", "task": "data/task.yaml", "dataset": "data/test.jsonl",
              "variants": ["zero_shot", "definitions"], "runs_dir": str(project / "runs"), **overrides}
    path = project / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(config, *flags):
    return main(["run", str(config), "--no-progress", *flags])


def predictions(folder):
    return pd.read_parquet(resolve_run_folder(folder) / "predictions.parquet")


# --fail-under

def test_a_gate_that_passes_exits_0_and_says_so(project, models, capsys):
    assert run(write(project), "--fail-under", "accuracy=0.9", "--fail-under", "zero_shot:accuracy=0.5") == 0
    out = capsys.readouterr().out
    # No variant named: the best one by that metric; its figures include the 95% interval (Wilson, 10/10).
    assert "fail-under: passed: best variant definitions: accuracy 1.000 (95% CI 0.722 to 1.000) >= 0.900" in out
    assert "fail-under: passed: variant zero_shot: accuracy 0.500 (95% CI 0.237 to 0.763) >= 0.500" in out
    assert "fail-under: passed (2 threshold(s) met)" in out
    assert (project / "runs" / "exp" / "latest" / "report.html").exists()


def test_a_gate_that_fails_exits_1_with_the_figures_after_the_report_is_written(project, models, capsys):
    assert run(write(project), "--fail-under", "zero_shot:accuracy=0.8", "--fail-under", "macro_f1=0.5") == 1
    out = capsys.readouterr().out
    assert "fail-under: FAILED: variant zero_shot: accuracy 0.500 (95% CI 0.237 to 0.763) < 0.800" in out
    assert "fail-under: passed: best variant definitions: macro_f1 1.000" in out
    assert "fail-under: 1 of 2 threshold(s) not met" in out
    latest = project / "runs" / "exp" / "latest"
    assert (latest / "report.html").exists() and (latest / "summary.csv").exists()


def test_the_best_variant_must_reach_the_threshold_and_a_metric_without_interval_says_none(project, models, capsys):
    assert run(write(project, variants=["zero_shot"]), "--fail-under", "f1_weighted=0.5",
               "--fail-under", "micro_f1=0.5") == 1
    out = capsys.readouterr().out
    # zero_shot answers one label: weighted F1 = 0.5 * (2/3) = 0.333; no interval for this column.
    assert "fail-under: FAILED: best variant zero_shot: f1_weighted 0.333 < 0.500 (--fail-under f1_weighted=0.5)" in out
    # Classification's f1_micro answers to micro_f1, the name the other kinds use.
    assert "fail-under: passed: best variant zero_shot: micro_f1 0.500 >= 0.500" in out


@pytest.mark.parametrize("spec, named", [
    ("accuracyy=0.8", "no metric 'accuracyy'; its scores are accuracy, macro_f1, precision_macro"),
    ("macro_f2=0.8", "a classification task has no metric 'macro_f2'"),
    ("hamming_loss=0.1", "no metric 'hamming_loss'"),
    ("few_shot:accuracy=0.8", "no variant 'few_shot'; its variants are zero_shot, definitions"),
    ("accuracy=80", "write 0.80 for 80%"),
    ("accuracy", "is not a threshold; use METRIC=VALUE"),
    ("accuracy=high", "'high' is not a number"),
])
def test_a_gate_that_cannot_be_checked_is_refused_before_any_model_call(project, models, capsys, spec, named):
    assert run(write(project), "--fail-under", spec) == 2
    assert named in capsys.readouterr().err
    assert models == [] and not (project / "runs").exists()


def test_the_gate_reads_the_runs_own_scores(project, models):
    """The figures are those of `bootstrap_ci` and the kind's scores, which the report shows."""
    from workbench.evaluation.significance import bootstrap_ci

    assert run(write(project)) == 0
    folder = project / "runs" / "exp" / "latest"
    frame, gold = predictions(folder), pd.read_parquet(folder / "dataset.parquet")
    task = load_experiment(project / "exp.yaml").task
    scores = gate_scores(frame, gold, task, ["accuracy", "precision_macro"])
    ci = bootstrap_ci(frame, gold, task, "accuracy")
    accuracy = scores[scores["metric"] == "accuracy"].reset_index(drop=True)
    pd.testing.assert_frame_equal(accuracy[["variant", "value", "low", "high"]], ci[["variant", "value", "low", "high"]])
    assert scores[scores["metric"] == "precision_macro"]["low"].isna().all()
    checks = apply_thresholds([parse_threshold("accuracy=0.6"), parse_threshold("zero_shot:accuracy=0.6")], scores)
    assert list(checks["variant"]) == ["definitions", "zero_shot"] and list(checks["passed"]) == [True, False]
    assert list(checks["best"]) == [True, False]


def test_thresholds_are_parsed_with_their_variant():
    assert parse_threshold("accuracy=0.80") == parse_threshold(" accuracy = 0.8 ")
    threshold = parse_threshold("definitions+few_shot:micro_f1=0.6")
    assert (threshold.variant, threshold.metric, threshold.minimum) == ("definitions+few_shot", "micro_f1", 0.6)
    assert parse_threshold("accuracy=0.8").variant is None
    with pytest.raises(ValueError, match="names no variant"):
        parse_threshold(":accuracy=0.8")


def test_each_kind_offers_its_own_metrics():
    ner = task_from_dict({"name": "n", "kind": "ner", "labels": [{"name": "DRUG"}, {"name": "DOSE"}]})
    spans = pd.DataFrame({"example_id": ["a"], "text": ["took aspirin"],
                          "spans": [[{"start": 5, "end": 12, "label": "DRUG"}]]})
    metrics = gate_metrics(ner, load_dataset(spans, ner))
    assert metrics == {"micro_f1": True, "f1": True, "boundary_f1": False, "type_f1": False}

    multi = task_from_dict({"name": "m", "kind": "multilabel", "labels": [{"name": "a"}, {"name": "b"}]})
    labels = pd.DataFrame({"example_id": ["x"], "text": ["t"], "labels": [["a"]]})
    metrics = gate_metrics(multi, load_dataset(labels, multi))
    assert {name for name, interval in metrics.items() if interval} == {"accuracy", "macro_f1", "micro_f1", "f1"}
    assert "exact_match" in metrics and "hamming_loss" not in metrics


# --name, --dataset, --model

def test_name_sends_the_run_to_its_own_folder(project, models):
    assert run(write(project), "--name", "prompt-v2") == 0
    assert (project / "runs" / "prompt-v2" / "latest" / "report.html").exists()
    assert not (project / "runs" / "exp").exists()
    assert json.loads((project / "runs" / "prompt-v2" / "latest" / "provenance.json").read_text())["run_id"].startswith("prompt-v2-")
    # The report says which run, config and model it is about (the review: it named none of them).
    run_id = json.loads((project / "runs" / "prompt-v2" / "latest" / "provenance.json").read_text())["run_id"]
    html = (project / "runs" / "prompt-v2" / "latest" / "report.html").read_text()
    assert f"run {run_id}" in html and f"config {project / 'exp.yaml'}" in html and "model " in html


def test_a_bad_name_is_refused_as_an_override(project, models, capsys):
    assert run(write(project), "--name", "../elsewhere") == 2
    assert "name (overridden)" in capsys.readouterr().err and models == []


def test_dataset_replaces_the_configs_dataset(project, models):
    other = project / "elsewhere"
    other.mkdir()
    rows(4, prefix="o").to_json(other / "mine.jsonl", orient="records", lines=True)
    assert run(write(project), "--dataset", "elsewhere/mine.jsonl") == 0
    frame = predictions(project / "runs" / "exp")
    assert sorted(set(frame["example_id"])) == ["o0", "o1", "o2", "o3"]


def test_a_missing_dataset_is_refused_before_any_model_call(project, models, capsys):
    assert run(write(project), "--dataset", "nope.jsonl") == 2
    assert "nope.jsonl" in capsys.readouterr().err and models == []


def test_model_comes_from_a_model_config_file(project, models):
    model_file = project / "vllm.yaml"
    wanted = {"kind": "openai_compatible", "model": "qwen", "base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
    model_file.write_text(yaml.safe_dump(wanted))
    assert run(write(project), "--model", str(model_file)) == 0
    assert models == [wanted]
    assert yaml.safe_load((project / "runs" / "exp" / "latest" / "config.yaml").read_text())["model"] == wanted


def test_model_may_be_a_kind_that_needs_nothing_else(project, models):
    config = write(project, model={"kind": "openai_compatible", "model": "m", "api_key_env": None})
    assert run(config, "--model", "embedded") == 0
    assert models == [{"kind": "embedded"}]


def test_a_bad_model_is_refused_naming_the_file(project, models, capsys):
    (project / "typo.yaml").write_text(yaml.safe_dump({"kind": "openai_compatible", "model": "m", "timeout_sec": 5}))
    assert run(write(project), "--model", "typo.yaml") == 2
    err = capsys.readouterr().err
    assert "model config typo.yaml" in err and "timeout_sec" in err
    assert run(write(project), "--model", "missing.yaml") == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err
    assert run(write(project), "--model", "gpt-9") == 2
    assert "unknown model kind 'gpt-9'" in capsys.readouterr().err
    assert models == []
    with pytest.raises(ValueError, match="must hold a mapping"):
        (project / "list.yaml").write_text("- a\n")
        load_model_config(project / "list.yaml")


# limit

@pytest.mark.parametrize("limit", ["all", "ALL", 0])
def test_a_config_may_say_limit_all(project, limit):
    assert len(load_experiment(write(project, limit=limit)).dataset) == 10


def test_limit_all_on_the_command_line(project, models):
    assert run(write(project, limit=4), "--limit", "all") == 0
    assert len(predictions(project / "runs" / "exp")) == 20
    assert run(write(project), "--limit", "4") == 0
    assert len(predictions(project / "runs" / "exp")) == 8


@pytest.mark.parametrize("limit", ["ten", -3, 2.5, True])
def test_a_bad_limit_in_a_config_is_refused_naming_the_file_and_field(project, models, capsys, limit):
    config = write(project, limit=limit)
    assert run(config) == 2
    err = capsys.readouterr().err
    assert f"{config}: limit is {limit!r}" in err and "0 or all for every example" in err
    assert models == []


@pytest.mark.parametrize("limit", ["ten", "-3"])
def test_a_bad_limit_on_the_command_line_is_refused_naming_the_flag(project, models, capsys, limit):
    with pytest.raises(SystemExit) as exited:
        run(write(project), "--limit", limit)
    assert exited.value.code == 2
    assert f"--limit is {limit!r}" in capsys.readouterr().err and models == []


def test_parse_limit():
    assert [parse_limit(value) for value in (None, 0, 5, "7", " all ")] == [None, 0, 5, 7, 0]
    with pytest.raises(ValueError, match="limit is 'some'"):
        parse_limit("some")


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in ("(default: the config's model)", "(default: the config's dataset)", "(default: the config's name)",
                    "(default: the config's limit, else all)", "(repeatable; default: no gate)"):
        assert default in out


# run history

def test_each_run_keeps_its_own_folder_and_latest_points_at_the_newest(project, models, capsys):
    config = write(project)
    assert run(config) == 0
    assert run(config, "--variants", "zero_shot") == 0
    experiment = project / "runs" / "exp"
    folders = sorted(p for p in experiment.iterdir() if p.is_dir() and p.name != "latest")
    assert len(folders) == 2 and all((f / "report.html").exists() and (f / "predictions.parquet").exists()
                                     for f in folders)
    # One cache for both: the second run's zero_shot answers came from it.
    assert (experiment / "cache.sqlite").exists() and not any((f / "cache.sqlite").exists() for f in folders)
    newest = json.loads((experiment / "latest" / "provenance.json").read_text())["run_id"]
    assert load_run(experiment).run_id == newest and load_run(experiment).variants == ["zero_shot"]
    assert resolve_run_folder(experiment).name == newest
    assert "from cache: 10" in capsys.readouterr().out

    table = list_runs(project / "runs")
    assert list(table["name"]) == ["exp", "exp"] and list(table["latest"]) == [False, True]
    assert list(table["variants"]) == ["zero_shot, definitions", "zero_shot"]
    assert list(table["best_variant"]) == ["definitions", "zero_shot"] and list(table["best_score"]) == [1.0, 0.5]
    assert list(table["n"]) == [10, 10] and set(table["metric"]) == {"accuracy"}
    assert table.equals(list_runs(experiment))

    assert main(["runs", str(project / "runs")]) == 0
    listed = capsys.readouterr().out
    assert f"{newest} (latest)" in listed and "1.000 accuracy (definitions)" in listed


def test_a_folder_written_before_run_history_still_loads_and_lists(project, models):
    from workbench.experiments.runs import run_experiment, write_run

    experiment = load_experiment(write(project))
    old = write_run(run_experiment(experiment, model=FakeModel('{"label": "complaint"}'), progress=False),
                    experiment.run_dir)
    assert load_run(experiment.run_dir).run_id == old.run_id
    assert list(list_runs(project / "runs")["run_id"]) == [old.run_id]
    # A run written since is the one runs/<name> means, and both are listed.
    assert run(write(project)) == 0
    newest = load_run(experiment.run_dir)
    assert newest.run_id != old.run_id and newest.path.parent == experiment.run_dir
    assert list(list_runs(experiment.run_dir)["run_id"]) == [old.run_id, newest.run_id]


def test_listing_where_there_is_no_run_says_how_to_make_one(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 2
    assert "holds no run: `workbench run <config>`" in capsys.readouterr().err


def test_a_run_with_failed_requests_prints_what_the_model_said_and_exits_1(project, monkeypatch, capsys):
    def model_from_config(config, **_):
        return FakeModel(lambda request: RuntimeError("quota exceeded for this key: raise it in the console"))

    monkeypatch.setattr(config_module, "model_from_config", model_from_config)
    assert run(write(project, variants=["zero_shot"])) == 1
    out = capsys.readouterr().out
    assert "failed: 10" in out
    assert "request error (10 rows): RuntimeError: quota exceeded for this key: raise it in the console" in out


def test_a_model_folder_in_a_config_resolves_beside_the_config(project, tmp_path, monkeypatch):
    (project / "models" / "mine").mkdir(parents=True)
    config = write(project, model={"kind": "transformers", "base_model": "models/mine"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run from another folder: the path still means the project's
    experiment = load_experiment(config)
    assert experiment.model_config["base_model"] == str((project / "models" / "mine").resolve())
    assert experiment.source["model"]["base_model"] == experiment.model_config["base_model"]
