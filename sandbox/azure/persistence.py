"""Write-through persistence of the simulator's state in one SQLite file.

Namespaced key/value rows hold the current state (resources, operations, account data, settings, the clock
anchor...) and append-only logs hold the request and event-delivery records. Every mutation is written in the
same call; `commit()` ends the transaction once per handled request, so a process killed with SIGKILL loses at
most the request it was serving. WAL mode with synchronous=NORMAL survives process crashes (not power loss),
which is what a simulator needs, and keeps 1,000-account runs fast.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DB_FILE = "state.sqlite3"


class StateStore:
    """Persistent when given a directory; otherwise a no-op (state lives only in memory)."""

    def __init__(self, directory: Path | None) -> None:
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(directory / DB_FILE), check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE IF NOT EXISTS kv (ns TEXT, key TEXT, value TEXT, PRIMARY KEY (ns, key))")
        connection.execute("CREATE TABLE IF NOT EXISTS log (ns TEXT, seq INTEGER, value TEXT, PRIMARY KEY (ns, seq))")
        self._connection = connection
        self._in_transaction = False

    @property
    def persistent(self) -> bool:
        return self._connection is not None

    def _begin(self) -> sqlite3.Connection | None:
        connection = self._connection
        if connection is not None and not self._in_transaction:
            connection.execute("BEGIN")
            self._in_transaction = True
        return connection

    def put(self, namespace: str, key: str, value: Any) -> None:
        with self._lock:
            connection = self._begin()
            if connection is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)",
                    (namespace, key, json.dumps(value, separators=(",", ":"))),
                )

    def delete(self, namespace: str, key: str) -> None:
        with self._lock:
            connection = self._begin()
            if connection is not None:
                connection.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (namespace, key))

    def clear(self, namespace: str) -> None:
        with self._lock:
            connection = self._begin()
            if connection is not None:
                connection.execute("DELETE FROM kv WHERE ns = ?", (namespace,))

    def append(self, namespace: str, sequence: int, value: Any) -> None:
        with self._lock:
            connection = self._begin()
            if connection is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO log (ns, seq, value) VALUES (?, ?, ?)",
                    (namespace, sequence, json.dumps(value, separators=(",", ":"))),
                )

    def commit(self) -> None:
        with self._lock:
            if self._connection is not None and self._in_transaction:
                self._connection.execute("COMMIT")
                self._in_transaction = False

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        with self._lock:
            if self._connection is None:
                return iter(())
            rows = self._connection.execute("SELECT key, value FROM kv WHERE ns = ?", (namespace,)).fetchall()
        return iter([(key, json.loads(value)) for key, value in rows])

    def get(self, namespace: str, key: str) -> Any:
        with self._lock:
            if self._connection is None:
                return None
            row = self._connection.execute("SELECT value FROM kv WHERE ns = ? AND key = ?", (namespace, key)).fetchone()
        return None if row is None else json.loads(row[0])

    def log_entries(self, namespace: str) -> list[Any]:
        with self._lock:
            if self._connection is None:
                return []
            rows = self._connection.execute("SELECT value FROM log WHERE ns = ? ORDER BY seq", (namespace,)).fetchall()
        return [json.loads(value) for (value,) in rows]

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self.commit()
                self._connection.close()
                self._connection = None
