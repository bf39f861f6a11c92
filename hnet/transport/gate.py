"""One bound on handshakes in progress, shared by every listener of a node.

Pre-authentication work is what an anonymous peer can make us do; :class:`HandshakeGate`
caps it across TCP, WebSocket (its HTTP upgrade included) and QUIC together
(``limits.MAX_PENDING_HANDSHAKES``): a connection past the cap is closed (TCP, WS) or its
Initial dropped (QUIC) before any work is done for it. One source (an IPv4 address, or an IPv6
/64) holds at most ``limits.MAX_PENDING_PER_SOURCE`` of the slots, so a slowloris from one
host cannot lock every new peer out.

A slowloris spread over many sources can fill the node-wide bound while each stays within its
share. So when every slot is taken, a newcomer within its share **evicts** a pending handshake
rather than being refused: the oldest of the heaviest source, among the sources that hold at
least as many slots as the newcomer's would after entering, provided it has been pending for
``limits.HANDSHAKE_EVICT_MIN_AGE`` (docs/reliability.md §1). A legitimate handshake takes a
few round trips; a slowloris holds its slots for the whole deadline, so it is what gets cut.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

from hnet import limits

__all__ = ["HandshakeGate", "Slot", "source_key"]


def source_key(host: str | None) -> str:
    """Who a pending handshake is charged to: the IPv4 address, the IPv6 /64 (one host's
    usual allocation), or the text itself when it is not an IP address."""
    if not host:
        return "?"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Slot:
    """One pending handshake's place in the gate. :meth:`leave` gives it back (idempotent);
    ``on_evict`` (set by the listener) ends the handshake when the gate evicts it."""

    __slots__ = ("_gate", "key", "on_evict", "started")

    def __init__(self, gate: HandshakeGate, key: str, started: float) -> None:
        self._gate: HandshakeGate | None = gate
        self.key = key
        self.started = started
        self.on_evict: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self._gate is not None

    def leave(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release(self)


class HandshakeGate:
    def __init__(
        self,
        limit: int = limits.MAX_PENDING_HANDSHAKES,
        per_source: int = limits.MAX_PENDING_PER_SOURCE,
        evict_min_age: float = limits.HANDSHAKE_EVICT_MIN_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.per_source = per_source
        self.evict_min_age = evict_min_age
        self._clock = clock
        self.pending = 0
        self.refused = 0
        #: of :attr:`refused`, those refused for their source's share
        self.refused_source = 0
        #: pending handshakes cut to make room for a newcomer
        self.evicted = 0
        #: per source, its slots oldest first
        self._by_source: dict[str, OrderedDict[Slot, None]] = {}

    def enter(self, source: str | None = None) -> Slot | None:
        """A slot for one handshake from ``source`` (a host, see :func:`source_key`), evicting
        another when every slot is taken (module doc); None (and counted) when refused."""
        key = source_key(source)
        mine = self._by_source.get(key)
        held = len(mine) if mine is not None else 0
        if held >= self.per_source:
            self.refused += 1
            self.refused_source += 1
            return None
        now = self._clock()
        if self.pending >= self.limit and not self._evict_for(held + 1, now):
            self.refused += 1
            return None
        slot = Slot(self, key, now)
        if mine is None:
            mine = self._by_source[key] = OrderedDict()
        mine[slot] = None
        self.pending += 1
        return slot

    def _evict_for(self, need: int, now: float) -> bool:
        """Evict the oldest slot of the heaviest source holding at least ``need`` slots, if it
        is old enough; whether one was evicted."""
        victim: Slot | None = None
        best = (0, 0.0)
        for slots in self._by_source.values():
            if len(slots) < need:
                continue
            oldest = next(iter(slots))
            rank = (len(slots), -oldest.started)
            if victim is None or rank > best:
                victim, best = oldest, rank
        if victim is None or now - victim.started < self.evict_min_age:
            return False
        victim.leave()
        self.evicted += 1
        hook, victim.on_evict = victim.on_evict, None
        if hook is not None:
            hook()  # ends that handshake; its own leave() is then a no-op
        return True

    def _release(self, slot: Slot) -> None:
        slots = self._by_source.get(slot.key)
        if slots is None or slot not in slots:
            return
        del slots[slot]
        if not slots:
            del self._by_source[slot.key]
        self.pending -= 1

    @property
    def sources(self) -> int:
        """Sources with a handshake pending now."""
        return len(self._by_source)
