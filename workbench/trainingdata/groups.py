"""Near-duplicate groups with one split each: how the training data stays leak-free by construction.

Real pools are full of paraphrases ("what is my balance", "What's my balance?"). If two of them
land on different sides of the split, the test case measures memory, not learning. So before any
row is chosen, every text a build may use (the run's examples, the labelled pool, rows a loop
round replays, texts added later) is put into near-duplicate groups (`leakage.near_duplicate_groups`:
equal normalised texts, or a cosine at the threshold or above, joined transitively), and each group
gets one side the first time one of its texts is placed: every later text of the group goes to the
same side or is not used. Members, neighbours, anchors and regression cases all ask the same
`SplitLedger` before they take a text, so no test case can be within the threshold of a training
row, and the final leak check in `build_training_data` can only fail through a bug.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from workbench.points.encoder import Encoder
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE, near_duplicate_groups

GROUP_COLUMNS = ["group", "size", "split", "example_id", "text"]


class SplitLedger:
    """The near-duplicate group of every known text and the split each group has taken.

    `texts` are every text the build may use; `encoder` and `threshold` define "near-duplicate".
    ``group(text)`` is a text's group number, ``side(text)`` its group's split (None while no text
    of the group is placed), ``allows(text, split)`` whether the text may go to `split`, and
    ``take(text, split)`` places it (raising when its group is already on the other side: a caller
    that did not ask first)."""

    def __init__(self, texts: Iterable[str], encoder: Encoder, threshold: float = NEAR_DUPLICATE_COSINE):
        known = list(dict.fromkeys(str(text) for text in texts))
        self.threshold = threshold
        self._group = dict(zip(known, near_duplicate_groups(known, encoder, threshold).tolist()))
        self._side: dict[int, str] = {}
        self._placed: dict[str, tuple[str, str]] = {}  # example_id -> (text, split), for the report

    def group(self, text: str) -> int:
        try:
            return self._group[str(text)]
        except KeyError:
            raise KeyError(f"text {str(text)[:60]!r} was not given to the SplitLedger; pass every text the build "
                           "may use when making it") from None

    def side(self, text: str) -> str | None:
        return self._side.get(self.group(text))

    def allows(self, text: str, split: str) -> bool:
        return self.side(text) in (None, split)

    def take(self, text: str, split: str, example_id: str | None = None) -> None:
        group = self.group(text)
        if self._side.setdefault(group, split) != split:
            raise RuntimeError(f"bug: text {str(text)[:60]!r} was placed in {split} although its near-duplicate "
                               f"group {group} is in {self._side[group]}; callers must ask `allows` first")
        if example_id is not None:
            self._placed[str(example_id)] = (str(text), split)

    @property
    def groups(self) -> int:
        """How many near-duplicate groups the known texts form."""
        return len(set(self._group.values()))

    @property
    def texts(self) -> int:
        return len(self._group)

    def kept_together(self) -> pd.DataFrame:
        """The groups with more than one placed example, which the split kept on one side: columns
        `GROUP_COLUMNS` (``group``, ``size`` (placed examples of the group), ``split``,
        ``example_id``, ``text``), one row per placed example, largest groups first."""
        rows = [{"group": self.group(text), "split": split, "example_id": example_id, "text": text}
                for example_id, (text, split) in self._placed.items()]
        frame = pd.DataFrame(rows, columns=[c for c in GROUP_COLUMNS if c != "size"])
        if frame.empty:
            return pd.DataFrame(columns=GROUP_COLUMNS)
        frame["size"] = frame.groupby("group")["example_id"].transform("size")
        frame = frame[frame["size"] > 1].sort_values(["size", "group"], ascending=[False, True], kind="stable")
        return frame[GROUP_COLUMNS].reset_index(drop=True)

    def summary(self) -> str:
        """One sentence for a build's notes: how many groups the known texts form."""
        shared = self.texts - self.groups
        return (f"{self.texts} distinct text(s) of the run, the pool and the rows given form {self.groups} "
                f"near-duplicate group(s) at cosine {self.threshold} ({shared} text(s) share a group with another); "
                "a group is never split between training and test")
