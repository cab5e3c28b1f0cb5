"""Few-shot example selection from a labelled pool: fixed (balanced across labels) or most similar."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.task import Task


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
        target = self.pool.iloc[index][self.task.kind.target_column]
        labels = sorted(set(self.task.kind.target_labels(target)))
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
