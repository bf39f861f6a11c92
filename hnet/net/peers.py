"""Peers: one session per peer, dial on first message, queue while dialling, bounded.

- The first message to a peer dials it; messages queue (bounded) until connected and are
  then written in order. If dialling fails, every queued message goes back to its sender as
  ``SendError{Offline}``: nothing is dropped silently.
- A new handshake from a peer replaces its old session; the old one is retired (no more
  sends, still read for a grace period) so nothing already in flight on it is lost. When both
  sides dial each other at once (simultaneous open) the dial of the smaller name wins on both
  ends.
- At most ``max_peers`` peers; adding one past the bound evicts the least recently active.
- Inbound bytes are decoded here once for every transport: a message that does not decode,
  whose source node is not the authenticated peer ("spoofed source"), or whose source process
  is not hypermap-safe closes the session.
- Routing: a session the peer opened with ``proxy_request`` asks us to route for it
  (:meth:`PeerManager.routing_for`); a session that runs through a router (either way) is
  noted with the router's name (:meth:`PeerManager.note_routed`). Both show in :class:`PeerInfo`.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hnet import limits
from hnet.core.wire import (
    CodecError,
    KernelMessage,
    SendErrorKind,
    decode_kernel_message,
    encode_kernel_message,
)
from hnet.log import get_logger
from hnet.supervisor import Supervisor
from hnet.transport.session import Session, SessionClosed, SessionError

log = get_logger("peers")

OnMessage = Callable[[KernelMessage, Session], Awaitable[None]]
OnSendError = Callable[[KernelMessage, SendErrorKind, str], Coroutine[Any, Any, None]]
#: (peer name, forced transport or None) -> an established session, or raises DialError
Dialer = Callable[[str, "str | None"], Awaitable[Session]]


#: Preference between transports when two live sessions with a peer disagree.
TRANSPORT_RANK = {"quic": 3, "tcp": 2, "ws": 1}


class DialError(Exception):
    """No transport reached the peer; the message says what was tried."""


def failure_reason(e: BaseException) -> str:
    """One short phrase for why a connection attempt failed."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__


@dataclass
class _Queued:
    km: KernelMessage
    data: bytes


@dataclass
class Peer:
    name: str
    session: Session | None = None
    dialling: bool = False
    dial_via: str | None = None
    queue: deque[_Queued] = field(default_factory=deque)
    #: replaced sessions still being read for their grace period
    retired: set[Session] = field(default_factory=set)
    last_active: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class PeerInfo:
    name: str
    transport: str | None
    remote: str | None
    initiator: bool | None
    last_active_ago: float
    messages_in: int
    messages_out: int
    queued: int
    #: the peer opened its session with ``proxy_request``: we route for it
    routing_for: bool = False
    #: the session runs through this router (a routed connection), else None
    router: str | None = None


class PeerManager:
    def __init__(
        self,
        *,
        our_name: str,
        dialer: Dialer,
        on_message: OnMessage,
        on_send_error: OnSendError,
        supervisor: Supervisor,
        max_peers: int = limits.MAX_PEERS,
        idle_timeout: float = limits.IDLE_TIMEOUT,
        retire_grace: float = limits.SESSION_RETIRE_GRACE,
    ) -> None:
        self.our_name = our_name
        self._dialer = dialer
        self._on_message = on_message
        self._on_send_error = on_send_error
        self._sup = supervisor
        self.max_peers = max_peers
        self.idle_timeout = idle_timeout
        self.retire_grace = retire_grace
        self._peers: OrderedDict[str, Peer] = OrderedDict()
        self._closing = False
        self._routed: weakref.WeakKeyDictionary[Session, str] = weakref.WeakKeyDictionary()

    # --- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._peers)

    def session(self, name: str) -> Session | None:
        peer = self._peers.get(name)
        return peer.session if peer else None

    def routing_for(self, name: str) -> Session | None:
        """``name``'s session if the peer opened it asking us to route for it."""
        s = self.session(name)
        if s is None or s.closed or s.initiator or not s.proxy_request:
            return None
        return s

    def note_routed(self, session: Session, router: str) -> None:
        """Record that ``session`` runs through ``router`` (for PeerInfo and diagnostics)."""
        self._routed[session] = router

    def infos(self) -> list[PeerInfo]:
        now = time.monotonic()
        out = []
        for p in self._peers.values():
            s = p.session
            out.append(
                PeerInfo(
                    name=p.name,
                    transport=s.transport if s else None,
                    remote=s.remote if s else None,
                    initiator=s.initiator if s else None,
                    last_active_ago=now - p.last_active,
                    messages_in=s.messages_in if s else 0,
                    messages_out=s.messages_out if s else 0,
                    queued=len(p.queue),
                    routing_for=bool(s and not s.initiator and s.proxy_request),
                    router=self._routed.get(s) if s else None,
                )
            )
        return out

    # --- sending ---------------------------------------------------------------------------

    async def send(self, km: KernelMessage, via: str | None = None) -> None:
        """Send ``km`` to ``km.target.node``; failures reach the sender as SendError."""
        name = km.target.node
        if self._closing:
            await self._on_send_error(km, SendErrorKind.OFFLINE, "node shutting down")
            return
        data = encode_kernel_message(km)
        if len(data) > limits.MESSAGE_MAX_SIZE:
            await self._on_send_error(
                km, SendErrorKind.OFFLINE, f"message of {len(data)} bytes exceeds the cap"
            )
            return
        peer = self._peers.get(name)
        if peer is not None and not peer.dialling and peer.session is not None:
            session = peer.session
            if via is None or session.transport == via:
                self._touch(peer)
                try:
                    await session.send(data)
                    return
                except SessionClosed:
                    log.info("session closed under send; redialling", peer=name)
        if peer is None:
            peer = self._add(Peer(name=name))
        if len(peer.queue) >= limits.MAX_QUEUED_PER_PEER:
            await self._on_send_error(km, SendErrorKind.OFFLINE, "too many messages queued")
            return
        peer.queue.append(_Queued(km, data))
        self._touch(peer)
        if not peer.dialling:
            peer.dialling = True
            peer.dial_via = via
            self._sup.spawn(self._dial(peer, via), name=f"dial {name}")

    async def _dial(self, peer: Peer, via: str | None) -> None:
        started = time.monotonic()
        try:
            session = await self._dialer(peer.name, via)
        except DialError as e:
            log.info("dial failed", peer=peer.name, reason=str(e))
            await self._fail_queue(peer, str(e))
            return
        if self._peers.get(peer.name) is not peer or self._closing:
            session.abort("peer gone while dialling")
            await self._fail_queue(peer, "peer evicted while dialling")
            return
        current = peer.session
        if (
            current is not None
            and not current.closed
            and current.created >= started
            and self.our_name > peer.name
        ):
            # Simultaneous open: the peer's session arrived while we dialled, and the
            # smaller name's dial wins; it is theirs, so keep it and drop ours.
            session.abort("simultaneous open, the peer's session kept")
        else:
            self._install(peer, session)
        await self._flush(peer)

    async def _fail_queue(self, peer: Peer, reason: str) -> None:
        peer.dialling = False
        queued = list(peer.queue)
        peer.queue.clear()
        if self._peers.get(peer.name) is peer and peer.session is None:
            del self._peers[peer.name]
        for q in queued:
            await self._on_send_error(q.km, SendErrorKind.OFFLINE, reason)

    async def _flush(self, peer: Peer) -> None:
        """Write queued messages in order; sends arriving meanwhile queue behind them."""
        while peer.queue:
            q = peer.queue.popleft()
            session = peer.session
            if session is None:
                peer.queue.appendleft(q)
                await self._fail_queue(peer, "session lost")
                return
            try:
                await session.send(q.data)
            except SessionClosed as e:
                await self._on_send_error(q.km, SendErrorKind.OFFLINE, f"session lost: {e}")
        peer.dialling = False

    # --- sessions --------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        """Take an inbound session: it replaces any old one for that peer."""
        peer = self._peers.get(session.peer_name)
        if peer is None:
            peer = self._add(Peer(name=session.peer_name))
        elif peer.dialling and self.our_name < peer.name:
            # Simultaneous open: both sides dial at once. The smaller name's dial wins on both
            # ends (see _dial), so while we dial we refuse theirs.
            log.info("simultaneous open: refusing the peer's session", peer=peer.name)
            session.abort("simultaneous open, our dial wins")
            return
        self._install(peer, session)
        if peer.dialling and peer.queue:
            # An inbound session arrived while we dialled: use it now.
            self._sup.spawn(self._flush(peer), name=f"flush {peer.name}")

    def adopt(self, session: Session) -> None:
        """Take a session we opened outside a send (an indirect node's session to one of its
        routers): it becomes the peer's session, replacing any old one."""
        if self._closing:
            session.abort("node shutting down")
            return
        peer = self._peers.get(session.peer_name)
        if peer is None:
            peer = self._add(Peer(name=session.peer_name))
        self._install(peer, session)

    def upgrade(self, session: Session) -> None:
        """Move a peer to a better session we dialled (QUIC after a TCP/WS fallback)."""
        peer = self._peers.get(session.peer_name)
        current = peer.session if peer is not None else None
        if peer is None or self._closing:
            session.abort("peer gone before the upgrade")
        elif current is not None and not current.closed and current.transport == session.transport:
            session.abort(f"already on {session.transport}")
        else:
            self._install(peer, session)

    def adopt_retired(self, session: Session) -> None:
        """A session we opened but will not send on (it lost a dial race): read it for the
        grace period, since the peer may already have chosen it, then close it."""
        peer = self._peers.get(session.peer_name)
        if peer is None or self._closing:
            session.abort("not needed")
            return
        session.retire(self.retire_grace)
        peer.retired.add(session)
        self._sup.spawn(self._run(peer, session), name=f"retired {session.describe()}")

    def _make_current(self, peer: Peer, session: Session) -> None:
        old = peer.session
        peer.session = session
        self._touch(peer)
        peer.retired.discard(session)
        if old is not None and old is not session:
            # Retire, not abort: what the peer already sent on it is still read and delivered.
            old.retire(self.retire_grace)
            peer.retired.add(old)

    def _install(self, peer: Peer, session: Session) -> None:
        self._make_current(peer, session)
        log.info(
            "session up",
            peer=peer.name,
            transport=session.transport,
            remote=session.remote,
            initiator=session.initiator,
        )
        self._sup.spawn(self._run(peer, session), name=f"session {session.describe()}")

    async def _run(self, peer: Peer, session: Session) -> None:
        async def deliver(s: Session, data: bytes) -> None:
            await self._deliver(peer, s, data)

        try:
            await session.run(deliver, self.idle_timeout)
        except SessionError as e:
            log.warning("session closed: protocol error", peer=peer.name, reason=str(e))
        finally:
            session.abort("ended")
            log.info("session down", peer=peer.name, reason=session.close_reason)
            peer.retired.discard(session)
            if peer.session is session:
                peer.session = None
                fallback = max(
                    (s for s in peer.retired if not s.closed),
                    key=lambda s: TRANSPORT_RANK[s.transport],
                    default=None,
                )
                if fallback is not None:
                    # The new session died young: go back to the one it replaced.
                    fallback.unretire()
                    self._make_current(peer, fallback)
                elif not peer.dialling and self._peers.get(peer.name) is peer:
                    del self._peers[peer.name]

    async def _deliver(self, peer: Peer, session: Session, data: bytes) -> None:
        try:
            km = decode_kernel_message(data)
        except CodecError as e:
            session.abort(f"undecodable message: {e}")
            raise SessionError(f"undecodable message: {e}") from None
        if km.source.node != session.peer_name:
            session.abort("spoofed source")
            raise SessionError(f"spoofed source {km.source.node!r} from {session.peer_name}")
        if not km.source.process.is_hypermap_safe():
            session.abort("non-hypermap-safe process")
            raise SessionError(f"non-hypermap-safe source process {km.source.process}")
        self._touch(peer)
        current = peer.session
        if (
            session is not current
            and session.retired
            and not session.closed
            and (
                current is None
                or TRANSPORT_RANK[session.transport] > TRANSPORT_RANK[current.transport]
            )
        ):
            # Both ends of a dial race may disagree on which new session won; the peer sending
            # on the better transport settles it, the same way on both ends.
            log.info("peer uses a better session; switching", peer=peer.name, to=session.transport)
            session.unretire()
            self._make_current(peer, session)
        await self._on_message(km, session)

    # --- bounds ----------------------------------------------------------------------------

    def _touch(self, peer: Peer) -> None:
        peer.last_active = time.monotonic()
        if peer.name in self._peers:
            self._peers.move_to_end(peer.name)

    def _add(self, peer: Peer) -> Peer:
        self._peers[peer.name] = peer
        while len(self._peers) > self.max_peers:
            victim_name, victim = next(iter(self._peers.items()))
            if victim is peer:
                break
            log.info("evicting least recently active peer", peer=victim_name)
            del self._peers[victim_name]
            if victim.session is not None:
                victim.session.abort("evicted (max peers)")
            if victim.queue:
                queued = list(victim.queue)
                victim.queue.clear()
                for q in queued:
                    self._sup.spawn(
                        self._on_send_error(q.km, SendErrorKind.OFFLINE, "evicted (max peers)")
                    )
        return peer

    async def aclose(self) -> None:
        """Close every session; queued messages are reported Offline."""
        self._closing = True
        for peer in list(self._peers.values()):
            if peer.session is not None:
                peer.session.abort("node shutting down")
            queued = list(peer.queue)
            peer.queue.clear()
            for q in queued:
                await self._on_send_error(q.km, SendErrorKind.OFFLINE, "node shutting down")
        self._peers.clear()
