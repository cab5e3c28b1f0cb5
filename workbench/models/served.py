"""What an OpenAI-compatible server serves, and whether that is the model and adapter a config asks for.

A server answers a model name it does not serve in its own way: vLLM with a 404, llama-cpp-python's
server with its first model (the base, silently). So before a re-test sends anything, the names are
checked against the server's own listing:

- ``GET /v1/models`` (every server): the ids it answers. vLLM lists each LoRA module too, with
  ``root`` (the adapter's path as the server was given it) and ``parent`` (its base's id);
  llama-cpp-python's server lists its ``model_alias`` values (a base with ``lora_path`` under its own
  alias is an adapter served by name, no ``root``).
- ``GET /lora-adapters`` (llama.cpp's ``llama-server``, for ``adapter_style: llama_cpp``): the
  adapters loaded with ``--lora``, each ``id`` and ``path``.

`pull_served_models` reads both; `check_served` refuses (`ServingError`) a base or adapter the
listing does not hold, or an adapter the listing says comes from another file than this training's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.models.openai_compatible import OpenAICompatibleModel, redact_url


class ServingError(InputError):
    """The server does not serve the model or adapter a config names; the message says how to serve it."""


@dataclass(frozen=True)
class ServedModel:
    """One entry of ``GET /v1/models``: its `id`, and for a vLLM LoRA module `root` (the adapter's
    path on the server) and `parent` (its base's id); None where the server says nothing."""

    id: str
    root: str | None = None
    parent: str | None = None


@dataclass(frozen=True)
class ServedAdapter:
    """One entry of llama-server's ``GET /lora-adapters``: its `id` (its place among the ``--lora``
    options) and the `path` it was loaded from."""

    id: int
    path: str | None = None


@dataclass(frozen=True)
class ServedModels:
    """What the server at `endpoint` (redacted: `redact_url`) lists: `models` (``/v1/models``) and
    `adapters` (llama-server's ``/lora-adapters``; None when not asked or not there)."""

    endpoint: str
    models: tuple[ServedModel, ...]
    adapters: tuple[ServedAdapter, ...] | None = None

    def ids(self) -> list[str]:
        return [model.id for model in self.models]

    def get(self, model_id: str) -> ServedModel | None:
        return next((model for model in self.models if model.id == model_id), None)


def pull_served_models(model: OpenAICompatibleModel, *, adapters: bool | None = None) -> ServedModels:
    """The listing of `model`'s server: ``GET /v1/models`` through the `openai` SDK (with the
    model's key, to its endpoint only), and ``GET /lora-adapters`` when `adapters` (default: when
    `model` selects its adapter the llama-server way, ``adapter_style: llama_cpp``).

    Raises ServingError when the server cannot be reached or its listing cannot be read."""
    import openai

    endpoint = redact_url(model.base_url)
    client = model.batch_client()
    # Without a key, no Authorization header at all (as `OpenAICompatibleModel.complete` sends none).
    options = {} if model.has_key else {"headers": {"Authorization": openai.Omit()}}
    if adapters is None:
        adapters = model.adapter_style == "llama_cpp"
    try:
        body = client.get("/models", cast_to=object, options=options)
        loras = client.get(_server_root(model.base_url) + "/lora-adapters", cast_to=object,
                           options=options) if adapters else None
    except openai.APIStatusError as exc:
        raise ServingError(f"{endpoint} answered {exc.status_code} when asked what it serves "
                           f"({exc.request.url.path}): {str(exc)[:200]}; is it an OpenAI-compatible server"
                           f"{' started with --lora' if model.adapter_style == 'llama_cpp' else ''}?") from exc
    except openai.APIError as exc:
        raise ServingError(f"cannot ask {endpoint} what it serves: {str(exc)[:200]}; start the server "
                           "(see the serve: block's base_url), then run again") from exc
    finally:
        client.close()
    return ServedModels(endpoint, _models(body, endpoint), None if loras is None else _adapters(loras, endpoint))


def _server_root(base_url: str) -> str:
    """The server's root URL: llama-server's ``/lora-adapters`` is beside ``/v1``, not under it."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _models(body: Any, endpoint: str) -> tuple[ServedModel, ...]:
    """The entries of a ``GET /v1/models`` answer; ServingError when it holds no model list."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ServingError(f"{endpoint}/models did not answer a model list ({str(body)[:200]})")
    return tuple(ServedModel(str(entry["id"]), _text(entry.get("root")), _text(entry.get("parent")))
                 for entry in data if isinstance(entry, dict) and "id" in entry)


def _adapters(body: Any, endpoint: str) -> tuple[ServedAdapter, ...]:
    """The entries of a ``GET /lora-adapters`` answer; ServingError when it is not a list."""
    if not isinstance(body, list):
        raise ServingError(f"{endpoint}'s /lora-adapters did not answer a list of adapters ({str(body)[:200]})")
    return tuple(ServedAdapter(int(entry["id"]), _text(entry.get("path")))
                 for entry in body if isinstance(entry, dict) and "id" in entry)


def _text(value: Any) -> str | None:
    """`value` as text, None for a missing or empty one."""
    return str(value) if value not in (None, "") else None


def check_served(listing: ServedModels, model: OpenAICompatibleModel, *, trained: Sequence[str | Path] = (),
                 how: str = "") -> list[str]:
    """Refuse (`ServingError`) `model` when `listing` (`pull_served_models`) shows its server does
    not serve it: its base (``model``) not listed, its adapter not listed (by name, or for
    ``adapter_style: llama_cpp`` by ``adapter_id`` among ``/lora-adapters``), a vLLM LoRA module
    whose ``parent`` is another base, or an adapter whose listed path is not one of `trained` (this
    training's adapter: the peft folder, the GGUF file) nor a copy of one. `how` ends the message
    (how to serve it). Returns notes on what could not be checked (a path not on this machine)."""
    where = f"{listing.endpoint} (it lists {listing.ids() or 'no models'})"
    if model.adapter_style == "llama_cpp" and model.adapter is not None:
        return _check_llama_server(listing, model, trained, how, where)
    if listing.get(model.model) is None:
        raise ServingError(f"{where} does not serve the base model {model.model!r} the serve: block names "
                           f"(model:); serve it there, or set model: to one of its ids{how}")
    if model.adapter is None:
        return []
    entry = listing.get(model.adapter)
    if entry is None:
        raise ServingError(f"{where} does not serve the adapter {model.adapter!r}: the re-test would get another "
                           f"model's answers{how}")
    if entry.parent is not None and entry.parent != model.model:
        raise ServingError(f"{listing.endpoint} serves the adapter {model.adapter!r} on the base {entry.parent!r}, "
                           f"not on {model.model!r} (the serve: block's model){how}")
    return _check_path(entry.root, trained, f"the adapter {model.adapter!r}", listing.endpoint, how)


def _check_llama_server(listing: ServedModels, model: OpenAICompatibleModel, trained: Sequence[str | Path],
                        how: str, where: str) -> list[str]:
    """`check_served` for ``adapter_style: llama_cpp``: the adapter by its number among
    ``/lora-adapters``. The base is not looked up: llama-server serves its one model whatever name a
    request gives."""
    if listing.adapters is None:
        raise ServingError(f"{where}: its adapters were not asked for (GET /lora-adapters){how}")
    entry = next((a for a in listing.adapters if a.id == model.adapter_id), None)
    if entry is None:
        loaded = [f"{a.id}: {a.path}" for a in listing.adapters] or "none"
        raise ServingError(f"{listing.endpoint} has no adapter number {model.adapter_id} (adapter_id of "
                           f"{model.adapter!r}); its /lora-adapters lists {loaded}{how}")
    return _check_path(entry.path, trained, f"adapter number {model.adapter_id} ({model.adapter!r})",
                       listing.endpoint, how)


def _check_path(listed: str | None, trained: Sequence[str | Path], what: str, endpoint: str, how: str) -> list[str]:
    """[] when `listed` (the adapter's path as the server reports it) is one of `trained` or a
    copy of one; a note when it cannot be told (no path listed, or a path not on this machine, as
    on another server); else ServingError."""
    if listed is None or not trained:
        return []
    path = Path(listed.removeprefix("file://")).expanduser()
    if any(path.resolve() == Path(t).resolve() for t in trained):
        return []  # the very path (also one since renamed: a loop round's <n>.partial folder)
    if not path.exists():
        return [f"{endpoint} serves {what} from {listed}, which is not on this machine: not checked against "
                f"this training's {', '.join(str(t) for t in trained)}"]
    if any(_same_adapter(path, Path(t)) for t in trained):
        return []
    raise ServingError(f"{endpoint} serves {what} from {listed}, which is not this training's adapter "
                       f"({' or '.join(str(t) for t in trained)}): it would re-test another training{how}")


def _same_adapter(served: Path, trained: Path) -> bool:
    """Whether `served` is `trained`, or holds the same weights (a copy of the file or folder)."""
    if not trained.exists() or served.is_dir() != trained.is_dir():
        return False
    weights = "adapter_model.safetensors"
    if served.is_dir():
        served, trained = served / weights, trained / weights
        if not (served.is_file() and trained.is_file()):
            return False
    return _sha256(served) == _sha256(trained)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
