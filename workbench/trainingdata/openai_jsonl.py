"""Exports for chat fine-tuning (OpenAI's JSONL) and the test cases as a dataset `workbench run` reads.

OpenAI's chat fine-tuning format is one JSON object per line with a ``messages`` list; other
providers that take the same format (Together, Fireworks, Azure OpenAI, vLLM-based trainers) read
the file unchanged. The rules checked here are the documented ones: every message has a role
(system, user or assistant) and text content; each example has an assistant message and ends with
one; an optional ``weight`` (0 or 1) may sit on assistant messages; a file has at least
`MIN_EXAMPLES` examples; no example is longer than the model's token limit.

Token counts are an estimate: OpenAI's tokenizer files are downloaded on first use, which this
machine cannot do, so a message counts 4 tokens of overhead plus one token per 4 characters of
content (OpenAI's own rule of thumb for English), and each example 3 more for the reply. Treat
the cost as an order of magnitude, and check with the provider's estimate before a large job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.errors import InputError, OverwriteError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.trainingdata.examples import one_row_per_example

ROLES = ("system", "user", "assistant")
MIN_EXAMPLES = 10  # OpenAI refuses a training file with fewer
DEFAULT_TOKEN_LIMIT = 65_536  # per example, for gpt-4o-mini and gpt-4.1-mini (check your model's)


class ChatFormatError(InputError):
    """An example breaks the chat fine-tuning format; the message names the row and what to do."""


@dataclass(frozen=True)
class ChatExport:
    """A written chat fine-tuning file: `examples` lines, `tokens` (estimated, one epoch), the
    longest example's tokens, and the estimated training cost for `epochs` when a price was given."""

    path: Path
    examples: int
    tokens: int
    longest: int
    epochs: int
    estimated_cost: float | None

    def summary(self) -> str:
        cost = "" if self.estimated_cost is None else f", about ${self.estimated_cost:,.2f} for {self.epochs} epochs"
        return (f"{self.path}: {self.examples} examples, about {self.tokens:,} tokens per epoch (longest "
                f"{self.longest:,}){cost} (token counts estimated)")


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Estimated tokens of one example (see the module docstring)."""
    return 3 + sum(4 + math.ceil(len(str(message.get("content", ""))) / 4) for message in messages)


def check_chat_example(messages: Any, where: str, token_limit: int = DEFAULT_TOKEN_LIMIT) -> int:
    """Check one example's `messages` against the format rules; returns its estimated tokens.
    Raises ChatFormatError naming `where` (the row) and the rule broken."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatFormatError(f"{where}: messages must be a non-empty list of {{role, content}}, got {messages!r}")
    for number, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ChatFormatError(f"{where}: message {number} has role {role!r}; use one of {ROLES}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ChatFormatError(f"{where}: message {number} ({role}) has no text content")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            raise ChatFormatError(f"{where}: message {number}: weight must be 0 or 1, on assistant messages only")
    if messages[-1]["role"] != "assistant":
        raise ChatFormatError(f"{where}: the last message is {messages[-1]['role']!r}; an example ends with the "
                              "assistant's answer it teaches")
    tokens = estimate_tokens(messages)
    if tokens > token_limit:
        raise ChatFormatError(f"{where}: about {tokens:,} tokens, over the limit of {token_limit:,}: shorten the text "
                              "or leave this example out")
    return tokens


def write_chat_jsonl(
    examples: pd.DataFrame, path: str | Path, *, split: str = "train", token_limit: int = DEFAULT_TOKEN_LIMIT,
    min_examples: int = MIN_EXAMPLES, price_per_million: float | None = None, epochs: int = 3,
    overwrite: bool = False,
) -> ChatExport:
    """Write the `split` rows of `examples` (the training-data frame: ``point_id``, ``example_id``,
    ``split``, ``messages``) as chat fine-tuning JSONL, one ``{"messages": [...]}`` per line and
    example (`one_row_per_example`), each
    checked first (nothing is written when one fails). `price_per_million`: the provider's training
    price per million tokens, for a cost estimate over `epochs`. Refuses an existing `path`
    unless `overwrite`, and fewer than `min_examples` rows."""
    require_columns(examples, ["point_id", "example_id", "split", "messages"], "examples",
                    "pass TrainingData.examples")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists: pass overwrite=True (--overwrite) to replace it, or choose another path")
    rows = one_row_per_example(examples[examples["split"] == split])
    if len(rows) < min_examples:
        raise ChatFormatError(f"{len(rows)} {split} example(s), fewer than the {min_examples} a fine-tuning file "
                              "needs: add examples (a labelled pool gives neighbours) or lower min_examples for "
                              "a provider that takes fewer")
    counts = [check_chat_example(list(messages), f"row {index} (point {point}, example {example})", token_limit)
              for index, (point, example, messages) in enumerate(zip(rows["point_id"], rows["example_id"],
                                                                     rows["messages"]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for messages in rows["messages"]:
            out.write(json.dumps({"messages": [dict(m) for m in messages]}, ensure_ascii=False) + "\n")
    partial.replace(path)
    tokens = sum(counts)
    cost = None if price_per_million is None else tokens * epochs * price_per_million / 1e6
    return ChatExport(path, len(rows), tokens, max(counts), epochs, cost)


def read_chat_jsonl(path: str | Path, token_limit: int = DEFAULT_TOKEN_LIMIT) -> list[list[dict[str, Any]]]:
    """The examples of a chat fine-tuning file, each checked against the format rules."""
    examples = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ChatFormatError(f"{path} line {number}: not JSON ({error})") from error
        if not isinstance(record, dict) or set(record) - {"messages"}:
            raise ChatFormatError(f"{path} line {number}: a line holds one object with only 'messages'")
        check_chat_example(record.get("messages"), f"{path} line {number}", token_limit)
        examples.append(record["messages"])
    return examples


def write_test_cases(examples: pd.DataFrame, path: str | Path, task: Task, *, overwrite: bool = False) -> Path:
    """The test rows of `examples` as a dataset `workbench run` evaluates directly (JSONL):
    ``example_id``, ``text``, the task's target column, ``points`` (the points each case tests,
    "regression" for the regression set) and ``tags`` (the same, as ``point:<id>``, for slicing
    scores). One line per example; refuses an existing `path` unless `overwrite`."""
    require_columns(examples, ["point_id", "example_id", "split", "text", "target"], "examples",
                    "pass TrainingData.examples")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists: pass overwrite=True (--overwrite) to replace it, or choose another path")
    test = examples[examples["split"] == "test"]
    if test.empty:
        raise InputError("the training data has no test cases to write")
    lines = []
    for example_id, rows in test.groupby("example_id", sort=False):
        points = list(dict.fromkeys(rows["point_id"]))
        first = rows.iloc[0]
        lines.append({"example_id": example_id, "text": first["text"], task.kind.target_column: first["target"],
                      "points": points, "tags": [f"point:{point}" for point in points]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False, default=_plain) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in targets (a span's offsets) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as JSON")
