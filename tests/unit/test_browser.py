"""The notebook error browser: filters work, cards show the right example, text is escaped."""

import pandas as pd

from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.reporting.browser import ALL, ErrorBrowser, filter_errors, render_spans

CLS = task_from_dict({"name": "t", "kind": "classification",
                      "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})
NER = task_from_dict({"name": "n", "kind": "ner",
                      "labels": [{"name": "DRUG", "definition": "x"}, {"name": "AE", "definition": "y"}]})
GOLD = pd.DataFrame({"example_id": ["1", "2", "3"], "text": ["<script>alert(1)</script>", "t2", "t3"],
                     "label": ["a", "b", "a"]})


def predictions(variant, labels):
    return pd.DataFrame({"variant": variant, "example_id": ["1", "2", "3"], "repeat": 0, "prediction": labels,
                         "raw_response": ['{"label": "<b>b</b>"}', "x", "y"], "parse_error": None,
                         "request_error": None, "hallucinations": [[], [], []]})


def test_filters_narrow_the_errors():
    errors = find_errors(pd.concat([predictions("v1", ["b", "a", "a"]), predictions("v2", ["b", "b", "a"])]), GOLD, CLS)
    assert len(filter_errors(errors)) == 3
    assert len(filter_errors(errors, variant="v1")) == 2
    assert filter_errors(errors, label="b")["example_id"].tolist() == ["2"]
    assert filter_errors(errors, variant="v2", error_type="parse_failure").empty


def test_browser_updates_its_card_and_escapes_text():
    errors = find_errors(pd.concat([predictions("v1", ["b", "a", "a"]), predictions("v2", ["b", "b", "a"])]), GOLD, CLS)
    browser = ErrorBrowser(errors, CLS, GOLD)
    assert "3 matching" in browser.count.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.card.value
    assert "<script>" not in browser.card.value and "&lt;b&gt;b&lt;/b&gt;" in browser.card.value
    browser.variant.value = "v1"
    browser.label.value = "b"
    assert "1 matching" in browser.count.value and "t2" in browser.card.value
    browser.variant.value = "v2"
    assert "No errors match" in browser.card.value
    assert browser.variant.options[0] == ALL


def test_ner_card_highlights_gold_and_predicted_spans():
    text = "Took aspirin, got a rash."
    gold = pd.DataFrame({"example_id": ["1"], "text": [text], "spans": [[{"start": 5, "end": 12, "label": "DRUG"}]]})
    frame = pd.DataFrame({"variant": "v", "example_id": ["1"], "repeat": 0, "raw_response": "{}", "parse_error": None,
                          "request_error": None, "hallucinations": [[]],
                          "prediction": [[{"start": 20, "end": 24, "label": "AE", "text": "rash"}]]})
    browser = ErrorBrowser(find_errors(frame, gold, NER), NER, gold, frame)
    card = browser.card.value
    # The whole gold example, and the whole prediction checked against it, each with its entities marked.
    gold_excerpt = 'Took <mark class="span gold" title="DRUG">aspirin<sub>DRUG</sub></mark>, got a rash.'
    predicted_excerpt = 'Took aspirin, got a <mark class="span pred-bad" title="AE">rash<sub>AE</sub></mark>.'
    assert f'<div class="excerpt">{gold_excerpt}</div>' in card
    assert f'<div class="excerpt">{predicted_excerpt}</div>' in card
    assert "<script" not in render_spans("<script>x</script>", [], NER, "<i>title</i>")
    spans = render_spans("a <b>x</b>", [{"start": 2, "end": 10, "label": "DRUG"}], NER, "<i>title</i>")
    assert spans.startswith('<h4 style="margin:0.6em 0 0.2em">&lt;i&gt;title&lt;/i&gt;</h4>')
    assert '<mark class="span gold" title="DRUG">&lt;b&gt;x&lt;/b&gt;<sub>DRUG</sub></mark>' in spans


def test_multilabel_card_shows_label_chips_against_gold():
    task = task_from_dict({"name": "m", "kind": "multilabel",
                           "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})
    gold = pd.DataFrame({"example_id": ["1"], "text": ["<script>t</script>"], "labels": [["a", "b"]]})
    frame = pd.DataFrame({"variant": "v", "example_id": ["1"], "repeat": 0, "raw_response": '{"labels": ["a"]}',
                          "parse_error": None, "request_error": None, "hallucinations": [[]], "prediction": [["a"]]})
    browser = ErrorBrowser(find_errors(frame, gold, task), task, gold)
    card = browser.card.value
    assert '<span class="chip gold">a</span> <span class="chip gold">b</span>' in card
    assert '<span class="chip ok">a</span>' in card and "false_negative" in card
    assert "<script>" not in card and "&lt;script&gt;t&lt;/script&gt;" in card
