"""Peers: one current session per peer, an explicit state machine, the waiting side of sending.

Each peer is in one :class:`PeerState`; every change of state goes through
:meth:`Peer.fire` and the :data:`TRANSITIONS` table, so an event that makes no sense in a
state is a bug that shows (h11's ``_state.py`` style)::

    IDLE ──SEND──▶ DIALLING ──DIAL_OK / SESSION_UP──▶ CONNECTED ◀─┐
      ▲               │                                  │  SEND, SESSION_UP, FALLBACK
      └──DIAL_FAILED──┘◀──────SESSION_LOST (dial running)┘──┘
      ▲                                                  │
      └────────────────────SESSION_LOST──────────────────┘
    CONNECTED ──DIAL (a second dial: forced transport)──▶ CONNECTED_DIALLING
    any ──EVICT / SHUTDOWN──▶ CLOSED

Messages (docs/architecture.md, "The send path"):

- A message for a CONNECTED peer goes straight into its session's bounded queue, which the
  session's writer drains; one for a peer without a session goes into the peer's dial queue
  (same bound) and, from IDLE, starts a dial. Both queues also count against the node-wide
  :class:`~hnet.core.sendqueue.ByteBudget`.
- A sender that can wait (a local process) waits for room until its message's deadline, then
  gets Timeout; one that cannot (a reply made on a receive path) gets Offline at once when
  even the reply headroom is used up.
- When a dial succeeds the dial queue moves, unwritten and in order, into the new session's
  queue: there is no flusher to race, and an item leaves a queue exactly once, so no message
  is written twice. When a dial fails, or raises anything at all, every queued message is
  reported Offline and the peer goes back to IDLE, from which the next message redials.
- A replaced session is retired (read, not written, for a grace period); its unwritten
  messages move to the new session. A session that dies while retired ones are still open
  falls back to the best of them. A session that dies with no fallback reports its unwritten
  messages Offline.

Simultaneous open (both ends dial each other at once) is settled the same way on both ends:
the session initiated by the smaller name wins. Nothing live and authenticated is cut for a
dial that has not finished: an inbound session is used at once even while we dial, and the
loser of the tie-break is retired (still read), not closed.

Inbound bytes are decoded here once for every transport: a message that does not decode,
whose source node is not the authenticated peer ("spoofed source"), or whose source process
is not hypermap-safe closes the session (the peer's fault). An exception in our own handler is
logged as a local error and the peer keeps its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hnet import limits
from hnet.core.sendqueue import ByteBudget, Outgoing, SendQueue
from hnet.core.wire import (
    CodecError,
    KernelMessage,
    SendErrorKind,
    decode_kernel_message,
)
from hnet.log import get_logger
from hnet.supervisor import Supervisor
from hnet.transport.session import Session, SessionError

log = get_logger("peers")

#: A message from a peer, decoded and checked; runs on the receive path: must not block.
OnMessage = Callable[[KernelMessage, Session], None]
#: (peer name, forced transport or None) -> an established, not yet started session.
Dialer = Callable[[str, "str | None"], Awaitable[Session]]

#: Preference between transports when two live sessions with a peer disagree.
TRANSPORT_RANK = {"quic": 3, "tcp": 2, "ws": 1}


def session_rank(s: Session) -> tuple[int, int]:
    """Preference between live sessions with a peer: the better transport first, then a
    direct connection over one through a router (a hole-punched QUIC session beats the
    circuit it upgrades, docs/quic.md §11.13)."""
    return TRANSPORT_RANK.get(s.transport, 0), 0 if s.router else 1


class DialError(Exception):
    """No transport reached the peer; the message says what was tried."""

    #: a routed dial: every router's host refused the connection (it is down)
    all_refused: bool = False


def failure_reason(e: BaseException) -> str:
    """One short phrase for why a connection attempt failed."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__


# --- the state machine ------------------------------------------------------------------------


class PeerState(enum.Enum):
    #: no session and no dial; the next message dials
    IDLE = "idle"
    #: a dial is running; messages wait in the dial queue
    DIALLING = "dialling"
    #: a current session takes messages
    CONNECTED = "connected"
    #: a current session takes messages while a second dial runs (forced transport)
    CONNECTED_DIALLING = "connected+dialling"
    #: evicted or shutting down: terminal
    CLOSED = "closed"


class PeerEvent(enum.Enum):
    #: a message needs a dial (no usable session)
    DIAL = "dial"
    DIAL_OK = "dial_ok"
    DIAL_FAILED = "dial_failed"
    #: a session (inbound, adopted, upgraded, or a fallback) became current
    SESSION_UP = "session_up"
    #: the current session closed and none could replace it
    SESSION_LOST = "session_lost"
    EVICT = "evict"
    SHUTDOWN = "shutdown"


S, E = PeerState, PeerEvent
TRANSITIONS: dict[tuple[PeerState, PeerEvent], PeerState] = {
    (S.IDLE, E.DIAL): S.DIALLING,
    (S.IDLE, E.SESSION_UP): S.CONNECTED,
    (S.DIALLING, E.DIAL_OK): S.CONNECTED,
    (S.DIALLING, E.DIAL_FAILED): S.IDLE,
    (S.DIALLING, E.SESSION_UP): S.CONNECTED_DIALLING,
    (S.CONNECTED, E.DIAL): S.CONNECTED_DIALLING,
    (S.CONNECTED, E.SESSION_UP): S.CONNECTED,
    (S.CONNECTED, E.SESSION_LOST): S.IDLE,
    (S.CONNECTED_DIALLING, E.DIAL_OK): S.CONNECTED,
    (S.CONNECTED_DIALLING, E.DIAL_FAILED): S.CONNECTED,
    (S.CONNECTED_DIALLING, E.SESSION_UP): S.CONNECTED_DIALLING,
    (S.CONNECTED_DIALLING, E.SESSION_LOST): S.DIALLING,
}
for _s in PeerState:
    if _s is not S.CLOSED:
        TRANSITIONS[(_s, E.EVICT)] = S.CLOSED
        TRANSITIONS[(_s, E.SHUTDOWN)] = S.CLOSED
del _s


class PeerStateError(Exception):
    """An event that is not allowed in the peer's state: a bug of ours."""


@dataclass(eq=False)
class Peer:
    name: str
    dial_queue: SendQueue
    state: PeerState = PeerState.IDLE
    session: Session | None = None
    #: the running dial, and the transport it was forced to (None: any)
    dial: asyncio.Task[None] | None = None
    dial_via: str | None = None
    dial_started: float = 0.0
    #: replaced sessions still being read for their grace period
    retired: set[Session] = field(default_factory=set)
    last_active: float = field(default_factory=time.monotonic)

    def fire(self, event: PeerEvent) -> PeerState:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise PeerStateError(f"peer {self.name}: {event.value} in state {self.state.value}")
        self.state = new
        return new

    @property
    def dialling(self) -> bool:
        return self.state in (PeerState.DIALLING, PeerState.CONNECTED_DIALLING)

    def usable(self, via: str | None) -> Session | None:
        s = self.session
        if s is None or s.closed or s.retired:
            return None
        if via is not None and s.transport != via:
            return None
        return s


@dataclass(frozen=True)
class PeerInfo:
    name: str
    state: str
    transport: str | None
    remote: str | None
    initiator: bool | None
    last_active_ago: float
    messages_in: int
    messages_out: int
    #: messages and bytes waiting (dial queue plus the session's queue)
    queued: int
    queued_bytes: int
    #: the peer opened its session with ``proxy_request``: we route for it
    routing_for: bool = False
    #: the session runs through this router (a routed connection), else None
    router: str | None = None
    #: "routed" (through ``router``) or "direct"; None without a session
    path: str | None = None


# --- the table --------------------------------------------------------------------------------


class PeerTable:
    """Every peer of a node: sessions, dials, queues, bounds."""

    def __init__(
        self,
        *,
        our_name: str,
        dialer: Dialer,
        on_message: OnMessage,
        supervisor: Supervisor,
        budget: ByteBudget,
        max_peers: int = limits.MAX_PEERS,
        idle_timeout: float = limits.IDLE_TIMEOUT,
        retire_grace: float = limits.SESSION_RETIRE_GRACE,
        queue_bytes: int = limits.SEND_QUEUE_BYTES,
    ) -> None:
        self.our_name = our_name
        self._dialer = dialer
        self._on_message = on_message
        self._sup = supervisor
        self.budget = budget
        self.max_peers = max_peers
        self.idle_timeout = idle_timeout
        self.retire_grace = retire_grace
        self.queue_bytes = queue_bytes
        self._peers: OrderedDict[str, Peer] = OrderedDict()
        #: the peer last moved to the end of ``_peers`` (touching it again needs no move)
        self._mru: Peer | None = None
        self._closing = False
        self._room = asyncio.Event()
        self._waiting = 0
        self._safe: dict[str, bool] = {}
        budget.on_release = self._released
        self.stats = {
            "protocol_errors": 0,
            "local_errors": 0,
            "dial_failures": 0,
            "simultaneous_opens": 0,
        }

    # --- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, name: str) -> Peer | None:
        return self._peers.get(name)

    def session(self, name: str) -> Session | None:
        peer = self._peers.get(name)
        return peer.session if peer else None

    def routing_for(self, name: str) -> Session | None:
        """``name``'s session if the peer opened it asking us to route for it."""
        s = self.session(name)
        if s is None or s.closed or s.initiator or not s.proxy_request:
            return None
        return s

    def infos(self) -> list[PeerInfo]:
        now = time.monotonic()
        out = []
        for p in self._peers.values():
            s = p.session
            sq = s.queue if s is not None and s.queue is not None else None
            out.append(
                PeerInfo(
                    name=p.name,
                    state=p.state.value,
                    transport=s.transport if s else None,
                    remote=s.remote if s else None,
                    initiator=s.initiator if s else None,
                    last_active_ago=now - p.last_active,
                    messages_in=s.messages_in if s else 0,
                    messages_out=s.messages_out if s else 0,
                    queued=len(p.dial_queue) + (len(sq) if sq else 0),
                    queued_bytes=p.dial_queue.bytes + (sq.bytes if sq else 0),
                    routing_for=bool(s and not s.initiator and s.proxy_request),
                    router=s.router if s else None,
                    path=(("routed" if s.router else "direct") if s else None),
                )
            )
        return out

    # --- sending ---------------------------------------------------------------------------

    async def send(self, name: str, item: Outgoing, *, via: str | None = None) -> None:
        """Queue ``item`` for ``name``, waiting for room until its deadline. Failures (now
        or later) reach the sender through the item's fail hook."""
        if self.offer(name, item, via=via):
            return
        if item.finished:
            return
        self._waiting += 1
        try:
            while True:
                remaining = item.deadline - time.monotonic()
                if remaining <= 0:
                    item.fail(SendErrorKind.TIMEOUT, "no room to queue it before its deadline")
                    return
                room = self._room
                try:
                    async with asyncio.timeout(remaining):
                        await room.wait()
                except TimeoutError:
                    continue
                if self.offer(name, item, via=via) or item.finished:
                    return
        finally:
            self._waiting -= 1

    def send_nowait(self, name: str, item: Outgoing, *, via: str | None = None) -> None:
        """Queue ``item`` now (up to the reply headroom over the bounds) or fail it Offline:
        for senders on a receive path, which must never wait."""
        if not self.offer(name, item, via=via, headroom=limits.REPLY_HEADROOM) and not (
            item.finished
        ):
            item.fail(SendErrorKind.OFFLINE, f"send queue to {name} full")

    def offer(
        self, name: str, item: Outgoing, *, via: str | None = None, headroom: int = 0
    ) -> bool:
        """Try to queue ``item`` without waiting. True: queued (or already failed: closing,
        too big); False: no room now."""
        if self._closing:
            item.fail(SendErrorKind.OFFLINE, "node shutting down")
            return True
        if item.size > limits.MESSAGE_MAX_SIZE:
            item.fail(
                SendErrorKind.OFFLINE,
                f"message of {item.size} bytes exceeds the cap of {limits.MESSAGE_MAX_SIZE}",
            )
            return True
        peer = self._peers.get(name)
        if peer is None:
            peer = self._add(name)
        self._touch(peer)
        session = peer.usable(via)
        if session is not None and session.queue is not None:
            return session.submit(item, headroom=headroom)
        if not peer.dial_queue.push(item, headroom=headroom):
            self._forget_if_idle(peer)
            return False
        if not peer.dialling:
            self._start_dial(peer, via)
        return True

    def _released(self) -> None:
        if self._waiting:
            room, self._room = self._room, asyncio.Event()
            room.set()

    # --- dialling --------------------------------------------------------------------------

    def _start_dial(self, peer: Peer, via: str | None) -> None:
        peer.fire(PeerEvent.DIAL)
        peer.dial_via = via
        peer.dial_started = time.monotonic()
        peer.dial = self._sup.spawn(self._dial(peer, via), name=f"dial {peer.name}")

    async def _dial(self, peer: Peer, via: str | None) -> None:
        started = peer.dial_started
        try:
            session = await self._dialer(peer.name, via)
        except asyncio.CancelledError:
            raise
        except DialError as e:
            self._dial_failed(peer, str(e))
            return
        except Exception as e:  # a bug of ours: the peer must not stay "dialling"
            self.stats["local_errors"] += 1
            log.exception("dial raised (local error)", peer=peer.name)
            self._dial_failed(peer, f"local error while dialling: {e!r}")
            return
        self._dial_ok(peer, session, started)

    def _dial_failed(self, peer: Peer, reason: str) -> None:
        self.stats["dial_failures"] += 1
        log.info("dial failed", peer=peer.name, reason=reason)
        peer.dial = None
        if peer.state is PeerState.CLOSED:
            return
        peer.fire(PeerEvent.DIAL_FAILED)
        # (From CONNECTED_DIALLING, a forced-transport dial failed: its messages fail and the
        # current session stays.)
        for item in peer.dial_queue.take_all():
            item.fail(SendErrorKind.OFFLINE, reason)
        self._forget_if_idle(peer)

    def _dial_ok(self, peer: Peer, session: Session, started: float) -> None:
        peer.dial = None
        if peer.state is PeerState.CLOSED or self._peers.get(peer.name) is not peer:
            session.abort("peer gone while dialling")
            return
        if session.closed:
            self._dial_failed(peer, f"closed right after its handshake: {session.close_reason}")
            return
        current = peer.usable(None)
        keep_current = (
            current is not None
            and current.created >= started
            and not current.initiator
            and self.our_name > peer.name
        )
        peer.fire(PeerEvent.DIAL_OK)
        if keep_current:
            # Simultaneous open: the peer's dial (the smaller name's) wins on both ends.
            self.stats["simultaneous_opens"] += 1
            log.info("simultaneous open: keeping the peer's session", peer=peer.name)
            self._retire(peer, session)
            assert current is not None and current.queue is not None
            current.queue.adopt(peer.dial_queue.take_all())
            return
        self._install(peer, session)

    # --- HNS changes -----------------------------------------------------------------------

    def record_changed(self, name: str, *, key_changed: bool, reason: str) -> None:
        """``name``'s HNS record changed while we may hold sessions to it.

        A new (or vanished) networking key: every session authenticated under the old one
        is aborted (its unwritten messages fail Offline); the next message dials afresh. A
        new address, ports or routers: the current session is retired (read for its grace
        period, so nothing in flight is cut) and its unwritten messages go to a dial on the
        new record. Our own name is not a peer."""
        peer = self._peers.get(name)
        if name == self.our_name or peer is None or peer.state is PeerState.CLOSED:
            return
        if key_changed:
            # Retired sessions first: the current one's close must not fall back to them.
            for s in [*peer.retired, peer.session]:
                if s is not None and not s.closed:
                    log.info("networking key changed in HNS; closing session", peer=name)
                    s.abort(reason)
            return
        current = peer.usable(None)
        if current is None:
            return
        log.info("routing changed in HNS; redialling", peer=name, was=current.transport)
        self._retire(peer, current)
        if len(peer.dial_queue) and not peer.dialling:
            self._start_dial(peer, None)

    # --- sessions --------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        """Take an inbound session: it replaces the current one, except in a simultaneous
        open that our own, younger dial wins (then it is retired: read, not cut)."""
        if self._closing:
            session.abort("node shutting down")
            return
        peer = self._peers.get(session.peer_name) or self._add(session.peer_name)
        current = peer.usable(None)
        if (
            current is not None
            and current.initiator
            and self.our_name < peer.name
            and time.monotonic() - current.created < limits.SIMULTANEOUS_OPEN_WINDOW
        ):
            self.stats["simultaneous_opens"] += 1
            log.info("simultaneous open: our session wins; theirs retired", peer=peer.name)
            self._retire(peer, session)
            return
        self._install(peer, session, event=PeerEvent.SESSION_UP)

    def adopt(self, session: Session) -> None:
        """Take a session we opened outside a send (an indirect node's session to one of its
        routers): it becomes the peer's session, replacing any old one."""
        if self._closing:
            session.abort("node shutting down")
            return
        peer = self._peers.get(session.peer_name) or self._add(session.peer_name)
        self._install(peer, session, event=PeerEvent.SESSION_UP)

    def upgrade(self, session: Session) -> None:
        """Move a peer to a better session we dialled (QUIC after a TCP/WS fallback, a direct
        QUIC session after a routed one): the current session is retired (read for its grace
        period, its unwritten messages moved to the new one)."""
        peer = self._peers.get(session.peer_name)
        if peer is None or self._closing or peer.state is PeerState.CLOSED:
            session.abort("peer gone before the upgrade")
            return
        current = peer.usable(None)
        if (
            current is not None
            and current.transport == session.transport
            and session_rank(current) >= session_rank(session)
        ):
            self._retire(peer, session)
        else:
            self._install(peer, session, event=PeerEvent.SESSION_UP)

    def adopt_retired(self, session: Session) -> None:
        """A session we opened but will not send on (it lost a dial race): read it for the
        grace period, since the peer may already have chosen it, then close it."""
        peer = self._peers.get(session.peer_name)
        if peer is None or self._closing or peer.state is PeerState.CLOSED:
            session.abort("not needed")
            return
        self._retire(peer, session)

    def _new_queue(self, session: Session) -> SendQueue:
        return session.new_queue(self.queue_bytes, self.budget)

    def _start(self, peer: Peer, session: Session) -> None:
        if session.queue is not None:
            return

        def deliver(s: Session, data: bytes) -> None:
            self._deliver(peer, s, data)

        def on_closed(s: Session, left: list[Outgoing]) -> None:
            self._session_closed(peer, s, left)

        session.start(
            queue=self._new_queue(session),
            deliver=deliver,
            on_closed=on_closed,
            idle_timeout=self.idle_timeout,
        )

    def _retire(self, peer: Peer, session: Session) -> None:
        self._start(peer, session)
        if session.closed:
            return
        if session.queue is not None:
            left = session.queue.take_all()
            target = peer.usable(None)
            if target is not None and target is not session and target.queue is not None:
                target.queue.adopt(left)
            else:
                peer.dial_queue.adopt(left)
        session.retire(self.retire_grace)
        peer.retired.add(session)

    def _install(self, peer: Peer, session: Session, event: PeerEvent | None = None) -> None:
        """Make ``session`` current (``event`` fired first, if given)."""
        self._start(peer, session)
        if session.closed:
            # Died between its handshake and now: its on_closed has run, and the old
            # session, if any, stays current.
            return
        if event is not None:
            peer.fire(event)
        old = peer.session
        if session.retired:
            session.unretire()
        peer.session = session
        peer.retired.discard(session)
        self._touch(peer)
        queue = session.queue
        assert queue is not None
        if old is not None and old is not session and not old.closed:
            self._retire(peer, old)  # its unwritten messages move to the new session
        if peer.dial_via is None or peer.dial_via == session.transport or not peer.dialling:
            queue.adopt(peer.dial_queue.take_all())
        log.info(
            "session up",
            peer=peer.name,
            transport=session.transport,
            remote=session.remote,
            initiator=session.initiator,
            router=session.router,
        )

    def _session_closed(self, peer: Peer, session: Session, left: list[Outgoing]) -> None:
        log.info("session down", peer=peer.name, reason=session.close_reason)
        peer.retired.discard(session)
        if peer.session is not session:
            # A retired session: what it still held goes to the current one, or fails.
            self._rehome(peer, left, session.close_reason)
            self._forget_if_idle(peer)
            return
        peer.session = None
        if peer.state is PeerState.CLOSED:
            for item in left:
                item.fail(SendErrorKind.OFFLINE, session.close_reason or "closed")
            return
        fallback = max(
            (s for s in peer.retired if not s.closed),
            key=session_rank,
            default=None,
        )
        if fallback is not None:
            # The new session died young: go back to the one it replaced.
            self._install(peer, fallback, event=PeerEvent.SESSION_UP)
            self._rehome(peer, left, session.close_reason)
            return
        peer.fire(PeerEvent.SESSION_LOST)
        self._rehome(peer, left, session.close_reason)
        self._forget_if_idle(peer)

    def _rehome(self, peer: Peer, items: list[Outgoing], reason: str) -> None:
        """Unwritten messages of a closed session: to the current session, to the dial queue
        if a dial runs, else Offline."""
        if not items:
            return
        target = peer.usable(None)
        if target is not None and target.queue is not None:
            target.queue.adopt(items)
        elif peer.dialling:
            peer.dial_queue.adopt(items)
        else:
            for item in items:
                item.fail(SendErrorKind.OFFLINE, f"session lost: {reason or 'closed'}")

    def _deliver(self, peer: Peer, session: Session, data: bytes) -> None:
        try:
            km = decode_kernel_message(data)
        except CodecError as e:
            self.stats["protocol_errors"] += 1
            raise SessionError(f"undecodable message: {e}") from None
        if km.source.node != session.peer_name:
            self.stats["protocol_errors"] += 1
            raise SessionError(f"spoofed source {km.source.node!r} from {session.peer_name}")
        # Memoised by the source's address string (its hash is cached, where a ProcessId's
        # is computed in Python on every lookup); the answer depends only on its process.
        source = km.source.text
        safe = self._safe.get(source)
        if safe is None:
            safe = km.source.process.is_hypermap_safe()
            if len(self._safe) < limits.MEMO_MAX:  # the same few processes talk
                self._safe[source] = safe
        if not safe:
            self.stats["protocol_errors"] += 1
            raise SessionError(f"non-hypermap-safe source process {km.source.process}")
        self._touch(peer)
        current = peer.session
        if (
            session is not current
            and session.retired
            and not session.closed
            and peer.state is not PeerState.CLOSED
            and (
                current is None
                or current.closed
                or TRANSPORT_RANK.get(session.transport, 0)
                > TRANSPORT_RANK.get(current.transport, 0)
            )
        ):
            # Both ends of a dial race may disagree on which new session won; the peer sending
            # on the better transport settles it, the same way on both ends.
            log.info("peer uses a better session; switching", peer=peer.name, to=session.transport)
            self._install(peer, session, event=PeerEvent.SESSION_UP)
        try:
            self._on_message(km, session)
        except Exception:  # a bug of ours: log it, do not blame the peer
            self.stats["local_errors"] += 1
            log.exception("message handler failed (local error)", peer=peer.name)

    # --- bounds ----------------------------------------------------------------------------

    def _touch(self, peer: Peer) -> None:
        peer.last_active = time.monotonic()
        if peer is not self._mru and self._peers.get(peer.name) is peer:
            self._peers.move_to_end(peer.name)
            self._mru = peer  # the table's last entry, until another peer is touched or added

    def _add(self, name: str) -> Peer:
        peer = Peer(name=name, dial_queue=SendQueue(self.queue_bytes, self.budget))
        self._peers[name] = peer
        self._mru = peer
        while len(self._peers) > self.max_peers:
            victim_name, victim = next(iter(self._peers.items()))
            if victim is peer:
                break
            log.info("evicting least recently active peer", peer=victim_name)
            self._close_peer(victim, PeerEvent.EVICT, "evicted (max peers)")
        return peer

    def _forget_if_idle(self, peer: Peer) -> None:
        if (
            peer.state is PeerState.IDLE
            and not peer.retired
            and not len(peer.dial_queue)
            and self._peers.get(peer.name) is peer
        ):
            del self._peers[peer.name]
            if self._mru is peer:
                self._mru = None

    def _close_peer(self, peer: Peer, event: PeerEvent, reason: str) -> None:
        if peer.state is PeerState.CLOSED:
            return
        peer.fire(event)
        if self._peers.get(peer.name) is peer:
            del self._peers[peer.name]
        if self._mru is peer:
            self._mru = None
        if peer.dial is not None:
            peer.dial.cancel()
            peer.dial = None
        for item in peer.dial_queue.take_all():
            item.fail(SendErrorKind.OFFLINE, reason)
        for s in [peer.session, *peer.retired]:
            if s is not None:
                s.abort(reason)  # its on_closed fails what it still held (peer is CLOSED)
        peer.retired.clear()

    async def aclose(self) -> None:
        """Close every session; queued messages are reported Offline."""
        self._closing = True
        peers = list(self._peers.values())
        for peer in peers:
            self._close_peer(peer, PeerEvent.SHUTDOWN, "node shutting down")
        sessions = [s for p in peers for s in [p.session] if s is not None]
        if sessions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await asyncio.gather(*(s.wait_closed() for s in sessions))
        self._released()
