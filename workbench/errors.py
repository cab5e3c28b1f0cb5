"""Find the errors: one row per mistake, ready to read, chart, push to annotators or cluster."""

from __future__ import annotations

import pandas as pd

from workbench.tasks import Task

ERROR_COLUMNS = [
    "example_id", "variant", "repeat", "error_type", "gold", "predicted", "text", "raw_response", "parse_error",
]

# Classification has two kinds of error; NER adds the span-level kinds of `workbench.ner_metrics`.
CLASSIFICATION_ERROR_TYPES = ("wrong_label", "parse_failure")


def find_errors(predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Every error in a run, one row each.

    Columns: ``example_id``, ``variant``, ``repeat``, ``error_type``, ``gold``, ``predicted``,
    ``text``, ``raw_response``, ``parse_error`` (plus ``start``, ``end``, ``label`` for NER).

    Classification: ``wrong_label`` (a readable answer naming another label; gold and predicted
    are labels) or ``parse_failure`` (no usable answer: unparseable, or the call failed; predicted
    is None). NER: ``false_positive``, ``false_negative``, ``wrong_label`` (same span, other
    type), ``boundary`` (overlapping span), ``hallucination`` (entity text not in the input) and
    ``parse_failure``; gold and predicted are span dicts (see `workbench.ner_metrics.ner_errors`).
    """
    texts = dataset.set_index("example_id")["text"]
    keyed = predictions.set_index(["variant", "example_id", "repeat"])
    if task.kind == "classification":
        gold = predictions["example_id"].map(dataset.set_index("example_id")["label"])
        unusable = predictions["prediction"].isna()
        wrong = ~unusable & (predictions["prediction"] != gold)
        selected = predictions[unusable | wrong]
        errors = pd.DataFrame({
            "example_id": selected["example_id"],
            "variant": selected["variant"],
            "repeat": selected["repeat"],
            "error_type": ["parse_failure" if flag else "wrong_label" for flag in unusable[unusable | wrong]],
            "gold": gold[unusable | wrong],
            "predicted": selected["prediction"].where(selected["prediction"].notna(), None),
        })
    else:
        from workbench.ner_metrics import ner_errors

        errors = ner_errors(predictions, dataset)
    if errors.empty:
        extra = [] if task.kind == "classification" else ["start", "end", "label"]
        return pd.DataFrame(columns=[*ERROR_COLUMNS, *extra])
    index = pd.MultiIndex.from_frame(errors[["variant", "example_id", "repeat"]])
    why = keyed["parse_error"].fillna(keyed["request_error"]).reindex(index)
    errors = errors.assign(
        text=errors["example_id"].map(texts).to_numpy(),
        raw_response=keyed["raw_response"].reindex(index).to_numpy(),
        parse_error=why.astype(object).where(why.notna(), None).to_numpy(),
    )
    ordered = [*ERROR_COLUMNS, *[column for column in errors.columns if column not in ERROR_COLUMNS]]
    return errors[ordered].reset_index(drop=True)
