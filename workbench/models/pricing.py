"""Prices per million tokens, to turn token counts into cost.

A price table is a mapping from model name to input and output prices, read from YAML/JSON::

    currency: USD
    models:
      gpt-4o-mini: {input_per_million: 0.15, output_per_million: 0.60}
      SmolLM2-135M-Instruct.Q4_1.gguf: {input_per_million: 0, output_per_million: 0}

Models run in-process (the embedded model) cost nothing unless the table says otherwise; a model
missing from the table has an unknown cost (NaN), never a silent zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.core.errors import InputError


@dataclass(frozen=True)
class Price:
    """Price of one model, per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1_000_000


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, in `currency`."""

    models: dict[str, Price] = field(default_factory=dict)
    currency: str = "USD"

    def for_model(self, identity: dict[str, Any]) -> Price | None:
        """The price for a model identity (see `Model.identity`), or None if unknown."""
        name = identity.get("model", "")
        if name in self.models:
            return self.models[name]
        if identity.get("kind") == "llama_cpp":
            return Price(0.0, 0.0)
        return None


def load_prices(source: str | Path | dict[str, Any]) -> PriceTable:
    """Read a price table from a YAML/JSON file or a mapping (see the module docstring)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        where = str(path)
    else:
        data, where = source, "price table"
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise InputError(f"{where}: expected a mapping with 'models: {{name: {{input_per_million, output_per_million}}}}'")
    models = {}
    for name, entry in (data.get("models") or {}).items():
        try:
            models[str(name)] = Price(float(entry["input_per_million"]), float(entry["output_per_million"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{where}: model {name!r} needs numeric input_per_million and output_per_million, got {entry!r}"
            ) from None
    return PriceTable(models=models, currency=str(data.get("currency", "USD")))
