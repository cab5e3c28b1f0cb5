"""Leakage between training examples and test cases: equal texts, and near-duplicates by embedding.

A test case that equals or nearly repeats a training example measures memory, not learning. Texts
are compared after normalising case and white space (equal) and by the cosine similarity of their
sentence embeddings (near-duplicate at `NEAR_DUPLICATE_COSINE` or above).

The threshold was calibrated on the demo data (`benchmarks/leakage_threshold.py`, all three demo
tasks): light edits of a text (case and punctuation, a word dropped, two words swapped, numbers
changed, the first sentence alone) keep a median cosine of 0.986 to the original, and 93.5% of
them reach 0.85; distinct examples never do: every test example's nearest training example is at
0.795 at most (99th percentile 0.746). So 0.85 flags most edits and no distinct pair; the edits it
misses are mostly a long text cut to its first sentence, which is no longer the same example.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.core.errors import InputError
from workbench.points.encoder import Encoder, unit_rows

NEAR_DUPLICATE_COSINE = 0.85
LEAK_COLUMNS = ["test_point", "test_example", "train_point", "train_example", "cosine", "equal_text", "test_text",
                "train_text"]


class LeakageError(InputError):
    """A test case equals or nearly repeats a training example; `pairs` lists them (`LEAK_COLUMNS`)."""

    def __init__(self, message: str, pairs: pd.DataFrame):
        super().__init__(message)
        self.pairs = pairs


def normalise_text(text: str) -> str:
    """The text compared for equality: case folded, white space collapsed."""
    return " ".join(str(text).casefold().split())


def similarity(encoder: Encoder, first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """Cosine similarity of every text of `first` (rows) with every text of `second` (columns)."""
    if not len(first) or not len(second):
        return np.zeros((len(first), len(second)))
    vectors = unit_rows(encoder.encode(list(first) + list(second)))
    return vectors[: len(first)] @ vectors[len(first):].T


def find_leaks(examples: pd.DataFrame, encoder: Encoder, threshold: float = NEAR_DUPLICATE_COSINE) -> pd.DataFrame:
    """Pairs of a test row and a training row of `examples` (the training-data frame: ``point_id``,
    ``split``, ``example_id``, ``text``) that are the same example, have equal texts, or whose
    cosine similarity is at least `threshold`, across all points. Columns `LEAK_COLUMNS`."""
    test = examples[examples["split"] == "test"].drop_duplicates(["point_id", "example_id"]).reset_index(drop=True)
    train = examples[examples["split"] == "train"].drop_duplicates(["point_id", "example_id"]).reset_index(drop=True)
    if test.empty or train.empty:
        return pd.DataFrame(columns=LEAK_COLUMNS)
    # Each distinct normalised text is encoded and compared once, then spread back to the rows.
    normal = list(dict.fromkeys([*test["text"].map(normalise_text), *train["text"].map(normalise_text)]))
    position = {text: i for i, text in enumerate(normal)}
    test_at = test["text"].map(normalise_text).map(position).to_numpy()
    train_at = train["text"].map(normalise_text).map(position).to_numpy()
    unique_test, unique_train = np.unique(test_at), np.unique(train_at)
    scores = similarity(encoder, [normal[i] for i in unique_test], [normal[i] for i in unique_train])
    cosine = scores[np.ix_(np.searchsorted(unique_test, test_at), np.searchsorted(unique_train, train_at))]
    equal = (test_at[:, None] == train_at[None, :]) | (
        test["example_id"].astype(str).to_numpy()[:, None] == train["example_id"].astype(str).to_numpy()[None, :])
    rows, columns = np.nonzero(equal | (cosine >= threshold))
    return pd.DataFrame({
        "test_point": test["point_id"].to_numpy()[rows], "test_example": test["example_id"].to_numpy()[rows],
        "train_point": train["point_id"].to_numpy()[columns], "train_example": train["example_id"].to_numpy()[columns],
        "cosine": np.round(cosine[rows, columns], 4), "equal_text": equal[rows, columns],
        "test_text": test["text"].to_numpy()[rows], "train_text": train["text"].to_numpy()[columns],
    }, columns=LEAK_COLUMNS)


def near_duplicate_groups(texts: Sequence[str], encoder: Encoder, threshold: float = NEAR_DUPLICATE_COSINE,
                          *, block: int = 2048) -> np.ndarray:
    """A group number per text of `texts` (0, 1, ... in order of first appearance): texts are joined,
    transitively, when their normalised texts are equal or their cosine is at least `threshold`.
    Connected components of that graph (scipy), so two texts in different groups are never that
    close, which is what lets a split by group be leak-free by construction. The similarity is
    computed `block` rows at a time, so a large pool needs no n x n matrix."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    texts = [str(text) for text in texts]
    if not texts:
        return np.zeros(0, dtype=int)
    normal = [normalise_text(text) for text in texts]
    distinct = list(dict.fromkeys(normal))
    index = {text: i for i, text in enumerate(distinct)}
    vectors = unit_rows(encoder.encode(distinct))
    firsts, seconds = [], []
    for start in range(0, len(distinct), block):
        scores = vectors[start:start + block] @ vectors.T
        # A hair below the threshold: another matrix product (the final leak check) may round a pair
        # at exactly the threshold the other way, and a group must never miss a pair it would find.
        rows, columns = np.nonzero(scores >= threshold - 1e-6)
        firsts.append(rows + start)
        seconds.append(columns)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(len(distinct), len(distinct)))
    _, component = connected_components(graph, directed=False)
    per_text = component[[index[text] for text in normal]]
    _, renumbered = np.unique(per_text, return_inverse=True)
    order = {group: number for number, group in enumerate(dict.fromkeys(renumbered.tolist()))}
    return np.array([order[group] for group in renumbered.tolist()], dtype=int)


def leakage_report(examples: pd.DataFrame, leaks: pd.DataFrame) -> pd.DataFrame:
    """Per point: ``point_id``, ``train`` and ``test`` (rows), ``leaks`` (its test cases that leak)."""
    counts = examples.groupby(["point_id", "split"]).size().unstack(fill_value=0)
    for split in ("train", "test"):
        if split not in counts.columns:
            counts[split] = 0
    leaking = leaks.groupby("test_point")["test_example"].nunique() if not leaks.empty else pd.Series(dtype=int)
    report = pd.DataFrame({"point_id": counts.index, "train": counts["train"].to_numpy(),
                           "test": counts["test"].to_numpy()})
    report["leaks"] = [int(leaking.get(point, 0)) for point in report["point_id"]]
    order = list(dict.fromkeys(examples["point_id"]))
    return report.set_index("point_id").loc[order].reset_index()


def check_no_leaks(examples: pd.DataFrame, encoder: Encoder, threshold: float = NEAR_DUPLICATE_COSINE) -> None:
    """Raise LeakageError naming the first offending pair when any test case leaks."""
    leaks = find_leaks(examples, encoder, threshold)
    if leaks.empty:
        return
    first = leaks.iloc[0]
    why = "the same text" if first["equal_text"] else f"cosine {first['cosine']:.3f} >= {threshold}"
    raise LeakageError(
        f"{len(leaks)} test case(s) leak into training data: test {first['test_example']} of {first['test_point']} "
        f"and training example {first['train_example']} of {first['train_point']} ({why}): "
        f"{first['test_text']!r} vs {first['train_text']!r}. Drop one of them or move both to the same split.",
        leaks)


