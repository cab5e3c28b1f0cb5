"""Anchor rows: labelled pool examples added to a point's training rows so that the labels balance.

A training point's rows are the model's errors and their neighbours, so their labels lean towards
what the model got wrong: a model that answers "complaint" to everything fails on hardship, fraud
and request texts, and its training rows are mostly those. Trained on them alone, the model learns
to stop answering "complaint" (a 40-example demo round, on the first 72-example pool, went from
answering "complaint" to 50 of 52 test cases to answering "hardship" to 45, and tested worse).
Anchors put back what the errors leave out: pool examples of the under-represented labels, with
their gold targets, until every label of the task is as common in the training rows as the most
common one, or the anchors reach `share` times the point rows. This is rehearsal in the
continual-learning sense, chosen by label so that it also corrects the errors' skew.

Measured with `benchmarks/lora_recipe.py` on one complaints round (40 examples; 34 point rows:
hardship 14, request 8, fraud 7, complaint 5; 67 test cases; the base scores 0.433, answering
"complaint" to 65). Without anchors the tuned model answered "fraud" to 59 and scored 0.254. With
22 anchors (every label at 14), at the same rate and 2 epochs, its answers spread over all four
labels (22/19/15/11) and it scored 0.313; 0.388 with 4 epochs; 0.358 with LoRA on every linear
layer at half the rate. At half the rate on the attention projections alone it still collapsed,
onto "fraud" (58). None of these beat the base on that test set, and no difference is clear in
the paired test: the anchors make a collapse less likely, not the model good.

Anchors are training rows of their own point, ``point_id`` "anchors" and ``source`` "anchors"
(`build_training_data(anchors=...)` adds them after the neighbours and before the regression set is
topped up from the pool, so that a small pool goes to training first). They are never a test case,
are chosen from pool examples the frame does not already use, and none equals or nearly repeats a
test case (`leakage`). For NER and multi-label tasks an example counts once for every label its
target uses; the balance is over the task's labels, so a sentence with no entity is never needed
as an anchor.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.points.encoder import Encoder, cached
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE, normalise_text, similarity

if TYPE_CHECKING:
    from workbench.trainingdata.groups import SplitLedger

ANCHORS = "anchors"
# What `workbench data` and the loop's rounds add unless told: enough to balance the labels, up to as
# many anchors as point rows (the measurement in the module docstring).
DEFAULT_SHARE = 1.0


def label_counts(examples: pd.DataFrame, task: Task) -> Counter:
    """How many of the train rows of `examples` (``split``, ``example_id``, ``target``), one per
    example, use each of the task's labels (every label at zero included)."""
    train = _train_rows(examples)
    counts = Counter({name: 0 for name in task.label_names})
    for target in train["target"]:
        counts.update(label for label in task.kind.target_labels(target) if label in counts)
    return counts


def choose_anchors(examples: pd.DataFrame, pool: pd.DataFrame, task: Task, *, share: float = 1.0, seed: int = 0,
                   encoder: Encoder | None = None, threshold: float = NEAR_DUPLICATE_COSINE,
                   exclude: set[str] | frozenset[str] = frozenset(), ledger: SplitLedger | None = None) -> pd.DataFrame:
    """The anchor rows for the training-data frame `examples` (`TRAINING_COLUMNS`), from `pool`
    (``example_id``, ``text``, the task's target column): columns ``point_id`` ("anchors"),
    ``split`` ("train"), ``source`` ("anchors"), ``example_id``, ``text``, ``target``.

    Each pick takes a pool example of the label furthest below the most common label, until none
    is below it, the pool has no example of the labels still short, or the anchors number `share`
    times the frame's one-per-example train rows (rounded). Pool examples whose id is in `exclude`
    (e.g. the run's evaluated examples) are not used, nor those that equal or nearly repeat a test
    case: with `ledger` (`groups.SplitLedger`), those whose near-duplicate group may not train;
    else those within `threshold` of a test row of `examples`. Seeded by `seed`."""
    require_columns(pool, ["example_id", "text", task.kind.target_column], "pool")
    if share < 0:
        raise InputError(f"share must be 0 or more, got {share}")
    counts = label_counts(examples, task)
    points_rows = len(_train_rows(examples))
    budget = round(share * points_rows)
    columns = ["point_id", "split", "source", "example_id", "text", "target"]
    if not budget or not points_rows:
        return pd.DataFrame(columns=columns)
    candidates = _unused(examples, pool[~pool["example_id"].astype(str).isin(exclude)], encoder, threshold, ledger)
    order = list(range(len(candidates)))
    random.Random(seed).shuffle(order)
    labels_of = {i: set(task.kind.target_labels(candidates[task.kind.target_column].iloc[i])) for i in order}
    goal = max(counts.values())
    chosen: list[int] = []
    while len(chosen) < budget:
        short = sorted((label for label in counts if counts[label] < goal), key=lambda label: counts[label])
        pick = next((i for label in short for i in order if label in labels_of[i]), None)
        if pick is None:
            break
        order.remove(pick)
        chosen.append(pick)
        counts.update(label for label in labels_of[pick] if label in counts)
    picked = candidates.iloc[chosen]
    return pd.DataFrame({"point_id": ANCHORS, "split": "train", "source": ANCHORS,
                         "example_id": picked["example_id"].astype(str).to_numpy(),
                         "text": picked["text"].astype(str).to_numpy(),
                         "target": list(picked[task.kind.target_column])}, columns=columns)


def _train_rows(examples: pd.DataFrame) -> pd.DataFrame:
    return examples[examples["split"] == "train"].drop_duplicates("example_id")


def _unused(examples: pd.DataFrame, pool: pd.DataFrame, encoder: Encoder | None, threshold: float,
            ledger: SplitLedger | None) -> pd.DataFrame:
    """Pool examples the frame does not use, whose text neither equals nor nearly repeats a test case."""
    spare = pool[~pool["example_id"].astype(str).isin(set(examples["example_id"].astype(str)))]
    spare = spare.drop_duplicates("example_id").reset_index(drop=True)
    if ledger is not None:
        # A boolean array, not a list: an empty list would select no columns instead of no rows.
        allowed = np.array([ledger.allows(text, "train") for text in spare["text"].astype(str)], dtype=bool)
        return spare[allowed].reset_index(drop=True)
    encoder = cached(encoder)
    tests = examples.loc[examples["split"] == "test", "text"].astype(str).tolist()
    if spare.empty or not tests:
        return spare
    texts = spare["text"].astype(str).tolist()
    equal = {normalise_text(text) for text in tests}
    near = similarity(encoder, texts, tests).max(axis=1) >= threshold
    keep = [not near[i] and normalise_text(text) not in equal for i, text in enumerate(texts)]
    return spare[keep].reset_index(drop=True)
