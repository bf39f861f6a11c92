"""Circuit codes (carried in REFUSE and CLOSE control frames) and the errors of the core.

The codes are part of the wire protocol (docs/quic.md §11.9). They are circuit-level: a circuit
is refused or closed with one of them while the QUIC connections that carry it stay up.
Connection-level failures keep the codes of :class:`hnet.core.quic.errors.QuicAppError`.
"""

from __future__ import annotations

import enum

__all__ = ["CircuitCode", "CircuitError", "CircuitRefused", "CircuitStateError", "Origin"]


class CircuitCode(enum.IntEnum):
    """Why a circuit was refused or closed (u16 on the wire)."""

    #: orderly close by an end
    NO_ERROR = 0
    #: a field does not decode, a name is malformed, source/target/router not distinct
    MALFORMED = 1
    #: CircuitRequest version other than 1
    UNSUPPORTED_VERSION = 2
    #: the request names another router, or (at the target) a node that is not its router
    WRONG_ROUTER = 3
    #: the request's source is not the authenticated peer of the session it came on
    WRONG_SOURCE = 4
    #: the offer names another target than the node it was sent to
    WRONG_TARGET = 5
    #: the source has no networking key in HNS
    UNKNOWN_SOURCE = 6
    #: the target is not in HNS
    UNKNOWN_TARGET = 7
    #: we do not route for the target, or it holds no connection to us now
    NOT_ROUTING = 8
    #: the signature does not verify with the source's networking key
    BAD_SIGNATURE = 9
    #: the timestamp is outside the window, or older than the replay cache remembers
    STALE = 10
    #: the nonce was seen within the window
    REPLAY = 11
    #: all circuits in use and none idle long enough to evict
    BUSY = 12
    #: the source is at its circuit or request-rate cap
    SOURCE_LIMIT = 13
    #: the target did not answer the offer in time
    TIMEOUT = 14
    #: an end opened more relayed streams than a circuit allows, or overran the relay buffer
    LIMIT_EXCEEDED = 15
    #: a relayed stream broke a rule (stream number parity, a number reused while open)
    PROTOCOL_VIOLATION = 16
    #: no relayed traffic for the idle timeout
    IDLE = 17
    #: closed to make room for a new circuit (the router was full)
    EVICTED = 18
    #: the other end's connection to the router is gone
    PEER_GONE = 19
    #: the router is shutting down
    GOING_AWAY = 20
    #: the target declines for a reason of its own (policy, its own limits)
    DECLINED = 21
    #: the end-to-end Noise handshake failed, or reached another node than the circuit names
    HANDSHAKE_FAILED = 22


class Origin(enum.IntEnum):
    """Who decided a REFUSE or CLOSE (u8 on the wire)."""

    #: the router itself
    ROUTER = 0
    #: the far end of the circuit (the target for the source, the source for the target)
    PEER = 1


class CircuitError(ValueError):
    """Bytes that do not decode as a circuit structure (strict decoding; nothing was kept).

    ``code`` is what a refusal carries: MALFORMED or UNSUPPORTED_VERSION.
    """

    def __init__(self, reason: str, code: CircuitCode = CircuitCode.MALFORMED) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CircuitRefused(Exception):
    """A request or offer failed a check: answer REFUSE with ``code`` (the reason is for logs
    and the REFUSE frame's text)."""

    def __init__(self, code: CircuitCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code.name}: {self.reason}"


class CircuitStateError(RuntimeError):
    """An event that the circuit state machine does not allow in the current state (a bug in
    the caller: the adapter fed an event out of order)."""
