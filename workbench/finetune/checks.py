"""Checks on the rows to train on, before any training starts: enough rows, targets the task can
use, answers the task's own parser reads back as those targets, and (`check_training_length`,
before a loop round's first model call) rows that fit the training's token limit. A problem found
here costs a second; found after training, it costs the training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.finetune.tokens import (
    MAX_LENGTH,
    TrainingRowError,
    chat_ids,
    load_tokenizer,
    prompt_length,
    too_long_message,
)
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import PromptVariant, parse_variant

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


class TrainingLengthError(TrainingRowError):
    """A text that may become a training row is longer, as a row, than the training allows."""


@dataclass(frozen=True)
class LengthCheck:
    """What `check_training_length` found: `rows` counted, the `longest` row in tokens and its
    `example_id`, against `max_length`."""

    rows: int
    longest: int
    example_id: str | None
    max_length: int

    def describe(self) -> str:
        """One line for logs."""
        if not self.rows:
            return f"no texts to check against the training limit of {self.max_length} tokens"
        return (f"longest training row {self.longest} tokens (example {self.example_id}) of {self.rows}, "
                f"within the training limit of {self.max_length} (--max-length)")


def check_training_length(
    task: Task, variant: str | PromptVariant, texts: pd.DataFrame | Sequence[pd.DataFrame | None],
    tokenizer: Any = None, max_length: int = MAX_LENGTH, *, gguf: str | Path | None = None,
    template_dir: str | Path | None = None,
) -> LengthCheck:
    """Check, before any model call, that every text in `texts` fits as a training row.

    `texts`: one frame or several (None ones are skipped) with ``example_id`` and ``text``, and
    the task's gold column (``label``, ``spans`` or ``labels``) where known: the texts a round may
    train on (its run examples and its labelled pool). Each is rendered as training renders it:
    `variant`'s messages and the gold answer in the task's JSON (for a chain-of-thought variant,
    with the definitions reasoning the training data writes); a text without a gold is counted
    with its prompt alone. Tokens are counted with `tokenizer` (default: `load_tokenizer(gguf)`,
    the embedded model's) through the chat template, as `tokens.tokenize_chat` counts them.

    Returns a `LengthCheck`. Raises TrainingLengthError naming the longest row over `max_length`
    (its example id and length), the limit, how many rows are over, and the flag to change it."""
    from workbench.trainingdata.examples import training_answer  # the answer training data writes

    frames = [texts] if isinstance(texts, pd.DataFrame) else [frame for frame in texts if frame is not None]
    for frame in frames:
        require_columns(frame, ["example_id", "text"], "texts to check", "pass the run's dataset and its pool")
    chosen = parse_variant(variant)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(gguf)
    kind = task.kind
    lengths: dict[str, int] = {}
    for frame in frames:
        has_gold = kind.target_column in frame.columns
        for row in frame.to_dict("records"):
            example_id, text = str(row["example_id"]), str(row["text"])
            messages = render_messages(task, chosen, text, template_dir=template_dir)
            target = row.get(kind.target_column) if has_gold else None
            if _known(target):
                example = {"example_id": example_id, "text": text, kind.target_column: target}
                messages.append({"role": "assistant", "content": training_answer(task, chosen, example, target)})
                prompt, reply = chat_ids(tokenizer, messages, f"example {example_id}")
                tokens = len(prompt) + len(reply)
            else:
                tokens = prompt_length(tokenizer, messages)
            lengths[example_id] = max(tokens, lengths.get(example_id, 0))
    if not lengths:
        return LengthCheck(0, 0, None, max_length)
    longest_id = max(lengths, key=lengths.__getitem__)
    over = sum(tokens > max_length for tokens in lengths.values())
    if over:
        where = (f"example {longest_id}, rendered with variant {chosen.name!r} as a training row ({over} of "
                 f"{len(lengths)} texts are over the limit; this one is the longest)")
        raise TrainingLengthError(too_long_message(where, lengths[longest_id], max_length))
    return LengthCheck(len(lengths), lengths[longest_id], longest_id, max_length)


def _known(target: Any) -> bool:
    """Whether a gold value is there: a label, or a list (an empty list of spans is a gold too)."""
    if target is None:
        return False
    if isinstance(target, float):
        return target == target  # NaN: a row without a gold
    return True
