"""Entity-level NER scores and error listings, computed over flat arrays of spans.

Both public scorers take the predictions DataFrame of `workbench.prompting.runner.run_variants` and the gold
dataset of `workbench.core.data.load_dataset`. Every span of every row is flattened into numpy arrays
``(row, start, end, label)``; gold spans are replicated onto the prediction rows of their example;
overlaps are found with sorted searches over one global coordinate (``row * width + offset``), so
the cost grows with the number of spans, not with Python work per document.

Spans are character offsets with an exclusive end (``text[start:end]``). Two spans *overlap* when
they share at least one character (``a.start < b.end and b.start < a.end``).

Every prediction row counts. A row whose ``prediction`` is None or NaN (the answer could not be
parsed, or the request failed) predicts no entities, so all of its gold entities are missed.
Entities listed in ``hallucinations`` (named by the model but absent from the text) have no
offsets; `score_ner` does not count them, `ner_errors` lists them.

Within one prediction row, gold spans must not overlap one another, and predicted spans must not
overlap one another (`workbench.core.spans.align_entities` guarantees the latter for parsed answers).
Inputs that break this are rejected with an error naming the row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.errors import InputError
from workbench.core.frames import require_columns

MODES = ("strict", "boundary", "type")
OVERALL = "ALL"
SCORE_COLUMNS = [
    "variant", "label", "mode", "tp", "fp", "fn", "precision", "recall", "f1", "support", "macro_f1",
]
ERROR_TYPES = ("parse_failure", "false_positive", "false_negative", "wrong_label", "boundary", "hallucination")
ERROR_COLUMNS = [
    "example_id", "variant", "repeat", "error_type", "gold", "predicted", "start", "end", "label", "detail",
]

_MAX_PROBLEMS_SHOWN = 5


def score_ner(
    predictions: pd.DataFrame,
    gold: pd.DataFrame,
    labels: Sequence[str] | None = None,
    *,
    modes: Sequence[str] = MODES,
) -> pd.DataFrame:
    """Entity-level precision, recall and F1 per variant, label and match mode; higher is better.

    `predictions` needs columns ``variant``, ``example_id`` and ``prediction`` (a list of
    ``{"start", "end", "label", ...}`` spans, or None/NaN for an unusable answer); all repeats of a
    variant are pooled. `gold` needs ``example_id`` (unique) and ``spans``; only the examples that
    prediction rows name are scored. `labels` fixes the
    order of the per-label rows (usually ``task.label_names``); labels found in the data but not
    listed get rows after them, in sorted order. Without `labels`, all labels found, sorted.

    Match modes. Each one pairs predicted and gold spans of the same prediction row one-to-one:

    - ``strict``: same start, same end and same label. nervaluate's ``strict`` and seqeval's
      ``mode="strict"`` (IOB2) on token-aligned spans give the same figures, overall and per label.
    - ``boundary``: same start and same end, any label. The ``ALL`` row equals nervaluate's
      overall ``exact``. A match counts under the gold span's label (tp), an unmatched prediction
      under its own label (fp). nervaluate's per-type ``exact`` differs: it drops the other types
      before matching, which makes it equal to its per-type ``strict``.
    - ``type``: the spans overlap (share a character) and have the same label. Where one span
      overlaps several others of that label, the pairs form a maximum one-to-one matching, so a
      prediction covering two gold entities is one tp and one fn, and two predictions inside one
      gold entity are one tp and one fp. Counts do not depend on the order of spans. nervaluate's
      ``ent_type`` (its ``type`` schema) agrees whenever no span overlaps two spans of the other
      side; otherwise it can count fewer matches, because it pairs greedily in list order (closest
      boundaries first) and, in its overall figure, lets a wrong-label overlap use up the gold span.
      nervaluate's ``partial`` has no counterpart here.

    Counting: ``tp`` matched pairs; ``fp`` predicted spans left unmatched; ``fn`` gold spans left
    unmatched; ``support`` gold spans (once per prediction row, so examples x repeats). Per-label
    rows sum to the ``ALL`` row (micro average). ``precision = tp / (tp + fp)``,
    ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``; a zero denominator gives 0.0,
    except that a row with nothing to find and nothing predicted (``tp + fp + fn == 0``) scores
    1.0 on all three, as `workbench.evaluation.significance.metric_from_totals` does for ``micro_f1``. ``macro_f1`` (on ``ALL`` rows
    only, NaN elsewhere) is the unweighted mean F1 of the labels with ``tp + fp + fn > 0``, the
    labels seqeval's macro average uses; 1.0 when there are none.

    Returns one row per (variant, mode, label) with columns ``variant``, ``label`` (``"ALL"`` first,
    then each label), ``mode``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``,
    ``support``, ``macro_f1``; variants in order of first appearance, modes in the order given.
    """
    modes = _check_modes(modes)
    matched = _match(predictions, gold, labels, require_repeat=False)
    vocab = matched.vocab
    n_labels = len(vocab)
    variants, variant_codes = matched.variants, matched.variant_codes
    n_variants = len(variants)
    if n_variants == 0:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    pred, gold_spans = matched.pred, matched.gold
    pred_variant = variant_codes[pred.row]
    gold_variant = variant_codes[gold_spans.row]

    def by_variant_label(variant: np.ndarray, label: np.ndarray) -> np.ndarray:
        flat = np.bincount(variant * n_labels + label, minlength=n_variants * n_labels)
        return flat.reshape(n_variants, n_labels)

    predicted_total = by_variant_label(pred_variant, pred.label)
    gold_total = by_variant_label(gold_variant, gold_spans.label)

    frames = []
    for mode in modes:
        pred_index, gold_index = _mode_pairs(matched, mode)
        # A match counts under the gold label; for strict and type mode the labels are the same.
        tp = by_variant_label(gold_variant[gold_index], gold_spans.label[gold_index])
        fp = predicted_total - by_variant_label(pred_variant[pred_index], pred.label[pred_index])
        fn = gold_total - tp
        frames.append(_score_frame(variants, vocab, mode, tp, fp, fn, gold_total))
    # Frames are mode-major; a stable sort on the variant keeps modes, then labels, in order.
    scores = pd.concat(frames, ignore_index=True)
    scores["_variant"] = np.tile(np.repeat(np.arange(n_variants), n_labels + 1), len(modes))
    scores = scores.sort_values("_variant", kind="stable").drop(columns="_variant")
    return scores.reset_index(drop=True)[SCORE_COLUMNS]


def ner_errors(predictions: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """One row per NER error, for reading and clustering mistakes.

    `predictions` needs ``variant``, ``example_id``, ``repeat`` and ``prediction``; the optional
    ``parse_error``, ``request_error`` and ``hallucinations`` columns are used when present.
    `gold` needs ``example_id`` and ``spans``. Error types:

    - ``parse_failure``: one row per prediction row whose ``prediction`` is None/NaN. Its gold
      entities are *not* also listed as ``false_negative`` (the cause is the failure; `score_ner`
      still counts them as fn). ``detail`` holds the ``parse_error`` or ``request_error``.
    - ``false_positive``: a predicted span that overlaps no gold span.
    - ``false_negative``: a gold span that no predicted span overlaps.
    - ``wrong_label``: a predicted span with exactly the gold span's offsets but another label.
    - ``boundary``: a predicted span that overlaps a gold span without the same offsets, whatever
      the two labels are (compare ``gold["label"]`` with ``predicted["label"]`` to separate them).
    - ``hallucination``: one row per entry of ``hallucinations`` (an entity named by the model
      that is not in the text); no offsets.

    Each overlapping (predicted, gold) pair that is not an exact match (same offsets and label)
    is one error row. So a predicted span overlapping two gold spans gives two ``boundary`` rows,
    one per gold span, and two predicted spans inside one gold span give two ``boundary`` rows;
    none of these spans is also listed as a false positive or negative. These rows describe
    errors; they are not `score_ner`'s counts: in strict mode one predicted span over two gold
    spans is 1 fp + 2 fn, in type mode 1 tp + 1 fn when a gold span has its label.

    Returns columns ``example_id``, ``variant``, ``repeat``, ``error_type``, ``gold`` (the gold
    span dict, or None), ``predicted`` (the predicted span or hallucinated entity dict, or None),
    ``start``, ``end`` (nullable ints) and ``label``: the gold span's where there is one, otherwise
    the predicted one's (None for ``parse_failure``, no offsets for ``hallucination``), and
    ``detail`` (the parse or request error for ``parse_failure``, else None). Rows follow the
    prediction rows' order, then text position; hallucinations come last within their row.
    """
    matched = _match(predictions, gold, None, require_repeat=True)
    pred, gold_spans = matched.pred, matched.gold
    pair_pred, pair_gold = matched.pair_pred, matched.pair_gold

    exact = (pred.start[pair_pred] == gold_spans.start[pair_gold]) & (pred.end[pair_pred] == gold_spans.end[pair_gold])
    same_label = pred.label[pair_pred] == gold_spans.label[pair_gold]
    wrong_label = exact & ~same_label
    boundary = ~exact
    lonely_pred = np.bincount(pair_pred, minlength=len(pred.row)) == 0
    lonely_gold = (np.bincount(pair_gold, minlength=len(gold_spans.row)) == 0) & matched.usable[gold_spans.row]

    pieces: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # type, row, gold, pred, position
    for kind, mask in (("wrong_label", wrong_label), ("boundary", boundary)):
        g, p = pair_gold[mask], pair_pred[mask]
        position = np.minimum(gold_spans.start[g], pred.start[p])
        pieces.append((kind, pred.row[p], g, p, position))
    p = np.flatnonzero(lonely_pred)
    pieces.append(("false_positive", pred.row[p], np.full(len(p), -1), p, pred.start[p]))
    g = np.flatnonzero(lonely_gold)
    pieces.append(("false_negative", gold_spans.row[g], g, np.full(len(g), -1), gold_spans.start[g]))
    failed = np.flatnonzero(~matched.usable)
    nothing = np.full(len(failed), -1)
    pieces.append(("parse_failure", failed, nothing, nothing, nothing))

    kinds = np.concatenate([np.full(len(piece[1]), ERROR_TYPES.index(piece[0])) for piece in pieces])
    rows = np.concatenate([piece[1] for piece in pieces]).astype(np.int64)
    gold_index = np.concatenate([piece[2] for piece in pieces]).astype(np.int64)
    pred_index = np.concatenate([piece[3] for piece in pieces]).astype(np.int64)
    position = np.concatenate([piece[4] for piece in pieces]).astype(np.float64)

    hallucinated_row, hallucinated = _flatten_hallucinations(predictions)
    order = np.lexsort((kinds, position, rows))
    span_part = _error_rows(matched, rows[order], kinds[order], gold_index[order], pred_index[order], predictions)
    hallucination_part = _hallucination_rows(matched, hallucinated_row, hallucinated)
    errors = pd.concat([span_part, hallucination_part], ignore_index=True)
    # Hallucinations go last within their row; a stable sort on the row keeps everything else in place.
    errors["_row"] = np.concatenate([rows[order], hallucinated_row])
    errors = errors.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)
    errors["start"] = errors["start"].astype("Int64")
    errors["end"] = errors["end"].astype("Int64")
    return errors[ERROR_COLUMNS]


# --- flattening and matching -------------------------------------------------------------------


@dataclass(frozen=True)
class _Spans:
    """Spans flattened over rows, sorted by (row, start). `source` indexes `objects` (the dicts)."""

    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    source: np.ndarray
    objects: list[Any]


@dataclass(frozen=True)
class _Matched:
    variants: list[Any]
    variant_codes: np.ndarray  # per prediction row
    usable: np.ndarray  # per prediction row: the prediction is a list of spans
    vocab: list[str]
    pred: _Spans
    gold: _Spans  # gold spans replicated onto prediction rows
    pair_pred: np.ndarray  # overlapping (predicted, gold) pairs, sorted by predicted then gold
    pair_gold: np.ndarray
    example_ids: np.ndarray
    repeats: np.ndarray | None


def _check_modes(modes: Sequence[str]) -> list[str]:
    if isinstance(modes, str):
        modes = [modes]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise InputError(f"modes must be a non-empty selection of {list(MODES)}, got {list(modes)}")
    return list(dict.fromkeys(modes))


def _match(
    predictions: pd.DataFrame, gold: pd.DataFrame, labels: Sequence[str] | None, *, require_repeat: bool
) -> _Matched:
    needed = ["variant", "example_id", "prediction"] + (["repeat"] if require_repeat else [])
    require_columns(predictions, needed, "predictions")
    require_columns(gold, ["example_id", "spans"], "gold")
    if labels is not None:
        if isinstance(labels, str):
            raise InputError(f"labels must be a sequence of label names, got the string {labels!r}")
        if OVERALL in labels:
            raise InputError(f"{OVERALL!r} names the overall row and cannot be a label")

    # Plain dicts and lists beat pandas indexes here (pandas 3 turns str columns into Arrow strings).
    gold_ids = list(map(str, gold["example_id"].tolist()))
    position = {example_id: index for index, example_id in enumerate(gold_ids)}
    if len(position) != len(gold_ids):
        repeated = pd.Series(gold_ids)[pd.Series(gold_ids).duplicated()].unique().tolist()[:_MAX_PROBLEMS_SHOWN]
        raise InputError(f"gold example_id values must be unique; repeated: {repeated}")
    example_ids = np.asarray(list(map(str, predictions["example_id"].tolist())), dtype=object)
    try:
        example_index = np.fromiter(map(position.__getitem__, example_ids), dtype=np.int64, count=len(example_ids))
    except KeyError:
        example_index = np.asarray([position.get(example_id, -1) for example_id in example_ids], dtype=np.int64)
    if (example_index < 0).any():
        unknown = pd.unique(example_ids[example_index < 0])[:_MAX_PROBLEMS_SHOWN].tolist()
        raise InputError(
            f"{int((example_index < 0).sum())} prediction row(s) name example_id values that are not in gold, "
            f"e.g. {unknown}; score predictions against the dataset they were made from"
        )

    variant_codes, variants = pd.factorize(predictions["variant"], sort=False)
    if (variant_codes < 0).any():
        raise InputError("predictions has rows with no variant name; every row needs one")

    gold_lists, gold_usable = _span_lists(gold["spans"], "gold spans")
    if not gold_usable.all():
        first = gold_ids[np.flatnonzero(~gold_usable)[0]]
        raise InputError(f"gold example {first!r} has no spans list; use [] for a text without entities")
    pred_lists, usable = _span_lists(predictions["prediction"], "predictions")

    gold_flat, gold_example, gold_labels = _flatten(gold_lists)
    pred_flat, pred_row, pred_labels = _flatten(pred_lists)
    vocab = _vocabulary(labels, gold_labels, pred_labels)
    code = {label: index for index, label in enumerate(vocab)}

    def codes(values: list[str]) -> np.ndarray:
        return np.fromiter(map(code.__getitem__, values), dtype=np.int64, count=len(values))

    describe_pred = _row_describer(predictions, example_ids)
    pred = _sorted_spans(pred_flat, pred_row, codes(pred_labels), describe_pred, "predicted")
    gold_by_example = _sorted_spans(
        gold_flat, gold_example, codes(gold_labels), lambda row: f"gold example {gold_ids[row]!r}", "gold"
    )

    # Replicate each example's gold spans onto every prediction row of that example.
    counts = np.bincount(gold_by_example.row, minlength=len(gold_ids))
    offsets = np.cumsum(counts) - counts
    owner, take = _ragged(offsets[example_index], counts[example_index])
    gold_spans = _Spans(
        row=owner,
        start=gold_by_example.start[take],
        end=gold_by_example.end[take],
        label=gold_by_example.label[take],
        source=gold_by_example.source[take],
        objects=gold_by_example.objects,
    )
    pair_pred, pair_gold = _overlaps(pred, gold_spans)
    repeats = predictions["repeat"].to_numpy() if "repeat" in predictions.columns else None
    return _Matched(
        variants=list(variants), variant_codes=np.asarray(variant_codes, dtype=np.int64), usable=usable,
        vocab=vocab, pred=pred, gold=gold_spans, pair_pred=pair_pred, pair_gold=pair_gold,
        example_ids=example_ids, repeats=repeats,
    )


def _span_lists(column: pd.Series, what: str) -> tuple[list[Any], np.ndarray]:
    """Each cell as a list of spans ([] when unusable) and a mask of the usable cells."""
    lists = column.to_numpy(dtype=object).tolist()
    usable = np.fromiter((type(value) is list for value in lists), dtype=bool, count=len(lists))
    for position in np.flatnonzero(~usable).tolist():  # the rare cells that are not plain lists
        value = lists[position]
        if isinstance(value, (list, tuple, np.ndarray)):  # Parquet gives arrays of dicts
            lists[position] = list(value)
            usable[position] = True
        elif value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            lists[position] = []
        else:
            raise InputError(
                f"{what}, row {position}: expected a list of dicts or None, "
                f"got {type(value).__name__} {value!r:.80}"
            )
    return lists, usable


def _flatten(lists: list[Any]) -> tuple[list[Any], np.ndarray, list[Any]]:
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = list(chain.from_iterable(lists))
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), counts)
    return flat, rows, _field(flat, "label")


def _field(flat: list[Any], key: str) -> list[Any]:
    try:
        return list(map(itemgetter(key), flat))
    except (KeyError, TypeError, IndexError):
        bad = next(span for span in flat if not isinstance(span, dict) or key not in span)
        raise InputError(f"each span must be a dict with start, end and label; got {bad!r:.80}") from None


def _vocabulary(labels: Sequence[str] | None, *found: list[Any]) -> list[str]:
    listed = list(dict.fromkeys(labels or []))
    try:
        seen = set().union(*found)
    except TypeError:
        seen = {repr(value) for values in found for value in values}  # unhashable: reported below
    bad = [value for value in seen if not isinstance(value, str)]
    if bad:
        raise InputError(f"span labels must be strings; found {bad[:_MAX_PROBLEMS_SHOWN]}")
    if OVERALL in seen:
        raise InputError(f"{OVERALL!r} names the overall row and cannot be a span label")
    return listed + sorted(seen - set(listed))


def _offsets(flat: list[Any], key: str) -> np.ndarray:
    values = _field(flat, key)
    if set(map(type, values)) <= {int}:
        return np.fromiter(values, dtype=np.int64, count=len(values))
    for value in values:  # slow path: numpy integers and integral floats are fine, anything else is not
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not float(
            value
        ).is_integer():
            raise InputError(f"span '{key}' offsets must be integers, got {value!r}")
    return np.asarray(values, dtype=np.float64).astype(np.int64)


def _sorted_spans(flat: list[Any], rows: np.ndarray, labels: np.ndarray, describe: Any, what: str) -> _Spans:
    start, end = _offsets(flat, "start"), _offsets(flat, "end")
    bad = np.flatnonzero((end <= start) | (start < 0))
    if len(bad):
        shown = "; ".join(f"{describe(rows[i])}: {start[i]}..{end[i]}" for i in bad[:_MAX_PROBLEMS_SHOWN])
        raise InputError(f"{len(bad)} {what} span(s) have end <= start or a negative start: {shown}")
    # Spans usually arrive sorted already; sort only when they are not.
    key = rows * (int(end.max(initial=0)) + 1) + start
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        order = np.argsort(key, kind="stable")
        rows, start, end, labels = rows[order], start[order], end[order], labels[order]
    else:
        order = np.arange(len(key), dtype=np.int64)
    clash = np.flatnonzero((rows[1:] == rows[:-1]) & (start[1:] < end[:-1]))
    if len(clash):
        shown = "; ".join(
            f"{describe(rows[i])}: {start[i]}..{end[i]} ({flat[order[i]]['label']}) and "
            f"{start[i + 1]}..{end[i + 1]} ({flat[order[i + 1]]['label']})"
            for i in clash[:_MAX_PROBLEMS_SHOWN]
        )
        raise InputError(
            f"{len(clash)} pair(s) of {what} spans overlap within a row: {shown}. Scoring needs non-overlapping "
            "spans per row (parse_answer guarantees this for predictions); keep one span of each overlapping pair"
        )
    return _Spans(row=rows, start=start, end=end, label=labels, source=order, objects=flat)


def _row_describer(predictions: pd.DataFrame, example_ids: np.ndarray) -> Any:
    variants = predictions["variant"].to_numpy()
    repeats = predictions["repeat"].to_numpy() if "repeat" in predictions.columns else None

    def describe(row: int) -> str:
        repeat = f", repeat={repeats[row]!r}" if repeats is not None else ""
        return f"predictions row {row} (variant={variants[row]!r}, example_id={example_ids[row]!r}{repeat})"

    return describe


def _ragged(offsets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the indices ``offsets[i] .. offsets[i] + counts[i] - 1``; returns (owner i, index)."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(offsets.astype(np.int64), counts) + within


def _overlaps(pred: _Spans, gold: _Spans) -> tuple[np.ndarray, np.ndarray]:
    """All (predicted, gold) index pairs in the same row that share at least one character.

    Rows are laid end to end on one axis (``row * width + offset``). Gold spans are sorted and do
    not overlap, so their ends are sorted too and the gold spans overlapping a predicted span
    ``[s, e)`` are the contiguous run from the first gold span ending after ``s`` to the last one
    starting before ``e``.
    """
    if len(pred.row) == 0 or len(gold.row) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    width = int(max(pred.end.max(), gold.end.max())) + 1
    gold_start = gold.row * width + gold.start
    gold_end = gold.row * width + gold.end
    first = np.searchsorted(gold_end, pred.row * width + pred.start, side="right")
    stop = np.searchsorted(gold_start, pred.row * width + pred.end, side="left")
    return _ragged(first, np.maximum(stop - first, 0))


def _mode_pairs(matched: _Matched, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matched (predicted, gold) pairs of one mode."""
    pred, gold = matched.pred, matched.gold
    p, g = matched.pair_pred, matched.pair_gold
    same_label = pred.label[p] == gold.label[g]
    if mode in ("strict", "boundary"):
        # Spans on each side are disjoint, so an exact-offset pair is the only pair of both spans.
        keep = (pred.start[p] == gold.start[g]) & (pred.end[p] == gold.end[g])
        if mode == "strict":
            keep &= same_label
        return p[keep], g[keep]
    p, g = p[same_label], g[same_label]
    pred_degree = np.bincount(p, minlength=len(pred.row))
    gold_degree = np.bincount(g, minlength=len(gold.row))
    alone = (pred_degree[p] == 1) & (gold_degree[g] == 1)
    tangled_p, tangled_g = p[~alone], g[~alone]
    # Pairs where a span overlaps several same-label spans are rare; match them greedily. Within a
    # (row, label) the gold spans a prediction overlaps are a contiguous run, and the runs move right
    # as the predictions do, so "each prediction, left to right, takes the leftmost free gold span"
    # is a maximum matching (the classic earliest-deadline argument for intervals and points).
    used_pred: set[int] = set()
    used_gold: set[int] = set()
    keep = np.zeros(len(tangled_p), dtype=bool)
    for position, (left, right) in enumerate(zip(tangled_p.tolist(), tangled_g.tolist())):
        if left not in used_pred and right not in used_gold:
            used_pred.add(left)
            used_gold.add(right)
            keep[position] = True
    return np.concatenate([p[alone], tangled_p[keep]]), np.concatenate([g[alone], tangled_g[keep]])


def _score_frame(
    variants: list[Any], vocab: list[str], mode: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
    support: np.ndarray,
) -> pd.DataFrame:
    """Rows (ALL, then each label) for every variant, from (variant, label) count matrices."""
    stack = [np.column_stack([counts.sum(axis=1), counts]) for counts in (tp, fp, fn, support)]
    tp_all, fp_all, fn_all, support_all = stack
    precision, recall, f1 = _ratios(tp_all, fp_all, fn_all)
    active = (tp + fp + fn) > 0
    label_f1 = f1[:, 1:]
    n_active = active.sum(axis=1)
    macro = np.where(n_active > 0, np.where(active, label_f1, 0.0).sum(axis=1) / np.maximum(n_active, 1), 1.0)
    macro_column = np.full(tp_all.shape, np.nan)
    macro_column[:, 0] = macro
    n_variants, width = tp_all.shape
    return pd.DataFrame({
        "variant": np.repeat(np.asarray(variants, dtype=object), width),
        "label": np.tile(np.asarray([OVERALL, *vocab], dtype=object), n_variants),
        "mode": mode,
        "tp": tp_all.ravel(), "fp": fp_all.ravel(), "fn": fn_all.ravel(),
        "precision": precision.ravel(), "recall": recall.ravel(), "f1": f1.ravel(),
        "support": support_all.ravel(), "macro_f1": macro_column.ravel(),
    })


def _ratios(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp, fp, fn = (values.astype(np.float64) for values in (tp, fp, fn))
    nothing = (tp + fp + fn) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return (np.where(nothing, 1.0, precision), np.where(nothing, 1.0, recall), np.where(nothing, 1.0, f1))


# --- error rows ----------------------------------------------------------------------------------


def _error_rows(
    matched: _Matched, rows: np.ndarray, kinds: np.ndarray, gold_index: np.ndarray, pred_index: np.ndarray,
    predictions: pd.DataFrame,
) -> pd.DataFrame:
    pred, gold = matched.pred, matched.gold
    has_gold, has_pred = gold_index >= 0, pred_index >= 0
    gold_dicts = np.full(len(rows), None, dtype=object)
    pred_dicts = np.full(len(rows), None, dtype=object)
    gold_dicts[has_gold] = _objects([dict(gold.objects[i]) for i in gold.source[gold_index[has_gold]]])
    pred_dicts[has_pred] = _objects([dict(pred.objects[i]) for i in pred.source[pred_index[has_pred]]])

    start = np.full(len(rows), np.nan)
    end = np.full(len(rows), np.nan)
    label_code = np.full(len(rows), -1, dtype=np.int64)
    only_pred = has_pred & ~has_gold
    start[has_gold], end[has_gold] = gold.start[gold_index[has_gold]], gold.end[gold_index[has_gold]]
    label_code[has_gold] = gold.label[gold_index[has_gold]]
    start[only_pred], end[only_pred] = pred.start[pred_index[only_pred]], pred.end[pred_index[only_pred]]
    label_code[only_pred] = pred.label[pred_index[only_pred]]
    vocab = np.asarray([*matched.vocab, None], dtype=object)

    detail = np.full(len(rows), None, dtype=object)
    failed = kinds == ERROR_TYPES.index("parse_failure")
    if failed.any():
        detail[failed] = _failure_detail(predictions, rows[failed])
    return pd.DataFrame({
        "example_id": matched.example_ids[rows],
        "variant": np.asarray(matched.variants, dtype=object)[matched.variant_codes[rows]],
        "repeat": matched.repeats[rows],
        "error_type": np.asarray(ERROR_TYPES, dtype=object)[kinds],
        "gold": gold_dicts,
        "predicted": pred_dicts,
        "start": start,
        "end": end,
        "label": vocab[label_code],
        "detail": detail,
    })


def _failure_detail(predictions: pd.DataFrame, rows: np.ndarray) -> list[Any]:
    def column(name: str) -> np.ndarray:
        if name in predictions.columns:
            return predictions[name].to_numpy(dtype=object)[rows]
        return np.full(len(rows), None, dtype=object)

    details = []
    for parse_error, request_error in zip(column("parse_error"), column("request_error")):
        if isinstance(request_error, str):
            details.append(f"request failed: {request_error}")
        elif isinstance(parse_error, str):
            details.append(f"parse failed: {parse_error}")
        else:
            details.append(None)
    return details


def _flatten_hallucinations(predictions: pd.DataFrame) -> tuple[np.ndarray, list[Any]]:
    if "hallucinations" not in predictions.columns:
        return np.zeros(0, dtype=np.int64), []
    lists, _ = _span_lists(predictions["hallucinations"], "hallucinations")
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    return np.repeat(np.arange(len(lists), dtype=np.int64), counts), list(chain.from_iterable(lists))


def _hallucination_rows(matched: _Matched, rows: np.ndarray, entities: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({
        "example_id": matched.example_ids[rows],
        "variant": np.asarray(matched.variants, dtype=object)[matched.variant_codes[rows]],
        "repeat": matched.repeats[rows],
        "error_type": "hallucination",
        "gold": np.full(len(rows), None, dtype=object),
        "predicted": _objects([dict(entity) if isinstance(entity, dict) else entity for entity in entities]),
        "start": np.full(len(rows), np.nan),
        "end": np.full(len(rows), np.nan),
        "label": _objects([entity.get("label") if isinstance(entity, dict) else None for entity in entities]),
        "detail": np.full(len(rows), None, dtype=object),
    })


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array holding `values` as they are (dicts included)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
