"""The packaged sentence encoder loads from its files alone, without switching the whole process's
Hugging Face hub off (HF_HUB_OFFLINE would also stop a user's own downloads in the same notebook)."""

import os

from workbench.points.encoder import _load, packaged_model_dir


def test_the_encoder_loads_offline_and_leaves_the_environment_alone(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    model = _load.__wrapped__(str(packaged_model_dir()))
    assert model.encode(["a fee I did not agree to"]).shape == (1, 384)
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
