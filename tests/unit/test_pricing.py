"""Price tables: read from YAML, JSON or a mapping; a price per model identity; cost per call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.models.pricing import Price, PriceTable, load_prices

ROOT = Path(__file__).resolve().parents[2]
TABLE = {"currency": "EUR", "models": {"gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6},
                                       "local.gguf": {"input_per_million": 0, "output_per_million": 0}}}


def test_the_shipped_yaml_table_loads():
    table = load_prices(ROOT / "configs" / "prices.yaml")
    assert table.currency == "USD"
    assert table.models["gpt-4o-mini"] == Price(0.15, 0.60)
    assert table.models["SmolLM2-135M-Instruct.Q4_1.gguf"] == Price(0.0, 0.0)
    assert all(isinstance(price, Price) for price in table.models.values())


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_yaml_and_json_files_and_mappings_give_the_same_table(tmp_path, suffix):
    path = tmp_path / f"prices{suffix}"
    path.write_text(json.dumps(TABLE) if suffix == ".json" else
                    "currency: EUR\nmodels:\n  gpt-4o-mini: {input_per_million: 0.15, output_per_million: 0.6}\n"
                    "  local.gguf: {input_per_million: 0, output_per_million: 0}\n")
    assert load_prices(path) == load_prices(str(path)) == load_prices(TABLE)
    assert load_prices(path) == PriceTable({"gpt-4o-mini": Price(0.15, 0.6), "local.gguf": Price(0.0, 0.0)}, "EUR")


def test_numbers_written_as_strings_are_read_and_currency_defaults_to_usd():
    table = load_prices({"models": {"m": {"input_per_million": "1.5", "output_per_million": 2}}})
    assert table.models["m"] == Price(1.5, 2.0) and table.currency == "USD"
    assert load_prices({}) == PriceTable()


@pytest.mark.parametrize(
    "entry",
    [{}, {"input_per_million": 0.15}, {"output_per_million": 0.6}, {"input_per_million": "cheap",
     "output_per_million": 1}, {"input_per_million": None, "output_per_million": 1}, 0.15, "0.15"],
)
def test_a_model_without_both_numbers_is_refused_naming_the_model(tmp_path, entry):
    path = tmp_path / "prices.yaml"
    path.write_text(json.dumps({"models": {"gpt-4o-mini": TABLE["models"]["gpt-4o-mini"], "my-model": entry}}))
    with pytest.raises(ValueError, match="model 'my-model' needs numeric input_per_million and output_per_million") \
            as info:
        load_prices(path)
    assert str(path) in str(info.value) and repr(entry) in str(info.value)


@pytest.mark.parametrize("text", ["- gpt-4o-mini\n", "models: [gpt-4o-mini]\n", "models: gpt-4o-mini\n"])
def test_a_table_that_is_not_a_mapping_of_models_is_refused(tmp_path, text):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="expected a mapping with 'models:") as info:
        load_prices(path)
    assert str(path) in str(info.value)


def test_a_price_per_model_identity():
    table = load_prices(ROOT / "configs" / "prices.yaml")
    known = {"kind": "openai_compatible", "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}
    assert table.for_model(known) == Price(0.15, 0.60)
    # Unknown: no price (the run shows NaN cost), never a silent zero.
    assert table.for_model({"kind": "openai_compatible", "model": "gpt-unknown"}) is None
    assert table.for_model({}) is None
    # The in-process model costs nothing, also when the table does not name its file.
    in_process = {"kind": "llama_cpp", "model": "some-other.gguf", "n_ctx": 4096}
    assert table.for_model(in_process) == Price(0.0, 0.0)
    assert PriceTable().for_model(in_process) == Price(0.0, 0.0)
    # ... unless the table gives it a price.
    priced = load_prices({"models": {"some-other.gguf": {"input_per_million": 1, "output_per_million": 1}}})
    assert priced.for_model(in_process) == Price(1.0, 1.0)


def test_cost_is_per_million_tokens():
    price = Price(input_per_million=0.15, output_per_million=0.60)
    assert math.isclose(price.cost(1_000_000, 0), 0.15)
    assert math.isclose(price.cost(2000, 500), (2000 * 0.15 + 500 * 0.60) / 1_000_000)
    assert Price(0.0, 0.0).cost(10**9, 10**9) == 0.0
