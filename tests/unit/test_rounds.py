"""The loop's bookkeeping, without training: rounds are built in a .partial folder and renamed only
when finished, a failed round leaves the earlier ones untouched and resumes from its own cache,
round n+1 starts from round n's adapter, and the comparison names fixed, open and new points and
regressions. The model is a fake and the fine-tuning and re-test stages are replaced by stand-ins
that write what the real ones write (the real ones run in tests/integration/test_notebooks.py:
notebook 06's round, and `workbench loop` continuing it)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from workbench.experiments import rounds
from workbench.experiments.config import load_experiment
from workbench.experiments.round_comparison import compare_rounds, write_loop_report
from workbench.experiments.rounds import RoundError, RoundSettings, finished_rounds, load_rounds, run_round
from workbench.models.registry import model_from_config as real_model_from_config
from workbench.testing.fake_model import FakeModel
from workbench.testing.openai_stub import StubConfig, StubLoraModule, StubServer
from workbench.trainingdata.scoring import ALL_TEST_CASES

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

    def re_test(examples, run, model, config, work, settings, experiment, points, served=None):
        tests = examples[examples["split"] == "test"]
        re_test.tested.append(tests)
        re_test.served.append(served)
        rows = [{"point_id": p, "cases": len(group), "metric": "accuracy", "base": re_test.point_base, "tuned": 1.0,
                 "verdict": "no clear difference", "p_value": 0.5}
                for p, group in tests.groupby("point_id") if p != "regression"]
        for point_id, (base, tuned) in re_test.figures.items():
            cases = tests.loc[tests["point_id"] == point_id, "example_id"].nunique() if point_id != ALL_TEST_CASES else (
                tests["example_id"].nunique())
            rows.append({"point_id": point_id, "cases": max(cases, 1), "metric": "accuracy", "base": base,
                         "tuned": tuned, "difference": tuned - base, "low": tuned - base - 0.2,
                         "high": tuned - base + 0.2, "verdict": re_test.verdict, "p_value": 0.3})
        (work / "finetune" / "lora").mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(rows)
        table.to_csv(work / "finetune" / "lora" / "before_after.csv", index=False)
        # The answers the before/after used, as the real one writes them: the start ("base")
        # answers like the fake model, the tuned model gets every test case right.
        cases = tests.drop_duplicates("example_id")
        answers = pd.concat([pd.DataFrame({"variant": "base", "example_id": cases["example_id"], "repeat": 0,
                                           "prediction": "request"}),
                             pd.DataFrame({"variant": "tuned", "example_id": cases["example_id"], "repeat": 0,
                                           "prediction": cases["target"]})], ignore_index=True)
        from workbench.core.frames import write_frame

        write_frame(answers, work / "finetune" / "lora" / "predictions.parquet")
        best = None
        if re_test.best_base is not None:  # the start model on its best prompt, on the same cases
            best = table.assign(base=[re_test.best_base.get(p, b) for p, b in zip(table["point_id"], table["base"])])
        return table, best

    fine_tune.fail, fine_tune.started_from = False, []
    re_test.verdict, re_test.point_base, re_test.tested, re_test.served = "no clear difference", 0.0, [], []
    re_test.figures = {ALL_TEST_CASES: (0.2, 0.4), "regression": (0.9, 0.9)}  # point_id -> (base, tuned)
    re_test.best_base = None  # point_id -> the start model's score with its best prompt
    monkeypatch.setattr("workbench.models.registry.model_from_config", model_from_config)
    monkeypatch.setattr(rounds, "_fine_tune", fine_tune)
    monkeypatch.setattr(rounds, "_re_test", re_test)
    return asked, fine_tune, re_test


@pytest.fixture
def arm_stand_ins(stand_ins, monkeypatch):
    """Stand-ins for a reference arm's training (writes its adapter, records what it was given)
    and answers (right on `answer.right` of each arm's test cases: arm -> share)."""
    from workbench.experiments import arms

    def train(rows, folder, training, config, start_from, progress, launch=None):
        (folder / "adapter").mkdir(parents=True, exist_ok=True)
        (folder / "adapter.gguf").write_bytes(b"GGUF")
        train.calls.append({"arm": folder.name, "rows": rows, "max_steps": training.max_steps, "training": training,
                            "start_from": start_from})
        return training.max_steps

    def answer(model, examples, task, variant, cache, options, progress):
        cases = examples[examples["split"] == "test"].drop_duplicates("example_id").reset_index(drop=True)
        arm = answer.asked_for[-1] if answer.asked_for else None
        right = int(round(answer.right.get(arm, 0.0) * len(cases)))
        predictions = [t if i < right else ("fraud" if t != "fraud" else "request")
                       for i, t in enumerate(cases["target"])]
        return pd.DataFrame({"variant": variant, "example_id": cases["example_id"], "repeat": 0,
                             "prediction": predictions})

    asked, fine_tune, re_test = stand_ins
    real_model = __import__("workbench.models.registry", fromlist=["x"]).model_from_config

    def model_for_arm(config):
        # The arm is named by the folder of the adapter it asks for: finetune/<arm>/adapter.gguf.
        if config.get("lora_path"):
            answer.asked_for.append(__import__("pathlib").Path(config["lora_path"]).parent.name)
        return real_model(config)

    train.calls, answer.right, answer.asked_for = [], {}, []
    monkeypatch.setattr(arms, "train_arm", train)
    monkeypatch.setattr(arms, "answer_arm", answer)
    monkeypatch.setattr("workbench.models.registry.model_from_config", model_for_arm)
    return asked, fine_tune, re_test, train, answer


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
    assert len(replayed) == second.record["counts"]["replayed_rows"] == 2
    # examples.parquet holds every row the round trained on, the replayed ones as source "replay"
    # (what `workbench export` and `finetune` read from a round folder).
    trains = examples[examples["split"] == "train"]
    assert set(trains["example_id"]) == set(rows["example_id"])
    assert set(trains.loc[trains["source"] == "replay", "example_id"]) == set(replayed["example_id"])
    # The same fake answers every round: every point of round 1 recurs in round 2, so none is "fixed".
    comparison = compare_rounds([first, second])
    assert (comparison.points.loc[comparison.points["round"] == 1, "recurs_as"] != "").all()
    assert "fixed" not in set(comparison.points.loc[comparison.points["round"] == 1, "status"])
    assert comparison.regressions.empty  # the same answers cannot regress
    path, _ = write_loop_report(folder)
    assert "round 2" in path.read_text()


def test_a_round_builds_the_training_data_workbench_data_builds_from_its_run_and_points(
        experiment, stand_ins, tmp_path, monkeypatch):
    """The loop and the commands share one function per stage (`workbench.experiments.stages`):
    `workbench data` on a finished round 1 (no replayed rows) with the round's settings rebuilds the
    round's training data row for row."""
    from workbench.cli.main import main
    from workbench.core.frames import read_frame
    from workbench.points import encoder as encoders

    monkeypatch.setattr(encoders, "default_encoder", lambda: encoders.CachedEncoder(WordsEncoder()))
    done = run_round(experiment, folder=tmp_path / "rounds", progress=False, log=lambda _: None,
                     encoder=WordsEncoder())
    built = done.frame("training_data/examples.parquet")
    assert (built["split"] == "test").any() and (built["split"] == "train").any()
    assert main(["data", str(done.path), "--overwrite", "--train-variant", done.record["variant"],
                 "--anchors", str(done.record["settings"]["anchors"])]) == 0
    rebuilt = read_frame(done.path / "training_data" / "examples.parquet")
    columns = ["point_id", "split", "source", "example_id", "text", "target", "answer"]
    pd.testing.assert_frame_equal(rebuilt[columns], built[columns])
    assert list(rebuilt["messages"].map(str)) == list(built["messages"].map(str))


def test_a_rounds_training_rows_use_the_configs_own_template_of_the_training_variant(tmp_path, stand_ins):
    """A config's templates: folder reaches the loop's training rows as it reaches `workbench data`
    (the round used to render them from the packaged templates whatever the config said)."""
    from workbench.prompting.templates import TEMPLATE_DIR

    (tmp_path / "prompts").mkdir()
    house = (TEMPLATE_DIR / "tuned.classification.v1.jinja").read_text().replace(
        "{% block user %}", "{% block user %}\nHouse style: tickets only.")
    (tmp_path / "prompts" / "tuned.classification.v1.jinja").write_text(house)
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "loop", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 12, "templates": "prompts",
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs")}))
    done = run_round(load_experiment(config), folder=tmp_path / "rounds", progress=False, log=lambda _: None,
                     encoder=WordsEncoder())
    rows = done.frame("training_data/train_rows.parquet")
    assert len(rows) > 0
    assert all("House style: tickets only." in list(messages)[1]["content"] for messages in rows["messages"])


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


def _write_round(folder, number, *, run_answers, points, table, train_rows, base=None, started_from=None,
                 accepted=None):
    """A finished round folder by hand: a run whose zero_shot answers are `run_answers`
    (example_id -> label), its points (point_id -> member example_ids), its before/after table
    (point_id -> tuned score; `base`: point_id -> base score, default 0.0) and the examples it
    trained on; `started_from` the round it started from (default the one before)."""
    base = base or {}
    if started_from is None:
        started_from = "base model" if number == 1 else f"round {number - 1}"
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
    pd.DataFrame([{"point_id": p, "cases": 2, "base": base.get(p, 0.0), "tuned": s, "verdict": "no clear difference"}
                  for p, s in table.items()]).to_csv(path / "finetune" / "lora" / "before_after.csv", index=False)
    record = {"round": number, "variant": "zero_shot", "stages": {"variants": 1.0}, "started_from": started_from,
              "counts": {"errors": 3}}
    if accepted is not None:
        record["accepted"] = accepted
    (path / "round.json").write_text(json.dumps(record))


def test_the_comparison_names_fixed_open_and_new_points_and_regressions(tmp_path):
    # Round 1: a, b, c wrong, d right. P1 = {a, b} fixed on its tests; P2 = {c} improved but not perfect.
    _write_round(tmp_path, 1, run_answers={"a": "request", "b": "request", "c": "request", "d": "fraud"},
                 points={"P1": ["a", "b"], "P2": ["c"]}, table={"P1": 1.0, "P2": 0.5, ALL_TEST_CASES: 0.6}, train_rows=["a"])
    # Round 2: a, b now right; c still wrong (P2 recurs as Q1); d regressed; Q2 = {d} is new.
    _write_round(tmp_path, 2, run_answers={"a": "fraud", "b": "fraud", "c": "request", "d": "request"},
                 points={"Q1": ["c"], "Q2": ["d"]}, table={"Q1": 1.0, "Q2": 1.0, ALL_TEST_CASES: 0.8}, train_rows=["c"])
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
    # 0.433 -> 0.313: the paired test says "no clear difference" on a few dozen cases; the margin
    # gate rejects it all the same.
    re_test.figures[ALL_TEST_CASES] = (0.433, 0.313)
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.adapter is not None and first.record["accepted"] is False and first.record["margin"] == 0.02
    assert first.record["rejected_because"].startswith("more than the margin 0.02 below its start on all test cases "
                                                       "(0.433 -> 0.313, difference -0.120")
    assert [c["passed"] for c in first.record["gate"]] == [False, True]
    re_test.figures[ALL_TEST_CASES] = (0.3, 0.5)
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
                      encoder=WordsEncoder(), settings=RoundSettings(anchor_share=0.0))
    anchored = run_round(experiment, folder=tmp_path / "anchored", progress=False, log=lambda _: None,
                         encoder=WordsEncoder(), settings=RoundSettings(anchor_share=1.0))
    rows = plain.frame("training_data/train_rows.parquet")
    with_anchors = anchored.frame("training_data/train_rows.parquet")
    anchors = with_anchors[with_anchors["source"] == "anchors"]
    assert len(anchors) > 0 and set(anchors["example_id"]) <= set(experiment.examples["example_id"])
    spread = lambda frame: max(Counter(frame["target"]).values()) - min(Counter(frame["target"]).values())  # noqa: E731
    assert spread(with_anchors) < spread(rows)
    tests = set(anchored.frame("training_data/examples.parquet").query("split == 'test'")["example_id"])
    assert not tests & set(anchors["example_id"])
    assert anchored.record["settings"]["anchors"] == 1.0


def test_a_point_the_base_model_already_had_right_is_not_fixed(tmp_path):
    # P1: base 1.0 and tuned 1.0 on its test cases (neighbours the base gets right): nothing fixed.
    # P2: base 0.5 -> 1.0, no next round: fixed. P3: 0.5 -> 0.5 unchanged; P4: 1.0 -> 0.5 worse
    # (a broken point is not "already right"); P5: 0.0 -> 0.5 improved; P6 has no test cases.
    _write_round(tmp_path, 1, run_answers={e: "request" for e in "abcdef"},
                 points={"P1": ["a"], "P2": ["b"], "P3": ["c"], "P4": ["d"], "P5": ["e"], "P6": ["f"]},
                 table={"P1": 1.0, "P2": 1.0, "P3": 0.5, "P4": 0.5, "P5": 0.5, ALL_TEST_CASES: 0.7},
                 base={"P1": 1.0, "P2": 0.5, "P3": 0.5, "P4": 1.0, "P5": 0.0, ALL_TEST_CASES: 0.6}, train_rows=["a"])
    comparison = compare_rounds(load_rounds(tmp_path))
    status = comparison.points.set_index("point_id")["status"].to_dict()
    assert status == {"P1": "already right", "P2": "fixed", "P3": "unchanged", "P4": "worse", "P5": "improved",
                      "P6": "no test cases"}
    from workbench.experiments.round_comparison import STATUSES

    assert set(status.values()) == set(STATUSES)
    path, _ = write_loop_report(tmp_path)
    html = path.read_text()
    from workbench.reporting.rounds_report import STATUS_COLOURS

    # Every status has its own colour, and green is the fixed point's alone.
    assert set(STATUS_COLOURS) == set(STATUSES) and len(set(STATUS_COLOURS.values())) == len(STATUSES)
    assert 'class="badge status-already-right"' in html
    assert f".status-already-right {{ background: {STATUS_COLOURS['already right']}" in html
    assert STATUS_COLOURS["already right"] != STATUS_COLOURS["fixed"]


def test_a_fix_is_confirmed_only_by_a_next_round_that_built_on_it(tmp_path):
    from workbench.experiments.round_comparison import point_status

    assert point_status(0.5, 1.0, 2, recurs=True) == "improved"
    assert point_status(0.5, 1.0, 2) == "fixed" and point_status(1.0, 1.0, 2) == "already right"
    assert point_status(0.1 + 0.2, 0.3, 3) == "unchanged"  # float noise is not a change
    # Round 1 was rejected; round 2 started from the base model again, and P1's members recur in
    # it. That says nothing of round 1's model (round 2 never ran it), so P1 stays "fixed" on its
    # own before/after, marked as not built on; and round 1's training rows were never shown to
    # round 2's model, so they count as untouched there.
    _write_round(tmp_path, 1, run_answers={"a": "request", "b": "request"}, points={"P1": ["a", "b"]},
                 table={"P1": 1.0, ALL_TEST_CASES: 0.4}, base={ALL_TEST_CASES: 0.6}, train_rows=["a"], accepted=False)
    _write_round(tmp_path, 2, run_answers={"a": "request", "b": "request"}, points={"Q1": ["a", "b"]},
                 table={"Q1": 1.0, ALL_TEST_CASES: 0.6}, train_rows=["b"], started_from="base model", accepted=True)
    comparison = compare_rounds(load_rounds(tmp_path))
    first = comparison.points[comparison.points["round"] == 1].iloc[0]
    assert first["status"] == "fixed" and first["recurs_as"] == "Q1" and first["accepted"] == False  # noqa: E712
    summary = comparison.summary.set_index("round")
    assert summary.loc[2, "untouched"] == 2  # round 1 (rejected) trained on "a"; round 2's model never saw it


def _accepting(re_test):
    re_test.figures.update({ALL_TEST_CASES: (0.3, 0.5), "regression": (0.9, 0.9)})


def test_the_gate_rejects_a_round_worse_on_the_regression_set_and_accepts_one_within_the_margin(
        experiment, stand_ins, tmp_path):
    from workbench.experiments.rounds import RoundSettings, accept_gate

    asked, fine_tune, re_test = stand_ins
    # Better on the round's test cases, 0.10 worse on the regression set: harm elsewhere, rejected.
    re_test.figures.update({ALL_TEST_CASES: (0.3, 0.5), "regression": (0.9, 0.8)})
    first = run_round(experiment, folder=tmp_path / "a", progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.record["accepted"] is False
    because = first.record["rejected_because"]
    assert "the regression set (0.900 -> 0.800, difference -0.100, 95% interval -0.300 to +0.100" in because
    assert "all test cases" not in because
    gate = {check["set"]: check for check in first.record["gate"]}
    assert gate["the regression set"]["passed"] is False and gate["all test cases"]["passed"] is True
    # 0.02 below on both sets is within the default margin (not beyond it): accepted.
    re_test.figures.update({ALL_TEST_CASES: (0.32, 0.30), "regression": (0.90, 0.88)})
    second = run_round(experiment, folder=tmp_path / "b", progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert second.record["accepted"] is True and second.record["rejected_because"] is None
    # A wider stated margin accepts what the default rejects; a regression set of no cases is not checked.
    table = pd.DataFrame([{"point_id": ALL_TEST_CASES, "cases": 20, "base": 0.5, "tuned": 0.55},
                          {"point_id": "regression", "cases": 30, "base": 0.9, "tuned": 0.8}])
    assert accept_gate(table, 0.2)[1] is None and accept_gate(table, 0.02)[1] is not None
    assert accept_gate(table.iloc[:1], 0.02)[1] is None
    with pytest.raises(RoundError, match="--margin"):
        run_round(experiment, folder=tmp_path / "c", settings=RoundSettings(margin=-0.1), log=lambda _: None,
                  encoder=WordsEncoder())


def test_replay_and_seen_tests_follow_the_chain_of_accepted_rounds_only(experiment, stand_ins, tmp_path):
    asked, fine_tune, re_test = stand_ins
    folder = tmp_path / "rounds"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.record["accepted"] is True
    round_one_tests = set(first.frame("training_data/examples.parquet").query("split == 'test'")["example_id"])
    # Round 2 (from round 1's model) is rejected. Its training rows, as if it had also trained on
    # one of round 1's test cases, must neither be replayed nor count as seen by round 3's model,
    # which starts from round 1's again.
    re_test.figures[ALL_TEST_CASES] = (0.5, 0.2)
    second = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert second.record["accepted"] is False and second.record["start_round"] == 1
    from workbench.core.frames import read_frame, write_frame

    rows_path = second.path / "training_data" / "train_rows.parquet"
    rows = read_frame(rows_path)
    extra = first.frame("training_data/examples.parquet").query("split == 'test'").head(1)
    only_two = extra["example_id"].iloc[0]
    write_frame(pd.concat([rows, extra.assign(split="train", replayed=False)], ignore_index=True), rows_path)
    _accepting(re_test)
    third = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert third.record["started_from"] == "round 1" and third.record["chain"] == [1]
    tested = set(third.frame("training_data/examples.parquet").query("split == 'test'")["example_id"])
    assert only_two in round_one_tests and only_two in tested  # not dropped: round 1's model never trained on it
    replayed = third.frame("training_data/train_rows.parquet").query("replayed")
    assert only_two not in set(replayed["example_id"])


def test_a_test_case_near_a_row_the_start_model_trained_on_is_dropped(experiment, stand_ins, tmp_path, monkeypatch):
    import workbench.trainingdata.examples as building

    folder = tmp_path / "rounds"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    trained = first.frame("training_data/train_rows.parquet")
    real = building.build_training_data

    def build_with_a_near_duplicate_test(*args, **kwargs):
        # Round 2's build holds a test case with a new id whose text is a round-1 training row's,
        # shouted: equal once normalised, so the start model has seen its answer.
        data = real(*args, **kwargs)
        row = trained.iloc[[0]][[c for c in building.TRAINING_COLUMNS]].assign(
            example_id="near-1", split="test", point_id="regression", source="regression",
            text=trained["text"].iloc[0].upper() + "  ")
        data.examples = pd.concat([data.examples, row], ignore_index=True)
        return data

    monkeypatch.setattr(building, "build_training_data", build_with_a_near_duplicate_test)
    second = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    examples = second.frame("training_data/examples.parquet")
    assert "near-1" not in set(examples["example_id"])
    assert second.record["counts"]["tests_near_seen_dropped"] == 1
    assert second.record["counts"]["tests_seen_dropped"] >= 1


def test_settings_that_change_what_a_round_means_are_refused_unless_forced(experiment, stand_ins, tmp_path):
    from workbench.experiments.rounds import RoundSettings

    asked, _, _ = stand_ins
    folder = tmp_path / "rounds"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.record["fingerprint"]["anchors"] == RoundSettings().anchor_share
    calls = len(asked)
    with pytest.raises(RoundError, match=r"--anchors: 1\.0 before, 0\.5 now"):
        run_round(experiment, folder=folder, settings=RoundSettings(anchor_share=0.5), log=lambda _: None,
                  encoder=WordsEncoder())
    with pytest.raises(RoundError, match="--margin"):
        run_round(experiment, folder=folder, settings=RoundSettings(margin=0.05), log=lambda _: None,
                  encoder=WordsEncoder())
    fewer = load_experiment(tmp_path / "loop.yaml", limit=10)
    with pytest.raises(RoundError, match=r"the examples evaluated \(--limit"):
        run_round(fewer, folder=folder, log=lambda _: None, encoder=WordsEncoder())
    assert len(asked) == calls and finished_rounds(folder) == [1]  # refused before any model call
    second = run_round(experiment, folder=folder, settings=RoundSettings(anchor_share=0.5), force=True, progress=False,
                       log=lambda _: None, encoder=WordsEncoder())
    assert second.record["forced"] == ["--anchors: 1.0 before, 0.5 now"]
    assert second.record["fingerprint"]["anchors"] == 0.5


def test_a_round_refuses_what_it_cannot_use_before_any_model_call_or_training(experiment, stand_ins, tmp_path,
                                                                              monkeypatch):
    import workbench.trainingdata.examples as building
    from workbench.experiments.rounds import RoundSettings
    from workbench.finetune.lora import AdapterSettings

    asked, fine_tune, _ = stand_ins
    with pytest.raises(RoundError, match="--train-variant few_shot shows few-shot examples"):
        run_round(experiment, folder=tmp_path / "a", settings=RoundSettings(variant="few_shot"), log=lambda _: None,
                  encoder=WordsEncoder())
    with pytest.raises(RoundError, match="LoRA adapters only: use method 'lora'"):
        run_round(experiment, folder=tmp_path / "a",
                  settings=RoundSettings(training=AdapterSettings(method="prompt_tuning")), log=lambda _: None,
                  encoder=WordsEncoder())
    assert asked == []  # no model was made, let alone asked
    real = building.build_training_data

    def build_without_tests(*args, **kwargs):
        data = real(*args, **kwargs)
        data.examples = data.examples[data.examples["split"] == "train"].reset_index(drop=True)
        return data

    monkeypatch.setattr(building, "build_training_data", build_without_tests)
    with pytest.raises(RoundError, match="no test case .* labelled pool"):
        run_round(experiment, folder=tmp_path / "b", progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert fine_tune.started_from == []  # refused before training


def test_the_gate_measures_the_tuned_model_against_its_starts_best_prompt(experiment, stand_ins, tmp_path):
    """The tuned model answers the compact prompt, which lists no labels: the base model given that
    prompt is a straw man. Beating it (0.2 -> 0.4) while falling below the base model's best prompt
    (0.6) by more than the margin is a rejection, and round.json says which prompt the start used."""
    _, _, re_test = stand_ins
    re_test.best_base = {ALL_TEST_CASES: 0.6}
    first = run_round(experiment, folder=tmp_path / "rounds", progress=False, log=lambda _: None,
                      encoder=WordsEncoder())
    assert not first.record["accepted"]
    check = next(c for c in first.record["gate"] if c["set"] == "all test cases")
    assert check["start_prompt"] == "best prompt" and check["base"] == 0.6 and not check["passed"]
    assert "0.600 -> 0.400" in first.record["rejected_because"]
    regression = next(c for c in first.record["gate"] if c["set"] == "the regression set")
    assert regression["start_prompt"] == "training variant" and regression["passed"]
    # The CLI's round line names that start too: "0.200 -> 0.400" alone would read as a gain.
    from workbench.cli.main import _best_prompt_start

    assert _best_prompt_start(first.record) == "; the start's best prompt scored 0.600 on them, the gate's start"
    check["start_prompt"] = "training variant"
    assert _best_prompt_start(first.record) == ""


ALL_ARMS = ("targeted", "random", "all")


def test_arms_are_refused_before_any_model_call_unless_known_and_with_targeted(experiment, stand_ins, tmp_path):
    from dataclasses import replace

    from workbench.experiments.rounds import RoundSettings

    asked, fine_tune, _ = stand_ins
    for arms, message in [(("targeted", "shuffled"), r"unknown arm\(s\) \['shuffled'\]"),
                          (("random", "all"), "leave out 'targeted'"),
                          (("targeted", "random", "random"), "name an arm twice"),
                          ("targeted,random", r"pass \('targeted', 'random'\)")]:
        with pytest.raises(RoundError, match=message):
            run_round(experiment, folder=tmp_path / "a", settings=RoundSettings(arms=arms), log=lambda _: None,
                      encoder=WordsEncoder())
    with pytest.raises(RoundError, match="labelled pool, and it has none"):
        run_round(replace(experiment, examples=None), folder=tmp_path / "a",
                  settings=RoundSettings(arms=("targeted", "random")), log=lambda _: None, encoder=WordsEncoder())
    assert asked == [] and fine_tune.started_from == [] and not (tmp_path / "a").exists()


def test_reference_arms_train_on_the_pool_without_test_cases_for_the_targeted_steps(
        experiment, arm_stand_ins, tmp_path, monkeypatch):
    import workbench.trainingdata.examples as building
    from workbench.experiments.arms import ARM_COLUMNS
    from workbench.experiments.rounds import RoundSettings
    from workbench.trainingdata.leakage import find_leaks

    asked, fine_tune, re_test, train, answer = arm_stand_ins
    real = building.build_training_data
    pool = experiment.examples
    near = {}

    def build_with_a_test_near_a_pool_row(*args, **kwargs):
        # A test case with its own id whose text is an unused pool row's, shouted: that pool row is
        # no test case by id, but a near-duplicate of one, so no arm may train on it.
        data = real(*args, **kwargs)
        unused = pool[~pool["example_id"].isin(data.examples["example_id"])].iloc[0]
        near["pool_id"] = unused["example_id"]
        row = data.examples[data.examples["split"] == "test"].iloc[[0]].assign(
            example_id="near-1", point_id="regression", source="regression", text=unused["text"].upper() + "  ",
            target=unused["label"])
        data.examples = pd.concat([data.examples, row], ignore_index=True)
        return data

    monkeypatch.setattr(building, "build_training_data", build_with_a_test_near_a_pool_row)
    answer.right = {"random": 0.5, "all": 0.25}
    done = run_round(experiment, folder=tmp_path / "rounds", progress=False, log=lambda _: None,
                     encoder=WordsEncoder(), settings=RoundSettings(arms=("all", "targeted", "random")))
    targeted = done.frame("training_data/train_rows.parquet")
    examples = done.frame("training_data/examples.parquet")
    tests = examples[examples["split"] == "test"]
    steps = done.record["counts"]["training_steps"]
    calls = {call["arm"]: call for call in train.calls}
    assert set(calls) == {"random", "all"}
    random_rows, all_rows = calls["random"]["rows"], calls["all"]["rows"]
    # Same number of rows as the targeted arm, the same steps, the same settings otherwise.
    assert len(random_rows) == len(targeted) == done.record["arms"]["rows"]["random"]
    assert calls["random"]["max_steps"] == calls["all"]["max_steps"] == steps
    assert calls["all"]["training"] == RoundSettings().training.__class__(**{**vars(RoundSettings().training),
                                                                              "max_steps": steps})
    assert calls["random"]["start_from"] is None  # round 1: from the base model, like the targeted arm
    # No arm trains on a test case or a near-duplicate of one.
    for rows in (random_rows, all_rows):
        assert not set(rows["example_id"]) & set(tests["example_id"])
        assert near["pool_id"] not in set(rows["example_id"])
        leaks = find_leaks(pd.concat([tests, rows], ignore_index=True), WordsEncoder(), RoundSettings().near_duplicate)
        assert leaks.empty
        assert set(rows["example_id"]) <= set(pool["example_id"])
    # The all arm holds every pool row that is neither.
    candidates = pool.assign(point_id="pool", split="train")
    leaking = find_leaks(pd.concat([tests, candidates], ignore_index=True), WordsEncoder(),
                         RoundSettings().near_duplicate)
    eligible = set(pool["example_id"]) - set(leaking["train_example"])
    assert set(all_rows["example_id"]) == eligible and len(all_rows) == len(eligible) > len(random_rows)
    assert done.record["arms"]["eligible_pool_rows"] == len(eligible)
    # Rendered like the targeted rows: the same variant's prompt, the gold answer last.
    assert [m["role"] for m in random_rows["messages"].iloc[0]] == [m["role"] for m in targeted["messages"].iloc[0]]
    assert random_rows["messages"].iloc[0][0] == targeted["messages"].iloc[0][0]
    assert (done.path / "finetune" / "random" / "adapter.gguf").exists()
    assert (done.path / "finetune" / "all" / "rows.parquet").exists()
    # arms.csv: one row per arm and set, paired comparisons against targeted and the start model.
    table = pd.read_csv(done.path / "finetune" / "arms.csv")
    assert list(table.columns) == ARM_COLUMNS
    assert set(zip(table["arm"], table["set"])) == {(a, s) for a in ALL_ARMS
                                                    for s in ("all test cases", "regression set")}
    every = table[table["set"] == "all test cases"].set_index("arm")
    assert every.loc["targeted", "score"] == 1.0 and every.loc["random", "score"] == pytest.approx(0.5, abs=0.05)
    assert every.loc["random", "cases"] == tests["example_id"].nunique()
    assert every.loc["random", "vs_targeted_difference"] < 0 and every.loc["random", "vs_targeted_verdict"] == "worse"
    assert pd.isna(every.loc["targeted", "vs_targeted_p_value"]) and not pd.isna(every.loc["targeted",
                                                                                            "vs_start_p_value"])
    assert (table["method"] == "mcnemar_score").all()
    for side in ("vs_targeted", "vs_start"):
        compared = table.dropna(subset=[f"{side}_p_value"])
        assert (compared[f"{side}_p_adjusted"] >= compared[f"{side}_p_value"] - 1e-12).all()
    # Holm across every comparison of the table: the smallest p-value is multiplied by their number.
    ps = pd.concat([table["vs_targeted_p_value"], table["vs_start_p_value"]]).dropna()
    adjusted = pd.concat([table["vs_targeted_p_adjusted"], table["vs_start_p_adjusted"]]).dropna()
    assert adjusted.min() == pytest.approx(min(1.0, ps.min() * len(ps)))
    assert done.record["arms"]["best"] == "targeted"
    assert done.record["arms"]["verdict"].startswith("Round 1: the targeted arm scored best on all test cases (1.000")
    assert done.record["fingerprint"]["arms"] == list(ALL_ARMS) and done.record["stages"]["arms"] >= 0
    path, _ = write_loop_report(tmp_path / "rounds")
    html = path.read_text()
    assert 'id="arms"' in html and "the targeted arm scored best on all test cases" in html


def test_the_targeted_arm_alone_decides_acceptance_and_is_built_on(experiment, arm_stand_ins, tmp_path):
    from workbench.experiments.rounds import RoundSettings

    asked, fine_tune, re_test, train, answer = arm_stand_ins
    settings = RoundSettings(arms=ALL_ARMS)
    folder = tmp_path / "rounds"
    # The targeted model falls below its start by more than the margin; the arms answer every case
    # right. The round is still rejected: the references never stand in for the round's model.
    re_test.figures[ALL_TEST_CASES] = (0.433, 0.313)
    answer.right = {"random": 1.0, "all": 1.0}
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder(),
                      settings=settings)
    assert first.record["accepted"] is False and first.record["arms"]["best"] in {"random", "all", "targeted"}
    # Accepted on the targeted figures even though both arms get every case wrong.
    _accepting(re_test)
    answer.right = {"random": 0.0, "all": 0.0}
    second = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder(),
                       settings=settings)
    assert second.record["accepted"] is True and second.record["started_from"] == "base model"
    assert "the targeted arm scored best" in second.record["arms"]["verdict"]
    train.calls.clear()
    third = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder(),
                      settings=settings)
    # Round 3 runs and trains on round 2's targeted adapter (finetune/lora), every arm from it.
    assert third.record["started_from"] == "round 2"
    assert str((folder / "2" / rounds.ADAPTER).resolve()) in asked
    assert fine_tune.started_from[-1] == folder / "2" / rounds.PEFT_ADAPTER
    assert {str(call["start_from"]) for call in train.calls} == {str(folder / "2" / rounds.PEFT_ADAPTER)}
    assert not (folder / "3" / "finetune" / "random" / "checkpoints").exists()


def test_arms_are_in_the_fingerprint_and_rounds_recorded_before_them_ran_targeted(experiment, stand_ins, tmp_path):
    from workbench.experiments.rounds import RoundSettings, fingerprint, fingerprint_differences

    folder = tmp_path / "rounds"
    first = run_round(experiment, folder=folder, progress=False, log=lambda _: None, encoder=WordsEncoder())
    assert first.record["fingerprint"]["arms"] == ["targeted"] and "arms" not in first.record
    with pytest.raises(RoundError, match=r"--arms: \['targeted'\] before, \['targeted', 'random'\] now"):
        run_round(experiment, folder=folder, settings=RoundSettings(arms=("random", "targeted")),
                  log=lambda _: None, encoder=WordsEncoder())
    old = {k: v for k, v in fingerprint(experiment, RoundSettings()).items() if k != "arms"}
    assert fingerprint_differences(old, fingerprint(experiment, RoundSettings())) == []
    assert fingerprint_differences(old, fingerprint(experiment, RoundSettings(arms=ALL_ARMS))) == [
        "--arms: ['targeted'] before, ['targeted', 'random', 'all'] now"]
    html = write_loop_report(folder)[0].read_text()
    assert 'id="arms"' not in html  # no arms trained: no arms section


def test_the_arms_verdict_names_the_best_arm_and_whether_the_test_could_tell():
    from workbench.core.task import load_task
    from workbench.experiments.arms import arms_verdict, compare_arms

    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    ids = [f"e{i}" for i in range(40)]
    examples = pd.DataFrame({"example_id": ids, "split": "test", "point_id": ["P1"] * 30 + ["regression"] * 10,
                             "text": ids, "target": "fraud"})

    def answers(name, right):
        return pd.DataFrame({"variant": name, "example_id": ids, "repeat": 0,
                             "prediction": ["fraud" if i < right else "request" for i in range(40)]})

    # random 22/40 against targeted 20/40: best, but two discordant cases cannot tell them apart.
    predictions = pd.concat([answers("start", 10), answers("targeted", 20), answers("random", 22),
                             answers("all", 5)], ignore_index=True)
    table = compare_arms(predictions, examples, task, {"targeted": 30, "random": 30, "all": 200},
                         {"targeted": 16, "random": 16, "all": 16})
    assert len(table) == 6  # three arms, two sets
    sentence = arms_verdict(table, 2)
    assert sentence.startswith("Round 2: the random arm scored best on all test cases (0.550 against the targeted "
                               "arm's 0.500, 40 cases); the paired test could not tell it from the targeted arm")
    every = table[table["set"] == "all test cases"].set_index("arm")
    assert every.loc["all", "vs_targeted_verdict"] == "worse" and every.loc["targeted", "vs_start_verdict"] == "better"
    assert every.loc["all", "rows"] == 200 and every.loc["all", "steps"] == 16
    assert arms_verdict(table[table["arm"] == "targeted"]) == ""


def test_the_cli_passes_arms_to_the_round_and_refuses_an_unknown_one(experiment, arm_stand_ins, tmp_path, capsys):
    from workbench.cli.main import main

    asked = arm_stand_ins[0]
    config = str(tmp_path / "loop.yaml")
    assert main(["loop", config, "--folder", str(tmp_path / "r"), "--arms", "targeted,bogus"]) == 2
    assert "unknown arm(s) ['bogus']" in capsys.readouterr().err and asked == []
    assert main(["loop", config, "--folder", str(tmp_path / "r"), "--arms", "targeted, random"]) == 0
    record = json.loads((tmp_path / "r" / "1" / "round.json").read_text())
    assert record["fingerprint"]["arms"] == ["targeted", "random"] and set(record["arms"]["rows"]) == {"targeted",
                                                                                                     "random"}
    assert (tmp_path / "r" / "1" / "finetune" / "arms.csv").exists()


def test_an_arm_trains_and_answers_through_the_same_seams_as_the_targeted_arm(experiment, tmp_path, monkeypatch):
    """The glue the stand-ins above replace: training goes to `train_for_llama_cpp` with the
    targeted step count and start adapter; answers come from the runner, one per test case."""
    from workbench.experiments import arms
    from workbench.finetune import gguf_adapter
    from workbench.finetune.lora import AdapterSettings, train_adapter

    given = {}

    def train_for_llama_cpp(chats, folder, *, settings, model_path, names, progress, start_from, train):
        given.update(chats=chats, folder=folder, settings=settings, names=names, start_from=start_from, train=train)
        return type("Trained", (), {"steps": settings.max_steps})(), folder / "adapter.gguf"

    monkeypatch.setattr(gguf_adapter, "train_for_llama_cpp", train_for_llama_cpp)
    rows = arms.render_rows(experiment.examples.head(3), experiment.task, "tuned", "random")
    steps = arms.train_arm(rows, tmp_path / "random", AdapterSettings(max_steps=7), {}, tmp_path / "start", False)
    assert steps == 7 and given["start_from"] == tmp_path / "start" and len(given["chats"]) == 3
    assert given["train"] is train_adapter  # no launch given: the workbench's own loop, in this process
    from workbench.finetune import local_models
    from workbench.finetune.launch import TrainingLaunch
    from workbench.finetune.trl_trainer import train_with_trl

    # Only the seam is under test: TRL itself may be absent (`make test-min` leaves it out, since
    # trl 1.16 needs datasets>=4.7 and numpy>=1.26, above the floors); test_training_launch checks
    # the refusal when it is missing.
    monkeypatch.setattr(local_models, "check_trainer", lambda trainer, settings=None: None)
    arms.train_arm(rows, tmp_path / "trl", AdapterSettings(max_steps=7), {}, None, False,
                   launch=TrainingLaunch(trainer="trl"))
    assert given["train"] is train_with_trl and given["start_from"] is None  # the round's trainer, for every arm
    assert given["chats"][0][-1] == {"role": "assistant", "content": rows["answer"].iloc[0]}
    assert given["names"][0].endswith("(random arm)")
    examples = rows.assign(split="test")
    answers = arms.answer_arm(FakeModel('{"label": "request"}'), examples, experiment.task, "tuned",
                              tmp_path / "cache.sqlite", None, False)
    assert list(answers["example_id"]) == list(rows["example_id"]) and set(answers["prediction"]) == {"request"}


def test_a_reference_arm_without_enough_pool_rows_is_noted_not_fatal(experiment, arm_stand_ins, tmp_path):
    from dataclasses import replace

    from workbench.experiments.rounds import RoundSettings

    # A pool of three rows: fewer than training needs once the test cases are out of it. (No
    # anchors: choose_anchors fails on a pool the neighbours used up, a separate matter.)
    small = replace(experiment, examples=experiment.examples.head(3))
    done = run_round(small, folder=tmp_path / "rounds", progress=False, log=lambda _: None, encoder=WordsEncoder(),
                     settings=RoundSettings(arms=ALL_ARMS, anchor_share=0.0))
    summary = done.record["arms"]
    assert set(summary["rows"]) == {"targeted"} and len(summary["notes"]) == 2
    assert summary["notes"][0].startswith("the random arm was not trained") and summary["verdict"] == ""
    assert set(pd.read_csv(done.path / "finetune" / "arms.csv")["arm"]) == {"targeted"}
    assert done.record["accepted"] is True


def served_experiment(tmp_path, url, adapter="loop-r{round}"):
    """The `experiment` fixture's experiment with a serve: block (`served_config`)."""
    return load_experiment(served_config(tmp_path, url, adapter))


def served_config(tmp_path, url, adapter="loop-r{round}"):
    """The `experiment` fixture's config with a serve: block naming each round's adapter `adapter`."""
    config = tmp_path / f"served-{len(list(tmp_path.glob('served-*')))}.yaml"
    config.write_text(yaml.safe_dump({
        "name": "loop", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 12,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs"),
        "serve": {"base_url": url, "api_key_env": None, "model": "smollm2", "adapter": adapter}}))
    return config


@pytest.fixture
def served_models(stand_ins, monkeypatch):
    """The stand-ins, but the serve: block's models (kind openai_compatible) are built for real."""
    def model_from_config(config, **options):
        if config.get("kind") == "openai_compatible":
            return real_model_from_config(config, **options)
        return FakeModel('{"label": "request"}')

    monkeypatch.setattr("workbench.models.registry.model_from_config", model_from_config)
    return stand_ins


@pytest.fixture
def vllm_stub():
    """The stub listing the base smollm2 as vLLM would, and no LoRA module yet."""
    server = StubServer(StubConfig(models=("smollm2",)))
    server.start_in_thread()
    yield server
    server.stop_thread()


def test_a_round_re_tested_on_a_server_is_refused_until_its_adapter_is_served_then_resumes(
        tmp_path, served_models, vllm_stub):
    _, _, re_test = served_models
    experiment, folder = served_experiment(tmp_path, vllm_stub.base_url), tmp_path / "rounds"
    settings = RoundSettings(serve="openai-compatible")
    with pytest.raises(RoundError) as refused:
        run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda _: None,
                  encoder=WordsEncoder())
    message, adapter = str(refused.value), (folder / "1.partial" / rounds.PEFT_ADAPTER).resolve()
    assert "does not serve the adapter 'loop-r1'" in message and f"--lora-modules loop-r1={adapter}" in message
    assert "Round 1 is kept in" in message and (folder / "1.partial").is_dir() and finished_rounds(folder) == []
    assert re_test.tested == [] and vllm_stub.records == []  # no re-test, no chat request to the server

    # The operator loads the adapter (vLLM's POST /v1/load_lora_adapter); the round resumes and finishes.
    vllm_stub.config.lora_modules = (StubLoraModule("loop-r1", str(adapter), "smollm2"),)
    first = run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda _: None,
                      encoder=WordsEncoder())
    served = re_test.served[-1]
    assert (served.base.request_model, served.tuned.request_model) == ("smollm2", "loop-r1")
    assert first.record["served"]["tuned"] == "loop-r1" and first.record["served"]["notes"] == []
    assert first.record["served"]["endpoint"] == vllm_stub.base_url

    # Round 2 builds on round 1: its base is loop-r1, checked (from 1.partial, now renamed 1/) before it starts.
    assert first.record["accepted"]
    with pytest.raises(RoundError, match="does not serve the adapter 'loop-r2'"):
        run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda _: None,
                  encoder=WordsEncoder())
    vllm_stub.config.lora_modules += (StubLoraModule("loop-r2", str(folder / "2.partial" / rounds.PEFT_ADAPTER)),)
    run_round(experiment, folder=folder, settings=settings, progress=False, log=lambda _: None,
              encoder=WordsEncoder())
    assert (re_test.served[-1].base.request_model, re_test.served[-1].tuned.request_model) == ("loop-r1", "loop-r2")
    assert re_test.served[-1].notes == ()  # loop-r1's listed 1.partial path is known as round 1's adapter


def test_serving_the_loop_needs_a_serve_block_a_served_base_and_a_name_per_round(
        tmp_path, experiment, served_models, vllm_stub):
    asked, _, re_test = served_models
    settings = RoundSettings(serve="openai-compatible")

    def run(exp, folder):
        return run_round(exp, folder=tmp_path / folder, settings=settings, progress=False, log=lambda _: None,
                         encoder=WordsEncoder())

    with pytest.raises(RoundError, match="experiment loop has no serve: block; add one"):
        run(experiment, "a")
    vllm_stub.config.models = ("another-model",)
    with pytest.raises(RoundError, match="round 1's start model is not served: .* does not serve the base model "
                                         "'smollm2'"):
        run(served_experiment(tmp_path, vllm_stub.base_url), "b")
    assert asked == [] and re_test.tested == [] and vllm_stub.records == []  # refused before any model call
    with pytest.raises(RoundError, match="serve 'vllm': use one of in-process, openai-compatible"):
        run_round(experiment, folder=tmp_path / "c", settings=RoundSettings(serve="vllm"), log=lambda _: None)

    # One adapter name for every round: round 2's base (round 1's adapter) and its own cannot both be served.
    vllm_stub.config.models = ("smollm2",)
    vllm_stub.config.lora_modules = (StubLoraModule("loop-tuned", str(tmp_path / "d" / "1.partial" / "x")),)
    one_name = served_experiment(tmp_path, vllm_stub.base_url, adapter="loop-tuned")
    assert run(one_name, "d").record["accepted"]
    with pytest.raises(RoundError, match=r"round 2 starts from round 1's tuned model, .* give the serve: block's "
                                         r"adapter a \{round\}"):
        run(one_name, "d")



def test_workbench_loop_serve_refuses_an_unlisted_adapter_with_exit_2_then_re_tests_on_the_server(
        tmp_path, served_models, vllm_stub, capsys):
    from workbench.cli.main import main

    _, _, re_test = served_models
    command = ["loop", str(served_config(tmp_path, vllm_stub.base_url)), "--folder", str(tmp_path / "r"),
               "--serve", "openai-compatible", "--no-progress"]
    assert main(command) == 2
    error, adapter = capsys.readouterr().err, (tmp_path / "r" / "1.partial" / rounds.PEFT_ADAPTER).resolve()
    assert error.startswith("error: ") and "does not serve the adapter 'loop-r1'" in error
    assert f"vllm serve smollm2 --enable-lora --lora-modules loop-r1={adapter}" in error
    assert "run `workbench loop` again with --serve openai-compatible" in error
    assert re_test.tested == [] and vllm_stub.records == []  # refused before the re-test sent anything

    vllm_stub.config.lora_modules = (StubLoraModule("loop-r1", str(adapter)),)
    assert main(command) == 0
    assert re_test.served[-1].tuned.request_model == "loop-r1"
    record = json.loads((tmp_path / "r" / "1" / "round.json").read_text())
    assert record["served"] == {"endpoint": vllm_stub.base_url, "base": "smollm2", "tuned": "loop-r1", "notes": []}
    # Without --serve the same experiment re-tests in-process: no served pair.
    assert main([*command[:4], "--no-progress"]) == 0 and re_test.served[-1] is None
