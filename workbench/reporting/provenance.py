"""What a report's header says about where its run came from: the model, the run, the config, the time.

`run_origin` reads a run's provenance (``provenance.json``, `workbench.experiments.runs.Run.provenance`)
into a `RunOrigin` of plain words. It is pure and picks fields by name: the model is described
from its kind, name, endpoint and adapter only, so whatever else a model identity or config holds
(``extra_body``, headers, an ``api_key`` put there by mistake) never reaches a report, and an
endpoint is shown without user info or query string (`redact_url`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from workbench.models.openai_compatible import redact_url


@dataclass(frozen=True)
class RunOrigin:
    """The run behind a report, as text; None where the report was written without knowing it.

    `model` describes the model (e.g. "openai_compatible gpt-4o-mini at https://host/v1"),
    `run_id` names the run, `config` is the experiment config's path, `ran_at` the run's start
    in ISO 8601 with its timezone.
    """

    model: str | None = None
    run_id: str | None = None
    config: str | None = None
    ran_at: str | None = None

    def facts(self) -> list[str]:
        """The header's phrases for what is known, in order; empty when nothing is."""
        found = [("model", self.model), ("run", self.run_id), ("config", self.config), ("ran", self.ran_at)]
        return [f"{name} {value}" for name, value in found if value]


def run_origin(provenance: Mapping[str, Any] | None = None, *, config: str | Path | None = None) -> RunOrigin:
    """The `RunOrigin` of a run's `provenance` (keys ``run_id``, ``started_at`` (else
    ``finished_at``), ``model``; any may be missing) and of its `config` file (default: the
    provenance's ``config`` key, when it has one).

    ``model`` may be a model identity (`Model.identity`: ``kind``, ``model``, ``endpoint``,
    ``adapter`` or ``lora``) or a model config (``kind``, ``model`` or ``model_path``,
    ``base_url``, ``lora_path``); nothing else in it is read.
    """
    provenance = provenance or {}
    config = config if config is not None else provenance.get("config")
    model = provenance.get("model")
    return RunOrigin(
        model=describe_model(model) if isinstance(model, Mapping) else _text(model),
        run_id=_text(provenance.get("run_id")),
        config=str(config) if config not in (None, "") else None,
        ran_at=iso_time(provenance.get("started_at") or provenance.get("finished_at")),
    )


def describe_model(model: Mapping[str, Any]) -> str | None:
    """A model identity or config in words: kind, name, "at" endpoint, "with adapter" name.

    E.g. ``{"kind": "openai_compatible", "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}``
    gives "openai_compatible gpt-4o-mini at https://api.openai.com/v1". None when it names nothing.
    """
    name = _text(model.get("model")) or _file_name(model.get("model_path"))
    endpoint = _text(model.get("endpoint")) or _text(model.get("base_url"))
    adapter = _adapter(model.get("adapter")) or _adapter(model.get("lora")) or _file_name(model.get("lora_path"))
    words = [word for word in (_text(model.get("kind")), name) if word]
    if endpoint:
        words.append(f"at {redact_url(endpoint)}")
    if adapter:
        words.append(f"with adapter {adapter}")
    return " ".join(words) or None


def iso_time(value: object) -> str | None:
    """An ISO 8601 time to the second, keeping its timezone (``2026-12-03T10:15:00+00:00``); text
    that is not ISO 8601 is returned as it is, nothing as None."""
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat(timespec="seconds")
    except ValueError:
        return text


def _adapter(value: object) -> str | None:
    if isinstance(value, Mapping):  # llama.cpp's LoRA: {"file": ..., "sha256": ...}
        return _text(value.get("name")) or _file_name(value.get("file")) or _file_name(value.get("path"))
    return _text(value)


def _file_name(value: object) -> str | None:
    text = _text(value)
    return PurePath(text).name if text else None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return None
    text = str(value).strip()
    return text or None
