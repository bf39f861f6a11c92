"""Bootstrap Hypermap history from hypermap-cacher log files before touching RPC.

A location is a directory of cacher files (``hns.cacher``'s format, the same as the local
registry's) or the http(s) URL of a hypermap-cacher's HTTP API, which serves
``{URL}/manifest`` (a JSON object whose ``items`` map keys to ``{metadata, isEmpty, fileHash,
fileName}``) and each file at ``{URL}/log-cache/{fileName}`` (``docs/protocol.md`` §9).

What counts. Files of another chain are skipped. The files are ordered by ``fromBlock`` and
used as far as they cover the block range *without a gap* from the first block wanted: a
file must start at or before the block after the coverage so far. Logs past the coverage
are dropped (RPC fetches those blocks again), as is a file after a gap, so the RPC catch-up
that follows starts right after ``last_block`` and misses nothing. Exact duplicates (files
overlap) are dropped; two different logs at one position keep the first, in file order,
and the conflict is reported.

Trust. A cache's ``signature`` is not checked: the files are the operator's choice (their
own node's cacher, a directory they copied). What RPC delivers after them is checked as
usual, and a reorg check starts at the cache's last block.

Bounds: every file is read with :data:`hns.cacher.MAX_CACHE_FILE_BYTES`, the manifest with
:data:`MAX_MANIFEST_BYTES`, at most :data:`MAX_FILES` files, and every HTTP request has a
deadline of ``timeout`` seconds. All of it is blocking I/O: callers run it in a thread.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hns.cacher import (
    MAX_CACHE_FILE_BYTES,
    CacheFileError,
    LogCache,
    parse_log_cache,
    read_log_cache,
)
from hns.checkpoint import log_position
from hns.events import MalformedLog, gc_paused

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
DEFAULT_TIMEOUT = 30.0
"""Seconds for one HTTP request (the manifest, or one file)."""


class BootstrapError(Exception):
    """The location as a whole cannot be used (not a directory, manifest unreadable). One
    line, naming the location."""


@dataclass
class Bootstrap:
    """What a location's files give for blocks ``first_block..last_block`` (``last_block`` is
    ``first_block - 1`` when they give nothing usable)."""

    location: str
    first_block: int
    last_block: int
    logs: list[dict[str, object]] = field(default_factory=list)
    files_used: int = 0
    files_seen: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def covers(self) -> bool:
        return self.last_block >= self.first_block


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def load_bootstrap(
    location: str,
    *,
    chain_id: int,
    first_block: int,
    timeout: float = DEFAULT_TIMEOUT,
    max_file_bytes: int = MAX_CACHE_FILE_BYTES,
) -> Bootstrap:
    """Read ``location``'s cacher files and plan what they cover (module doc). Raises
    :class:`BootstrapError` when the location itself is unusable; single bad files are
    skipped and described in ``problems``."""
    problems: list[str] = []
    if is_url(location):
        caches = _from_http(location, timeout, max_file_bytes, problems)
        plan = plan_bootstrap(caches, chain_id=chain_id, first_block=first_block)
    else:
        # One pause of the cyclic collector over reading and planning (seconds of CPU, no
        # waits): between files, it would traverse every log parsed so far again
        # (hns.events.gc_paused). Not over HTTP, where the pause would last as long as the
        # downloads; each file's parse pauses it there.
        with gc_paused():
            caches = _from_directory(Path(location), max_file_bytes, problems)
            plan = plan_bootstrap(caches, chain_id=chain_id, first_block=first_block)
    plan.location = location
    plan.problems[:0] = problems
    return plan


def plan_bootstrap(
    caches: Iterable[tuple[str, LogCache]], *, chain_id: int, first_block: int
) -> Bootstrap:
    """The gap-free coverage from ``first_block`` of ``caches`` (``(name, cache)`` pairs)
    and its logs in chain order, de-duplicated."""
    plan = Bootstrap(location="", first_block=first_block, last_block=first_block - 1)
    usable: list[tuple[str, LogCache]] = []
    for name, cache in caches:
        plan.files_seen += 1
        if cache.metadata.chain_id != str(chain_id):
            plan.problems.append(f"{name}: chain {cache.metadata.chain_id}, not {chain_id}")
            continue
        usable.append((name, cache))
    usable.sort(key=lambda nc: (nc[1].metadata.from_block_number, nc[1].metadata.to_block_number))
    chosen: list[LogCache] = []
    end = first_block - 1
    for name, cache in usable:
        lo, hi = cache.metadata.from_block_number, cache.metadata.to_block_number
        if hi <= end:
            if hi >= first_block:
                chosen.append(cache)  # inside the coverage: may still hold logs (overlap)
            continue
        if lo > end + 1:
            plan.problems.append(
                f"{name}: starts at block {lo}, the files before it end at {end}; "
                "it and later files are left to RPC"
            )
            break
        chosen.append(cache)
        end = hi
    plan.last_block = end
    plan.files_used = len(chosen)
    plan.logs = _ordered(chosen, first_block, end, plan.problems)
    return plan


def _ordered(
    caches: list[LogCache], lo: int, hi: int, problems: list[str]
) -> list[dict[str, object]]:
    by_position: dict[tuple[int, int], dict[str, object]] = {}
    malformed = conflicts = 0
    for cache in caches:
        for log in cache.logs:
            try:
                pos = log_position(log)
            except (MalformedLog, ValueError):
                malformed += 1
                continue
            if not lo <= pos[0] <= hi:
                continue
            old = by_position.setdefault(pos, log)
            if old is not log and old != log:
                conflicts += 1
    if malformed:
        problems.append(f"{malformed} logs without a valid block number and log index skipped")
    if conflicts:
        problems.append(
            f"{conflicts} logs conflict with another at the same position; kept the first"
        )
    return [by_position[p] for p in sorted(by_position)]


# --- reading ---------------------------------------------------------------------------------


def _from_directory(
    directory: Path, max_bytes: int, problems: list[str]
) -> list[tuple[str, LogCache]]:
    try:
        names = sorted(p.name for p in directory.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        raise BootstrapError(f"cache {directory}: no such directory") from None
    except NotADirectoryError:
        raise BootstrapError(f"cache {directory}: not a directory") from None
    except OSError as e:
        raise BootstrapError(f"cache {directory}: {e.strerror or e}") from None
    if len(names) > MAX_FILES:
        raise BootstrapError(f"cache {directory}: more than {MAX_FILES} files")
    out: list[tuple[str, LogCache]] = []
    for name in names:
        if name.startswith("manifest"):
            continue  # the cacher keeps its manifest next to the files
        try:
            out.append((name, read_log_cache(directory / name, max_bytes=max_bytes)))
        except CacheFileError as e:
            problems.append(f"{name}: {e}")
    return out


def _get(url: str, timeout: float, max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: bytes = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CacheFileError(f"larger than {max_bytes} bytes")
    return data


def _from_http(
    base: str, timeout: float, max_bytes: int, problems: list[str]
) -> list[tuple[str, LogCache]]:
    root = base.rstrip("/")
    try:
        manifest = json.loads(_get(f"{root}/manifest", timeout, MAX_MANIFEST_BYTES))
    except (urllib.error.URLError, OSError, CacheFileError, ValueError, RecursionError) as e:
        raise BootstrapError(f"cache {_redact(base)}: manifest: {_reason(e)}") from None
    names = manifest_files(manifest)
    if names is None:
        raise BootstrapError(f"cache {_redact(base)}: the manifest has no items object")
    if len(names) > MAX_FILES:
        raise BootstrapError(f"cache {_redact(base)}: more than {MAX_FILES} files")
    out: list[tuple[str, LogCache]] = []
    for name in names:
        url = f"{root}/log-cache/{urllib.parse.quote(name)}"
        try:
            out.append((name, parse_log_cache(_get(url, timeout, max_bytes), max_bytes=max_bytes)))
        except (urllib.error.URLError, OSError, CacheFileError, ValueError) as e:
            problems.append(f"{name}: {_reason(e)}")
    return out


def manifest_files(manifest: object) -> list[str] | None:
    """The file names a cacher manifest lists (skipping empty ranges, which have no file, and
    names that could leave the ``log-cache/`` path); None if it is not a manifest."""
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("items"), Mapping):
        return None
    names: set[str] = set()
    for item in manifest["items"].values():
        if not isinstance(item, Mapping) or item.get("isEmpty") is True:
            continue
        name = item.get("fileName")
        if isinstance(name, str) and name and "/" not in name and ".." not in name:
            names.add(name)
    return sorted(names)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return (
        f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{'/…' if parts.path.strip('/') else ''}"
    )
