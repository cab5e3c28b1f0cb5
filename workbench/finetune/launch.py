"""The training step as a process group of its own, started by torchrun or ``accelerate launch``.

`train_step` is what ``workbench finetune`` and the loop's rounds (and their reference arms) train
through. With the launcher ``in-process`` (the default) it trains in this process
(`local_models.train_for_config`). With ``torchrun`` or ``accelerate`` it writes the step's job
into the training folder (``launch.json``: the chats, their names, the settings, the model
config, the adapter to start from, the trainer), runs ``python -m workbench.finetune.launch
<job>`` under the launcher (`launch_command`) in a session of its own, streams its output here and
into ``launch.log``, and reads the `TrainedAdapter` back from the ``training.json`` the step wrote
(`lora.read_trained_adapter`). Inside, every process calls `train_for_config`: each takes its
share of every batch, gradients are averaged, and the first process alone writes the adapter,
converts it to GGUF and writes ``training.json`` (`local_models.first_process`); every process
also writes what it saw to ``ranks/<rank>.json`` (steps, losses, processes, device). The re-test
then runs in the launching process, as without a launcher.

The launcher changes where the step runs, not what it trains: one launched process reaches the
same adapter as in-process training, to the bit. With several, each process averages the loss
over the answer tokens of its own share, so the weights differ from one process's by
floating-point amounts (tests/integration/test_lora_processes.py measures both).
"""

from __future__ import annotations

import codecs
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError, WorkbenchError
from workbench.finetune.local_models import TRAINERS, check_trainer, model_kind, train_for_config

IN_PROCESS = "in-process"
LAUNCHERS = (IN_PROCESS, "torchrun", "accelerate")
ENTRY = "workbench.finetune.launch"
JOB, LOG = "launch.json", "launch.log"
TAIL_CHARS = 4000
INSTALL = {"torchrun": "pip install torch (its package ships torchrun)", "accelerate": "pip install accelerate"}
# Launcher options that, when the user's own launcher arguments give them (or a rendezvous of their
# own), the defaults `launch_command` would add are left out: the user's set-up wins.
_RENDEZVOUS = ("--standalone", "--nnodes", "--rdzv-endpoint", "--rdzv-backend", "--rdzv-id", "--master-addr",
               "--master-port", "--node-rank")
_ACCELERATE_MODES = ("--multi-gpu", "--cpu", "--config-file", "--use-deepspeed", "--use-fsdp", "--tpu",
                     "--use-megatron-lm")


class TrainingLaunchError(WorkbenchError, RuntimeError):
    """A launched training step failed or left no training record; the message shows the command
    and the end of its output."""


@dataclass(frozen=True)
class TrainingLaunch:
    """How a training step runs: `trainer` (`local_models.TRAINERS`: "workbench", the plain loop
    `lora.train_adapter`; "trl", TRL's SFTTrainer), `launcher` (`LAUNCHERS`: "in-process", or
    "torchrun" / "accelerate": a process group of `processes` processes, default one per visible
    CUDA device, else 1) and `launcher_args` (more arguments for the launcher, put after the
    workbench's own, e.g. ``("--master_port", "29600")``). Raises InputError for an unknown
    trainer or launcher, or processes / launcher arguments without a launcher."""

    trainer: str = "workbench"
    launcher: str = IN_PROCESS
    processes: int | None = None
    launcher_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise InputError(f"--trainer must be one of {TRAINERS}, got {self.trainer!r}")
        if self.launcher not in LAUNCHERS:
            raise InputError(f"--launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.processes is not None and self.processes < 1:
            raise InputError(f"--processes must be at least 1, got {self.processes}")
        if self.launcher == IN_PROCESS and (self.processes is not None or self.launcher_args):
            raise InputError("--processes and --launcher-args need --launcher torchrun or --launcher accelerate")

    def describe(self) -> dict[str, Any]:
        """This launch as plain values, for a round's or a training's record."""
        return {"trainer": self.trainer, "launcher": self.launcher, "processes": self.processes,
                "launcher_args": list(self.launcher_args)}


def check_launch(launch: TrainingLaunch, settings: Any = None) -> None:
    """Refuse, before any model is loaded, a `launch` that cannot train `settings` here: its
    trainer (`local_models.check_trainer`: TRL not installed, or a soft prompt for TRL) or its
    launcher not installed (`launcher_executable`). Each error is an InputError naming what to
    install."""
    check_trainer(launch.trainer, settings)
    if launch.launcher != IN_PROCESS:
        launcher_executable(launch.launcher)


def train_step(chats: Sequence[Sequence[dict[str, str]]], folder: str | Path, config: Mapping[str, Any], *,
               settings: Any = None, names: Sequence[str] | None = None, progress: bool = False,
               start_from: str | Path | None = None, launch: TrainingLaunch | None = None) -> Any:
    """The `TrainedAdapter` of `train_for_config(chats, folder, config, ...)` with `launch`'s
    trainer (default `TrainingLaunch()`: the workbench's loop), trained in this process or by
    `launch`'s launcher in a process group of its own (`train_launched`)."""
    launch = launch or TrainingLaunch()
    if launch.launcher == IN_PROCESS:
        return train_for_config(chats, folder, config, settings=settings, names=names, progress=progress,
                                start_from=start_from, trainer=launch.trainer)
    return train_launched(chats, folder, config, settings=settings, names=names, progress=progress,
                          start_from=start_from, launch=launch)


def train_launched(chats: Sequence[Sequence[dict[str, str]]], folder: str | Path, config: Mapping[str, Any], *,
                   settings: Any, names: Sequence[str] | None, progress: bool, start_from: str | Path | None,
                   launch: TrainingLaunch, echo: Callable[[str], None] | None = None) -> Any:
    """The `TrainedAdapter` that `launch`'s launcher trained in `folder` (module docstring), read
    from the ``training.json`` the step wrote. The step's output goes to `echo` (default: this
    process's stdout) as it comes, and to ``folder/launch.log``. Raises InputError before
    starting anything for a trainer that cannot run or a launcher that is not installed
    (`check_launch`); TrainingLaunchError, with the command and the end of its output, when the
    step exits non-zero or writes no record of these rows."""
    from workbench.finetune.lora import read_trained_adapter
    from workbench.finetune.tokens import data_hash

    check_launch(launch, settings)
    if model_kind(config) == "embedded" and getattr(settings, "method", "lora") == "lora":
        from workbench.finetune.gguf_adapter import converter

        converter()  # fetched once here, before training, not by every process of the step at once
    folder = Path(folder)
    job = write_job(folder, chats, config, settings=settings, names=names, progress=progress, start_from=start_from,
                    trainer=launch.trainer)
    command = launch_command(launch.launcher, job, launch.processes, launch.launcher_args)
    # An earlier step's record (maybe of other settings) must not pass for this one's, nor an
    # earlier step's ranks (maybe more processes) for this one's.
    (folder / "training.json").unlink(missing_ok=True)
    shutil.rmtree(folder / "ranks", ignore_errors=True)
    run_step(command, folder / LOG, echo=echo)
    trained = read_trained_adapter(folder) if (folder / "training.json").exists() else None
    if trained is None or trained.data_hash != data_hash(chats):
        raise TrainingLaunchError(f"the training step ({shlex.join(command)}) exited 0 but left no training.json "
                                  f"for these rows in {folder}; its output is in {folder / LOG}")
    return trained


def launch_command(launcher: str, job: str | Path, processes: int | None = None,
                   extra_args: Sequence[str] = ()) -> list[str]:
    """The command that runs the job file `job` (`write_job`) under `launcher` ("torchrun" or
    "accelerate") with `processes` processes (None: `default_processes`) and the user's
    `extra_args`. torchrun runs one node on a free port (``--standalone``) unless `extra_args`
    set a rendezvous; ``accelerate launch`` gets ``--multi_gpu`` for more than one process (on a
    CPU too: without it accelerate starts one process) unless `extra_args` choose the mode or a
    config file. Raises InputError when the launcher is not installed (`launcher_executable`)."""
    if launcher not in LAUNCHERS[1:]:
        raise InputError(f"a launched step needs --launcher torchrun or --launcher accelerate, got {launcher!r}")
    count, extra = str(processes or default_processes()), list(extra_args)
    if launcher == "torchrun":
        own = [*([] if _gives(extra, _RENDEZVOUS) else ["--standalone"]),
               *([] if _gives(extra, ("--nproc-per-node",)) else ["--nproc_per_node", count])]
        return [launcher_executable("torchrun"), *own, *extra, "-m", ENTRY, str(job)]
    own = [*([] if _gives(extra, ("--num-processes",)) else ["--num_processes", count]),
           *(["--multi_gpu"] if int(count) > 1 and not _gives(extra, _ACCELERATE_MODES) else [])]
    return [launcher_executable("accelerate"), "launch", *own, *extra, "-m", ENTRY, str(job)]


def launcher_executable(name: str) -> str:
    """The path of the launcher `name` ("torchrun" or "accelerate"): beside this Python (its
    virtual environment's ``bin``), else on PATH. Raises InputError naming what to install."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InputError(f"--launcher {name}: no {name} beside {sys.executable} nor on PATH; {INSTALL[name]} into "
                         "this environment, or leave out --launcher to train in this process")
    return found


def default_processes() -> int:
    """How many processes a launched step starts when not told: one per visible CUDA device, else 1."""
    import torch

    return max(1, torch.cuda.device_count())


def run_step(command: Sequence[str], log_file: str | Path, *, echo: Callable[[str], None] | None = None) -> None:
    """Run `command` in a session of its own, its output (stdout and stderr together) going to
    `echo` (default: this process's stdout) as it comes and into `log_file`. Interrupted (Ctrl-C)
    or failing here, its process group is stopped. Raises TrainingLaunchError with the command
    and the last `TAIL_CHARS` characters of its output when it exits non-zero."""
    echo = echo or _to_stdout
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    decoder, tail = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
    # A session of its own: Ctrl-C here stops the whole group (`_stop`), not a process at a time.
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with log_file.open("wb") as log:
            # Chunks, not lines: a progress bar redraws with "\r" and would wait for a line end.
            for chunk in iter(lambda: os.read(process.stdout.fileno(), 65536), b""):
                log.write(chunk)
                text = decoder.decode(chunk)
                echo(text)
                tail = (tail + text)[-TAIL_CHARS:]
        code = process.wait()
    except BaseException:
        _stop(process)
        raise
    finally:
        process.stdout.close()
    if code != 0:
        raise TrainingLaunchError(f"the training step failed (exit {code}): {shlex.join(command)}\n"
                                  f"--- the end of its output ---\n{tail.rstrip()}\n--- (all of it: {log_file})")


def write_job(folder: str | Path, chats: Sequence[Sequence[dict[str, str]]], config: Mapping[str, Any], *,
              settings: Any, names: Sequence[str] | None, progress: bool, start_from: str | Path | None,
              trainer: str) -> Path:
    """Write a launched step's job (`train_for_config`'s arguments as JSON) to ``folder/launch.json``
    and return its path (`read_job` reads it)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    job = {"folder": str(folder), "chats": [[dict(message) for message in chat] for chat in chats],
           "names": list(names) if names is not None else None, "config": dict(config),
           "settings": asdict(settings) if settings is not None else None,
           "start_from": str(Path(start_from).resolve()) if start_from is not None else None,
           "progress": bool(progress), "trainer": trainer}
    path = folder / JOB
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(job, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(partial, path)
    return path


def read_job(path: str | Path) -> dict[str, Any]:
    """The keyword arguments of `train_for_config` that the job file `path` (`write_job`) holds,
    ``folder`` among them."""
    from workbench.finetune.lora import settings_from_dict

    job = json.loads(Path(path).read_text(encoding="utf-8"))
    job["settings"] = settings_from_dict(job["settings"]) if job.get("settings") is not None else None
    return job


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbench.finetune.launch JOB``, in every process of a launched step: train the
    job (`train_for_config`) and write this process's ``ranks/<rank>.json``. Returns the exit
    status: 0 trained, 2 a `WorkbenchError` (printed as one line) or a wrong command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: python -m {ENTRY} JOB.json (the job file workbench.finetune.launch.write_job writes)",
              file=sys.stderr)
        return 2
    try:
        job = read_job(args[0])
        folder = job.pop("folder")
        trained = train_for_config(job.pop("chats"), folder, job.pop("config"), **job)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_rank(Path(folder) / "ranks" / f"{os.environ.get('RANK', '0')}.json", trained)
    return 0


def _write_rank(path: Path, trained: Any) -> None:
    """What one process of a launched step saw: its steps, losses, process count and device."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": int(os.environ.get("RANK", "0")), "steps": trained.steps,
                                "losses": trained.losses, "processes": trained.record.get("processes"),
                                "device": trained.record.get("device")}), encoding="utf-8")


def _gives(extra: Sequence[str], options: Sequence[str]) -> bool:
    """Whether the launcher arguments `extra` give one of `options` (``-`` and ``_`` alike, with or
    without ``=value``)."""
    given = {arg.split("=", 1)[0].replace("_", "-") for arg in extra if arg.startswith("--")}
    return any(option in given for option in options)


def _stop(process: subprocess.Popen) -> None:
    """Stop the process group `process` leads (it was started in a session of its own): SIGTERM,
    then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
