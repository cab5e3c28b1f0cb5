"""`workbench finetune <run>` on a real run folder: LoRA on the embedded model from the run's training
data, the adapter converted for llama.cpp, and the base and tuned models compared on every point's
test cases with paired tests (a tiny training: the test checks the mechanics, not the gain)."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment, write_run
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_finetune_trains_converts_and_compares_per_point(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tune", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 10,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs"),
        "options": {"max_tokens": 32}}))
    experiment = load_experiment(config)
    # The run's answers come from a fake model (every example wrong somewhere); the run's config names
    # the embedded model, which is what gets tuned and compared.
    run = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                    experiment.run_dir)
    # Every command in this process (the same `main` as the entry point: a new interpreter would load
    # torch, transformers and the encoder again, ~8 s a call, for the same exit code and output).
    assert main(["points", str(run.path)]) == 0
    # Six regression cases, not 50: the re-test answers every test case twice (base and tuned).
    assert main(["data", str(run.path), "--train-variant", "zero_shot", "--regression-size", "6"]) == 0
    capsys.readouterr()
    assert main(["finetune", str(run.path), "--steps", "3", "--batch-size", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps on" in out and (run.path / "finetune" / "lora" / "adapter.gguf").exists()
    table = pd.read_csv(run.path / "finetune" / "lora" / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and "regression" in set(table["point_id"])
    assert table.set_index("point_id").loc["regression", "cases"] == 6
    assert set(table["verdict"]) <= {"better", "worse", "no clear difference"}
    assert (table["p_adjusted"] >= table["p_value"] - 1e-12).all() and table["small"].iloc[0]
    assert table["cases"].iloc[-1] == pd.read_json(run.path / "training_data" / "test_cases.jsonl", lines=True).shape[0]
    methods = pd.read_csv(run.path / "finetune" / "points_by_method.csv")
    assert list(methods.columns) == ["point_id", "name", "prompt", "lora", "fixed_by"] and len(methods)
