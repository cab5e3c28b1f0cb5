"""Fine-tuning on chat rows with peft (LoRA or soft prompts), with checkpoints it resumes from.

`method` "lora" trains low-rank adapters on the attention projections; "prompt_tuning" trains
`virtual_tokens` soft-prompt embeddings put in front of every input (the model is untouched, the
prompt learnt), initialised from the words of the rows' own system message.

A plain PyTorch loop over the peft model rather than transformers' Trainer or TRL's SFTTrainer,
chosen by measurement (`benchmarks/finetune_throughput.py`, 32 complaint rows, 12 steps of 4 on 2
CPU cores, one run): this loop 6.0 s a step and 4.1 GiB at peak, a bare peft loop 8.2 s and 4.8
GiB, TRL 1.16's SFTTrainer 9.8 s and 4.7 GiB, on the same tokens (TRL supervises exactly the
tokens `tokens` does). Its loss projects only the answer's positions onto the vocabulary
(`answer_loss`), which is its lead over the bare loop; and the loop makes exact resumption simple.
``--trainer trl`` hands the step to TRL instead (`trl_trainer`), for set-ups built on it.

Everything that decides a step is a function of the seed and the step number (each epoch's row
order is drawn from ``seed + epoch``) or is saved in the checkpoint (adapter weights, optimizer,
schedule, torch's random state, the losses so far), so a training killed at any moment and
started again continues from its last checkpoint and reaches the same weights it would have
reached without the interruption.

The folder written (`output_dir`): ``checkpoints/step-<n>.pt`` (the last two kept), and at the end
``adapter/`` (peft's `save_pretrained`: ``adapter_config.json``, ``adapter_model.safetensors``)
and ``training.json`` (settings, base model identity, the SHA-256 of the training rows, the loss
curve, supervised tokens, device, seconds, library versions).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.errors import InputError, MissingInputError
from workbench.core.frames import plain
from workbench.finetune.base_model import base_identity, load_base, pick_device
from workbench.finetune.tokens import IGNORE, MAX_LENGTH, TokenizedRow, data_hash, pad_batch, tokenize_rows

# Each method and what the progress bar calls it while it trains.
METHOD_NAMES = {"lora": "LoRA", "prompt_tuning": "soft prompt"}
METHODS = tuple(METHOD_NAMES)


@dataclass(frozen=True)
class AdapterSettings:
    """What decides a training run (LoRA or soft prompts, `method`). `max_steps` (when set)
    overrides `epochs`; a step is one batch of `batch_size` rows; `checkpoint_every` steps a
    checkpoint is written. `r`, `alpha`, `dropout`, `target_modules` are LoRA's; `virtual_tokens`
    the soft prompt's length. `max_length` is the most tokens a row may have (prompt and answer;
    `--max-length`): a longer row is refused before training, naming it, never cut."""

    method: str = "lora"
    virtual_tokens: int = 20
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-3
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 4
    max_length: int = MAX_LENGTH
    warmup_steps: int = 0
    seed: int = 0
    checkpoint_every: int = 20

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.checkpoint_every < 1:
            raise InputError("batch_size, epochs and checkpoint_every must be at least 1")
        if self.max_length < 1:
            raise InputError(f"max_length must be at least 1 token, got {self.max_length}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}")


@dataclass
class TrainedAdapter:
    """A finished training: where the adapter is, and what made it (see the module docstring)."""

    path: Path
    steps: int
    losses: list[float]
    data_hash: str
    supervised_tokens: int
    resumed_from: int | None
    seconds: float
    settings: AdapterSettings
    record: dict[str, Any] = field(default_factory=dict)


def settings_from_dict(values: dict[str, Any]) -> AdapterSettings:
    """The `AdapterSettings` that `asdict` made `values` of (``training.json``'s ``settings``, a
    launched step's job: JSON, where the target modules became a list)."""
    return AdapterSettings(**{**values, "target_modules": tuple(values.get("target_modules") or ())})


def read_trained_adapter(folder: str | Path) -> TrainedAdapter:
    """The `TrainedAdapter` of the finished training in `folder`, rebuilt from its ``training.json``
    (what a training in another process, `launch.train_step`, leaves); its `path` is
    ``folder/adapter``. Raises MissingInputError when the folder holds no ``training.json``."""
    record_file = Path(folder) / "training.json"
    if not record_file.exists():
        raise MissingInputError(f"{folder} holds no training.json: the training there has not finished")
    record = json.loads(record_file.read_text(encoding="utf-8"))
    return TrainedAdapter(Path(folder) / "adapter", int(record["steps"]), [float(x) for x in record["losses"]],
                          record["data_hash"], int(record["supervised_tokens"]), record.get("resumed_from"),
                          float(record["seconds"]), settings_from_dict(record["settings"]), record)


class CheckpointMismatch(InputError):
    """A checkpoint in the output folder was made for other rows or settings."""


def total_steps(rows: int, settings: AdapterSettings) -> int:
    return settings.max_steps or settings.epochs * math.ceil(rows / settings.batch_size)


def answer_loss(model: Any, tensors: dict[str, Any]) -> Any:
    """The mean cross-entropy of the supervised (answer) tokens of a padded batch (``input_ids``,
    ``attention_mask``, ``labels``), the loss transformers computes from ``labels``, but with the
    vocabulary projection made only at the positions that predict a supervised token. A row is
    mostly prompt (about 300 tokens before a 10-token answer here), and projecting every position
    onto SmolLM2's 49,152 words is a fifth of a step's arithmetic and most of its activation memory.
    Soft prompts put virtual tokens in front of the input, which shifts the positions: they keep
    the library's loss."""
    import torch

    labels = tensors["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE  # position t predicts token t + 1
    logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                   logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.float(), targets[targets != IGNORE])


def batch_rows(step: int, rows: int, settings: AdapterSettings) -> list[int]:
    """The row indices of (0-based) `step`: epoch ``step // steps_per_epoch``, in an order drawn
    from ``seed + epoch``; the same on every run and after a resume."""
    per_epoch = math.ceil(rows / settings.batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng(settings.seed + epoch).permutation(rows)
    return order[position * settings.batch_size:(position + 1) * settings.batch_size].tolist()


def train_adapter(
    chats: Sequence[Sequence[dict[str, str]]], output_dir: str | Path, *, settings: AdapterSettings | None = None,
    names: Sequence[str] | None = None, device: str | None = None, progress: bool = True,
    base: Callable[[], tuple[Any, Any]] | None = None, after_step: Callable[[int, float], None] | None = None,
    base_gguf: str | Path | None = None, start_from: str | Path | None = None,
) -> TrainedAdapter:
    """Train an adapter (LoRA or a soft prompt: `settings.method`) on `chats` (system, user,
    assistant; e.g. the train rows' ``messages`` of `TrainingData.examples`), resuming from the
    newest checkpoint in `output_dir` when there is one. `names` name the rows in error messages;
    `base` returns (model, tokenizer) (default: the GGUF `base_gguf`, else the embedded SmolLM2,
    on `device`), and `base_gguf` is the file it was loaded from, or the transformers model folder
    (model kind ``transformers``), whose identity ``training.json`` records
    (`base_model.base_identity`); `after_step(step, loss)` is called after every step. `start_from`
    is an adapter folder (an earlier training's ``adapter/``) whose weights training continues
    from, as a loop round continues from the round before; its settings (rank, targets, method)
    must be these `settings`'.
    Raises TrainingRowError before training when a row is unusable, CheckpointMismatch when the
    folder's checkpoint was made for other rows or settings."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    settings = settings or AdapterSettings()
    if not chats:
        raise InputError("no training rows: build training data first (workbench data)")
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    digest = data_hash(chats)
    started = time.monotonic()
    # One process: the device `pick_device` chooses. Under `accelerate launch`, one process per
    # device, each taking its share of every batch, gradients averaged across them. cpu=True whenever
    # training runs on the CPU, not only when asked: finding no GPU, accelerate would otherwise run
    # each process of a launched step alone, each training the whole batch and writing the adapter.
    accelerator = Accelerator(cpu=pick_device(device) == "cpu")
    model, tokenizer, rows = _start_model(chats, names, settings, accelerator, base=base, base_gguf=base_gguf,
                                          device=device, start_from=start_from)
    device_name = str(accelerator.device)
    steps = total_steps(len(rows), settings)
    optimizer, schedule = _optimizer(model, settings, steps)
    losses, start, resumed = _resume(checkpoints, model, optimizer, schedule, digest, settings, device_name)
    # The schedule is stepped here once per step, not prepared: accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pad = tokenizer.pad_token_id
    share = _process_share(accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=steps, initial=start, desc=METHOD_NAMES[settings.method], unit="step",
               disable=not progress or not accelerator.is_local_main_process)
    for step in range(start, steps):
        batch = pad_batch([rows[i] for i in share(batch_rows(step, len(rows), settings))], pad)
        losses.append(_train_step(accelerator, model, optimizer, schedule, batch, settings.method))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if after_step is not None:
            after_step(step + 1, losses[-1])
        if ((step + 1) % settings.checkpoint_every == 0 or step + 1 == steps) and accelerator.is_main_process:
            _save_checkpoint(checkpoints, step + 1, _checkpoint_state(
                step + 1, accelerator, model, optimizer, schedule, losses, digest, settings))
    bar.close()
    accelerator.wait_for_everyone()
    adapter_dir = output_dir / "adapter"
    _write_adapter(accelerator, model, adapter_dir)
    record = _training_record(settings, rows, digest, steps, losses, resumed, device_name, started,
                              accelerator.num_processes, base=base, base_gguf=base_gguf, start_from=start_from)
    if accelerator.is_main_process:
        _write_json(output_dir / "training.json", record)
    accelerator.wait_for_everyone()
    return TrainedAdapter(adapter_dir, steps, losses, digest, record["supervised_tokens"], resumed, record["seconds"],
                          settings, record)


def _start_model(chats: Sequence[Sequence[dict[str, str]]], names: Sequence[str] | None, settings: AdapterSettings,
                 accelerator: Any, *, base: Callable[[], tuple[Any, Any]] | None, base_gguf: str | Path | None,
                 device: str | None, start_from: str | Path | None) -> tuple[Any, Any, list[TokenizedRow]]:
    """(model, tokenizer, rows): the base model wrapped in a fresh peft adapter on the accelerator's
    device, its weights drawn from `settings.seed` and then taken from `start_from` when given (a
    soft prompt otherwise starts from the task's words); its tokenizer; and `chats` tokenized,
    every row checked (TrainingRowError names the first unusable one)."""
    import torch
    from peft import get_peft_model

    model, tokenizer = (base or (lambda: load_base(base_gguf, device=device or str(accelerator.device))))()
    rows = tokenize_rows(tokenizer, chats, names or [f"row {i}" for i in range(len(chats))], settings.max_length)
    torch.manual_seed(settings.seed)
    model = get_peft_model(model, peft_config(settings, tokenizer, chats))
    if start_from is not None:
        _load_start(model, Path(start_from), settings)
    elif settings.method == "prompt_tuning":
        _init_soft_prompt(model, tokenizer, chats, settings.virtual_tokens)
    return model.to(accelerator.device), tokenizer, rows


def _optimizer(model: Any, settings: AdapterSettings, steps: int) -> tuple[Any, Any]:
    """(optimizer, schedule): AdamW over `model`'s trainable weights at `settings.learning_rate`,
    and its learning rate warmed up over `settings.warmup_steps`, then falling linearly to 0 at `steps`."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _linear(settings.warmup_steps, steps))


def _resume(checkpoints: Path, model: Any, optimizer: Any, schedule: Any, digest: str, settings: AdapterSettings,
            device_name: str) -> tuple[list[float], int, int | None]:
    """(losses so far, the step to go on from, the step resumed from or None): with a checkpoint
    in `checkpoints`, its newest is put back into `model`, `optimizer`, `schedule` and the random
    state (CheckpointMismatch when it was made for other rows or settings); without one, a fresh
    start."""
    import torch
    from peft import set_peft_model_state_dict

    latest = _latest_checkpoint(checkpoints)
    if latest is None:
        return [], 0, None
    state = torch.load(latest, map_location=device_name, weights_only=False)
    _check_same(state, digest, settings, latest)
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"].cpu())  # map_location put it on the training device
    # One frame deeper than train_adapter: the warning still names the code that called it.
    _restore_device_rng(torch, state.get("device_rng"), device_name, stacklevel=4)
    losses, start = list(state["losses"]), int(state["step"])
    return losses, start, start


def _train_step(accelerator: Any, model: Any, optimizer: Any, schedule: Any, batch: dict[str, Any],
                method: str) -> float:
    """The loss of one optimizer step on the padded `batch`, averaged over the processes."""
    import torch

    device_name = str(accelerator.device)
    tensors = {key: torch.tensor(value, device=device_name) for key, value in batch.items()}
    loss = answer_loss(model, tensors) if method == "lora" else model(**tensors).loss
    accelerator.backward(loss)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(loss.detach(), "mean"))


def _checkpoint_state(step: int, accelerator: Any, model: Any, optimizer: Any, schedule: Any, losses: list[float],
                      digest: str, settings: AdapterSettings) -> dict[str, Any]:
    """What a checkpoint after `step` holds: everything a resumed training needs to go on as
    if uninterrupted (module docstring), and the rows' hash and settings it must match."""
    import torch
    from peft import get_peft_model_state_dict

    device_name = str(accelerator.device)
    return {
        "step": step, "adapter": get_peft_model_state_dict(accelerator.unwrap_model(model)),
        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
        "device_rng": _device_rng(torch, device_name), "losses": losses, "data_hash": digest,
        "settings": asdict(settings)}


def _write_adapter(accelerator: Any, model: Any, folder: Path) -> None:
    """Write the trained adapter (peft's `save_pretrained`) to `folder`, from the main process only,
    leaving the unwrapped model in eval mode."""
    model = accelerator.unwrap_model(model)
    model.eval()
    if accelerator.is_main_process:
        model.save_pretrained(folder)


def _training_record(settings: AdapterSettings, rows: list[TokenizedRow], digest: str, steps: int,
                     losses: list[float], resumed: int | None, device_name: str, started: float, processes: int, *,
                     base: Callable[[], tuple[Any, Any]] | None, base_gguf: str | Path | None,
                     start_from: str | Path | None) -> dict[str, Any]:
    """What ``training.json`` records (module docstring), ``seconds`` counted from `started`
    (a `time.monotonic` reading) to now."""
    return {
        "settings": asdict(settings),
        "base": base_identity(base_gguf) if base is None or base_gguf else {"file": "custom"},
        "data_hash": digest, "rows": len(rows), "start_from": str(start_from) if start_from else None,
        "supervised_tokens": sum(row.supervised for row in rows), "steps": steps,
        "losses": losses, "resumed_from": resumed, "device": device_name,
        "seconds": round(time.monotonic() - started, 2), "versions": _versions(),
        "processes": processes, "trainer": "workbench",
    }


def _process_share(index: int, processes: int) -> Callable[[list[int]], list[int]]:
    """A process's rows of a batch: every `processes`-th from its `index`. A batch with fewer rows
    than processes (an epoch's last) is repeated first, so that no process idles and blocks the
    others' gradient exchange."""
    def share(batch: list[int]) -> list[int]:
        if processes == 1:
            return batch
        repeated = (batch * math.ceil(processes / len(batch)))[:max(len(batch), processes)]
        return repeated[index::processes]
    return share


def _device_rng(torch: Any, device_name: str) -> Any:
    """The random state of the CUDA device training runs on (LoRA dropout draws from it there, not
    from the CPU generator), or None on the CPU."""
    if not device_name.startswith("cuda"):
        return None
    return torch.cuda.get_rng_state(torch.device(device_name))


def _restore_device_rng(torch: Any, saved: Any, device_name: str, *, stacklevel: int = 3) -> None:
    """Put back `_device_rng`'s state, so that a resumed training draws the dropout masks the
    uninterrupted one would have. A checkpoint from the CPU (or from before this was saved) has
    none; resuming it on a GPU cannot repeat the masks, which is said rather than hidden (a
    warning at `stacklevel`)."""
    if not device_name.startswith("cuda"):
        return
    if saved is None:
        warnings.warn("the checkpoint holds no CUDA random state (made on the CPU or by an older version): the "
                      "resumed training draws other dropout masks than an uninterrupted one", stacklevel=stacklevel)
        return
    torch.cuda.set_rng_state(saved.cpu(), torch.device(device_name))


def peft_config(settings: AdapterSettings, tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]]) -> Any:
    """peft's configuration for `settings.method`."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit

    if settings.method == "lora":
        return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                          target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    # peft's text initialisation loads a tokenizer by hub name, which cannot work offline: start
    # random and set the embeddings from the task's words here (`_init_soft_prompt`).
    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=settings.virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.RANDOM)


def _load_start(model: Any, folder: Path, settings: AdapterSettings) -> None:
    """Put the weights of the adapter in `folder` into the fresh peft `model`, after checking that
    it was trained with the same kind of adapter."""
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        raise MissingInputError(f"{folder} holds no adapter_model.safetensors: pass the adapter/ folder of an "
                                "earlier training (train_adapter's TrainedAdapter.path)")
    saved = PeftConfig.from_pretrained(str(folder))
    wanted = peft_config(settings, None, [])
    mine = {"type": str(wanted.peft_type), "r": getattr(wanted, "r", None),
            "targets": sorted(getattr(wanted, "target_modules", None) or []),
            "tokens": getattr(wanted, "num_virtual_tokens", None)}
    theirs = {"type": str(saved.peft_type), "r": getattr(saved, "r", None),
              "targets": sorted(getattr(saved, "target_modules", None) or []),
              "tokens": getattr(saved, "num_virtual_tokens", None)}
    if mine != theirs:
        raise CheckpointMismatch(f"the adapter in {folder} was trained with {theirs}, these settings make {mine}: "
                                 "continue with the same method, rank and target modules, or start afresh")
    set_peft_model_state_dict(model, load_file(str(weights)))


def _init_soft_prompt(model: Any, tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]], tokens: int) -> None:
    """Start the soft prompt from the embeddings of the rows' own system message (repeated or cut
    to `tokens`): soft prompts started from the task's words learn faster on small data."""
    import torch

    words = str(chats[0][0].get("content", "")) if chats and chats[0] else "Answer in JSON."
    ids = tokenizer(words, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    ids = (ids * math.ceil(tokens / len(ids)))[:tokens]
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        start = embeddings(torch.tensor(ids, device=embeddings.weight.device)).detach().clone().float()
        model.prompt_encoder["default"].embedding.weight.copy_(start)


def _linear(warmup: int, steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))
    return factor


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*.pt")) if folder.exists() else []
    return found[-1] if found else None


def _save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a checkpoint is whole or absent, even when the process is killed
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def _check_same(state: dict[str, Any], digest: str, settings: AdapterSettings, path: Path) -> None:
    if state.get("data_hash") != digest:
        raise CheckpointMismatch(f"{path} was made for other training rows (data hash {state.get('data_hash')}, "
                                 f"now {digest}); train into another folder, or delete this one to start again")
    saved = state.get("settings", {})
    differs = {key: (saved.get(key), value) for key, value in asdict(settings).items()
               if plain(saved.get(key)) != plain(value)}
    if differs:
        raise CheckpointMismatch(f"{path} was made with other settings {differs} (saved, now); train into another "
                                 "folder, or delete this one to start again")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(partial, path)


def _versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for package in ("torch", "transformers", "peft"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
