"""The task kinds: everything that depends on whether a task is classification, NER or multi-label.

`get_kind(name)` returns the kind object a task file's ``kind:`` names. Outside this package no
module branches on the kind; it asks ``task.kind`` instead (see `workbench.core.kinds.base`).
"""

from __future__ import annotations

from workbench.core.errors import InputError
from workbench.core.kinds.base import AnnotationQuestion, AnswerView, Highlight, TaskKind
from workbench.core.kinds.classification import ClassificationKind
from workbench.core.kinds.multilabel import MultiLabelKind
from workbench.core.kinds.ner import NerKind

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (ClassificationKind(), NerKind(), MultiLabelKind())}


def get_kind(name: str | TaskKind) -> TaskKind:
    """The kind object for a kind name (``classification``, ``ner``, ``multilabel``)."""
    if isinstance(name, TaskKind):
        return name
    try:
        return KINDS[name]
    except KeyError:
        raise InputError(f"unknown task kind {name!r}; use one of {sorted(KINDS)}") from None


__all__ = ["KINDS", "AnnotationQuestion", "AnswerView", "Highlight", "TaskKind", "get_kind"]
