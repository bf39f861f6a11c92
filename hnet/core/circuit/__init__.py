"""Circuits: routed QUIC connections through a router (docs/quic.md §11), sans-I/O.

A source asks a router, on its own ``hnet-noise/1`` connection to it, for a circuit to an
indirect node that keeps a connection to that router; the router checks the signed, fresh
:class:`CircuitRequest`, offers it to the target and relays bytes between the two connections.
Noise runs end to end inside the circuit; the router sees only ciphertext.

* :mod:`.request` — the CircuitRequest: bytes, signature, the router's and target's checks;
* :mod:`.replay` — :class:`ReplayGuard`, the bounded nonce cache;
* :mod:`.frames` — stream openings, the relayed stream header, control frames;
* :mod:`.control` — reading a control stream's half, in the order its role allows;
* :mod:`.numbers` — an end's record of relayed stream numbers (no stream replayed);
* :mod:`.states` — one circuit's state machine: states, events, transition table;
* :mod:`.actions` — what the router's table tells its adapter to do;
* :mod:`.table` — :class:`CircuitTable`, the router's circuits: admission, limits, expiry.
"""

from hnet.core.circuit.errors import (
    CircuitCode,
    CircuitError,
    CircuitRefused,
    CircuitStateError,
    Origin,
)
from hnet.core.circuit.replay import ReplayGuard
from hnet.core.circuit.request import (
    CircuitFields,
    CircuitRequest,
    check_offer,
    check_request,
    decode,
    encode,
    new_request,
    sign,
    verify,
)
from hnet.core.circuit.states import TRANSITIONS, CircuitEvent, CircuitState
from hnet.core.circuit.table import CircuitTable

__all__ = [
    "TRANSITIONS",
    "CircuitCode",
    "CircuitError",
    "CircuitEvent",
    "CircuitFields",
    "CircuitRefused",
    "CircuitRequest",
    "CircuitState",
    "CircuitStateError",
    "CircuitTable",
    "Origin",
    "ReplayGuard",
    "check_offer",
    "check_request",
    "decode",
    "encode",
    "new_request",
    "sign",
    "verify",
]
