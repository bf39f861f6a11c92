"""What :class:`~hnet.core.circuit.table.CircuitTable` tells its adapter to do, as values
(docs/quic.md §11.10): the table never does I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hnet.core.circuit.errors import CircuitCode, Origin
from hnet.core.circuit.request import CircuitRequest

__all__ = [
    "Action",
    "Admitted",
    "ExchangeAddresses",
    "FinishControl",
    "Refused",
    "Release",
    "SendAccept",
    "SendClose",
    "SendOffer",
    "SendRefuse",
    "StopRelay",
    "StreamDecision",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class SendOffer:
    """Open a control stream to ``target`` and send OFFER, then call ``offer_sent``."""

    circuit_id: int
    target: str
    flags: int
    request: CircuitRequest


@dataclass(frozen=True, slots=True)
class SendAccept:
    """Send ACCEPT on the source's request stream."""

    circuit_id: int
    source: str
    flags: int


@dataclass(frozen=True, slots=True)
class ExchangeAddresses:
    """Both ends agreed: send each an ADDRESS frame with the other's observed UDP address."""

    circuit_id: int
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class SendRefuse:
    """Send REFUSE then FIN on the source's request stream (the circuit never opened)."""

    circuit_id: int
    source: str
    code: CircuitCode
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class SendClose:
    """Send CLOSE then FIN on our half of ``to``'s control stream."""

    circuit_id: int
    to: str
    code: CircuitCode
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class FinishControl:
    """``to`` closed its half: end ours with FIN (no frame)."""

    circuit_id: int
    to: str


@dataclass(frozen=True, slots=True)
class StopRelay:
    """Stop relaying: drop held bytes, end every relayed stream's halves with FIN, discard
    whatever else arrives for the circuit."""

    circuit_id: int


@dataclass(frozen=True, slots=True)
class Release:
    """The circuit is CLOSED; forget it."""

    circuit_id: int


Action = (
    SendOffer
    | SendAccept
    | ExchangeAddresses
    | SendRefuse
    | SendClose
    | FinishControl
    | StopRelay
    | Release
)


@dataclass(frozen=True, slots=True)
class Admitted:
    circuit_id: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer the request stream with REFUSE (origin ROUTER) and FIN; no circuit exists."""

    code: CircuitCode
    reason: str


class Verdict(enum.Enum):
    RELAY = "relay"  # open the matching stream on the other hop and copy
    DISCARD = "discard"  # read and drop the stream's bytes, FIN our half
    VIOLATION = "violation"  # close the whole connection (PROTOCOL_VIOLATION)


@dataclass(frozen=True, slots=True)
class StreamDecision:
    verdict: Verdict
    reason: str = ""
    actions: tuple[Action, ...] = ()
