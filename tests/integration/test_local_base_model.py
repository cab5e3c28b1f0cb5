"""Model kind ``transformers`` on a real (tiny) model folder: `workbench run`, `workbench finetune`
and a `workbench loop` round with LoRA trained on the folder's model and the tuned model served
in-process with its peft adapter.

The folder is made here, never downloaded (the `tiny_folders` fixture in tests/conftest.py): a
two-layer Llama with random weights and the embedded SmolLM2's tokenizer (read from its GGUF; it
has a chat template and the vocabulary size the model is made with). Random weights answer
garbage, which the runner records as parse failures: these tests check the mechanics and the
bookkeeping, not the answers."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.models.registry import model_from_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def experiment_config(folder: Path, tmp: Path, name: str, limit: int) -> Path:
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "name": name, "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": limit,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp / "runs"), "options": {"max_tokens": 16},
        "model": {"kind": "transformers", "base_model": str(folder), "device": "cpu"}}))
    return config


def test_the_registry_builds_a_folder_model_that_answers_and_names_its_folder(tiny_folders):
    one, other = tiny_folders
    model = model_from_config({"kind": "transformers", "base_model": str(one), "device": "cpu"})
    answer = model.complete_sync(ChatRequest(
        ({"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Hello"}),
        GenerationOptions(max_tokens=8)))
    assert 0 < answer.tokens_out <= 8 and answer.tokens_in > 5 and answer.latency_s > 0
    assert model.identity["model"] == "tiny-llama" and len(model.identity["sha256"]) == 64
    second = model_from_config({"kind": "transformers", "base_model": str(other)}).identity
    assert second["model"] == "tiny-llama-b" and second["sha256"] != model.identity["sha256"]


def test_workbench_run_runs_a_folder_model_and_records_garbage_as_parse_failures(tiny_folder, tmp_path, capsys):
    config = experiment_config(tiny_folder, tmp_path, "folder_run", limit=3)
    assert main(["run", str(config), "--variants", "zero_shot", "--no-progress"]) == 0
    from workbench.experiments.runs import load_run

    run = load_run(tmp_path / "runs" / "folder_run")
    assert len(run.predictions) == 3 and run.predictions["raw_response"].notna().all()
    assert run.predictions["parse_error"].notna().all()  # random weights: no answer parses
    provenance = json.loads((run.path / "provenance.json").read_text())
    assert provenance["model"]["kind"] == "transformers" and provenance["model"]["model"] == "tiny-llama"


@pytest.fixture
def tuned_run(tiny_folder, tmp_path):
    """A run of the folder model's config (answered by a fake model: every example wrong
    somewhere), its points and training data, as `workbench finetune` needs them."""
    from workbench.experiments.config import load_experiment
    from workbench.experiments.runs import run_experiment, write_run
    from workbench.testing.fake_model import FakeModel

    experiment = load_experiment(experiment_config(tiny_folder, tmp_path, "folder_tune", limit=8))
    run = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                    experiment.run_dir)
    assert main(["points", str(run.path)]) == 0
    assert main(["data", str(run.path), "--train-variant", "zero_shot"]) == 0
    return run


def test_finetune_trains_lora_on_the_folder_and_serves_the_peft_adapter_in_process(tuned_run, tiny_folder,
                                                                                    capsys):
    from peft import PeftModel

    from workbench.finetune.base_model import base_identity
    from workbench.finetune.local_models import tuned_model_config

    assert main(["finetune", str(tuned_run.path), "--steps", "2", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    folder = tuned_run.path / "finetune" / "lora"
    assert "trained 2 steps on" in out and f"adapter {folder / 'adapter'}" in out
    assert (folder / "adapter" / "adapter_model.safetensors").exists() and not (folder / "adapter.gguf").exists()
    training = json.loads((folder / "training.json").read_text())
    assert training["base"] == base_identity(tiny_folder) and training["base"]["kind"] == "transformers"
    table = pd.read_csv(folder / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)"
    efficiency = pd.read_csv(folder / "efficiency.csv")
    assert {"base", "tuned"} <= set(efficiency["variant"])
    # The tuned model: the folder's base with the peft adapter, in-process, known by the adapter's weights.
    config = tuned_model_config(tuned_run.config["model"], folder)
    tuned = model_from_config(config)
    assert tuned.identity["adapter"]["data_hash"] == training["data_hash"]
    assert isinstance(tuned.load().model, PeftModel)
    base = model_from_config(tuned_run.config["model"])
    assert tuned.identity["sha256"] == base.identity["sha256"] and "adapter" not in base.identity


def test_loop_rounds_on_the_folder_model_train_retest_and_build_on_the_peft_adapter(tiny_folder, tmp_path, capsys):
    config = experiment_config(tiny_folder, tmp_path, "folder_loop", limit=8)
    # --keep-worse: two steps rarely pass the accept gate; round 2 is here to build on round 1's adapter.
    same = ["--steps", "2", "--batch-size", "2", "--regression-size", "4", "--keep-worse"]
    assert main(["loop", str(config), "--rounds", "1", *same]) == 0
    # Round 2's training as a process group of two under accelerate launch: the launcher is not in
    # the fingerprint, so the loop goes on, and the launched step continues from round 1's adapter.
    assert main(["loop", str(config), "--rounds", "1", *same, "--launcher", "accelerate", "--processes", "2"]) == 0
    folder = tmp_path / "runs" / "folder_loop" / "rounds"
    first, second = (json.loads((folder / n / "round.json").read_text()) for n in ("1", "2"))
    assert first["started_from"] == "base model" and first["adapter"] == "finetune/lora/adapter"
    assert set(first["stages"]) == {"variants", "points", "training_data", "fine_tune", "re_test"}
    adapter = folder / "1" / "finetune" / "lora" / "adapter"
    assert (adapter / "adapter_config.json").exists() and not (adapter.parent / "adapter.gguf").exists()
    assert pd.read_csv(adapter.parent / "before_after.csv")["point_id"].iloc[-1] == "(all test cases)"
    from workbench.experiments.rounds import load_round

    assert load_round(folder / "1").adapter == adapter
    # Round 2's variants ran on the base with round 1's peft adapter, and its training continued from it.
    assert second["started_from"] == "round 1" and Path(second["start_adapter"]) == adapter.resolve()
    provenance = json.loads((folder / "2" / "provenance.json").read_text())
    assert provenance["model"]["adapter"]["name"] == "lora/adapter" and provenance["model"]["adapter"]["sha256"]
    training = json.loads((folder / "2" / "finetune" / "lora" / "training.json").read_text())
    assert training["start_from"].endswith("1/finetune/lora/adapter") and training["processes"] == 2
    assert second["settings"]["launch"]["launcher"] == "accelerate" and first["settings"]["launch"]["launcher"] == (
        "in-process") and second["fingerprint"] == first["fingerprint"]
    assert sorted(p.name for p in (folder / "2" / "finetune" / "lora" / "ranks").iterdir()) == ["0.json", "1.json"]
    assert "round 2 (round 1)" in capsys.readouterr().out
