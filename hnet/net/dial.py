"""The one dial policy: which transport, direct or through routers, QUIC raced or not.

Every connection a node opens goes through :meth:`Dialler.dial` (to reach a peer) or
:meth:`Dialler.answer_via_router` (an indirect node opening its side of a routed connection),
and every attempt through :func:`attempt_all`, the only loop that tries endpoints in turn
(docs/architecture.md, "Dial order and sessions"; docs/protocol.md §7 for routing):

- A direct peer: its record's transports in our order (QUIC, TCP, WS: TCP before WS as the
  reference). When it offers QUIC (our extension, so an hnet peer) and others, QUIC and the
  TCP-then-WS fallback start together: QUIC wins if it is up first; if the fallback is up
  first it is used at once and QUIC, when it comes up, takes over (``on_upgrade``). No fixed
  delay anywhere.
- An indirect peer (routers, no IP): first a circuit through each of its routers that offers
  QUIC (docs/quic.md §11; only this with ``via="quic"``); if none opens (a reference router
  or target does not speak circuits), each of its routers in shuffled order, one attempt per
  router over the first of TCP, WS it offers, a RoutingRequest first and Noise end to end.
- Our own routers (we are indirect): QUIC, then TCP, then WS with ``proxy_request``, one after
  the other, no race.

Each attempt is bounded by the handshake deadline. The dialler returns a session that is not
started; the peer table starts it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import limits
from hnet.core import relay
from hnet.core.handshake import PeerHandshake
from hnet.log import get_logger
from hnet.net.peers import DialError, failure_reason
from hnet.net.pki import Pki
from hnet.supervisor import Supervisor
from hnet.transport.errors import CONNECT_ERRORS
from hnet.transport.session import Session
from hns import NodeRecord

log = get_logger("dial")

__all__ = [
    "ROUTED_TRANSPORTS",
    "TRANSPORTS",
    "Attempt",
    "Connector",
    "Dialler",
    "attempt_all",
]

#: Our dial preference: QUIC (hnet peers only), then TCP before WS as the reference.
TRANSPORTS = ("quic", "tcp", "ws")
#: Transports a connection through a router can use, in order of preference.
ROUTED_TRANSPORTS = ("tcp", "ws")

#: (host, port, handshake, RoutingRequest bytes or None) -> an established session
Connector = Callable[[str, int, PeerHandshake, "bytes | None"], Awaitable[Session]]


@dataclass(frozen=True)
class Attempt:
    """One endpoint to try."""

    transport: str
    host: str
    port: int
    #: a fresh handshake for this attempt
    handshake: Callable[[], PeerHandshake]
    #: sent first when the endpoint is a router
    routing_request: bytes | None = None
    #: the router this attempt goes through, if any
    router: str | None = None
    #: the name the session must be with (checked after the handshake)
    expect: str | None = None

    def label(self) -> str:
        where = f"{self.transport} {self.host}:{self.port}"
        return f"via {self.router} {where}" if self.router else where


async def attempt_all(
    attempts: Sequence[Attempt],
    connectors: dict[str, Connector],
    *,
    timeout: float,
    errors: list[str],
    refused: set[str] | None = None,
) -> Session | None:
    """Try ``attempts`` in order, each within ``timeout``; the first session, or None with
    ``errors`` filled in (and, in ``refused``, the routers whose host refused the connection)."""
    for a in attempts:
        connect = connectors.get(a.transport)
        if connect is None:
            errors.append(f"{a.transport}: not spoken here")
            continue
        try:
            async with asyncio.timeout(timeout):
                session = await connect(a.host, a.port, a.handshake(), a.routing_request)
        except CONNECT_ERRORS as e:  # anything else is a bug of ours and propagates
            errors.append(f"{a.label()}: {failure_reason(e)}")
            if refused is not None and a.router and isinstance(e, ConnectionRefusedError):
                refused.add(a.router)
            continue
        if a.expect is not None and session.peer_name != a.expect:
            session.abort("paired with the wrong node")
            errors.append(f"{a.label()}: paired with {session.peer_name}, not {a.expect}")
            continue
        session.router = a.router
        return session
    return None


def endpoints(rec: NodeRecord, transports: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(transport, ip, port)`` for each of ``transports`` that ``rec`` offers, in order."""
    if not rec.ips:
        return []
    return [(t, rec.ips[0], rec.ports[t]) for t in transports if rec.ports.get(t)]


class Dialler:
    def __init__(
        self,
        *,
        our_name: str,
        key: Ed25519PrivateKey,
        pki: Pki,
        connectors: dict[str, Connector],
        supervisor: Supervisor,
        transports: Sequence[str] = TRANSPORTS,
        handshake_timeout: float = limits.HANDSHAKE_TIMEOUT,
        is_our_router: Callable[[str], bool] = lambda name: False,
        on_upgrade: Callable[[Session], None] = lambda s: s.abort("no upgrade"),
        on_spare: Callable[[Session], None] = lambda s: s.abort("not needed"),
        open_circuit: Callable[[str, str], Awaitable[Session]] | None = None,
        has_hop: Callable[[str], bool] = lambda router: False,
        router_lost: Callable[[str], bool] = lambda router: False,
    ) -> None:
        self.our_name = our_name
        self._key = key
        self._pki = pki
        self._connectors = connectors
        self._sup = supervisor
        self.transports = tuple(transports)
        self.timeout = handshake_timeout
        self.is_our_router = is_our_router
        #: a QUIC session that came up after the fallback was already in use
        self.on_upgrade = on_upgrade
        #: a fallback session that came up after QUIC won (read a while, then closed)
        self.on_spare = on_spare
        #: (target, router) -> a session over a circuit (routed QUIC, docs/quic.md §11)
        self.open_circuit = open_circuit
        #: we hold a QUIC connection with this router now (tried first for circuits)
        self.has_hop = has_hop
        #: our connection to this router died under our circuits a moment ago (tried last)
        self.router_lost = router_lost

    # --- handshakes ------------------------------------------------------------------------

    def _initiator(self, name: str, proxy_request: bool = False) -> Callable[[], PeerHandshake]:
        return lambda: PeerHandshake(
            initiator=True,
            our_name=self.our_name,
            signing_key=self._key,
            lookup=self._pki.networking_key,
            expected_peer=name,
            proxy_request=proxy_request,
        )

    def _responder(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=False,
            our_name=self.our_name,
            signing_key=self._key,
            lookup=self._pki.networking_key,
        )

    # --- policy ----------------------------------------------------------------------------

    async def dial(self, name: str, via: str | None = None) -> Session:
        """An established session with ``name``, or DialError saying what was tried."""
        rec = await self._pki.resolve(name, self.timeout)
        if rec is None:
            raise DialError(f"{name}: not in HNS ({self._pki.source})")
        if not rec.ips:
            return await self._dial_routed(name, rec.routers, via)
        if via is not None:
            return await self._direct(name, rec, [via])
        offered = [t for t in self.transports if rec.ports.get(t)]
        if not offered:
            raise DialError(f"{name}: HNS record offers no transport we speak")
        if self.is_our_router(name):
            # Our session to one of our routers: QUIC (so that it can offer us circuits), then
            # TCP, then WS, one after the other: no race (a race's loser can reach the router
            # after the winner and replace it there).
            return await self._direct(name, rec, offered)
        if offered[0] != "quic" or len(offered) == 1:
            return await self._direct(name, rec, offered)
        return await self._race(
            name,
            self._attempt(self._direct(name, rec, ["quic"])),
            self._attempt(self._direct(name, rec, offered[1:])),
        )

    def _direct_attempts(self, name: str, rec: NodeRecord, order: list[str]) -> list[Attempt]:
        proxy = self.is_our_router(name)
        return [
            Attempt(t, ip, port, self._initiator(name, proxy_request=proxy))
            for t, ip, port in endpoints(rec, order)
        ]

    async def _direct(self, name: str, rec: NodeRecord, order: list[str]) -> Session:
        attempts = self._direct_attempts(name, rec, order)
        errors = [f"{t}: not offered" for t in order if not rec.ports.get(t)]
        session = await attempt_all(attempts, self._connectors, timeout=self.timeout, errors=errors)
        if session is None:
            raise DialError(f"{name}: unreachable ({'; '.join(errors)})")
        return session

    @staticmethod
    async def _attempt(dial: Awaitable[Session]) -> Session | DialError:
        try:
            return await dial
        except DialError as e:
            return e

    async def _race(
        self,
        name: str,
        quic_dial: Coroutine[Any, Any, Session | DialError],
        fallback_dial: Coroutine[Any, Any, Session | DialError],
    ) -> Session:
        """QUIC (direct, or a circuit) and a fallback at once: QUIC if it is up first; else
        the fallback at once, and QUIC takes over when (if) it comes up."""
        quic = self._sup.spawn(quic_dial, name=f"dial quic {name}")
        other = self._sup.spawn(fallback_dial, name=f"dial {name}")
        try:
            await asyncio.wait({quic, other}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            quic.cancel()
            other.cancel()
            raise
        if quic.done() and isinstance(quic.result(), Session):
            if not other.done():
                other.cancel()
            elif isinstance(other.result(), Session):
                # Both came up: the peer may already use the fallback; read it a while.
                self.on_spare(_session(other.result()))
            return _session(quic.result())
        if other.done() and isinstance(other.result(), Session):
            # Use the fallback now; let QUIC take over when (if) it comes up.
            self._sup.spawn(self._upgrade_when_up(quic), name=f"upgrade {name}")
            return _session(other.result())
        lost = other.result() if other.done() else None
        if isinstance(lost, DialError) and lost.all_refused:
            # Every router's host refused the passthrough: it is down (its QUIC with it), so
            # the circuit attempt would only spend the caller's deadline.
            quic.cancel()
            raise DialError(f"{str(lost).removesuffix(')')}; circuit not awaited: routers down)")
        results = [await quic, await other]
        for r in results:
            if isinstance(r, Session):
                return r
        reasons = "; ".join(
            str(r).removeprefix(f"{name}: unreachable ").strip("()") for r in results
        )
        raise DialError(f"{name}: unreachable ({reasons})")

    async def _upgrade_when_up(self, attempt: asyncio.Task[Session | DialError]) -> None:
        result = await attempt
        if isinstance(result, DialError):
            log.info("QUIC not available; staying on the fallback", reason=str(result))
            return
        self.on_upgrade(result)

    async def _dial_routed(self, name: str, routers: Sequence[str], via: str | None) -> Session:
        """An indirect node: through one of its routers (TCP or WS with a RoutingRequest, or,
        with ``via="quic"``, a circuit)."""
        if via == "quic":
            return await self._dial_circuit(name, routers)
        if via is not None and via not in ROUTED_TRANSPORTS:
            raise DialError(f"{name}: indirect node, and {via} connections are not routed")
        if via is None and self.open_circuit is not None and "quic" in self.transports:
            # Between hnet nodes a circuit is the better routed path (no head-of-line
            # blocking, no new socket per session), raced like direct QUIC against the
            # reference's passthrough, which a router or target without circuits still serves.
            return await self._race(
                name,
                self._attempt(self._dial_circuit(name, routers)),
                self._attempt(self._passthrough(name, routers, None)),
            )
        return await self._passthrough(name, routers, via)

    async def _passthrough(self, name: str, routers: Sequence[str], via: str | None) -> Session:
        """Through a router's TCP or WS passthrough (a RoutingRequest first, docs/protocol.md
        §7): one attempt per router, in shuffled order."""
        errors: list[str] = []
        allowed = [t for t in ROUTED_TRANSPORTS if t in self.transports and via in (None, t)]
        candidates = [r for r in routers if r != self.our_name]
        if len(candidates) < len(routers):
            errors.append(f"router {self.our_name}: that is us, skipped")
        random.shuffle(candidates)
        attempts: list[Attempt] = []
        for router in candidates:
            rec = await self._pki.resolve(router, self.timeout)
            if rec is None:
                errors.append(f"router {router}: not in HNS")
                continue
            offered = endpoints(rec, allowed)
            if not offered:
                errors.append(f"router {router}: offers no {'/'.join(allowed)} port")
                continue
            t, ip, port = offered[0]
            rr = relay.encode(self.our_name, self._key, target=name, router=router)
            attempts.append(Attempt(t, ip, port, self._initiator(name), rr, router=router))
        if not routers:
            errors.append("no routers in its record")
        refused: set[str] = set()
        session = await attempt_all(
            attempts, self._connectors, timeout=self.timeout, errors=errors, refused=refused
        )
        if session is None:
            err = DialError(f"{name}: unreachable through its routers ({'; '.join(errors)})")
            err.all_refused = bool(candidates) and refused >= set(candidates)
            raise err
        return session

    async def _dial_circuit(self, name: str, routers: Sequence[str]) -> Session:
        """An indirect node over QUIC: a circuit through each of its routers that offers
        QUIC, in shuffled order, until one opens (docs/quic.md §11)."""
        errors: list[str] = []
        if self.open_circuit is None or "quic" not in self.transports:
            raise DialError(f"{name}: indirect node, and quic connections are not routed here")
        candidates = [r for r in routers if r != self.our_name]
        if len(candidates) < len(routers):
            errors.append(f"router {self.our_name}: that is us, skipped")
        if not routers:
            errors.append("no routers in its record")
        random.shuffle(candidates)
        # routers we already hold a QUIC connection with first (no dial, and known to be up);
        # one whose connection just died under our circuits last (a failover must not spend
        # its deadline dialling a dead router)
        candidates.sort(key=lambda r: (self.router_lost(r), not self.has_hop(r)))
        for router in candidates:
            rec = await self._pki.resolve(router, self.timeout)
            if rec is None:
                errors.append(f"router {router}: not in HNS")
                continue
            if not endpoints(rec, ["quic"]):
                errors.append(f"router {router}: offers no quic port (quic not routed through it)")
                continue
            try:
                # the offer (at most CIRCUIT_OFFER_TIMEOUT) and the end-to-end handshake
                async with asyncio.timeout(limits.CIRCUIT_OFFER_TIMEOUT + self.timeout):
                    return await self.open_circuit(name, router)
            except DialError as e:
                errors.append(str(e))
            except TimeoutError:
                errors.append(f"via {router} quic: timed out")
            except CONNECT_ERRORS as e:
                errors.append(f"via {router} quic: {failure_reason(e)}")
        raise DialError(f"{name}: unreachable through its routers ({'; '.join(errors)})")

    async def answer_via_router(self, source: str, router: str) -> Session:
        """Open our side of the routed connection ``source`` asked ``router`` for.

        ``source``'s socket waits at the router over TCP or WS, and the ConnectionRequest does
        not say which: the router's transports are tried in order (TCP first), all within one
        handshake deadline; a router refuses a socket whose transport differs from the waiting
        one at once, so the next is tried without delay. We are the Noise responder; the
        session must be with ``source``.
        """
        if await self._pki.resolve(source, self.timeout) is None:
            raise DialError(f"{source!r}: not in HNS ({self._pki.source})")
        rec = await self._pki.resolve(router, self.timeout)
        offered = endpoints(rec, ROUTED_TRANSPORTS) if rec is not None else []
        if not offered:
            raise DialError(f"router {router}: not in HNS or offers no tcp/ws port")
        rr = relay.encode(self.our_name, self._key, target=source, router=router)
        attempts = [
            Attempt(t, ip, port, self._responder, rr, router=router, expect=source)
            for t, ip, port in offered
        ]
        errors: list[str] = []
        session = None
        try:
            async with asyncio.timeout(self.timeout):
                session = await attempt_all(
                    attempts, self._connectors, timeout=self.timeout, errors=errors
                )
        except TimeoutError:
            errors.append("timed out")
        if session is None:
            raise DialError(
                f"routed connection from {source} via {router} failed ({'; '.join(errors)})"
            )
        return session


def _session(result: Session | DialError) -> Session:
    if isinstance(result, DialError):
        raise result
    return result
