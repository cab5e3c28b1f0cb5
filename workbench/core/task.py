"""Task specifications: what the model must do, in the client's own words.

A task is read from YAML or JSON and validated before anything else runs::

    name: complaint_triage
    kind: classification          # or: ner, multilabel
    description: ...
    instructions: |
      ...
    labels:
      - name: complaint
        definition: |
          The client's meaning, which may contradict everyday usage.
      - name: payment_reverted?   # any name a public label set uses; the definition is optional

Label names are kept exactly as written (in prompts, the answer schema, predictions, scores,
reports, Argilla and exports); `label_name_problem` and `label_set_problems` say which few names
cannot work, and why.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.core.answers import UNPARSED, normalise_label
from workbench.core.errors import InputError, MissingInputError
from workbench.core.kinds import KINDS, TaskKind, get_kind
from workbench.core.kinds.ner_scoring import OVERALL

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")  # task names (they name folders and datasets)

NONE_OF_THESE = "(none)"
"""The value of the "None of these" option Argilla offers in a multi-label question
(`workbench.annotation.records`); reserved, so that no label can be mistaken for it."""

RESERVED_LABELS: dict[str, str] = {
    UNPARSED: "it stands for an answer that could not be read (confusion matrices, answer keys)",
    OVERALL: "it names the overall row of NER scores",
    NONE_OF_THESE: "it is the \u201cNone of these\u201d option of multi-label annotation in Argilla",
}
"""Names a label cannot have, with the reason: workbench vocabulary that shares a column with
label names. Compared exactly (``all`` or ``All`` is a fine label)."""

MAX_LABEL_CHARS = 200  # Argilla 2.x refuses option values longer than this.
# Characters that cannot be written inside a one-line name: control characters (newlines and tabs
# among them), line and paragraph separators, and lone surrogates (not encodable as UTF-8).
_UNWRITABLE_CATEGORIES = {"Cc": "a control character", "Zl": "a line separator",
                          "Zp": "a paragraph separator", "Cs": "a lone surrogate"}


class TaskSpecError(InputError):
    """A task specification is missing something or contradicts itself."""


class _LabelModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    definition: str | None = ""

    @field_validator("name", mode="before")
    @classmethod
    def _label_name_is_text(cls, value: Any) -> Any:
        if isinstance(value, (bool, int, float)) or value is None:
            # YAML reads `- name: 1` as a number and `- name: yes` as true: say how to keep the text.
            raise InputError(
                f"label name {value!r} is a {type(value).__name__}, not text; quote it in the task "
                f"file (name: \"{value}\") so that it is kept exactly as written"
            )
        return value

    @field_validator("name")
    @classmethod
    def _label_name_can_work(cls, value: str) -> str:
        problem = label_name_problem(value)
        if problem:
            raise InputError(problem)
        return value

    @field_validator("definition")
    @classmethod
    def _definition_stripped(cls, value: str | None) -> str:
        # No definition and a blank one mean the same: the label's name is all the model gets.
        return (value or "").strip()


class _TaskModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    description: str = ""
    instructions: str = ""
    labels: list[_LabelModel] = Field(min_length=2)

    @field_validator("kind")
    @classmethod
    def _kind_is_known(cls, value: str) -> str:
        if value not in KINDS:
            raise InputError(f"kind {value!r} is not one of {sorted(KINDS)}")
        return value

    @field_validator("name")
    @classmethod
    def _task_name_is_plain(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise InputError(f"task name {value!r} must be a plain identifier (letters, digits, _ or -)")
        return value


@dataclass(frozen=True)
class Label:
    """One label and the client's definition of it.

    `definition` is ``""`` when the task file gives none (missing, null or blank): it is always a
    string, so everything that shows it can, and ``if label.definition`` asks whether there is one.
    """

    name: str
    definition: str = ""


@dataclass(frozen=True)
class Task:
    """A validated task: its kind, labels with definitions, and instructions to the model.

    `kind` is the `workbench.core.kinds.TaskKind` that owns everything kind-specific
    (``str(task.kind)`` is its name, as written in the task file).
    """

    name: str
    kind: TaskKind
    labels: tuple[Label, ...]
    description: str = ""
    instructions: str = ""

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def undefined_labels(self) -> tuple[str, ...]:
        """Names of the labels that have no definition, in task order."""
        return tuple(label.name for label in self.labels if not label.definition)

    def definition(self, label: str) -> str:
        """The client's definition of `label` (``""`` when it has none); KeyError for an unknown label."""
        for candidate in self.labels:
            if candidate.name == label:
                return candidate.definition
        raise KeyError(f"task {self.name!r} has no label {label!r}; labels are {self.label_names}")


def task_from_dict(data: dict, *, source: str = "task") -> Task:
    """Validate a task specification given as a mapping and return a `Task`."""
    try:
        model = _TaskModel.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise TaskSpecError(f"{source} is not a valid task specification: {problems}") from None
    problems = label_set_problems([label.name for label in model.labels])
    if problems:
        raise TaskSpecError(f"{source} is not a valid task specification: " + "; ".join(problems))
    return Task(
        name=model.name,
        kind=get_kind(model.kind),
        labels=tuple(Label(label.name, label.definition) for label in model.labels),
        description=model.description.strip(),
        instructions=model.instructions.strip(),
    )


def label_name_problem(name: str) -> str | None:
    """Why one label name cannot work, or None when it can.

    Any non-empty text that survives JSON can be a label (``payment_reverted?``,
    ``Sci-Fi/Fantasy``, ``B-product``, ``5``). Refused: empty or blank names; leading or trailing
    whitespace (the answer matcher ignores it, so the name would not be kept as written); control
    characters, newlines and other characters that cannot be written on one line; names longer than
    `MAX_LABEL_CHARS`; and the workbench's own vocabulary (`RESERVED_LABELS`).
    """
    if not name.strip():
        return f"label name {name!r} is empty or only whitespace: give the label a name"
    if name != name.strip():
        return (f"label name {name!r} has leading or trailing whitespace: strip it "
                f"(write {name.strip()!r})")
    for char in name:
        category = unicodedata.category(char)
        if category in _UNWRITABLE_CATEGORIES:
            return (f"label name {name!r} contains {_UNWRITABLE_CATEGORIES[category]} "
                    f"(U+{ord(char):04X}); a label must be one line of visible text: remove it")
    if len(name) > MAX_LABEL_CHARS:
        return (f"label name {name[:40]!r}... is {len(name)} characters long; Argilla keeps at most "
                f"{MAX_LABEL_CHARS}: shorten it and put the rest in its definition")
    if name in RESERVED_LABELS:
        return f"label name {name!r} is reserved because {RESERVED_LABELS[name]}: rename the label"
    if normalise_label("", (name,)) is not None:
        # The matcher strips quotes and dots at the ends: this name would match an empty answer.
        return (f"label name {name!r} is only quotes and dots, which the answer matcher strips from "
                "answers: rename the label")
    return None


def label_set_problems(names: Sequence[str]) -> list[str]:
    """Why a task's label names cannot work together (each name is checked by `label_name_problem`).

    Refused: the same name twice, and two names that the answer matcher
    (`workbench.core.answers.normalise_label`, which ignores case, spaces, dashes and
    underscores) cannot tell apart, such as ``Sci-Fi`` and ``sci fi``: an answer could mean either.
    Returns one message per problem, each naming the labels concerned; empty when all is well.
    """
    problems = []
    seen: list[str] = []
    for name in names:
        if name in seen:
            problems.append(f"label {name!r} is listed more than once: label names must be unique")
            continue
        twin = normalise_label(name, tuple(seen))
        if twin is not None:
            problems.append(
                f"labels {twin!r} and {name!r} cannot be told apart in model answers, which are matched "
                "ignoring case, spaces, dashes and underscores: rename one of them"
            )
        seen.append(name)
    return list(dict.fromkeys(problems))


def task_to_dict(task: Task) -> dict:
    """The task as the mapping `task_from_dict` reads (what a task file holds)."""
    return {
        "name": task.name, "kind": task.kind.name, "description": task.description,
        "instructions": task.instructions,
        "labels": [{"name": label.name, "definition": label.definition} for label in task.labels],
    }


def load_task(path: str | Path) -> Task:
    """Read a task specification from a YAML or JSON file and validate it."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"task specification {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TaskSpecError(f"{path} could not be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise TaskSpecError(f"{path} must contain a mapping with name, kind and labels")
    return task_from_dict(data, source=str(path))
