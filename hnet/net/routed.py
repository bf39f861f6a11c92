"""Connections through a router, from both ends (PROTOCOL-FACTS §4).

- :func:`dial_via_routers`: reach an indirect node. For each of its routers, in shuffled
  order, open a socket to the router, send a RoutingRequest (source = us, target = the node)
  and run the Noise *initiator* handshake end to end with the node. Each attempt is bounded
  by the handshake deadline; when all fail, DialError lists what was tried.
- :func:`accept_via_router`: an indirect node answering its router's ConnectionRequest
  opens a new socket to the router, sends a RoutingRequest (source = us, target = the node
  that asked) and runs the Noise *responder* handshake on it.

Routed connections run over TCP or WebSocket; QUIC is not routed. One transport is tried per
router, the first of ``tcp``, ``ws`` it offers (the reference's choice).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import WebSocketException

from hnet.core import relay as request
from hnet.core.handshake import HandshakeError, KeyLookup, PeerHandshake
from hnet.log import get_logger
from hnet.net.peers import DialError, failure_reason
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.session import Session, SessionError
from hns import NodeRecord

log = get_logger("routing")

__all__ = [
    "ROUTED_TRANSPORTS",
    "RecordLookup",
    "RoutedConnector",
    "accept_via_router",
    "dial_via_routers",
    "router_endpoints",
]

#: Transports a connection through a router can use, in order of preference.
ROUTED_TRANSPORTS = ("tcp", "ws")

RecordLookup = Callable[[str], "NodeRecord | None"]
#: (host, port, handshake, RoutingRequest bytes) -> session with the node the router pairs us with
RoutedConnector = Callable[[str, int, PeerHandshake, bytes], Awaitable[Session]]

CONNECTORS: dict[str, RoutedConnector] = {
    "tcp": tcp_transport.connect,
    "ws": ws_transport.connect,
}

#: What a failed routed attempt can raise (anything else is a bug and propagates).
ATTEMPT_ERRORS = (HandshakeError, SessionError, TimeoutError, OSError, WebSocketException)


def router_endpoints(
    rec: NodeRecord, transports: Sequence[str] = ROUTED_TRANSPORTS
) -> list[tuple[str, str, int]]:
    """``(transport, ip, port)`` for each transport router ``rec`` offers, in order."""
    if not rec.ips:
        return []
    return [
        (t, rec.ips[0], rec.ports[t]) for t in transports if t in CONNECTORS and rec.ports.get(t)
    ]


async def dial_via_routers(
    target: str,
    routers: Sequence[str],
    *,
    our_name: str,
    key: Ed25519PrivateKey,
    record: RecordLookup,
    lookup: KeyLookup,
    transports: Sequence[str] = ROUTED_TRANSPORTS,
    timeout: float,
) -> tuple[Session, str]:
    """A session with indirect node ``target`` and the router it runs through."""
    candidates = [r for r in routers if r != our_name]
    random.shuffle(candidates)
    errors: list[str] = []
    if len(candidates) < len(routers):
        errors.append(f"router {our_name}: that is us, skipped")
    for router in candidates:
        rec = record(router)
        if rec is None:
            errors.append(f"router {router}: not in HNS")
            continue
        endpoints = router_endpoints(rec, transports)
        if not endpoints:
            errors.append(f"router {router}: offers no {'/'.join(transports)} port")
            continue
        transport, ip, port = endpoints[0]
        hs = PeerHandshake(
            initiator=True,
            our_name=our_name,
            signing_key=key,
            lookup=lookup,
            expected_peer=target,
        )
        rr = request.encode(our_name, key, target=target, router=router)
        try:
            async with asyncio.timeout(timeout):
                session = await CONNECTORS[transport](ip, port, hs, rr)
        except ATTEMPT_ERRORS as e:
            errors.append(f"via {router} {transport} {ip}:{port}: {failure_reason(e)}")
            continue
        return session, router
    if not routers:
        errors.append("no routers in its record")
    raise DialError(f"{target}: unreachable through its routers ({'; '.join(errors)})")


async def accept_via_router(
    source: str,
    router: str,
    *,
    our_name: str,
    key: Ed25519PrivateKey,
    record: RecordLookup,
    lookup: KeyLookup,
    timeout: float,
) -> Session:
    """Open our side of the routed connection ``source`` asked ``router`` for.

    ``source``'s socket waits at the router over TCP or WS, and the ConnectionRequest does not
    say which: the router's transports are tried in order (TCP first, as the reference),
    all within ``timeout``; a router refuses a socket whose transport differs from the waiting
    one at once, so the next is tried without delay. Raises DialError with what was tried;
    the session's peer is checked to be ``source``.
    """
    rec = record(router)
    endpoints = router_endpoints(rec) if rec is not None else []
    if not endpoints:
        raise DialError(f"router {router}: not in HNS or offers no tcp/ws port")
    errors: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            for transport, ip, port in endpoints:
                hs = PeerHandshake(
                    initiator=False, our_name=our_name, signing_key=key, lookup=lookup
                )
                rr = request.encode(our_name, key, target=source, router=router)
                try:
                    session = await CONNECTORS[transport](ip, port, hs, rr)
                except (HandshakeError, SessionError, OSError, WebSocketException) as e:
                    errors.append(f"{transport} {ip}:{port}: {failure_reason(e)}")
                    continue
                if session.peer_name != source:
                    session.abort("routed peer is not the node that asked")
                    errors.append(f"{transport}: paired with {session.peer_name}, not {source}")
                    continue
                return session
    except TimeoutError:
        errors.append("timed out")
    raise DialError(f"routed connection from {source} via {router} failed ({'; '.join(errors)})")
