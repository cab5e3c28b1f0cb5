"""Find the errors: one row per mistake, ready to read, chart, push to annotators or cluster."""

from __future__ import annotations

import pandas as pd

from workbench.core.task import Task

ERROR_COLUMNS = [
    "example_id", "variant", "repeat", "error_type", "gold", "predicted", "text", "raw_response", "parse_error",
]


def find_errors(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Every error in a run, one row each.

    Columns: ``example_id``, ``variant``, ``repeat``, ``error_type``, ``gold``, ``predicted``,
    ``text``, ``raw_response``, ``parse_error``, then the kind's `TaskKind.error_columns`.

    The task's kind types the errors (`TaskKind.errors`). Classification: ``wrong_label`` (a
    readable answer naming another label; gold and predicted are labels) or ``parse_failure`` (no
    usable answer: unparseable, or the call failed; predicted is None). NER: ``false_positive``,
    ``false_negative``, ``wrong_label`` (same span, other type), ``boundary`` (overlapping span),
    ``hallucination`` (entity text not in the input) and ``parse_failure``; gold and predicted are
    span dicts, plus ``start``, ``end``, ``label`` (`workbench.core.kinds.ner_scoring.ner_errors`).
    Multi-label: ``false_negative`` (a gold label missed), ``false_positive`` (a label given that
    gold lacks) and ``parse_failure``; gold and predicted are label lists, plus ``label``.
    """
    texts = dataset.set_index("example_id")["text"]
    keyed = predictions.set_index(["variant", "example_id", "repeat"])
    errors = task.kind.errors(predictions, dataset, task)
    if errors.empty:
        return pd.DataFrame(columns=[*ERROR_COLUMNS, *task.kind.error_columns])
    index = pd.MultiIndex.from_frame(errors[["variant", "example_id", "repeat"]])
    why = keyed["parse_error"].fillna(keyed["request_error"]).reindex(index)
    errors = errors.assign(
        text=errors["example_id"].map(texts).to_numpy(),
        raw_response=keyed["raw_response"].reindex(index).to_numpy(),
        parse_error=why.astype(object).where(why.notna(), None).to_numpy(),
    )
    ordered = [*ERROR_COLUMNS, *[column for column in errors.columns if column not in ERROR_COLUMNS]]
    return errors[ordered].reset_index(drop=True)
