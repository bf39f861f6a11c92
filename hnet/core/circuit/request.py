"""CircuitRequest: encode, decode, sign, verify, and the router's and target's checks.

Specified in docs/quic.md §11.3-11.5. Layout (all integers big-endian)::

    u8   version = 1
    u8   len ‖ source   (UTF-8 node name, 1..255 bytes)
    u8   len ‖ target
    u8   len ‖ router
    u64  timestamp      (unix seconds)
    16   nonce          (random)
    64   signature      Ed25519 by the source's networking key over SIGNING_CONTEXT ‖ all of
                        the above (everything but the signature)

Decoding is strict: every length is checked against what is left before anything is sliced,
the total is capped at CIRCUIT_REQUEST_MAX before a byte is read, names must be well-formed
node names, and nothing may follow the signature. Pure functions, no I/O, no clock.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.circuit.errors import CircuitCode, CircuitError, CircuitRefused
from hnet.core.circuit.replay import ReplayGuard
from hnet.core.wire.types import is_valid_node_name
from hnet.limits import CIRCUIT_NAME_MAX, CIRCUIT_REQUEST_MAX, CIRCUIT_REQUEST_WINDOW

__all__ = [
    "NONCE_LEN",
    "SIGNATURE_LEN",
    "SIGNING_CONTEXT",
    "VERSION",
    "CircuitFields",
    "CircuitRequest",
    "check_offer",
    "check_request",
    "decode",
    "encode",
    "new_request",
    "sign",
    "verify",
]

VERSION = 1
NONCE_LEN = 16
SIGNATURE_LEN = 64
#: Prepended to the signed bytes. The networking key also signs raw 32-byte Noise static keys
#: (handshake), ``target + router`` (RoutingRequest: name characters only) and, for local
#: processes, ``address + blob`` where ``address`` starts with a node name and ``@``. A signed
#: CircuitRequest is always longer than 32 bytes (at least 54), and the context's fifth byte is
#: a space, which no name contains and which is not ``@``: no other signature can be taken for
#: a CircuitRequest's, nor a CircuitRequest's for another use.
SIGNING_CONTEXT = b"hnet circuit-request/1\x00"

_U64 = struct.Struct(">Q")
_MAX_TIMESTAMP = 2**64 - 1


@dataclass(frozen=True, slots=True)
class CircuitFields:
    """Everything a CircuitRequest carries except its signature: what the source signs."""

    version: int
    source: str
    target: str
    router: str
    timestamp: int
    nonce: bytes

    def check(self) -> None:
        """Raise :class:`CircuitError` unless every field is encodable and well-formed."""
        if self.version != VERSION:
            raise CircuitError(
                f"circuit request version {self.version} (not {VERSION})",
                CircuitCode.UNSUPPORTED_VERSION,
            )
        _check_name("source", self.source)
        _check_name("target", self.target)
        _check_name("router", self.router)
        if not isinstance(self.timestamp, int) or not 0 <= self.timestamp <= _MAX_TIMESTAMP:
            raise CircuitError(f"timestamp {self.timestamp!r} is not a u64")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LEN:
            raise CircuitError(f"nonce must be {NONCE_LEN} bytes")

    def body(self) -> bytes:
        """The encoded fields (the request without its signature); checks them first."""
        self.check()
        parts = [bytes((self.version,))]
        for name in (self.source, self.target, self.router):
            raw = name.encode()
            parts.append(bytes((len(raw),)))
            parts.append(raw)
        parts.append(_U64.pack(self.timestamp))
        parts.append(self.nonce)
        return b"".join(parts)

    def signed_bytes(self) -> bytes:
        """What the signature covers: SIGNING_CONTEXT, then :meth:`body`."""
        return SIGNING_CONTEXT + self.body()


@dataclass(frozen=True, slots=True)
class CircuitRequest:
    """A signed request, by ``source``, for a circuit through ``router`` to ``target``."""

    version: int
    source: str
    target: str
    router: str
    timestamp: int
    nonce: bytes
    signature: bytes

    @property
    def fields(self) -> CircuitFields:
        return CircuitFields(
            self.version, self.source, self.target, self.router, self.timestamp, self.nonce
        )


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not is_valid_node_name(name):
        raise CircuitError(f"{what} {name!r} is not a node name")
    if len(name) > CIRCUIT_NAME_MAX:  # ASCII: characters are bytes
        raise CircuitError(f"{what} name of {len(name)} bytes (at most {CIRCUIT_NAME_MAX})")


# --- bytes --------------------------------------------------------------------------------------


def encode(request: CircuitRequest) -> bytes:
    """The wire bytes of ``request`` (at most CIRCUIT_REQUEST_MAX); CircuitError if a field is
    out of range."""
    if not isinstance(request.signature, bytes) or len(request.signature) != SIGNATURE_LEN:
        raise CircuitError(f"signature must be {SIGNATURE_LEN} bytes")
    return request.fields.body() + request.signature


def decode(data: bytes | bytearray | memoryview) -> CircuitRequest:
    """Decode one CircuitRequest that fills ``data`` exactly; CircuitError otherwise."""
    n = len(data)
    if n > CIRCUIT_REQUEST_MAX:
        raise CircuitError(f"circuit request of {n} bytes (at most {CIRCUIT_REQUEST_MAX})")
    if n < 1:
        raise CircuitError("empty circuit request")
    buf = bytes(data)
    if buf[0] != VERSION:
        raise CircuitError(
            f"circuit request version {buf[0]} (not {VERSION})", CircuitCode.UNSUPPORTED_VERSION
        )
    pos = 1
    names: list[str] = []
    for what in ("source", "target", "router"):
        if pos >= n:
            raise CircuitError(f"circuit request truncated before the {what} name")
        length = buf[pos]
        pos += 1
        if length == 0:
            raise CircuitError(f"empty {what} name")
        if length > n - pos:
            raise CircuitError(f"{what} name of {length} bytes overruns the request")
        raw = buf[pos : pos + length]
        pos += length
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise CircuitError(f"{what} name is not ASCII") from None
        _check_name(what, name)
        names.append(name)
    rest = n - pos
    need = 8 + NONCE_LEN + SIGNATURE_LEN
    if rest != need:
        raise CircuitError(
            f"{rest} bytes after the names (timestamp, nonce and signature take {need})"
        )
    (timestamp,) = _U64.unpack_from(buf, pos)
    pos += 8
    nonce = buf[pos : pos + NONCE_LEN]
    signature = buf[pos + NONCE_LEN :]
    return CircuitRequest(VERSION, names[0], names[1], names[2], timestamp, nonce, signature)


# --- signatures ---------------------------------------------------------------------------------


def sign(fields: CircuitFields, key: Ed25519PrivateKey) -> CircuitRequest:
    """Sign ``fields`` with the source's networking key."""
    signature = key.sign(fields.signed_bytes())
    return CircuitRequest(
        fields.version,
        fields.source,
        fields.target,
        fields.router,
        fields.timestamp,
        fields.nonce,
        signature,
    )


def verify(request: CircuitRequest, public_key: bytes) -> bool:
    """True if ``request``'s signature is the source's, by ``public_key``, over its fields."""
    try:
        message = request.fields.signed_bytes()
    except CircuitError:
        return False
    return keys.verify(public_key, request.signature, message)


def new_request(
    source: str,
    key: Ed25519PrivateKey,
    *,
    target: str,
    router: str,
    now: float,
    nonce: bytes | None = None,
) -> CircuitRequest:
    """A fresh signed request: timestamp ``int(now)`` (unix seconds), a random nonce."""
    fields = CircuitFields(
        VERSION,
        source,
        target,
        router,
        int(now),
        os.urandom(NONCE_LEN) if nonce is None else nonce,
    )
    return sign(fields, key)


# --- checks ---------------------------------------------------------------------------------------


def _fresh(request: CircuitRequest, now: float, window: float) -> None:
    skew = now - request.timestamp
    if abs(skew) > window:
        side = "old" if skew > 0 else "in the future"
        raise CircuitRefused(
            CircuitCode.STALE, f"timestamp {abs(skew):.0f} s {side} (window {window:g} s)"
        )


def _signed(request: CircuitRequest, source_key: bytes | None) -> None:
    if source_key is None:
        raise CircuitRefused(CircuitCode.UNKNOWN_SOURCE, f"{request.source} is not in HNS")
    if not verify(request, source_key):
        raise CircuitRefused(
            CircuitCode.BAD_SIGNATURE, f"request from {request.source}: signature does not verify"
        )


def check_request(
    request: CircuitRequest,
    *,
    router: str,
    peer: str,
    source_key: bytes | None,
    now: float,
    guard: ReplayGuard,
    window: float = CIRCUIT_REQUEST_WINDOW,
) -> None:
    """The router's checks of a request that arrived on a session with ``peer`` (docs/quic.md
    §11.4), cheapest first; raise :class:`CircuitRefused`.

    The request must name us as its router, come from its own source, name three distinct
    nodes, be fresh, be signed by the source's key (``source_key``: looked up in HNS by the
    caller, None if absent), and carry a nonce the replay guard has not seen (it is recorded:
    a request refused after this point has spent its nonce). Whether we route for the target
    and have room is the table's business (:meth:`CircuitTable.request`).
    """
    if request.router != router:
        raise CircuitRefused(
            CircuitCode.WRONG_ROUTER, f"request for router {request.router!r}, we are {router!r}"
        )
    if request.source != peer:
        raise CircuitRefused(
            CircuitCode.WRONG_SOURCE,
            f"request from {request.source!r} on the session of {peer!r}",
        )
    if request.target in (request.source, router):
        raise CircuitRefused(CircuitCode.MALFORMED, f"request to {request.target!r}")
    _fresh(request, now, window)
    _signed(request, source_key)
    guard.check(request.source, request.nonce, request.timestamp, now)


def check_offer(
    request: CircuitRequest,
    *,
    our_name: str,
    router: str,
    our_routers: frozenset[str] | set[str] | tuple[str, ...],
    source_key: bytes | None,
    now: float,
    guard: ReplayGuard,
    window: float = CIRCUIT_REQUEST_WINDOW,
) -> None:
    """The target's checks of the request inside an OFFER received from ``router`` (the
    authenticated peer of the session the OFFER came on; docs/quic.md §11.5).

    The request must be for us, through that router, which must be one of ours (our HNS
    record's routers); its source must be neither us nor the router; it must be fresh, signed by
    the source, and carry a nonce our own replay guard has not seen.
    """
    if request.target != our_name:
        raise CircuitRefused(
            CircuitCode.WRONG_TARGET, f"offer for {request.target!r}, we are {our_name!r}"
        )
    if request.router != router or router not in our_routers:
        raise CircuitRefused(
            CircuitCode.WRONG_ROUTER,
            f"offer from {router!r} for a request through {request.router!r}",
        )
    if request.source in (our_name, router):
        raise CircuitRefused(CircuitCode.MALFORMED, f"offer from source {request.source!r}")
    _fresh(request, now, window)
    _signed(request, source_key)
    guard.check(request.source, request.nonce, request.timestamp, now)
