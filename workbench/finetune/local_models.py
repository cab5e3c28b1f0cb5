"""Which model configs local fine-tuning can tune, on what base, and how the tuned model is served.

Two model kinds are tuned here (`LOCAL_KINDS`); both train LoRA with peft (`lora.train_adapter`,
or TRL's SFTTrainer: `TRAINERS`) and serve the tuned model on the runtime its base ran on, so that
a before/after difference is the training and not the runtime:

- ``embedded``: the base is the GGUF ``model_path`` (default: the embedded SmolLM2), dequantized
  by transformers for training; the adapter is converted to GGUF (``adapter.gguf``,
  `gguf_adapter`) and served by llama.cpp (``lora_path``).
- ``transformers``: the base is the model folder ``base_model``; the peft adapter folder
  (``adapter/``) is served in-process by transformers (``adapter``,
  `workbench.models.transformers_local`).

Other kinds (``openai_compatible``) are tuned by their provider: export the training data (``workbench
export --format openai``) and start a hosted job (`workbench.models.openai_finetuning`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError

LOCAL_KINDS = ("embedded", "transformers")
ADAPTER_KEYS = {"embedded": "lora_path", "transformers": "adapter"}  # the config key serving an adapter
SERVED_ADAPTERS = {"embedded": "adapter.gguf", "transformers": "adapter"}  # in a training folder
# Who runs a training step: the workbench's own loop (`lora.train_adapter`) or TRL's SFTTrainer
# (`trl_trainer.train_with_trl`, the optional extra ``workbench[trl]``); both write the same folder.
TRAINERS = ("workbench", "trl")
HOSTED = ("a hosted model is tuned by its provider: `workbench export <run> --format openai` writes the chat "
          "JSONL, and workbench.models.openai_finetuning.start_fine_tune starts the job")


def model_kind(config: Mapping[str, Any] | None) -> str:
    """The ``kind`` of a model config (``embedded`` when it names none)."""
    return str((config or {}).get("kind", "embedded"))


def require_local(config: Mapping[str, Any] | None, what: str) -> str:
    """The kind of `config` when local fine-tuning can tune it (`LOCAL_KINDS`); else ValueError
    saying that `what` (e.g. "run complaints") used another kind, which kinds are tuned locally,
    and where a hosted model is tuned."""
    kind = model_kind(config)
    if kind not in LOCAL_KINDS:
        raise InputError(f"{what} used a {kind!r} model; local LoRA fine-tuning tunes a local model: run it with "
                         "`model: {kind: embedded}` (the GGUF, served by llama.cpp) or `model: {kind: transformers, "
                         f"base_model: <folder>}}` (a transformers model folder, served in-process); {HOSTED}")
    return kind


def base_path(config: Mapping[str, Any] | None) -> Path:
    """The base a local model config trains on: the GGUF file (``embedded``: ``model_path``, default
    the embedded SmolLM2) or the model folder (``transformers``: ``base_model``). Raises
    ValueError for other kinds (`require_local`)."""
    from workbench.models.llama_cpp import embedded_model_path

    config = config or {}
    if require_local(config, "the model config") == "transformers":
        return Path(str(config["base_model"])).expanduser()
    return Path(config["model_path"]) if config.get("model_path") else embedded_model_path()


def training_device(config: Mapping[str, Any] | None) -> str | None:
    """The device a config's model trains on: its ``device`` (``transformers``; None for "auto" or
    a kind without one: CUDA when visible, else the CPU)."""
    device = (config or {}).get("device")
    return None if device in (None, "auto") else str(device)


def load_config_base(config: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """(model, tokenizer) of a local config's base, for training: the GGUF dequantized to float32
    (`base_model.load_base`), or the folder in the config's ``dtype`` on its ``device``
    (`transformers_local.load_model_folder`)."""
    from workbench.finetune.base_model import load_base
    from workbench.models.transformers_local import load_model_folder

    config = config or {}
    if require_local(config, "the model config") == "transformers":
        return load_model_folder(base_path(config), device=training_device(config),
                                 dtype=str(config.get("dtype") or "float32"))
    return load_base(config.get("model_path"))


def with_adapter(config: Mapping[str, Any], adapter: str | Path) -> dict[str, Any]:
    """`config` serving `adapter` on its base: ``lora_path`` (a GGUF adapter, ``embedded``) or
    ``adapter`` (a peft adapter folder, ``transformers``), the path resolved."""
    return {**config, ADAPTER_KEYS[require_local(config, "the model config")]: str(Path(adapter).resolve())}


def served_adapter(config: Mapping[str, Any], folder: str | Path) -> Path:
    """The adapter a training in `folder` (`train_for_config`) is served with: ``adapter.gguf``
    (``embedded``) or the peft folder ``adapter`` (``transformers``)."""
    return Path(folder) / SERVED_ADAPTERS[require_local(config, "the model config")]


def tuned_model_config(config: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """The model config of the model tuned in `folder` on `config`'s base (`with_adapter` of
    `served_adapter`): `workbench.models.registry.model_from_config` builds it."""
    return with_adapter(config, served_adapter(config, folder))


def first_process() -> bool:
    """Whether this is the first (or only) process of a training: under torchrun or
    ``accelerate launch`` (``RANK`` set) only that one converts, serves and compares."""
    return int(os.environ.get("RANK", "0")) == 0


def check_trainer(trainer: str, settings: Any = None) -> None:
    """Refuse a `trainer` (`TRAINERS`) that cannot train `settings` here, before any model is
    loaded: an unknown name, ``trl`` when TRL is not installed (naming the extra to install), or
    ``trl`` for a soft prompt (it trains LoRA only)."""
    if trainer not in TRAINERS:
        raise InputError(f"trainer must be one of {TRAINERS}, got {trainer!r}")
    if trainer != "trl":
        return
    if getattr(settings, "method", "lora") != "lora":
        raise InputError(f"--trainer trl trains LoRA adapters only, not a {settings.method!r}: train a soft prompt "
                         "with the workbench's own trainer (leave out --trainer)")
    if importlib.util.find_spec("trl") is None:
        raise InputError("--trainer trl needs TRL, which is not installed: pip install 'workbench[trl]'")


def trainer_function(trainer: str, settings: Any = None) -> Callable[..., Any]:
    """The function that trains for `trainer` (`TRAINERS`, checked by `check_trainer`); it takes
    `lora.train_adapter`'s arguments and returns a `TrainedAdapter`."""
    check_trainer(trainer, settings)
    if trainer == "trl":
        from workbench.finetune.trl_trainer import train_with_trl

        return train_with_trl
    from workbench.finetune.lora import train_adapter

    return train_adapter


def train_for_config(chats: Sequence[Sequence[dict[str, str]]], folder: str | Path, config: Mapping[str, Any], *,
                     settings: Any = None, names: Sequence[str] | None = None, progress: bool = False,
                     start_from: str | Path | None = None, trainer: str = "workbench") -> Any:
    """An adapter (`settings`: LoRA or a soft prompt) trained by `trainer` (`trainer_function`:
    ``workbench``, `lora.train_adapter`; ``trl``, TRL's SFTTrainer) on `chats` on a fresh copy
    of the base of the local model config `config`, in `folder`, continuing from the
    peft adapter `start_from` when given. A LoRA on ``embedded`` is converted to
    ``folder/adapter.gguf`` for llama.cpp (`gguf_adapter.train_for_llama_cpp`; the converter is
    checked before training), by the first process only (`first_process`). Returns the
    `TrainedAdapter`; `tuned_model_config(config, folder)` serves a LoRA. ``training.json``
    records the base (`base_model.base_identity`). ``workbench finetune`` and the loop's rounds
    both train through here (in this process, or in each process of a launched step:
    `launch.train_step`)."""
    kind = require_local(config, "the model config")
    train = trainer_function(trainer, settings)
    if kind == "embedded" and getattr(settings, "method", "lora") == "lora":
        from workbench.finetune.gguf_adapter import train_for_llama_cpp

        trained, _ = train_for_llama_cpp(list(chats), folder, settings=settings, model_path=config.get("model_path"),
                                         names=list(names) if names is not None else None, progress=progress,
                                         start_from=start_from, train=train)
        return trained
    model, tokenizer = load_config_base(config)  # fresh each time: peft changes the model it wraps
    return train(list(chats), folder, settings=settings, base=lambda: (model, tokenizer),
                 base_gguf=base_path(config), device=training_device(config), names=names,
                 progress=progress, start_from=start_from)
