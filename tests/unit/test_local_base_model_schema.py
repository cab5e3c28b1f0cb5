"""Model kind ``transformers`` without loading a model: its config schema, the folder checks and
their messages, the folder's content hash and its cache, the adapter identity and base check, and
the bookkeeping of which config serves which tuned model (`finetune.local_models`). Real folders
with real weights are built and run in tests/integration/test_local_base_model.py."""

import json
from pathlib import Path

import pytest

from workbench.finetune import local_models
from workbench.finetune.base_model import AdapterBaseMismatch, base_identity, check_adapter_base
from workbench.models.registry import ModelConfigError, TransformersConfig, validate_model_config
from workbench.models.transformers_local import (
    LocalTransformersModel,
    ModelFolderError,
    check_model_folder,
    folder_sha256,
    hash_cache_path,
)


@pytest.fixture(autouse=True)
def own_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


def fake_folder(path: Path, *, weights: bytes = b"weights", template: bool = True) -> Path:
    """A folder shaped like save_pretrained's output (the files are not a loadable model)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 8}))
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer.json").write_text("{}")
    (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"} if template else {}))
    return path


def fake_adapter(path: Path, *, base: dict | None = None, weights: bytes = b"lora") -> Path:
    adapter = path / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    (path / "training.json").write_text(json.dumps({"data_hash": "rows123", "base": base or {}}))
    return adapter


def test_the_schema_needs_a_folder_and_refuses_unknown_keys_and_devices():
    config = validate_model_config({"kind": "transformers", "base_model": "models/tiny"})
    assert isinstance(config, TransformersConfig)
    assert (config.device, config.dtype, config.adapter) == ("auto", "float32", None)
    with pytest.raises(ModelConfigError, match="base_model: Field required"):
        validate_model_config({"kind": "transformers"})
    with pytest.raises(ModelConfigError, match="device"):
        validate_model_config({"kind": "transformers", "base_model": "m", "device": "tpu"})
    with pytest.raises(ModelConfigError, match="max_new_tokens: Extra inputs are not permitted"):
        validate_model_config({"kind": "transformers", "base_model": "m", "max_new_tokens": 5})


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "nowhere", "does not exist: base_model must be a local folder"),
    (lambda p: ((p / "model.gguf").write_bytes(b"GGUF"), p / "model.gguf")[1],
     "is a file, not a folder .a GGUF file runs with kind: embedded"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no config.json"),
    (lambda p: fake_folder(p / "bare").joinpath("model.safetensors").unlink() or p / "bare", "but no weights"),
    (lambda p: fake_folder(p / "base", template=False), "has no chat template"),
])
def test_an_unusable_folder_is_refused_naming_it_and_what_to_do(tmp_path, make, message):
    folder = make(tmp_path)
    with pytest.raises(ModelFolderError, match=message) as caught:
        check_model_folder(folder)
    assert folder.name in str(caught.value)
    with pytest.raises(ModelFolderError, match=message):  # the registry builds nothing from it either
        __import__("workbench.models.registry", fromlist=["x"]).model_from_config(
            {"kind": "transformers", "base_model": str(folder)})


def test_a_chat_template_file_counts_as_a_chat_template(tmp_path):
    folder = fake_folder(tmp_path / "m", template=False)
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    assert check_model_folder(folder) == folder.resolve()


def test_the_content_hash_tells_weights_apart_and_is_computed_once_per_file_version(tmp_path):
    one, same = fake_folder(tmp_path / "one"), fake_folder(tmp_path / "same")
    other = fake_folder(tmp_path / "other", weights=b"weightz")  # same size, other bytes
    assert folder_sha256(one) == folder_sha256(same) != folder_sha256(other)
    (one / "README.md").write_text("notes")  # not what decides the answers
    assert folder_sha256(one) == folder_sha256(same)
    cached = json.loads(hash_cache_path().read_text())
    assert str((one / "model.safetensors").resolve()) in cached
    # A recorded hash is trusted while the file's size and time are unchanged, read again when they change.
    key = str((one / "model.safetensors").resolve())
    cached[key]["sha256"] = "f" * 64
    hash_cache_path().write_text(json.dumps(cached))
    assert folder_sha256(one) != folder_sha256(same)
    (one / "model.safetensors").write_bytes(b"weights!")
    assert folder_sha256(one) not in (folder_sha256(same), folder_sha256(other))
    assert json.loads(hash_cache_path().read_text())[key]["sha256"] != "f" * 64


def test_identity_names_the_folder_its_hash_dtype_and_adapter_without_loading_weights(tmp_path):
    base = fake_folder(tmp_path / "tiny")
    model = LocalTransformersModel(base, device="cpu")
    assert model.identity == {"kind": "transformers", "model": "tiny", "sha256": folder_sha256(base),
                              "dtype": "float32"}
    assert model._runtime is None  # weights load on the first call
    assert LocalTransformersModel(base, dtype="bfloat16").identity["dtype"] == "bfloat16"
    adapter = fake_adapter(tmp_path / "run" / "finetune" / "lora", base=base_identity(base))
    tuned = LocalTransformersModel(base, adapter=adapter)
    assert tuned.identity["adapter"]["name"] == "lora/adapter" and tuned.identity["adapter"]["data_hash"] == "rows123"
    retrained = fake_adapter(tmp_path / "run2" / "finetune" / "lora", base=base_identity(base), weights=b"lorb")
    assert LocalTransformersModel(base, adapter=retrained).identity != tuned.identity
    with pytest.raises(ModelFolderError, match="not a peft adapter folder"):
        LocalTransformersModel(base, adapter=tmp_path)


def test_an_adapter_trained_on_another_base_is_refused_when_served_and_when_compared(tmp_path):
    base, other = fake_folder(tmp_path / "base"), fake_folder(tmp_path / "other", weights=b"other")
    assert base_identity(base) == {"kind": "transformers", "file": "base", "sha256": folder_sha256(base)}
    adapter = fake_adapter(tmp_path / "tuned", base=base_identity(other))
    with pytest.raises(ModelFolderError, match="was trained on other .sha256"):
        LocalTransformersModel(base, adapter=adapter)
    check_adapter_base(tmp_path / "tuned" / "training.json", other)
    with pytest.raises(AdapterBaseMismatch, match="not on base"):
        check_adapter_base(tmp_path / "tuned" / "training.json", base)


def test_local_kinds_name_their_base_and_the_config_serving_a_tuned_model(tmp_path):
    from workbench.models.llama_cpp import embedded_model_path

    embedded = {"kind": "embedded", "n_ctx": 2048}
    folder = {"kind": "transformers", "base_model": str(tmp_path / "m"), "device": "cpu"}
    assert local_models.base_path({}) == local_models.base_path(embedded) == embedded_model_path()
    assert local_models.base_path(folder) == tmp_path / "m"
    assert local_models.training_device(folder) == "cpu" and local_models.training_device(embedded) is None
    assert local_models.tuned_model_config(embedded, tmp_path / "ft") == {
        **embedded, "lora_path": str((tmp_path / "ft" / "adapter.gguf").resolve())}
    assert local_models.tuned_model_config(folder, tmp_path / "ft") == {
        **folder, "adapter": str((tmp_path / "ft" / "adapter").resolve())}
    with pytest.raises(ValueError, match="run x used a 'openai_compatible' model.*--format openai.*start_fine_tune"):
        local_models.require_local({"kind": "openai_compatible", "model": "gpt"}, "run x")


def test_a_round_of_a_folder_model_is_served_with_its_peft_adapter_and_refuses_a_preset_adapter(tmp_path):
    import yaml

    from workbench.experiments.config import load_experiment
    from workbench.experiments.rounds import PEFT_ADAPTER, Round, RoundError, run_round

    done = Round(1, tmp_path / "1", None, {})
    assert done.adapter is None
    fake_adapter((tmp_path / "1" / PEFT_ADAPTER).parent)
    assert done.adapter == tmp_path / "1" / PEFT_ADAPTER  # no adapter.gguf: the peft folder serves it
    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "x", "task": str(root / "data/complaint_triage/task.yaml"),
        "dataset": str(root / "data/complaint_triage/test.jsonl"), "variants": ["zero_shot"],
        "model": {"kind": "transformers", "base_model": str(tmp_path / "m"), "adapter": str(tmp_path / "a")}}))
    with pytest.raises(RoundError, match="already names an adapter .adapter."):
        run_round(load_experiment(config), folder=tmp_path / "r", log=lambda _: None)
