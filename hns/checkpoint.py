"""The chain source's checkpoint: the Hypermap logs delivered so far, in SQLite.

Why logs and not indexer state: the logs are the only thing whose meaning is fixed by the chain.
Replaying them through :class:`hns.Indexer` gives exactly the records a sync from block zero
gives, whatever the indexer's internals become, and a replay of a few hundred thousand small
logs from a local file takes seconds, not the minutes a chain sync takes.

What is stored (one file per chain and contract, see :func:`checkpoint_path`):

* ``logs``: every delivered log, as its JSON text, keyed by (block, log index);
* ``cursor``: the last block fully fetched (every log up to and including it is in ``logs``)
  and its hash;
* ``blocks``: hashes of recently delivered blocks (at most :data:`HASH_WINDOW`), so a reorg
  can be traced back to the last block that is still canonical;
* ``meta``: the chain id, contract and first block the file belongs to, and progress figures
  for ``hnet hns status``.

Each fetched block range is committed as one transaction (logs, hashes and cursor together),
so whatever happens to the process (SIGKILL included), a restart sees the state after the last
committed range and nothing of a half-fetched one. WAL mode with ``synchronous=NORMAL``: a
commit is in the WAL before it returns, which survives any process death; only an OS crash can
lose the last commits, and never the file's consistency (the lost blocks are fetched again).
Readers (``hnet hns status``) can read while a sync writes.

Every method takes an internal lock, so the object may be used from worker threads
(``asyncio.to_thread``), one call at a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hns.events import log_block_number, log_index

_orjson_loads: Callable[[str], Any] | None
_orjson_dumps: Callable[[Any], bytes] | None
try:
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - orjson is a dependency, but optional at runtime
    _orjson_loads = _orjson_dumps = None

_MAX_FAST_DEPTH = 32


def _plain(value: object, depth: int = _MAX_FAST_DEPTH) -> bool:
    """True if ``value`` is made only of dicts with ``str`` keys, lists, tuples, ``str``,
    ``int``, ``bool`` and None (exact types, no float), at most ``depth`` levels deep: what
    orjson writes exactly as ``json.dumps`` does (given ASCII without escapes)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth <= 0:
        return False
    if isinstance(value, dict) and kind is dict:
        return all(type(k) is str and _plain(v, depth - 1) for k, v in value.items())
    if isinstance(value, list | tuple) and (kind is list or kind is tuple):
        return all(_plain(v, depth - 1) for v in value)
    return False


def _dumps(log: object) -> str:
    """``json.dumps(log, separators=(",", ":"))``, the same text, through orjson when that is
    provably the same: plain values (see :func:`_plain`) whose output is printable ASCII with
    no escape (json would escape a backslash, a quote, control characters, DEL and non-ASCII,
    orjson writes the last two raw)."""
    if _orjson_dumps is not None and _plain(log):
        try:
            raw = _orjson_dumps(log)
        except Exception:  # e.g. an integer over 64 bits: json decides
            pass
        else:
            if raw.isascii() and b"\\" not in raw and b"\x7f" not in raw:
                return raw.decode("ascii")
    return json.dumps(log, separators=(",", ":"))


def _loads(text: str) -> Any:
    """``json.loads(text)``: orjson's result when orjson writes it back as ``text`` exactly (so
    no integer over 64 bits read as a float, no NaN, no escape read another way), else json's."""
    if _orjson_loads is not None and _orjson_dumps is not None:
        try:
            obj = _orjson_loads(text)
            if _orjson_dumps(obj) == text.encode():
                return obj
        except Exception:  # not JSON to orjson (NaN, a lone surrogate ...): json decides
            pass
    return json.loads(text)


SCHEMA_VERSION = "1"
HASH_WINDOW = 256
"""Block hashes kept for reorg tracing. Deliveries happen at confirmation depth, so a reorg
reaching them is already rare; one deeper than this window's span means a full resync."""

CHECKPOINT_DIR = "hns"
"""Where under a node's home checkpoints live."""


class CheckpointError(Exception):
    """The checkpoint file is unusable (corrupt, another chain's, another start block).
    One line, naming the file."""


@dataclass(frozen=True, slots=True)
class ChainIdentity:
    """What a checkpoint belongs to; a file made for another identity is refused."""

    chain_id: int
    contract: str
    first_block: int

    def as_meta(self) -> dict[str, str]:
        return {
            "chain_id": str(self.chain_id),
            "contract": self.contract.lower(),
            "first_block": str(self.first_block),
        }


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block fully fetched (inclusive) and its hash (``0x`` hex)."""

    block: int
    hash: str


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """A summary for ``hnet hns status``."""

    path: str
    chain_id: int
    contract: str
    first_block: int
    cursor: Cursor | None
    logs: int
    head: int | None
    updated: float | None


def checkpoint_path(home: str | os.PathLike[str], chain_id: int, contract: str) -> Path:
    """The checkpoint file of ``contract`` on ``chain_id`` under a node's home."""
    return Path(home) / CHECKPOINT_DIR / f"chain{chain_id}-{contract.lower()}.sqlite"


def log_position(log: Mapping[str, object]) -> tuple[int, int]:
    """(block, log index) of a delivered log; both must be present (the source checks)."""
    block = log_block_number(log)
    index = log_index(log)
    if block is None or index is None:
        raise ValueError("a delivered log has a block number and a log index")
    return block, index


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    block INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


class Checkpoint:
    """A checkpoint file at ``path`` (``None``: in memory, for a source without a home).

    Opening creates the file and its directory if needed and refuses a file made for another
    :class:`ChainIdentity` (:class:`CheckpointError`).
    """

    def __init__(self, path: str | os.PathLike[str] | None, identity: ChainIdentity) -> None:
        self.path = Path(path) if path is not None else None
        self.identity = identity
        self._lock = threading.Lock()
        self._db = self._open()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path) if self.path else ':memory:'!r})"

    @property
    def _where(self) -> str:
        return f"checkpoint {self.path}" if self.path else "checkpoint (memory)"

    def _open(self) -> sqlite3.Connection:
        target = ":memory:"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CheckpointError(f"{self._where}: {e.strerror or e}") from None
            target = str(self.path)
        try:
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as e:
            raise CheckpointError(f"{self._where}: {e}") from None
        want = {"schema": SCHEMA_VERSION, **self.identity.as_meta()}
        if not meta:
            with _transaction(db):
                db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(want.items()))
            return db
        for key, value in want.items():
            if meta.get(key) != value:
                db.close()
                raise CheckpointError(
                    f"{self._where}: made for {key} {meta.get(key)}, not {value}; "
                    "use another home or delete the file"
                )
        return db

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            self._db.close()

    # --- reading ---------------------------------------------------------------------------

    def cursor(self) -> Cursor | None:
        """The last block fully fetched, or None before the first commit."""
        with self._lock:
            row = self._db.execute("SELECT block, hash FROM cursor WHERE id = 0").fetchone()
        return Cursor(int(row[0]), str(row[1])) if row else None

    def count(self) -> int:
        """How many logs are stored."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM logs").fetchone()[0])

    def logs_after(self, position: tuple[int, int]) -> list[dict[str, object]]:
        """Stored logs after ``position`` (block, log index), in chain order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT json FROM logs WHERE (block, log_index) > (?, ?) ORDER BY block, log_index",
                position,
            ).fetchall()
        return [_loads(r[0]) for r in rows]

    def recent_hashes(self) -> list[tuple[int, str]]:
        """Known (block, hash) pairs of delivered blocks, lowest first."""
        with self._lock:
            rows = self._db.execute("SELECT number, hash FROM blocks ORDER BY number").fetchall()
        return [(int(n), str(h)) for n, h in rows]

    def status(self) -> CheckpointStatus:
        """A summary of what is stored."""
        with self._lock:
            return _status(self._db, str(self.path) if self.path else ":memory:")

    # --- writing ---------------------------------------------------------------------------

    def commit(
        self,
        logs: Sequence[Mapping[str, object]],
        cursor: Cursor,
        hashes: Mapping[int, str],
        *,
        head: int | None = None,
    ) -> None:
        """Store one fully fetched range: its logs (in chain order), the hashes of blocks it
        saw and the new cursor, in one transaction. Every log must lie after the old cursor and
        at most at the new one (a range is never stored twice)."""
        rows = [(*log_position(log), _dumps(log)) for log in logs]
        with self._lock:
            old = self._db.execute("SELECT block FROM cursor WHERE id = 0").fetchone()
            low = int(old[0]) if old else self.identity.first_block - 1
            if cursor.block < low or any(not low < b <= cursor.block for b, _, _ in rows):
                raise CheckpointError(f"{self._where}: range overlaps what is stored")
            window = {**hashes, cursor.block: cursor.hash}
            with _transaction(self._db):
                self._db.executemany("INSERT INTO logs VALUES (?, ?, ?)", rows)
                self._db.executemany(
                    "INSERT OR REPLACE INTO blocks VALUES (?, ?)", sorted(window.items())
                )
                self._prune_hashes()
                self._db.execute(
                    "INSERT OR REPLACE INTO cursor VALUES (0, ?, ?)", (cursor.block, cursor.hash)
                )
                self._set_meta({"updated": repr(time.time())})
                if head is not None:
                    self._set_meta({"head": str(head)})

    def rollback(self, keep_through: int) -> Cursor | None:
        """Forget everything after block ``keep_through`` (a reorg replaced it): logs, hashes,
        and the cursor moves back to that block (its hash must be known; below every known
        hash, or below the first block, the checkpoint is emptied). Returns the new cursor."""
        with self._lock:
            row = self._db.execute(
                "SELECT number, hash FROM blocks WHERE number = ?", (keep_through,)
            ).fetchone()
            with _transaction(self._db):
                if row is None or keep_through < self.identity.first_block:
                    self._db.execute("DELETE FROM logs")
                    self._db.execute("DELETE FROM blocks")
                    self._db.execute("DELETE FROM cursor")
                    return None
                self._db.execute("DELETE FROM logs WHERE block > ?", (keep_through,))
                self._db.execute("DELETE FROM blocks WHERE number > ?", (keep_through,))
                self._db.execute(
                    "INSERT OR REPLACE INTO cursor VALUES (0, ?, ?)", (int(row[0]), str(row[1]))
                )
            return Cursor(int(row[0]), str(row[1]))

    def note_head(self, head: int) -> None:
        """Record the chain head last seen (for status); its own small transaction."""
        with self._lock, _transaction(self._db):
            self._set_meta({"head": str(head), "updated": repr(time.time())})

    def _set_meta(self, values: Mapping[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def _prune_hashes(self) -> None:
        self._db.execute(
            "DELETE FROM blocks WHERE number NOT IN "
            "(SELECT number FROM blocks ORDER BY number DESC LIMIT ?)",
            (HASH_WINDOW,),
        )


def read_status(path: str | os.PathLike[str]) -> CheckpointStatus:
    """Summarise a checkpoint file without knowing its identity (read-only; for status)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file}: no such file")
    try:
        db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            return _status(db, str(file))
        finally:
            db.close()
    except (sqlite3.Error, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {file}: unreadable ({e})") from None


def read_logs(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Every log a checkpoint file holds, in chain order (read-only; for ``hns show``)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file}: no such file")
    try:
        db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT json FROM logs ORDER BY block, log_index").fetchall()
        finally:
            db.close()
        return [_loads(r[0]) for r in rows]
    except (sqlite3.Error, ValueError) as e:
        raise CheckpointError(f"checkpoint {file}: unreadable ({e})") from None


def _status(db: sqlite3.Connection, where: str) -> CheckpointStatus:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    logs = int(db.execute("SELECT COUNT(*) FROM logs").fetchone()[0])
    row = db.execute("SELECT block, hash FROM cursor WHERE id = 0").fetchone()
    return CheckpointStatus(
        path=where,
        chain_id=int(meta["chain_id"]),
        contract=str(meta["contract"]),
        first_block=int(meta["first_block"]),
        cursor=Cursor(int(row[0]), str(row[1])) if row else None,
        logs=logs,
        head=int(meta["head"]) if "head" in meta else None,
        updated=float(meta["updated"]) if "updated" in meta else None,
    )


def find_checkpoints(home: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint files under a node's home."""
    directory = Path(home) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("chain*.sqlite") if p.is_file())


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection,
    so a batch is one transaction whatever the sqlite3 module's own transaction handling."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
