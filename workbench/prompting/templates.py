"""Render prompt variants into chat messages from template files.

Templates live in ``workbench/prompting/templates/<template>.<kind>.v<N>.jinja`` (or any folder
given as `template_dir`); the version is part of the file name, so a run records exactly which
file made its prompts. A variant's `template` is ``default`` (the highest version there is) or
``default.v1`` (that version); ``tuned`` (the `tuned` ingredient) is the compact prompt of a
fine-tuned model, the task's instructions and the text with no label list and no definitions
(NER: the entity types in one line), which its answers' schema and parser do not depend on.
Each file has a ``system`` block and a ``user`` block, rendered separately into
the two chat messages. Changing a template changes the rendered messages, and so the cache key:
an answer made with an old template is never served for a new one.

Templates see the `Task` (``task``), the `PromptVariant` (``variant``), the input ``text``, the
few-shot ``examples`` (``text`` and the JSON ``answer``), ``label_names`` (the names as written),
and the labels as prompts show them (`prompt_labels`): ``labels`` (each with ``name``, ``shown``
and ``definition``), ``label_list`` (every shown name, joined with ", "), ``labels_quoted``,
``undefined_list`` (the shown names of the labels without a definition, joined; "" when every label
has one) and ``any_definitions``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound

from workbench.core.answers import REASONING_MAX_CHARS
from workbench.core.task import Task
from workbench.prompting.variants import PromptVariant

TEMPLATE_DIR = Path(__file__).parent / "templates"

Message = dict[str, str]

# Names a comma-separated list can show bare: words of letters, digits, "_" and "-", single spaces.
_PLAIN_LABEL = re.compile(r"^[^\W_][\w\-]*(?: [\w\-]+)*$")


@dataclass(frozen=True)
class PromptLabel:
    """One label as a prompt shows it: `name` as written, `shown` as it appears in the prompt."""

    name: str
    shown: str
    definition: str


@lru_cache(maxsize=64)  # the same task renders thousands of prompts
def prompt_labels(task: Task) -> tuple[tuple[PromptLabel, ...], bool]:
    """The task's labels as prompts show them, and whether their names are quoted.

    When every name is plain (words of letters, digits, ``_`` and ``-``, single spaces) names are
    shown as written: ``complaint, request``. When any name is not (``payment_reverted?``,
    ``Sci-Fi/Fantasy``, ``Books, Comics``), every name is shown as a JSON string, exactly as the
    answer must spell it: ``"payment_reverted?", "Refund_pending"``. Quoting all or none keeps the
    list unambiguous and the prompts of plain label sets unchanged.
    """
    quoted = not all(_PLAIN_LABEL.match(name) for name in task.label_names)
    shown = [json.dumps(name, ensure_ascii=False) if quoted else name for name in task.label_names]
    return tuple(PromptLabel(label.name, text, label.definition) for label, text in zip(task.labels, shown)), quoted


@lru_cache(maxsize=32)
def _environment(template_dir: str) -> Environment:
    # Prompts are plain text, not HTML: no autoescaping; StrictUndefined turns typos into errors.
    return Environment(
        loader=FileSystemLoader(template_dir),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def template_file(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> str:
    """The file name of `variant`'s template for the task's kind, e.g. ``default.ner.v1.jinja``.

    ``template: default`` takes the highest version in the folder; ``default.v1`` that version.
    """
    folder = Path(template_dir or TEMPLATE_DIR)
    base, _, version = variant.template.partition(".v")
    if version:
        return f"{base}.{task.kind.name}.v{version}.jinja"
    pattern = re.compile(rf"^{re.escape(base)}\.{re.escape(task.kind.name)}\.v(\d+)\.jinja$")
    versions = sorted((int(match.group(1)), path.name) for path in folder.glob(f"{base}.{task.kind.name}.v*.jinja")
                      if (match := pattern.match(path.name)))
    if not versions:
        raise FileNotFoundError(
            f"no prompt template {base}.{task.kind.name}.v<N>.jinja in {folder} for variant {variant.name!r}"
        )
    return versions[-1][1]


def load_template(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> Template:
    """The Jinja template for `variant` and the task's kind (reloaded when the file changes)."""
    folder = str(template_dir or TEMPLATE_DIR)
    name = template_file(task, variant, template_dir)
    try:
        template = _environment(folder).get_template(name)
    except TemplateNotFound:
        raise FileNotFoundError(f"prompt template {name} not found in {folder}") from None
    missing = {"system", "user"} - set(template.blocks)
    if missing:
        raise ValueError(f"prompt template {name} must define blocks 'system' and 'user'; missing {sorted(missing)}")
    return template


def render_messages(
    task: Task,
    variant: PromptVariant,
    text: str,
    examples: Sequence[dict[str, Any]] = (),
    template_dir: str | Path | None = None,
) -> list[Message]:
    """Render the chat messages for one input `text`.

    `examples` are gold rows (``text`` and ``label`` or ``spans``) shown as few-shot examples.
    Returns ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``.
    """
    template = load_template(task, variant, template_dir)
    labels, quoted = prompt_labels(task)
    context = template.new_context(
        {
            "task": task,
            "variant": variant,
            "label_names": list(task.label_names),
            "labels": labels,
            "label_list": ", ".join(label.shown for label in labels),
            "labels_quoted": quoted,
            "undefined_list": ", ".join(label.shown for label in labels if not label.definition),
            "any_definitions": any(label.definition for label in labels),
            "text": text,
            "examples": [{"text": example["text"], "answer": task.kind.format_answer(task, example)} for example in examples],
        }
    )
    messages = []
    for role in ("system", "user"):
        content = "".join(template.blocks[role](context)).strip()
        messages.append({"role": role, "content": content})
    return messages


def format_messages(messages: Sequence[Message]) -> str:
    """Messages as readable text, for previewing prompts in a notebook."""
    return "\n\n".join(f"--- {message['role']} ---\n{message['content']}" for message in messages)


def answer_schema(task: Task, variant: PromptVariant) -> dict[str, Any]:
    """JSON schema of the answer, used for constrained decoding where the endpoint supports it.

    Property order matters: constrained decoders emit properties in schema order, so
    ``reasoning`` comes before the answer it should inform. Reasoning is capped at
    `REASONING_MAX_CHARS` so that a rambling small model still reaches its answer before the token
    limit.
    """
    properties: dict[str, Any] = {}
    if variant.cot:
        properties["reasoning"] = {"type": "string", "maxLength": REASONING_MAX_CHARS}
    properties.update(task.kind.answer_properties(task))
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
