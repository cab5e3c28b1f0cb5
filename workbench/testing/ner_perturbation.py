"""Seeded, realistic mistakes on gold NER spans, for agreement tests and the scoring benchmark."""

from __future__ import annotations

import random
from collections.abc import Sequence

TokenSpan = tuple[int, int, str]  # (first token, stop token, label), stop exclusive


def perturb_token_spans(
    rng: random.Random, n_tokens: int, gold: Sequence[TokenSpan], labels: Sequence[str]
) -> list[TokenSpan]:
    """Token-aligned predictions made from `gold`: each span kept, dropped (15%), relabelled (15%) or
    stretched/shifted (25%), plus up to two invented spans; overlaps resolved first come, first kept."""
    candidates = []
    for first, stop, label in gold:
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.30:
            label = rng.choice([other for other in labels if other != label])
        elif roll < 0.55:
            first = min(max(0, first + rng.choice([-2, -1, 0, 1])), n_tokens - 1)
            stop = min(max(first + 1, stop + rng.choice([-1, 0, 1, 2])), n_tokens)
        candidates.append((first, stop, label))
    for _ in range(rng.randrange(3)):
        first = rng.randrange(n_tokens)
        candidates.append((first, min(n_tokens, first + rng.randint(1, 3)), rng.choice(list(labels))))
    rng.shuffle(candidates)
    kept: list[TokenSpan] = []
    for first, stop, label in candidates:  # predictions never overlap one another
        if all(stop <= other_first or first >= other_stop for other_first, other_stop, _ in kept):
            kept.append((first, stop, label))
    return sorted(kept)
