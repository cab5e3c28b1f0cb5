"""LoRA trained by TRL's `SFTTrainer` (``--trainer trl``, the optional extra ``workbench[trl]``), for
users whose GPU set-up is TRL- or Axolotl-based.

The same rows, the same adapter and the same folder as `lora.train_adapter`: a peft LoRA made by
`lora.peft_config` from the `AdapterSettings` (r, alpha, dropout, target modules), its weights
drawn from `seed` and continued from `start_from` as there; ``adapter/`` (peft's
`save_pretrained`) and ``training.json`` with the keys `train_adapter` writes (``trainer``:
``"trl"``), so that the GGUF conversion, the re-test and the loss plots are unchanged.

The rows are the chats of the HF chat export's ``messages`` column
(`trainingdata.export_hf.to_chat_dataset`: system, user, assistant), each split into TRL's
conversational prompt-completion form (prompt: all but the last message; completion: the
answer), so that TRL supervises the answer and its end of turn only (``completion_only_loss``),
the tokens `tokens.tokenize_chat` supervises. Not ``assistant_only_loss``: it needs
``{% generation %}`` marks that SmolLM2's chat template lacks. TRL silently drops a row whose mask
is empty, and a mask that trains on nothing is a known failure, so a row count that shrinks is
refused and the supervised tokens are counted from TRL's own labels. Every row is first checked by
`tokens.tokenize_rows`, which refuses a row longer than `max_length` by name (TRL would cut it
silently).

Set as `train_adapter` trains: torch's AdamW (weight decay 0.01), no gradient clipping, the
linear schedule with `warmup_steps`, no gradient checkpointing, no mixed precision, the global
batch `batch_size` split between the processes of a launched step. With a batch that holds every
row and no dropout, both trainers reach the same weights (tests/integration/test_trl_trainer.py).
What differs: TRL draws its own (seeded) batch order, and a killed TRL training starts again from
step 0 (TRL's checkpoints are not kept or resumed here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.finetune.base_model import base_identity, load_base
from workbench.finetune.lora import AdapterSettings, TrainedAdapter, _load_start, _versions, _write_json, peft_config
from workbench.finetune.tokens import IGNORE, data_hash, tokenize_rows


def train_with_trl(
    chats: Sequence[Sequence[dict[str, str]]], output_dir: str | Path, *, settings: AdapterSettings | None = None,
    names: Sequence[str] | None = None, device: str | None = None, progress: bool = True,
    base: Callable[[], tuple[Any, Any]] | None = None, after_step: Callable[[int, float], None] | None = None,
    base_gguf: str | Path | None = None, start_from: str | Path | None = None,
) -> TrainedAdapter:
    """A LoRA trained on `chats` by TRL's SFTTrainer in `output_dir` (module docstring), taking
    `lora.train_adapter`'s arguments; `after_step(step, loss)` is called after every step.
    Returns the `TrainedAdapter`. Raises InputError for a soft prompt, when TRL is not installed,
    for an unusable row (named, `tokens.tokenize_rows`), and when TRL would supervise no token of
    a row."""
    from workbench.finetune.local_models import check_trainer

    settings = settings or AdapterSettings()
    check_trainer("trl", settings)
    if not chats:
        raise InputError("no training rows: build training data first (workbench data)")
    output_dir, started, digest = Path(output_dir), time.monotonic(), data_hash(chats)
    model, tokenizer = (base or (lambda: load_base(base_gguf, device=device)))()
    rows = tokenize_rows(tokenizer, chats, names or [f"row {i}" for i in range(len(chats))], settings.max_length)
    with _dataset_bars(progress):
        trainer = sft_trainer(peft_model(model, tokenizer, chats, settings, start_from), tokenizer, chats, settings,
                              output_dir, device=device, progress=progress, after_step=after_step)
    supervised = supervised_tokens(trainer.train_dataset, len(chats), names)
    trainer.train()
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    adapter_dir = output_dir / "adapter"
    record = {
        "settings": asdict(settings),
        "base": base_identity(base_gguf) if base is None or base_gguf else {"file": "custom"},
        "data_hash": digest, "rows": len(rows), "start_from": str(start_from) if start_from else None,
        "supervised_tokens": supervised, "steps": int(trainer.state.global_step), "losses": losses,
        "resumed_from": None, "device": str(trainer.args.device), "seconds": round(time.monotonic() - started, 2),
        "versions": {**_versions(), "trl": _trl_version()}, "processes": int(trainer.args.world_size),
        "trainer": "trl",
    }
    trainer.model.eval()
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(adapter_dir)
        _write_json(output_dir / "training.json", record)
    trainer.accelerator.wait_for_everyone()
    return TrainedAdapter(adapter_dir, record["steps"], losses, digest, supervised, None, record["seconds"], settings,
                          record)


def peft_model(model: Any, tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]], settings: AdapterSettings,
               start_from: str | Path | None) -> Any:
    """`model` wrapped in a fresh peft LoRA (`lora.peft_config`), its weights drawn from
    `settings.seed` and then taken from the adapter folder `start_from` when given, as
    `train_adapter` starts."""
    import torch
    from peft import get_peft_model

    # transformers marks a model read from a GGUF as quantized (and Trainer refuses to train it)
    # although its weights are dequantized float32 tensors; the mark goes once that is certain.
    if getattr(model, "hf_quantizer", None) is not None:
        if any(p.dtype not in (torch.float32, torch.float16, torch.bfloat16) for p in model.parameters()):
            raise InputError("the base model still holds packed (quantized) weights: TRL cannot train it")
        model.hf_quantizer, model.is_quantized = None, False
    torch.manual_seed(settings.seed)
    wrapped = get_peft_model(model, peft_config(settings, tokenizer, chats))
    if start_from is not None:
        _load_start(wrapped, Path(start_from), settings)
    return wrapped


def sft_trainer(model: Any, tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]], settings: AdapterSettings,
                output_dir: Path, *, device: str | None, progress: bool,
                after_step: Callable[[int, float], None] | None = None) -> Any:
    """TRL's `SFTTrainer` for the peft `model` on `chats` as prompt-completion rows
    (`prompt_completion_rows`), set as the module docstring says. Raises InputError when
    `settings.batch_size` does not split evenly between the processes of a launched step."""
    import os

    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if settings.batch_size % processes:
        raise InputError(f"--batch-size {settings.batch_size} does not split between {processes} processes under "
                         "--trainer trl: give a multiple of --processes")
    config = SFTConfig(
        output_dir=str(output_dir / "checkpoints"), max_steps=settings.max_steps or -1,
        num_train_epochs=settings.epochs, per_device_train_batch_size=settings.batch_size // processes,
        gradient_accumulation_steps=1, learning_rate=settings.learning_rate, lr_scheduler_type="linear",
        warmup_steps=settings.warmup_steps, optim="adamw_torch", weight_decay=0.01, max_grad_norm=0.0,
        completion_only_loss=True, packing=False, padding_free=False, max_length=settings.max_length,
        # TRL's defaults turn on gradient checkpointing and bf16; train_adapter runs neither. Both
        # names of the checkpointing switch: transformers 5 renamed it.
        gradient_checkpointing=False, activation_checkpointing=False, bf16=False, fp16=False,
        use_cpu=device == "cpu" or not torch.cuda.is_available(), dataloader_num_workers=0,
        dataloader_pin_memory=False, logging_steps=1, save_strategy="no", report_to="none",
        # Every LoRA weight gets a gradient: DDP's search for unused ones is a wasted pass a step.
        ddp_find_unused_parameters=False,
        disable_tqdm=not progress, seed=settings.seed, data_seed=settings.seed)
    trainer = SFTTrainer(model=model, args=config, train_dataset=prompt_completion_rows(chats),
                         processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the losses per step go to training.json, not the terminal
    if after_step is not None:
        class _AfterStep(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
                if logs and "loss" in logs:
                    after_step(int(state.global_step), float(logs["loss"]))

        trainer.add_callback(_AfterStep())
    return trainer


def prompt_completion_rows(chats: Sequence[Sequence[dict[str, str]]]) -> Any:
    """A `datasets.Dataset` of TRL's conversational prompt-completion rows: ``prompt`` (every
    message but the last) and ``completion`` (the last: the assistant's answer) of each chat,
    which is a ``messages`` row of the HF chat export."""
    from datasets import Dataset

    plain = [[{"role": str(m["role"]), "content": str(m["content"])} for m in chat] for chat in chats]
    return Dataset.from_dict({"prompt": [chat[:-1] for chat in plain], "completion": [chat[-1:] for chat in plain]})


def supervised_tokens(dataset: Any, rows: int, names: Sequence[str] | None = None) -> int:
    """How many tokens TRL's prepared `dataset` (its ``labels``) supervises in all, for `rows`
    training rows given. Raises InputError when TRL dropped rows (it drops those whose mask is
    empty) or, naming it, when a row has no supervised token: a mask that silently trains on
    nothing."""
    if len(dataset) != rows:
        raise InputError(f"TRL kept {len(dataset)} of the {rows} training rows: it drops a row when it would "
                         "supervise no token of it (an empty or cut-off answer); check that every chat ends with the "
                         "assistant's answer, or train with --trainer workbench, which names the row")
    counts = [sum(label != IGNORE for label in labels) for labels in dataset["labels"]]
    empty = next((i for i, count in enumerate(counts) if count == 0), None)
    if empty is not None:
        name = names[empty] if names is not None else f"row {empty}"
        raise InputError(f"{name}: TRL would supervise no token of it (its answer is empty or cut off): check that "
                         "the chat ends with the assistant's answer")
    return int(sum(counts))


@contextmanager
def _dataset_bars(progress: bool) -> Iterator[None]:
    """`datasets`' progress bars (TRL's tokenizing passes) off while it runs, unless `progress`."""
    from datasets.utils import logging

    was = logging.is_progress_bar_enabled()
    if not progress:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _trl_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("trl")
