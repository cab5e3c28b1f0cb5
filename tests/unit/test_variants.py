"""Variant names map to ingredients; bad names say what is allowed."""

import re

import pytest

from workbench.prompting.variants import PromptVariant, parse_variant


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("zero_shot", PromptVariant("zero_shot")),
        ("definitions", PromptVariant("definitions", definitions=True)),
        ("few_shot", PromptVariant("few_shot", few_shot=4)),
        ("few_shot8_similar", PromptVariant("few_shot8_similar", few_shot=8, example_selection="similar")),
        ("definitions+few_shot2+cot", PromptVariant("definitions+few_shot2+cot", definitions=True, few_shot=2, cot=True)),
    ],
)
def test_names_map_to_ingredients(name, expected):
    assert parse_variant(name) == expected


def test_mapping_gets_a_derived_name():
    assert parse_variant({"definitions": True, "cot": True}).name == "definitions+cot"
    assert parse_variant({"name": "mine", "few_shot": 3}).few_shot == 3


@pytest.mark.parametrize("bad", ["fewshot", "few_shot_x", "zero_shot+cot", "", "definitions+magic"])
def test_bad_names_explain_what_is_allowed(bad):
    with pytest.raises(ValueError, match="variant"):
        parse_variant(bad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tuned", PromptVariant("tuned", template="tuned")),
        ("tuned+cot", PromptVariant("tuned+cot", template="tuned", cot=True)),
        ("tuned+sc3", PromptVariant("tuned+sc3", template="tuned", samples=3)),
    ],
)
def test_tuned_selects_the_compact_template_and_combines_with_how_the_model_answers(name, expected):
    assert parse_variant(name) == expected


def test_a_tuned_mapping_is_named_tuned():
    assert parse_variant({"template": "tuned", "cot": True}).name == "tuned+cot"
    assert parse_variant({"template": "tuned.v1"}).name == "tuned"


@pytest.mark.parametrize("bad", ["tuned+few_shot", "few_shot_similar+tuned", "tuned+definitions", "zero_shot+tuned"])
def test_tuned_refuses_what_its_prompt_does_not_show(bad):
    with pytest.raises(ValueError, match=rf"variant '{re.escape(bad)}'.*(no definitions and no examples|zero_shot cannot)"):
        parse_variant(bad)


def test_a_tuned_variant_built_directly_is_checked_too():
    with pytest.raises(ValueError, match="tuned prompt shows no definitions"):
        PromptVariant("mine", template="tuned", few_shot=2)
