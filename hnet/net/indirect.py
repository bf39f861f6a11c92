"""The indirect node role: a node whose HNS record lists routers instead of an address.

- It keeps a session to each of its routers, opened with ``proxy_request = true`` so the
  router routes for it (QUIC first where the router offers it: over that connection the router
  also offers it circuits, docs/quic.md §11, accepted by :mod:`hnet.net.circuits`); a router
  without one is redialled every ``reconnect_interval``
  (reference: ``net/indirect.rs`` ``maintain_routers``, every 4 s).
- On ``NetAction::ConnectionRequest(from)`` from one of *its* routers, it opens a new
  connection to that router, sends a RoutingRequest (source = itself, target = ``from``) and
  runs the Noise responder handshake on it; the session becomes its session with ``from``
  (reference: ``net/mod.rs`` ``handle_remote_request``, ``tcp::recv_via_router``).
  It answers the router with ``NetResponse::Accepted(from)`` once the session is up, or
  ``Rejected(from)`` if it cannot open it (``from`` unknown, router unreachable, handshake
  failed). The reference sends no response at all, and its router ignores everything but
  ``Rejected``, on which it drops the pending socket; ours does the same.

It does not listen: its record has no address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from hnet import limits
from hnet.core.wire import Accepted, KernelMessage, NetResponse, Rejected
from hnet.log import get_logger
from hnet.net.peers import DialError, PeerTable
from hnet.supervisor import Supervisor
from hnet.transport.session import Session

log = get_logger("indirect")

__all__ = ["IndirectRole"]

Respond = Callable[[KernelMessage, NetResponse], None]


class IndirectRole:
    def __init__(
        self,
        *,
        our_name: str,
        routers: Sequence[str],
        peers: PeerTable,
        dial_router: Callable[[str], Awaitable[Session]],
        answer_via_router: Callable[[str, str], Awaitable[Session]],
        respond: Respond,
        reconnect_interval: float = limits.ROUTER_RECONNECT_INTERVAL,
        max_answering: int = limits.MAX_PENDING_HANDSHAKES,
    ) -> None:
        self.our_name = our_name
        self.routers = tuple(routers)
        self._peers = peers
        self._dial_router = dial_router
        self._answer_via_router = answer_via_router
        self._respond = respond
        self.reconnect_interval = reconnect_interval
        self._max_answering = max_answering
        self._answering = 0
        self._sup = Supervisor(f"indirect {our_name}")
        #: last dial failure per router, logged when it changes (not every round)
        self._failure: dict[str, str | None] = {}
        self.stats = {"accepted": 0, "rejected": 0, "dials": 0}

    # --- sessions to our routers --------------------------------------------------------------

    def start(self) -> None:
        for router in self.routers:
            if router == self.our_name:
                continue
            self._sup.spawn(self._maintain(router), name=f"router {router}")

    def is_router(self, name: str) -> bool:
        return name in self.routers

    def connected(self, router: str) -> bool:
        """We hold a session to ``router`` that we opened (so with ``proxy_request``)."""
        s = self._peers.session(router)
        return s is not None and not s.closed and s.initiator

    async def _maintain(self, router: str) -> None:
        while True:
            if not self.connected(router):
                await self._connect(router)
            await asyncio.sleep(self.reconnect_interval)

    async def _connect(self, router: str) -> None:
        self.stats["dials"] += 1
        try:
            session = await self._dial_router(router)
        except DialError as e:
            if self._failure.get(router) != str(e):
                log.info("router unreachable; retrying", router=router, reason=str(e))
            self._failure[router] = str(e)
            return
        self._failure[router] = None
        self._peers.adopt(session)
        log.info("connected to router", router=router, transport=session.transport)

    # --- ConnectionRequest from a router ------------------------------------------------------

    def on_connection_request(self, km: KernelMessage, source: str) -> bool:
        """``km`` carries ``ConnectionRequest(source)``; False if it is not from one of our
        routers (the caller ignores it), True once it is handled (answered now or later)."""
        router = km.source.node
        if not self.is_router(router):
            return False
        reason = None
        if source == self.our_name:
            reason = "that is us"  # (an unknown name is looked up, and refused, by the answer)
        elif self._answering >= self._max_answering:
            reason = "too many routed connections opening"
        if reason is not None:
            log.info("ConnectionRequest rejected", router=router, source=source, reason=reason)
            self.stats["rejected"] += 1
            self._respond(km, Rejected(source))
            return True
        self._answering += 1
        self._sup.spawn(self._answer(km, router, source), name=f"routed {source}")
        return True

    async def _answer(self, km: KernelMessage, router: str, source: str) -> None:
        try:
            session = await self._answer_via_router(source, router)
        except DialError as e:
            log.info("routed connection failed", router=router, source=source, reason=str(e))
            self.stats["rejected"] += 1
            self._respond(km, Rejected(source))
            return
        finally:
            self._answering -= 1
        self.stats["accepted"] += 1
        self._peers.attach(session)
        self._respond(km, Accepted(source))

    def describe(self) -> str:
        up = [r for r in self.routers if self.connected(r)]
        return (
            f"indirect: routers {', '.join(self.routers)} (connected: {', '.join(up) or 'none'}); "
            f"routed connections accepted {self.stats['accepted']}, "
            f"rejected {self.stats['rejected']}"
        )

    async def aclose(self) -> None:
        await self._sup.aclose()
