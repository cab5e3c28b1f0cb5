"""Training examples and held-out test cases for each training point, in one canonical frame.

For every training point (`workbench.points`), rows come from these sources, marked in ``source``:

- ``members``: the point's own errors (one row per example), split into train and test halves,
  seeded and stratified by signature. Members that are near-duplicates of each other stay on one
  side, so that the split cannot leak. A point with fewer than `min_members_to_split` members is
  too small to split: its members all train, and its test cases come from its neighbours.
- ``corrections``: members whose answer annotators corrected in Argilla; the consensus of their
  submitted answers replaces the gold target (most common answer; a tie goes to the latest answer,
  since annotators tend to settle a disputed case last).
- ``neighbours``: examples of a labelled `pool` (usually the train split) nearest to the point's
  members by sentence embedding (k nearest per member, closest first), with their gold targets;
  they fill the test cases up to `min_test` (sharing a test case between points where they can,
  and using at most half the pool for tests) and the rest train. A pool example that nearly
  repeats a test case is not used.
- ``targeted`` and ``generated``: rows made elsewhere (annotators labelling what the point needs;
  validated synthetic texts) and added with `add_examples`.
- ``anchors``: pool examples that balance the training rows' labels (`anchors.choose_anchors`),
  picked before the regression set.
- ``regression``: test examples in no point (``point_id`` "regression"), to detect harm elsewhere:
  the run's examples no point holds, topped up from unused pool examples when too few.

Every example has one split in the whole frame: an example that is a test case of one point is
never a training example of another. Near-duplicates share a split by construction: before any row
is chosen, every text the build may use (the run's examples, the pool, `trained_texts`) is put in
near-duplicate groups, each group takes one side the first time one of its texts is placed, and
every source asks that ledger before it takes a text (`groups.SplitLedger`). So a pool full of
paraphrases builds without a leak, and the final leak check can only fail through a bug.

The ``target`` is the gold-form answer; ``answer`` is that target in the JSON the prompt asks for
(`TaskKind.format_answer`), and ``messages`` the chat the prompting stage renders for the chosen
variant plus that answer. For a chain-of-thought variant,
whose answer schema puts ``reasoning`` first, the reasoning is built from the task file: the
client's definition of each label the answer uses, quoted ("DRUG: a medicine named by brand or
generic name..."), so that the model learns to cite the definitions rather than our words.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.answers import REASONING_MAX_CHARS, is_missing
from workbench.core.errors import InputError, OverwriteError
from workbench.core.frames import require_columns, write_frame
from workbench.core.task import Task
from workbench.points.cluster import TRAINABLE_KINDS
from workbench.points.encoder import Encoder, cached
from workbench.prompting.templates import render_messages
from workbench.prompting.variants import PromptVariant, parse_variant
from workbench.trainingdata.anchors import ANCHORS, choose_anchors, label_counts
from workbench.trainingdata.groups import GROUP_COLUMNS, SplitLedger
from workbench.trainingdata.leakage import (
    NEAR_DUPLICATE_COSINE,
    LeakageError,
    check_no_leaks,
    find_leaks,
    leakage_report,
    similarity,
)

TRAINING_COLUMNS = ["point_id", "split", "source", "example_id", "text", "target", "answer", "messages",
                    "synthetic", "signature", "distance"]
SOURCES = ("members", "corrections", "neighbours", "targeted", "generated", "anchors", "regression", "replay")
REGRESSION = "regression"
#: The most regression cases a build keeps by default (examples in no point, re-tested for what a fine-tune breaks).
REGRESSION_SIZE = 50


@dataclass
class TrainingData:
    """What `build_training_data` made.

    ``examples``: the canonical frame, one row per (point, example), columns `TRAINING_COLUMNS`:
    ``point_id``, ``split`` ("train" or "test"), ``source`` (one of `SOURCES`), ``example_id``,
    ``text``, ``target`` (gold form: a label, ``{start, end, label}`` spans, a list of labels),
    ``answer`` (the target as the prompt's JSON), ``messages`` (system, user, assistant),
    ``synthetic`` (True for generated texts), ``signature`` (what went wrong, for members; else
    None), ``distance`` (neighbours: cosine distance to the nearest member; else None).
    ``leakage``: per point ``point_id``, ``train``, ``test``, ``leaks`` (0 in a built set).
    ``notes``: what a reader should know (points too small to split, points with no test case,
    how many near-duplicate groups the texts formed).
    ``variant``: the prompt variant the messages were rendered with.
    ``groups``: the near-duplicate groups the split kept on one side (`groups.GROUP_COLUMNS`:
    ``group``, ``size``, ``split``, ``example_id``, ``text``; only groups of two or more used examples).
    """

    examples: pd.DataFrame
    leakage: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    variant: str = "zero_shot"
    groups: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GROUP_COLUMNS))

    def counts(self) -> pd.DataFrame:
        """Rows per point, split and source (a table for notes and reports)."""
        return self.examples.groupby(["point_id", "split", "source"]).size().unstack(fill_value=0)

    def write(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``examples.parquet``, ``leakage.csv`` (per point), ``near_duplicates.csv`` (the
        groups kept together) and ``build.json`` (the variant the messages were rendered with, and
        the notes) to `folder`; refuses to replace them unless `overwrite`."""
        folder = Path(folder)
        targets = [folder / "examples.parquet", folder / "leakage.csv"]
        existing = [str(path) for path in targets if path.exists()]
        if existing and not overwrite:
            raise OverwriteError(f"{', '.join(existing)} exist: pass overwrite=True (--overwrite) to replace them, "
                                  "or write to another folder")
        folder.mkdir(parents=True, exist_ok=True)
        write_frame(self.examples, targets[0])
        self.leakage.to_csv(targets[1], index=False)
        self.groups.to_csv(folder / "near_duplicates.csv", index=False)
        (folder / "build.json").write_text(json.dumps({"variant": self.variant, "notes": self.notes}, indent=2),
                                           encoding="utf-8")
        return folder


def build_training_data(
    points: pd.DataFrame, assignments: pd.DataFrame, dataset: pd.DataFrame, task: Task, *,
    pool: pd.DataFrame | None = None, corrections: pd.DataFrame | None = None, variant: str = "zero_shot",
    neighbours_per_member: int = 3, max_neighbours: int = 8, min_test: int = 2, min_members_to_split: int = 2,
    regression_size: int = REGRESSION_SIZE, anchors: float = 0.0, kinds: Sequence[str] = TRAINABLE_KINDS, seed: int = 0,
    encoder: Encoder | None = None, threshold: float = NEAR_DUPLICATE_COSINE, template_dir: str | Path | None = None,
    trained_texts: Sequence[str] = (),
) -> TrainingData:
    """Training examples and test cases for every point of `points` whose ``kind`` is in `kinds`
    (suspected label errors are not trained on), from its members in `assignments`, the
    annotators' `corrections` (`pull_corrections`' frame), and its neighbours in `pool` (a
    labelled frame: ``example_id``, ``text``, the task's target column). `dataset` is the run's
    evaluated data (its examples in no point form the regression set, up to `regression_size`).
    With `anchors` > 0, pool examples that balance the training labels train too, at most that
    share of the points' rows (`anchors.choose_anchors`); they are picked before the regression set
    is topped up from the pool.
    `variant` renders the messages (it must not show few-shot examples: a tuned model answers
    without them). `threshold` is the cosine at which two texts are near-duplicates (they share a
    split); `trained_texts` are texts trained on elsewhere (a loop round's replayed rows): no test
    case equals or nearly repeats one. Raises ValueError naming the point or row that cannot be
    used; RuntimeError (a bug) if a test case still leaks.
    """
    require_columns(points, ["point_id", "kind", "example_ids"], "points", "pass ErrorClusterer's points_")
    require_columns(assignments, ["example_id", "signature", "point_id"], "assignments",
                    "pass ErrorClusterer's assignments_")
    require_columns(dataset, ["example_id", "text", task.kind.target_column], "dataset")
    chosen = _check_variant(variant)
    encoder = cached(encoder)
    rng = random.Random(seed)
    truth = dataset.drop_duplicates("example_id").set_index("example_id")
    corrected = consensus_corrections(corrections, task)
    wanted = _wanted_points(points, assignments, truth, kinds)
    if pool is not None:
        require_columns(pool, ["example_id", "text", task.kind.target_column], "pool",
                        "pass a labelled frame, e.g. the train split from load_dataset")
    ledger = _split_ledger(truth, pool, trained_texts, encoder, threshold)
    notes = [ledger.summary()]
    rows, member_texts, small = _member_rows(wanted, assignments, truth, corrected, task, ledger, rng,
                                             min_members_to_split)
    notes += small
    splits = {row["example_id"]: row["split"] for row in rows}  # one split per example, for every point
    if pool is not None:
        rows += _neighbours(member_texts, pool, task, splits, encoder, ledger, neighbours_per_member,
                            max_neighbours, min_test, rows, exclude=set(truth.index))
        if anchors:
            added, note = _anchor_rows(rows, pool, task, anchors, seed, encoder, threshold, set(truth.index), ledger)
            rows += added
            notes.append(note)
    # Examples of points not built here (suspected label errors) are errors too: not regression cases.
    rows += _regression(rows, truth, pool, task, regression_size, rng, ledger,
                        erred=set(assignments["example_id"].astype(str)))
    frame = render_rows(rows, task, chosen, template_dir)
    for point_id in wanted["point_id"]:
        if not ((frame["point_id"] == point_id) & (frame["split"] == "test")).any():
            notes.append(f"{point_id} has no test case: give a labelled pool (neighbours) or annotate more examples")
    leaks = _checked_leaks(frame, encoder, threshold)
    return TrainingData(frame, leakage_report(frame, leaks), notes, chosen.name, ledger.kept_together())


def _wanted_points(points: pd.DataFrame, assignments: pd.DataFrame, truth: pd.DataFrame,
                   kinds: Sequence[str]) -> pd.DataFrame:
    """The rows of `points` whose ``kind`` is in `kinds` (same columns). Raises InputError when
    there are none, or when a member of one (in `assignments`) is not in `truth` (the run's
    dataset indexed by ``example_id``)."""
    wanted = points[points["kind"].isin(kinds)]
    if wanted.empty:
        raise InputError(f"no points of kind {list(kinds)} to build training data for (points: "
                         f"{dict(Counter(points['kind']))}): cluster a run with errors first")
    every_member = list(dict.fromkeys(assignments.loc[assignments["point_id"].isin(wanted["point_id"]), "example_id"]))
    unknown = [e for e in every_member if e not in truth.index]
    if unknown:
        raise InputError(f"example(s) {unknown[:3]} of the points are not in the dataset; pass the run's dataset")
    return wanted


def _split_ledger(truth: pd.DataFrame, pool: pd.DataFrame | None, trained_texts: Sequence[str], encoder: Encoder,
                  threshold: float) -> SplitLedger:
    """The ledger of near-duplicate groups over every text any source may take (the run's, the
    pool's, `trained_texts`), built before anything is chosen (module docstring), with the groups
    of `trained_texts` already on the train side."""
    pool_texts = [] if pool is None else pool["text"].astype(str).tolist()
    ledger = SplitLedger([*truth["text"].astype(str), *pool_texts, *map(str, trained_texts)], encoder, threshold)
    for text in trained_texts:
        ledger.take(str(text), "train")
    return ledger


def _member_rows(wanted: pd.DataFrame, assignments: pd.DataFrame, truth: pd.DataFrame, corrected: dict[str, Any],
                 task: Task, ledger: SplitLedger, rng: random.Random,
                 min_members: int) -> tuple[list[dict[str, Any]], dict[str, list[str]], list[str]]:
    """(rows, member_texts, notes): a ``members`` (or, when annotators corrected it,
    ``corrections``) row per member of each `wanted` point, split by `_split_members`; each
    point's member texts by ``point_id`` (to find their neighbours); and a note per point too
    small to split. Raises InputError for a point with no members in `assignments`."""
    rows: list[dict[str, Any]] = []
    member_texts: dict[str, list[str]] = {}
    notes: list[str] = []
    for point in wanted.to_dict("records"):
        point_id = str(point["point_id"])
        members = assignments[assignments["point_id"] == point_id].drop_duplicates("example_id")
        if members.empty:
            raise InputError(f"point {point_id} has no members in the assignments: pass the assignments of the same "
                             "clustering (or review) as the points")
        texts = [str(truth.at[e, "text"]) for e in members["example_id"]]
        member_texts[point_id] = texts
        split = _split_members(list(members["example_id"]), texts, list(members["signature"]), ledger, rng,
                               min_members)
        if len(members) < min_members:
            notes.append(f"{point_id} has {len(members)} member(s): too small to split; its members train and its "
                         "test cases come from neighbours")
        for example_id, signature, text in zip(members["example_id"], members["signature"], texts):
            target, source = truth.at[example_id, task.kind.target_column], "members"
            if example_id in corrected:
                target, source = corrected[example_id], "corrections"
            rows.append(_row(point_id, split[example_id], source, example_id, text, target, signature, None))
    return rows, member_texts, notes


def _anchor_rows(rows: list[dict[str, Any]], pool: pd.DataFrame, task: Task, share: float, seed: int,
                 encoder: Encoder, threshold: float, exclude: set[str],
                 ledger: SplitLedger) -> tuple[list[dict[str, Any]], str]:
    """(anchor rows, note): training rows of pool examples that balance the labels of `rows`
    (`anchors.choose_anchors`, at most `share` of them), taken on the ledger's train side, and a
    note of the training label counts with them."""
    picked = choose_anchors(pd.DataFrame(rows), pool, task, share=share, seed=seed, encoder=encoder,
                            threshold=threshold, exclude=exclude, ledger=ledger)
    for e, text in zip(picked["example_id"], picked["text"]):
        ledger.take(text, "train", e)
    added = [_row(ANCHORS, "train", ANCHORS, e, text, target, None, None)
             for e, text, target in zip(picked["example_id"], picked["text"], picked["target"])]
    counts = label_counts(pd.DataFrame(rows + added), task)
    return added, (f"{len(picked)} anchor row(s) from the pool balance the training labels: "
                   + ", ".join(f"{label} {count}" for label, count in counts.most_common()))


def _checked_leaks(frame: pd.DataFrame, encoder: Encoder, threshold: float) -> pd.DataFrame:
    """`find_leaks`' frame for the built `frame` (empty, since the ledger keeps near-duplicates on one
    side). Raises RuntimeError when a test case leaks all the same, which only a bug can cause."""
    leaks = find_leaks(frame, encoder, threshold)
    if not leaks.empty:
        try:
            check_no_leaks(frame, encoder, threshold)
        except LeakageError as error:  # the ledger makes this impossible: a source placed a text unasked
            raise RuntimeError(f"bug in build_training_data: a source skipped the near-duplicate ledger. {error} "
                               "Please report it with these two texts.") from error
    return leaks


def one_row_per_example(examples: pd.DataFrame) -> pd.DataFrame:
    """The frame with one row per (split, example): what a trainer should see. An example that
    several points share (a neighbour, an example with errors of two signatures) would otherwise
    be trained on once per point; it keeps its first point's row."""
    return examples.drop_duplicates(["split", "example_id"]).reset_index(drop=True)


def consensus_corrections(corrections: pd.DataFrame | None, task: Task) -> dict[str, Any]:
    """example_id -> the annotators' consensus answer over their submitted corrections: the most
    common answer; a tie goes to the latest submitted of the tied answers."""
    if corrections is None or corrections.empty:
        return {}
    column = task.kind.target_column
    require_columns(corrections, ["example_id", "status", column], "corrections",
                    "pass the frame pull_corrections returns for this task")
    submitted = corrections[corrections["status"] == "submitted"]
    if "submitted_at" in submitted.columns:
        submitted = submitted.assign(_at=pd.to_datetime(submitted["submitted_at"], utc=True)).sort_values(
            "_at", kind="stable")
    result = {}
    for example_id, group in submitted.groupby("example_id", sort=False):
        answers = [a for a in group[column] if not is_missing(a)]
        if not answers:
            continue
        keys = [task.kind.answer_key(a) for a in answers]
        counts = Counter(keys)
        best = max(counts.values())
        latest = next(i for i in range(len(keys) - 1, -1, -1) if counts[keys[i]] == best)
        result[str(example_id)] = answers[latest]
    return result


def add_examples(data: TrainingData, rows: pd.DataFrame, task: Task, *, encoder: Encoder | None = None,
                 threshold: float = NEAR_DUPLICATE_COSINE, template_dir: str | Path | None = None) -> TrainingData:
    """`data` with `rows` added (``point_id``, ``split``, ``source`` ("targeted" or "generated"),
    ``example_id``, ``text``, ``target``; ``synthetic`` optional), rendered like the rest and
    checked for leakage again."""
    require_columns(rows, ["point_id", "split", "source", "example_id", "text", "target"], "rows")
    unknown = sorted(set(rows["source"]) - set(SOURCES))
    if unknown:
        raise InputError(f"rows have unknown sources {unknown}; use one of {SOURCES}")
    _refuse_reused_ids(data.examples, rows)
    clash = _split_clashes(data.examples, rows)
    if clash:
        raise InputError(f"example {clash} is a test case in one place and training data in another: give it one split")
    extra = [_row(r["point_id"], r["split"], r["source"], r["example_id"], r["text"], r["target"], None, None,
                  bool(r.get("synthetic", r["source"] == "generated"))) for r in rows.to_dict("records")]
    frame = pd.concat([data.examples, render_rows(extra, task, parse_variant(data.variant), template_dir)],
                      ignore_index=True)
    encoder = cached(encoder)
    check_no_leaks(frame, encoder, threshold)  # rows made elsewhere: a leak is the caller's to resolve
    return TrainingData(frame, leakage_report(frame, find_leaks(frame, encoder, threshold)), list(data.notes),
                        data.variant, data.groups)


def _refuse_reused_ids(examples: pd.DataFrame, rows: pd.DataFrame) -> None:
    """An example id names one text: a row whose id is already used for another text (in the
    training data or among the rows) would be dropped or mixed up with it, so it is refused."""
    seen: dict[str, str] = dict(zip(examples["example_id"].astype(str), examples["text"]))
    for example_id, text in zip(rows["example_id"].astype(str), rows["text"]):
        known = seen.setdefault(example_id, text)
        if known != text:
            raise InputError(f"example id {example_id!r} already names another text ({known[:80]!r}), not "
                             f"{str(text)[:80]!r}: give each new example an id of its own (generated examples "
                             "take theirs from a hash of the text)")


def _check_variant(variant: str) -> PromptVariant:
    chosen = parse_variant(variant)
    if chosen.few_shot:
        raise InputError(f"variant {variant!r} shows few-shot examples; render training data with a variant without "
                         "them (zero_shot, definitions, cot...): a tuned model should answer without examples")
    return chosen


def _row(point_id: str, split: str, source: str, example_id: str, text: str, target: Any, signature: str | None,
         distance: float | None, synthetic: bool = False) -> dict[str, Any]:
    return {"point_id": point_id, "split": split, "source": source, "example_id": str(example_id), "text": text,
            "target": target, "synthetic": synthetic, "signature": signature, "distance": distance}


def _split_members(examples: list[str], texts: list[str], signatures: list[str], ledger: SplitLedger,
                   rng: random.Random, min_members: int) -> dict[str, str]:
    """A split per member. Near-duplicates (one group of the `ledger`, over every text of the build)
    share a side, which a group keeps once any of its texts is placed. The rest is dealt in halves,
    stratified by signature: groups in signature order, shuffled within a signature, each going to
    the side this point has fewer of (larger groups first). A point under `min_members` trains on
    all its members, except those whose group already tests."""
    if len(examples) < min_members:
        for example, text in zip(examples, texts):
            ledger.take(text, ledger.side(text) or "train", example)
        return {example: ledger.side(text) for example, text in zip(examples, texts)}
    by_group: dict[int, list[int]] = {}
    for position, text in enumerate(texts):
        by_group.setdefault(ledger.group(text), []).append(position)
    # Larger groups first within a signature, so that the halves come out even.
    ordered = sorted(by_group.values(), key=lambda members: (signatures[members[0]], -len(members), rng.random()))
    counts: Counter = Counter()
    for members in ordered:
        first = texts[members[0]]
        side = ledger.side(first) or ("test" if counts["test"] < counts["train"] else "train")
        for position in members:
            ledger.take(texts[position], side, examples[position])
        counts[side] += len(members)
    return {example: ledger.side(text) for example, text in zip(examples, texts)}


def _neighbours(member_texts: dict[str, list[str]], pool: pd.DataFrame, task: Task, splits: dict[str, str],
                encoder: Encoder, ledger: SplitLedger, per_member: int, limit: int, min_test: int,
                rows: list[dict[str, Any]], exclude: set[str]) -> list[dict[str, Any]]:
    outside = ~pool["example_id"].astype(str).isin(exclude)
    candidates = pool[outside].drop_duplicates("example_id").reset_index(drop=True)
    if candidates.empty:
        return []
    pool_texts = list(candidates["text"].astype(str))
    ranked: dict[str, list[tuple[int, float]]] = {}
    for point_id, texts in member_texts.items():
        scores = similarity(encoder, texts, pool_texts)  # members x pool
        nearest: dict[int, float] = {}
        for member_scores in scores:
            for j in np.argsort(-member_scores, kind="stable")[:per_member]:
                nearest[int(j)] = max(nearest.get(int(j), -1.0), float(member_scores[j]))
        order = sorted(nearest, key=lambda j: -nearest[j])
        # A pool example in a group that tests already nearly repeats a test case: never used.
        usable = [j for j in order if ledger.side(pool_texts[j]) != "test"]
        ranked[point_id] = [(j, 1 - nearest[j]) for j in usable[:limit]]
    ids = [str(e) for e in candidates["example_id"]]
    # First the points short of test cases take their nearest free neighbours as tests (if their
    # group may test); then every other neighbour trains if its group may train, and is left out
    # otherwise. An example keeps its split for every point it neighbours.
    # At most half the pool becomes test cases: the pool is there mostly to teach. A neighbour
    # already a test case of another point counts for this one too.
    test_budget = len(candidates) // 2
    for point_id, neighbours in ranked.items():
        have_test = sum(1 for row in rows if row["point_id"] == point_id and row["split"] == "test")
        for j, _ in neighbours:
            if have_test >= min_test:
                break
            if splits.get(ids[j]) == "test":
                have_test += 1
            elif ids[j] not in splits and ledger.allows(pool_texts[j], "test") and test_budget > 0:
                ledger.take(pool_texts[j], "test", ids[j])
                splits[ids[j]] = "test"
                have_test += 1
                test_budget -= 1
    added = []
    for point_id, neighbours in ranked.items():
        for j, distance in neighbours:
            if ids[j] not in splits:
                if not ledger.allows(pool_texts[j], "train"):
                    continue  # a test case chosen after the ranking nearly repeats it
                ledger.take(pool_texts[j], "train", ids[j])
                splits[ids[j]] = "train"
            added.append(_row(point_id, splits[ids[j]], "neighbours", ids[j], pool_texts[j],
                              candidates.at[j, task.kind.target_column], None, round(distance, 4)))
    return added


def _regression(rows: list[dict[str, Any]], truth: pd.DataFrame, pool: pd.DataFrame | None, task: Task, size: int,
                rng: random.Random, ledger: SplitLedger, erred: set[str]) -> list[dict[str, Any]]:
    """Up to `size` test cases in no point: the run's examples no point holds, then, when those
    are too few (a run where every example went wrong somewhere), unused pool examples; none in a
    near-duplicate group that trains."""
    if not size:
        return []
    used = {row["example_id"] for row in rows}
    column = task.kind.target_column
    rest = [e for e in truth.index
            if e not in used and e not in erred and ledger.allows(str(truth.at[e, "text"]), "test")]
    chosen = [(e, str(truth.at[e, "text"]), truth.at[e, column]) for e in rng.sample(rest, min(size, len(rest)))]
    if len(chosen) < size and pool is not None:
        spare = pool[~pool["example_id"].astype(str).isin(used | set(truth.index))].drop_duplicates("example_id")
        spare = spare[np.array([ledger.allows(text, "test") for text in spare["text"].astype(str)], dtype=bool)]
        picked = rng.sample(range(len(spare)), min(size - len(chosen), len(spare)))
        chosen += [(str(spare["example_id"].iloc[i]), str(spare["text"].iloc[i]), spare[column].iloc[i])
                   for i in sorted(picked)]
    for example_id, text, _ in chosen:
        ledger.take(text, "test", example_id)
    return [_row(REGRESSION, "test", REGRESSION, e, text, target, None, None) for e, text, target in chosen]


def definition_reasoning(task: Task, target: Any) -> str:
    """The reasoning of a chain-of-thought training answer: the definitions of the labels `target`
    uses, quoted from the task, within the prompt's reasoning limit."""
    used = list(dict.fromkeys(task.kind.target_labels(target)))
    definitions = {label.name: label.definition for label in task.labels}
    if not used:
        text = "No part of the text matches any label's definition."
    else:
        text = " ".join(f"{label}: {definitions.get(label) or 'the everyday meaning of the name'}." for label in used)
    return text if len(text) <= REASONING_MAX_CHARS else text[: REASONING_MAX_CHARS - 1] + "…"


def training_answer(task: Task, variant: PromptVariant, example: dict[str, Any], target: Any) -> str:
    """The assistant turn of a training row: `example`'s gold `target` as the JSON `variant` asks
    for, with the definitions reasoning first for a chain-of-thought variant."""
    if not variant.cot:
        return task.kind.format_answer(task, example)
    reasoning = {"reasoning": definition_reasoning(task, target)}
    return json.dumps(reasoning | task.kind.answer_object(task, example), ensure_ascii=False)


def render_rows(rows: list[dict[str, Any]], task: Task, variant: PromptVariant,
            template_dir: str | Path | None) -> pd.DataFrame:
    """`rows` (dicts with ``point_id``, ``example_id``, ``text``, ``target`` and the other
    `TRAINING_COLUMNS`) as a frame with ``answer`` and ``messages`` rendered for `variant`, as every
    trainer sees them; a target the kind cannot format is named."""
    for row in rows:
        example = {"example_id": row["example_id"], "text": row["text"], task.kind.target_column: row["target"]}
        try:
            row["answer"] = training_answer(task, variant, example, row["target"])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"point {row['point_id']}, example {row['example_id']}: the target {row['target']!r} "
                             f"cannot be written as a {task.kind} answer ({error}); fix the gold or the correction"
                             ) from error
        prompt = render_messages(task, variant, row["text"], template_dir=template_dir)
        row["messages"] = [*prompt, {"role": "assistant", "content": row["answer"]}]
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def _split_clashes(examples: pd.DataFrame, rows: pd.DataFrame) -> str | None:
    seen = dict(zip(examples["example_id"], examples["split"]))
    for example_id, split in zip(rows["example_id"].astype(str), rows["split"]):
        if seen.setdefault(example_id, split) != split:
            return example_id
    return None
