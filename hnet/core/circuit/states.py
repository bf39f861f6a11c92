"""The state machine of one circuit at a router (docs/quic.md §11.10): states, events and the
transition table. Anything not in :data:`TRANSITIONS` raises :class:`CircuitStateError`."""

from __future__ import annotations

import enum

from hnet.core.circuit.errors import CircuitStateError

__all__ = ["LIVE", "TRANSITIONS", "CircuitEvent", "CircuitState", "transition"]


class CircuitState(enum.Enum):
    REQUESTED = "requested"  # admitted; the OFFER is not on the wire yet
    OFFERED = "offered"  # OFFER sent; waiting for the target's ACCEPT or REFUSE
    OPEN = "open"  # relaying
    CLOSING = "closing"  # CLOSE/REFUSE sent; waiting for the ends' FINs
    CLOSED = "closed"  # gone


class CircuitEvent(enum.Enum):
    OFFER_SENT = "offer-sent"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    CLOSE = "close"  # an end closed, its connection was lost, or we close (evict, limit, stop)
    EXPIRE = "expire"  # offer timeout, idle timeout, close timeout
    DRAINED = "drained"  # every end with a control stream finished it


S, E = CircuitState, CircuitEvent
TRANSITIONS: dict[tuple[CircuitState, CircuitEvent], CircuitState] = {
    (S.REQUESTED, E.OFFER_SENT): S.OFFERED,
    (S.REQUESTED, E.CLOSE): S.CLOSING,
    (S.REQUESTED, E.EXPIRE): S.CLOSING,
    (S.OFFERED, E.ACCEPTED): S.OPEN,
    (S.OFFERED, E.REFUSED): S.CLOSING,
    (S.OFFERED, E.CLOSE): S.CLOSING,
    (S.OFFERED, E.EXPIRE): S.CLOSING,
    (S.OPEN, E.CLOSE): S.CLOSING,
    (S.OPEN, E.EXPIRE): S.CLOSING,
    (S.CLOSING, E.DRAINED): S.CLOSED,
    (S.CLOSING, E.EXPIRE): S.CLOSED,
}
#: the states the limits count
LIVE = (S.REQUESTED, S.OFFERED, S.OPEN)


def transition(state: CircuitState, event: CircuitEvent) -> CircuitState:
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        raise CircuitStateError(f"{event.value} in state {state.value}")
    return nxt
