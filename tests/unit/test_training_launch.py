"""How a training step is launched (`workbench.finetune.launch`), without training: the commands
torchrun and ``accelerate launch`` get, the job file the step reads, what is refused before any
model loads (a launcher or TRL not installed, each naming what to install), and which of it
belongs in a loop round's fingerprint (the trainer does, the launcher does not). The launched
trainings themselves run in tests/integration/test_lora_processes.py and test_trl_trainer.py."""

import importlib.util
import sys

import pytest
import yaml

from workbench.cli.main import main
from workbench.core.errors import InputError
from workbench.finetune.launch import ENTRY, TrainingLaunch, check_launch, launch_command, read_job, write_job
from workbench.finetune.lora import AdapterSettings

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
CHAT = [{"role": "system", "content": "Label it."}, {"role": "user", "content": "Fee wrong."},
        {"role": "assistant", "content": '{"label": "complaint"}'}]


@pytest.fixture
def no_launchers(monkeypatch, tmp_path):
    """An environment with neither torchrun nor accelerate: none beside Python, none on PATH."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.fixture
def no_trl(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "trl" else real(name, *rest))


@pytest.mark.parametrize(("given", "message"), [
    ({"trainer": "axolotl"}, r"--trainer must be one of \('workbench', 'trl'\), got 'axolotl'"),
    ({"launcher": "deepspeed"}, r"--launcher must be one of \('in-process', 'torchrun', 'accelerate'\)"),
    ({"processes": 2}, "--processes and --launcher-args need --launcher torchrun or --launcher accelerate"),
    ({"launcher_args": ("--master_port", "1")}, "need --launcher torchrun"),
    ({"launcher": "torchrun", "processes": 0}, "--processes must be at least 1, got 0"),
])
def test_a_launch_that_cannot_be_is_refused_by_name(given, message):
    with pytest.raises(InputError, match=message):
        TrainingLaunch(**given)


def test_torchrun_runs_one_node_on_a_free_port_unless_the_user_sets_a_rendezvous(tmp_path):
    command = launch_command("torchrun", tmp_path / "launch.json", 2)
    assert command[0].endswith("torchrun") and command[1:] == [
        "--standalone", "--nproc_per_node", "2", "-m", ENTRY, str(tmp_path / "launch.json")]
    theirs = launch_command("torchrun", "job.json", 2, ["--nnodes", "2", "--rdzv_endpoint=host:29400",
                                                        "--nproc-per-node=4"])
    assert theirs[1:] == ["--nnodes", "2", "--rdzv_endpoint=host:29400", "--nproc-per-node=4", "-m", ENTRY, "job.json"]


def test_accelerate_gets_multi_gpu_for_several_processes_unless_the_user_chose_a_mode(tmp_path):
    assert launch_command("accelerate", "job.json", 2)[1:] == [
        "launch", "--num_processes", "2", "--multi_gpu", "-m", ENTRY, "job.json"]
    assert launch_command("accelerate", "job.json", 1)[1:] == ["launch", "--num_processes", "1", "-m", ENTRY,
                                                               "job.json"]
    theirs = launch_command("accelerate", "job.json", 4, ["--config_file", "fsdp.yaml"])
    assert theirs[1:] == ["launch", "--num_processes", "4", "--config_file", "fsdp.yaml", "-m", ENTRY, "job.json"]
    with pytest.raises(InputError, match="needs --launcher torchrun or --launcher accelerate"):
        launch_command("in-process", "job.json")


@pytest.mark.parametrize(("launcher", "install"), [("torchrun", "pip install torch"),
                                                   ("accelerate", "pip install accelerate")])
def test_a_launcher_that_is_not_installed_is_refused_naming_what_to_install(no_launchers, launcher, install):
    with pytest.raises(InputError, match=f"--launcher {launcher}: no {launcher} beside .* nor on PATH; {install}"):
        check_launch(TrainingLaunch(launcher=launcher))
    check_launch(TrainingLaunch())  # in-process needs no launcher


def test_trl_not_installed_or_asked_for_a_soft_prompt_is_refused_before_any_model_loads(no_trl):
    with pytest.raises(InputError, match=r"--trainer trl needs TRL, which is not installed: pip install "
                                         r"'workbench\[trl\]'"):
        check_launch(TrainingLaunch(trainer="trl"), AdapterSettings())
    with pytest.raises(InputError, match="--trainer trl trains LoRA adapters only, not a 'prompt_tuning'"):
        check_launch(TrainingLaunch(trainer="trl"), AdapterSettings(method="prompt_tuning"))
    check_launch(TrainingLaunch(), AdapterSettings())  # the workbench's own loop needs no TRL


def test_the_job_file_holds_what_every_process_trains(tmp_path):
    settings = AdapterSettings(max_steps=3, batch_size=2, target_modules=("q_proj", "k_proj"))
    path = write_job(tmp_path / "step", [CHAT], {"kind": "embedded"}, settings=settings, names=["example e1"],
                     progress=False, start_from=tmp_path / "start", trainer="trl")
    job = read_job(path)
    assert job["settings"] == settings and job["chats"] == [CHAT] and job["names"] == ["example e1"]
    assert job["folder"] == str((tmp_path / "step").resolve()) and job["start_from"] == str(tmp_path / "start")
    assert job["trainer"] == "trl" and job["config"] == {"kind": "embedded"}
    assert [p.name for p in (tmp_path / "step").iterdir()] == ["launch.json"]  # written whole: no .partial left


def test_the_command_line_refuses_a_missing_trainer_or_launcher_with_exit_2(no_trl, capsys, tmp_path):
    assert main(["finetune", "runs/none", "--trainer", "trl"]) == 2  # before the run is even read
    assert "pip install 'workbench[trl]'" in capsys.readouterr().err
    assert main(["finetune", "runs/none", "--processes", "2"]) == 2
    assert "need --launcher torchrun" in capsys.readouterr().err
    assert main(["finetune", "runs/none", "--method", "openai", "--launcher", "torchrun"]) == 2
    assert "--method openai is trained by the provider" in capsys.readouterr().err


def loop_config(tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "loop", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 6,
        "variants": ["zero_shot"], "runs_dir": str(tmp_path / "runs")}))
    return config


def test_the_loop_refuses_a_launcher_that_is_not_installed_before_any_model_call(no_launchers, capsys, tmp_path):
    assert main(["loop", str(loop_config(tmp_path)), "--launcher", "accelerate", "--no-progress"]) == 2
    assert "--launcher accelerate: no accelerate" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no round folder, no run


def test_the_trainer_is_in_a_rounds_fingerprint_and_the_launcher_is_not(tmp_path):
    from workbench.experiments.config import load_experiment
    from workbench.experiments.rounds import RoundSettings, fingerprint, fingerprint_differences

    experiment = load_experiment(loop_config(tmp_path))
    plain = fingerprint(experiment, RoundSettings())
    launched = RoundSettings(launch=TrainingLaunch(launcher="torchrun", processes=4, launcher_args=("--nnodes", "1")))
    assert fingerprint(experiment, launched) == plain and plain["trainer"] == "workbench"
    assert fingerprint_differences(plain, fingerprint(experiment, RoundSettings(launch=TrainingLaunch(
        trainer="trl")))) == ["--trainer: 'workbench' before, 'trl' now"]
    recorded_before = {key: value for key, value in plain.items() if key != "trainer"}  # rounds from before it
    assert fingerprint_differences(recorded_before, plain) == []
