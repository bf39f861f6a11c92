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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from hns.events import (
    FACT_TOPIC,
    HYPERMAP_ADDRESS,
    MINT_TOPIC,
    NOTE_TOPIC,
    MalformedLog,
    decode_mint,
    decode_note,
    log_block_number,
    log_topics,
    same_address,
)
from hns.names import is_valid_label, is_valid_note_label, labelhash, namehash
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


@dataclass(frozen=True, slots=True)
class _PendingNote:
    parenthash: bytes
    label: str
    data: bytes


@dataclass(slots=True)
class _RouterWait:
    hashes: tuple[bytes, ...]
    waiting_on: bytes


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
        self._max_pending = max_pending
        self._names: dict[bytes, str] = {}
        self._nodes: dict[str, NodeRecord] = {}
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
        return dict(self._nodes)

    def get(self, name: str) -> NodeRecord | None:
        """The record of ``name`` (exact match), or None if it was never minted."""
        return self._nodes.get(name)

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
        try:
            self._feed(log)
        except MalformedLog as e:
            self._skipped[e.reason] += 1
        changed, self._changed = self._changed, {}
        return [self._nodes[n] for n in changed if n in self._nodes]

    def feed_all(self, logs: Iterable[Mapping[str, object]]) -> list[NodeRecord]:
        """Apply logs in order; return the final record of every name changed."""
        changed: dict[str, None] = {}
        for log in logs:
            for rec in self.feed(log):
                changed.pop(rec.name, None)
                changed[rec.name] = None
        return [self._nodes[n] for n in changed if n in self._nodes]

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
        parent = self._names.get(ev.parenthash)
        full = f"{label}.{parent}" if parent is not None else label
        self._names[ev.childhash] = full
        self._drop_router_wait(full)
        self._set(NodeRecord(name=full, namehash="0x" + ev.childhash.hex()))
        # Retry what was waiting for this entry: its own notes (in chain order) ...
        waiting = self._waiting_notes.pop(ev.childhash, [])
        self._n_waiting_notes -= len(waiting)
        for note in waiting:
            self._apply_note(note.parenthash, note.label, note.data)
        # ... and router lists that name it.
        for node in sorted(self._router_waiters.pop(ev.childhash, set())):
            wait = self._router_waits.get(node)
            if wait is not None and wait.waiting_on == ev.childhash:
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
        rec = self._nodes.get(name)
        if rec is None:  # pragma: no cover - every name in _names has a record
            return
        if label == NOTE_NET_KEY:
            key = decode_net_key(data)
            if key is None:
                self._skipped["bad_net_key"] += 1
                return
            self._set(replace(rec, net_key=key))
        elif label == NOTE_IP:
            ip = decode_ip(data)
            if ip is None:
                self._skipped["bad_ip"] += 1
                return
            self._drop_router_wait(name)
            self._set(replace(rec, ips=(ip,), routers=()))
        elif label in _PORT_BY_NOTE:
            port = decode_port(data)
            if port is None:
                self._skipped["bad_port"] += 1
                return
            ports = dict(rec.ports)
            proto = _PORT_BY_NOTE[label]
            if port:
                ports[proto] = port
            else:
                ports.pop(proto, None)
            self._drop_router_wait(name)
            self._set(replace(rec, ports=ports, routers=()))
        elif label == NOTE_ROUTERS:
            self._drop_router_wait(name)
            self._set(replace(rec, ips=(), ports={}, routers=()))
            if len(data) % 32:
                self._skipped["bad_routers"] += 1
                return
            self._resolve_routers(name, decode_router_hashes(data))
        # Any other label was filtered out by topic3 before decoding.

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
        rec = self._nodes.get(node)
        if rec is not None:
            self._set(replace(rec, routers=tuple(routers)))

    def _drop_router_wait(self, node: str) -> None:
        wait = self._router_waits.pop(node, None)
        if wait is None:
            return
        waiters = self._router_waiters.get(wait.waiting_on)
        if waiters is not None:
            waiters.discard(node)
            if not waiters:
                del self._router_waiters[wait.waiting_on]

    def _set(self, rec: NodeRecord) -> None:
        self._nodes[rec.name] = rec
        self._changed.pop(rec.name, None)
        self._changed[rec.name] = None


def _ascii(raw: bytes) -> str | None:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None
