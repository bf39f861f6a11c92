"""The direct upgrade of a routed QUIC session (hole punching, docs/quic.md §11.13), sans-I/O.

One :class:`Punch` per circuit whose router sent us the other end's observed address (§11.11).
Roles are fixed so that exactly one QUIC connection results: the circuit's **source** dials the
target's observed address from its listener socket once its routed session is up; the
**target** only sends :data:`PUNCH_DATAGRAM` to the source's observed address on the
:data:`~hnet.limits.PUNCH_SCHEDULE`, which opens its own NAT's mapping for the source's
Initial. Every change of state goes through :meth:`Punch.fire` and the role's transition
table; anything else is a bug and raises :class:`PunchStateError`. :class:`PunchBackoff`
remembers the peers whose upgrade failed (no new try for :data:`~hnet.limits.PUNCH_BACKOFF`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from hnet import limits

__all__ = [
    "PUNCH_DATAGRAM",
    "SOURCE_TRANSITIONS",
    "TARGET_TRANSITIONS",
    "Punch",
    "PunchBackoff",
    "PunchEvent",
    "PunchRole",
    "PunchState",
    "PunchStateError",
    "punch_delays",
]

#: What the target sends to open its NAT: not a QUIC packet (the fixed bit, 0x40, of the first
#: byte is clear), so every QUIC endpoint discards it (RFC 9000 §17.2/17.3) without answering.
PUNCH_DATAGRAM = b"\x00hnet-punch/1"


class PunchRole(enum.Enum):
    SOURCE = "source"  # dials
    TARGET = "target"  # punches, then accepts the source's connection on its listener


class PunchState(enum.Enum):
    #: a circuit we are an end of; no address, no session yet
    NEW = "new"
    #: source: the router sent the target's address; the routed session is not up yet
    ADDRESSED = "addressed"
    #: source: the routed session is up; no address (yet: the router may never send one)
    ROUTED = "routed"
    #: source: the direct dial runs
    DIALLING = "dialling"
    #: target: punch datagrams go out; the source's connection is awaited
    PUNCHING = "punching"
    #: terminal: the peer's session is the direct one
    DIRECT = "direct"
    #: terminal: the direct path did not come up; the session stays routed (back-off)
    FAILED = "failed"
    #: terminal: the circuit ended before an upgrade was tried
    GONE = "gone"


class PunchEvent(enum.Enum):
    #: the router's ADDRESS frame arrived (the other end's observed address)
    ADDRESS = "address"
    #: source: the routed (circuit) session completed its handshake
    SESSION_UP = "session_up"
    #: source: the direct connection is up and authenticated as the target
    DIAL_OK = "dial_ok"
    #: source: the direct dial failed or timed out
    DIAL_FAILED = "dial_failed"
    #: target: an authenticated direct session with the source arrived
    DIRECT_UP = "direct_up"
    #: target: the window for the source's connection passed without one
    EXPIRED = "expired"
    #: the circuit ended
    CIRCUIT_GONE = "circuit_gone"


class PunchStateError(Exception):
    """An event that makes no sense in the punch's state: a bug of ours."""


S, E = PunchState, PunchEvent
#: (state, event) -> next state, for the source. The circuit ending while the dial runs does
#: not stop the dial: a direct session is then the way to reach the peer at all.
SOURCE_TRANSITIONS: dict[tuple[PunchState, PunchEvent], PunchState] = {
    (S.NEW, E.ADDRESS): S.ADDRESSED,
    (S.NEW, E.SESSION_UP): S.ROUTED,
    (S.ADDRESSED, E.SESSION_UP): S.DIALLING,
    (S.ROUTED, E.ADDRESS): S.DIALLING,
    (S.DIALLING, E.DIAL_OK): S.DIRECT,
    (S.DIALLING, E.DIAL_FAILED): S.FAILED,
    (S.DIALLING, E.CIRCUIT_GONE): S.DIALLING,
    (S.NEW, E.CIRCUIT_GONE): S.GONE,
    (S.ADDRESSED, E.CIRCUIT_GONE): S.GONE,
    (S.ROUTED, E.CIRCUIT_GONE): S.GONE,
}
#: (state, event) -> next state, for the target.
TARGET_TRANSITIONS: dict[tuple[PunchState, PunchEvent], PunchState] = {
    (S.NEW, E.ADDRESS): S.PUNCHING,
    (S.NEW, E.CIRCUIT_GONE): S.GONE,
    (S.PUNCHING, E.DIRECT_UP): S.DIRECT,
    (S.PUNCHING, E.EXPIRED): S.FAILED,
    (S.PUNCHING, E.CIRCUIT_GONE): S.PUNCHING,
}
#: terminal states ignore late events (a CIRCUIT_GONE after DIRECT is the circuit being retired)
TERMINAL = frozenset({S.DIRECT, S.FAILED, S.GONE})
del S, E


@dataclass(eq=False)
class Punch:
    """One upgrade attempt of one circuit, at one end."""

    role: PunchRole
    peer: str
    state: PunchState = PunchState.NEW
    #: the other end's observed UDP address, from the router's ADDRESS frame
    address: tuple[str, int] | None = None

    def fire(self, event: PunchEvent) -> PunchState:
        if self.state in TERMINAL:
            return self.state
        table = SOURCE_TRANSITIONS if self.role is PunchRole.SOURCE else TARGET_TRANSITIONS
        new = table.get((self.state, event))
        if new is None:
            raise PunchStateError(
                f"punch ({self.role.value}, {self.peer}): {event.value} in {self.state.value}"
            )
        self.state = new
        return new

    def addressed(self, host: str, port: int) -> PunchState:
        """The ADDRESS frame: remember the address, then fire ADDRESS."""
        self.address = (host, port)
        return self.fire(PunchEvent.ADDRESS)

    @property
    def must_dial(self) -> bool:
        """Source: the dial is due now (entered DIALLING)."""
        return self.role is PunchRole.SOURCE and self.state is PunchState.DIALLING

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def punch_delays() -> list[float]:
    """The gaps between the target's punch datagrams (first one at once)."""
    times = limits.PUNCH_SCHEDULE
    return [b - a for a, b in zip((0.0, *times), times, strict=False)]


class PunchBackoff:
    """Peers whose upgrade failed, and when: no new try for PUNCH_BACKOFF (bounded record)."""

    def __init__(
        self, backoff: float = limits.PUNCH_BACKOFF, max_size: int = limits.PUNCH_BACKOFF_MAX
    ) -> None:
        self.backoff = backoff
        self.max_size = max_size
        self._failed: OrderedDict[str, float] = OrderedDict()

    def failed(self, peer: str, now: float) -> None:
        self._failed.pop(peer, None)
        self._failed[peer] = now
        while len(self._failed) > self.max_size:
            self._failed.popitem(last=False)

    def succeeded(self, peer: str) -> None:
        self._failed.pop(peer, None)

    def allowed(self, peer: str, now: float) -> bool:
        at = self._failed.get(peer)
        if at is None:
            return True
        if now - at >= self.backoff:
            del self._failed[peer]
            return True
        return False
