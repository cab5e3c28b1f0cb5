"""Without llama.cpp's LoRA converter (an offline machine that never fetched it), training for
llama.cpp is refused before it starts, not after its last step."""

import pytest

from workbench.finetune import base_model, gguf_adapter
from workbench.finetune.gguf_adapter import AdapterConversionError, train_for_llama_cpp


def test_a_missing_converter_stops_training_before_the_base_is_loaded(tmp_path, monkeypatch):
    def offline():
        raise AdapterConversionError("could not fetch the llama-cpp-python source distribution")

    loaded = []
    monkeypatch.setattr(gguf_adapter, "converter", offline)
    monkeypatch.setattr(base_model, "load_base", lambda *args, **kwargs: loaded.append(1))
    with pytest.raises(AdapterConversionError, match="could not fetch"):
        train_for_llama_cpp([[{"role": "user", "content": "hi"}]], tmp_path / "adapter")
    assert loaded == [] and not (tmp_path / "adapter").exists()
