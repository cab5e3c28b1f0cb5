"""Render prompt variants into chat messages from template files.

Templates live in ``workbench/prompts/<template>.<kind>.jinja`` (or any folder given as
`template_dir`). Each file has a ``system`` block and a ``user`` block, rendered separately into
the two chat messages. Changing a template changes the rendered messages, and so the cache key:
an answer made with an old template is never served for a new one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound

from workbench.answers import format_answer
from workbench.tasks import Task
from workbench.variants import PromptVariant

TEMPLATE_DIR = Path(__file__).parent / "prompts"

Message = dict[str, str]


@lru_cache(maxsize=32)
def _environment(template_dir: str) -> Environment:
    # Prompts are plain text, not HTML: no autoescaping; StrictUndefined turns typos into errors.
    return Environment(
        loader=FileSystemLoader(template_dir),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def load_template(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> Template:
    """The Jinja template for `variant` and the task's kind (reloaded when the file changes)."""
    folder = str(template_dir or TEMPLATE_DIR)
    name = f"{variant.template}.{task.kind}.jinja"
    try:
        template = _environment(folder).get_template(name)
    except TemplateNotFound:
        raise FileNotFoundError(f"prompt template {name} not found in {folder}") from None
    missing = {"system", "user"} - set(template.blocks)
    if missing:
        raise ValueError(f"prompt template {name} must define blocks 'system' and 'user'; missing {sorted(missing)}")
    return template


def render_messages(
    task: Task,
    variant: PromptVariant,
    text: str,
    examples: Sequence[dict[str, Any]] = (),
    template_dir: str | Path | None = None,
) -> list[Message]:
    """Render the chat messages for one input `text`.

    `examples` are gold rows (``text`` and ``label`` or ``spans``) shown as few-shot examples.
    Returns ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``.
    """
    template = load_template(task, variant, template_dir)
    context = template.new_context(
        {
            "task": task,
            "variant": variant,
            "label_names": list(task.label_names),
            "text": text,
            "examples": [{"text": example["text"], "answer": format_answer(task, example)} for example in examples],
        }
    )
    messages = []
    for role in ("system", "user"):
        content = "".join(template.blocks[role](context)).strip()
        messages.append({"role": role, "content": content})
    return messages


def format_messages(messages: Sequence[Message]) -> str:
    """Messages as readable text, for previewing prompts in a notebook."""
    return "\n\n".join(f"--- {message['role']} ---\n{message['content']}" for message in messages)


class ExampleSelector:
    """Choose few-shot examples from a labelled pool (usually the train split).

    ``fixed`` gives every input the same `k` examples, spread across labels; ``similar`` gives the
    `k` pool rows most similar to the input (TF-IDF cosine over words). An input that is itself in
    the pool (same text) is never shown as its own example.
    """

    def __init__(self, task: Task, pool: pd.DataFrame, seed: int = 0):
        self.task = task
        self.pool = pool.reset_index(drop=True)
        self.seed = seed
        self._vectorizer = None
        self._matrix = None
        self._fixed: list[int] | None = None

    def select(self, text: str, k: int, selection: str = "fixed") -> list[dict[str, Any]]:
        """Up to `k` pool rows as dicts, in the order they should appear in the prompt."""
        if k <= 0 or self.pool.empty:
            return []
        if selection == "similar":
            indices = self._most_similar(text, k)
        else:
            indices = [index for index in self._fixed_order() if self.pool.at[index, "text"] != text][:k]
        return [self.pool.iloc[index].to_dict() for index in indices]

    def _fixed_order(self) -> list[int]:
        if self._fixed is not None:
            return self._fixed
        order = list(range(len(self.pool)))
        random.Random(self.seed).shuffle(order)
        buckets: dict[str, list[int]] = {}
        for index in order:
            buckets.setdefault(self._bucket(index), []).append(index)
        # Round-robin across buckets so k examples cover as many labels as possible.
        spread: list[int] = []
        keys = sorted(buckets)
        while any(buckets.values()):
            for key in keys:
                if buckets[key]:
                    spread.append(buckets[key].pop(0))
        self._fixed = spread
        return spread

    def _bucket(self, index: int) -> str:
        row = self.pool.iloc[index]
        if self.task.kind == "classification":
            return str(row["label"])
        labels = sorted({span["label"] for span in row["spans"]})
        return labels[0] if labels else ""

    def _most_similar(self, text: str, k: int) -> list[int]:
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True)
            self._matrix = self._vectorizer.fit_transform(self.pool["text"])
        query = self._vectorizer.transform([text])
        scores = (self._matrix @ query.T).toarray().ravel()
        texts = self.pool["text"].to_numpy()
        scores[texts == text] = -np.inf
        # Stable sort: ties keep pool order, so selection is deterministic.
        ranked = np.argsort(-scores, kind="stable")
        chosen = [int(index) for index in ranked if np.isfinite(scores[index])][:k]
        # Most similar last, nearest the input it should inform.
        return list(reversed(chosen))
