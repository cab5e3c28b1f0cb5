"""The re-test on a server: the base and the tuned adapter answered by one OpenAI-compatible server.

An experiment config's ``serve:`` block is an ``openai_compatible`` model config (`kind` may be left
out) whose ``model`` is the base's id on the server and whose ``adapter`` is the tuned adapter's
name there::

    serve:
      base_url: http://gpu-box:8000/v1
      api_key_env: null            # or the variable holding the server's key
      model: HuggingFaceTB/SmolLM2-135M-Instruct
      adapter: complaints-r{round}  # in the loop, {round} is the round's number
      structured_output: json_schema

With ``--serve openai-compatible`` (`workbench finetune`, `workbench loop`) the re-test's base is
this block without its adapter and the tuned model is the block with it: both on the same runtime,
so that the difference is the training and not the runtime. In the loop, round n's base is the model
it started from: the base model in round 1, else the tuned adapter of round k it builds on, named
with ``{round}`` = k (which is why the loop needs ``{round}`` once a round builds on another). A
name with ``{round}`` outside the loop is refused.

Before the re-test sends a request, the server's listing is read (`models.served`) and a base or an
adapter it does not serve is refused (`ServingError`), saying how to serve this training's adapter.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.finetune.local_models import SERVED_ADAPTERS
from workbench.finetune.tokens import data_hash
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.models.served import ServingError, check_served, pull_served_models

SERVE_MODES = ("in-process", "openai-compatible")
ROUND = "round"  # the one placeholder an adapter name may hold: {round}
ADAPTER_FIELDS = ("adapter", "adapter_style", "adapter_id")
# In a training folder: the peft folder (what vLLM loads) and the GGUF (what llama.cpp loads).
PEFT_ADAPTER, GGUF_ADAPTER = SERVED_ADAPTERS["transformers"], SERVED_ADAPTERS["embedded"]

__all__ = ["SERVE_MODES", "ServedPair", "ServingError", "adapter_name", "has_round", "how_to_serve", "pull_checked",
           "pull_served_pair", "read_finished_training", "served_configs", "trained_adapters",
           "validate_serve_config"]


def validate_serve_config(serve: Mapping[str, Any], *, source: str = "serve") -> dict[str, Any]:
    """The ``serve:`` block `serve` with ``kind: openai_compatible`` filled in, checked by that
    kind's schema (unknown keys refused) and for an ``adapter`` whose only placeholder is
    ``{round}``. Raises InputError naming `source` and the fix."""
    from workbench.models.registry import validate_model_config

    if not isinstance(serve, Mapping):
        raise InputError(f"{source} must be a mapping (an openai_compatible model config: base_url, model, adapter, "
                         f"api_key_env), got {serve!r}")
    config = {"kind": "openai_compatible", **serve}
    if config["kind"] != "openai_compatible":
        raise InputError(f"{source}: kind {config['kind']!r}; the re-test is served by an OpenAI-compatible server "
                         "(vLLM, llama.cpp's server): kind openai_compatible, or leave kind out")
    adapter = config.get("adapter")
    if not isinstance(adapter, str) or not adapter.strip():
        raise InputError(f"{source}: adapter: is missing; name the tuned adapter as the server serves it (vLLM: "
                         "--lora-modules NAME=PATH; llama-cpp-python's server: its model_alias), e.g. adapter: "
                         "complaints-r{round}")
    fields = {field for _, field, _, _ in _parsed(adapter, source) if field is not None}
    if fields - {ROUND}:
        raise InputError(f"{source}: adapter {adapter!r} holds {sorted(fields - {ROUND})}; the only placeholder is "
                         "{round} (the loop round's number)")
    validate_model_config({**config, "adapter": adapter_name(config, 1)}, source=source)
    return config


def _parsed(name: str, source: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(name))
    except ValueError as exc:
        raise InputError(f"{source}: adapter {name!r} is not a valid name template ({exc}); write braces as "
                         "{{ and }}, or use {round}") from None


def has_round(serve: Mapping[str, Any]) -> bool:
    """Whether `serve`'s ``adapter`` holds ``{round}`` (one name per loop round)."""
    return any(field == ROUND for _, field, _, _ in _parsed(str(serve["adapter"]), "serve"))


def adapter_name(serve: Mapping[str, Any], round_number: int | None) -> str:
    """The adapter's name on the server: `serve`'s ``adapter`` with ``{round}`` = `round_number`.
    Raises InputError for a ``{round}`` name without a round (outside the loop)."""
    name = str(serve["adapter"])
    if has_round(serve):
        if round_number is None:
            raise InputError(f"the serve: block's adapter {name!r} holds {{round}}, which only the loop fills in; "
                             "for `workbench finetune` give the adapter's own name (--serve-config FILE with a "
                             "serve block, or edit serve: in the run's config.yaml)")
        return name.format(round=round_number)
    return name.format()


def served_configs(serve: Mapping[str, Any], *, tuned: str, base: str | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the base's model config, the tuned model's) on `serve`'s server: the block without its
    adapter (`base` None: the base model) or with adapter `base` (a tuned model built on), and the
    block with adapter `tuned`."""
    plain = {key: value for key, value in serve.items() if key not in ADAPTER_FIELDS}
    plain["kind"] = "openai_compatible"
    tuned_config = {**serve, "kind": "openai_compatible", "adapter": tuned}
    return (plain if base is None else {**tuned_config, "adapter": base}), tuned_config


@dataclass(frozen=True)
class ServedPair:
    """The re-test's two models on one server (`base`, `tuned`), checked against its listing, with
    `notes` on what the listing could not show (`check_served`)."""

    base: OpenAICompatibleModel
    tuned: OpenAICompatibleModel
    notes: tuple[str, ...] = ()


def pull_served_pair(serve: Mapping[str, Any], folder: str | Path, *, round_number: int | None = None,
                     start: tuple[int, Path] | None = None, environ: Mapping[str, str] | None = None) -> ServedPair:
    """The base and tuned models of the training in `folder` (``finetune/<method>/``) on `serve`'s
    server (`served_configs`), each checked against what the server lists (`pull_served_models`,
    `check_served`) before anything is sent. `round_number` fills the adapter's ``{round}``;
    `start` is (round number, training folder) of the tuned model the base is (None: the base
    model). Raises ServingError naming the missing model, the server and how to serve it."""
    from workbench.models.registry import model_from_config

    tuned_name = adapter_name(serve, round_number)
    base_name = adapter_name(serve, start[0]) if start is not None else None
    base_config, tuned_config = served_configs(serve, tuned=tuned_name, base=base_name)
    base, tuned = model_from_config(base_config, environ=environ), model_from_config(tuned_config, environ=environ)
    notes = pull_checked(base, trained_adapters(start[1]) if start is not None else ())
    notes += pull_checked(tuned, trained_adapters(Path(folder)))
    return ServedPair(base, tuned, tuple(notes))


def pull_checked(model: OpenAICompatibleModel, trained: Sequence[Path]) -> list[str]:
    """`check_served`'s notes on `model` against its server's listing (`pull_served_models`); a
    refusal ends with how to serve `trained` (this training's adapter files) under the model's name."""
    return check_served(pull_served_models(model), model, trained=trained,
                        how=how_to_serve(model.model, model.adapter, trained))


def trained_adapters(folder: Path) -> list[Path]:
    """The adapters a training in `folder` wrote that a server may serve (the peft folder vLLM
    loads, the GGUF llama.cpp loads); for a loop round, also under its ``<n>.partial`` name, where
    it was trained and first served from."""
    paths = [folder / PEFT_ADAPTER, folder / GGUF_ADAPTER]
    round_folder = next((p for p in folder.parents if p.parent.name == "rounds" and p.name.isdigit()), None)
    if round_folder is not None:
        partial = round_folder.with_name(f"{round_folder.name}.partial")
        paths += [partial / p.relative_to(round_folder) for p in paths]
    return paths


def how_to_serve(base: str, adapter: str | None, trained: Sequence[Path]) -> str:
    """The end of a refusal: how the servers the workbench knows serve `trained` as `adapter`."""
    if adapter is None or not trained:
        return ""
    peft = next((p for p in trained if p.name == PEFT_ADAPTER), trained[0])
    gguf = next((p for p in trained if p.name == GGUF_ADAPTER and p.exists()), None)
    text = (f". Serve this training's adapter as {adapter!r}: vLLM: `vllm serve {base} --enable-lora --lora-modules "
            f"{adapter}={peft.resolve()}` (a running vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True takes POST "
            f"/v1/load_lora_adapter {{\"lora_name\": \"{adapter}\", \"lora_path\": \"{peft.resolve()}\"}})")
    if gguf is not None:
        text += (f"; llama-cpp-python's server: a --config_file model with model_alias: {adapter} and lora_path: "
                 f"{gguf.resolve()}; llama-server: --lora {gguf.resolve()} (adapter_style: llama_cpp, adapter_id: "
                 "its place among the --lora options)")
    return text


def read_finished_training(folder: str | Path, chats: Sequence[Sequence[dict[str, str]]], settings: Any,
                           served: Path, *, trainer: str = "workbench") -> dict[str, Any] | None:
    """``training.json`` of a training in `folder` that is done: the same rows (`chats`), the same
    `settings` (`AdapterSettings`), the same `trainer` (`local_models.TRAINERS`; a record from
    before trainers were recorded is the workbench's), all its steps, and its `served` adapter
    written; else None. A server serves that adapter, so ``--serve`` re-tests it without training
    again."""
    record_file = Path(folder) / "training.json"
    if not record_file.exists() or not served.exists():
        return None
    record = json.loads(record_file.read_text(encoding="utf-8"))
    wanted = json.loads(json.dumps(asdict(settings)))
    done = len(record.get("losses") or []) >= int(record.get("steps") or 0) > 0
    same = (record.get("settings") == wanted and record.get("data_hash") == data_hash(chats)
            and record.get("trainer", "workbench") == trainer)
    return record if done and same else None
