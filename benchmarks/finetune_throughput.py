"""LoRA training throughput of `workbench.finetune.lora.train_adapter` against a bare peft loop and TRL's SFTTrainer.

All three arms train the embedded SmolLM2 (transformers, from its GGUF) on CPU with the LoRA of `AdapterSettings`
(r, alpha, dropout, target modules), its learning rate and seed 0, on the same rows with the loss on the answer
tokens only, for --steps steps of --batch-size rows, each in a fresh process so that peak memory (``ru_maxrss``)
is its own:

- bare: what one writes with peft alone: tokenize with the answer masked (`tokenize_rows`), pad, forward,
  backward, AdamW at a constant rate; no schedule, no checkpoints, no record.
- workbench: `train_adapter`, which adds the linear decay of the rate, checkpoints every --checkpoint-every steps,
  the loss record and ``training.json``.
- trl: TRL's `SFTTrainer` on a prompt-completion conversational `datasets.Dataset` (prompt: the system and user
  messages, completion: the assistant's), ``completion_only_loss=True``, the same linear decay (no warm-up, as
  `AdapterSettings`), no packing, no gradient checkpointing, float32, the optimizer set to the others' (torch
  AdamW, weight decay 0.01, no gradient clipping), no checkpoints, no progress printing. TRL tokenizes the rows
  itself (before the timed steps) and computes the loss with its fused LM head, which projects only the
  supervised positions onto the vocabulary where the plain loops compute the logits of every position: a saving
  that grows with the prompt's share of the row. transformers marks a model read from a GGUF as quantized, and
  Trainer refuses to train it, so this arm takes the mark off the (dequantized, float32) model first. Its rows
  come in the order of transformers' seeded random sampler, not the workbench's per-epoch permutation
  (`batch_rows`), so its batches hold other rows; its supervised tokens are counted on the rows it trained on.

Printed, one line per arm: the steps timed (from the end of the first step to the end of the last, so the model
load, TRL's dataset preparation and the first step's warm-up are left out), their wall time, supervised tokens
per second, peak memory, and the time per step against the bare loop. Then the checks that the arms train the
same thing: the first-step loss of each (the adapters start at zero, so it is the base model's loss on the first
batch), with the workbench's loss recomputed on TRL's first rows, which should equal TRL's; and the supervised
tokens of every row in TRL's tokenization against `tokenize_rows`.

Rows: the run folder's training data when given (`--run runs/demo_complaints`, after `workbench
data`), else the first --rows training rows of the complaint demo, rendered as zero-shot chats. The TRL arm needs
``trl`` (``.venv/bin/pip install trl==1.16.0``); without it the arm is skipped.

Run: .venv/bin/python benchmarks/finetune_throughput.py [--run runs/demo_complaints] [--steps 12]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows_from(run: Path | None, count: int) -> list[list[dict[str, str]]]:
    if run is not None and (run / "training_data" / "examples.parquet").exists():
        from workbench.core.frames import read_frame
        from workbench.trainingdata.examples import one_row_per_example

        examples = read_frame(run / "training_data" / "examples.parquet")
        train = one_row_per_example(examples[examples["split"] == "train"])
        return [list(m) for m in train["messages"]][:count]
    from workbench.core.data import load_dataset
    from workbench.core.task import load_task
    from workbench.prompting.templates import render_messages
    from workbench.prompting.variants import parse_variant

    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    data = load_dataset(ROOT / "data/complaint_triage/train.jsonl", task).head(count)
    variant = parse_variant("zero_shot")
    return [[*render_messages(task, variant, text),
             {"role": "assistant", "content": task.kind.format_answer(task, row)}]
            for text, row in zip(data["text"], data.to_dict("records"))]


def workbench_child(rows_file: str, steps: int, batch: int, every: int) -> dict:
    from workbench.finetune.base_model import load_base
    from workbench.finetune.lora import AdapterSettings, batch_rows, train_adapter

    chats = json.loads(Path(rows_file).read_text())
    model, tokenizer = load_base(device="cpu")
    times = []
    with tempfile.TemporaryDirectory() as out:
        settings = AdapterSettings(max_steps=steps, batch_size=batch, checkpoint_every=every)
        trained = train_adapter(chats, out, settings=settings, base=lambda: (model, tokenizer), progress=False,
                                after_step=lambda step, loss: times.append(time.perf_counter()))
    return {"seconds": times[-1] - times[0], "steps_timed": len(times) - 1,
            "supervised_tokens": _supervised(tokenizer, chats, batch, steps),
            "first_loss": trained.losses[0], "first_rows": batch_rows(0, len(chats), settings)}


def _supervised(tokenizer, chats, batch: int, steps: int) -> int:
    """Supervised tokens in the timed steps (1 .. steps-1), the batches both loops train on."""
    from workbench.finetune.lora import AdapterSettings, batch_rows
    from workbench.finetune.tokens import tokenize_rows

    rows = tokenize_rows(tokenizer, chats, [str(i) for i in range(len(chats))], 1024)
    settings = AdapterSettings(max_steps=steps, batch_size=batch)
    return sum(rows[i].supervised for step in range(1, steps) for i in batch_rows(step, len(rows), settings))


def bare_child(rows_file: str, steps: int, batch: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from workbench.finetune.base_model import load_base
    from workbench.finetune.lora import AdapterSettings, batch_rows
    from workbench.finetune.tokens import pad_batch, tokenize_rows

    chats = json.loads(Path(rows_file).read_text())
    model, tokenizer = load_base(device="cpu")
    rows = tokenize_rows(tokenizer, chats, [str(i) for i in range(len(chats))], 1024)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    settings = AdapterSettings(max_steps=steps, batch_size=batch)
    model.train()
    times, first_loss = [], None
    for step in range(steps):
        chosen = [rows[i] for i in batch_rows(step, len(rows), settings)]
        tensors = {k: torch.tensor(v) for k, v in pad_batch(chosen, tokenizer.pad_token_id).items()}
        loss = model(**tensors).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 0:  # read once only, so that the loop stays what one would write without the check
            first_loss = float(loss.detach())
        times.append(time.perf_counter())
    return {"seconds": times[-1] - times[0], "steps_timed": len(times) - 1,
            "supervised_tokens": _supervised(tokenizer, chats, batch, steps),
            "first_loss": first_loss, "first_rows": batch_rows(0, len(rows), settings)}


def trl_child(rows_file: str, steps: int, batch: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from workbench.finetune.base_model import load_base
    from workbench.finetune.lora import AdapterSettings, peft_config
    from workbench.finetune.tokens import IGNORE, pad_batch, tokenize_rows

    chats = json.loads(Path(rows_file).read_text())
    model, tokenizer = load_base(device="cpu")
    # transformers marks a model read from a GGUF as quantized (GGUF, "not trainable") even though its weights are
    # dequantized to float32 nn.Linear, and Trainer then refuses it; the other arms train the very same tensors, so
    # the mark is taken off, once it is certain that no packed GGUF weight is left
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise RuntimeError("the base model holds non-float32 (packed GGUF) weights: SFTTrainer cannot train it")
    model.hf_quantizer, model.is_quantized = None, False
    settings = AdapterSettings(max_steps=steps, batch_size=batch)
    ours = tokenize_rows(tokenizer, chats, [str(i) for i in range(len(chats))], settings.max_length)
    data = Dataset.from_dict({"prompt": [chat[:-1] for chat in chats], "completion": [chat[-1:] for chat in chats]})
    times, losses = [], []

    class Clock(TrainerCallback):
        # on_step_end comes after the optimizer and schedule steps, where the other arms take their times
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
            learning_rate=settings.learning_rate, lr_scheduler_type="linear", warmup_steps=settings.warmup_steps,
            # torch.optim.AdamW as train_adapter builds it (its default decay 0.01, no clipping), not Trainer's fused
            # AdamW with no decay and clipping at 1.0: the arms should differ by the loop, not by the optimizer
            optim="adamw_torch", weight_decay=0.01, max_grad_norm=0.0,
            completion_only_loss=True, packing=False, padding_free=False, max_length=settings.max_length,
            # TRL's own defaults are gradient checkpointing and bf16 on; the other arms run neither. Both names of
            # the checkpointing switch: transformers 5 renamed it and warns when only TRL's old one is set
            gradient_checkpointing=False, activation_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
            dataloader_num_workers=0, dataloader_pin_memory=False, dataset_num_proc=None,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=settings.seed)
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config(settings, tokenizer, chats), callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # the other arms print nothing per step either
        prepared = trainer.train_dataset
        # Which rows each batch holds, told by their token ids (the collator sees no row index)
        row_of = {tuple(ids): i for i, ids in enumerate(prepared["input_ids"])}
        batches, collate = [], trainer.data_collator

        def recording(examples):
            batches.append([row_of[tuple(example["input_ids"])] for example in examples])
            return collate(examples)

        trainer.data_collator = recording
        trainer.train()
    labels = prepared["labels"]
    supervised = [sum(label != IGNORE for label in row) for row in labels]
    # The base model's loss, the workbench's way, on TRL's first rows: the adapters start at zero (LoRA's B), so
    # with the adapter off it is what TRL's first step saw
    model = trainer.model.eval()
    with torch.no_grad(), model.disable_adapter():
        padded = pad_batch([ours[i] for i in batches[0]], tokenizer.pad_token_id)
        tensors = {k: torch.tensor(v) for k, v in padded.items()}
        reference = float(model(**tensors).loss)
    return {"seconds": times[-1] - times[0], "steps_timed": len(times) - 1,
            "supervised_tokens": sum(supervised[i] for rows in batches[1:steps] for i in rows),
            "first_loss": losses[0], "first_rows": batches[0], "workbench_loss_on_first_rows": reference,
            "tokenization": _compare_tokens(tokenizer, ours, prepared["input_ids"], labels)}


def _compare_tokens(tokenizer, ours, their_ids, their_labels) -> dict:
    """How TRL's tokenization of the rows compares with `tokenize_rows`: rows with the same ids, rows with the
    same supervised tokens, the first row that differs, and the end of row 0's supervised tokens in each."""
    from workbench.finetune.tokens import IGNORE

    def answer(ids, labels):
        return [token for token, label in zip(ids, labels) if label != IGNORE]

    theirs = [answer(ids, labels) for ids, labels in zip(their_ids, their_labels)]
    mine = [answer(row.input_ids, row.labels) for row in ours]
    differing = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
    found = {"rows": len(ours), "trl_rows": len(theirs),
             "same_ids": sum(list(row.input_ids) == list(ids) for row, ids in zip(ours, their_ids)),
             "same_supervised": len(mine) - len(differing) if len(mine) == len(theirs) else 0,
             "supervised_per_row": [[len(a), len(b)] for a, b in zip(mine, theirs)],
             "row0_end": [[tokenizer.decode([token]) for token in answer[-2:]] for answer in (mine[0], theirs[0])]
             if mine and theirs else None}
    if differing:
        i = differing[0]
        found["first_difference"] = {"row": i, "workbench": tokenizer.decode(mine[i]),
                                     "trl": tokenizer.decode(theirs[i])}
    return found


ARMS = {"bare": "bare peft loop", "workbench": "workbench train_adapter", "trl": "TRL SFTTrainer"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--child", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    if args.child:
        if args.child == "workbench":
            result = workbench_child(args.rows_file, args.steps, args.batch_size, args.checkpoint_every)
        elif args.child == "bare":
            result = bare_child(args.rows_file, args.steps, args.batch_size)
        else:
            result = trl_child(args.rows_file, args.steps, args.batch_size)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    chats = rows_from(args.run, args.rows)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(chats, handle)
    print(f"{len(chats)} rows, {args.steps} steps of {args.batch_size} rows (the first step not timed), LoRA r=8 on "
          f"q_proj,v_proj, CPU; workbench checkpoints every {args.checkpoint_every} steps")
    arms = list(ARMS)
    if importlib.util.find_spec("trl") is None:
        print("trl is not installed: the SFTTrainer arm is skipped (.venv/bin/pip install trl==1.16.0)")
        arms.remove("trl")
    results, notes = {}, {}
    for child in arms:
        done = subprocess.run([sys.executable, __file__, "--child", child, "--rows-file", handle.name,
                               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                               "--checkpoint-every", str(args.checkpoint_every)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{child} failed:\n{done.stderr[-3000:]}")
        results[child] = json.loads(done.stdout.strip().splitlines()[-1])
        notes[child] = _warnings(done.stderr)
    bare = results["bare"]["seconds"] / results["bare"]["steps_timed"]
    print(f"{'':<22} {'steps':>5} {'seconds':>8} {'s/step':>7} {'supervised tok/s':>17} {'peak RSS MiB':>13} "
          f"{'vs bare':>8}")
    for name, result in results.items():
        per_step = result["seconds"] / result["steps_timed"]
        against = "-" if name == "bare" else f"{100 * (per_step / bare - 1):+.1f}%"
        print(f"{ARMS[name]:<22} {result['steps_timed']:>5} {result['seconds']:>8.2f} {per_step:>7.2f} "
              f"{result['supervised_tokens'] / result['seconds']:>17.1f} {result['peak_rss_mib']:>13.0f} "
              f"{against:>8}")
    ours = results["workbench"]["seconds"] / results["workbench"]["steps_timed"]
    print(f"overhead of train_adapter per step: {100 * (ours / bare - 1):+.1f}% (the issue's bound: at most 10%)")
    print("first-step loss (the base model's, the adapters starting at zero): "
          + "; ".join(f"{ARMS[name]} {result['first_loss']:.4f} on rows {result['first_rows']}"
                      for name, result in results.items()))
    if "trl" in results:
        _report_trl(results["trl"], results["workbench"], notes["trl"])


def _report_trl(trl: dict, workbench: dict, warned: list[str]) -> None:
    if trl["first_rows"] != workbench["first_rows"]:
        print("  SFTTrainer's sampler (transformers' seeded RandomSampler) draws other rows than the workbench's "
              "per-epoch permutation, so its first loss is on other rows;")
    reference = trl["workbench_loss_on_first_rows"]
    print(f"  the workbench's loss on SFTTrainer's first rows: {reference:.4f} "
          f"(SFTTrainer: {trl['first_loss']:.4f}, difference {trl['first_loss'] - reference:+.2e})")
    found = trl["tokenization"]
    if found["trl_rows"] != found["rows"]:
        print(f"tokenization: SFTTrainer kept {found['trl_rows']} of the {found['rows']} rows")
    elif found["same_supervised"] == found["rows"]:
        counts = [pair[0] for pair in found["supervised_per_row"]]
        print(f"tokenization: SFTTrainer supervises the same tokens as tokenize_rows on all {found['rows']} rows "
              f"({min(counts)}-{max(counts)} per row; token ids the same on {found['same_ids']}); both end each answer "
              f"with {' + '.join(map(repr, found['row0_end'][1]))}, so both train the end of turn")
    else:
        first = found["first_difference"]
        differ = found["rows"] - found["same_supervised"]
        print(f"tokenization: supervised tokens differ on {differ} of {found['rows']} "
              f"rows (workbench, TRL per row: {found['supervised_per_row']}); row {first['row']}: workbench "
              f"{first['workbench']!r}, TRL {first['trl']!r}; ends of row 0: {found['row0_end']}")
    for line in warned:
        print(f"  SFTTrainer warned: {line}")


def _warnings(stderr: str) -> list[str]:
    """The distinct warnings of a child's stderr (Python's "...Warning: message" lines), to show what TRL complains
    of without its progress bars."""
    seen = []
    for line in stderr.splitlines():
        found = re.search(r"\w*Warning: .*", line)
        if found and "%|" not in line and found.group().strip() not in seen:
            seen.append(found.group().strip()[:300])
    return seen


if __name__ == "__main__":
    main()
