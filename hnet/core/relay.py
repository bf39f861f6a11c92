"""RoutingRequest: build, sign and check the first frame sent to a router.

Specified in docs/protocol.md §7, "Routed connections".

``RoutingRequest = [protocol_version = 1, source, signature, target]``. The signature is
Ed25519, by the source's networking key, over the UTF-8 bytes of ``target + router`` (the two
names concatenated; reference ``net/tcp/mod.rs`` ``connect_with_handshake``). A router checks
it with :func:`check` before it pairs the socket with anything. Pure functions, no I/O.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.handshake import KeyLookup
from hnet.core.wire import (
    CodecError,
    RoutingRequest,
    decode_routing_request,
    encode_routing_request,
)

PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "RoutingRefused",
    "build",
    "check",
    "encode",
    "signed_bytes",
]


class RoutingRefused(Exception):
    """A router refuses a RoutingRequest; the message says why (for the log)."""


def signed_bytes(target: str, router: str) -> bytes:
    """What the source signs: ``target_name + router_name`` as UTF-8."""
    return (target + router).encode()


def build(source: str, key: Ed25519PrivateKey, *, target: str, router: str) -> RoutingRequest:
    """``source`` asks ``router`` to pair it with ``target``."""
    return RoutingRequest(
        protocol_version=PROTOCOL_VERSION,
        source=source,
        signature=key.sign(signed_bytes(target, router)),
        target=target,
    )


def encode(source: str, key: Ed25519PrivateKey, *, target: str, router: str) -> bytes:
    """The msgpack bytes of :func:`build` (framed by the transport)."""
    return encode_routing_request(build(source, key, target=target, router=router))


def check(data: bytes, *, router: str, lookup: KeyLookup) -> RoutingRequest:
    """Decode and check a RoutingRequest received by ``router``; raise RoutingRefused.

    Checks, in order: it decodes; ``protocol_version == 1``; source and target differ and
    neither is the router itself (a source that can reach the router can reach it directly,
    and a router never dials itself); the source is in HNS and signed ``target + router``
    with its networking key; the target is in HNS. (The reference checks the same except the
    version and the router's own name.)
    """
    try:
        rr = decode_routing_request(data)
    except CodecError as e:
        raise RoutingRefused(f"undecodable routing request: {e}") from None
    if rr.protocol_version != PROTOCOL_VERSION:
        raise RoutingRefused(f"routing request protocol version {rr.protocol_version} != 1")
    if rr.source == rr.target:
        raise RoutingRefused(f"routing request from {rr.source!r} to itself")
    if router in (rr.source, rr.target):
        raise RoutingRefused("routing request naming the router itself")
    source_key = lookup(rr.source)
    if source_key is None:
        raise RoutingRefused(f"routing request from unknown HNS name {rr.source!r}")
    if not keys.verify(source_key, rr.signature, signed_bytes(rr.target, router)):
        raise RoutingRefused(f"routing request from {rr.source}: signature does not verify")
    if lookup(rr.target) is None:
        raise RoutingRefused(f"routing request to unknown HNS name {rr.target!r}")
    return rr
