"""hypermap-cacher log files: read and write.

The reference cacher (``hyperdrive/packages/hypermap-cacher``) stores Hypermap logs in JSON
files named ``{timeCreated}-chain{chainId}-from{fromBlock}-to{toBlock}-protocol{version}.json``
holding ``{"metadata": {...}, "logs": [...]}``. Every metadata field is a *string*:

* ``chainId`` (``"8453"``), ``fromBlock``/``toBlock`` (decimal block numbers, inclusive);
* ``timeCreated``: UTC ``%Y%m%dT%H%M%SZ``;
* ``createdBy``: the creating process's address string (``node@process:package:publisher``);
* ``signature``: ``0x`` hex of the creator's net-key signature over
  ``keccak256(json(logs) || fromBlock_u64_be || toBlock_u64_be)``, or ``""`` if unsigned.

``logs`` are standard ``eth_getLogs`` objects. This module checks the file's shape and bounds its
size; whether a log is well formed is the indexer's business. Signatures are not checked here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hns.events import MalformedLog, log_block_number, log_index

PROTOCOL_VERSION = "0"
MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024
"""Largest cache file read. The reference writes one file per small block batch."""

_METADATA_FIELDS = ("chainId", "fromBlock", "toBlock", "timeCreated", "createdBy", "signature")


class CacheFileError(ValueError):
    """A cache file is unreadable, too big or not of the cacher's shape."""


@dataclass(frozen=True, slots=True)
class LogsMetadata:
    """A cache file's metadata, as the reference's strings."""

    chain_id: str
    from_block: str
    to_block: str
    time_created: str
    created_by: str
    signature: str = ""

    @property
    def from_block_number(self) -> int:
        return int(self.from_block)

    @property
    def to_block_number(self) -> int:
        return int(self.to_block)

    def to_json(self) -> dict[str, str]:
        return {
            "chainId": self.chain_id,
            "fromBlock": self.from_block,
            "toBlock": self.to_block,
            "timeCreated": self.time_created,
            "createdBy": self.created_by,
            "signature": self.signature,
        }


@dataclass(frozen=True, slots=True)
class LogCache:
    """One cache file: metadata and logs (JSON objects)."""

    metadata: LogsMetadata
    logs: list[dict[str, object]] = field(default_factory=list)


def timestamp_str(t: float | None = None) -> str:
    """The reference's ``timeCreated`` form: UTC ``%Y%m%dT%H%M%SZ``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t is None else t))


def log_cache_filename(metadata: LogsMetadata, protocol_version: str = PROTOCOL_VERSION) -> str:
    """The reference's file name for a cache with this metadata."""
    stamp = metadata.time_created.replace(":", "").replace("-", "")
    return (
        f"{stamp}-chain{metadata.chain_id}-from{metadata.from_block}"
        f"-to{metadata.to_block}-protocol{protocol_version}.json"
    )


def _decimal(meta: Mapping[str, object], key: str) -> str:
    value = meta[key]
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise CacheFileError(f"metadata {key} must be a decimal string")
    return value


def parse_log_cache(data: bytes | str, *, max_bytes: int = MAX_CACHE_FILE_BYTES) -> LogCache:
    """Parse a cache file's contents. Raises :class:`CacheFileError`."""
    if len(data) > max_bytes:
        raise CacheFileError(f"larger than {max_bytes} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise CacheFileError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CacheFileError("not a JSON object")
    meta = obj.get("metadata")
    logs = obj.get("logs")
    if not isinstance(meta, dict):
        raise CacheFileError("no metadata object")
    if not isinstance(logs, list):
        raise CacheFileError("no logs list")
    for key in _METADATA_FIELDS:
        if not isinstance(meta.get(key), str):
            raise CacheFileError(f"metadata {key} missing or not a string")
    metadata = LogsMetadata(
        chain_id=_decimal(meta, "chainId"),
        from_block=_decimal(meta, "fromBlock"),
        to_block=_decimal(meta, "toBlock"),
        time_created=meta["timeCreated"],
        created_by=meta["createdBy"],
        signature=meta["signature"],
    )
    if metadata.from_block_number > metadata.to_block_number:
        raise CacheFileError("metadata fromBlock is after toBlock")
    for i, log in enumerate(logs):
        if not isinstance(log, dict):
            raise CacheFileError(f"log {i} is not an object")
    return LogCache(metadata=metadata, logs=logs)


def read_log_cache(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_CACHE_FILE_BYTES
) -> LogCache:
    """Read and parse a cache file, reading at most ``max_bytes + 1`` bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise CacheFileError(f"cannot read: {e.strerror or e}") from None
    return parse_log_cache(data, max_bytes=max_bytes)


def dump_log_cache(cache: LogCache) -> bytes:
    """Serialise as the reference does (compact JSON, metadata first, fields in its order)."""
    obj = {"metadata": cache.metadata.to_json(), "logs": cache.logs}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def write_log_cache(
    directory: str | os.PathLike[str], cache: LogCache, *, filename: str | None = None
) -> Path:
    """Write ``cache`` into ``directory`` atomically (temp file, fsync, rename) under the
    reference's file name unless ``filename`` is given. Returns the final path."""
    dir_path = Path(directory)
    final = dir_path / (filename or log_cache_filename(cache.metadata))
    fd, tmp = tempfile.mkstemp(dir=dir_path, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(dump_log_cache(cache))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(dir_path, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories are openable on POSIX
        return final
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def _position(log: Mapping[str, object]) -> tuple[int, int]:
    try:
        block = log_block_number(log)
        index = log_index(log)
    except MalformedLog:
        return (-1, -1)  # first, so the indexer skips it before anything it might shadow
    return (-1 if block is None else block, -1 if index is None else index)


def ordered_logs(caches: Iterable[LogCache]) -> list[dict[str, object]]:
    """All logs of ``caches`` in chain order (block, then log index; stable), with exact
    duplicates (overlapping caches) dropped, as the reference's bootstrap does."""
    seen: set[str] = set()
    out: list[dict[str, object]] = []
    for cache in caches:
        for log in cache.logs:
            key = json.dumps(log, sort_keys=True, separators=(",", ":"))
            if key in seen:
                continue
            seen.add(key)
            out.append(log)
    out.sort(key=_position)
    return out
