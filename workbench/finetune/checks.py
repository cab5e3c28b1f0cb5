"""Checks on the rows to train on, before any training starts: enough rows, targets the task can
use, and answers the task's own parser reads back as those targets. A problem found here costs a
second; found after training, it costs the training."""

from __future__ import annotations

import pandas as pd

from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.finetune.tokens import TrainingRowError

MIN_ROWS = 4  # below this, a LoRA run learns noise; a prompt change is the better fix


def check_training_rows(train: pd.DataFrame, task: Task, *, min_rows: int = MIN_ROWS) -> None:
    """Raise TrainingRowError naming the cause and the fix when `train` (training-data rows:
    ``example_id``, ``text``, ``target``, ``messages``) has fewer than `min_rows` rows, a target
    the task cannot use (an unknown label, a span off the text), or an assistant answer that the
    task's parser does not read back as the row's target."""
    require_columns(train, ["example_id", "text", "target", "messages"], "training rows",
                    "pass the train rows of TrainingData.examples")
    if len(train) < min_rows:
        raise TrainingRowError(
            f"{len(train)} training row(s): fine-tuning needs at least {min_rows}. Build more training data "
            "(a larger labelled pool for neighbours, targeted annotation, generated examples) or fix these "
            "points with a prompt variant instead")
    _, problems = task.kind.validate_targets(list(train["target"]), list(train["text"]), task)
    bad = [(example, "; ".join(found)) for example, found in zip(train["example_id"], problems) if found]
    if bad:
        example, why = bad[0]
        raise TrainingRowError(
            f"{len(bad)} training row(s) have a target task {task.name!r} cannot use; first, example {example}: "
            f"{why}. Fix the gold (or the correction) of that example, or add the label to the task, then build "
            "the training data again")
    kind = task.kind
    for example, text, target, messages in zip(train["example_id"], train["text"], train["target"], train["messages"]):
        answer = messages[-1]
        if answer.get("role") != "assistant":
            raise TrainingRowError(f"example {example}: the last message is {answer.get('role')!r}, not the "
                                   "assistant's answer; build the rows with build_training_data")
        parsed = kind.parse(task, str(answer.get("content", "")), str(text))
        if parsed.parse_error or not kind.same_answer(parsed.prediction, target):
            raise TrainingRowError(
                f"example {example}: its answer {str(answer.get('content'))[:120]!r} does not read back as its "
                f"target {target!r} ({parsed.parse_error or 'another answer'}); the model would learn an answer the "
                "task cannot score: render the rows with build_training_data for this task")
