"""Time entity-level NER scoring of 100,000 documents: workbench's NER scorer vs seqeval vs nervaluate.

Data: the gold spans of data/adverse_events/test.jsonl, replicated (each copy its own example_id)
to --documents rows, with token-aligned predictions perturbed from the gold by a seeded generator
(spans dropped, relabelled, stretched by a token or two, spurious spans added; 3% of rows
unparseable, i.e. None). The data is built before any clock starts.

Timed, in the same run and on the same data:
- workbench: `score_ner(predictions, gold, labels, modes=["strict"])` on the predictions
  DataFrame as the runner returns it (flattening the span dicts is inside the timing); also all
  three modes, and `ner_errors`.
- seqeval 1.2: `f1_score` and `classification_report` with ``mode="strict", scheme=IOB2``. The
  conversion of spans to IOB2 tags (`spans_to_iob2`) is timed separately, not included.
- nervaluate: `Evaluator(true, pred, tags, loader="dict").evaluate()` on character spans (end made
  inclusive, as nervaluate expects; that conversion timed separately). nervaluate always computes
  its four schemas overall and per tag; it has no strict-only switch.

Prints wall times (best of --repeats for workbench, one run for the others), ratios, and each
tool's strict micro F1, which must be identical. Not a test: no asserts.

Run: .venv/bin/python benchmarks/ner_scoring.py [--documents 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from workbench.core.data import load_dataset
from workbench.core.kinds.ner_scoring import ner_errors, score_ner
from workbench.core.spans import spans_to_iob2, token_offsets
from workbench.core.task import load_task
from workbench.testing.ner_perturbation import perturb_token_spans

ROOT = Path(__file__).resolve().parents[1]


def build(documents: int, seed: int):
    task = load_task(ROOT / "data/adverse_events/task.yaml")
    demo = load_dataset(ROOT / "data/adverse_events/test.jsonl", task)
    labels = list(task.label_names)
    rng = random.Random(seed)
    prepared = []
    for example_id, text, spans in zip(demo["example_id"], demo["text"], demo["spans"]):
        tokens = token_offsets(text)
        starts = {start: i for i, (start, _) in enumerate(tokens)}
        ends = {end: i + 1 for i, (_, end) in enumerate(tokens)}
        token_spans = [(starts[s["start"]], ends[s["end"]], s["label"]) for s in spans]
        prepared.append((example_id, text, spans, tokens, token_spans))
    gold_rows, prediction_rows = [], []
    for number in range(documents):
        example_id, text, spans, tokens, token_spans = prepared[number % len(prepared)]
        copy_id = f"{example_id}~{number // len(prepared)}"
        gold_rows.append({"example_id": copy_id, "text": text, "spans": spans})
        if rng.random() < 0.03:
            prediction = None
        else:
            prediction = [
                {"start": tokens[first][0], "end": tokens[stop - 1][1], "label": label,
                 "text": text[tokens[first][0]:tokens[stop - 1][1]]}
                for first, stop, label in perturb_token_spans(rng, len(tokens), token_spans, labels)
            ]
        prediction_rows.append({
            "variant": "bench", "example_id": copy_id, "repeat": 0, "prediction": prediction,
            "parse_error": None if prediction is not None else "no JSON object found in the answer",
            "request_error": None, "hallucinations": [], "raw_response": "",
        })
    return pd.DataFrame(prediction_rows), pd.DataFrame(gold_rows), labels


def clock(function, repeats: int = 1):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="workbench timings: best of this many runs")
    args = parser.parse_args()

    from nervaluate import Evaluator
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    started = time.perf_counter()
    predictions, gold, labels = build(args.documents, args.seed)
    n_gold = int(gold["spans"].map(len).sum())
    n_pred = int(predictions["prediction"].map(lambda spans: len(spans) if spans is not None else 0).sum())
    print(f"data: {len(predictions):,} documents, {n_gold:,} gold spans, {n_pred:,} predicted spans, "
          f"{int(predictions['prediction'].isna().sum()):,} unparseable rows "
          f"(built in {time.perf_counter() - started:.1f} s)")
    print(f"versions: seqeval {version('seqeval')}, nervaluate {version('nervaluate')}, "
          f"pandas {version('pandas')}, numpy {version('numpy')}")

    texts = gold["text"].tolist()
    convert_tags_s, (y_true, y_pred) = clock(lambda: (
        [spans_to_iob2(text, spans) for text, spans in zip(texts, gold["spans"])],
        [spans_to_iob2(text, spans) for text, spans in zip(texts, predictions["prediction"])],
    ))
    convert_dicts_s, (true_dicts, pred_dicts) = clock(lambda: (
        [[{"label": s["label"], "start": s["start"], "end": s["end"] - 1} for s in spans] for spans in gold["spans"]],
        [[{"label": s["label"], "start": s["start"], "end": s["end"] - 1} for s in spans or []]
         for spans in predictions["prediction"]],
    ))

    strict_s, strict = clock(lambda: score_ner(predictions, gold, labels, modes=["strict"]), args.repeats)
    all_modes_s, _ = clock(lambda: score_ner(predictions, gold, labels), args.repeats)
    errors_s, errors = clock(lambda: ner_errors(predictions, gold), args.repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seqeval_f1_s, seqeval_f1 = clock(lambda: f1_score(y_true, y_pred, mode="strict", scheme=IOB2))
        seqeval_report_s, report = clock(
            lambda: classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True)
        )
    nervaluate_s, results = clock(lambda: Evaluator(true_dicts, pred_dicts, tags=labels, loader="dict").evaluate())

    ours = strict.loc[strict["label"] == "ALL"].iloc[0]
    f1s = {
        "workbench score_ner strict": float(ours["f1"]),
        "seqeval f1_score": float(seqeval_f1),
        "seqeval classification_report micro": float(report["micro avg"]["f1-score"]),
        "nervaluate overall strict": float(results["overall"]["strict"].f1),
    }
    per_label_gap = max(
        max(abs(float(strict.loc[strict["label"] == label, "f1"].iloc[0]) - report[label]["f1-score"]),
            abs(float(strict.loc[strict["label"] == label, "f1"].iloc[0]) - results["entities"][label]["strict"].f1))
        for label in labels
    )

    print("\nwall time (s)")
    rows = [
        ("workbench score_ner, strict", strict_s),
        ("workbench score_ner, strict+boundary+type", all_modes_s),
        ("workbench ner_errors", errors_s),
        ("seqeval f1_score (strict, IOB2)", seqeval_f1_s),
        ("seqeval classification_report (strict, IOB2)", seqeval_report_s),
        ("nervaluate Evaluator.evaluate (dict loader)", nervaluate_s),
        ("  conversion spans -> IOB2 tags (not in seqeval's time)", convert_tags_s),
        ("  conversion spans -> inclusive dicts (not in nervaluate's time)", convert_dicts_s),
    ]
    for name, seconds in rows:
        print(f"  {name:<66} {seconds:8.3f}")
    print("\nspeed-up of score_ner (strict) over")
    for name, seconds in rows[3:6]:
        print(f"  {name:<66} {seconds / strict_s:8.1f}x")
    print(f"  {'seqeval f1_score incl. tag conversion':<66} {(seqeval_f1_s + convert_tags_s) / strict_s:8.1f}x")

    print("\nstrict micro F1")
    for name, value in f1s.items():
        print(f"  {name:<66} {value:.15f}")
    spread = max(f1s.values()) - min(f1s.values())
    print(f"  identical: {'yes' if spread <= 1e-12 else 'NO'} (largest difference {spread:.2e}; "
          f"per-label F1 vs seqeval/nervaluate: {per_label_gap:.2e})")
    print(f"  ner_errors rows: {len(errors):,} ({errors['error_type'].value_counts().to_dict()})")


if __name__ == "__main__":
    main()
