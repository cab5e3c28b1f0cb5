"""Predictions with known patterns, shared by the annotation tests (unit and integration).

Built from the labelled test sets with fixed patterns (variants that disagree, repeats that
disagree, an unreadable answer), so every expectation can be worked out by hand. Import as
``from unit.annotation_cases import ...`` (``tests/`` is on the path: it holds conftest.py).
"""

from __future__ import annotations

import json

import pandas as pd


def classification_predictions(dataset: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """zero_shot: wrong when i % 3 == 0, its second repeat also wrong (differently) when i % 5 == 0,
    unreadable twice for i == 4; definitions wrong when i % 4 == 0; cot wrong when i % 2 == 0."""
    rows = []
    for i, (example_id, gold) in enumerate(zip(dataset["example_id"], dataset["label"])):
        other = labels[(labels.index(gold) + 1) % len(labels)]
        third = labels[(labels.index(gold) + 2) % len(labels)]
        first = other if i % 3 == 0 else gold
        plan = {
            "zero_shot": [first, third if i % 5 == 0 else first],
            "definitions": [other if i % 4 == 0 else gold] * 2,
            "cot": [other if i % 2 == 0 else gold] * 2,
        }
        if i == 4:
            plan["zero_shot"] = [None, None]
        for variant, answers in plan.items():
            for repeat, answer in enumerate(answers):
                rows.append({
                    "variant": variant, "example_id": example_id, "repeat": repeat,
                    "raw_response": json.dumps({"label": answer}) if answer else "I think | it is <b>bad</b>",
                    "prediction": answer,
                    "parse_error": None if answer else "no JSON object in the answer",
                    "request_error": None,
                })
    return pd.DataFrame(rows)


def ner_predictions(dataset: pd.DataFrame) -> pd.DataFrame:
    """few_shot: gold, without its last span when i % 4 == 0. zero_shot: [] when i % 3 == 0,
    else gold with the first span relabelled when i is even; its second repeat is gold when i % 5 == 0."""
    rows = []
    for i, (example_id, text, gold) in enumerate(zip(dataset["example_id"], dataset["text"], dataset["spans"])):
        gold = [{**span, "text": text[span["start"]:span["end"]]} for span in gold]
        relabelled = [{**span, "label": "DOSE" if span["label"] != "DOSE" else "DRUG"} if k == 0 else span
                      for k, span in enumerate(gold)]
        first = [] if i % 3 == 0 else (relabelled if i % 2 == 0 else gold)
        plan = {
            "zero_shot": [first, gold if i % 5 == 0 else first],
            "few_shot": [gold[:-1] if i % 4 == 0 else gold] * 2,
        }
        for variant, answers in plan.items():
            for repeat, answer in enumerate(answers):
                rows.append({"variant": variant, "example_id": example_id, "repeat": repeat,
                             "raw_response": json.dumps(answer), "prediction": answer,
                             "parse_error": None, "request_error": None})
    return pd.DataFrame(rows)
