"""A router's passthrough bookkeeping, sans-I/O (docs/protocol.md §7).

:class:`PassthroughTable` bounds what a router holds: pending passthroughs (a source's socket
parked while the indirect target is asked to connect) plus active ones (pipes) never exceed
``max_passthroughs``; admitting one more evicts the oldest of either kind (as the reference
does). The table is plain data: no I/O, no clock but the one given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Key", "Passthrough", "PassthroughTable", "PipeEnd", "PipeError"]

Key = tuple[str, str]


class PipeError(Exception):
    """One end of a pipe failed (closed under a write, a text frame on WS, ...)."""


class PipeEnd(Protocol):
    """One socket of a passthrough: ``recv`` returns None once the peer has closed."""

    kind: str
    remote: str

    async def recv(self) -> bytes | None: ...

    async def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class Passthrough:
    """One pending or active passthrough from ``source`` to ``target``.

    ``on_close`` releases its sockets (and wakes whoever waits on them); :meth:`close` calls it
    once. Entries compare by identity.
    """

    source: str
    target: str
    created: float
    on_close: Callable[[str], None]
    closed: bool = field(default=False, init=False)
    close_reason: str = field(default="", init=False)

    @property
    def key(self) -> Key:
        return (self.source, self.target)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.on_close(reason)


class PassthroughTable:
    """Pending passthroughs keyed by ``(source, target)`` plus active ones, at most
    ``max_passthroughs`` in all (0: this node is not a router)."""

    def __init__(self, max_passthroughs: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_passthroughs < 0:
            raise ValueError("max_passthroughs must be >= 0")
        self.max_passthroughs = max_passthroughs
        self.clock = clock
        # Both dicts keep insertion order, which is age order: the first entry is the oldest.
        self._pending: dict[Key, Passthrough] = {}
        self._active: dict[Passthrough, None] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._pending) + len(self._active)

    @property
    def enabled(self) -> bool:
        return self.max_passthroughs > 0

    @property
    def pending(self) -> list[Passthrough]:
        return list(self._pending.values())

    @property
    def active(self) -> list[Passthrough]:
        return list(self._active)

    def new(self, source: str, target: str, on_close: Callable[[str], None]) -> Passthrough:
        return Passthrough(source, target, self.clock(), on_close)

    def peek_pending(self, source: str, target: str) -> Passthrough | None:
        """The pending passthrough from ``source`` to ``target``, left in place."""
        return self._pending.get((source, target))

    def take_pending(self, source: str, target: str) -> Passthrough | None:
        """Remove and return the pending passthrough from ``source`` to ``target``."""
        return self._pending.pop((source, target), None)

    def make_room(self) -> list[Passthrough]:
        """Evict the oldest passthroughs (pending or active) until one more fits; returns
        them (closed), for the caller to log."""
        evicted: list[Passthrough] = []
        while self._pending or self._active:
            if len(self) < self.max_passthroughs:
                return evicted
            oldest_pending = next(iter(self._pending.values()), None)
            oldest_active = next(iter(self._active), None)
            if oldest_active is not None and (
                oldest_pending is None or oldest_active.created < oldest_pending.created
            ):
                del self._active[oldest_active]
                victim = oldest_active
            else:
                assert oldest_pending is not None
                del self._pending[oldest_pending.key]
                victim = oldest_pending
            self.evicted += 1
            victim.close("evicted (max passthroughs)")
            evicted.append(victim)
        return evicted

    def park(self, entry: Passthrough) -> None:
        """Add a pending passthrough (call :meth:`make_room` first); an older one for the same
        pair is closed."""
        old = self._pending.pop(entry.key, None)
        if old is not None:
            old.close("replaced by a newer routing request")
        self._pending[entry.key] = entry

    def unpark(self, entry: Passthrough) -> bool:
        """Remove ``entry`` if it is still pending; False if it is gone (paired, evicted)."""
        if self._pending.get(entry.key) is entry:
            del self._pending[entry.key]
            return True
        return False

    def reject(self, source: str, target: str) -> Passthrough | None:
        """The target refused: drop and close the pending passthrough ``source -> target``."""
        entry = self._pending.pop((source, target), None)
        if entry is not None:
            entry.close(f"rejected by {target}")
        return entry

    def start(self, entry: Passthrough) -> None:
        """Add an active passthrough (call :meth:`make_room` first)."""
        self._active[entry] = None

    def finish(self, entry: Passthrough) -> None:
        self._active.pop(entry, None)

    def close_all(self, reason: str) -> None:
        entries = [*self._pending.values(), *self._active]
        self._pending.clear()
        self._active.clear()
        for e in entries:
            e.close(reason)
