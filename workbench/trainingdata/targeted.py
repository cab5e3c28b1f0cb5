"""Targeted annotation: annotators label exactly the unlabelled texts a training point needs.

`targeted_candidates` picks, from an unlabelled pool, the texts nearest each point's members by
sentence embedding (each text goes to the point it is nearest; texts that equal or nearly repeat
an example already in the training data are left out, so they cannot leak). The model labels them
(`run_variants`, which needs no gold), `push_targeted` sends them to Argilla with the model's
answer as the suggestion (the correction layout of `workbench.annotation.push`), annotators fix
the answers, and `targeted_rows` turns the pulled corrections into rows for `add_examples`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.annotation import Client
from workbench.annotation.push import PushResult, push_predictions
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.points.encoder import Encoder, cached
from workbench.trainingdata.examples import REGRESSION, consensus_corrections
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE, normalise_text, similarity

CANDIDATE_COLUMNS = ["point_id", "example_id", "text", "distance"]


def targeted_candidates(examples: pd.DataFrame, unlabelled: pd.DataFrame, *, per_point: int = 4,
                        encoder: Encoder | None = None, threshold: float = NEAR_DUPLICATE_COSINE) -> pd.DataFrame:
    """Up to `per_point` texts of `unlabelled` (``example_id``, ``text``) per point of `examples`
    (the training-data frame), nearest its members first. Columns `CANDIDATE_COLUMNS`:
    ``distance`` is the cosine distance to the point's nearest member."""
    require_columns(examples, ["point_id", "source", "example_id", "text"], "examples", "pass TrainingData.examples")
    require_columns(unlabelled, ["example_id", "text"], "unlabelled", "pass texts to label: example_id and text")
    encoder = cached(encoder)
    known = set(examples["example_id"].astype(str))
    pool = unlabelled[~unlabelled["example_id"].astype(str).isin(known)].drop_duplicates("example_id")
    pool = pool.reset_index(drop=True)
    points = [p for p in dict.fromkeys(examples["point_id"]) if p != REGRESSION]
    if pool.empty or not points:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    texts = list(pool["text"].astype(str))
    existing = list(examples["text"].astype(str))
    normal = {normalise_text(text) for text in existing}
    repeats = similarity(encoder, texts, existing).max(axis=1) >= threshold
    usable = np.array([not repeats[i] and normalise_text(text) not in normal for i, text in enumerate(texts)])
    closeness = np.full((len(points), len(texts)), -np.inf)
    for row, point in enumerate(points):
        members = examples[(examples["point_id"] == point) & examples["source"].isin(["members", "corrections"])]
        if not members.empty:
            closeness[row] = similarity(encoder, list(members["text"].astype(str)), texts).max(axis=0)
    nearest_point = closeness.argmax(axis=0)
    rows = []
    for row, point in enumerate(points):
        mine = [j for j in np.argsort(-closeness[row], kind="stable")
                if usable[j] and nearest_point[j] == row and np.isfinite(closeness[row, j])][:per_point]
        rows += [{"point_id": point, "example_id": str(pool.at[j, "example_id"]), "text": texts[j],
                  "distance": round(1 - float(closeness[row, j]), 4)} for j in mine]
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def push_targeted(client: Client, task: Task, candidates: pd.DataFrame, predictions: pd.DataFrame, *,
                  variant: str, name: str, **options: Any) -> PushResult:
    """Push `candidates` to Argilla dataset `name` with `variant`'s answers in `predictions`
    (`run_variants` on them) as suggestions, for annotators to correct. `options`:
    `push_predictions`' workspace, batch_size, min_submitted, progress."""
    require_columns(candidates, CANDIDATE_COLUMNS, "candidates", "pass targeted_candidates' frame")
    texts = candidates.drop_duplicates("example_id")[["example_id", "text"]]
    return push_predictions(client, task, predictions, texts, variant=variant, name=name, order=None, **options)


def targeted_rows(candidates: pd.DataFrame, corrections: pd.DataFrame, examples: pd.DataFrame, task: Task, *,
                  min_test: int = 2) -> pd.DataFrame:
    """Rows for `add_examples` from the annotators' answers (`pull_corrections` on the targeted
    dataset; their consensus, as for corrections): ``point_id``, ``split`` (test while the point
    has fewer than `min_test` test cases, then train), ``source`` "targeted", ``example_id``,
    ``text``, ``target``, ``synthetic`` False. Candidates nobody answered are left out."""
    require_columns(candidates, CANDIDATE_COLUMNS, "candidates", "pass targeted_candidates' frame")
    answers = consensus_corrections(corrections, task)
    tests = examples[examples["split"] == "test"].groupby("point_id").size().to_dict()
    rows = []
    for candidate in candidates.to_dict("records"):
        if candidate["example_id"] not in answers:
            continue
        point = candidate["point_id"]
        split = "test" if tests.get(point, 0) < min_test else "train"
        tests[point] = tests.get(point, 0) + (split == "test")
        rows.append({"point_id": point, "split": split, "source": "targeted", "example_id": candidate["example_id"],
                     "text": candidate["text"], "target": answers[candidate["example_id"]], "synthetic": False})
    return pd.DataFrame(rows, columns=["point_id", "split", "source", "example_id", "text", "target", "synthetic"])
