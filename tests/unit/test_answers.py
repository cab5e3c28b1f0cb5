"""Parsers over messy raw answers, as small models really write them."""

import pytest

from workbench.core.answers import extract_json, format_answer, normalise_label, parse_answer, stated_labels
from workbench.core.task import task_from_dict
from workbench.prompting.templates import answer_schema
from workbench.prompting.variants import parse_variant

CLASSIFICATION = task_from_dict({
    "name": "triage", "kind": "classification",
    "labels": [
        {"name": "complaint", "definition": "Any dissatisfaction."},
        {"name": "request", "definition": "Anything else."},
        {"name": "hardship_case", "definition": "Financial difficulty."},
    ],
})
NER = task_from_dict({
    "name": "ae", "kind": "ner",
    "labels": [
        {"name": "DRUG", "definition": "A medicinal product."},
        {"name": "ADVERSE_EVENT", "definition": "Harm after a drug."},
    ],
})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"label": "complaint"}', "complaint"),
        ('  {"label":"COMPLAINT"}\n', "complaint"),
        ('```json\n{"label": "request"}\n```', "request"),
        ('Sure! Here is my answer:\n{"label": "request"}\nHope this helps.', "request"),
        ('{"label": "complaint",}', "complaint"),
        ("{'label': 'complaint'}", "complaint"),
        ('{"Label": " Request "}', "request"),
        ('{"label": "hardship case"}', "hardship_case"),
        ('{"label": "Hardship-Case"}', "hardship_case"),
        ("\u201clabel\u201d", None),
        ('{"reasoning": "They say the app {keeps} failing.", "label": "complaint"}', "complaint"),
        ('[1, 2]\n{"label": "request"}', "request"),
        ("complaint", "complaint"),
        ("The answer is: Request.", "request"),
        ("**Label:** complaint\nBecause they are unhappy.", "complaint"),
        ("label = fraud_x", None),
    ],
)
def test_classification_parser_reads_messy_answers(raw, expected):
    parsed = parse_answer(CLASSIFICATION, raw, "text")
    assert parsed.prediction == expected
    assert (parsed.parse_error is None) == (expected is not None)


@pytest.mark.parametrize(
    ("raw", "error_part"),
    [
        ("", "empty answer"),
        ('{"label": "praise"}', "'praise' is not one of"),
        ('{"category_name": "complaint"}', "no 'label' key"),
        ('{"label": "compl', "no JSON object and no label"),
        ("Label: complaint. Answer: request.", "several labels"),
        ("I'd be happy to help with your request.", "no JSON object and no label"),
        ("I cannot help with that.", "no JSON object and no label"),
    ],
)
def test_classification_parser_records_why_it_gave_up(raw, error_part):
    parsed = parse_answer(CLASSIFICATION, raw, "text")
    assert parsed.prediction is None
    assert error_part in parsed.parse_error


def test_truncated_answer_says_it_hit_the_token_limit():
    parsed = parse_answer(CLASSIFICATION, '{"reasoning": "The customer is unhappy bec', "x", truncated=True)
    assert parsed.prediction is None
    assert parsed.parse_error.startswith("answer was cut off by the token limit")


def test_cot_reasoning_is_kept():
    parsed = parse_answer(CLASSIFICATION, '{"reasoning": "Polite but unhappy.", "label": "complaint"}', "x")
    assert parsed.reasoning == "Polite but unhappy."


TEXT = "Started Lipitor 20 mg; muscle pain since. Lipitor stopped."


def test_ner_answer_is_aligned_to_every_occurrence():
    raw = '{"entities": [{"text": "Lipitor", "label": "DRUG"}, {"text": "muscle pain", "label": "adverse event"}]}'
    parsed = parse_answer(NER, raw, TEXT)
    assert parsed.parse_error is None
    assert [(s["start"], s["end"], s["label"]) for s in parsed.prediction] == [
        (8, 15, "DRUG"), (23, 34, "ADVERSE_EVENT"), (42, 49, "DRUG"),
    ]
    assert all(TEXT[s["start"]:s["end"]] == s["text"] for s in parsed.prediction)


def test_ner_entities_not_in_the_text_are_hallucinations():
    raw = '```json\n{"entities": [{"text": "atorvastatin", "label": "DRUG"}, {"text": "MUSCLE PAIN", "label": "ADVERSE_EVENT"},]}\n```'
    parsed = parse_answer(NER, raw, TEXT)
    assert parsed.hallucinations == [{"text": "atorvastatin", "label": "DRUG"}]
    assert [(s["start"], s["end"], s["text"]) for s in parsed.prediction] == [(23, 34, "muscle pain")]


def test_ner_overlapping_answers_keep_the_longer_span():
    raw = '{"entities": [{"text": "pain", "label": "ADVERSE_EVENT"}, {"text": "muscle pain", "label": "ADVERSE_EVENT"}]}'
    parsed = parse_answer(NER, raw, TEXT)
    assert [(s["start"], s["end"]) for s in parsed.prediction] == [(23, 34)]


def test_ner_match_inside_a_word_is_used_only_without_a_whole_word_match():
    parsed = parse_answer(NER, '{"entities": [{"text": "pain", "label": "ADVERSE_EVENT"}]}', "painkillers gave pain")
    assert [(s["start"], s["end"]) for s in parsed.prediction] == [(17, 21)]


def test_ner_tolerates_whitespace_differences_and_a_bare_list():
    parsed = parse_answer(NER, '[{"text": "muscle  pain", "label": "ADVERSE_EVENT"}]', TEXT)
    assert [(s["start"], s["end"]) for s in parsed.prediction] == [(23, 34)]


def test_ner_empty_entity_list_is_a_valid_answer():
    parsed = parse_answer(NER, '{"entities": []}', TEXT)
    assert parsed.prediction == [] and parsed.parse_error is None


@pytest.mark.parametrize(
    ("raw", "error_part"),
    [
        ('{"entities": "Lipitor"}', "must be a list"),
        ('{"drugs": ["Lipitor"]}', "no 'entities' key"),
        ('{"entities": [{"text": "Lipitor", "label": "MEDICINE"}]}', "no usable entity"),
        ("Lipitor is a drug.", "no JSON object"),
    ],
)
def test_ner_parser_records_why_it_gave_up(raw, error_part):
    parsed = parse_answer(NER, raw, TEXT)
    assert parsed.prediction is None
    assert error_part in parsed.parse_error


def test_extract_json_prefers_an_object_with_the_wanted_key():
    assert extract_json('{"note": 1} then {"label": "x"}', prefer_key=("label",)) == {"label": "x"}
    assert extract_json("no json here") is None


def test_schema_puts_reasoning_first_and_restricts_labels():
    schema = answer_schema(CLASSIFICATION, parse_variant("cot"))
    assert list(schema["properties"]) == ["reasoning", "label"]
    assert schema["properties"]["label"]["enum"] == ["complaint", "request", "hardship_case"]
    ner_schema = answer_schema(NER, parse_variant("zero_shot"))
    assert ner_schema["properties"]["entities"]["items"]["properties"]["label"]["enum"] == ["DRUG", "ADVERSE_EVENT"]


def test_format_answer_quotes_gold_entities():
    example = {"text": TEXT, "spans": [{"start": 8, "end": 15, "label": "DRUG"}]}
    assert format_answer(NER, example) == '{"entities": [{"text": "Lipitor", "label": "DRUG"}]}'


def test_truncated_entity_list_keeps_the_complete_entities():
    raw = '{"entities": [{"text": "Lipitor", "label": "DRUG"}, {"text": "muscle pain", "label": "ADVERSE_EVENT"}, {"text": "Lip'
    parsed = parse_answer(NER, raw, TEXT, truncated=True)
    assert parsed.parse_error is None
    assert [(s["start"], s["label"]) for s in parsed.prediction] == [(8, "DRUG"), (23, "ADVERSE_EVENT"), (42, "DRUG")]


def test_truncated_classification_without_a_label_is_still_an_error():
    parsed = parse_answer(CLASSIFICATION, '{"reasoning": "They are {upset} about", "lab', "x", truncated=True)
    assert parsed.prediction is None and "cut off" in parsed.parse_error


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ('{"a": [1, 2', '{"a": [1]}'),
        ('{"a": [{"b": "}"}, {"b', '{"a": [{"b": "}"}]}'),
        ('no json', ""),
        ('{"a": 1}', '{"a": 1}'),
    ],
)
def test_close_truncated_json(text, closed):
    from workbench.core.answers import close_truncated_json

    assert close_truncated_json(text) == closed


REAL = ("payment_reverted?", "Sci-Fi/Fantasy", "Refund_pending", "Books, Comics", "5", "payment_reverted")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("payment_reverted?", "payment_reverted?"),
        ("PAYMENT_REVERTED?", "payment_reverted?"),
        ("payment reverted?", "payment_reverted?"),
        ("Payment-Reverted?", "payment_reverted?"),
        ("payment_reverted", "payment_reverted"),  # a different label, not the one with "?"
        ("Sci-Fi/Fantasy", "Sci-Fi/Fantasy"),
        ("sci-fi/fantasy", "Sci-Fi/Fantasy"),
        ("Sci Fi/Fantasy", "Sci-Fi/Fantasy"),
        ("sci_fi/fantasy", "Sci-Fi/Fantasy"),
        ("Sci-Fi", None),
        ("SciFi/Fantasy", None),
        ("refund pending", "Refund_pending"),
        ("books, comics", "Books, Comics"),
        (5, "5"),
        (True, None),
        ("payment_reverted!", None),
    ],
)
def test_normalise_label_matches_real_names_written_loosely_and_nothing_else(written, expected):
    assert normalise_label(written, REAL) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("payment_reverted?", ["payment_reverted?"]),
        ("The answer is: Sci-Fi/Fantasy.", ["Sci-Fi/Fantasy"]),
        ("**Label:** payment reverted?\nBecause the money came back.", ["payment_reverted?"]),
        ("Answer: Books, Comics.", ["Books, Comics"]),
        ('Category = "5"', ["5"]),
        ("Label: Refund_pending. Answer: Sci-Fi/Fantasy.", ["Refund_pending", "Sci-Fi/Fantasy"]),
        ("I would say fantasy.", []),
    ],
)
def test_stated_labels_reads_names_with_punctuation(raw, expected):
    assert stated_labels(raw, REAL) == expected
