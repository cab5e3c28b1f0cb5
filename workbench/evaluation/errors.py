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


def worst_errors(
    errors: pd.DataFrame, predictions: pd.DataFrame, dataset: pd.DataFrame, task: Task, max_errors: int = 30
) -> pd.DataFrame:
    """The prediction rows with errors that matter most, at most `max_errors` of them.

    `errors` is the output of `find_errors`. Examples that most variants get wrong come first
    (then those with more error rows); within an example, variants in run order, then repeats. One
    row per wrong prediction row, with columns ``example_id``, ``variant``, ``repeat``,
    ``variants_wrong``, ``variants_total``, ``error_types`` (comma-separated), ``text``, ``gold``
    (the whole gold target, from the kind's `TaskKind.target_column`: a label, a list of span
    dicts, a list of labels), ``predicted`` (the whole prediction; None when unusable),
    ``hallucinations`` (list), ``raw_response`` and ``parse_error`` (the parse or request error,
    or None).
    """
    columns = ["example_id", "variant", "repeat", "variants_wrong", "variants_total", "error_types", "text",
               "gold", "predicted", "hallucinations", "raw_response", "parse_error"]
    if errors.empty or max_errors <= 0:
        return pd.DataFrame(columns=columns)
    variants = list(dict.fromkeys(predictions["variant"]))
    per_example = errors.groupby("example_id", sort=False).agg(
        variants_wrong=("variant", "nunique"), error_rows=("variant", "size"))
    rows = errors.groupby(["example_id", "variant", "repeat"], sort=False)["error_type"].agg(
        lambda kinds: ", ".join(dict.fromkeys(kinds))).rename("error_types").reset_index()
    rows = rows.join(per_example, on="example_id")
    rows["_variant"] = rows["variant"].map({variant: index for index, variant in enumerate(variants)})
    first_seen = {example_id: index for index, example_id in enumerate(dict.fromkeys(predictions["example_id"]))}
    rows["_example"] = rows["example_id"].map(first_seen)
    rows = rows.sort_values(["variants_wrong", "error_rows", "_example", "_variant", "repeat"],
                            ascending=[False, False, True, True, True], kind="stable")
    rows = rows.head(max_errors).reset_index(drop=True)  # positional from here on: columns below are aligned by index

    keyed = predictions.set_index(["variant", "example_id", "repeat"])
    index = pd.MultiIndex.from_frame(rows[["variant", "example_id", "repeat"]])
    truth = dataset.set_index("example_id")
    picked = keyed.reindex(index)
    parse_error = picked["parse_error"].where(picked["parse_error"].notna(), picked["request_error"])
    result = rows.assign(
        variants_total=len(variants),
        text=rows["example_id"].map(truth["text"]).to_numpy(),
        gold=rows["example_id"].map(truth[task.kind.target_column]).to_numpy(),
        predicted=_objects([value if _present(value) else None for value in picked["prediction"]]),
        hallucinations=_objects([value if isinstance(value, list) else [] for value in picked["hallucinations"]]),
        raw_response=_objects([value if _present(value) else None for value in picked["raw_response"]]),
        parse_error=_objects([value if _present(value) else None for value in parse_error]),
    )
    return result[columns].reset_index(drop=True)


def _objects(values: list[object]) -> pd.Series:
    """Values kept as they are: object dtype, so None stays None (a str dtype would make it NaN)."""
    return pd.Series(values, dtype=object)


def _present(value: object) -> bool:
    """False for None and NaN (how pandas fills a missing cell), True for anything else."""
    if isinstance(value, (list, dict)):
        return True
    return not pd.isna(value)
