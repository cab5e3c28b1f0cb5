"""Prompt variants: which prompt ingredients a run uses.

A variant switches ingredients on or off; the wording lives in template files under
``workbench/prompting/templates/``. Variants are named by their ingredients joined with ``+``::

    zero_shot                    instructions and labels only
    definitions                  + the client's definition of each label
    few_shot                     + k labelled examples (fixed, or most similar to the input)
    cot                          reason first, then answer
    sc5                          self-consistency: 5 sampled answers, the majority wins
    definitions+few_shot+cot     any combination (cot+sc5 is the classic self-consistency)
    tuned                        the compact prompt of a fine-tuned model: instructions and the text,
                                 no label list (NER: the entity types in one line), no definitions
    template=support_v2          your own template file, support_v2.<kind>.v<N>.jinja, found in the
                                 experiment's templates: folder (template=support_v2.v1 pins a version);
                                 combines with the other ingredients: template=support_v2+few_shot3

``tuned`` selects the ``tuned`` template family. It combines with ``cot`` and ``sc<n>`` (how the
model answers), not with ``definitions`` or ``few_shot``: a tuned model learned the labels from
rows rendered without them, and showing them again would make its prompts unlike its training
rows. Its answers are the same JSON, under the same schema, parsed by the same task kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from workbench.core.errors import InputError

ExampleSelection = Literal["fixed", "similar"]

TUNED = "tuned"  # the ingredient, and the template family it selects
DEFAULT_TEMPLATE = "default"
TEMPLATE_PART = "template="  # the ingredient naming a template family: template=support_v2

# A family name is part of a file name (<name>.<kind>.v<N>.jinja): no dots, slashes or spaces.
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.v\d+)?$")


@dataclass(frozen=True)
class PromptVariant:
    """One way of prompting for a task.

    `few_shot` is the number of labelled examples shown (0 for none); `example_selection` is
    ``"fixed"`` (the same examples for every input, balanced across labels) or ``"similar"`` (the
    examples most similar to the input by TF-IDF cosine). `template` names the template file
    family (``<template>.<kind>.v<N>.jinja``). `samples` > 1 is self-consistency: that many
    answers are sampled at `sample_temperature` for every example and repeat, and the task kind's
    majority vote is the prediction, with the vote share as its confidence.
    """

    name: str
    definitions: bool = False
    few_shot: int = 0
    example_selection: ExampleSelection = "fixed"
    cot: bool = False
    template: str = DEFAULT_TEMPLATE
    samples: int = 1
    sample_temperature: float = 0.7

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not _TEMPLATE_NAME.match(self.template):
            raise InputError(
                f"variant {self.name!r}: template {self.template!r} is not a template name; use the <name> of a "
                "file <name>.<kind>.v<N>.jinja (letters, digits, '_' and '-'), e.g. support_v2, or "
                "support_v2.v1 for that version"
            )
        if self.samples < 1:
            raise InputError(f"variant {self.name!r}: samples must be >= 1, got {self.samples}")
        if self.samples > 1 and not 0 < self.sample_temperature <= 2:
            raise InputError(
                f"variant {self.name!r}: self-consistency samples at a temperature in (0, 2], "
                f"got {self.sample_temperature}; identical greedy answers cannot vote"
            )
        if self.few_shot < 0:
            raise InputError(f"variant {self.name!r}: few_shot must be >= 0, got {self.few_shot}")
        if self.template.partition(".v")[0] == TUNED and (self.definitions or self.few_shot):
            raise InputError(
                f"variant {self.name!r}: the tuned prompt shows no definitions and no examples (the tuned model "
                "learned the labels from rows without them); use 'tuned', 'tuned+cot' or 'tuned+sc<n>', or a "
                "default-template variant for definitions and few-shot examples"
            )
        if self.example_selection not in ("fixed", "similar"):
            raise InputError(
                f"variant {self.name!r}: example_selection must be 'fixed' or 'similar', "
                f"got {self.example_selection!r}"
            )


def parse_variant(spec: str | dict | PromptVariant, *, default_k: int = 4) -> PromptVariant:
    """Build a `PromptVariant` from a name such as ``"definitions+few_shot+cot"`` or a mapping.

    A mapping takes the dataclass fields (``name`` is derived when omitted, with ``template=<name>``
    in it for a template other than default and tuned). In names, ``template=support_v2`` selects
    the template family ``support_v2``;
    ``few_shot`` uses `default_k` examples selected as ``fixed``; ``few_shot_similar`` selects the
    most similar examples; ``few_shot8`` asks for 8.
    """
    if isinstance(spec, PromptVariant):
        return spec
    if isinstance(spec, dict):
        fields = dict(spec)
        if "name" not in fields:
            base = parse_variant("+".join(_ingredient_names(fields, default_k)) or "zero_shot", default_k=default_k)
            fields["name"] = base.name
        try:
            return PromptVariant(**fields)
        except TypeError as exc:
            raise InputError(f"variant {spec!r} has unknown fields: {exc}") from None
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"a variant is a name like 'definitions+few_shot' or a mapping, got {spec!r}")

    variant = PromptVariant(name=spec.strip())
    for part in spec.strip().split("+"):
        part = part.strip()
        if part == "zero_shot":
            continue
        if part == "definitions":
            variant = replace(variant, definitions=True)
        elif part == TUNED or part.startswith(TEMPLATE_PART):
            if variant.template != DEFAULT_TEMPLATE:
                raise InputError(f"variant {spec!r}: name one template only (tuned or template=<name>), got two")
            variant = replace(variant, template=TUNED if part == TUNED else part[len(TEMPLATE_PART):].strip())
        elif part == "cot":
            variant = replace(variant, cot=True)
        elif part.startswith("sc") and part[2:].isdigit() and int(part[2:]) >= 2:
            variant = replace(variant, samples=int(part[2:]))
        elif part.startswith("few_shot"):
            rest = part[len("few_shot"):]
            selection: ExampleSelection = "fixed"
            if rest.endswith("_similar"):
                selection, rest = "similar", rest[: -len("_similar")]
            if rest and not rest.isdigit():
                raise InputError(_unknown_part(spec, part))
            variant = replace(variant, few_shot=int(rest) if rest else default_k, example_selection=selection)
        else:
            raise InputError(_unknown_part(spec, part))
    parts = {part.strip() for part in spec.split("+")}
    if "zero_shot" in parts and (variant.definitions or variant.few_shot or variant.cot or variant.samples > 1
                                 or variant.template != DEFAULT_TEMPLATE):
        raise InputError(f"variant {spec!r}: zero_shot cannot be combined with other ingredients")
    return variant


def _ingredient_names(fields: dict, default_k: int) -> list[str]:
    names = []
    template = str(fields.get("template", DEFAULT_TEMPLATE))
    if template.partition(".v")[0] == TUNED:
        names.append(TUNED)
    elif template.partition(".v")[0] != DEFAULT_TEMPLATE:
        # A user's template is part of the name, so it never collides with the packaged variant.
        names.append(TEMPLATE_PART + template)
    if fields.get("definitions"):
        names.append("definitions")
    if fields.get("few_shot"):
        # The name says what was shown, so two mappings that differ in k or selection never collide.
        k = "" if fields["few_shot"] == default_k else str(fields["few_shot"])
        names.append(f"few_shot{k}" + ("_similar" if fields.get("example_selection") == "similar" else ""))
    if fields.get("cot"):
        names.append("cot")
    if fields.get("samples", 1) > 1:
        names.append(f"sc{fields['samples']}")
    return names


def _unknown_part(spec: str, part: str) -> str:
    return (
        f"variant {spec!r}: unknown ingredient {part!r}; use zero_shot, definitions, cot, few_shot, "
        "few_shot<k>, few_shot<k>_similar, sc<n> (n >= 2 sampled answers), tuned or template=<name> (your own "
        "<name>.<kind>.v<N>.jinja) joined with '+'"
    )
