"""Process state (``get-state`` / ``set-state`` / ``clear-state``): a small storage interface,
and its SQLite implementation under the node's home.

Called from process threads (a blocking call blocks only the calling process), so the SQLite
store serialises its connection with a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from hnet import ProcessId

__all__ = ["MemoryStateStore", "SqliteStateStore", "StateStore"]


class StateStore(Protocol):
    def get(self, process: ProcessId) -> bytes | None: ...

    def set(self, process: ProcessId, data: bytes) -> None: ...

    def clear(self, process: ProcessId) -> None: ...

    def close(self) -> None: ...


class MemoryStateStore:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, process: ProcessId) -> bytes | None:
        with self._lock:
            return self._data.get(str(process))

    def set(self, process: ProcessId, data: bytes) -> None:
        with self._lock:
            self._data[str(process)] = bytes(data)

    def clear(self, process: ProcessId) -> None:
        with self._lock:
            self._data.pop(str(process), None)

    def close(self) -> None:
        pass


class SqliteStateStore:
    """One table ``state(process TEXT PRIMARY KEY, data BLOB)`` in ``path``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS state (process TEXT PRIMARY KEY, data BLOB NOT NULL)"
        )

    def get(self, process: ProcessId) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM state WHERE process = ?", (str(process),)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, process: ProcessId, data: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO state (process, data) VALUES (?, ?) "
                "ON CONFLICT(process) DO UPDATE SET data = excluded.data",
                (str(process), bytes(data)),
            )

    def clear(self, process: ProcessId) -> None:
        with self._lock:
            self._db.execute("DELETE FROM state WHERE process = ?", (str(process),))

    def close(self) -> None:
        with self._lock:
            self._db.close()
