"""Several runs compared: arms, shared examples, Holm-adjusted paired tests, the answer matrix and its page."""

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from plotly.offline import get_plotlyjs

from workbench.core.data import validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.significance import holm
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import Run, load_run, run_experiment, write_run
from workbench.prompting.runner import run_variants
from workbench.reporting.compare_report import (
    ARM_COLUMNS,
    COMPARISON_COLUMNS,
    answer_matrix,
    comparison_arms,
    paired_comparisons,
    write_comparison,
)
from workbench.reporting.provenance import iso_time
from workbench.testing.fake_model import FakeModel

PROBE = "<script>alert(1)</script>"
ESCAPED_PROBE = "&lt;script&gt;alert(1)&lt;/script&gt;"
N = 60
TASK_FILE = Path(__file__).resolve().parents[2] / "data" / "complaint_triage" / "task.yaml"


def roll(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts: the fake models' dice."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 16**8


def classifier(gold: dict[str, str], labels: tuple[str, ...], skill: float, name: str) -> FakeModel:
    """Right with probability `skill`, drawn apart for prompts with and without definitions; else the next label."""

    def answer(request) -> str:
        system, text = request.messages[0]["content"], request.messages[-1]["content"].rsplit("Text: ", 1)[1].strip()
        right = roll(name, "Use these label definitions" in system, text) < skill
        label = gold[text] if right else labels[(labels.index(gold[text]) + 1) % len(labels)]
        return json.dumps({"label": label})

    return FakeModel(answer, name=name)


@pytest.fixture(scope="module")
def dataset(complaint_task, complaint_test):
    probe = pd.DataFrame([{"example_id": "probe", "text": f"{PROBE} My card was stolen.", "label": "fraud"}])
    return validate_dataset(pd.concat([probe, complaint_test.head(N - 1)], ignore_index=True), complaint_task)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, complaint_task, dataset):
    """One experiment (two variants) run on a strong and a weak fake model, written and loaded back."""
    root = tmp_path_factory.mktemp("compare")
    dataset.to_json(root / "test.jsonl", orient="records", lines=True)
    config = {"name": "triage", "task": str(TASK_FILE), "dataset": "test.jsonl",
              "variants": ["zero_shot", "definitions"], "runs_dir": str(root / "runs")}
    (root / "exp.yaml").write_text(yaml.safe_dump(config))
    gold = dict(zip(dataset["text"], dataset["label"]))
    runs = []
    for name, skill in (("strong-model", 0.9), ("weak-model", 0.45)):
        experiment = load_experiment(root / "exp.yaml")
        run = run_experiment(experiment, model=classifier(gold, complaint_task.label_names, skill, name),
                             progress=False)
        runs.append(load_run(write_run(run, root / run.run_id).path))
    return runs


def hand_run(task, dataset, answers: dict[str, dict[str, object]], run_id: str, model: str = "m") -> Run:
    """A run made by hand: `answers` maps variant -> example_id -> prediction (None: unreadable)."""
    rows = []
    for variant, by_example in answers.items():
        for example_id, prediction in by_example.items():
            rows.append({"variant": variant, "example_id": example_id, "repeat": 0, "raw_response": json.dumps(prediction),
                         "prediction": prediction, "parse_error": None if prediction is not None else "unreadable",
                         "request_error": None, "hallucinations": [], "reasoning": None, "finish_reason": "stop",
                         "latency_s": 0.1, "tokens_in": 10, "tokens_out": 3, "cost": 0.0, "cached": False,
                         "samples": 1, "confidence": np.nan})
    provenance = {"run_id": run_id, "started_at": "2026-12-03T10:15:00+00:00", "model": {"kind": "fake", "model": model}}
    return Run(name="hand", task=task, dataset=dataset, predictions=pd.DataFrame(rows), stats={},
               provenance=provenance, config={})


# Arms.


def test_two_models_give_four_arms_labelled_by_model_and_variant(two_runs):
    arms = comparison_arms(two_runs)
    assert list(arms.columns) == ARM_COLUMNS
    assert list(arms["arm"]) == ["strong-model · zero_shot", "strong-model · definitions",
                                 "weak-model · zero_shot", "weak-model · definitions"]
    assert list(arms["run_id"]) == [two_runs[0].run_id] * 2 + [two_runs[1].run_id] * 2
    assert list(arms["model"]) == ["fake strong-model"] * 2 + ["fake weak-model"] * 2
    assert (arms["examples"] == N).all() and (arms["dropped"] == 0).all() and (arms["rows"] == N).all()
    assert (arms["metric"] == "accuracy").all() and (arms["interval"] == "wilson").all()
    # On all of each run's examples the arm's value is the run's own headline accuracy.
    summary = pd.concat([run.summary() for run in two_runs], ignore_index=True)
    assert arms["value"].tolist() == pytest.approx(summary["accuracy"].tolist())
    assert ((arms["low"] <= arms["value"]) & (arms["value"] <= arms["high"])).all()
    assert arms["latency_p50_s"].notna().all()


def test_labels_show_the_run_when_one_model_ran_twice_and_only_the_variant_when_that_is_all_that_differs(
        complaint_task, dataset):
    ids = list(dataset["example_id"])
    answers = {"zero_shot": dict.fromkeys(ids, "fraud"), "definitions": dict.fromkeys(ids, "complaint")}
    first = hand_run(complaint_task, dataset, answers, "triage-20261203T101500Z-aaaa1111")
    again = hand_run(complaint_task, dataset, {"zero_shot": dict.fromkeys(ids, "request")},
                     "triage-20261204T101500Z-bbbb2222")
    assert list(comparison_arms([first, again])["arm"]) == [
        "aaaa1111 · zero_shot", "aaaa1111 · definitions", "bbbb2222 · zero_shot"]
    assert list(comparison_arms([first])["arm"]) == ["zero_shot", "definitions"]
    # One base model with and without an adapter: the short name alone would not tell them apart.
    tuned = replace(again, provenance={**again.provenance, "model": {"kind": "fake", "model": "m", "adapter": "p1"}})
    assert list(comparison_arms([first, tuned])["arm"])[-1] == "fake m with adapter p1 · zero_shot"


def test_only_the_shared_examples_are_scored_and_the_rest_are_counted_as_dropped(two_runs):
    strong, weak = two_runs
    kept = weak.predictions[~weak.predictions["example_id"].isin(["probe", *strong.dataset["example_id"][1:10]])]
    partial = replace(weak, predictions=kept)
    arms = comparison_arms([strong, partial])
    assert (arms["examples"] == N - 10).all()
    assert list(arms["dropped"]) == [10, 10, 0, 0]
    tests = paired_comparisons([strong, partial])
    assert (tests["examples"] == N - 10).all() and list(tests["dropped"]) == [10, 10, 10]
    matrix = answer_matrix([strong, partial])
    assert len(matrix) == N - 10 and "probe" not in set(matrix["example_id"])


# Paired tests.


def test_paired_tests_against_the_first_arm_are_holm_adjusted_and_verdicts_follow_the_adjusted_p(two_runs):
    tests = paired_comparisons(two_runs)
    assert list(tests.columns) == COMPARISON_COLUMNS
    assert (tests["baseline"] == "strong-model · zero_shot").all()
    assert list(tests["arm"]) == ["strong-model · definitions", "weak-model · zero_shot", "weak-model · definitions"]
    assert (tests["method"] == "mcnemar_score").all() and (tests["examples"] == N).all() and not tests["small"].any()
    assert tests["p_adjusted"].tolist() == pytest.approx(holm(tests["p_value"].tolist()))
    assert (tests["p_adjusted"] >= tests["p_value"]).all()
    for row in tests.to_dict("records"):
        assert row["difference"] == pytest.approx(row["a"] - row["b"])
        expected = ("no clear difference" if row["p_adjusted"] >= 0.05
                    else "better" if row["difference"] > 0 else "worse")
        assert row["verdict"] == expected
    # The weak model is clearly worse; the strong model's two prompts are close.
    assert list(tests["verdict"]) == ["no clear difference", "worse", "worse"]


def test_a_named_baseline_is_used_and_an_unknown_one_is_refused(two_runs):
    tests = paired_comparisons(two_runs, baseline="weak-model · zero_shot")
    assert (tests["baseline"] == "weak-model · zero_shot").all() and len(tests) == 3
    with pytest.raises(ValueError, match="baseline 'nope' is not an arm.*strong-model · zero_shot"):
        paired_comparisons(two_runs, baseline="nope")


# Refusals.


def test_runs_of_different_tasks_are_refused_naming_both_runs_and_what_differs(two_runs, complaint_task, ae_task):
    strong, weak = two_runs
    fewer = task_from_dict({"name": "triage", "kind": "classification",
                            "labels": [{"name": name} for name in complaint_task.label_names[:-1]] + [{"name": "spam"}]})
    with pytest.raises(ValueError, match="different label sets") as caught:
        comparison_arms([strong, replace(weak, task=fewer)])
    assert strong.run_id in str(caught.value) and weak.run_id in str(caught.value)
    assert "'spam'" in str(caught.value) and repr(complaint_task.label_names[-1]) in str(caught.value)
    with pytest.raises(ValueError, match="different kinds of task: classification .* and ner") as caught:
        paired_comparisons([strong, replace(weak, task=ae_task)])
    assert strong.run_id in str(caught.value) and weak.run_id in str(caught.value)


def test_runs_sharing_no_example_are_refused(two_runs):
    strong, weak = two_runs
    renamed = replace(weak, dataset=weak.dataset.assign(example_id="other-" + weak.dataset["example_id"]),
                      predictions=weak.predictions.assign(example_id="other-" + weak.predictions["example_id"]))
    with pytest.raises(ValueError, match="share no example_id") as caught:
        answer_matrix([strong, renamed])
    assert strong.run_id in str(caught.value) and weak.run_id in str(caught.value)


def test_one_arm_a_run_given_twice_and_shared_examples_with_other_gold_are_refused(two_runs, complaint_task, dataset):
    strong, _weak = two_runs
    single = hand_run(complaint_task, dataset, {"zero_shot": dict.fromkeys(dataset["example_id"], "fraud")}, "one-run")
    with pytest.raises(ValueError, match="only one arm"):
        comparison_arms([single])
    with pytest.raises(ValueError, match="given twice"):
        comparison_arms([strong, strong])
    with pytest.raises(ValueError, match="no runs"):
        comparison_arms([])
    relabelled = dataset.assign(label=["request"] * len(dataset))
    other = hand_run(complaint_task, relabelled, {"zero_shot": dict.fromkeys(dataset["example_id"], "fraud")}, "other")
    with pytest.raises(ValueError, match="different label .*compare runs scored against the same dataset"):
        comparison_arms([strong, other])


# The answer matrix.


def test_answer_matrix_marks_right_answers_and_differences_by_hand(complaint_task):
    dataset = validate_dataset(pd.DataFrame({
        "example_id": ["a", "b", "c", "d"], "text": ["one", "two", "three", "four"],
        "label": ["fraud", "request", "complaint", "hardship"]}), complaint_task)
    first = hand_run(complaint_task, dataset, {"zero_shot": {"a": "fraud", "b": "request", "c": "fraud", "d": None}},
                     "run-1", model="alpha")
    second = hand_run(complaint_task, dataset, {"zero_shot": {"a": "fraud", "b": "fraud", "c": "fraud", "d": None}},
                      "run-2", model="beta")
    matrix = answer_matrix([first, second])
    assert list(matrix.columns) == ["example_id", "text", "gold", "answer: alpha · zero_shot", "answer: beta · zero_shot",
                                    "right: alpha · zero_shot", "right: beta · zero_shot", "differs", "arms_right"]
    assert list(matrix["differs"]) == [False, True, False, False]  # two unreadable answers are the same answer
    assert list(matrix["right: alpha · zero_shot"]) == [True, True, False, False]
    assert list(matrix["right: beta · zero_shot"]) == [True, False, False, False]
    assert list(matrix["arms_right"]) == [2, 1, 0, 0]
    assert list(matrix["answer: alpha · zero_shot"]) == ["fraud", "request", "fraud", "no usable answer"]
    assert list(matrix["gold"]) == ["fraud", "request", "complaint", "hardship"]


# The page.


def test_the_page_names_every_run_and_arm_draws_both_charts_has_the_filter_and_escapes_text(two_runs, tmp_path):
    path = write_comparison(tmp_path / "nested" / "compare.html", two_runs, title="Triage <b>models</b>")
    document = path.read_text(encoding="utf-8")
    bundle = get_plotlyjs()
    assert document.count(bundle) == 1
    rest = document.replace(bundle, "")
    assert re.findall(r'<div id="chart-([a-z_]+)" class="plotly-graph-div"', rest) == ["arms", "quality_vs_cost"]
    assert "<title>Triage &lt;b&gt;models&lt;/b&gt;</title>" in rest
    for run in two_runs:
        assert run.run_id in rest
    assert "fake strong-model" in rest and "fake weak-model" in rest
    assert iso_time(two_runs[0].provenance["started_at"]) in rest
    for arm in comparison_arms(two_runs)["arm"]:
        assert f"<th>{arm}</th>" in rest  # a column of the answer matrix
    assert '<input type="checkbox" id="differences-only">' in rest
    assert 'data-differs="true"' in rest and 'data-differs="false"' in rest
    assert "<script>alert(1)" not in rest and f"{ESCAPED_PROBE} My card was stolen." in rest
    assert "significantly worse" in rest and "Holm" in rest
    assert "Small sample" not in rest  # 60 shared examples
    assert "✗" in rest and 'class="wrong"' in rest
    assert "http://" not in rest and "https://" not in rest  # nothing to fetch


def test_a_capped_matrix_says_showing_k_of_n_with_differences_first(two_runs, tmp_path):
    matrix = answer_matrix(two_runs)
    document = write_comparison(tmp_path / "capped.html", two_runs, max_rows=5).read_text(encoding="utf-8")
    assert f"showing 5 of {N} (differences first)" in document
    shown = re.findall(r'<tr data-differs="(true|false)">', document)
    assert len(shown) == 5 and shown == ["true"] * min(5, int(matrix["differs"].sum())) + ["false"] * max(
        0, 5 - int(matrix["differs"].sum()))
    full = write_comparison(tmp_path / "full.html", two_runs).read_text(encoding="utf-8")
    assert "showing" not in full.replace(get_plotlyjs(), "").split('id="answers"')[1].split("</p>")[0]


def test_an_ner_pair_uses_the_bootstrap_and_says_small_sample(tmp_path, ae_task, ae_test):
    dataset = ae_test.head(20)
    gold = dict(zip(dataset["text"], dataset["spans"]))

    def model(skill: float, name: str) -> FakeModel:
        def answer(request) -> str:
            text = request.messages[-1]["content"].rsplit("Text: ", 1)[1].strip()
            kept = [span for index, span in enumerate(gold[text]) if roll(name, text, index) < skill]
            return json.dumps({"entities": [{"text": text[s["start"]:s["end"]], "label": s["label"]} for s in kept]})
        return FakeModel(answer, name=name)

    runs = []
    for index, (name, skill) in enumerate((("good", 0.9), ("poor", 0.3))):
        predictions = run_variants(ae_task, dataset, ["zero_shot"], model(skill, name), progress=False)
        runs.append(Run(name="ae", task=ae_task, dataset=dataset, predictions=predictions, stats={}, config={},
                        provenance={"run_id": f"ae-{index}", "model": {"kind": "fake", "model": name}}))
    arms = comparison_arms(runs)
    assert list(arms["arm"]) == ["good · zero_shot", "poor · zero_shot"]
    assert (arms["metric"] == "micro_f1").all() and (arms["interval"] == "bca_bootstrap").all()
    tests = paired_comparisons(runs)
    assert list(tests["method"]) == ["bca_bootstrap"] and bool(tests["small"].iloc[0])
    assert tests["p_adjusted"].iloc[0] == pytest.approx(tests["p_value"].iloc[0])  # one comparison: Holm is p
    assert tests["verdict"].iloc[0] == ("worse" if tests["p_adjusted"].iloc[0] < 0.05 else "no clear difference")
    matrix = answer_matrix(runs)
    assert matrix["right: good · zero_shot"].sum() >= matrix["right: poor · zero_shot"].sum()
    document = write_comparison(tmp_path / "ner.html", runs).read_text(encoding="utf-8")
    assert "Small sample: only 20 shared examples" in document and "small sample</span>" in document


def test_a_multilabel_pair_compares_too():
    task = task_from_dict({"name": "topics", "kind": "multilabel", "labels": [
        {"name": "billing"}, {"name": "bugs"}, {"name": "design"}]})
    labels = [["billing"], ["bugs"], ["design"], ["billing", "design"], [], ["bugs", "design"]] * 3
    dataset = validate_dataset(pd.DataFrame({"example_id": [f"r{i}" for i in range(18)],
                                             "text": [f"Review {i}." for i in range(18)], "labels": labels}), task)
    right = dict(zip(dataset["example_id"], dataset["labels"]))
    first = hand_run(task, dataset, {"zero_shot": right}, "topics-1", model="alpha")
    second = hand_run(task, dataset, {"zero_shot": {k: v[:1] for k, v in right.items()}}, "topics-2", model="beta")
    tests = paired_comparisons([first, second])
    assert list(tests["method"]) == ["bca_bootstrap"] and tests["difference"].iloc[0] < 0
    matrix = answer_matrix([first, second])
    assert list(matrix["differs"]) == [len(v) > 1 for v in dataset["labels"]]
    assert matrix["answer: beta · zero_shot"].iloc[4] == "no labels"
