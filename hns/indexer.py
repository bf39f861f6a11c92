"""The HNS indexer: Hypermap logs in, node records out. A pure state machine (no I/O).

Semantics are the reference indexer's (``hyperdrive/packages/hns-indexer``), applied in chain
order:

* ``Mint``: ``names[childhash] = label + "." + names[parenthash]`` (the bare label if the parent
  is unknown) and the name gets a fresh, empty record.
* ``Note`` on a known entry: ``~net-key`` sets the key; ``~ip`` and the port notes make the node
  direct and clear its routers; ``~routers`` makes it indirect and clears its IP and ports. A
  value of the wrong length is rejected and the old value kept; a ``~routers`` value whose length
  is not a multiple of 32 leaves no routers. A port noted as 0 is withdrawn. Unknown notes are
  ignored, and so are ``Fact`` logs (the reference never reads them).
* Notes on an entry not yet minted wait, in order, until its ``Mint``; a ``~routers`` note naming
  routers not yet minted takes effect at once (the node turns indirect) and its router list is
  filled in when the last of them is minted, unless a later routing note replaced it first. So
  what is pending is retried exactly when the Mint it waits for arrives, and the result is what
  applying every note in chain order with every name known would give.

Everything pending is bounded (:data:`MAX_PENDING`). Malformed logs are skipped and counted by
reason in :attr:`Indexer.skipped`; :meth:`Indexer.feed` never raises on bad input.

Speed (``bench/indexer.py``): a well-formed log (a ``dict`` of ``str`` fields in the JSON-RPC's
canonical lowercase form, as every provider and cacher file has it) takes a fast path that
validates exactly what the general path validates, with fewer steps; anything else, or anything
the fast path is unsure of, goes through the general path, which decides (and names the reason
for) every rejection. Records are kept as mutable state and built as immutable
:class:`NodeRecord` snapshots only when read.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hns.events import (
    FACT_TOPIC,
    HYPERMAP_ADDRESS,
    MAX_LOG_DATA_BYTES,
    MINT_TOPIC,
    NOTE_TOPIC,
    MalformedLog,
    abi_encode_bytes,
    decode_mint,
    decode_note,
    gc_paused,
    log_block_number,
    log_topics,
    same_address,
)
from hns.keccak import keccak256
from hns.names import LABEL_MAX_BYTES, is_valid_label, is_valid_note_label, labelhash, namehash
from hns.records import (
    HNS_NOTES,
    NOTE_IP,
    NOTE_NET_KEY,
    NOTE_ROUTERS,
    PORT_NOTES,
    REFERENCE_NOTES,
    NodeRecord,
    decode_ip,
    decode_net_key,
    decode_port,
    decode_router_hashes,
)

MAX_PENDING = 10_000
"""Most notes waiting for their entry's Mint plus router lists waiting for router Mints."""

_PORT_BY_NOTE = {note: proto for proto, note in PORT_NOTES.items()}
_MINT_HEX = "0x" + MINT_TOPIC.hex()
_NOTE_HEX = "0x" + NOTE_TOPIC.hex()
_FACT_HEX = "0x" + FACT_TOPIC.hex()
_MAX_DATA_CHARS = 2 + 2 * MAX_LOG_DATA_BYTES
_MINT_PREFIX = "0x" + (32).to_bytes(32, "big").hex()
"""A Mint's data (one ``bytes``) starts with its offset, 32."""
_ZEROS = bytes(32)
_ZERO_HEX = "0" * 64
_HEX_DIGITS = "0123456789abcdefABCDEF"
_LEN_WORDS = {n.to_bytes(32, "big").hex(): n for n in range(1, LABEL_MAX_BYTES + 1)}
"""A Mint label's length word in canonical hex -> the length (1 to 63)."""
# What the fast path does with a note's value of the usual size (else: _apply_note decides).
_KIND_NET_KEY = "~net-key"
_KIND_IP4 = "~ip4"
_KIND_OTHER = "~other"
_NoteShape = tuple[str, str, str, int, str, int, int, int, str]
"""label, data prefix (head and label), kind (one above or a port's protocol), the usual
value size, the data prefix up to that size's length word, the data's length with it, where
the value's hex starts and ends in the data, and the zero padding's hex after it."""


def _note_shape(label: str) -> _NoteShape:
    prefix = "0x" + abi_encode_bytes(label.encode(), b"")[:128].hex()
    kind, size = _KIND_OTHER, -1
    if label == NOTE_NET_KEY:
        kind, size = _KIND_NET_KEY, 32
    elif label == NOTE_IP:
        kind, size = _KIND_IP4, 4
    elif label in _PORT_BY_NOTE:
        kind, size = _PORT_BY_NOTE[label], 2
    if size < 0:
        return (label, prefix, kind, size, prefix, -1, 0, 0, "")
    head = prefix + size.to_bytes(32, "big").hex()
    start = len(head)
    stop = start + 2 * size
    pad = _ZERO_HEX[: 2 * (-size % 32)]
    return (label, prefix, kind, size, head, stop + len(pad), start, stop, pad)


_LABEL_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")
_ADDRESS_CACHE = 16
"""Distinct address spellings remembered as matching the contract (checksummed, lowercase)."""


@dataclass(frozen=True, slots=True)
class _PendingNote:
    parenthash: bytes
    label: str
    data: bytes


@dataclass(slots=True)
class _RouterWait:
    hashes: tuple[bytes, ...]
    waiting_on: bytes


class _Node:
    """A name's record as mutable state; :meth:`snapshot` is the immutable record."""

    __slots__ = ("ips", "name", "namehash", "net_key", "ports", "record", "routers")

    def __init__(self, name: str, namehash: str) -> None:
        self.name = name
        self.namehash = namehash
        self.net_key: str | None = None
        self.ips: tuple[str, ...] = ()
        self.ports: dict[str, int] = {}
        self.routers: tuple[str, ...] = ()
        self.record: NodeRecord | None = None  # the snapshot, until the state changes

    def snapshot(self) -> NodeRecord:
        rec = self.record
        if rec is None:
            rec = self.record = NodeRecord._of(
                self.name, self.namehash, self.net_key, self.ips, self.ports, self.routers
            )  # ports copied
        return rec


class Indexer:
    """Feed Hypermap logs in chain order; read node records.

    ``contract``: only logs from this address are read (None reads any address).
    ``extensions``: read this project's ``~quic-port`` note; with False the indexer reads
    exactly the notes the reference reads.
    """

    def __init__(
        self,
        *,
        contract: str | None = HYPERMAP_ADDRESS,
        extensions: bool = True,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._contract = contract
        notes = HNS_NOTES if extensions else REFERENCE_NOTES
        self._note_hashes: dict[bytes, str] = {labelhash(n): n for n in notes}
        # Fast path: a note's topic3 in lowercase hex -> what its data looks like.
        self._note_topics: dict[str, _NoteShape] = {
            "0x" + h.hex(): _note_shape(n) for h, n in self._note_hashes.items()
        }
        self._fast = True  # False: every log through the general path (for tests)
        self._names_hex: dict[str, str] = {}  # _names, keyed by "0x" + bytes.hex()
        self._addresses: set[str] = set()  # spellings seen to match the contract
        self._max_pending = max_pending
        self._names: dict[bytes, str] = {}
        self._nodes: dict[str, _Node] = {}
        self._waiting_notes: dict[bytes, list[_PendingNote]] = {}
        self._n_waiting_notes = 0
        self._router_waits: dict[str, _RouterWait] = {}
        self._router_waiters: dict[bytes, set[str]] = {}
        self._skipped: Counter[str] = Counter()
        self._last_block: int | None = None
        self._changed: dict[str, None] = {}

    # --- reading --------------------------------------------------------------------------

    def records(self) -> dict[str, NodeRecord]:
        """Every minted name's record (a new dict; the records are immutable snapshots)."""
        return {name: node.snapshot() for name, node in self._nodes.items()}

    def get(self, name: str) -> NodeRecord | None:
        """The record of ``name`` (exact match), or None if it was never minted."""
        node = self._nodes.get(name)
        return None if node is None else node.snapshot()

    def name_of(self, entry_hash: bytes) -> str | None:
        """The name minted with namehash ``entry_hash``, if seen."""
        return self._names.get(entry_hash)

    def is_minted(self, name: str) -> bool:
        """True if ``name`` was minted under its full path (its namehash is known as ``name``)."""
        return self._names.get(namehash(name)) == name

    @property
    def last_block(self) -> int | None:
        """Highest block number seen in any log fed."""
        return self._last_block

    @property
    def pending(self) -> int:
        """Notes and router lists waiting for a Mint."""
        return self._n_waiting_notes + len(self._router_waits)

    @property
    def skipped(self) -> dict[str, int]:
        """How many logs or notes were skipped, by reason."""
        return dict(self._skipped)

    # --- feeding --------------------------------------------------------------------------

    def feed(self, log: Mapping[str, object]) -> list[NodeRecord]:
        """Apply one log; return the new record of every name it changed (in order).

        Never raises on malformed input: such logs are counted in :attr:`skipped`.
        """
        self._changed = {}
        self._feed_many((log,))
        return self._take_changed()

    def feed_all(self, logs: Iterable[Mapping[str, object]]) -> list[NodeRecord]:
        """Apply logs in order; return the final record of every name changed (in the order
        of their last change)."""
        self._changed = {}
        with gc_paused():
            self._feed_many(logs)
            return self._take_changed()

    def _take_changed(self) -> list[NodeRecord]:
        changed, self._changed = self._changed, {}
        nodes = self._nodes
        return [nodes[n].snapshot() for n in changed if n in nodes]

    def _feed_many(self, logs: Iterable[Mapping[str, object]]) -> None:
        """Apply logs in order, each well-formed one on the fast path below, any other through
        :meth:`_checked`.

        The fast path takes a ``dict`` whose fields are ``str`` in the canonical form
        (lowercase hex, ABI values canonically encoded, as Solidity and every JSON-RPC write
        them). It checks exactly what :meth:`_feed` checks, with fewer steps, and changes
        nothing before the log has passed every check; a log it is not sure of goes to
        :meth:`_checked` untouched, which then decides, and names the reason for, a rejection.
        Hex strings are only compared with, or looked up among, strings made by ``bytes.hex``
        (a match proves them canonical) or decoded by ``bytes.fromhex`` with a length check.
        """
        if not self._fast:
            for log in logs:
                self._checked(log)
            return
        self._fast_path(logs)

    def _fast_path(self, logs: Iterable[Mapping[str, object]]) -> None:
        checked = self._checked
        contract = self._contract
        addresses = self._addresses
        note_topics = self._note_topics
        note_hashes = self._note_hashes
        names_hex = self._names_hex
        names = self._names
        nodes = self._nodes
        changed = self._changed
        skipped = self._skipped
        apply_note = self._apply_note
        mint = self._mint_named
        router_waits = self._router_waits  # these three dicts are never replaced
        router_waiters = self._router_waiters
        waiting_notes = self._waiting_notes
        fromhex = bytes.fromhex
        len_words = _LEN_WORDS
        label_bytes = _LABEL_BYTES
        labelhash_of = _labelhash
        last: str | None = None  # the name last touched here: already the last in _changed
        # The last blockNumber seen, and its value (consecutive logs share it).
        block_text: str | None = None
        block = 0
        top = -1  # the highest block number seen here: last_block, at the end
        try:
            for log in logs:
                if type(log) is not dict:
                    checked(log)
                    last = None
                    continue
                get = log.get
                if get("removed", False) is not False:
                    checked(log)
                    last = None
                    continue
                if contract is not None:
                    address = get("address")
                    if type(address) is not str:
                        checked(log)
                        last = None
                        continue
                    if address not in addresses:
                        if not same_address(address, contract):
                            checked(log)
                            last = None
                            continue
                        if len(addresses) < _ADDRESS_CACHE:
                            addresses.add(address)
                text = get("blockNumber")
                number: int | None
                if text is None:
                    number = None
                elif text == block_text:
                    number = block
                elif (
                    type(text) is str
                    and 2 < len(text) <= 18
                    and text[:2] == "0x"
                    and not text[2:].strip(_HEX_DIGITS)
                ):  # = is_quantity(text), without the regex
                    number = block = int(text, 16)
                    block_text = text
                else:
                    checked(log)
                    last = None
                    continue
                topics = get("topics")
                if type(topics) is not list or len(topics) != 4:
                    checked(log)
                    last = None
                    continue
                t0, t1, t2, t3 = topics
                if (
                    type(t1) is not str
                    or type(t2) is not str
                    or type(t3) is not str
                    or len(t2) != 66
                    or t2[:2] != "0x"
                ):
                    checked(log)
                    last = None
                    continue
                try:  # fromhex skips whitespace: the length check refuses it
                    child = fromhex(t2[2:])
                except ValueError:
                    child = b""
                if len(child) != 32:
                    checked(log)
                    last = None
                    continue
                # The parent: a minted entry's namehash as bytes.hex made it, else decoded.
                parent_name = names_hex.get(t1)
                parent = None
                if parent_name is None:
                    parent = _word(t1)
                    if parent is None:
                        checked(log)
                        last = None
                        continue
                if t0 == _NOTE_HEX:
                    note = note_topics.get(t3)
                    if note is None:
                        third = _word(t3)
                        if third is None or third in note_hashes:
                            checked(log)  # not a word, or a known note in uppercase hex
                            last = None
                            continue
                        skipped["unknown_note"] += 1
                    else:
                        label, prefix, kind, size, head, total, start, stop, zeros = note
                        data = get("data")
                        value: bytes | None = None
                        if (
                            type(data) is str
                            and len(data) == total
                            and data.startswith(head)
                            and data.endswith(zeros)
                        ):
                            try:
                                value = fromhex(data[start:stop])
                            except ValueError:
                                value = None
                            else:
                                if len(value) != size:  # whitespace fromhex skipped
                                    value = None
                        if value is None:
                            value = _abi_tail(data, prefix)
                            if value is None:  # also any label other than the topic's
                                checked(log)
                                last = None
                                continue
                            kind = _KIND_OTHER
                        node = None if parent_name is None else nodes.get(parent_name)
                        if kind == _KIND_OTHER or node is None or parent_name is None:
                            apply_note(fromhex(t1[2:]) if parent is None else parent, label, value)
                            last = None
                        else:
                            if kind == _KIND_NET_KEY:
                                node.net_key = value.hex()
                            elif kind == _KIND_IP4:
                                if router_waits:
                                    self._drop_router_wait(parent_name)
                                node.ips = (f"{value[0]}.{value[1]}.{value[2]}.{value[3]}",)
                                node.routers = ()
                            else:  # a port
                                port = int.from_bytes(value, "big")
                                if port:
                                    node.ports[kind] = port
                                else:
                                    node.ports.pop(kind, None)
                                if router_waits:
                                    self._drop_router_wait(parent_name)
                                node.routers = ()
                            node.record = None
                            if parent_name is not last:
                                changed.pop(parent_name, None)
                                changed[parent_name] = None
                                last = parent_name
                elif t0 == _MINT_HEX:
                    data = get("data")
                    label_raw: bytes | None = None
                    if type(data) is str and data.startswith(_MINT_PREFIX):
                        n = len_words.get(data[66:130])
                        if n is not None:
                            end = 130 + 2 * n
                            pad = 2 * (-n % 32)
                            if len(data) == end + pad and data.endswith(_ZERO_HEX[:pad]):
                                try:
                                    label_raw = fromhex(data[130:end])
                                except ValueError:
                                    label_raw = None
                                else:
                                    if len(label_raw) != n:  # whitespace fromhex skipped
                                        label_raw = None
                    if (
                        label_raw is None
                        or len(t3) != 66
                        or t3[:2] != "0x"
                        or not label_bytes.issuperset(label_raw)
                        or labelhash_of(label_raw).hex() != t3[2:]
                    ):
                        checked(log)  # also any other encoding, or a hash in uppercase hex
                        last = None
                        continue
                    if parent_name is None:
                        parent_name = names.get(parent) if parent is not None else None
                    minted = label_raw.decode("ascii")
                    if waiting_notes or router_waiters or router_waits:
                        mint(parent_name, child, minted)
                        last = None
                    else:  # _mint_named(parent_name, child, label) with nothing waiting
                        full = f"{minted}.{parent_name}" if parent_name is not None else minted
                        names[child] = full
                        # t2 is bytes.hex's form of child if it has no uppercase digit.
                        entry = t2 if t2.islower() else "0x" + child.hex()
                        names_hex[entry] = full
                        nodes[full] = _Node(full, entry)
                        if full is not last:
                            changed.pop(full, None)
                            changed[full] = None
                        last = full
                elif t0 == _FACT_HEX:
                    if _word(t3) is None:
                        checked(log)
                        last = None
                        continue
                    skipped["fact"] += 1
                else:
                    checked(log)
                    last = None
                    continue
                if number is not None and number > top:
                    top = number
        finally:
            if top >= 0 and (self._last_block is None or top > self._last_block):
                self._last_block = top

    def _checked(self, log: Mapping[str, object]) -> None:
        """The general path: apply ``log`` or count why it was skipped."""
        try:
            self._feed(log)
        except MalformedLog as e:
            self._skipped[e.reason] += 1

    def _feed(self, log: Mapping[str, object]) -> None:
        if not isinstance(log, Mapping):
            raise MalformedLog("not_an_object")
        removed = log.get("removed", False)
        if not isinstance(removed, bool):
            raise MalformedLog("bad_removed")
        if removed:
            # A log undone by a reorg: its replacement (if any) arrives as a normal log.
            raise MalformedLog("removed")
        if self._contract is not None and not same_address(log.get("address"), self._contract):
            raise MalformedLog("wrong_address")
        block = log_block_number(log)
        topics = log_topics(log)
        if topics[0] == MINT_TOPIC:
            self._on_mint(log)
        elif topics[0] == NOTE_TOPIC:
            if len(topics) == 4 and topics[3] not in self._note_hashes:
                self._skipped["unknown_note"] += 1
            else:
                self._on_note(log)
        elif topics[0] == FACT_TOPIC:
            self._skipped["fact"] += 1
        else:
            raise MalformedLog("unknown_event")
        if block is not None and (self._last_block is None or block > self._last_block):
            self._last_block = block

    def _on_mint(self, log: Mapping[str, object]) -> None:
        ev = decode_mint(log)
        label = _ascii(ev.label)
        if label is None or not is_valid_label(label):
            raise MalformedLog("invalid_label")
        if labelhash(ev.label) != ev.labelhash:
            raise MalformedLog("labelhash_mismatch")
        self._mint(ev.parenthash, ev.childhash, label)

    def _mint(self, parenthash: bytes, childhash: bytes, label: str) -> None:
        self._mint_named(self._names.get(parenthash), childhash, label)

    def _mint_named(self, parent: str | None, childhash: bytes, label: str) -> None:
        """:meth:`_mint`, the parent's name (None if unknown) already looked up."""
        full = f"{label}.{parent}" if parent is not None else label
        self._names[childhash] = full
        entry = "0x" + childhash.hex()
        self._names_hex[entry] = full
        if self._router_waits:
            self._drop_router_wait(full)
        self._nodes[full] = _Node(full, entry)
        self._touch(full)
        # Retry what was waiting for this entry: its own notes (in chain order) ...
        if self._waiting_notes:
            waiting = self._waiting_notes.pop(childhash, [])
            self._n_waiting_notes -= len(waiting)
            for note in waiting:
                self._apply_note(note.parenthash, note.label, note.data)
        # ... and router lists that name it.
        if self._router_waiters:
            for node in sorted(self._router_waiters.pop(childhash, set())):
                wait = self._router_waits.get(node)
                if wait is not None and wait.waiting_on == childhash:
                    del self._router_waits[node]
                    self._resolve_routers(node, wait.hashes)

    def _on_note(self, log: Mapping[str, object]) -> None:
        ev = decode_note(log)
        label = _ascii(ev.label)
        if label is None or not is_valid_note_label(label):
            raise MalformedLog("invalid_label")
        if labelhash(ev.label) != ev.labelhash:
            raise MalformedLog("labelhash_mismatch")
        self._apply_note(ev.parenthash, label, ev.data)

    def _apply_note(self, parenthash: bytes, label: str, data: bytes) -> None:
        name = self._names.get(parenthash)
        if name is None:
            if self.pending >= self._max_pending:
                self._skipped["pending_full"] += 1
                return
            self._waiting_notes.setdefault(parenthash, []).append(
                _PendingNote(parenthash, label, data)
            )
            self._n_waiting_notes += 1
            return
        node = self._nodes.get(name)
        if node is None:  # pragma: no cover - every name in _names has a record
            return
        if label == NOTE_NET_KEY:
            key = decode_net_key(data)
            if key is None:
                self._skipped["bad_net_key"] += 1
                return
            node.net_key = key
        elif label == NOTE_IP:
            ip = decode_ip(data)
            if ip is None:
                self._skipped["bad_ip"] += 1
                return
            if self._router_waits:
                self._drop_router_wait(name)
            node.ips = (ip,)
            node.routers = ()
        elif (proto := _PORT_BY_NOTE.get(label)) is not None:
            port = decode_port(data)
            if port is None:
                self._skipped["bad_port"] += 1
                return
            if port:
                node.ports[proto] = port
            else:
                node.ports.pop(proto, None)
            if self._router_waits:
                self._drop_router_wait(name)
            node.routers = ()
        elif label == NOTE_ROUTERS:
            if self._router_waits:
                self._drop_router_wait(name)
            node.ips = ()
            node.ports = {}
            node.routers = ()
            node.record = None
            self._touch(name)
            if len(data) % 32:
                self._skipped["bad_routers"] += 1
                return
            self._resolve_routers(name, decode_router_hashes(data))
            return
        else:  # pragma: no cover - any other label was filtered out by topic3 before decoding
            return
        node.record = None
        changed = self._changed  # self._touch(name), inline: this is the hot path
        changed.pop(name, None)
        changed[name] = None

    def _resolve_routers(self, node: str, hashes: tuple[bytes, ...]) -> None:
        routers: list[str] = []
        for h in hashes:
            router = self._names.get(h)
            if router is None:
                if self.pending >= self._max_pending:
                    self._skipped["pending_full"] += 1
                    return
                self._router_waits[node] = _RouterWait(hashes, h)
                self._router_waiters.setdefault(h, set()).add(node)
                return
            routers.append(router)
        state = self._nodes.get(node)
        if state is not None:
            state.routers = tuple(routers)
            state.record = None
            self._touch(node)

    def _drop_router_wait(self, node: str) -> None:
        wait = self._router_waits.pop(node, None)
        if wait is None:
            return
        waiters = self._router_waiters.get(wait.waiting_on)
        if waiters is not None:
            waiters.discard(node)
            if not waiters:
                del self._router_waiters[wait.waiting_on]

    def _touch(self, name: str) -> None:
        """``name``'s record changed: it moves to the end of the changed names."""
        changed = self._changed
        changed.pop(name, None)
        changed[name] = None


def _ascii(raw: bytes) -> str | None:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


# --- fast-path helpers: each returns None where the general path must decide ------------------


def _word(text: str) -> bytes | None:
    """``parse_word(text)`` for a ``str`` it accepts, else None."""
    if len(text) != 66 or text[:2] != "0x":
        return None
    try:
        word = bytes.fromhex(text[2:])
    except ValueError:
        return None
    return word if len(word) == 32 else None  # fromhex skips whitespace: refused here


def _abi_tail(data: object, prefix: str) -> bytes | None:
    """The last ``bytes`` value of ABI-encoded ``data`` whose hex starts with ``prefix`` (the
    canonical head and any values before the last one, fixed for a given label), if the value
    is canonically encoded to the end of the data, else None. Whatever this accepts,
    ``abi_decode_bytes(parse_data(data), ...)`` accepts and decodes to the same values."""
    if type(data) is not str or len(data) > _MAX_DATA_CHARS or not data.startswith(prefix):
        return None
    try:
        tail = bytes.fromhex(data[len(prefix) :])
    except ValueError:
        return None
    size = len(tail)
    if 2 * size + len(prefix) != len(data) or size < 32:
        return None  # odd length, or whitespace fromhex skipped, or no length word
    n = int.from_bytes(tail[:32], "big")
    end = 32 + n
    pad = -n % 32
    if size != end + pad or tail[end:] != _ZEROS[:pad]:
        return None
    return tail[32:end]


# --- keccak for the fast path ---------------------------------------------------------------

_KECCAK_ROUNDS = 24


def _pycryptodome_keccak() -> Callable[[bytes], bytes] | None:
    """Keccak-256 through pycryptodome's raw library with one reusable state per thread: the
    same C code as :func:`hns.keccak.keccak256`, several times faster for short inputs (most of
    a ``keccak.new`` call is Python and cffi set-up). None if those internals are missing or
    disagree with :func:`keccak256`."""
    try:
        from Crypto.Hash import keccak as keccak_module
        from Crypto.Util import _raw_api
    except ImportError:  # pragma: no cover - pycryptodome is a dependency
        return None
    module: Any = keccak_module  # internals: not in pycryptodome's type stubs
    api: Any = _raw_api
    try:
        lib = module._raw_keccak_lib
        void_pointer = api.VoidPointer
        smart_pointer = api.SmartPointer
        string_buffer = api.create_string_buffer
        raw_buffer = api.get_raw_buffer
        c_size_t = api.c_size_t
        c_ubyte = api.c_ubyte
    except AttributeError:  # pragma: no cover - another pycryptodome layout
        return None
    local = threading.local()

    def state() -> tuple[Any, Any, Any]:
        pointer = void_pointer()
        if lib.keccak_init(pointer.address_of(), c_size_t(64), c_ubyte(_KECCAK_ROUNDS)):
            raise RuntimeError("keccak_init failed")
        owner = smart_pointer(pointer.get(), lib.keccak_destroy)  # frees it with the thread
        made = (owner, owner.get(), string_buffer(32))
        local.state = made
        return made

    def digest(data: bytes) -> bytes:
        try:
            _, raw, out = local.state
        except AttributeError:
            _, raw, out = state()
        lib.keccak_reset(raw)
        lib.keccak_absorb(raw, data, c_size_t(len(data)))
        lib.keccak_digest(raw, out, c_size_t(32), c_ubyte(0x01))  # 0x01: Keccak, not SHA-3
        result: bytes = raw_buffer(out)
        return result

    if api.backend == "cffi":  # c_size_t and c_ubyte are the identity there: plain ints
        buffer = api.ffi.buffer
        reset, absorb, finish = lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest

        def digest(data: bytes) -> bytes:
            try:
                _, raw, out = local.state
            except AttributeError:
                _, raw, out = state()
            reset(raw)
            absorb(raw, data, len(data))
            finish(raw, out, 32, 0x01)  # 0x01: Keccak, not SHA-3
            result: bytes = buffer(out)[:]
            return result

    try:
        probes = (b"", b"os", bytes(range(200)))
        if all(digest(p) == keccak256(p) for p in probes):
            return digest
    except Exception:  # pragma: no cover - anything unexpected: use the plain function
        return None
    return None  # pragma: no cover


def _pysha3_keccak() -> Callable[[bytes], bytes] | None:
    """Keccak-256 from safe-pysha3's C extension (module ``sha3``): ~1 µs a label here against
    ~2.5 through pycryptodome's cffi functions. None if it is missing or disagrees with
    :func:`keccak256`."""
    try:
        module: Any = importlib.import_module("sha3")  # safe-pysha3: no type stubs
        new = module.keccak_256
    except (ImportError, AttributeError):  # pragma: no cover - a dependency, optional at runtime
        return None

    def digest(data: bytes) -> bytes:
        result: bytes = new(data).digest()
        return result

    try:
        probes = (b"", b"os", bytes(range(200)))
        if all(digest(p) == keccak256(p) for p in probes):
            return digest
    except Exception:  # pragma: no cover - anything unexpected: the next choice
        return None
    return None  # pragma: no cover


_labelhash: Callable[[bytes], bytes] = _pysha3_keccak() or _pycryptodome_keccak() or keccak256
"""Keccak-256 for the fast path's labels: the fastest implementation that agrees with
:func:`hns.keccak.keccak256` on the probes."""
