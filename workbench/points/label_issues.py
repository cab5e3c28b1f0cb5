"""Suspected label errors: examples where the gold answer, not the model, is probably wrong.

When every prompt variant agrees on one answer that is not the gold one, or an annotator changed
the gold answer, the example is more likely mislabelled than a training point: fine-tuning on it
would teach the wrong answer. Such examples are ranked by a score in the spirit of cleanlab's
label quality (in [0, 1], lower is more likely a label error) and listed apart.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.frames import require_columns
from workbench.core.task import Task

LABEL_ISSUE_COLUMNS = [
    "example_id", "text", "gold", "consensus", "variants_against", "variants_total", "label_quality",
    "annotator_changed", "is_label_issue",
]


def find_label_issues(
    predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, corrections: pd.DataFrame | None = None,
    *, min_variants: int = 3,
) -> pd.DataFrame:
    """One row per example some variant got wrong, most suspicious first.

    Columns: ``example_id``, ``text``, ``gold`` and ``consensus`` (in words: `TaskKind.describe`;
    the consensus is the most common usable answer that differs from gold), ``variants_against``
    (variants whose most common answer is that consensus), ``variants_total`` (variants with a usable
    answer), ``label_quality`` (1 minus the share of all usable answers, over variants and repeats,
    that equal the consensus: 0 when everything agrees against gold; lower is more suspicious),
    ``annotator_changed`` (a submitted correction in `corrections` differs from gold) and
    ``is_label_issue``: every variant with a usable answer (at least `min_variants` of them) agrees
    on the consensus, or an annotator changed the gold answer. Three variants by default: two
    prompts of one weak model agreeing on a wrong answer is more often a persistent mistake (a
    training point) than a wrong gold label.
    """
    require_columns(predictions, ["variant", "example_id", "prediction"], "predictions")
    kind = task.kind
    truth = dataset.set_index("example_id")
    changed = _changed_by_annotators(corrections, truth[kind.target_column], task)
    rows = []
    for example_id, group in predictions.groupby("example_id", sort=False):
        gold = truth.at[example_id, kind.target_column]
        gold_key = kind.answer_key(gold)
        usable = [(variant, p) for variant, p in zip(group["variant"], group["prediction"]) if not is_missing(p)]
        wrong = [(variant, p) for variant, p in usable if kind.answer_key(p) != gold_key]
        if not wrong and example_id not in changed:
            continue
        counts = Counter(kind.answer_key(p) for _, p in wrong)
        consensus_key = counts.most_common(1)[0][0] if counts else None
        consensus = next((p for _, p in wrong if kind.answer_key(p) == consensus_key), None)
        majority: dict[str, str] = {}
        for variant, answers in group.groupby("variant", sort=False)["prediction"]:
            keys = [kind.answer_key(p) for p in answers if not is_missing(p)]
            if keys:
                majority[variant] = Counter(keys).most_common(1)[0][0]
        against = sum(key == consensus_key for key in majority.values())
        text = truth.at[example_id, "text"]
        quality = 1 - (counts.get(consensus_key, 0) / len(usable)) if usable else 1.0
        unanimous = consensus_key is not None and len(majority) >= min_variants and against == len(majority)
        rows.append({
            "example_id": example_id, "text": text, "gold": kind.describe(text, gold),
            "consensus": None if consensus is None else kind.describe(text, consensus),
            "variants_against": against, "variants_total": len(majority), "label_quality": float(quality),
            "annotator_changed": example_id in changed, "is_label_issue": bool(unanimous or example_id in changed),
        })
    frame = pd.DataFrame(rows, columns=LABEL_ISSUE_COLUMNS)
    return frame.sort_values(["is_label_issue", "label_quality"], ascending=[False, True], kind="stable").reset_index(
        drop=True)


def _changed_by_annotators(corrections: pd.DataFrame | None, gold: pd.Series, task: Task) -> set[str]:
    if corrections is None or corrections.empty:
        return set()
    require_columns(corrections, ["example_id", "status", task.kind.target_column], "corrections",
                    "pass the frame pull_corrections returns for this task")
    submitted = corrections[corrections["status"] == "submitted"]
    return {
        str(example_id) for example_id, answer in zip(submitted["example_id"], submitted[task.kind.target_column])
        if example_id in gold.index and not is_missing(answer)
        and task.kind.answer_key(answer) != task.kind.answer_key(gold[example_id])
    }
