"""`workbench loop` on the embedded model: two small rounds end to end (variants, points, training
data, LoRA, conversion, re-test), the second starting from the first's adapter, and the report
comparing them. Tiny trainings: the test checks the mechanics and the bookkeeping, not the gain."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_two_rounds_run_end_to_end_and_the_second_starts_from_the_first(tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "loop", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 8,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs"),
        "options": {"max_tokens": 32}}))
    # --keep-worse: two training steps rarely pass the accept gate (tested in tests/unit/test_rounds.py);
    # this test is about round 2 building on round 1's adapter.
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "loop", str(config), "--rounds", "2", "--steps", "2",
                           "--batch-size", "2", "--regression-size", "6", "--keep-worse"],
                          capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "runs" / "loop" / "rounds"
    # No .partial left behind; embeddings.npz is the loop's text -> vector cache.
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "embeddings.npz", "rounds.html"]
    first, second = (json.loads((folder / n / "round.json").read_text()) for n in ("1", "2"))
    assert first["started_from"] == "base model" and first["start_adapter"] is None
    assert second["started_from"] == "round 1"
    assert Path(second["start_adapter"]).resolve() == (folder / "1" / "finetune" / "lora" / "adapter.gguf").resolve()
    assert set(first["stages"]) == {"variants", "points", "training_data", "fine_tune", "re_test"}  # no --arms
    assert first["variant"] == "tuned" and first["gate"] and "accepted" in first

    # Round 2's prompt variants ran on round 1's tuned model, and its training continued from round 1's adapter.
    provenance = json.loads((folder / "2" / "provenance.json").read_text())
    assert provenance["model"]["lora"]["sha256"]
    training = json.loads((folder / "2" / "finetune" / "lora" / "training.json").read_text())
    assert training["start_from"].endswith("1/finetune/lora/adapter")

    # Round 2 never tests on an example round 1 trained on, and replays none of its own test cases.
    trained_before = set(pd.read_parquet(folder / "1" / "training_data" / "train_rows.parquet")["example_id"])
    examples = pd.read_parquet(folder / "2" / "training_data" / "examples.parquet")
    tests = set(examples.loc[examples["split"] == "test", "example_id"])
    assert not tests & trained_before
    rows = pd.read_parquet(folder / "2" / "training_data" / "train_rows.parquet")
    assert not set(rows["example_id"]) & tests and rows["example_id"].is_unique
    assert rows["replayed"].sum() == second["counts"]["replayed_rows"]

    table = pd.read_csv(folder / "2" / "finetune" / "lora" / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and table["cases"].iloc[-1] == len(tests)
    efficiency = pd.read_csv(folder / "2" / "finetune" / "lora" / "efficiency.csv")
    assert set(efficiency["variant"]) >= {"base", "tuned"} and (efficiency["latency_p95_s"] > 0).all()

    html = (folder / "rounds.html").read_text()
    assert "round 1" in html and "round 2" in html and "Regressions" in html
    assert "round 2 (round 1)" in done.stdout and "regressions; report:" in done.stdout

    # A third call continues the loop, here only to report; the finished rounds are left as they were.
    before = (folder / "1" / "round.json").read_text()
    again = subprocess.run([sys.executable, "-m", "workbench.cli", "loop", str(config), "--report-only"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (folder / "1" / "round.json").read_text() == before
