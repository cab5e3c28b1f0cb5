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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.core.kinds import KINDS, TaskKind, get_kind

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


class TaskSpecError(ValueError):
    """A task specification is missing something or contradicts itself."""


class _LabelModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    definition: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _label_name_is_plain(cls, value: str) -> str:
        value = value.strip()
        if not _NAME_PATTERN.match(value):
            raise ValueError(
                f"label name {value!r} must start with a letter and contain only letters, "
                "digits, '_' or '-' (it appears in prompts and JSON answers)"
            )
        return value

    @field_validator("definition")
    @classmethod
    def _definition_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("definition is blank: write the client's meaning of this label")
        return value.strip()


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
            raise ValueError(f"kind {value!r} is not one of {sorted(KINDS)}")
        return value

    @field_validator("name")
    @classmethod
    def _task_name_is_plain(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"task name {value!r} must be a plain identifier (letters, digits, _ or -)")
        return value


@dataclass(frozen=True)
class Label:
    """One label and the client's definition of it."""

    name: str
    definition: str


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

    def definition(self, label: str) -> str:
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
    names = [label.name for label in model.labels]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TaskSpecError(f"{source}: label names must be unique; repeated: {duplicates}")
    folded = [name.casefold() for name in names]
    if len(set(folded)) != len(folded):
        raise TaskSpecError(
            f"{source}: label names differ only by case ({names}); model answers are matched "
            "case-insensitively, so rename one of them"
        )
    return Task(
        name=model.name,
        kind=get_kind(model.kind),
        labels=tuple(Label(label.name, label.definition) for label in model.labels),
        description=model.description.strip(),
        instructions=model.instructions.strip(),
    )


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
        raise FileNotFoundError(f"task specification {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TaskSpecError(f"{path} could not be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise TaskSpecError(f"{path} must contain a mapping with name, kind and labels")
    return task_from_dict(data, source=str(path))
