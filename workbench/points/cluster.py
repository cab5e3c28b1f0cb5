"""Training points: a run's errors grouped into recurring failure modes, named, counted, and marked
with what would fix them.

Errors are grouped by **signature** first (what went wrong, from the task's kind: "complaint read
as request", "missed DRUG"), then, within a signature, by **content**: the texts (for NER the
entity in its context) embedded by a sentence encoder and clustered agglomeratively (average
linkage) with a cosine distance threshold. Chosen by measurement (`benchmarks/training_points.py`):
on the demo runs HDBSCAN left 64% of the errors of a small set as noise and recovered no planted
failure family; k-means with a fixed k cut families apart; agglomerative clustering at a threshold
of 0.7 recovered a planted family in 5 of 5 seeds (0 of 5 at 0.55, where families split).

With many labels almost every signature is unique, so signatures are not the only grouping
(`workbench.points.families` has the order and the rules): a **default answer** (one answer
given to most errors of a variant, whatever the gold) is one point first; a confusion and its
reverse ("A read as B", "B read as A") share a signature group; and what no signature point
takes is grouped by the answer alone ("anything read as X"), by the gold alone ("X read as
anything"), when that is unlikely by chance, then by content across signatures. What is left
goes to an explicit "other" point (its signature's when the signature recurs, else one shared
one), and suspected label errors to a "relabel" point, so every error belongs to exactly one
point. On clinc150 (151 labels, `benchmarks/training_points.py` part 4, 5 seeds) a planted
default answer was one point in 5 of 5 seeds and planted two-way confusions of related intents
were recovered in 28 of 30 families; on complaint_triage (part 2) the planted families came out
as they did before these families were added.

Errors are clustered per example: one example wrong in several variants is one member of a point,
and every error row is assigned to the point of its (example, signature).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer

from workbench.core.answers import is_missing
from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.points.encoder import Encoder, default_encoder
from workbench.points.families import Family, Key, find_families
from workbench.prompting.variants import parse_variant

POINT_COLUMNS = [
    "point_id", "name", "description", "signature", "size", "share_of_errors", "example_ids", "representatives",
    "keywords", "variants_affected", "fixed_by", "persistent", "action", "kind", "right_by_variant", "family",
    "family_note",
]
# The kinds of point that training data is built for and fine-tuning is judged on; the other kind,
# "relabel" (suspected label errors), goes to annotators.
TRAINABLE_KINDS = ("point", "other")
MAP_COLUMNS = ["example_id", "signature", "point_id", "x", "y", "text"]
ACTIONS = ("prompt change", "add/clarify a definition", "fine-tune", "relabel")


class ErrorClusterer:
    """Find training points in a run's errors (scikit-learn style: parameters here, `fit` learns).

    `distance_threshold` is the cosine distance under which agglomerative clustering (average
    linkage) merges two groups of errors; `min_size` the fewest distinct examples a point needs
    (smaller clusters go on to the answer, gold and content families, then to an "other" point);
    `representatives` how many member examples each point shows; `encoder` anything with
    ``encode(texts)`` (default: the packaged all-MiniLM-L6-v2, loaded on first use).

    A default answer is an answer given to at least `default_share` of the examples a variant got
    wrong, to at least `default_min` of them, across at least `default_golds` gold labels with no
    one gold label holding more than half (0.5, 5 and 3: "most" errors, more than a coincidence of
    two or three, and not one common confusion; with three labels no answer can be a default). An
    answer or gold family needs at least `family_min` members and a Bonferroni-corrected binomial
    p-value under `family_alpha` against an even spread over the labels
    (`workbench.points.families.chance_families`).

    After `fit`: ``points_`` (one row per point, columns `POINT_COLUMNS`, see `fit`),
    ``assignments_`` (the errors given, with ``signature`` and ``point_id`` added) and ``map_``
    (one row per clustered (example, signature): ``example_id``, ``signature``, ``point_id``,
    ``x``, ``y`` (the embeddings' first two principal components) and ``text``, for a 2-D map).
    """

    def __init__(self, *, distance_threshold: float = 0.7, min_size: int = 2, representatives: int = 3,
                 keywords: int = 3, encoder: Encoder | None = None, default_share: float = 0.5,
                 default_min: int = 5, default_golds: int = 3, family_min: int = 3, family_alpha: float = 0.05):
        self.distance_threshold = distance_threshold
        self.default_share = default_share
        self.default_min = default_min
        self.default_golds = default_golds
        self.family_min = family_min
        self.family_alpha = family_alpha
        self.min_size = min_size
        self.representatives = representatives
        self.keywords = keywords
        self.encoder = encoder

    def fit(self, errors: pd.DataFrame, predictions: pd.DataFrame, task: Task,
            label_issues: pd.DataFrame | None = None) -> ErrorClusterer:
        """Group `errors` (`workbench.evaluation.errors.find_errors` on `predictions`) into points.

        `label_issues` (`find_label_issues`): examples flagged ``is_label_issue`` go to one
        "suspected label errors" point with action ``relabel`` instead of becoming training points.

        ``points_`` columns: ``point_id`` (``P1``... by size, ``other-<n>`` and ``relabel`` last),
        ``name`` (signature and keywords), ``description`` (one sentence), ``signature``, ``size``
        (distinct examples), ``share_of_errors`` (its share of all error rows), ``example_ids``,
        ``representatives`` (example ids nearest the point's centre), ``keywords`` (class-based
        TF-IDF over its texts), ``variants_affected`` (variants with an error in it),
        ``fixed_by`` (variants that answer every one of its examples right), ``persistent``
        (no variant answers any of them right), ``action`` (one of `ACTIONS`: a prompt change
        when a variant fixes it, a definition when only variants with definitions do, fine-tuning
        when it is persistent or no variant fixes it, relabelling for suspected label errors),
        ``kind`` (``point``, ``other`` or ``relabel``), ``right_by_variant`` (per variant, the share
        of the point's examples it answers right; 1.0 means it fixes the point), ``family`` (what
        holds the point together, one of `workbench.points.families.FAMILIES`: ``default answer``,
        ``signature``, ``pair`` (a confusion both ways), ``answer`` (anything read as X), ``gold``
        (X read as anything), ``content`` (similar texts across signatures), ``other``,
        ``relabel``) and ``family_note`` (one sentence saying so, with the counts, e.g.
        "zero_shot gave 'X' to 76 of 77 of its errors (99%)"; empty for plain signature points).
        For a point of several signatures ``signature`` says what its members share ("anything
        read as X"); the assignments keep each error's own signature.
        """
        _check_errors(errors, predictions, task)
        frame = errors.reset_index(drop=True).copy()
        frame["signature"] = [task.kind.error_signature(row) for row in frame.to_dict("records")]
        flagged = set() if label_issues is None else set(
            label_issues.loc[label_issues["is_label_issue"], "example_id"].astype(str))
        frame["point_id"] = None
        self.map_ = pd.DataFrame(columns=MAP_COLUMNS)
        if frame.empty:
            self.points_ = pd.DataFrame(columns=POINT_COLUMNS)
            self.assignments_ = frame
            return self

        relabel = frame["example_id"].astype(str).isin(flagged)
        members = frame[~relabel].drop_duplicates(["example_id", "signature"])
        contexts = {(row["example_id"], row["signature"]): task.kind.error_context(row)
                    for row in members.to_dict("records")}
        keys, vectors = self._embed(contexts)
        vectors_of = _vectors_of(keys, vectors)
        families = self._families(frame, members, relabel, keys, vectors_of, task)
        points = self._points(frame, relabel, families, vectors_of, predictions)
        table = pd.DataFrame(points, columns=POINT_COLUMNS)
        self.map_ = self._map(keys, vectors, frame, contexts)
        table["share_of_errors"] = [int((frame["point_id"] == point).sum()) / len(frame) for point in table["point_id"]]
        self.points_ = table
        self.assignments_ = frame
        return self

    def _embed(self, contexts: dict[Key, str]) -> tuple[list[Key], np.ndarray]:
        """(keys, vectors): the (example_id, signature) keys of `contexts` in order, and the
        encoder's embedding of each one's context, row for row (a 0 x 1 array when there are none)."""
        encoder = self.encoder or default_encoder()
        keys = list(contexts)
        vectors = encoder.encode([contexts[key] for key in keys]) if keys else np.zeros((0, 1))
        return keys, vectors

    def _families(self, frame: pd.DataFrame, members: pd.DataFrame, relabel: pd.Series,
                  keys: list[Key], vectors_of: Callable[[list[Key]], np.ndarray],
                  task: Task) -> list[Family]:
        """The families `find_families` proposes for the errors not flagged for relabelling,
        points before "other" ones and larger before smaller, the order point ids are given in."""
        sides = [task.kind.error_sides(row) for row in frame.to_dict("records")]
        frame_sides = pd.DataFrame(sides, columns=["gold_side", "answer_side"], index=frame.index, dtype=object)
        side_of = dict(zip(zip(frame["example_id"], frame["signature"]), sides))
        member_sides = pd.DataFrame([side_of[key] for key in keys], columns=["gold_side", "answer_side"], dtype=object)
        families = find_families(
            pd.concat([members[["example_id", "signature"]].reset_index(drop=True), member_sides], axis=1),
            pd.concat([frame[["variant", "example_id"]], frame_sides], axis=1)[~relabel],
            vectors_of, self._cluster,
            labels=len(task.label_names), min_size=self.min_size, threshold=self.distance_threshold,
            default_share=self.default_share,
            default_min=self.default_min, default_golds=self.default_golds, family_min=self.family_min,
            alpha=self.family_alpha)
        families.sort(key=lambda family: (family.kind != "point", -len(family.members)))
        return families

    def _points(self, frame: pd.DataFrame, relabel: pd.Series, families: list[Family],
                vectors_of: Callable[[list[Key]], np.ndarray], predictions: pd.DataFrame) -> list[dict[str, Any]]:
        """The rows of the points table (`point_row`, columns `POINT_COLUMNS`): one per family
        (``P<n>`` or ``other-<n>``), then the ``relabel`` point when any error is flagged. Writes
        each error row's point into `frame`'s ``point_id`` column on the way, which
        ``share_of_errors`` and the map are computed from."""
        texts = dict(zip(frame["example_id"], frame["text"]))
        documents = [" ".join(texts[example] for example, _ in family.members) for family in families]
        top_words = class_keywords(documents, self.keywords)
        correct = correct_examples(predictions, frame)
        variants = list(dict.fromkeys(predictions["variant"]))
        rows_of = _rows_by_key(frame, relabel)
        points: list[dict[str, Any]] = []
        others = 0
        for family, words in zip(families, top_words):
            if family.kind == "point":
                point_id = f"P{sum(1 for p in points if p['kind'] == 'point') + 1}"
            else:
                others += 1
                point_id = f"other-{others}"
            examples = list(dict.fromkeys(example for example, _ in family.members))
            representatives = _nearest_centre(family.members, vectors_of)[: self.representatives]
            mine = sorted(index for key in family.members for index in rows_of[key])
            frame.loc[mine, "point_id"] = point_id
            points.append(point_row(point_id, family.kind, family.signature, examples, representatives, words,
                                    frame.loc[mine], correct, variants, family=family.family, title=family.title,
                                    note=family.note))
        if relabel.any():
            examples = list(dict.fromkeys(frame.loc[relabel, "example_id"]))
            frame.loc[relabel, "point_id"] = "relabel"
            points.append(point_row("relabel", "relabel", "suspected label error", examples,
                                    examples[: self.representatives], [], frame[relabel], correct, variants,
                                    family="relabel"))
        return points

    def _map(self, keys: list[tuple[str, str]], vectors: np.ndarray, frame: pd.DataFrame,
             contexts: dict[tuple[str, str], str]) -> pd.DataFrame:
        if not keys:
            return pd.DataFrame(columns=MAP_COLUMNS)
        from sklearn.decomposition import PCA

        components = min(2, len(keys), vectors.shape[1])
        # Seeded: on wide vectors PCA picks its randomized solver, and an unseeded one moves the map a little
        # on every fit of the same errors.
        flat = (PCA(n_components=components, random_state=0).fit_transform(vectors) if len(keys) > 1
                else np.zeros((1, 1)))
        flat = np.hstack([flat, np.zeros((len(keys), 2 - flat.shape[1]))]) if flat.shape[1] < 2 else flat
        point_of = dict(zip(zip(frame["example_id"], frame["signature"]), frame["point_id"]))
        return pd.DataFrame({
            "example_id": [key[0] for key in keys], "signature": [key[1] for key in keys],
            "point_id": [point_of[key] for key in keys], "x": flat[:, 0], "y": flat[:, 1],
            "text": [contexts[key] for key in keys],
        }, columns=MAP_COLUMNS)

    def _cluster(self, vectors: np.ndarray) -> list[int]:
        if len(vectors) < 2:
            return [0] * len(vectors)
        model = AgglomerativeClustering(n_clusters=None, distance_threshold=self.distance_threshold,
                                        metric="cosine", linkage="average")
        return model.fit_predict(vectors).tolist()


def _check_errors(errors: pd.DataFrame, predictions: pd.DataFrame, task: Task) -> None:
    """Raise InputError unless `errors` and `predictions` have the columns clustering reads and
    `errors` come from a run of `task` on these `predictions` (their error types, labels and
    example ids)."""
    require_columns(errors, ["example_id", "variant", "error_type", "text"], "errors",
                    "pass the frame find_errors returns")
    require_columns(predictions, ["variant", "example_id", "prediction"], "predictions")
    unknown = sorted(set(errors["error_type"]) - set(task.kind.error_types))
    if unknown:
        raise InputError(f"errors have error types {unknown} that a {task.kind} task does not make; "
                         f"they come from a run of another task")
    foreign = sorted(_labels_named(errors) - set(task.label_names))
    if foreign:
        raise InputError(f"errors name labels {foreign} that task {task.name!r} does not have "
                         f"(its labels: {list(task.label_names)}); they come from a run of another task")
    stray = sorted(set(errors["example_id"]) - set(predictions["example_id"]))
    if stray:
        raise InputError(f"{len(stray)} error example_id(s) are not in the predictions, e.g. {stray[:3]}: "
                         "pass the errors of the same run (find_errors on these predictions)")


def _vectors_of(keys: list[Key], vectors: np.ndarray) -> Callable[[list[Key]], np.ndarray]:
    """A function from (example_id, signature) keys to their rows of `vectors` (row i is keys[i]'s),
    in the order asked."""
    position = {key: index for index, key in enumerate(keys)}
    return lambda chosen: vectors[[position[key] for key in chosen]]


def _rows_by_key(frame: pd.DataFrame, relabel: pd.Series) -> dict[Key, list[int]]:
    """(example_id, signature) -> the index of each of its error rows in `frame`, in frame order,
    leaving out the rows flagged in `relabel` (they go to the relabel point, not a family's)."""
    rows_of: dict[Key, list[int]] = {}
    for index, key, flagged_row in zip(frame.index, zip(frame["example_id"], frame["signature"]), relabel):
        if not flagged_row:
            rows_of.setdefault(key, []).append(index)
    return rows_of


def _nearest_centre(members: list[Key], vectors_of: Callable[[list[Key]], np.ndarray]) -> list[str]:
    """The distinct example ids of `members`, nearest the mean of their vectors first (ties in
    member order): a point's representatives are the first few."""
    vectors = vectors_of(members)
    centre = vectors.mean(axis=0)
    nearest = np.argsort(-(vectors @ centre), kind="stable")
    return list(dict.fromkeys(members[i][0] for i in nearest))


def _labels_named(errors: pd.DataFrame) -> set[str]:
    """The labels the errors' gold answers name (a label, a span's label, a list of labels). Gold
    answers were checked against their task when loaded, so a label foreign to this task means the
    errors come from another task's run; a model's answers are not checked (a parser keeps them apart)."""
    labels: set[str] = set()
    for value in errors.get("gold", pd.Series(dtype=object)):
        for part in value if isinstance(value, (list, tuple, np.ndarray)) else [value]:
            if isinstance(part, dict):
                part = part.get("label")
            if isinstance(part, str) and part:
                labels.add(part)
    return labels


def correct_examples(predictions: pd.DataFrame, errors: pd.DataFrame) -> dict[str, set[str]]:
    """Per variant, the examples it answered with no error in any repeat."""
    wrong = {(variant, example) for variant, example in zip(errors["variant"], errors["example_id"])}
    result: dict[str, set[str]] = {}
    for variant, example, prediction in zip(predictions["variant"], predictions["example_id"],
                                            predictions["prediction"]):
        if (variant, example) not in wrong and not is_missing(prediction):
            result.setdefault(variant, set()).add(example)
    return result


def cluster_errors(errors: pd.DataFrame, predictions: pd.DataFrame, task: Task,
                   label_issues: pd.DataFrame | None = None, **parameters: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, assignments) of `ErrorClusterer(**parameters).fit(...)`: the verb for notebooks."""
    clusterer = ErrorClusterer(**parameters).fit(errors, predictions, task, label_issues)
    return clusterer.points_, clusterer.assignments_


def class_keywords(documents: list[str], count: int) -> list[list[str]]:
    """Class-based TF-IDF: each point's texts as one document, the `count` words that set it apart."""
    if not documents:
        return []
    try:
        # Words of letters only: numbers, amounts and contraction stubs ("didn") name nothing.
        vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True,
                                     token_pattern=r"(?u)\b[^\W\d_]{3,}\b")
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # only stop words
        return [[] for _ in documents]
    vocabulary = np.array(vectorizer.get_feature_names_out())
    keywords = []
    for row in matrix:
        weights = row.toarray().ravel()
        top = np.argsort(-weights, kind="stable")[:count]
        keywords.append(vocabulary[top[weights[top] > 0]].tolist())  # words the point's texts contain
    return keywords


def point_row(point_id: str, kind: str, signature: str, examples: list[str], representatives: list[str],
              words: list[str], rows: pd.DataFrame, correct: dict[str, set[str]], variants: list[str], *,
              family: str = "signature", title: str | None = None, note: str = "") -> dict:
    """One row of the points table (`ErrorClusterer.fit` documents its columns; ``share_of_errors``
    is left at 0 for the caller). `rows` are the point's error rows; `correct` holds, per variant,
    the examples it answered right (`correct_examples`), from which fixed_by and action follow.
    `title` starts the name instead of the signature (a default answer's share)."""
    right = {variant: sum(example in correct.get(variant, set()) for example in examples) for variant in variants}
    fixed_by = [variant for variant in variants if right[variant] == len(examples)]
    persistent = all(count == 0 for count in right.values())
    if kind == "relabel":
        action = "relabel"
    elif fixed_by and all(parse_variant(variant).definitions for variant in fixed_by):
        action = "add/clarify a definition"
    elif fixed_by:
        action = "prompt change"
    else:
        action = "fine-tune"
    quoted = ", ".join(f"'{word}'" for word in words)
    name = (title or signature) + (f": {quoted}" if quoted else "") + (" (other)" if kind == "other" else "")
    fixes = f"fixed by {', '.join(fixed_by)}" if fixed_by else ("wrong in every variant" if persistent
                                                              else "no variant gets all of them right")
    description = (f"{len(examples)} example(s) where {signature}" + (f", about {quoted}" if quoted else "")
                   + f"; {fixes}; suggested action: {action}.")
    return {
        "point_id": point_id, "name": name, "description": description, "signature": signature,
        "size": len(examples), "share_of_errors": 0.0, "example_ids": examples,
        "representatives": representatives, "keywords": words,
        "variants_affected": list(dict.fromkeys(rows["variant"])), "fixed_by": fixed_by,
        "persistent": persistent, "action": action, "kind": kind,
        "right_by_variant": {variant: right[variant] / len(examples) for variant in variants},
        "family": family, "family_note": note,
    }


