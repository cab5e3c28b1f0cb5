"""Render prompt variants into chat messages from template files.

Templates live in ``workbench/prompting/templates/<template>.<kind>.v<N>.jinja``; the version is
part of the file name, so a run records exactly which file made its prompts. A `template_dir` (an
experiment config's ``templates:`` folder) is searched first, then the packaged folder, so a user's
folder may hold only their own templates and still use ``default`` and ``tuned``. A variant's
`template` is ``default`` (the highest version in the first folder that holds any version of it,
so a user's family hides the packaged one of that name entirely) or ``default.v1`` (that version,
from the first folder that has the file); ``tuned`` (the `tuned` ingredient) is the compact prompt of a
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
has one) and ``any_definitions`` (`TEMPLATE_VARIABLES`). `check_template` refuses a file that
is not valid Jinja, lacks either block, or uses any other variable, before any model is called.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError, meta, nodes

from workbench.core.answers import REASONING_MAX_CHARS
from workbench.core.errors import InputError
from workbench.core.task import Task
from workbench.prompting.variants import PromptVariant

TEMPLATE_DIR = Path(__file__).parent / "templates"

# What `render_messages` passes to every template; a template that uses anything else is refused.
TEMPLATE_VARIABLES = frozenset({
    "task", "variant", "text", "examples", "label_names", "labels", "label_list", "labels_quoted",
    "undefined_list", "any_definitions",
})
_BLOCKS = ("system", "user")

Message = dict[str, str]


class PromptTemplateError(InputError):
    """A prompt template that cannot be used: not valid Jinja, a block missing, an unknown variable."""


class PromptTemplateNotFound(PromptTemplateError, FileNotFoundError):
    """No file for a variant's template in any folder searched."""

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


def template_dirs(template_dir: str | Path | None = None) -> tuple[Path, ...]:
    """The folders searched for templates, in order: `template_dir` (when given), then `TEMPLATE_DIR`."""
    packaged = TEMPLATE_DIR.resolve()
    folders = [Path(template_dir).resolve()] if template_dir is not None else []
    return tuple(dict.fromkeys([*folders, packaged]))


@lru_cache(maxsize=32)
def _environment(folders: tuple[str, ...]) -> Environment:
    # Prompts are plain text, not HTML: no autoescaping; StrictUndefined turns typos into errors.
    # One loader over the search path, so a name resolves to the first folder that has it.
    return Environment(
        loader=FileSystemLoader(list(folders)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def find_template(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> Path:
    """The file `variant`'s template for the task's kind is read from, searching `template_dirs`.

    ``template: default`` takes the highest version in the first folder holding any version of
    ``default.<kind>``; ``default.v1`` takes ``default.<kind>.v1.jinja`` from the first folder
    that has it. Raises `PromptTemplateNotFound` naming the variant, the folders searched and the
    templates each holds.
    """
    folders = template_dirs(template_dir)
    kind = task.kind.name
    base, _, version = variant.template.partition(".v")
    if version:
        wanted = f"{base}.{kind}.v{version}.jinja"
        for folder in folders:
            if (folder / wanted).is_file():
                return folder / wanted
    else:
        wanted = f"{base}.{kind}.v<N>.jinja"
        pattern = re.compile(rf"^{re.escape(base)}\.{re.escape(kind)}\.v(\d+)\.jinja$")
        for folder in folders:
            versions = sorted((int(match.group(1)), path.name) for path in folder.glob(f"{base}.{kind}.v*.jinja")
                              if (match := pattern.match(path.name)))
            if versions:
                return folder / versions[-1][1]
    searched = "; ".join(f"{folder}{' (packaged)' if folder == TEMPLATE_DIR.resolve() else ''}: {_listing(folder)}"
                         for folder in folders)
    example = wanted if version else f"{base}.{kind}.v1.jinja"
    where = (f"add {example} to {folders[0]}" if template_dir is not None
             else f"put {example} in a folder and name it in the experiment config's templates: (or pass template_dir)")
    raise PromptTemplateNotFound(
        f"variant {variant.name!r}: no prompt template {wanted} (template {variant.template!r}, task kind {kind!r}); "
        f"searched {searched}. Fix the variant's template name, or {where}"
    )


def _listing(folder: Path) -> str:
    if not folder.is_dir():
        return "does not exist"
    names = sorted(path.name for path in folder.glob("*.jinja"))
    return ", ".join(names) if names else "no .jinja files"


def template_file(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> str:
    """The file name of `variant`'s template for the task's kind, e.g. ``default.ner.v1.jinja``
    (see `find_template` for which version and folder)."""
    return find_template(task, variant, template_dir).name


def check_template(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> Path:
    """Check that `variant`'s template can render, without rendering it; returns its file.

    Raises `PromptTemplateNotFound` when no folder holds it, and `PromptTemplateError` when it is
    not valid Jinja, lacks the ``system`` or ``user`` block, or uses a variable outside
    `TEMPLATE_VARIABLES` (each message names the file and says how to fix it).
    """
    path = find_template(task, variant, template_dir)
    stat = path.stat()
    problem = _template_problem(str(path), stat.st_mtime_ns, stat.st_size)
    if problem:
        raise PromptTemplateError(f"variant {variant.name!r}: prompt template {path} {problem}")
    return path


@lru_cache(maxsize=128)  # keyed by the file's modification time and size: an edited file is checked again
def _template_problem(path: str, _mtime_ns: int, _size: int) -> str | None:
    try:
        source = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
    try:
        tree = _environment(()).parse(source)  # the same lexer settings as rendering
    except TemplateSyntaxError as exc:
        return (f"is not valid Jinja: line {exc.lineno}: {exc.message}. Fix that line (Jinja writes "
                "{{ variable }}, {% if ... %}...{% endif %}, {% for ... %}...{% endfor %}, {% block name %}...{% endblock %})")
    blocks = {block.name for block in tree.find_all(nodes.Block)}
    missing = [name for name in _BLOCKS if name not in blocks]
    if missing:
        return (f"has no {' and no '.join(repr(name) for name in missing)} block; a prompt template needs "
                "{% block system %}...{% endblock %} (the system message) and {% block user %}...{% endblock %} "
                f"(the user message): add {'them' if len(missing) > 1 else 'it'}")
    unknown = sorted(meta.find_undeclared_variables(tree) - TEMPLATE_VARIABLES)
    if unknown:
        hints = [f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, TEMPLATE_VARIABLES, 1))
                 else repr(name) for name in unknown]
        return (f"uses {'variables' if len(unknown) > 1 else 'variable'} {', '.join(hints)}, which the renderer does "
                f"not provide; the variables available are {', '.join(sorted(TEMPLATE_VARIABLES))}: rename "
                f"{'them' if len(unknown) > 1 else 'it'} to one of these")
    return None


def load_template(task: Task, variant: PromptVariant, template_dir: str | Path | None = None) -> Template:
    """The Jinja template for `variant` and the task's kind, checked by `check_template` (reloaded
    when the file changes)."""
    path = check_template(task, variant, template_dir)
    folders = tuple(str(folder) for folder in template_dirs(template_dir))
    # The search path finds the same file `find_template` did: no earlier folder holds this name.
    return _environment(folders).get_template(path.name)


def template_context(
    task: Task, variant: PromptVariant, text: str, examples: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """What a template sees (`TEMPLATE_VARIABLES`, see the module docstring)."""
    labels, quoted = prompt_labels(task)
    return {
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
    context = template.new_context(template_context(task, variant, text, examples))
    messages = []
    for role in _BLOCKS:
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
