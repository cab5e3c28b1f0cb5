"""`workbench points <run folder>` on a real run folder with the real sentence encoder: through `main`
in this process, and the refused second clustering as a user runs it (`python -m workbench.cli`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbench.cli.main import main
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import read_frame, run_experiment, write_run
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_points_are_written_to_the_run_folder(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "points_demo", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"), "limit": 30,
        "variants": ["zero_shot", "definitions", "cot"], "runs_dir": str(tmp_path / "runs"),
    }))
    experiment = load_experiment(config)
    # With definitions the model says "complaint", without them "request": every example is wrong in
    # some variant, the other labels' examples in all of them, but never all alike.
    def answer(request):
        return '{"label": "complaint"}' if "Use these label definitions" in request.messages[0]["content"] \
            else '{"label": "request"}'

    run = write_run(run_experiment(experiment, model=FakeModel(answer), progress=False), experiment.run_dir)
    # An annotator's snapshot says one complaint is really a request: that example becomes a suspected
    # label error, kept out of the training points.
    complaint = run.dataset.loc[run.dataset["label"] == "complaint", "example_id"].iloc[0]
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_text(json.dumps({"example_id": complaint, "annotator": "annotator", "status": "submitted",
                                    "label": "request", "note": None, "suggested": None, "suggestion_agent": None,
                                    "suggestion_score": None, "accepted_suggestion": False,
                                    "submitted_at": "2026-12-01T10:00:00+00:00"}) + "\n")
    # In this process (the same main as the entry point, which the refused call below runs: a new
    # interpreter would load torch and the encoder again, ~6 s).
    capsys.readouterr()
    assert main(["points", str(run.path), "--corrections", str(snapshot)]) == 0
    printed = capsys.readouterr().out
    points = read_frame(run.path / "points.parquet")
    assignments = read_frame(run.path / "point_assignments.parquet")
    issues = read_frame(run.path / "label_issues.parquet")
    assert set(assignments["example_id"]) == set(run.dataset["example_id"]) and assignments["point_id"].notna().all()
    # The variants never agree on a wrong answer; only the annotator's correction raises a suspicion.
    assert issues.loc[issues["is_label_issue"], "example_id"].tolist() == [complaint]
    assert complaint in points.set_index("point_id").at["relabel", "example_ids"]
    # Without definitions the model answers "request" to every example, with them "complaint": two
    # default answers, each one point whatever the gold (not one point per gold label), with its share.
    assert set(points["family"]) == {"default answer", "relabel"}
    defaults = points[points["family"] == "default answer"].set_index("signature")
    assert set(defaults.index) == {"anything read as request", "anything read as complaint"}
    request = defaults.loc["anything read as request"]
    assert "zero_shot gave 'request' to" in request["family_note"] and "cot gave 'request'" in request["family_note"]
    # definitions answers "complaint" everywhere: right on exactly the complaints among them, so it
    # fixes part of the point, not all of it, and the point is one to fine-tune.
    gold = run.dataset.set_index("example_id")["label"]
    complaints = sum(gold[e] == "complaint" for e in request["example_ids"]) / len(request["example_ids"])
    assert 0 < complaints < 1 and request["right_by_variant"]["definitions"] == pytest.approx(complaints)
    assert request["fixed_by"] == [] and request["action"] == "fine-tune"
    assert points["share_of_errors"].sum() == pytest.approx(1.0)
    assert "training points" in printed and isinstance(points.iloc[0]["example_ids"], list)
    html = (run.path / "report.html").read_text()
    assert html.count('class="card point"') == len(points) and 'id="chart-point_fixes"' in html
    assert "one default-answer point" in html  # said at the top of the points section

    # A second clustering would replace these points (and stale the training data built from
    # them): refused, exit 2 with the fix, and nothing written; --overwrite clusters again.
    again = subprocess.run([sys.executable, "-m", "workbench.cli", "points", str(run.path)], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 2 and "has training points already (points.parquet): pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr and read_frame(run.path / "points.parquet").equals(points)
    assert main(["points", str(run.path), "--overwrite"]) == 0
