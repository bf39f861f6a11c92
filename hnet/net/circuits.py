"""A node's circuits (docs/quic.md §11): installed on every QUIC session of the node, it takes
their control and relayed streams and plays each role the node has:

- **router** (``max_circuits > 0``): :class:`~hnet.net.circuit_router.CircuitRouter`;
- **target** (an indirect node): offers from one of its routers are checked (§11.5) and
  accepted; the end-to-end session becomes the peer session with the source;
- **source** (any node): :meth:`Circuits.connect` asks a router of the target for a circuit
  on our QUIC connection to it (opened if needed) and runs Noise end to end (§11.8).

A node that routes no circuits refuses REQUESTs (NOT_ROUTING); one that is nobody's target
refuses OFFERs from nodes that are not its routers (WRONG_ROUTER, by the offer checks).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import limits
from hnet.core.circuit.control import ControlRole
from hnet.core.circuit.errors import CircuitCode, CircuitError, CircuitRefused, Origin
from hnet.core.circuit.frames import (
    SHARE_ADDRESS,
    AcceptFrame,
    AddressFrame,
    CloseFrame,
    ControlFrame,
    OfferFrame,
    RefuseFrame,
    RequestFrame,
    StreamKind,
)
from hnet.core.circuit.replay import ReplayGuard
from hnet.core.circuit.request import CircuitRequest, check_offer, new_request
from hnet.core.circuit.table import CircuitTable
from hnet.core.handshake import PeerHandshake
from hnet.core.punch import Punch, PunchRole
from hnet.core.quic.connection import CircuitData
from hnet.core.quic.errors import QuicAppError
from hnet.log import get_logger
from hnet.net.circuit_router import CircuitRouter
from hnet.net.peers import DialError
from hnet.net.punch import Puncher
from hnet.transport.quic.circuit import (
    CircuitEnd,
    CircuitSession,
    ControlHalf,
    RelayHeader,
    peek_first_frame,
)
from hnet.transport.quic.transport import QuicSession
from hnet.transport.session import Session, SessionClosed

__all__ = ["Circuits"]

log = get_logger("circuits")

#: circuit ids of ended circuits remembered per hop (their late relayed streams are dropped)
_ENDED_REMEMBERED = 256


@dataclass(eq=False)
class _Control:
    half: ControlHalf
    #: source: the router's answer (ACCEPT or REFUSE) is awaited here
    answer: asyncio.Future[ControlFrame] | None = None
    #: the circuit this stream controls, once we are an end of it
    end: CircuitEnd | None = None
    #: frames that came after the answer and before the end existed
    backlog: list[ControlFrame] = field(default_factory=list)
    #: the direct upgrade of this circuit's session, if both ends consented (§11.13)
    punch: Punch | None = None


@dataclass(eq=False)
class _Hop:
    session: QuicSession
    controls: dict[int, _Control] = field(default_factory=dict)
    headers: dict[int, RelayHeader] = field(default_factory=dict)
    #: circuits we are an end of on this hop, by circuit id, and their relayed streams
    ends: dict[int, CircuitEnd] = field(default_factory=dict)
    end_streams: dict[int, CircuitEnd] = field(default_factory=dict)
    ended: deque[int] = field(default_factory=lambda: deque(maxlen=_ENDED_REMEMBERED))
    #: peer control streams whose first frame is not complete yet (at most one frame each)
    openings: dict[int, bytes] = field(default_factory=dict)
    #: relayed streams of ended circuits still arriving (dropped)
    dropped: set[int] = field(default_factory=set)


class Circuits:
    def __init__(
        self,
        *,
        our_name: str,
        key: Ed25519PrivateKey,
        lookup: Callable[[str], bytes | None],
        max_circuits: int,
        our_routers: tuple[str, ...] = (),
        session_of: Callable[[str], Session | None],
        dial_hop: Callable[[str], Awaitable[Session]],
        adopt_hop: Callable[[Session], None],
        on_session: Callable[[Session], None],
        resolve: Callable[[str], Awaitable[bytes | None]] | None = None,
        handshake_timeout: float = limits.HANDSHAKE_TIMEOUT,
        max_ends: int = limits.MAX_PEERS,
        puncher: Puncher | None = None,
    ) -> None:
        self.our_name = our_name
        #: circuits we are an end of, at most (a target refuses further offers BUSY)
        self.max_ends = max_ends
        self._key = key
        self._lookup = lookup
        self.our_routers = frozenset(our_routers)
        self._session_of = session_of
        self._dial_hop = dial_hop
        self._adopt_hop = adopt_hop
        self._on_session = on_session
        #: finds a networking key the lookup does not know yet (None: such sources are refused)
        self._resolve = resolve
        self._lookups: set[asyncio.Task[None]] = set()
        self.handshake_timeout = handshake_timeout
        self.guard = ReplayGuard()
        #: direct upgrades of our circuit sessions (hole punching, §11.13); None: never
        self.puncher = puncher
        self.router: CircuitRouter | None = None
        self._max_circuits = max_circuits
        self._hops: dict[QuicSession, _Hop] = {}
        self._hop_locks: dict[str, asyncio.Lock] = {}
        #: routers whose connection died under our circuits, and when (monotonic)
        self._lost: dict[str, float] = {}
        self.stats = {"opened": 0, "accepted": 0, "refused": 0}

    def start(self) -> None:
        """Start the router role (needs the running loop)."""
        if self._max_circuits > 0 and self.router is None:
            self.router = CircuitRouter(
                CircuitTable(self.our_name, self._max_circuits),
                lookup=self._lookup,
                target_hop=self._target_hop,
            )

    def close(self) -> None:
        for task in list(self._lookups):
            task.cancel()
        if self.router is not None:
            self.router.close()
        if self.puncher is not None:
            self.puncher.close()

    # --- sessions ---------------------------------------------------------------------------

    def install(self, session: Session) -> None:
        """Take the circuit streams of ``session`` (a no-op for other transports)."""
        if not isinstance(session, QuicSession) or isinstance(session, CircuitSession):
            return
        hop = _Hop(session)
        self._hops[session] = hop
        session.set_circuits(self)
        session.on_transport_closed = self._hop_closed
        session.on_flush = lambda: self._wake(hop)
        session.on_credit = lambda: self._credit(hop)
        session.keep_open = lambda: self._carries(hop)
        session.watch_hop()

    def lost_recently(self, router: str) -> bool:
        """A connection of ours to ``router`` died under our circuits less than
        ROUTER_LOST_PENALTY ago (circuit dials try it last)."""
        at = self._lost.get(router)
        if at is None:
            return False
        if time.monotonic() - at < limits.ROUTER_LOST_PENALTY:
            return True
        del self._lost[router]
        return False

    def has_hop(self, router: str) -> bool:
        """We hold an open QUIC connection with ``router`` that can carry circuits."""
        s = self._session_of(router)
        return isinstance(s, QuicSession) and not s.closed and not s.retired and s in self._hops

    def _target_hop(self, name: str) -> QuicSession | None:
        s = self._session_of(name)
        if (
            isinstance(s, QuicSession)
            and not isinstance(s, CircuitSession)
            and not s.closed
            and not s.initiator
            and s.proxy_request
            and s in self._hops
        ):
            return s
        return None

    def _hop_closed(self, session: QuicSession) -> None:
        hop = self._hops.pop(session, None)
        if hop is None:
            return
        closed = session.core.closed
        reason = closed.reason if closed is not None else ""
        if hop.ends:
            # it closed under our circuits (unresponsive, or the router going away): circuit
            # dials try the target's other routers first for a while
            if len(self._lost) >= _ENDED_REMEMBERED:
                self._lost.clear()
            self._lost[session.peer_name] = time.monotonic()
        for ctl in hop.controls.values():
            if ctl.answer is not None and not ctl.answer.done():
                ctl.answer.set_exception(DialError(f"connection to {session.peer_name} lost"))
        for end in list(hop.ends.values()):
            end.hop_lost(reason)
        if self.router is not None:
            self.router.hop_closed(session)

    def _carries(self, hop: _Hop) -> bool:
        """Circuits of ours, or that we route, run over this hop; or it is our connection to
        one of our routers (an indirect node's lifeline: a router killed without a word must
        be noticed in seconds, not at QUIC's idle timeout, so that we redial it)."""
        if hop.ends:
            return True
        s = hop.session
        if s.initiator and not s.retired and s.peer_name in self.our_routers:
            return True
        return self.router is not None and self.router.carries(hop.session)

    def _wake(self, hop: _Hop) -> None:
        for end in hop.ends.values():
            end.bulk_wake()

    def _credit(self, hop: _Hop) -> None:
        for end in list(hop.ends.values()):
            if end.core.waiting_stream_credit:
                end.poke()

    # --- streams ------------------------------------------------------------------------------

    def circuit_data(self, session: QuicSession, ev: CircuitData) -> None:
        hop = self._hops.get(session)
        if hop is None:
            return
        try:
            if ev.kind is StreamKind.CONTROL:
                self._control(hop, ev)
            else:
                self._relay(hop, ev)
        except CircuitError as e:
            session.violate(QuicAppError.PROTOCOL_VIOLATION, f"circuit stream: {e.reason}")

    def _control(self, hop: _Hop, ev: CircuitData) -> None:
        session, sid = hop.session, ev.stream_id
        ctl = hop.controls.get(sid)
        if ctl is None and ev.ours:
            if self.router is not None:
                self.router.offer_data(session, sid, ev.data, ev.fin)
            return
        data = ev.data
        if ctl is None:
            # A stream the peer opened: a REQUEST (we are its router) or an OFFER (we are a
            # target); its first frame says which (an OFFER from a node that is not one of our
            # routers is then refused by the offer checks, WRONG_ROUTER).
            data = hop.openings.pop(sid, b"") + data
            first = peek_first_frame(session, sid, data)
            if first is None:
                if ev.fin:
                    raise CircuitError("control stream ended before its first frame")
                hop.openings[sid] = data
                return
            offer = isinstance(first, OfferFrame)
            role = ControlRole.ROUTER_TO_TARGET if offer else ControlRole.SOURCE
            ctl = hop.controls[sid] = _Control(ControlHalf.accept(session, sid, role))
        frames = ctl.half.feed(data, ev.fin)
        role = ctl.half.reader.role
        if role is ControlRole.SOURCE:
            if self.router is not None:
                self.router.request_stream(session, ctl.half, frames)
            elif frames and isinstance(frames[0], RequestFrame):
                ctl.half.send(
                    RefuseFrame(CircuitCode.NOT_ROUTING, Origin.ROUTER, "we route no circuits"),
                    fin=True,
                )
        elif role is ControlRole.ROUTER_TO_TARGET:
            self._offered(hop, ctl, frames)
        else:  # ROUTER_TO_SOURCE: the answer to our request
            self._answered(ctl, frames)
        if ctl.half.done:
            hop.controls.pop(sid, None)

    def _relay(self, hop: _Hop, ev: CircuitData) -> None:
        session, sid = hop.session, ev.stream_id
        end = hop.end_streams.get(sid)
        if end is not None:
            end.relay_data(sid, ev.data, ev.fin)
            return
        if sid in hop.dropped:
            if ev.fin:
                hop.dropped.discard(sid)
            return
        if self.router is not None and self.router.relay_data(session, sid, ev.data, ev.fin):
            return
        if ev.ours:
            return  # a stream of a circuit that ended here
        header = hop.headers.get(sid)
        if header is None:
            header = hop.headers[sid] = RelayHeader(session.core.hop_ciphers(sid)[1])
        got = header.feed(ev.data)
        if got is None:
            if ev.fin:
                raise CircuitError("relayed stream ended in its header")
            return
        del hop.headers[sid]
        cid, number, rest = got
        end = hop.ends.get(cid)
        if end is not None:
            end.relay_opened(sid, number, rest, ev.fin)
        elif self.router is not None and session.peer_name not in self.our_routers:
            self.router.relay_opened(session, sid, cid, number)
            self.router.relay_data(session, sid, rest, ev.fin)
        elif cid in hop.ended:
            session.core.send_circuit_data(sid, b"", True)  # drop it: FIN ours
            session.kick()
            if not ev.fin:
                hop.dropped.add(sid)
        else:
            raise CircuitError(f"relayed stream for circuit {cid}, which we are not an end of")

    # --- target -------------------------------------------------------------------------------

    def _offered(self, hop: _Hop, ctl: _Control, frames: list[ControlFrame]) -> None:
        for frame in frames:
            if isinstance(frame, AddressFrame):
                self._addressed(ctl, frame)
            elif isinstance(frame, OfferFrame):
                key = self._lookup(frame.request.source)
                if key is None and self._resolve is not None:
                    self._resolve_then_answer(hop, ctl, frame)
                else:
                    self._answer_offer(hop, ctl, frame, key)
            elif isinstance(frame, CloseFrame):
                if ctl.end is not None:
                    ctl.end.control_frames([frame])
                elif not ctl.half.ended:  # closed before we answered (§11.6): REFUSE
                    ctl.half.send(RefuseFrame(frame.code, Origin.PEER, frame.reason), fin=True)

    def _resolve_then_answer(self, hop: _Hop, ctl: _Control, frame: OfferFrame) -> None:
        """A source our PKI does not know yet (registered a moment ago): look it up, bounded
        by the handshake deadline (the router's offer deadline is as long), then answer."""
        if len(self._lookups) >= limits.MAX_PENDING_HANDSHAKES:
            ctl.half.send(RefuseFrame(CircuitCode.BUSY, Origin.PEER, "busy"), fin=True)
            return
        resolve = self._resolve
        assert resolve is not None

        async def lookup() -> None:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    key = await resolve(frame.request.source)
            except Exception as e:  # a failed lookup refuses this offer, nothing more
                log.info("source lookup failed", source=frame.request.source, error=repr(e))
                key = None
            if not ctl.half.ended and hop.session in self._hops:
                self._answer_offer(hop, ctl, frame, key)

        task = asyncio.get_running_loop().create_task(lookup(), name="circuit source lookup")
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    def _answer_offer(
        self, hop: _Hop, ctl: _Control, frame: OfferFrame, source_key: bytes | None
    ) -> None:
        session = hop.session
        req = frame.request
        try:
            if sum(len(h.ends) for h in self._hops.values()) >= self.max_ends:
                raise CircuitRefused(CircuitCode.BUSY, f"{self.max_ends} circuits here")
            check_offer(
                req,
                our_name=self.our_name,
                router=session.peer_name,
                our_routers=self.our_routers,
                source_key=source_key,
                now=time.time(),
                guard=self.guard,
            )
        except CircuitRefused as e:
            self.stats["refused"] += 1
            log.info("circuit offer refused", router=session.peer_name, reason=str(e))
            ctl.half.send(RefuseFrame(e.code, Origin.PEER, e.reason), fin=True)
            return
        flags = 0
        if frame.flags & SHARE_ADDRESS and self.puncher and self.puncher.share(req.source):
            flags = SHARE_ADDRESS
            ctl.punch = self.puncher.new(PunchRole.TARGET, req.source)
        ctl.half.send(AcceptFrame(frame.circuit_id, flags))
        self.stats["accepted"] += 1
        ctl.end = self._new_end(hop, ctl.half, frame.circuit_id, False, req.source, ctl.punch)
        log.info(
            "circuit accepted",
            circuit=frame.circuit_id,
            source=req.source,
            router=session.peer_name,
        )

    def _new_end(
        self,
        hop: _Hop,
        half: ControlHalf,
        cid: int,
        is_source: bool,
        peer: str,
        punch: Punch | None = None,
    ) -> CircuitEnd:
        hs = PeerHandshake(
            initiator=is_source,
            our_name=self.our_name,
            signing_key=self._key,
            lookup=self._lookup,
            expected_peer=peer if is_source else None,
        )

        def gone(end: CircuitEnd) -> None:
            if punch is not None and self.puncher is not None:
                self.puncher.circuit_gone(punch)
            if hop.ends.get(cid) is end:
                del hop.ends[cid]
                hop.ended.append(cid)
            for s in [s for s, e in hop.end_streams.items() if e is end]:
                del hop.end_streams[s]

        end = CircuitEnd(
            hop=hop.session,
            control=half,
            circuit_id=cid,
            is_source=is_source,
            peer=peer,
            router=hop.session.peer_name,
            handshake=hs,
            registry=hop.end_streams,
            on_session=(lambda s: None) if is_source else self._on_session,
            on_gone=gone,
        )
        hop.ends[cid] = end
        return end

    # --- source -------------------------------------------------------------------------------

    def _addressed(self, ctl: _Control, frame: AddressFrame) -> None:
        """The router's ADDRESS (§11.11): the other end's observed address, for the direct
        upgrade (§11.13). Ignored when we did not ask for it."""
        if ctl.punch is not None and self.puncher is not None:
            self.puncher.address(ctl.punch, frame.ip, frame.port)

    def _answered(self, ctl: _Control, frames: list[ControlFrame]) -> None:
        for frame in frames:
            if isinstance(frame, AddressFrame):
                self._addressed(ctl, frame)
            elif ctl.end is not None:
                ctl.end.control_frames([frame])
            elif ctl.answer is not None and not ctl.answer.done():
                ctl.answer.set_result(frame)  # ACCEPT or REFUSE (the reader allows no other)
            else:
                ctl.backlog.append(frame)  # after ACCEPT, before connect() built the end

    async def connect(self, target: str, router: str) -> Session:
        """A session with ``target`` over a circuit through ``router`` (DialError if not).
        The caller bounds the time."""
        hop = await self._hop_to(router)
        if not hop.session.core.can_open_circuit_stream():
            raise DialError(f"via {router} quic: no stream credit for a circuit")
        req = new_request(self.our_name, self._key, target=target, router=router, now=time.time())
        # (a hop on a socket of its own: the router observes a port our punch cannot use)
        share = (
            self.puncher is not None and not hop.session.own_socket and self.puncher.share(target)
        )
        ctl = self._request(hop, req, SHARE_ADDRESS if share else 0)
        if share and self.puncher is not None:
            ctl.punch = self.puncher.new(PunchRole.SOURCE, target)
        half = ctl.half
        answer = await self._answer(ctl)
        if isinstance(answer, RefuseFrame):
            half.finish()
            raise DialError(
                f"via {router} quic: circuit refused ({answer.code.name}: {answer.reason})"
            )
        if not isinstance(answer, AcceptFrame):
            half.finish()
            raise DialError(f"via {router} quic: circuit closed before it opened")
        ctl.end = end = self._new_end(hop, half, answer.circuit_id, True, target, ctl.punch)
        backlog, ctl.backlog = ctl.backlog, []
        end.control_frames(backlog)
        try:
            session = await end.wait_session(self.handshake_timeout)
        except (SessionClosed, TimeoutError) as e:
            end.drv.close(QuicAppError.HANDSHAKE_TIMEOUT, "handshake abandoned")
            raise DialError(f"via {router} quic: end-to-end handshake failed ({e})") from None
        self.stats["opened"] += 1
        if ctl.punch is not None and self.puncher is not None:
            self.puncher.session_up(ctl.punch)  # the direct dial starts after we return
        return session

    def _request(self, hop: _Hop, request: CircuitRequest, flags: int = 0) -> _Control:
        half = ControlHalf.open(
            hop.session, RequestFrame(flags, request), ControlRole.ROUTER_TO_SOURCE
        )
        ctl = hop.controls[half.sid] = _Control(half)
        ctl.answer = asyncio.get_running_loop().create_future()
        return ctl

    async def _answer(self, ctl: _Control) -> ControlFrame:
        assert ctl.answer is not None
        try:
            return await ctl.answer
        except BaseException:
            ctl.half.send(CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "gave up"), fin=True)
            raise

    async def ask(self, session: Session, request: CircuitRequest, flags: int = 0) -> ControlFrame:
        """Send ``request`` as it is (for tests and tools: any bytes the codec encodes) on
        ``session``, our QUIC connection to a router, and return the router's answer (ACCEPT
        or REFUSE); an accepted circuit is then closed at once. The caller bounds the time."""
        hop = self._hops.get(session)  # type: ignore[call-overload]
        if hop is None:
            raise ValueError("not one of our QUIC sessions")
        ctl = self._request(hop, request, flags)
        answer = await self._answer(ctl)
        if isinstance(answer, AcceptFrame):
            ctl.half.send(CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "only asking"), fin=True)
        else:
            ctl.half.finish()
        return answer

    async def _hop_to(self, router: str) -> _Hop:
        """Our QUIC connection to ``router``, dialled if we hold none (one dial at a time per
        router: a second would replace the first in the peer table and retire it)."""
        lock = self._hop_locks.setdefault(router, asyncio.Lock())
        try:
            async with lock:
                return await self._hop_locked(router)
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._hop_locks.pop(router, None)

    async def _hop_locked(self, router: str) -> _Hop:
        s = self._session_of(router)
        if isinstance(s, QuicSession) and not s.closed and not s.retired and s in self._hops:
            return self._hops[s]
        try:
            s = await self._dial_hop(router)
        except DialError as e:
            raise DialError(f"via {router} quic: {e}") from None
        if not isinstance(s, QuicSession) or s not in self._hops:
            s.abort("not a QUIC session")
            raise DialError(f"via {router} quic: no QUIC connection")
        self._adopt_hop(s)
        return self._hops[s]

    def describe(self) -> str:
        ends = sum(len(h.ends) for h in self._hops.values())
        text = f"circuit ends: {ends}"
        if self.router is not None:
            text = f"{self.router.describe()}; {text}"
        return text
