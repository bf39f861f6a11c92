"""The local registry directory (:class:`hns.Registry`) as an incremental :class:`LogSource`.

:meth:`hns.Registry.register` writes each registration as one new cache file covering one new
block (the registry's last block + 1), renamed into the directory atomically while it holds an
exclusive ``fcntl`` lock on ``.lock``. A file, once there, never changes, so the source
remembers the file names it has read and reads only new ones; their logs come out in chain
order (block, then log index, as :func:`hns.cacher.ordered_logs`).

Order across calls. The directory is listed under a *shared* lock on ``.lock``, so a listing
never sees registration N+1 without N (readdir racing with renames could). Block numbers
therefore only grow from one call to the next for files the registry wrote. Files that arrive
out of order anyway (a cache file copied in by hand, or a listing made without the lock because
a registration held it for more than ``LOCK_WAIT`` seconds) are still returned, once, when
first seen: the indexer then applies them after newer logs, which is what feeding them in chain
order would give unless the older file re-notes a name the newer one already changed.

Bounds and failures. Every file is read with the cacher's size cap
(:data:`hns.cacher.MAX_CACHE_FILE_BYTES` unless told otherwise). A file that cannot be used
(unreadable, corrupt, too big, another chain) is skipped and reported once via
:meth:`RegistrySource.take_problems`; it is looked at again (one ``stat``) on every later call
and re-read as soon as it changes (size, mtime, ctime or inode). A missing directory is an
empty registry; an unlistable one raises :class:`SourceError`. All file I/O, parsing and
de-duplication run in a worker thread; the event loop only updates a few sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path

from hns.cacher import MAX_CACHE_FILE_BYTES, CacheFileError, LogCache, ordered_logs, read_log_cache
from hns.registry import LOCK_FILE, Registry
from hns.sources.base import SourceError

LOCK_WAIT = 2.0
"""Longest a listing waits for the shared registry lock. A registration holds the exclusive
lock for one load and one fsync'd write (milliseconds); past this the holder is taken to be
stuck and the directory is listed without the lock, so a stuck registrar never stalls us."""

_LOCK_RETRY = 0.005
"""Seconds between attempts at the lock (``flock`` itself has no timeout)."""


@dataclass(frozen=True, slots=True)
class _Version:
    """One version of a file on disk: a skipped file is re-read only when this changes."""

    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Version:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(slots=True)
class _Scan:
    """What one worker-thread pass found; applied to the source's state on the event loop."""

    read: list[str] = field(default_factory=list)
    logs: list[dict[str, object]] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    failed: dict[str, tuple[_Version, str]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class RegistrySource:
    """A :class:`~hns.sources.base.LogSource` over a local registry directory.

    ``max_file_bytes``: the largest file read (the cacher's cap by default).
    ``lock_wait``: see :data:`LOCK_WAIT`.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_file_bytes: int = MAX_CACHE_FILE_BYTES,
        lock_wait: float = LOCK_WAIT,
    ) -> None:
        self.registry = registry
        self.name = f"registry {registry.path}"
        self._max_file_bytes = max_file_bytes
        self._lock_wait = lock_wait
        self._read: set[str] = set()
        self._failed: dict[str, _Version] = {}
        self._returned: set[bytes] = set()
        self._problems: list[str] = []
        self._busy = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"RegistrySource({str(self.registry.path)!r})"

    @property
    def files_read(self) -> int:
        """How many of the directory's files have been read and returned."""
        return len(self._read)

    async def read_new(self) -> list[dict[str, object]]:
        """The logs of files not read before, in chain order, never one returned before."""
        async with self._busy:
            if self._closed:
                return []
            # The sets are only mutated below, under self._busy, so the thread may read them.
            scan = await asyncio.to_thread(
                _scan,
                self.registry.path,
                str(self.registry.chain_id),
                self._read,
                self._failed,
                self._returned,
                self._max_file_bytes,
                self._lock_wait,
            )
            self._read.update(scan.read)
            for name in scan.read:
                self._failed.pop(name, None)
            for name in scan.gone:
                self._failed.pop(name, None)
            for name, (version, message) in scan.failed.items():
                self._failed[name] = version
                self._problems.append(f"{self.name}: {name}: {message} (skipped)")
            self._problems.extend(f"{self.name}: {p}" for p in scan.problems)
            self._returned.update(scan.digests)
            return scan.logs

    def take_problems(self) -> list[str]:
        problems, self._problems = self._problems, []
        return problems

    async def aclose(self) -> None:
        """Nothing is held between calls; later ``read_new`` calls return nothing."""
        self._closed = True


# --- the worker thread ------------------------------------------------------------------------


def _scan(
    path: Path,
    chain_id: str,
    read: Set[str],
    failed: dict[str, _Version],
    returned: Set[bytes],
    max_bytes: int,
    lock_wait: float,
) -> _Scan:
    """List ``path``, read the files not in ``read``, return their new logs in chain order."""
    out = _Scan()
    try:
        with _shared_lock(path, lock_wait) as locked:
            if not locked:
                out.problems.append(f"listed without the lock (held over {lock_wait:g} s)")
            names = _cache_file_names(path)
    except FileNotFoundError:
        return out  # no directory yet: an empty registry
    except OSError as e:
        raise SourceError(f"registry {path}: cannot list ({e.strerror or e})") from None
    out.gone = [n for n in failed if n not in names]
    caches: list[tuple[int, int, str, LogCache]] = []
    for name in sorted(names - read):
        file = path / name
        try:
            version = _Version.of(file.stat())
        except OSError:
            continue  # vanished since the listing; a later listing decides
        if failed.get(name) == version:
            continue  # skipped before and unchanged
        try:
            cache = read_log_cache(file, max_bytes=max_bytes)
        except CacheFileError as e:
            out.failed[name] = (version, str(e))
            continue
        md = cache.metadata
        if md.chain_id != chain_id:
            out.failed[name] = (version, f"chain {md.chain_id}, expected {chain_id}")
            continue
        out.read.append(name)
        caches.append((md.from_block_number, md.to_block_number, name, cache))
    caches.sort(key=lambda t: t[:3])
    for log in ordered_logs(c for *_, c in caches):
        digest = _digest(log)
        if digest not in returned:
            out.logs.append(log)
            out.digests.append(digest)
    return out


def _cache_file_names(path: Path) -> set[str]:
    """The cache files, chosen as :meth:`hns.Registry.files` does (no dotfiles, manifests)."""
    with os.scandir(path) as it:
        return {
            e.name
            for e in it
            if e.name.endswith(".json") and not e.name.startswith((".", "manifest")) and e.is_file()
        }


@contextlib.contextmanager
def _shared_lock(path: Path, wait: float) -> Iterator[bool]:
    """Hold a shared lock on the registry's lock file while listing; yields whether it is held.

    No lock file means no registration has run yet: nothing to exclude.
    """
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        if not path.is_dir():
            raise
        yield True
        return
    try:
        yield _try_lock(fd, wait)
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int, wait: float) -> bool:
    """Take a shared ``flock`` on ``fd`` within ``wait`` seconds; False if it stayed held."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(_LOCK_RETRY)


def _digest(log: dict[str, object]) -> bytes:
    """A log's identity for de-duplication: its canonical JSON (exact duplicates only, as
    :func:`hns.cacher.ordered_logs`), hashed to keep 16 bytes per log remembered."""
    key = json.dumps(log, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(key, digest_size=16).digest()
