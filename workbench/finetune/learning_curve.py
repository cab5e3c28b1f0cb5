"""A learning curve per training point: how the tuned model's score on a point's test cases grows
with the number of the point's training examples (2, 4, 8, ...), to answer "how much data does
this point need".

For each size, the point's training rows (members first, then neighbours, in the frame's order)
are cut to that many, a model is trained on them plus every other point's training rows (so that
only this point's data varies), and scored on the point's test cases. Training and scoring are
passed in (`train(chats, folder) -> Model`, the `before_after` machinery for scoring), so the same
code drives LoRA on CPU, a soft prompt, or a hosted job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.finetune.lora import AdapterSettings
from workbench.models.base import GenerationOptions, Model
from workbench.prompting.runner import run_variants
from workbench.trainingdata.examples import one_row_per_example
from workbench.trainingdata.scoring import score_points

CURVE_COLUMNS = ["point_id", "examples", "cases", "metric", "value", "low", "high", "small"]


def learning_curve(examples: pd.DataFrame, task: Task, point_id: str, train: Callable[[list, Path], Model],
                   folder: str | Path, *, sizes: Sequence[int] = (2, 4, 8), variant: str = "zero_shot",
                   options: GenerationOptions | None = None) -> pd.DataFrame:
    """Score on `point_id`'s test cases after training on 0 (no row of it: the other points'
    rows only), then each of `sizes` of its training rows (sizes above what it has are skipped).
    `train(chats, folder)` returns the tuned `Model`. Columns `CURVE_COLUMNS`."""
    require_columns(examples, ["point_id", "split", "source", "example_id", "messages"], "examples",
                    "pass TrainingData.examples")
    mine = examples[(examples["point_id"] == point_id) & (examples["split"] == "train")]
    if mine.empty:
        raise InputError(f"point {point_id} has no training rows: build its training data first")
    mine = pd.concat([mine[mine["source"].isin(["members", "corrections"])],
                      mine[~mine["source"].isin(["members", "corrections"])]])
    others = one_row_per_example(examples[(examples["split"] == "train") & (examples["point_id"] != point_id)
                                          & ~examples["example_id"].isin(mine["example_id"])])
    test = examples[(examples["point_id"] == point_id) & (examples["split"] == "test")]
    if test.empty:
        raise InputError(f"point {point_id} has no test cases to score a learning curve on")
    gold = test.drop_duplicates("example_id")
    rows = []
    for size in [0, *sorted(set(sizes))]:
        if size > len(mine):
            continue
        chats = [list(m) for m in others["messages"]] + [list(m) for m in mine["messages"].iloc[:size]]
        model = train(chats, Path(folder) / f"{point_id}-{size}")
        dataset = pd.DataFrame({"example_id": gold["example_id"], "text": gold["text"],
                                task.kind.target_column: gold["target"]})
        predictions = run_variants(task, dataset, [variant], model, options=options, progress=False)
        scored = score_points(predictions, test, task)
        overall = scored[scored["point_id"] == point_id].iloc[0]
        rows.append({"point_id": point_id, "examples": size, "cases": int(overall["cases"]),
                     "metric": overall["metric"], "value": overall["value"], "low": overall["low"],
                     "high": overall["high"], "small": bool(overall["small"])})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def llama_cpp_lora_trainer(settings: AdapterSettings | None = None, *, model_path: str | Path | None = None,
                           n_ctx: int = 4096, progress: bool = False) -> Callable[[list, Path], Model]:
    """A `train(chats, folder)` for `learning_curve`: LoRA on a fresh copy of the base GGUF
    (`model_path`, default the embedded SmolLM2) in `folder`, converted to a GGUF adapter and
    served by llama.cpp on that same base, as `workbench finetune` does."""
    from workbench.finetune.gguf_adapter import train_for_llama_cpp
    from workbench.models.llama_cpp import LlamaCppModel

    def train(chats: list, folder: Path) -> Model:
        _, adapter = train_for_llama_cpp(chats, folder, settings=settings, model_path=model_path, progress=progress)
        return LlamaCppModel(model_path, n_ctx=n_ctx, lora_path=adapter)

    return train
