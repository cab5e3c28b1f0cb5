"""The loop's GPU check in one script: LoRA on a transformers model folder on CUDA (on the CPU,
sized down), the tuned model answering through the workbench's own runner, and wall times.

    bash benchmarks/gpu_check.sh [--model-dir FOLDER] [--steps N] [--examples N]

`FOLDER` is a causal language model that transformers loads (``config.json``, weights, a tokenizer
with a chat template), e.g. a 0.5B to 1.5B instruct model copied onto the machine. Without it the
embedded SmolLM2-135M is used, dequantized into a folder (the workbench's cache), so the script runs
on any machine. It needs a CUDA build of torch to use the GPU; with the CPU build it runs on the
CPU.

What it does, on the complaint-triage demo task:

1. the base model (``kind: transformers``, the folder) answers `--examples` test cases with the
   compact ``tuned`` prompt through `run_variants`, as a run would;
2. LoRA (`train_for_config`, the training the loop uses) on the train split's rows rendered with
   that prompt, `--steps` steps;
3. the tuned model (the base with the peft adapter, in-process) answers the same test cases.

It prints the device, the model and its parameters, seconds per training step, supervised tokens
per second, answering seconds per example (base and tuned), accuracy before and after (a small
sample: a hint, not a result), and CUDA's peak memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from workbench.core.data import load_dataset
    from workbench.core.task import load_task
    from workbench.evaluation.efficiency import summarize_run
    from workbench.experiments.arms import render_rows
    from workbench.finetune.base_model import DONE, dequantized_folder, load_base
    from workbench.finetune.local_models import train_for_config, tuned_model_config
    from workbench.finetune.lora import AdapterSettings
    from workbench.models.base import GenerationOptions
    from workbench.models.llama_cpp import embedded_model_path
    from workbench.models.registry import model_from_config
    from workbench.prompting.runner import run_variants

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="a transformers model folder (default: the embedded "
                                                          "SmolLM2-135M, dequantized)")
    parser.add_argument("--steps", type=int, default=60 if cuda else 4, help="LoRA steps (default 60 on CUDA, 4 on "
                                                                             "the CPU)")
    parser.add_argument("--batch-size", type=int, default=8 if cuda else 2)
    parser.add_argument("--examples", type=int, default=100 if cuda else 8, help="test cases answered before and "
                                                                                 "after")
    args = parser.parse_args()

    folder = Path(args.model_dir) if args.model_dir else dequantized_folder(embedded_model_path())
    if args.model_dir is None and not (folder / DONE).exists():
        load_base()  # writes the dequantized folder once
    config = {"kind": "transformers", "base_model": str(folder), "device": "auto",
              "dtype": "bfloat16" if cuda else "float32"}
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    test = load_dataset(ROOT / "data/complaint_triage/test.jsonl", task).head(args.examples)
    train = render_rows(load_dataset(ROOT / "data/complaint_triage/train.jsonl", task), task, "tuned", "gpu_check")
    options = GenerationOptions(max_tokens=32)
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'CPU'}; torch {torch.__version__}; model {folder}")

    def answer(model) -> tuple[float, float]:
        started = time.perf_counter()
        predictions = run_variants(task, test, ["tuned"], model, options=options, progress=False)
        seconds = time.perf_counter() - started
        return seconds, float(summarize_run(predictions, test, task)["accuracy"].iloc[0])

    base = model_from_config(config)
    base_seconds, base_accuracy = answer(base)
    parameters = sum(p.numel() for p in base._runtime.model.parameters())  # loaded by the answers above
    del base
    with tempfile.TemporaryDirectory() as scratch:
        settings = AdapterSettings(max_steps=args.steps, batch_size=args.batch_size, learning_rate=1e-3)
        started = time.perf_counter()
        trained = train_for_config(list(train["messages"]), Path(scratch) / "lora", config, settings=settings)
        training_seconds = time.perf_counter() - started
        tuned = model_from_config(tuned_model_config(config, Path(scratch) / "lora"))
        tuned_seconds, tuned_accuracy = answer(tuned)
    print(f"parameters: {parameters / 1e6:.0f} M; {len(train)} training rows")
    per_step, tokens_per_second = training_seconds / max(trained.steps, 1), trained.supervised_tokens / training_seconds
    print(f"training: {trained.steps} steps of {args.batch_size} rows in {training_seconds:.1f} s ({per_step:.2f} s "
          f"a step, {tokens_per_second:,.0f} supervised tokens/s); loss {trained.losses[0]:.3f} -> "
          f"{trained.losses[-1]:.3f}")
    print(f"answering {len(test)} test cases: base {base_seconds / len(test):.2f} s each, tuned "
          f"{tuned_seconds / len(test):.2f} s each")
    print(f"accuracy with the tuned prompt: base {base_accuracy:.3f} -> tuned {tuned_accuracy:.3f} "
          f"({len(test)} examples: a small sample, a hint and not a result)")
    if cuda:
        print(f"CUDA peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
