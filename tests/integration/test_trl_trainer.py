"""``--trainer trl``: the training step handed to TRL's SFTTrainer on the rows of the HF chat export,
and its adapter used like any other (peft loads it, llama.cpp runs it converted, the re-test
answers with it). On the tiny model folder of tests/conftest.py, and on the embedded model where
the GGUF conversion is the point."""

import json

import pandas as pd
import pytest
from test_local_base_model import experiment_config
from test_lora import CHATS

from workbench.cli.main import main
from workbench.finetune.launch import TrainingLaunch, train_step
from workbench.finetune.lora import AdapterSettings
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.models.registry import model_from_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported_run(tiny_folder, tmp_path_factory):
    """A run of the tiny folder model's config (answered by a fake model: every example wrong
    somewhere), with points, training data and the HF chat export."""
    from workbench.experiments.config import load_experiment
    from workbench.experiments.runs import run_experiment, write_run
    from workbench.testing.fake_model import FakeModel

    experiment = load_experiment(experiment_config(tiny_folder, tmp_path_factory.mktemp("trl"), "trl_run", limit=8))
    run = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                    experiment.run_dir)
    assert main(["points", str(run.path)]) == 0
    assert main(["data", str(run.path), "--train-variant", "zero_shot", "--regression-size", "4"]) == 0
    assert main(["export", str(run.path), "--format", "hf"]) == 0
    return run


def test_trl_on_the_exported_rows_reaches_the_adapter_of_the_workbench_loop(exported_run, tiny_folder, tmp_path):
    from datasets import load_from_disk
    from safetensors.torch import load_file

    from workbench.core.frames import read_frame
    from workbench.finetune.lora import train_adapter
    from workbench.finetune.trl_trainer import train_with_trl
    from workbench.trainingdata.examples import one_row_per_example

    rows = load_from_disk(str(exported_run.path / "exports" / "hf_chat"))["train"]["messages"]
    examples = read_frame(exported_run.path / "training_data" / "examples.parquet")
    trained_on = one_row_per_example(examples[examples["split"] == "train"])["messages"]
    assert [list(map(dict, chat)) for chat in trained_on] == rows  # the export holds the rows finetune trains on
    # One batch of every row and no dropout: the batch order and the dropout masks, the two things
    # the trainers draw differently, are out of play, and what is left must agree. Six rows: TRL
    # projects every position onto the 49,152 words, which for a whole export is slow on 2 cores.
    rows = rows[:6]
    settings = AdapterSettings(max_steps=3, batch_size=len(rows), dropout=0.0, learning_rate=1e-2)
    by_trl = train_with_trl(rows, tmp_path / "trl", settings=settings, base_gguf=tiny_folder, device="cpu",
                            progress=False)
    by_loop = train_adapter(rows, tmp_path / "loop", settings=settings, base_gguf=tiny_folder, device="cpu",
                            progress=False)
    assert by_trl.supervised_tokens == by_loop.supervised_tokens > 0  # the answer and its end of turn, no more
    assert by_trl.losses == pytest.approx(by_loop.losses, rel=1e-5) and by_trl.losses[-1] < by_trl.losses[0]
    mine, theirs = (load_file(str(t.path / "adapter_model.safetensors")) for t in (by_loop, by_trl))
    assert sorted(mine) == sorted(theirs)
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-5
    record = json.loads((tmp_path / "trl" / "training.json").read_text())
    assert record["trainer"] == "trl" and record["data_hash"] == by_loop.data_hash and record["steps"] == 3
    assert record["versions"]["trl"] and record["base"] == by_loop.record["base"]


def test_finetune_with_trainer_trl_serves_and_retests_the_adapter_like_any_other(exported_run, capsys):
    from peft import PeftModel

    from workbench.finetune.local_models import tuned_model_config

    assert main(["finetune", str(exported_run.path), "--trainer", "trl", "--steps", "2", "--batch-size", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    folder = exported_run.path / "finetune" / "lora"
    assert "trained 2 steps on" in out and "by trl, in-process, 1 process(es)" in out
    training = json.loads((folder / "training.json").read_text())
    assert training["trainer"] == "trl" and len(training["losses"]) == 2
    tuned = model_from_config(tuned_model_config(exported_run.config["model"], folder))
    assert isinstance(tuned.load().model, PeftModel) and tuned.identity["adapter"]["data_hash"] == training["data_hash"]
    table = pd.read_csv(folder / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and table["cases"].iloc[-1] > 0


def test_a_trl_adapter_on_the_embedded_model_converts_and_answers_in_llama_cpp(tmp_path):
    from workbench.finetune.local_models import tuned_model_config

    trained = train_step(CHATS, tmp_path, {"kind": "embedded"}, settings=AdapterSettings(max_steps=2, batch_size=2),
                         launch=TrainingLaunch(trainer="trl"))
    assert trained.record["trainer"] == "trl" and (tmp_path / "adapter.gguf").stat().st_size > 0
    tuned = model_from_config({**tuned_model_config({"kind": "embedded"}, tmp_path), "n_threads": 2})
    answer = tuned.complete_sync(ChatRequest((CHATS[0][0], CHATS[0][1]), GenerationOptions(max_tokens=8)))
    assert answer.text and 0 < answer.tokens_out <= 8
    assert tuned.identity["lora"]["file"] == "adapter.gguf"  # the base with the converted TRL adapter
