"""LoRA training throughput of `workbench.finetune.lora.train_lora` against a bare peft loop.

Both train the embedded SmolLM2 (transformers, from its GGUF) with the same LoRA settings on the
same rows, in the same batches, for --steps steps, each in a fresh process so that peak memory
(``ru_maxrss``) is its own. The bare loop is what one writes with peft alone: tokenize with the
answer masked, pad, forward, backward, AdamW; no checkpoints, no record. The workbench adds
checkpoints every --checkpoint-every steps, the loss record and ``training.json``. Printed: wall
time of the steps (the model load excluded), supervised tokens per second, peak memory, and the
workbench's overhead.

Rows: the run folder's training data when given (`--run runs/demo_complaints`, after `workbench
data`), else the first --rows training rows of the complaint demo, rendered as zero-shot chats.

Run: .venv/bin/python benchmarks/finetune_throughput.py [--run runs/demo_complaints] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
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
    from workbench.finetune.lora import LoraSettings, train_lora

    chats = json.loads(Path(rows_file).read_text())
    model, tokenizer = load_base(device="cpu")
    times = []
    with tempfile.TemporaryDirectory() as out:
        settings = LoraSettings(max_steps=steps, batch_size=batch, checkpoint_every=every)
        trained = train_lora(chats, out, settings=settings, base=lambda: (model, tokenizer), progress=False,
                             after_step=lambda step, loss: times.append(time.perf_counter()))
    del trained
    return {"seconds": times[-1] - times[0], "steps_timed": len(times) - 1,
            "supervised_tokens": _supervised(tokenizer, chats, batch, steps)}


def _supervised(tokenizer, chats, batch: int, steps: int) -> int:
    """Supervised tokens in the timed steps (1 .. steps-1), the batches both loops train on."""
    from workbench.finetune.lora import LoraSettings, batch_rows
    from workbench.finetune.tokens import tokenize_rows

    rows = tokenize_rows(tokenizer, chats, [str(i) for i in range(len(chats))], 1024)
    settings = LoraSettings(max_steps=steps, batch_size=batch)
    return sum(rows[i].supervised for step in range(1, steps) for i in batch_rows(step, len(rows), settings))


def bare_child(rows_file: str, steps: int, batch: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from workbench.finetune.base_model import load_base
    from workbench.finetune.lora import LoraSettings, batch_rows
    from workbench.finetune.tokens import pad_batch, tokenize_rows

    chats = json.loads(Path(rows_file).read_text())
    model, tokenizer = load_base(device="cpu")
    rows = tokenize_rows(tokenizer, chats, [str(i) for i in range(len(chats))], 1024)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    settings = LoraSettings(max_steps=steps, batch_size=batch)
    model.train()
    times = []
    for step in range(steps):
        chosen = [rows[i] for i in batch_rows(step, len(rows), settings)]
        tensors = {k: torch.tensor(v) for k, v in pad_batch(chosen, tokenizer.pad_token_id).items()}
        model(**tensors).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return {"seconds": times[-1] - times[0], "steps_timed": len(times) - 1,
            "supervised_tokens": _supervised(tokenizer, chats, batch, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--child", choices=["workbench", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (workbench_child(args.rows_file, args.steps, args.batch_size, args.checkpoint_every)
                  if args.child == "workbench" else bare_child(args.rows_file, args.steps, args.batch_size))
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    chats = rows_from(args.run, args.rows)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(chats, handle)
    print(f"{len(chats)} rows, {args.steps} steps of {args.batch_size} rows (the first step not timed), LoRA r=8 on "
          f"q_proj,v_proj, CPU; workbench checkpoints every {args.checkpoint_every} steps")
    results = {}
    for child in ("bare", "workbench"):
        done = subprocess.run([sys.executable, __file__, "--child", child, "--rows-file", handle.name,
                               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                               "--checkpoint-every", str(args.checkpoint_every)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{child} failed:\n{done.stderr[-3000:]}")
        results[child] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'':<22} {'s/step':>8} {'supervised tok/s':>17} {'peak RSS MiB':>13}")
    for name, result in results.items():
        per_step = result["seconds"] / result["steps_timed"]
        print(f"{name + (' peft loop' if name == 'bare' else ' train_lora'):<22} {per_step:>8.2f} "
              f"{result['supervised_tokens'] / result['seconds']:>17.1f} {result['peak_rss_mib']:>13.0f}")
    bare, ours = (results[k]["seconds"] / results[k]["steps_timed"] for k in ("bare", "workbench"))
    print(f"overhead of train_lora per step: {100 * (ours / bare - 1):+.1f}% (the issue's bound: at most 10%)")


if __name__ == "__main__":
    main()
