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

Parsing gives exactly what ``json.loads`` gives (the same dicts, keys in the same order), or
refuses exactly what it refuses. A file of the usual shape (a ``metadata`` object of strings and a
``logs`` list of objects whose values are strings, booleans, null or lists of strings, no other
top-level key) is decoded by msgspec against that shape, 1.6-1.9x faster than ``json.loads`` into
the same values (on ``bench/indexer.py``'s files). Numbers never pass that shape; within it msgspec
either gives json's result or refuses (it refuses more: lone surrogates, a BOM, UTF-8-encoded
surrogates, which json accepts). Anything it refuses, or any other shape, is parsed by
``json.loads``, which decides.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hns.events import MalformedLog, gc_paused, is_quantity, log_block_number, log_index

PROTOCOL_VERSION = "0"
MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024
"""Largest cache file read. The reference writes one file per small block batch."""

_METADATA_FIELDS = ("chainId", "fromBlock", "toBlock", "timeCreated", "createdBy", "signature")


_Parts = tuple[dict[str, Any], list[Any], bool]
"""A file's metadata and logs, and whether every log is known to be a ``dict``."""


def _typed_decoder() -> Callable[[bytes | str], _Parts | None] | None:
    """A decoder of the usual file shape (module doc) into its metadata and logs, giving None
    for anything else; None without msgspec."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is a dependency, but optional at runtime
        return None

    class _File(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        metadata: dict[str, str]
        logs: list[dict[str, str | bool | list[str] | None]]

    decode: Callable[[bytes | str], _File] = msgspec.json.Decoder(_File).decode

    def typed(data: bytes | str) -> _Parts | None:
        try:
            file = decode(data)
        except (msgspec.DecodeError, UnicodeError, RecursionError):  # ValidationError too
            return None
        return file.metadata, file.logs, True

    return typed


_decode_typed = _typed_decoder()


def _parts(data: bytes | str) -> _Parts:
    """The file's ``metadata`` and ``logs``, as ``json.loads`` would give them (module doc).
    Raises :class:`CacheFileError`."""
    if _decode_typed is not None:
        parts = _decode_typed(data)
        if parts is not None:
            return parts
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
    return meta, logs, False


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
    with gc_paused():
        meta, logs, dicts = _parts(data)
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
    if not dicts and not all(type(log) is dict for log in logs):  # json makes plain dicts
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


def _json_key(log: Mapping[str, object]) -> str:
    return json.dumps(log, sort_keys=True, separators=(",", ":"))


def _bucket_key(log: Mapping[str, object]) -> object:
    """Equal for exact duplicates, and rarely equal otherwise: a log's place on chain (its
    block's hash, its index there, its transaction) when those are strings or absent; else
    its JSON. Equal keys are only a hint: :func:`ordered_logs` then compares the JSON."""
    key = (log.get("blockHash"), log.get("logIndex"), log.get("transactionHash"))
    parts: list[str | None] = []
    for part in key:
        if part is not None and not isinstance(part, str):
            return (_json_key(log),)  # odd values: the log's JSON itself (a 1-tuple)
        parts.append(None if part is None else str.__str__(part))  # JSON writes the str data
    return tuple(parts)


_MAX_CACHED_INDEXES = 4096


def ordered_logs(caches: Iterable[LogCache]) -> list[dict[str, object]]:
    """All logs of ``caches`` in chain order (block, then log index; stable), with exact
    duplicates (overlapping caches) dropped, as the reference's bootstrap does.

    Exact duplicates: logs whose JSON (keys sorted) is the same. A log is serialised only when
    an earlier one has the same (blockHash, logIndex, transactionHash): a duplicate, or a
    different log claiming the same place (both are kept)."""
    with gc_paused():
        return _ordered_logs(caches)


def _ordered_logs(caches: Iterable[LogCache]) -> list[dict[str, object]]:
    # Bucket key -> the first log with it; once a second log has it, the JSON of each
    # distinct log with it (a set: however many logs share a key, each costs one dumps).
    first: dict[object, Mapping[str, object]] = {}
    distinct: dict[object, set[str]] = {}
    out: list[dict[str, object]] = []
    # Positions are only kept once a log is out of order (then computed for those before):
    # cacher files in fromBlock order need none.
    positions: list[tuple[int, int]] | None = None
    last_number = last_index = -1  # the previous log's position while all are in order
    block_text: str | None = None  # the last blockNumber string and its value
    block = -1
    indexes: dict[str, int] = {}  # logIndex strings seen (a block's indexes repeat)
    for cache in caches:
        for log in cache.logs:
            get = log.get
            a, b, c = get("blockHash"), get("logIndex"), get("transactionHash")
            key: object = (a, b, c)
            if type(a) is not str or type(b) is not str or type(c) is not str:
                key = _bucket_key(log)
            earlier = first.get(key)
            if earlier is None:
                first[key] = log
            else:
                jsons = distinct.get(key)
                if jsons is None:
                    jsons = distinct[key] = {_json_key(earlier)}
                mine = _json_key(log)
                if mine in jsons:
                    continue  # an exact duplicate
                jsons.add(mine)
            out.append(log)
            # Its position, as _position computes it, the common strings remembered.
            text = get("blockNumber")
            number: int | None = None
            index: int | None = None
            if type(text) is str and type(b) is str:
                if text == block_text:
                    number = block
                elif is_quantity(text):
                    number = block = int(text, 16)
                    block_text = text
                index = indexes.get(b)
                if index is None and is_quantity(b):
                    index = int(b, 16)
                    if len(indexes) < _MAX_CACHED_INDEXES:
                        indexes[b] = index
            if number is None or index is None:
                number, index = _position(log)
            if positions is not None:
                positions.append((number, index))
            elif number < last_number or (number == last_number and index < last_index):
                positions = [_position(earlier) for earlier in out[:-1]]
                positions.append((number, index))
            else:
                last_number, last_index = number, index
    if positions is None:
        return out
    order = sorted(range(len(out)), key=positions.__getitem__)  # stable, like list.sort
    return [out[i] for i in order]
