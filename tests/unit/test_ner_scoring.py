"""Entity-level NER scoring: hand-computed cases, error rows, and agreement with seqeval and nervaluate."""

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from workbench.core.data import load_dataset
from workbench.core.kinds.ner_scoring import ERROR_COLUMNS, SCORE_COLUMNS, ner_errors, score_ner
from workbench.core.spans import spans_to_iob2, token_offsets
from workbench.core.task import load_task
from workbench.testing.ner_perturbation import perturb_token_spans

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["DRUG", "ADVERSE_EVENT", "INDICATION", "DOSE"]
TEXT = "Took Lipitor 20 mg for cholesterol and got a rash."


def span(text, phrase, label, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(phrase, start + 1)
    return {"start": start, "end": start + len(phrase), "label": label, "text": phrase}


DRUG = span(TEXT, "Lipitor", "DRUG")
DOSE = span(TEXT, "20 mg", "DOSE")
INDICATION = span(TEXT, "cholesterol", "INDICATION")
RASH = span(TEXT, "rash", "ADVERSE_EVENT")
GOLD = pd.DataFrame({"example_id": ["a"], "text": [TEXT], "spans": [[DRUG, DOSE, INDICATION, RASH]]})


def predictions(*rows, variant="v"):
    """Prediction rows for example "a": each row is a list of spans or None (unparseable)."""
    return pd.DataFrame({
        "variant": variant, "example_id": "a", "repeat": range(len(rows)), "prediction": list(rows),
        "parse_error": [None if row is not None else "no JSON object found in the answer" for row in rows],
        "request_error": None, "hallucinations": [[] for _ in rows], "raw_response": "",
    })


def row(scores, label="ALL", mode="strict", variant="v"):
    found = scores[(scores["label"] == label) & (scores["mode"] == mode) & (scores["variant"] == variant)]
    assert len(found) == 1
    return found.iloc[0]


def counts(scores, label="ALL", mode="strict", variant="v"):
    found = row(scores, label, mode, variant)
    return int(found["tp"]), int(found["fp"]), int(found["fn"])


# --- hand-computed cases ---------------------------------------------------------------------------


def test_all_right_scores_one_in_every_mode():
    scores = score_ner(predictions([DRUG, DOSE, INDICATION, RASH]), GOLD, LABELS)
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 3 * (1 + len(LABELS))
    for mode in ("strict", "boundary", "type"):
        assert counts(scores, mode=mode) == (4, 0, 0)
        assert row(scores, mode=mode)[["precision", "recall", "f1", "macro_f1"]].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert counts(scores, "DOSE") == (1, 0, 0)
    assert row(scores)["support"] == 4


def test_empty_predictions_miss_every_gold_entity():
    scores = score_ner(predictions([]), GOLD, LABELS)
    for mode in ("strict", "boundary", "type"):
        assert counts(scores, mode=mode) == (0, 0, 4)
        assert row(scores, mode=mode)[["precision", "recall", "f1"]].tolist() == [0.0, 0.0, 0.0]
    assert row(scores)["macro_f1"] == 0.0


def test_empty_gold_makes_every_prediction_a_false_positive():
    gold = GOLD.assign(spans=[[]])
    scores = score_ner(predictions([DRUG, RASH]), gold, LABELS)
    assert counts(scores) == (0, 2, 0)
    assert row(scores)[["precision", "recall", "f1", "support"]].tolist() == [0.0, 0.0, 0.0, 0]
    assert counts(scores, "DRUG") == (0, 1, 0)
    # Labels with nothing to find and nothing predicted are perfect but left out of the macro average.
    assert row(scores, "DOSE")["f1"] == 1.0
    assert row(scores)["macro_f1"] == 0.0


def test_nothing_to_find_and_nothing_predicted_scores_one():
    gold = GOLD.assign(spans=[[]])
    scores = score_ner(predictions([]), gold, LABELS)
    assert row(scores)[["tp", "fp", "fn", "f1", "macro_f1"]].tolist() == [0, 0, 0, 1.0, 1.0]


def test_all_wrong_predictions_score_zero():
    wrong = [span(TEXT, "Took", "DRUG"), span(TEXT, "got", "ADVERSE_EVENT")]
    scores = score_ner(predictions(wrong), GOLD, LABELS)
    for mode in ("strict", "boundary", "type"):
        assert counts(scores, mode=mode) == (0, 2, 4)
        assert row(scores, mode=mode)["f1"] == 0.0
    errors = ner_errors(predictions(wrong), GOLD)
    assert errors["error_type"].value_counts().to_dict() == {"false_positive": 2, "false_negative": 4}


def test_overlapping_span_with_the_right_label_counts_only_in_type_mode():
    wider = span(TEXT, "a rash", "ADVERSE_EVENT")
    scores = score_ner(predictions([DRUG, DOSE, INDICATION, wider]), GOLD, LABELS)
    assert counts(scores, mode="strict") == (3, 1, 1)
    assert counts(scores, mode="boundary") == (3, 1, 1)
    assert counts(scores, mode="type") == (4, 0, 0)
    assert counts(scores, "ADVERSE_EVENT", "strict") == (0, 1, 1)
    assert row(scores, mode="strict")["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1), abs=1e-12)

    errors = ner_errors(predictions([DRUG, DOSE, INDICATION, wider]), GOLD)
    assert len(errors) == 1
    error = errors.iloc[0]
    assert error["error_type"] == "boundary"
    assert error["gold"] == RASH and error["predicted"] == wider
    assert (error["start"], error["end"], error["label"]) == (RASH["start"], RASH["end"], "ADVERSE_EVENT")


def test_same_span_with_another_label_counts_only_in_boundary_mode():
    relabelled = {**INDICATION, "label": "ADVERSE_EVENT"}
    scores = score_ner(predictions([DRUG, DOSE, relabelled, RASH]), GOLD, LABELS)
    assert counts(scores, mode="strict") == (3, 1, 1)
    assert counts(scores, mode="type") == (3, 1, 1)
    assert counts(scores, mode="boundary") == (4, 0, 0)
    # The false positive belongs to the predicted label, the miss to the gold label.
    assert counts(scores, "ADVERSE_EVENT", "strict") == (1, 1, 0)
    assert counts(scores, "INDICATION", "strict") == (0, 0, 1)
    # A boundary match counts under the gold label.
    assert counts(scores, "INDICATION", "boundary") == (1, 0, 0)

    errors = ner_errors(predictions([DRUG, DOSE, relabelled, RASH]), GOLD)
    assert errors[["error_type", "label", "start", "end"]].values.tolist() == [
        ["wrong_label", "INDICATION", INDICATION["start"], INDICATION["end"]]
    ]
    assert errors.iloc[0]["predicted"]["label"] == "ADVERSE_EVENT"


def test_overlap_with_another_label_is_a_boundary_error_and_wrong_in_every_mode():
    other = span(TEXT, "a rash", "INDICATION")
    scores = score_ner(predictions([other]), GOLD.assign(spans=[[RASH]]), LABELS)
    for mode in ("strict", "boundary", "type"):
        assert counts(scores, mode=mode) == (0, 1, 1)
    errors = ner_errors(predictions([other]), GOLD.assign(spans=[[RASH]]))
    assert errors["error_type"].tolist() == ["boundary"]
    assert errors.iloc[0]["gold"]["label"] != errors.iloc[0]["predicted"]["label"]


def test_one_prediction_overlapping_two_gold_spans():
    both = span(TEXT, "Lipitor 20 mg", "DRUG")
    gold = GOLD.assign(spans=[[DRUG, DOSE]])
    scores = score_ner(predictions([both]), gold, LABELS)
    assert counts(scores, mode="strict") == (0, 1, 2)
    assert counts(scores, mode="boundary") == (0, 1, 2)
    # Type mode: overlap with the DRUG span, same label -> one match; DOSE stays missed.
    assert counts(scores, mode="type") == (1, 0, 1)
    assert counts(scores, "DOSE", "type") == (0, 0, 1)

    errors = ner_errors(predictions([both]), gold)
    # One boundary row per overlapped gold span, no false positive or negative rows.
    assert errors["error_type"].tolist() == ["boundary", "boundary"]
    assert errors["gold"].tolist() == [DRUG, DOSE]
    assert all(predicted == both for predicted in errors["predicted"])


def test_one_prediction_over_two_same_label_gold_spans_matches_one_of_them():
    text = "rash and itching"
    gold = pd.DataFrame({"example_id": ["a"], "text": [text],
                         "spans": [[span(text, "rash", "ADVERSE_EVENT"), span(text, "itching", "ADVERSE_EVENT")]]})
    scores = score_ner(predictions([span(text, "rash and itching", "ADVERSE_EVENT")]), gold, LABELS)
    assert counts(scores, mode="type") == (1, 0, 1)
    # And the mirror image: two predictions inside one gold span are one match and one false positive.
    gold = gold.assign(spans=[[span(text, "rash and itching", "ADVERSE_EVENT")]])
    pieces = [span(text, "rash", "ADVERSE_EVENT"), span(text, "itching", "ADVERSE_EVENT")]
    scores = score_ner(predictions(pieces), gold, LABELS)
    assert counts(scores, mode="type") == (1, 1, 0)


def test_type_mode_finds_the_maximum_matching_where_greedy_closest_boundaries_would_not():
    # Gold A = "a b" , gold B = "d e"; P1 = "b c d" overlaps both (closer to B), P2 = "e" overlaps B.
    # Pairing P1 with B would leave A and P2 unmatched; the maximum matching is P1-A and P2-B.
    text = "a b c d e"
    gold = pd.DataFrame({"example_id": ["a"], "text": [text],
                         "spans": [[span(text, "a b", "DRUG"), span(text, "d e", "DRUG")]]})
    preds = [span(text, "b c d", "DRUG"), span(text, "e", "DRUG")]
    scores = score_ner(predictions(preds), gold, LABELS)
    assert counts(scores, mode="type") == (2, 0, 0)
    # Listing the predictions in the other order changes nothing.
    assert counts(score_ner(predictions(preds[::-1]), gold, LABELS), mode="type") == (2, 0, 0)


def test_unparseable_rows_count_as_predicting_nothing():
    frame = predictions([DRUG, DOSE, INDICATION, RASH], None)
    frame.loc[2] = {**frame.loc[1].to_dict(), "repeat": 2, "prediction": math.nan, "parse_error": None,
                    "request_error": "gave up after 6 attempts: 503"}
    scores = score_ner(frame, GOLD, LABELS)
    assert counts(scores) == (4, 0, 8)
    assert row(scores)["support"] == 12
    assert row(scores)["recall"] == pytest.approx(1 / 3)
    assert row(scores)["precision"] == 1.0

    errors = ner_errors(frame, GOLD)
    assert errors["error_type"].tolist() == ["parse_failure", "parse_failure"]
    assert errors["repeat"].tolist() == [1, 2]
    assert errors["gold"].isna().all() and errors["predicted"].isna().all()
    assert errors["detail"].tolist() == [
        "parse failed: no JSON object found in the answer", "request failed: gave up after 6 attempts: 503",
    ]


def test_hallucinations_are_listed_as_errors_but_not_scored():
    frame = predictions([DRUG, DOSE, INDICATION, RASH], [DRUG])
    frame.at[1, "hallucinations"] = [{"text": "Crestor", "label": "DRUG"}, {"text": "hives", "label": "ADVERSE_EVENT"}]
    assert score_ner(frame, GOLD, LABELS).equals(score_ner(frame.assign(hallucinations=[[], []]), GOLD, LABELS))

    errors = ner_errors(frame, GOLD)
    assert list(errors.columns) == ERROR_COLUMNS
    assert errors["error_type"].tolist() == ["false_negative"] * 3 + ["hallucination"] * 2
    hallucinated = errors[errors["error_type"] == "hallucination"]
    assert hallucinated["predicted"].tolist() == frame.at[1, "hallucinations"]
    assert hallucinated["label"].tolist() == ["DRUG", "ADVERSE_EVENT"]
    assert hallucinated["start"].isna().all() and (hallucinated["repeat"] == 1).all()
    assert errors.loc[errors["error_type"] == "false_negative", "gold"].tolist() == [DOSE, INDICATION, RASH]


def test_false_negative_and_positive_rows_and_their_order():
    extra = span(TEXT, "Took", "DRUG")
    errors = ner_errors(predictions([extra, DRUG, RASH]), GOLD)
    assert errors[["error_type", "start"]].values.tolist() == [
        ["false_positive", 0], ["false_negative", DOSE["start"]], ["false_negative", INDICATION["start"]],
    ]
    assert errors.iloc[0]["label"] == "DRUG" and errors.iloc[0]["gold"] is None
    assert str(errors["start"].dtype) == "Int64"


def test_repeats_are_pooled_and_variants_kept_apart_in_run_order():
    frame = pd.concat([
        predictions([DRUG], [DRUG, DOSE], variant="zero_shot"),
        predictions([DRUG, DOSE, INDICATION, RASH], variant="definitions"),
    ], ignore_index=True)
    scores = score_ner(frame, GOLD, LABELS, modes=["strict"])
    assert scores["variant"].unique().tolist() == ["zero_shot", "definitions"]
    assert row(scores, variant="zero_shot")[["tp", "fp", "fn", "support"]].tolist() == [3, 0, 5, 8]
    assert row(scores, variant="definitions")["f1"] == 1.0


def test_per_label_rows_sum_to_the_overall_row_and_macro_is_their_mean():
    frame = perturbed_demo_predictions(seed=3)
    scores = score_ner(frame, DEMO, LABELS)
    for (variant, mode), group in scores.groupby(["variant", "mode"]):
        overall = group[group["label"] == "ALL"].iloc[0]
        labels = group[group["label"] != "ALL"]
        for column in ("tp", "fp", "fn", "support"):
            assert labels[column].sum() == overall[column]
        assert overall["macro_f1"] == pytest.approx(labels["f1"].mean(), abs=1e-12)
        assert labels["macro_f1"].isna().all()


def test_strict_overall_equals_the_set_based_counts_used_for_confidence_intervals():
    from workbench.core.task import task_from_dict
    from workbench.evaluation.significance import example_statistics, metric_from_totals

    task = task_from_dict({"name": "ae", "kind": "ner", "labels": [{"name": l, "definition": "d"} for l in LABELS]})
    frame = perturbed_demo_predictions(seed=4)
    scores = score_ner(frame, DEMO, LABELS, modes="strict")
    for variant, stats in example_statistics(frame, DEMO, task).items():
        expected = metric_from_totals(stats.to_numpy().sum(axis=0), list(stats.columns), "micro_f1")[0]
        assert row(scores, variant=variant)["f1"] == pytest.approx(expected, abs=1e-12)


def test_scores_do_not_depend_on_row_or_span_order():
    frame = perturbed_demo_predictions(seed=5)
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    shuffled["prediction"] = [
        random.Random(i).sample(spans, len(spans)) if isinstance(spans, list) else spans
        for i, spans in enumerate(shuffled["prediction"])
    ]
    key = ["variant", "mode", "label"]
    first = score_ner(frame, DEMO, LABELS).sort_values(key).reset_index(drop=True)
    second = score_ner(shuffled, DEMO.iloc[::-1], LABELS).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second)


def test_labels_found_but_not_listed_get_rows_after_the_listed_ones():
    odd = {**DRUG, "label": "BRAND"}
    scores = score_ner(predictions([odd]), GOLD, ["DRUG", "DOSE"], modes=["boundary"])
    assert scores["label"].tolist() == ["ALL", "DRUG", "DOSE", "ADVERSE_EVENT", "BRAND", "INDICATION"]
    assert counts(scores, "DRUG", "boundary") == (1, 0, 0)
    assert counts(scores, "BRAND", "boundary") == (0, 0, 0)


def test_no_prediction_rows_gives_empty_frames_with_the_documented_columns():
    empty = predictions([]).iloc[:0]
    assert list(score_ner(empty, GOLD, LABELS).columns) == SCORE_COLUMNS
    assert score_ner(empty, GOLD, LABELS).empty
    errors = ner_errors(empty, GOLD)
    assert errors.empty and list(errors.columns) == ERROR_COLUMNS


@pytest.mark.parametrize(
    ("frame", "gold", "message"),
    [
        (predictions([DRUG]).assign(example_id="zz"), GOLD, "not in gold"),
        (predictions([DRUG, span(TEXT, "Lipitor 20", "DOSE")]), GOLD, "overlap within a row"),
        (predictions([{**DRUG, "end": DRUG["start"]}]), GOLD, "end <= start"),
        (predictions([{"start": 0, "end": 3}]), GOLD, "start, end and label"),
        (predictions(["Lipitor"]), GOLD, "start, end and label"),
        (predictions("DRUG"), GOLD, "expected a list of dicts or None"),
        (predictions([DRUG]).drop(columns="variant"), GOLD, "lacks column"),
        (predictions([DRUG]), pd.concat([GOLD, GOLD]), "unique"),
        (predictions([{**DRUG, "label": "ALL"}]), GOLD, "overall row"),
    ],
)
def test_bad_input_is_rejected_with_a_helpful_error(frame, gold, message):
    with pytest.raises(ValueError, match=message):
        score_ner(frame, gold, LABELS)


def test_modes_are_checked():
    with pytest.raises(ValueError, match="modes"):
        score_ner(predictions([DRUG]), GOLD, LABELS, modes=["exact"])


# --- IOB2 conversion -------------------------------------------------------------------------------


def test_token_offsets_split_words_and_punctuation():
    text = "Co-codamol 30/500, twice."
    assert [text[s:e] for s, e in token_offsets(text)] == ["Co", "-", "codamol", "30", "/", "500", ",", "twice", "."]


def test_spans_to_iob2_tags_each_token():
    assert spans_to_iob2(TEXT, [DRUG, DOSE, RASH]) == [
        "O", "B-DRUG", "B-DOSE", "I-DOSE", "O", "O", "O", "O", "O", "B-ADVERSE_EVENT", "O",
    ]
    assert spans_to_iob2([(0, 4), (5, 12)], None) == ["O", "O"]
    with pytest.raises(ValueError, match="token boundaries"):
        spans_to_iob2(TEXT, [{"start": 6, "end": 12, "label": "DRUG"}])
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_iob2(TEXT, [DOSE, span(TEXT, "mg", "DOSE")])


# --- agreement with seqeval and nervaluate ---------------------------------------------------------

WORDS = ["patient", "took", "aspirin", "rash", "headache", "for", "pain", "mg", "20", "daily", "and", "the",
         "nausea", "ibuprofen", "twice", "fever", "after", "dose", "x2", "co"]
PUNCTUATION = [",", ".", "(", ")", "/", "-", ":"]
TASK = load_task(ROOT / "data/adverse_events/task.yaml")
DEMO = load_dataset(ROOT / "data/adverse_events/test.jsonl", TASK)


def to_token_spans(tokens, spans):
    starts = {start: i for i, (start, _) in enumerate(tokens)}
    ends = {end: i + 1 for i, (_, end) in enumerate(tokens)}
    return [(starts[s["start"]], ends[s["end"]], s["label"]) for s in spans]


def to_char_spans(text, tokens, token_spans):
    spans = []
    for first, stop, label in sorted(token_spans):
        start, end = tokens[first][0], tokens[stop - 1][1]
        spans.append({"start": start, "end": end, "label": label, "text": text[start:end]})
    return spans


def perturbed_demo_predictions(seed, variants=("zero_shot", "definitions"), repeats=2):
    rng = random.Random(seed)
    rows = []
    for variant in variants:
        for example_id, text, gold in zip(DEMO["example_id"], DEMO["text"], DEMO["spans"]):
            tokens = token_offsets(text)
            for repeat in range(repeats):
                if rng.random() < 0.03:
                    prediction = None
                else:
                    token_spans = perturb_token_spans(rng, len(tokens), to_token_spans(tokens, gold), LABELS)
                    prediction = to_char_spans(text, tokens, token_spans)
                rows.append({"variant": variant, "example_id": example_id, "repeat": repeat, "prediction": prediction})
    return pd.DataFrame(rows)


def random_documents(seed, n_documents=200):
    """Random token texts with random non-overlapping token-aligned gold spans and perturbed predictions."""
    rng = random.Random(seed)
    gold_rows, prediction_rows = [], []
    for number in range(n_documents):
        words = [rng.choice(PUNCTUATION) if rng.random() < 0.2 else rng.choice(WORDS)
                 for _ in range(rng.randint(1, 40))]
        text = ""
        for word in words:
            glue = "" if (word in PUNCTUATION and rng.random() < 0.5) or not text else " "
            text += glue + word
        tokens = token_offsets(text)
        assert [text[s:e] for s, e in tokens] == words
        gold_tokens, position = [], 0
        while position < len(tokens):
            position += rng.randint(0, 4)
            length = rng.randint(1, 4)
            if position + length > len(tokens) or rng.random() < 0.3:
                position += 1
                continue
            gold_tokens.append((position, position + length, rng.choice(LABELS)))
            position += length
        example_id = f"r{number}"
        gold_rows.append({"example_id": example_id, "text": text, "spans": to_char_spans(text, tokens, gold_tokens)})
        prediction = (None if rng.random() < 0.03
                      else to_char_spans(text, tokens, perturb_token_spans(rng, len(tokens), gold_tokens, LABELS)))
        prediction_rows.append({"variant": "random", "example_id": example_id, "repeat": 0, "prediction": prediction})
    return pd.DataFrame(prediction_rows), pd.DataFrame(gold_rows)


def demo_case():
    return perturbed_demo_predictions(seed=11, variants=("demo",), repeats=3), DEMO


CASES = {"demo": demo_case, "random": lambda: random_documents(seed=7)}


def tag_sequences(frame, gold):
    texts = frame["example_id"].map(gold.set_index("example_id")["text"])
    gold_spans = frame["example_id"].map(gold.set_index("example_id")["spans"])
    y_true = [spans_to_iob2(text, spans) for text, spans in zip(texts, gold_spans)]
    y_pred = [spans_to_iob2(text, spans) for text, spans in zip(texts, frame["prediction"])]
    return y_true, y_pred


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_scores_equal_seqeval_strict_iob2(case):
    frame, gold = CASES[case]()
    assert frame["prediction"].isna().sum() > 0  # unparseable rows are part of the comparison
    scores = score_ner(frame, gold, LABELS)
    y_true, y_pred = tag_sequences(frame, gold)
    overall = row(scores, variant=frame["variant"].iloc[0])
    assert 0.3 < overall["f1"] < 0.95  # the perturbations leave a real mix of hits and misses

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"mode": "strict", "scheme": IOB2}
        assert overall["f1"] == pytest.approx(f1_score(y_true, y_pred, **kwargs), abs=1e-9)
        assert overall["precision"] == pytest.approx(precision_score(y_true, y_pred, **kwargs), abs=1e-9)
        assert overall["recall"] == pytest.approx(recall_score(y_true, y_pred, **kwargs), abs=1e-9)
        report = classification_report(y_true, y_pred, output_dict=True, **kwargs)
    assert overall["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-9)
    assert overall["support"] == report["micro avg"]["support"]
    for label in LABELS:
        mine = row(scores, label, variant=frame["variant"].iloc[0])
        assert mine["f1"] == pytest.approx(report[label]["f1-score"], abs=1e-9), label
        assert mine["precision"] == pytest.approx(report[label]["precision"], abs=1e-9), label
        assert mine["recall"] == pytest.approx(report[label]["recall"], abs=1e-9), label
        assert mine["support"] == report[label]["support"], label


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_and_boundary_scores_equal_nervaluate(case):
    from nervaluate import Evaluator

    frame, gold = CASES[case]()
    scores = score_ner(frame, gold, LABELS)
    variant = frame["variant"].iloc[0]
    y_true, y_pred = tag_sequences(frame, gold)
    by_tags = Evaluator(y_true, y_pred, tags=LABELS, loader="list").evaluate()
    # The same on character offsets; nervaluate's ends are inclusive.
    gold_spans = frame["example_id"].map(gold.set_index("example_id")["spans"])
    inclusive = [[{"label": s["label"], "start": s["start"], "end": s["end"] - 1} for s in spans or []]
                 for spans in gold_spans]
    predicted = [[{"label": s["label"], "start": s["start"], "end": s["end"] - 1} for s in spans or []]
                 for spans in frame["prediction"]]
    by_chars = Evaluator(inclusive, predicted, tags=LABELS, loader="dict").evaluate()

    for results in (by_tags, by_chars):
        for mine, theirs in ((row(scores, variant=variant), results["overall"]["strict"]),
                             (row(scores, mode="boundary", variant=variant), results["overall"]["exact"])):
            assert mine["f1"] == pytest.approx(theirs.f1, abs=1e-9)
            assert mine["precision"] == pytest.approx(theirs.precision, abs=1e-9)
            assert mine["recall"] == pytest.approx(theirs.recall, abs=1e-9)
            assert mine["tp"] == theirs.correct
        for label in LABELS:
            assert row(scores, label, variant=variant)["f1"] == pytest.approx(
                results["entities"][label]["strict"].f1, abs=1e-9
            ), label


def untangled(frame, gold):
    """Rows where no span overlaps two spans on the other side (nervaluate's ent_type is exact there)."""
    gold_spans = frame["example_id"].map(gold.set_index("example_id")["spans"])
    keep = []
    for predicted, truth in zip(frame["prediction"], gold_spans):
        predicted = predicted or []
        overlaps = [(i, j) for i, p in enumerate(predicted) for j, g in enumerate(truth)
                    if p["start"] < g["end"] and g["start"] < p["end"]]
        left = [i for i, _ in overlaps]
        right = [j for _, j in overlaps]
        keep.append(len(set(left)) == len(left) and len(set(right)) == len(right))
    return frame[keep].reset_index(drop=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_type_mode_equals_nervaluate_ent_type_where_no_span_overlaps_two(case):
    from nervaluate import Evaluator

    frame, gold = CASES[case]()
    simple = untangled(frame, gold)
    assert 0.5 * len(frame) < len(simple) < len(frame)  # the perturbations do tangle some rows
    scores = score_ner(simple, gold, LABELS, modes=["type"])
    results = Evaluator(*tag_sequences(simple, gold), tags=LABELS, loader="list").evaluate()
    variant = simple["variant"].iloc[0]
    assert row(scores, mode="type", variant=variant)["f1"] == pytest.approx(results["overall"]["ent_type"].f1, abs=1e-9)
    for label in LABELS:
        assert row(scores, label, "type", variant)["f1"] == pytest.approx(
            results["entities"][label]["ent_type"].f1, abs=1e-9
        ), label


def test_errors_agree_with_strict_counts_on_rows_without_overlaps():
    frame = perturbed_demo_predictions(seed=8, variants=("v",), repeats=1)
    simple = untangled(frame, DEMO)
    errors = ner_errors(simple, DEMO)
    scores = score_ner(simple, DEMO, LABELS, modes=["strict"])
    kinds = errors["error_type"].value_counts()
    tp, fp, fn = counts(scores)
    spans_in_failed_rows = simple.loc[simple["prediction"].isna(), "example_id"].map(
        DEMO.set_index("example_id")["spans"].map(len)).sum()
    paired = kinds.get("wrong_label", 0) + kinds.get("boundary", 0)
    # Without tangles every error pair is one fp plus one fn in strict mode.
    assert fp == kinds.get("false_positive", 0) + paired
    assert fn == kinds.get("false_negative", 0) + paired + spans_in_failed_rows
    assert tp == sum(len(p) for p in simple["prediction"].dropna()) - fp


def test_vectorised_scores_match_a_plain_loop_on_many_random_documents():
    frame, gold = random_documents(seed=21, n_documents=1500)
    scores = score_ner(frame, gold, LABELS)
    gold_by_id = gold.set_index("example_id")["spans"]
    totals = {"strict": [0, 0, 0], "boundary": [0, 0, 0], "type": [0, 0, 0]}
    for example_id, predicted in zip(frame["example_id"], frame["prediction"]):
        truth = gold_by_id[example_id]
        for mode, key in (("strict", lambda s: (s["start"], s["end"], s["label"])),
                          ("boundary", lambda s: (s["start"], s["end"]))):
            p = {key(s) for s in predicted or []}
            g = {key(s) for s in truth}
            totals[mode][0] += len(p & g)
            totals[mode][1] += len(p - g)
            totals[mode][2] += len(g - p)
        # Type mode: a maximum bipartite matching over same-label overlapping pairs, by scipy.
        predicted = predicted or []
        graph = csr_matrix(np.array(
            [[p["label"] == t["label"] and p["start"] < t["end"] and t["start"] < p["end"] for t in truth]
             for p in predicted], dtype=float,
        ).reshape(len(predicted), len(truth)))
        matched = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum()) if graph.size else 0
        totals["type"][0] += matched
        totals["type"][1] += len(predicted) - matched
        totals["type"][2] += len(truth) - matched
    for mode, expected in totals.items():
        assert list(counts(scores, mode=mode, variant="random")) == expected
    assert np.array_equal(scores["tp"] + scores["fn"], scores["support"])
