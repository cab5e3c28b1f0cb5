"""Experiment configs: one YAML file says which task, data, variants and model a run uses.

::

    name: complaints_demo              # results go to runs/<name>/
    task: data/complaint_triage/task.yaml
    dataset: data/complaint_triage/test.jsonl
    examples: data/complaint_triage/train.jsonl   # few-shot pool (optional)
    limit: 40                          # a seeded random sample of the dataset (optional; 0 or all: every row)
    variants: [zero_shot, definitions, few_shot, cot]
    repeats: 1
    options: {temperature: 0.0, max_tokens: 256}
    model: {kind: embedded}            # or {kind: openai_compatible, model: ..., base_url: ...}
    serve: {base_url: ..., model: ..., adapter: ...}  # optional: the re-test on a server (--serve openai-compatible)
    concurrency: 8
    prices: configs/prices.yaml        # optional
    templates: prompts/                # your own prompt templates (optional)

Relative paths are resolved against the config file's folder first, then the working directory.

**Your own prompt.** ``templates:`` names a folder of Jinja files named
``<name>.<kind>.v<N>.jinja`` (``support_v2.classification.v1.jinja``; kinds: classification,
multilabel, ner). It is searched before the packaged templates, so it may hold only your own; a
variant names one with ``template``::

    variants:
      - zero_shot                                  # the packaged default template
      - template=support_v2+few_shot3              # your support_v2, 3 examples (name as written)
      - {name: my_prompt, template: support_v2, few_shot: 3, definitions: true}
      - {name: pinned, template: support_v2.v1}    # that version; without .vN the highest one

A template has two blocks, ``{% block system %}...{% endblock %}`` and
``{% block user %}...{% endblock %}`` (the two chat messages), and may use only the variables the
renderer passes (`workbench.prompting.templates.TEMPLATE_VARIABLES`): ``task`` (``task.name``,
``task.description``, ``task.instructions``), ``variant`` (``variant.definitions``, ``.few_shot``,
``.cot``), ``text``, ``examples`` (each ``text`` and JSON ``answer``), ``label_names``, ``labels``
(each ``name``, ``shown``, ``definition``), ``label_list``, ``labels_quoted``, ``undefined_list``
and ``any_definitions``. `load_experiment` checks every variant's template (found, valid Jinja,
both blocks, known variables) before any model is called; a run's provenance records the file,
its folder and its SHA-256. A file in your folder with a packaged name (``default.<kind>.v<N>``)
hides the packaged one of that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.core.data import load_dataset, sample_dataset
from workbench.core.errors import InputError, MissingInputError
from workbench.core.task import Task, load_task
from workbench.finetune.serving import validate_serve_config
from workbench.models.base import GenerationOptions, Model
from workbench.models.pricing import PriceTable, load_prices
from workbench.models.registry import model_from_config, validate_model_config
from workbench.prompting.templates import PromptTemplateError, PromptTemplateNotFound, check_template
from workbench.prompting.variants import parse_variant


class _OptionsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None


class _ExperimentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    task: str
    dataset: str
    examples: str | None = None
    limit: int | None = Field(None, ge=0)  # 0: every row (load_experiment reads "all" as 0)
    variants: list[str | dict[str, Any]] = Field(min_length=1)
    repeats: int = Field(1, ge=1)
    options: _OptionsModel = Field(default_factory=_OptionsModel)
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "embedded"})
    serve: dict[str, Any] | None = None  # the re-test on a server (`workbench.finetune.serving`)
    concurrency: int | None = Field(None, ge=1)
    prices: str | None = None
    templates: str | None = None
    runs_dir: str = "runs"


@dataclass(frozen=True)
class Experiment:
    """A loaded experiment: the task, data, variants, options and model to run."""

    name: str
    task: Task
    dataset: pd.DataFrame
    examples: pd.DataFrame | None
    variants: list[str | dict[str, Any]]
    repeats: int
    options: GenerationOptions
    model_config: dict[str, Any]
    concurrency: int | None
    prices: PriceTable
    run_dir: Path
    source: dict[str, Any]
    template_dir: Path | None = None  # the config's templates: folder, searched before the packaged one
    serve_config: dict[str, Any] | None = None  # the serve: block (`finetune.serving`), or None

    def build_model(self) -> Model:
        return model_from_config(self.model_config)


def parse_limit(value: Any, *, source: str = "limit") -> int | None:
    """A sample size as a config or the command line gives it: a whole number of examples, with
    ``0`` or ``"all"`` (any case) meaning every example; None stays None (no limit given).

    Returns the number (0 for all). Raises ValueError naming `source` (e.g. ``"exp.yaml: limit"``)
    for anything else: a word other than all, a negative number, a fraction, true/false.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "all":
            return 0
        if text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InputError(
        f"{source} is {value!r}; use a whole number of examples (a seeded sample), or 0 or all for every example"
    )


def load_model_config(spec: str | Path) -> dict[str, Any]:
    """The model config that `spec` names: a YAML file holding what an experiment config's ``model:``
    mapping holds (``kind: openai_compatible``, ``model: ...``, ``base_url: ...``), or the name of a
    registered model kind that needs no other field (``embedded``).

    The mapping is validated by its kind's schema here, so a mistake names the file. Raises
    FileNotFoundError when `spec` looks like a file (a path, or a name ending .yaml/.yml) that is
    not there, and ValueError (ModelConfigError) for an invalid config or an unknown kind.
    """
    path = Path(spec)
    looks_like_a_file = path.suffix.lower() in (".yaml", ".yml") or len(path.parts) > 1
    if path.is_file():
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise InputError(f"model config {path} must hold a mapping such as {{kind: openai_compatible, "
                             f"model: gpt-4o-mini}} (what an experiment config's model: holds), got {config!r}")
        validate_model_config(config, source=f"model config {path}")
        return dict(config)
    if looks_like_a_file:
        raise MissingInputError(f"model config {path} does not exist")
    config = {"kind": str(spec)}
    validate_model_config(config, source=f"model {spec!r} (neither a file nor a model kind that needs nothing else)")
    return config


def load_experiment(
    path: str | Path, *, limit: int | str | None = None, run_dir: str | Path | None = None, **overrides: Any
) -> Experiment:
    """Read and validate an experiment config.

    `limit` overrides the config's sample size (0 or ``"all"``: every example; see `parse_limit`).
    `overrides` replace top-level config keys (``variants``, ``repeats``, ``options``, ``model``,
    ``name``, ``dataset``, ``runs_dir``, ...) before validation (None keeps the config's value), so a
    notebook's parameters cell can start from the same config as ``workbench run`` and share its
    cache. A relative ``dataset`` (task, examples, prices, templates, and the model's files: a
local model folder, a GGUF, an adapter) resolves beside the config first, else from the working
directory. `run_dir`
    replaces the run folder (default ``<runs_dir>/<name>``).
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"experiment config {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise InputError(f"{path} must hold a mapping (name, task, dataset, variants, ...)")
    if "limit" in raw:
        raw["limit"] = parse_limit(raw["limit"], source=f"{path}: limit")
    limit = parse_limit(limit)
    overridden = {key for key, value in overrides.items() if value is not None}
    raw.update({key: overrides[key] for key in overridden})
    try:
        config = _ExperimentModel.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}"
            f"{' (overridden)' if error['loc'] and error['loc'][0] in overridden else ''}: {error['msg']}"
            for error in exc.errors()
        )
        raise InputError(f"{path} is not a valid experiment config: {problems}") from None
    def resolve(value: str) -> Path:
        beside = (path.parent / value).resolve()
        return beside if beside.exists() else Path(value).resolve()

    # The model's own schema, now: a typo or a key in the config fails here, not when the run starts.
    validate_model_config(config.model, source=f"{path}: model")
    serve = validate_serve_config(config.serve, source=f"{path}: serve") if config.serve is not None else None
    model_config = _resolved_model_paths(dict(config.model), resolve)
    task = load_task(resolve(config.task))
    dataset = load_dataset(resolve(config.dataset), task)
    dataset = sample_dataset(dataset, config.limit if limit is None else limit)
    examples = load_dataset(resolve(config.examples), task) if config.examples else None
    prices = load_prices(resolve(config.prices)) if config.prices else PriceTable()
    template_dir = _template_folder(path, config.templates, resolve) if config.templates else None
    _check_variants(path, task, config.variants, template_dir)
    return Experiment(
        name=config.name,
        task=task,
        dataset=dataset,
        examples=examples,
        variants=list(config.variants),
        repeats=config.repeats,
        options=GenerationOptions(**config.options.model_dump()),
        model_config=model_config,
        concurrency=config.concurrency,
        prices=prices,
        run_dir=Path(run_dir) if run_dir is not None else Path(config.runs_dir) / config.name,
        # Later stages read the models from here; a config without serve: is recorded as before.
        source={**config.model_dump(exclude={"serve"}), "model": model_config,
                **({"serve": serve} if serve is not None else {})},
        template_dir=template_dir, serve_config=serve,
    )


# The model config's fields that name files or folders, per kind (a vLLM adapter is a name).
_MODEL_PATHS = {"embedded": ("model_path", "lora_path"), "transformers": ("base_model", "adapter")}


def _resolved_model_paths(model: dict[str, Any], resolve: Any) -> dict[str, Any]:
    """The model config with its relative paths resolved like the dataset's (beside the config
    first, else from the working directory), so a project folder can be run from anywhere."""
    for key in _MODEL_PATHS.get(str(model.get("kind", "embedded")), ()):
        value = model.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            model[key] = str(resolve(value))
    return model


def _template_folder(path: Path, value: str, resolve: Any) -> Path:
    folder = resolve(value)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise PromptTemplateNotFound(
            f"{path}: templates: {value!r} {state} (looked beside the config, {(path.parent / value).resolve()}, "
            f"and in the working directory, {Path(value).resolve()}); make it a folder of "
            "<name>.<kind>.v<N>.jinja files, or fix the path"
        )
    return folder


def _check_variants(path: Path, task: Task, specs: list[str | dict[str, Any]], template_dir: Path | None) -> None:
    # Every variant's template is found and checked now, so a mistake fails before any model call.
    for spec in specs:
        try:
            check_template(task, parse_variant(spec), template_dir)
        except PromptTemplateError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        except ValueError as exc:
            raise InputError(f"{path}: variants: {exc}") from None
