"""The loop's bookkeeping, without training: rounds are built in a .partial folder and renamed only
when finished, a failed round leaves the earlier ones untouched and resumes from its own cache,
round n+1 starts from round n's adapter, and the comparison names fixed, open and new points and
regressions. The model is a fake and the fine-tuning and re-test stages are replaced by stand-ins
that write what the real ones write (the real ones run in tests/integration/test_loop_cli.py)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from workbench.experiments import rounds
from workbench.experiments.config import load_experiment
from workbench.experiments.round_comparison import compare_rounds, write_loop_report
from workbench.experiments.rounds import RoundError, finished_rounds, load_rounds, run_round
from workbench.testing.fake_model import FakeModel
from workbench.trainingdata.scoring import ALL

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class WordsEncoder:
    """Each text a hashed bag of words: texts sharing words sit close, others far apart."""

    def encode(self, texts):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=256, alternate_sign=False, norm="l2").transform(texts).toarray() + 1e-6


@pytest.fixture
def experiment(tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "loop", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 12,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs")}))
    return load_experiment(config)


@pytest.fixture
def stand_ins(monkeypatch):
    """The fake model for every round (recording the lora_path each round asks for), and stand-ins
    for training and re-testing that write an adapter and a before/after table."""
    asked = []

    def model_from_config(config):
        asked.append(config.get("lora_path"))
        return FakeModel('{"label": "request"}')

    def fine_tune(train, work, settings, config, previous, progress):
        if fine_tune.fail:
            raise RuntimeError("training failed")
        (work / rounds.PEFT_ADAPTER).mkdir(parents=True, exist_ok=True)
        (work / rounds.ADAPTER).write_bytes(b"GGUF")
        fine_tune.started_from.append(previous.path / rounds.PEFT_ADAPTER if previous else None)
        return {"steps": 1, "losses": [1.0]}

    def re_test(examples, run, model, config, work, settings, experiment, points):
        tests = examples[examples["split"] == "test"]
        rows = [{"point_id": p, "cases": len(group), "metric": "accuracy", "base": 0.0, "tuned": 1.0, "verdict": "no clear difference",
                 "p_value": 0.5} for p, group in tests.groupby("point_id")]
        rows.append({"point_id": ALL, "cases": tests["example_id"].nunique(), "metric": "accuracy", "base": 0.2,
                     "tuned": 0.4, "verdict": re_test.verdict, "p_value": 0.3})
        (work / "finetune" / "lora").mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(rows)
        table.to_csv(work / "finetune" / "lora" / "before_after.csv", index=False)
        return table

    fine_tune.fail, fine_tune.started_from = False, []
    re_test.verdict = "no clear difference"
    monkeypatch.setattr("workbench.models.registry.model_from_config", model_from_config)
    monkeypatch.setattr(rounds, "_fine_tune", fine_tune)
    monkeypatch.setattr(rounds, "_re_test", re_test)
    return asked, fine_tune, re_test


def test_a_failed_round_leaves_the_last_one_untouched_and_resumes_from_its_cache(experiment, stand_ins, tmp_path):
    asked, fine_tune, _ = stand_ins
    folder = tmp_path / "rounds"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.number == 1 and first.path == folder / "1" and finished_rounds(folder) == [1]
    assert not (folder / "1.partial").exists() and (folder / "1" / "points.parquet").exists()
    assert first.record["counts"]["train_rows"] > 0 and asked == [None]  # round 1: the base model
    finished = (folder / "1" / "round.json").read_bytes()

    fine_tune.fail = True
    with pytest.raises(RuntimeError, match="training failed"):
        run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert finished_rounds(folder) == [1] and (folder / "2.partial").exists()
    assert (folder / "1" / "round.json").read_bytes() == finished  # the last finished round is untouched
    assert asked[-1] == str((folder / "1" / rounds.ADAPTER).resolve())  # round 2 runs on round 1's adapter

    fine_tune.fail = False
    second = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert second.number == 2 and finished_rounds(folder) == [1, 2] and not (folder / "2.partial").exists()
    assert second.run.stats["cache_hits"] == second.run.stats["rows"]  # the failed attempt's answers reused
    assert fine_tune.started_from[-1] == folder / "1" / rounds.PEFT_ADAPTER
    assert second.record["started_from"] == "round 1"


def test_round_two_tests_nothing_round_one_trained_on(experiment, stand_ins, tmp_path, monkeypatch):
    import workbench.trainingdata.examples as building

    folder = tmp_path / "rounds"
    run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    trained = set(load_rounds(folder)[0].frame("training_data/train_rows.parquet")["example_id"])
    real = building.build_training_data

    def build_with_seen_tests(*args, **kwargs):
        # Round 2's build puts two of round 1's training examples among its test cases, as a new
        # clustering can; the round must drop them (the model it starts from has seen their answers).
        data = real(*args, **kwargs)
        seen = data.examples[data.examples["example_id"].isin(trained)].head(2).assign(split="test", point_id="Pnew")
        assert len(seen) == 2
        data.examples = pd.concat([data.examples[~data.examples["example_id"].isin(seen["example_id"])], seen],
                                  ignore_index=True)
        return data

    monkeypatch.setattr(building, "build_training_data", build_with_seen_tests)
    run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    first, second = load_rounds(folder)
    examples = second.frame("training_data/examples.parquet")
    tests = set(examples.loc[examples["split"] == "test", "example_id"])
    assert trained and not tests & trained and second.record["counts"]["tests_seen_dropped"] == 2
    rows = second.frame("training_data/train_rows.parquet")
    assert rows["example_id"].is_unique and not set(rows["example_id"]) & tests
    replayed = rows[rows["replayed"]]
    assert set(replayed["example_id"]) <= trained
    assert len(replayed) == second.record["counts"]["replayed_rows"]
    # The same fake answers every round: every point of round 1 recurs in round 2, so none is "fixed".
    comparison = compare_rounds([first, second])
    assert (comparison.points.loc[comparison.points["round"] == 1, "recurs_as"] != "").all()
    assert "fixed" not in set(comparison.points.loc[comparison.points["round"] == 1, "status"])
    assert comparison.regressions.empty  # the same answers cannot regress
    path, _ = write_loop_report(folder)
    assert "round 2" in path.read_text()


def test_a_round_refuses_hosted_models_and_a_config_that_picks_its_own_adapter(tmp_path):
    config = tmp_path / "hosted.yaml"
    config.write_text(yaml.safe_dump({
        "name": "hosted", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"), "variants": ["zero_shot"],
        "model": {"kind": "openai_compatible", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}}))
    with pytest.raises(RoundError, match="fine-tunes the embedded model"):
        run_round(load_experiment(config), folder=tmp_path / "r", log=lambda _: None, encoder=WordsEncoder())
    data = yaml.safe_load(config.read_text())
    data["model"] = {"kind": "embedded", "lora_path": "x.gguf"}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(RoundError, match="lora_path"):
        run_round(load_experiment(config), folder=tmp_path / "r", log=lambda _: None, encoder=WordsEncoder())


def _write_round(folder, number, *, run_answers, points, table, train_rows):
    """A finished round folder by hand: a run whose zero_shot answers are `run_answers`
    (example_id -> label), its points (point_id -> member example_ids), its before/after table
    (point_id -> tuned score) and the examples it trained on."""
    from workbench.core.task import load_task
    from workbench.experiments.runs import Run, write_run

    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    dataset = pd.DataFrame({"example_id": list(run_answers), "text": [f"text {e}" for e in run_answers],
                            "label": ["fraud"] * len(run_answers)})
    predictions = pd.DataFrame({
        "example_id": list(run_answers), "variant": "zero_shot", "repeat": 0,
        "prediction": list(run_answers.values()), "raw_response": [json.dumps({"label": a}) for a in run_answers.values()],
        "parse_error": None, "request_error": None, "latency_s": 0.1, "tokens_in": 10, "tokens_out": 3,
        "cost": 0.0, "cached": False, "hallucinations": [[] for _ in run_answers], "reasoning": None,
        "finish_reason": "stop", "samples": None, "confidence": None})
    run = Run("loop", task, dataset, predictions, {}, {"run_id": f"r{number}"}, {"name": "loop"})
    path = folder / str(number)
    write_run(run, path)
    from workbench.core.frames import write_frame

    write_frame(pd.DataFrame({"point_id": list(points), "name": list(points), "size": [len(v) for v in points.values()],
                              "action": "fine-tune", "kind": "point", "example_ids": list(points.values())}),
                path / "points.parquet")
    (path / "training_data").mkdir()
    write_frame(pd.DataFrame({"example_id": train_rows, "split": "train", "point_id": "P"}),
                path / "training_data" / "train_rows.parquet")
    (path / "finetune" / "lora").mkdir(parents=True)
    pd.DataFrame([{"point_id": p, "cases": 2, "base": 0.0, "tuned": s, "verdict": "no clear difference"}
                  for p, s in table.items()]).to_csv(path / "finetune" / "lora" / "before_after.csv", index=False)
    (path / "round.json").write_text(json.dumps({"round": number, "variant": "zero_shot", "stages": {"variants": 1.0},
                                                 "started_from": "base model" if number == 1 else f"round {number - 1}",
                                                 "counts": {"errors": 3}}))


def test_the_comparison_names_fixed_open_and_new_points_and_regressions(tmp_path):
    # Round 1: a, b, c wrong, d right. P1 = {a, b} fixed on its tests; P2 = {c} improved but not perfect.
    _write_round(tmp_path, 1, run_answers={"a": "request", "b": "request", "c": "request", "d": "fraud"},
                 points={"P1": ["a", "b"], "P2": ["c"]}, table={"P1": 1.0, "P2": 0.5, ALL: 0.6}, train_rows=["a"])
    # Round 2: a, b now right; c still wrong (P2 recurs as Q1); d regressed; Q2 = {d} is new.
    _write_round(tmp_path, 2, run_answers={"a": "fraud", "b": "fraud", "c": "request", "d": "request"},
                 points={"Q1": ["c"], "Q2": ["d"]}, table={"Q1": 1.0, "Q2": 1.0, ALL: 0.8}, train_rows=["c"])
    comparison = compare_rounds(load_rounds(tmp_path))
    first = comparison.points[comparison.points["round"] == 1].set_index("point_id")
    assert first.loc["P1", "status"] == "fixed" and first.loc["P1", "members_wrong_next"] == 0.0
    assert first.loc["P2", "status"] == "improved" and first.loc["P2", "recurs_as"] == "Q1"
    assert first.loc["P2", "members_wrong_next"] == 1.0
    assert list(comparison.new_points["point_id"]) == ["Q2"]
    assert comparison.regressions.to_dict("records") == [{"round": 2, "example_id": "d", "text": "text d",
                                                          "trained_on": False}]
    summary = comparison.summary.set_index("round")
    assert summary.loc[1, "score"] == 0.25 and summary.loc[2, "score"] == 0.5
    # Round 2's run is scored again on the examples no round had trained on (round 1 trained on "a").
    assert summary.loc[2, "untouched"] == 3 and np.isclose(summary.loc[2, "score_untouched"], 1 / 3)
    assert (summary.loc[1, "base"], summary.loc[1, "tuned"]) == (0.0, 0.6)  # round 1's own before/after


def test_a_round_whose_model_tests_worse_is_kept_but_not_built_on(experiment, stand_ins, tmp_path):
    asked, fine_tune, re_test = stand_ins
    folder = tmp_path / "rounds"
    re_test.verdict = "worse"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.adapter is not None and first.record["accepted"] is False
    assert first.record["rejected_because"] == "worse than its start on all test cases"
    re_test.verdict = "better"
    second = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert asked[-1] is None and fine_tune.started_from[-1] is None  # round 2 starts from the base model again
    assert second.record["started_from"] == "base model" and second.record["accepted"] is True
    run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert asked[-1] == str((folder / "2" / rounds.ADAPTER).resolve())  # round 3 builds on round 2
    assert list(compare_rounds(load_rounds(folder)).summary["accepted"]) == [False, True, True]


def test_a_round_with_anchors_trains_on_pool_examples_that_balance_its_labels(experiment, stand_ins, tmp_path):
    from collections import Counter

    from workbench.experiments.rounds import RoundSettings

    # The fake model answers "request" to everything: the errors are every other label, unevenly.
    plain = run_round(experiment, folder=tmp_path / "plain", progress=False, log=lambda _: None,
                      encoder=WordsEncoder(), settings=RoundSettings(anchors=0.0))
    anchored = run_round(experiment, folder=tmp_path / "anchored", progress=False, log=lambda _: None,
                         encoder=WordsEncoder(), settings=RoundSettings(anchors=1.0))
    rows = plain.frame("training_data/train_rows.parquet")
    with_anchors = anchored.frame("training_data/train_rows.parquet")
    anchors = with_anchors[with_anchors["source"] == "anchors"]
    assert len(anchors) > 0 and set(anchors["example_id"]) <= set(experiment.examples["example_id"])
    spread = lambda frame: max(Counter(frame["target"]).values()) - min(Counter(frame["target"]).values())  # noqa: E731
    assert spread(with_anchors) < spread(rows)
    tests = set(anchored.frame("training_data/examples.parquet").query("split == 'test'")["example_id"])
    assert not tests & set(anchors["example_id"])
    assert anchored.record["settings"]["anchors"] == 1.0
