"""A persistent SQLite cache of model answers, and a log of which run used which answer.

The key is the SHA-256 of the model's identity (never its credentials), the rendered messages, the
generation options, the answer schema and the sample index. Each answer is committed as soon as
it arrives, so a run killed part-way resumes without re-sending any call that already succeeded.

Next to the answers, ``runs`` and ``run_items`` record every run that used the cache: its id,
times and description, and for each (variant, example, repeat) the answer's key and whether it
was served from the cache. So "what exactly did run X send and get back?" is one query, also after
later runs replaced the run folder's files.
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

# Named migrations, applied in order and recorded in `migrations`; never edit or reorder one that
# has shipped, append a new one instead.
_MIGRATIONS: list[tuple[str, str]] = [
    ("001_responses", """
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
    """),
    ("002_run_log", """
    CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        finished_at REAL,
        description TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS run_items (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        variant TEXT NOT NULL,
        example_id TEXT NOT NULL,
        repeat INTEGER NOT NULL,
        key TEXT NOT NULL,
        cached INTEGER NOT NULL,
        PRIMARY KEY (run_id, variant, example_id, repeat)
    );
    CREATE INDEX IF NOT EXISTS run_items_key ON run_items(key);
    """),
]


_INSERT = "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _row(key: str, identity_json: str, request: ChatRequest, completion: Completion) -> tuple[Any, ...]:
    request_json = json.dumps(
        {"messages": list(request.messages), "options": asdict(request.options), "schema": request.schema},
        ensure_ascii=False,
    )
    return (key, identity_json, request_json, completion.text, completion.tokens_in, completion.tokens_out,
            completion.finish_reason, completion.latency_s, time.time())


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
        self._connection.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        applied = {row[0] for row in self._connection.execute("SELECT name FROM migrations")}
        if not applied and self._connection.execute("PRAGMA user_version").fetchone()[0] >= 1:
            applied = {"001_responses"}  # written before migrations had names (user_version 1)
            self._connection.execute("INSERT INTO migrations VALUES ('001_responses', ?)", (time.time(),))
        known = {name for name, _ in _MIGRATIONS}
        if applied - known:
            raise RuntimeError(
                f"{self.path} was written by a newer workbench (migrations {sorted(applied - known)}); upgrade workbench"
            )
        for name, script in _MIGRATIONS:
            if name not in applied:
                self._connection.executescript(script)
                self._connection.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))

    def log_run(self, run_id: str, description: dict[str, Any], items: Iterable[tuple[str, str, int, str, bool]],
                *, started_at: float, finished_at: float) -> None:
        """Record a run and, per ``(variant, example_id, repeat, key, cached)`` item, the answer it used."""
        with self._connection:  # one transaction: a run is logged whole or not at all
            self._connection.execute("BEGIN")
            self._connection.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                (run_id, started_at, finished_at, json.dumps(description, sort_keys=True, ensure_ascii=False)),
            )
            self._connection.executemany(
                "INSERT OR REPLACE INTO run_items VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, variant, example_id, int(repeat), key, int(cached))
                 for variant, example_id, repeat, key, cached in items],
            )

    def runs(self) -> list[dict[str, Any]]:
        """Every logged run, oldest first: ``run_id``, ``started_at``, ``finished_at``, ``description``."""
        rows = self._connection.execute("SELECT run_id, started_at, finished_at, description FROM runs ORDER BY started_at")
        return [{"run_id": run_id, "started_at": started, "finished_at": finished, "description": json.loads(text)}
                for run_id, started, finished, text in rows]

    def run_items(self, run_id: str) -> list[dict[str, Any]]:
        """What run `run_id` used, per (variant, example_id, repeat): the answer ``key``, whether it
        was ``cached``, and the answer ``text`` (None if that answer is no longer stored)."""
        rows = self._connection.execute(
            "SELECT i.variant, i.example_id, i.repeat, i.key, i.cached, r.text FROM run_items i "
            "LEFT JOIN responses r ON r.key = i.key WHERE i.run_id = ? ORDER BY i.rowid",
            (run_id,),
        )
        return [{"variant": v, "example_id": e, "repeat": n, "key": k, "cached": bool(c), "text": t}
                for v, e, n, k, c, t in rows]

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
        self._connection.execute(_INSERT, _row(key, json.dumps(model_identity, sort_keys=True), request, completion))

    def put_many(self, model_identity: dict[str, Any],
                 items: Iterable[tuple[str, ChatRequest, Completion]]) -> int:
        """Store (key, request, completion) items of one model in one transaction (a batch's
        results: one commit, not one per answer). Returns how many were stored."""
        identity = json.dumps(model_identity, sort_keys=True)
        rows = [_row(key, identity, request, completion) for key, request, completion in items]
        with self._connection:
            self._connection.execute("BEGIN")
            self._connection.executemany(_INSERT, rows)
        return len(rows)

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
