"""Training points reviewed in the real embedded Argilla (the session fixture `argilla`).

The classification case uses the hand-made run of `unit.test_points` (a keyword encoder, so every
point is known in advance); the NER case goes through `workbench points --push-review` and
`--pull-review` on a run folder of the adverse-events demo data with the real sentence encoder.
Annotators answer over the REST endpoints the web UI calls (`workbench.testing.annotator`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from unit.test_points import ANSWERS, GOLD, TASK, TEXTS, fitted, run_of

from workbench.annotation import AnnotationError, connect, pull_corrections
from workbench.annotation._argilla import find_dataset, records_json
from workbench.cli.main import main
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import read_frame, run_experiment, write_run
from workbench.points.label_issues import find_label_issues, push_label_issues
from workbench.points.review import (
    NO_POINT,
    POINT_QUESTION,
    RELABEL,
    RENAME_QUESTION,
    apply_point_review,
    member_id,
    pull_point_review,
    push_point_review,
)
from workbench.testing.annotator import submit_responses, submit_review_answers
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REQUEST = "complaint read as request"


def test_points_reviewed_in_argilla_move_rename_and_pull_twice_without_change(argilla, tmp_path):
    owner = connect(argilla["info"].api_url, argilla["keys"]["owner"])
    annotator = connect(argilla["info"].api_url, argilla["keys"]["annotator"])
    clusterer, errors, issues = fitted()
    predictions, dataset, _ = run_of(ANSWERS, TEXTS, GOLD)
    points, assignments = clusterer.points_, clusterer.assignments_
    members = len(assignments.drop_duplicates(["example_id", "signature"]))

    first = push_point_review(owner, TASK, points, assignments, "triage_points")
    assert first.created and first.records == members
    again = push_point_review(owner, TASK, points, assignments, "triage_points")
    remote = find_dataset(owner, "triage_points", None)
    assert not again.created and len(records_json(owner, remote, include=())) == members  # no duplicates

    answers = {member_id("c1", REQUEST): {POINT_QUESTION: "P1", RENAME_QUESTION: "fees and cards"},
               member_id("c2", REQUEST): {POINT_QUESTION: NO_POINT},
               member_id("f3", REQUEST): {POINT_QUESTION: RELABEL},
               member_id("f1", REQUEST): {POINT_QUESTION: "P1"}}
    assert submit_review_answers(annotator, first.dataset_id, answers) == len(answers)
    reviews = pull_point_review(owner, TASK, points, "triage_points", out_dir=tmp_path)
    assert Path(reviews.attrs["snapshot_path"]).is_file()
    assert set(reviews["record_id"]) == set(answers) and set(reviews["annotator"]) == {"annotator"}
    assert reviews.set_index("record_id").at[member_id("c1", REQUEST), "proposed_point"] == "P2"

    updated, moved = apply_point_review(points, assignments, reviews, predictions, TASK)
    table = updated.set_index("point_id")
    assert sorted(table.at["P1", "example_ids"]) == ["c1", "f1", "f2"] and table.at["P1", "name"] == "fees and cards"
    assert "f3" in table.at[RELABEL, "example_ids"] and len(moved) == len(errors)
    # Pulled a second time, the same answers change nothing.
    second = pull_point_review(owner, TASK, points, "triage_points", out_dir=tmp_path)
    assert second.attrs["snapshot_path"] != reviews.attrs["snapshot_path"]
    twice, moved_twice = apply_point_review(updated, moved, second, predictions, TASK)
    pd.testing.assert_frame_equal(twice, updated)
    pd.testing.assert_frame_equal(moved_twice, moved)

    # Pushing the reviewed points again updates option texts and records, and keeps the answers.
    push_point_review(owner, TASK, updated, moved, "triage_points")
    remote.get()
    options = {o["value"]: o["text"] for o in remote.settings.questions[POINT_QUESTION].serialize()["settings"]["options"]}
    assert options["P1"] == "P1: fees and cards"
    assert len(pull_point_review(owner, TASK, points, "triage_points", out_dir=None)) == len(answers)
    # Points Argilla cannot offer (a new id) are refused, with the id named.
    renamed = points.assign(point_id=points["point_id"].replace({"P3": "P7"}))
    with pytest.raises(AnnotationError, match=r"no option \['P7'\]"):
        push_point_review(owner, TASK, renamed, assignments.replace({"point_id": {"P3": "P7"}}), "triage_points")

    # Suspected label errors get a blind verdict: the annotator keeps g1's gold, which clears it.
    verdict = push_label_issues(owner, TASK, issues, predictions, dataset, name="triage_label_issues", progress=False)
    assert verdict.records == int(issues["is_label_issue"].sum()) == 1
    assert submit_responses(annotator, TASK, verdict.dataset_id, {"g1": "fraud"}) == 1
    corrections = pull_corrections(owner, TASK, "triage_label_issues", out_dir=None)
    cleared = find_label_issues(predictions, dataset, TASK, corrections).set_index("example_id")
    assert cleared.at["g1", "annotator_kept_gold"] and not cleared["is_label_issue"].any()


def test_points_cli_pushes_a_ner_review_and_pulls_it_back(argilla, tmp_path, monkeypatch, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ae_points", "task": str(ROOT / "data/adverse_events/task.yaml"),
        "dataset": str(ROOT / "data/adverse_events/test.jsonl"), "limit": 16,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs"),
    }))
    experiment = load_experiment(config)
    # No entities found: every gold entity is missed, in every variant.
    run = write_run(run_experiment(experiment, model=FakeModel('{"entities": []}'), progress=False),
                    experiment.run_dir)
    monkeypatch.setenv("ARGILLA_API_URL", argilla["info"].api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla["keys"]["owner"])
    monkeypatch.chdir(tmp_path)

    def points(*options):
        """`workbench points` in this process (`main`): a new interpreter would load torch and the
        encoder again, about 8 s a call, for the same exit code and output."""
        capsys.readouterr()
        code = main(["points", str(run.path), *options])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out

    pushed = points("--push-review")
    proposed = read_frame(run.path / "points.parquet")
    assignments = read_frame(run.path / "point_assignments.parquet")
    members = assignments.drop_duplicates(["example_id", "signature"])
    assert f"pushed {len(members)} errors" in pushed and "ae_points_points" in pushed
    assert set(proposed["signature"]) <= {f"missed {label}" for label in run.task.label_names}

    owner = connect(argilla["info"].api_url, argilla["keys"]["owner"])
    remote = find_dataset(owner, "ae_points_points", None)
    records = records_json(owner, remote, include=())
    assert len(records) == len(members)
    assert all("[[" in record["fields"]["text"] for record in records)  # the missed entity is marked
    # The annotator confirms every proposal and renames the largest point.
    largest = proposed.iloc[0]
    answers = {member_id(e, s): {POINT_QUESTION: p} for e, s, p in
               zip(members["example_id"], members["signature"], members["point_id"])}
    answers[member_id(largest["example_ids"][0], largest["signature"])][RENAME_QUESTION] = "drug names missed"
    annotator = connect(argilla["info"].api_url, argilla["keys"]["annotator"])
    assert submit_review_answers(annotator, remote.id, answers) == len(answers)

    pulled = points("--pull-review")
    assert f"{len(answers)} answers" in pulled and "0 error rows changed point" in pulled
    reviewed = read_frame(run.path / "points.parquet")
    table = reviewed.set_index("point_id")
    assert table.at[largest["point_id"], "name"] == "drug names missed"
    assert list(reviewed["point_id"]) == list(proposed["point_id"]) and reviewed["reviewed"].sum() == len(answers)
    assert (annotations := list((tmp_path / "annotations" / "ae_points_points").glob("*.jsonl"))) and annotations
    # Pulled twice: nothing changes.
    points("--pull-review")
    pd.testing.assert_frame_equal(read_frame(run.path / "points.parquet"), reviewed)
    assert "drug names missed" in (run.path / "report.html").read_text()
