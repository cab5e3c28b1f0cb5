"""Suspected label errors: examples where the gold answer, not the model, is probably wrong.

When every prompt variant agrees on one answer that is not the gold one, or an annotator changed
the gold answer, the example is more likely mislabelled than a training point: fine-tuning on it
would teach the wrong answer. Such examples are ranked by a score in the spirit of cleanlab's
label quality (in [0, 1], lower is more likely a label error) and listed apart.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task

if TYPE_CHECKING:
    from workbench.annotation import Client
    from workbench.annotation.push import PushResult

LABEL_ISSUE_COLUMNS = [
    "example_id", "text", "gold", "consensus", "consensus_variant", "variants_against", "variants_total",
    "label_quality", "annotator_changed", "annotator_kept_gold", "is_label_issue",
]


def find_label_issues(
    predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, corrections: pd.DataFrame | None = None,
    *, min_variants: int = 3,
) -> pd.DataFrame:
    """One row per example some variant got wrong, most suspicious first.

    Columns: ``example_id``, ``text``, ``gold`` and ``consensus`` (in words: `TaskKind.describe`;
    the consensus is the most common usable answer that differs from gold), ``variants_against``
    (variants whose most common answer is that consensus), ``consensus_variant`` (the first of them,
    whose answer a verdict push suggests), ``variants_total`` (variants with a usable answer),
    ``label_quality`` (cleanlab's self-confidence: the share of all usable answers, over variants
    and repeats, that equal gold; 0 when none does; lower is more suspicious),
    ``annotator_changed`` (a submitted correction in `corrections` differs from gold),
    ``annotator_kept_gold`` (every submitted correction equals gold: the annotators' verdict is that
    the gold stands) and ``is_label_issue``: an annotator changed the gold answer, or, unless the
    annotators kept it, every variant with a usable answer (at least `min_variants` of them) agrees
    on the consensus. Three variants by default: two prompts of one weak model agreeing on a wrong
    answer is more often a persistent mistake (a training point) than a wrong gold label.
    `corrections` may come from any dataset of this task: the correction dataset of `push_errors`
    or the verdict dataset of `push_label_issues`.
    """
    require_columns(predictions, ["variant", "example_id", "prediction"], "predictions")
    kind = task.kind
    truth = dataset.set_index("example_id")
    changed, kept = _verdicts(corrections, truth[kind.target_column], task)
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
        agreeing = next((variant for variant, key in majority.items() if key == consensus_key), None)
        text = truth.at[example_id, "text"]
        # cleanlab's self-confidence: the share of answers that equal gold. (One minus the top wrong
        # answer's share scored gold at 50% and two wrong answers at 50/50 alike.)
        quality = (len(usable) - len(wrong)) / len(usable) if usable else 1.0
        unanimous = (consensus_key is not None and len(majority) >= min_variants and against == len(majority)
                     and example_id not in kept)
        rows.append({
            "example_id": example_id, "text": text, "gold": kind.describe(text, gold),
            "consensus": None if consensus is None else kind.describe(text, consensus),
            "consensus_variant": agreeing, "variants_against": against, "variants_total": len(majority),
            "label_quality": float(quality),
            "annotator_changed": example_id in changed, "annotator_kept_gold": example_id in kept,
            "is_label_issue": bool(unanimous or example_id in changed),
        })
    frame = pd.DataFrame(rows, columns=LABEL_ISSUE_COLUMNS)
    return frame.sort_values(["is_label_issue", "label_quality"], ascending=[False, True], kind="stable").reset_index(
        drop=True)


def _verdicts(corrections: pd.DataFrame | None, gold: pd.Series, task: Task) -> tuple[set[str], set[str]]:
    """(examples whose gold some annotator changed, examples whose gold every annotator kept)."""
    if corrections is None or corrections.empty:
        return set(), set()
    require_columns(corrections, ["example_id", "status", task.kind.target_column], "corrections",
                    "pass the frame pull_corrections returns for this task")
    submitted = corrections[corrections["status"] == "submitted"]
    same: dict[str, list[bool]] = {}
    for example_id, answer in zip(submitted["example_id"], submitted[task.kind.target_column]):
        if example_id in gold.index and not is_missing(answer):
            agrees = task.kind.answer_key(answer) == task.kind.answer_key(gold[example_id])
            same.setdefault(str(example_id), []).append(agrees)
    return ({e for e, votes in same.items() if not all(votes)}, {e for e, votes in same.items() if all(votes)})


def push_label_issues(client: Client, task: Task, issues: pd.DataFrame, predictions: pd.DataFrame,
                      dataset: pd.DataFrame, *, name: str, **options: Any) -> PushResult:
    """Push the suspected label errors of `issues` (rows with ``is_label_issue``) to Argilla
    dataset `name` for a verdict: the task's own correction layout, the consensus variant's
    answer suggested, the gold answer not shown (a blind verdict), most suspicious first. Pull
    the verdicts with `pull_corrections(client, task, name)` and pass them to
    `find_label_issues(corrections=...)`: an annotator's different answer confirms the label
    error, the gold answer kept clears it. `options`: `push_predictions`' workspace, batch_size,
    min_submitted, progress. Raises ValueError when no example is flagged."""
    from workbench.annotation.push import push_summaries
    from workbench.annotation.records import prioritise, summarise_examples

    flagged = issues[issues["is_label_issue"]].reset_index(drop=True)
    if flagged.empty:
        raise InputError("no example is a suspected label error: nothing to push for a verdict")
    variants = list(dict.fromkeys(predictions["variant"]))
    chosen = [variant if isinstance(variant, str) and variant else variants[0]
              for variant in flagged["consensus_variant"]]
    parts = [summarise_examples(task, predictions, dataset, variant=variant, order=None,
                                example_ids=list(flagged.loc[[c == variant for c in chosen], "example_id"]))
             for variant in dict.fromkeys(chosen)]
    rank = {example_id: position for position, example_id in enumerate(flagged["example_id"])}
    summaries = pd.concat(parts, ignore_index=True)
    summaries = prioritise(summaries.iloc[summaries["example_id"].map(rank).argsort(kind="stable")], None)
    return push_summaries(client, task, summaries, name=name, **options)
