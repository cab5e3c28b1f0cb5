"""The training step launched as a process group of its own (`workbench.finetune.launch`): torchrun
and ``accelerate launch`` start ``python -m workbench.finetune.launch <job>`` with CPU processes
(gloo). Each process takes its share of every batch, gradients are averaged, and only the first
writes the adapter and training.json (and, for the embedded model, converts it for llama.cpp).

On a tiny transformers model folder (tests/conftest.py), so that a step is cheap: one launched
process reaches the in-process adapter to the bit; two processes see the same averaged losses,
their first loss agrees with one process's, and torchrun and accelerate run the same training. The
launched step on the embedded model, converted for llama.cpp, is `workbench finetune --launcher
torchrun` in tests/integration/test_finetune_cli.py."""

import json

import pytest
from test_lora import CHATS

from workbench.finetune.launch import TrainingLaunch, TrainingLaunchError, train_step
from workbench.finetune.lora import AdapterSettings

pytestmark = pytest.mark.integration
SETTINGS = AdapterSettings(max_steps=2, batch_size=4, checkpoint_every=1)


def weights(trained):
    from safetensors.torch import load_file

    return load_file(str(trained.path / "adapter_model.safetensors"))


def same_weights(one, other) -> bool:
    import torch

    return sorted(one) == sorted(other) and all(torch.equal(one[name], other[name]) for name in one)


def ranks(folder):
    return [json.loads((folder / "ranks" / f"{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def config(tiny_folder):
    return {"kind": "transformers", "base_model": str(tiny_folder), "device": "cpu"}


@pytest.fixture(scope="module")
def in_process(config, tmp_path_factory):
    return train_step(CHATS, tmp_path_factory.mktemp("in_process"), config, settings=SETTINGS)


@pytest.fixture(scope="module")
def torchrun_two(config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun_two")
    return folder, train_step(CHATS, folder, config, settings=SETTINGS,
                              launch=TrainingLaunch(launcher="torchrun", processes=2))


def test_one_launched_process_trains_the_in_process_adapter_to_the_bit(config, in_process, tmp_path):
    launched = train_step(CHATS, tmp_path, config, settings=SETTINGS,
                          launch=TrainingLaunch(launcher="torchrun", processes=1))
    assert launched.losses == in_process.losses and launched.steps == in_process.steps == 2
    assert same_weights(weights(launched), weights(in_process))
    assert launched.record["processes"] == 1 and launched.data_hash == in_process.data_hash
    job = json.loads((tmp_path / "launch.json").read_text())
    assert job["chats"] == CHATS and job["trainer"] == "workbench" and job["settings"]["max_steps"] == 2
    assert (tmp_path / "launch.log").exists() and (tmp_path / "ranks" / "0.json").exists()


def test_two_processes_share_each_batch_and_the_first_writes_the_adapter(torchrun_two, in_process):
    folder, trained = torchrun_two
    first, second = ranks(folder)
    assert first["processes"] == second["processes"] == 2  # two processes, one training
    assert first["losses"] == second["losses"] == trained.losses  # each step's loss is the processes' mean
    record = json.loads((folder / "training.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 2 and record["trainer"] == "workbench"
    assert (folder / "adapter" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (folder / "checkpoints").glob("step-*.pt")) == ["step-0000001.pt", "step-0000002.pt"]
    # Before any update both trainings see the same four rows on the same model: the first loss agrees
    # with one process's (two halves' means against one mean over the batch, so to a small tolerance).
    assert trained.losses[0] == pytest.approx(in_process.losses[0], rel=0.05)


def test_accelerate_launch_runs_the_same_training_as_torchrun(config, torchrun_two, tmp_path):
    _, by_torchrun = torchrun_two
    trained = train_step(CHATS, tmp_path, config, settings=SETTINGS,
                         launch=TrainingLaunch(launcher="accelerate", processes=2))
    assert [r["processes"] for r in ranks(tmp_path)] == [2, 2] and trained.record["processes"] == 2
    assert trained.losses == by_torchrun.losses  # the same shares, the same gloo averaging
    assert same_weights(weights(trained), weights(by_torchrun))


def test_trl_trains_under_torchrun_with_the_batch_split_between_the_processes(config, tmp_path):
    trained = train_step(CHATS, tmp_path, config, settings=SETTINGS,
                         launch=TrainingLaunch(trainer="trl", launcher="torchrun", processes=2))
    assert [r["processes"] for r in ranks(tmp_path)] == [2, 2]
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["trainer"] == "trl" and record["processes"] == 2 and record["steps"] == 2
    assert ranks(tmp_path)[1]["losses"] == trained.losses and len(trained.losses) == 2


def test_a_failing_step_is_reported_with_the_end_of_its_output(config, tmp_path):
    too_short = AdapterSettings(max_steps=1, batch_size=2, max_length=10)  # every row is longer: refused inside
    with pytest.raises(TrainingLaunchError, match=r"(?s)the training step failed.*row 0: \d+ tokens, more than the 10"):
        train_step(CHATS, tmp_path, config, settings=too_short, launch=TrainingLaunch(launcher="torchrun",
                                                                                      processes=1))
    assert not (tmp_path / "training.json").exists() and "more than the 10" in (tmp_path / "launch.log").read_text()
