"""Prompts render to exactly the expected text, and few-shot examples are chosen as documented."""

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.prompting.fewshot import ExampleSelector
from workbench.prompting.templates import format_messages, render_messages
from workbench.prompting.variants import PromptVariant, parse_variant

TASK = task_from_dict({
    "name": "triage", "kind": "classification",
    "description": "Bank messages.",
    "instructions": "Hardship beats complaint.",
    "labels": [
        {"name": "complaint", "definition": "Any dissatisfaction,\nhowever mild."},
        {"name": "request", "definition": "Anything else."},
    ],
})
NER = task_from_dict({
    "name": "ae", "kind": "ner",
    "labels": [{"name": "DRUG", "definition": "A product."}, {"name": "AE", "definition": "Harm."}],
})


def test_zero_shot_renders_exactly():
    messages = render_messages(TASK, parse_variant("zero_shot"), "The app is slow.")
    assert messages == [
        {
            "role": "system",
            "content": (
                "You are a careful annotator for triage. Bank messages.\n\n"
                "Hardship beats complaint.\n\n"
                "Reply with JSON only, in this form:\n"
                '{"label": "<one of: complaint, request>"}'
            ),
        },
        {"role": "user", "content": "Labels: complaint, request\nText: The app is slow."},
    ]


def test_definitions_few_shot_cot_renders_exactly():
    examples = [{"text": "Card please.", "label": "request"}, {"text": "Rubbish app.", "label": "complaint"}]
    messages = render_messages(TASK, parse_variant("definitions+few_shot+cot"), "The app is slow.", examples)
    assert messages[0]["content"] == (
        "You are a careful annotator for triage. Bank messages.\n\n"
        "Hardship beats complaint.\n\n"
        "Use these label definitions. They are the client's own and override the everyday meaning of the words:\n"
        "- complaint: Any dissatisfaction, however mild.\n"
        "- request: Anything else.\n\n"
        "Think step by step about which label applies, then give the label. Reply with JSON only, in this form:\n"
        '{"reasoning": "<one to three sentences>", "label": "<one of: complaint, request>"}'
    )
    assert messages[1]["content"] == (
        "Labelled examples:\n\n"
        "Text: Card please.\n"
        'Answer: {"label": "request"}\n\n'
        "Text: Rubbish app.\n"
        'Answer: {"label": "complaint"}\n\n'
        "Now label this text.\n"
        "Labels: complaint, request\n"
        "Text: The app is slow."
    )


def test_ner_prompt_renders_exactly_and_shows_gold_entities_as_answers():
    examples = [{"text": "Took aspirin.", "spans": [{"start": 5, "end": 12, "label": "DRUG"}]}]
    messages = render_messages(NER, parse_variant("few_shot"), "Rash after ibuprofen.", examples)
    assert messages[0]["content"] == (
        "You are a careful annotator for ae.\n\n"
        "Find every entity of these types in the text: DRUG, AE. "
        "Copy each entity's text exactly as it appears in the input.\n\n"
        'Reply with JSON only: an object with "entities", a list of objects each with "text" '
        '(the entity, copied from the input) and "label" (one of DRUG, AE).\n'
        "If there are no entities, the list is empty."
    )
    assert messages[1]["content"] == (
        "Labelled examples:\n\n"
        "Text: Took aspirin.\n"
        'Answer: {"entities": [{"text": "aspirin", "label": "DRUG"}]}\n\n'
        "Now annotate this text.\n"
        "Entity types: DRUG, AE\n"
        "Text: Rash after ibuprofen."
    )


def test_input_text_is_passed_verbatim_not_escaped():
    text = "Fees <b>&</b> {{ not a template }}\n\n\n  end"
    messages = render_messages(TASK, parse_variant("zero_shot"), text)
    assert messages[1]["content"].endswith("Text: " + text.strip())


def test_custom_template_folder_and_missing_template(tmp_path):
    (tmp_path / "short.classification.v1.jinja").write_text("{% block system %}old{% endblock %}{% block user %}{% endblock %}")
    (tmp_path / "short.classification.v2.jinja").write_text(
        "{% block system %}Pick from {{ label_names | join('/') }}.{% endblock %}"
        "{% block user %}{{ text }}{% endblock %}"
    )
    variant = PromptVariant(name="short", template="short")
    assert render_messages(TASK, variant, "hi", template_dir=tmp_path) == [
        {"role": "system", "content": "Pick from complaint/request."},
        {"role": "user", "content": "hi"},
    ]
    # The highest version is the default; a pinned version is used as named.
    pinned = PromptVariant(name="short_v1", template="short.v1")
    assert render_messages(TASK, pinned, "hi", template_dir=tmp_path)[0]["content"] == "old"
    with pytest.raises(FileNotFoundError, match=r"short\.ner\.v<N>\.jinja"):
        render_messages(NER, variant, "hi", template_dir=tmp_path)


def test_format_messages_labels_roles():
    text = format_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "--- system ---\nS\n\n--- user ---\nU"


POOL = pd.DataFrame({
    "example_id": [f"e{i}" for i in range(6)],
    "text": [
        "my card was declined at the shop",
        "please send a new card",
        "the app crashes every morning",
        "how do I change my address",
        "your fees are too high",
        "card declined again today at the shop",
    ],
    "label": ["complaint", "request", "complaint", "request", "complaint", "complaint"],
})


def test_fixed_examples_are_the_same_for_every_input_and_cover_labels():
    selector = ExampleSelector(TASK, POOL, seed=3)
    first = selector.select("anything", 2)
    assert [row["example_id"] for row in first] == [row["example_id"] for row in selector.select("other", 2)]
    assert {row["label"] for row in first} == {"complaint", "request"}


def test_similar_examples_rank_by_overlap_and_never_include_the_input_itself():
    selector = ExampleSelector(TASK, POOL)
    chosen = selector.select("my card was declined at the shop", 2, "similar")
    ids = [row["example_id"] for row in chosen]
    assert "e0" not in ids
    assert ids[-1] == "e5"  # the most similar example sits next to the input


MULTI = task_from_dict({
    "name": "topics", "kind": "multilabel", "instructions": "Tag what the review is about.",
    "labels": [{"name": "price", "definition": "Cost."}, {"name": "delivery"}],
})


def test_tuned_classification_prompt_has_instructions_and_text_only():
    messages = render_messages(TASK, parse_variant("tuned"), "The app is slow.")
    assert messages == [
        {
            "role": "system",
            "content": (
                "You are a careful annotator for triage. Bank messages.\n\n"
                "Hardship beats complaint.\n\n"
                "Reply with JSON only, in this form:\n"
                '{"label": "<label>"}'
            ),
        },
        {"role": "user", "content": "Text: The app is slow."},
    ]


def test_tuned_cot_prompt_asks_for_reasoning_first_and_still_lists_no_labels():
    messages = render_messages(TASK, parse_variant("tuned+cot"), "The app is slow.")
    assert messages[0]["content"] == (
        "You are a careful annotator for triage. Bank messages.\n\n"
        "Hardship beats complaint.\n\n"
        "Think step by step about which label applies, then give the label. Reply with JSON only, in this form:\n"
        '{"reasoning": "<one to three sentences>", "label": "<label>"}'
    )
    assert messages[1]["content"] == "Text: The app is slow."


def test_tuned_multilabel_prompt_renders_exactly():
    messages = render_messages(MULTI, parse_variant("tuned"), "Cheap but late.")
    assert messages == [
        {
            "role": "system",
            "content": (
                "You are a careful annotator for topics.\n\n"
                "Give every label that applies to the text: none, one or several.\n\n"
                "Tag what the review is about.\n\n"
                "Reply with JSON only, in this form:\n"
                '{"labels": [<zero or more labels>]}\n'
                "If no label applies, the list is empty."
            ),
        },
        {"role": "user", "content": "Text: Cheap but late."},
    ]


def test_tuned_ner_prompt_names_the_entity_types_once():
    messages = render_messages(NER, parse_variant("tuned"), "Rash after ibuprofen.")
    assert messages == [
        {
            "role": "system",
            "content": (
                "You are a careful annotator for ae.\n\n"
                "Find every entity of these types in the text: DRUG, AE. "
                "Copy each entity's text exactly as it appears in the input.\n\n"
                'Reply with JSON only: an object with "entities", a list of objects each with "text" '
                '(the entity, copied from the input) and "label" (its type).\n'
                "If there are no entities, the list is empty."
            ),
        },
        {"role": "user", "content": "Text: Rash after ibuprofen."},
    ]


INTENTS = task_from_dict({
    "name": "intents", "kind": "classification", "instructions": "Give the customer's intent.",
    "labels": [{"name": f"intent_number_{index}", "definition": f"The customer asks about topic {index}."}
               for index in range(150)],
})


def test_tuned_prompt_on_150_labels_is_a_small_fraction_of_zero_shots():
    from workbench.prompting.budget import prompt_tokens

    text = "how do i reset my online banking password"
    zero_shot = prompt_tokens(render_messages(INTENTS, parse_variant("zero_shot"), text))
    tuned = prompt_tokens(render_messages(INTENTS, parse_variant("tuned"), text))
    assert zero_shot > 1500  # the label list, twice
    assert tuned < 120 and tuned * 20 < zero_shot  # estimated: 2,975 against 93
    assert "intent_number_" not in "".join(m["content"] for m in render_messages(INTENTS, parse_variant("tuned"), text))


@pytest.mark.parametrize(("task", "answer", "text", "expected"), [
    (TASK, '{"label": "request"}', "Card please.", "request"),
    (MULTI, '{"labels": ["price", "delivery"]}', "Cheap but late.", ["price", "delivery"]),
    (NER, '{"entities": [{"text": "ibuprofen", "label": "DRUG"}]}', "Rash after ibuprofen.",
     [{"start": 11, "end": 20, "label": "DRUG"}]),
])
def test_tuned_answers_have_the_same_schema_and_parse_with_the_same_kind(task, answer, text, expected):
    from workbench.prompting.runner import run_variants
    from workbench.prompting.templates import answer_schema
    from workbench.testing.fake_model import FakeModel

    assert answer_schema(task, parse_variant("tuned")) == answer_schema(task, parse_variant("zero_shot"))
    assert answer_schema(task, parse_variant("tuned+cot")) == answer_schema(task, parse_variant("cot"))
    data = pd.DataFrame({"example_id": ["x1"], "text": [text], task.kind.target_column: [expected]})
    predictions = run_variants(task, data, ["tuned"], FakeModel(lambda request: answer), progress=False)
    assert predictions["parse_error"].isna().all(), predictions["parse_error"].tolist()
    assert task.kind.same_answer(predictions["prediction"].iloc[0], expected)
