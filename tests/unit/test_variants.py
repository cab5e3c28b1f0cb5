"""Variant names map to ingredients; bad names say what is allowed."""

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
