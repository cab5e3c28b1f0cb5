"""A persistent SQLite cache of model answers.

The key is the SHA-256 of the model's identity (never its credentials), the rendered messages, the
generation options, the answer schema and the sample index. Each answer is committed as soon as
it arrives, so a run killed part-way resumes without re-sending any call that already succeeded.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workbench.models.base import ChatRequest, Completion

SCHEMA_VERSION = 1

# Ordered migrations: index i upgrades a database from version i to i + 1.
_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS responses (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        request TEXT NOT NULL,
        text TEXT NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        finish_reason TEXT,
        latency_s REAL NOT NULL,
        created_at REAL NOT NULL
    );
    """,
]


def cache_key(model_identity: dict[str, Any], request: ChatRequest, sample: int = 0) -> str:
    """Hex SHA-256 naming one answer.

    `sample` distinguishes repeats drawn at temperature > 0, so each repeat is a real sample; at
    temperature 0 the runner passes 0 for every repeat. Credentials are not in `model_identity`.
    """
    payload = {
        "model": model_identity,
        "messages": list(request.messages),
        "options": request.options.as_dict(),
        "schema": request.schema,
        "sample": sample,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """SQLite-backed store of `Completion`s by key. Safe to open from several processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        # WAL lets readers and one writer work at once; NORMAL sync keeps every committed row
        # across a killed process (only an OS crash could lose the last few).
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise RuntimeError(
                f"{self.path} was written by a newer workbench (schema {version}); upgrade workbench"
            )
        for index in range(version, len(_MIGRATIONS)):
            self._connection.executescript(_MIGRATIONS[index])
            self._connection.execute(f"PRAGMA user_version = {index + 1}")

    def get(self, key: str) -> Completion | None:
        row = self._connection.execute(
            "SELECT text, tokens_in, tokens_out, finish_reason, latency_s FROM responses WHERE key = ?", (key,)
        ).fetchone()
        return Completion(*row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The cached completions among `keys`, by key."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        # SQLite limits bound parameters per statement; 500 stays well under every build's limit.
        for offset in range(0, len(keys), 500):
            chunk = keys[offset:offset + 500]
            placeholders = ",".join("?" * len(chunk))
            for key, *values in self._connection.execute(
                "SELECT key, text, tokens_in, tokens_out, finish_reason, latency_s FROM responses "
                f"WHERE key IN ({placeholders})",
                chunk,
            ):
                found[key] = Completion(*values)
        return found

    def put(self, key: str, model_identity: dict[str, Any], request: ChatRequest, completion: Completion) -> None:
        """Store one completion and commit it at once."""
        request_json = json.dumps(
            {"messages": list(request.messages), "options": asdict(request.options), "schema": request.schema},
            ensure_ascii=False,
        )
        self._connection.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                json.dumps(model_identity, sort_keys=True),
                request_json,
                completion.text,
                completion.tokens_in,
                completion.tokens_out,
                completion.finish_reason,
                completion.latency_s,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
