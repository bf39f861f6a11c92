"""Hypermap contract constants and the Mint/Note logs as ``eth_getLogs`` objects.

A log is a JSON object as the JSON-RPC returns it: ``address``, ``topics`` (``0x`` hex),
``data`` (``0x`` hex, the ABI-encoded non-indexed arguments), ``blockHash``, ``blockNumber``,
``transactionHash``, ``transactionIndex``, ``logIndex`` (hex quantities) and ``removed``.

Events (indexed arguments are topics; an indexed ``bytes`` is stored as its keccak)::

    Mint(bytes32 indexed parenthash, bytes32 indexed childhash, bytes indexed labelhash,
         bytes label)
    Note(bytes32 indexed parenthash, bytes32 indexed notehash, bytes indexed labelhash,
         bytes label, bytes data)

so topic1 is the parent's namehash, topic2 the entry's own namehash and topic3 keccak(label).
Decoders never trust lengths or offsets: anything malformed raises :class:`MalformedLog`.
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hns.names import child_hash, labelhash

HYPERMAP_ADDRESS = "0x000000000044C6B8Cb4d8f0F889a3E47664EAeda"
"""Hypermap contract on Base (EIP-55 checksummed, as alloy serialises addresses)."""
HYPERMAP_CHAIN_ID = 8453
"""Base mainnet."""
HYPERMAP_FIRST_BLOCK = 27_270_411
"""First block (minus one) of the Hypermap deployment."""

MINT_SIGNATURE = "Mint(bytes32,bytes32,bytes,bytes)"
NOTE_SIGNATURE = "Note(bytes32,bytes32,bytes,bytes,bytes)"
FACT_SIGNATURE = "Fact(bytes32,bytes32,bytes,bytes,bytes)"

MINT_TOPIC = bytes.fromhex("b59dae5eda69178326b6517bb1aa33e208bf2ac347e30d3a5daf0ecb6249f7b1")
NOTE_TOPIC = bytes.fromhex("e40d9f1ec78dfc3c5a94c3edae28058ba092a8f65ce8a199731840a3d20f82f4")
FACT_TOPIC = bytes.fromhex("6df41fff09a97e34e341514998993ce9f4542c3fa8358931a96c9fff178c3adb")

MAX_LOG_DATA_BYTES = 64 * 1024
"""Largest ``data`` we decode. HNS notes are tiny (the largest, ``~routers``, is 32 bytes a
router: this allows about 2,000); anything bigger is not ours to read."""
MAX_TOPICS = 4
"""The EVM allows at most four topics."""

_QUANTITY_RE = re.compile(r"0x[0-9a-fA-F]{1,16}")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


class MalformedLog(ValueError):
    """A log cannot be decoded. ``reason`` is a short stable code for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- bulk work ------------------------------------------------------------------------------

_gc_lock = threading.Lock()
_gc_depth = 0
_gc_resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for one bulk step over many logs (parsing a
    cache file, ordering logs, :meth:`hns.Indexer.feed_all`).

    Why: such a step makes hundreds of thousands of small containers (a dict and a list per
    log) that all stay alive, and CPython's collector answers that growth with repeated full
    collections, each traversing everything alive: that alone doubled the time of these steps
    (``bench/indexer.py``). Nothing else changes: reference counting frees everything as usual,
    and cycles made meanwhile are collected once the collector runs again. Pauses nest and may
    overlap across threads; the collector is re-enabled (if it was enabled when the first one
    began) when the last one ends."""
    global _gc_depth, _gc_resume
    with _gc_lock:
        if _gc_depth == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_resume:
                gc.enable()


# --- hex helpers ----------------------------------------------------------------------------


def to_quantity(n: int) -> str:
    """A JSON-RPC quantity: ``0x`` and minimal lowercase hex (``0x0`` for zero)."""
    if n < 0:
        raise ValueError("quantities are non-negative")
    return hex(n)


def is_quantity(value: str) -> bool:
    """True if ``value`` is a JSON-RPC hex quantity :func:`parse_quantity` accepts."""
    return _QUANTITY_RE.fullmatch(value) is not None


def parse_quantity(value: object, what: str = "quantity") -> int:
    """Parse a JSON-RPC hex quantity (at most 64 bits)."""
    if not isinstance(value, str) or _QUANTITY_RE.fullmatch(value) is None:
        raise MalformedLog(f"bad_{what}", f"{what} is not a hex quantity")
    return int(value, 16)


def to_data(raw: bytes) -> str:
    """``0x`` and lowercase hex."""
    return "0x" + raw.hex()


def parse_data(value: object, what: str = "data", *, max_bytes: int = MAX_LOG_DATA_BYTES) -> bytes:
    """Parse ``0x`` hex bytes, refusing more than ``max_bytes`` before decoding anything."""
    if not isinstance(value, str):
        raise MalformedLog(f"bad_{what}", f"{what} is not a string")
    if len(value) > 2 + 2 * max_bytes:
        raise MalformedLog(f"{what}_too_big", f"{what} exceeds {max_bytes} bytes")
    if value[:2] == "0x" and not len(value) % 2:
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            pass
        else:
            # fromhex skips ASCII whitespace; with none, every character was a hex digit.
            if 2 * len(raw) + 2 == len(value):
                return raw
    raise MalformedLog(f"bad_{what}", f"{what} is not 0x-prefixed even-length hex")


def parse_word(value: object, what: str = "topic") -> bytes:
    """Parse a 32-byte ``0x`` hex value (a topic or a hash)."""
    raw = parse_data(value, what, max_bytes=32)
    if len(raw) != 32:
        raise MalformedLog(f"bad_{what}", f"{what} is not 32 bytes")
    return raw


def same_address(a: object, b: str) -> bool:
    """True if ``a`` is a 20-byte hex address equal to ``b`` (case-insensitive)."""
    return isinstance(a, str) and _ADDRESS_RE.fullmatch(a) is not None and a.lower() == b.lower()


# --- ABI coder for tuples of dynamic ``bytes`` ----------------------------------------------


_ZERO_WORD = bytes(32)


def _pad32(n: int) -> int:
    return (n + 31) // 32 * 32


def abi_encode_bytes(*values: bytes) -> bytes:
    """ABI-encode a tuple of ``bytes`` values: head of offsets, then length-prefixed,
    zero-padded tails (what Solidity emits for ``(bytes)`` and ``(bytes, bytes)``)."""
    head = bytearray()
    tail = bytearray()
    base = 32 * len(values)
    for v in values:
        head += (base + len(tail)).to_bytes(32, "big")
        tail += len(v).to_bytes(32, "big") + v + bytes(_pad32(len(v)) - len(v))
    return bytes(head + tail)


def abi_decode_bytes(data: bytes, count: int) -> tuple[bytes, ...]:
    """Decode ``count`` dynamic ``bytes`` values, strictly.

    Every offset and length is checked against the buffer before use (so nothing is ever
    allocated beyond the input's size), tails must be fully padded and the padding must be
    zero (like alloy's validating decoder). Raises :class:`MalformedLog`.
    """
    size = len(data)
    if size < 32 * count:
        raise MalformedLog("bad_abi", "data shorter than its head")
    out: list[bytes] = []
    for i in range(count):
        offset = int.from_bytes(data[32 * i : 32 * i + 32], "big")
        if offset + 32 > size:
            raise MalformedLog("bad_abi", f"offset {i} out of bounds")
        length = int.from_bytes(data[offset : offset + 32], "big")
        start = offset + 32
        padded = start + _pad32(length)
        if length > size - start or padded > size:
            raise MalformedLog("bad_abi", f"length {i} out of bounds")
        end = start + length
        if data[end:padded] != _ZERO_WORD[: padded - end]:
            raise MalformedLog("bad_abi", f"non-zero padding after value {i}")
        out.append(data[start:end])
    return tuple(out)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogMeta:
    """Where a log sits in the chain."""

    block_number: int
    block_hash: bytes
    transaction_hash: bytes
    transaction_index: int = 0
    log_index: int = 0
    removed: bool = False


@dataclass(frozen=True, slots=True)
class MintEvent:
    parenthash: bytes
    childhash: bytes
    labelhash: bytes
    label: bytes


@dataclass(frozen=True, slots=True)
class NoteEvent:
    parenthash: bytes
    notehash: bytes
    labelhash: bytes
    label: bytes
    data: bytes


def _label_bytes(label: str | bytes) -> bytes:
    return label.encode() if isinstance(label, str) else bytes(label)


def _log(topics: list[bytes], data: bytes, meta: LogMeta, address: str) -> dict[str, object]:
    # Key order as alloy serialises an rpc Log (the reference cacher writes these).
    return {
        "address": address,
        "topics": [to_data(t) for t in topics],
        "data": to_data(data),
        "blockHash": to_data(meta.block_hash),
        "blockNumber": to_quantity(meta.block_number),
        "transactionHash": to_data(meta.transaction_hash),
        "transactionIndex": to_quantity(meta.transaction_index),
        "logIndex": to_quantity(meta.log_index),
        "removed": meta.removed,
    }


def mint_log(
    parenthash: bytes, label: str | bytes, meta: LogMeta, *, address: str = HYPERMAP_ADDRESS
) -> dict[str, object]:
    """The log Hypermap emits when ``label`` is minted under the entry ``parenthash``."""
    raw = _label_bytes(label)
    topics = [MINT_TOPIC, parenthash, child_hash(parenthash, raw), labelhash(raw)]
    return _log(topics, abi_encode_bytes(raw), meta, address)


def note_log(
    parenthash: bytes,
    label: str | bytes,
    data: bytes,
    meta: LogMeta,
    *,
    address: str = HYPERMAP_ADDRESS,
) -> dict[str, object]:
    """The log Hypermap emits when note ``label`` is set to ``data`` on entry ``parenthash``."""
    raw = _label_bytes(label)
    topics = [NOTE_TOPIC, parenthash, child_hash(parenthash, raw), labelhash(raw)]
    return _log(topics, abi_encode_bytes(raw, data), meta, address)


def log_topics(log: Mapping[str, object]) -> tuple[bytes, ...]:
    """The log's topics as 32-byte values (at most four)."""
    topics = log.get("topics")
    if not isinstance(topics, list) or not topics:
        raise MalformedLog("bad_topics", "topics is not a non-empty list")
    if len(topics) > MAX_TOPICS:
        raise MalformedLog("bad_topics", "more than four topics")
    return tuple([parse_word(t) for t in topics])


def _expect(topics: tuple[bytes, ...], topic0: bytes, name: str) -> None:
    if topics[0] != topic0:
        raise MalformedLog("wrong_event", f"not a {name} log")
    if len(topics) != 4:
        raise MalformedLog("bad_topics", f"{name} needs 4 topics, got {len(topics)}")


def decode_mint(log: Mapping[str, object]) -> MintEvent:
    """Decode a Mint log. Raises :class:`MalformedLog`."""
    topics = log_topics(log)
    _expect(topics, MINT_TOPIC, "Mint")
    (label,) = abi_decode_bytes(parse_data(log.get("data")), 1)
    return MintEvent(topics[1], topics[2], topics[3], label)


def decode_note(log: Mapping[str, object]) -> NoteEvent:
    """Decode a Note log. Raises :class:`MalformedLog`."""
    topics = log_topics(log)
    _expect(topics, NOTE_TOPIC, "Note")
    label, data = abi_decode_bytes(parse_data(log.get("data")), 2)
    return NoteEvent(topics[1], topics[2], topics[3], label, data)


def log_block_number(log: Mapping[str, object]) -> int | None:
    """The log's block number, None if absent (a pending log). Raises if malformed."""
    value = log.get("blockNumber")
    if value is None:
        return None
    return parse_quantity(value, "block_number")


def log_index(log: Mapping[str, object]) -> int | None:
    """The log's index in its block, None if absent. Raises if malformed."""
    value = log.get("logIndex")
    if value is None:
        return None
    return parse_quantity(value, "log_index")
