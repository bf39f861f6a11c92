"""Circuits at an end, over the QUIC adapter (docs/quic.md §11).

* :class:`ControlHalf` — our side of one control stream on a hop connection: the sealed
  frames we write on our half, the :class:`~hnet.core.circuit.control.ControlReader` of the
  peer's half.
* :class:`VirtualQuic` — a QUIC connection made of relayed streams: it gives the unchanged
  :class:`~hnet.core.quic.connection.NoiseQuicConnection` relayed stream *numbers* in place of
  QUIC stream ids (§11.8), so the end-to-end session runs §3-§6 exactly: stream 0 carries
  Noise XX, each message its own stream keyed ``K(dir, number)``, acknowledgement FINs and
  credit, with CIRCUIT_MAX_STREAMS streams per sender.
* :class:`CircuitEnd` — one circuit at the source or the target: its control stream, its
  relayed streams on the hop, and the end-to-end connection and :class:`CircuitSession`.
* :func:`refuse_stream` — what a QUIC session that takes no circuits does with their streams.

The router's side is :mod:`hnet.net.circuit_router`; the node's wiring :mod:`hnet.net.circuits`.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from hnet import limits
from hnet.core.circuit.control import ControlReader, ControlRole
from hnet.core.circuit.errors import CircuitCode, CircuitError, Origin
from hnet.core.circuit.frames import (
    RELAY_HEADER_LEN,
    CloseFrame,
    ControlFrame,
    OfferFrame,
    RefuseFrame,
    RequestFrame,
    StreamKind,
    decode_control,
    seal_control,
    seal_relay_header,
)
from hnet.core.circuit.numbers import StreamNumbers
from hnet.core.handshake import PeerHandshake
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.core.quic import backend as qb
from hnet.core.quic.connection import CircuitData, NoiseQuicConnection
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.core.sendqueue import Outgoing
from hnet.core.wire import SendErrorKind
from hnet.log import get_logger
from hnet.transport.quic.transport import QuicSession, _Driver
from hnet.transport.session import SessionClosed

__all__ = [
    "CircuitEnd",
    "CircuitSession",
    "ControlHalf",
    "RelayHeader",
    "VirtualQuic",
    "app_code",
    "circuit_code",
    "peek_first_frame",
    "refuse_stream",
]

log = get_logger("circuit")

_U16 = struct.Struct(">H")


def circuit_code(code: int) -> CircuitCode:
    """The circuit code that ends a circuit whose end-to-end connection closed with ``code``."""
    table: dict[int, CircuitCode] = {
        QuicAppError.NO_ERROR: CircuitCode.NO_ERROR,
        QuicAppError.HANDSHAKE_FAILED: CircuitCode.HANDSHAKE_FAILED,
        QuicAppError.HANDSHAKE_TIMEOUT: CircuitCode.HANDSHAKE_FAILED,
        QuicAppError.LIMIT_EXCEEDED: CircuitCode.LIMIT_EXCEEDED,
    }
    return table.get(code, CircuitCode.PROTOCOL_VIOLATION)


def app_code(code: CircuitCode) -> QuicAppError:
    """The connection code an end-to-end session reports for a circuit closed with ``code``."""
    return {
        CircuitCode.NO_ERROR: QuicAppError.NO_ERROR,
        CircuitCode.HANDSHAKE_FAILED: QuicAppError.HANDSHAKE_FAILED,
        CircuitCode.LIMIT_EXCEEDED: QuicAppError.LIMIT_EXCEEDED,
        CircuitCode.PROTOCOL_VIOLATION: QuicAppError.PROTOCOL_VIOLATION,
    }.get(code, QuicAppError.NO_ERROR)


# --- control streams ----------------------------------------------------------------------------


class ControlHalf:
    """Our side of one control stream on ``hop`` (§11.6)."""

    def __init__(
        self,
        hop: QuicSession,
        sid: int,
        ours: CipherState,
        theirs: CipherState,
        role: ControlRole,
    ) -> None:
        self.hop = hop
        self.sid = sid
        self._seal = ours
        self.reader = ControlReader(theirs, role)
        #: our half is ended (FIN written)
        self.ended = False
        #: the peer's half is ended (FIN read)
        self.peer_ended = False

    @classmethod
    def open(cls, hop: QuicSession, frame: ControlFrame, role: ControlRole) -> ControlHalf:
        """Open a control stream on ``hop`` with ``frame`` (REQUEST or OFFER) as its first."""
        sid, ours, theirs = hop.core.open_circuit_stream(
            StreamKind.CONTROL, lambda c: seal_control(c, frame)
        )
        hop.kick()
        return cls(hop, sid, ours, theirs, role)

    @classmethod
    def accept(cls, hop: QuicSession, sid: int, role: ControlRole) -> ControlHalf:
        ours, theirs = hop.core.hop_ciphers(sid)
        return cls(hop, sid, ours, theirs, role)

    def feed(self, data: bytes, fin: bool) -> list[ControlFrame]:
        """The peer's frames; CircuitError if it broke the order or framing."""
        frames = self.reader.feed(data, fin)
        if fin:
            self.peer_ended = True
        return frames

    def send(self, frame: ControlFrame, fin: bool = False) -> None:
        if self.ended or self.hop.core.is_closed:
            return
        self.ended = fin
        self.hop.core.send_circuit_data(self.sid, seal_control(self._seal, frame), fin)
        self.hop.kick()

    def finish(self) -> None:
        """End our half (FIN, no frame)."""
        if self.ended or self.hop.core.is_closed:
            return
        self.ended = True
        self.hop.core.send_circuit_data(self.sid, b"", True)
        self.hop.kick()

    @property
    def done(self) -> bool:
        return self.ended and self.peer_ended


class RelayHeader:
    """Collects a relayed stream's header frame (after its opening) and opens it."""

    __slots__ = ("_buf", "_cipher")

    def __init__(self, cipher: CipherState) -> None:
        self._cipher = cipher
        self._buf = b""

    def feed(self, data: bytes) -> tuple[int, int, bytes] | None:
        """``(circuit id, stream number, bytes after the header)`` once complete, else None.
        CircuitError if the header is malformed or fails to authenticate."""
        from hnet.core.circuit.frames import decode_relay_header

        need = RELAY_HEADER_LEN - len(self._buf)
        self._buf += data[:need]
        if len(self._buf) < RELAY_HEADER_LEN:
            return None
        cid, number = decode_relay_header(self._cipher, self._buf)
        return cid, number, data[need:]


def peek_first_frame(session: QuicSession, sid: int, data: bytes) -> ControlFrame | None:
    """The first control frame of the peer's half of stream ``sid``, from its first bytes
    (after the opening), without consuming anything: None if it is not complete yet.
    CircuitError if its length is out of range, or it fails to authenticate or decode."""
    if len(data) < 2:
        return None
    (n,) = _U16.unpack_from(data)
    if not limits.NOISE_TAG_LEN < n <= limits.NOISE_TAG_LEN + limits.CIRCUIT_CONTROL_FRAME_MAX:
        raise CircuitError(f"control frame of {n} bytes")
    if len(data) < 2 + n:
        return None
    _ours, theirs = session.core.hop_ciphers(sid)  # fresh: nonce 0, used for this peek only
    try:
        return decode_control(theirs.decrypt(data[2 : 2 + n]))
    except NoiseError:
        raise CircuitError("control frame failed to authenticate") from None


# --- a node that takes no circuits ----------------------------------------------------------------


def refuse_stream(session: QuicSession, ev: CircuitData) -> None:
    """This connection takes no circuits: a REQUEST is refused NOT_ROUTING and an OFFER
    DECLINED (REFUSE, then FIN, §11.2); the rest of the peer's half is read and dropped. A
    relayed stream, for a circuit that cannot exist here, is a protocol violation."""
    if ev.kind is StreamKind.RELAY or ev.ours:
        session.violate(QuicAppError.PROTOCOL_VIOLATION, "relayed stream for no circuit")
        return
    state = session.refusing
    buf = state.get(ev.stream_id, b"")
    if buf is None:  # answered: drop the rest
        if ev.fin:
            del state[ev.stream_id]
        return
    buf += ev.data
    try:
        frame = peek_first_frame(session, ev.stream_id, buf)
    except CircuitError as e:
        session.violate(QuicAppError.PROTOCOL_VIOLATION, f"control stream: {e}")
        return
    if frame is not None:
        if isinstance(frame, RequestFrame):
            refuse = RefuseFrame(CircuitCode.NOT_ROUTING, Origin.ROUTER, "no circuits here")
        elif isinstance(frame, OfferFrame):
            refuse = RefuseFrame(CircuitCode.DECLINED, Origin.PEER, "no circuits here")
        else:
            session.violate(QuicAppError.PROTOCOL_VIOLATION, "control stream out of order")
            return
        ours, _theirs = session.core.hop_ciphers(ev.stream_id)
        session.core.send_circuit_data(ev.stream_id, seal_control(ours, refuse), True)
        session.kick()
        buf = None
    if ev.fin:
        if buf is not None:
            session.violate(QuicAppError.PROTOCOL_VIOLATION, "control stream ended early")
        state.pop(ev.stream_id, None)
        return
    state[ev.stream_id] = buf


# --- the end-to-end connection over relayed streams -----------------------------------------------


class VirtualQuic(qb.QuicConn):
    """The QUIC connection a circuit session's :class:`NoiseQuicConnection` drives: stream
    ids are relayed stream numbers, each a relayed stream on the hop (docs/quic.md §11.7-11.8).
    It sends no datagrams and has no timers: the hop connection does both."""

    backend = "circuit"

    def __init__(self, end: CircuitEnd, *, is_client: bool) -> None:
        super().__init__(None)
        self._end = end
        self._events: deque[qb.QuicEvent] = deque()
        self._next = 0 if is_client else 1
        #: numbers of streams with a relayed stream on the hop -> its hop stream id
        self.hop_sid: dict[int, int] = {}
        self._numbers = StreamNumbers(1 if is_client else 0, limits.CIRCUIT_RELAY_STREAMS)
        self._violation: str | None = None
        self._term: qb.Termination | None = None
        self._events.append(qb.HandshakeCompleted(qb.ALPN))

    # what the hop side feeds in

    def stream_opened(self, number: int, hop_sid: int) -> None:
        """The peer opened relayed stream ``number`` (its header came on ``hop_sid``)."""
        try:
            self._numbers.accept(number)
        except CircuitError as e:
            self._violation = e.reason
            return
        self.hop_sid[number] = hop_sid

    def stream_data(self, number: int, data: bytes, fin: bool) -> None:
        self._events.append(qb.StreamData(number, data, fin))

    def peer_closed(self, code: CircuitCode, reason: str) -> None:
        if self._term is None:
            text = f"circuit closed: {code.name}" + (f" ({reason})" if reason else "")
            self._term = qb.Termination(int(app_code(code)), None, text, True)

    # the QuicConn surface

    @property
    def host_cid(self) -> bytes:
        return b""

    def connect(self, addr: qb.Addr, now: float) -> None:
        pass

    def receive_datagram(self, data: bytes, addr: qb.Addr, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, qb.Addr]]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def send_stream_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False
    ) -> None:
        sid = self.hop_sid.get(stream_id)
        if sid is None:
            if stream_id != self._next:
                raise RuntimeError(f"relayed stream {stream_id} out of turn ({self._next})")
            self._next += 4
            self.hop_sid[stream_id] = self._end.open_relay(stream_id, bytes(data), end_stream)
            return
        self._end.write(sid, bytes(data), end_stream)

    def next_bidi_stream_id(self) -> int:
        return self._next

    def send_ping(self, uid: int) -> None:
        pass

    def change_connection_id(self) -> None:
        pass

    def close(self, error_code: int, reason: str) -> None:
        self._closed_locally = True
        if self._term is None:
            self._term = qb.Termination(error_code, None, reason, False)
            self._end.closed_by_us(circuit_code(error_code), reason)

    def next_event(self) -> qb.QuicEvent | None:
        if self._violation is not None:
            reason, self._violation = self._violation, None
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, reason)
        return self._events.popleft() if self._events else None

    def _translate(self, ev: Any) -> qb.QuicEvent | None:
        return None

    def can_open_stream(self) -> bool:
        return self._end.can_open()

    def unsent_bytes(self, stream_id: int) -> int:
        sid = self.hop_sid.get(stream_id)
        return 0 if sid is None else self._end.hop.core.circuit_unsent(sid)

    def bytes_in_flight(self) -> int:
        return self._end.hop.core.quic.bytes_in_flight()

    def min_rtt(self) -> float | None:
        return self._end.hop.core.quic.min_rtt()

    def termination(self) -> qb.Termination | None:
        return self._term


class CircuitSession(QuicSession):
    """A peer session whose transport is a circuit through ``router`` (docs/quic.md §11.8):
    the same messages, streams, keys and credit as a direct QUIC session.

    It remembers the messages it wrote until the peer acknowledges their delivery: when the
    hop under it dies (:meth:`fail_undelivered`), their senders get SendError (Offline) at
    once instead of waiting out their deadlines, so a failover's every message is either
    delivered or reported.
    """

    _unacked: dict[int, Outgoing] | None = None

    def _written(self, item: Outgoing) -> None:
        hook = item.on_fail
        item.written()
        if hook is None or item.km is None:
            return
        unacked = self._unacked
        if unacked is None:
            unacked = self._unacked = {}
        unacked[self._last_sid] = item
        out = self.core._out  # streams not acknowledged yet
        if len(unacked) > 2 * len(out) + 32:
            for sid in [sid for sid in unacked if sid not in out]:
                del unacked[sid]

    def fail_undelivered(self, reason: str) -> int:
        """Tell the senders of the messages written here and never acknowledged that they
        were lost (Offline); returns how many."""
        unacked, self._unacked = self._unacked, None
        if not unacked:
            return 0
        out = self.core._out
        n = 0
        for sid, item in unacked.items():
            hook = item.on_fail
            if sid in out and hook is not None:
                item.on_fail = None
                n += 1
                try:
                    hook(item, SendErrorKind.OFFLINE, f"session lost before delivery: {reason}")
                except Exception as e:  # a bug of ours: the others are still told
                    log.exception("failure report failed", peer=self.peer_name, error=repr(e))
        return n

    def rebind(self) -> qb.Addr:
        raise RuntimeError("a circuit session has no socket of its own")

    def describe(self) -> str:
        return f"{self.peer_name} via quic (circuit through {self.router})"


class CircuitEnd:
    """One circuit at an end: the source (``is_source``, the Noise initiator) or the target.

    ``control`` is our control stream for it on ``hop``; ``peer`` the far end's name. The
    end-to-end connection starts at once; :attr:`session` is set once its handshake is done
    (and the peer is the one the circuit names), and ``on_session`` is called with it.
    ``on_gone`` is called once, when the circuit has ended here.
    """

    def __init__(
        self,
        *,
        hop: QuicSession,
        control: ControlHalf,
        circuit_id: int,
        is_source: bool,
        peer: str,
        router: str,
        handshake: PeerHandshake,
        registry: dict[int, CircuitEnd],
        on_session: Callable[[CircuitSession], None],
        on_gone: Callable[[CircuitEnd], None],
    ) -> None:
        self.hop = hop
        self.control = control
        self.circuit_id = circuit_id
        self.is_source = is_source
        self.peer = peer
        self.router = router
        self._on_session = on_session
        self._on_gone = on_gone
        self.session: CircuitSession | None = None
        self.gone = False
        #: hop stream id -> relayed stream number (streams of this circuit on the hop)
        self._numbers: dict[int, int] = {}
        #: the hop's hop stream id -> circuit end map, where our streams are entered
        self._registry = registry
        #: hop stream ids whose relayed stream ended our half / the peer's
        self._fin_out: set[int] = set()
        self._fin_in: set[int] = set()
        self.vq = VirtualQuic(self, is_client=is_source)
        core = NoiseQuicConnection(
            self.vq,
            handshake,
            max_streams=limits.CIRCUIT_MAX_STREAMS,
            small_streams_reserve=limits.CIRCUIT_SMALL_STREAMS_RESERVE,
        )
        self.drv = _Driver(core, lambda data, addr: None)
        self.drv.on_handshake = self._handshake_done
        self.drv.on_teardown = lambda d: self._teardown()
        self._deadline = self.drv.loop.call_later(limits.HANDSHAKE_TIMEOUT, self._handshake_expired)
        if is_source:
            core.connect((), self.drv.loop.time())
        self.poke()

    # --- the end-to-end connection ----------------------------------------------------------

    @property
    def core(self) -> NoiseQuicConnection:
        return self.drv.core

    def poke(self) -> None:
        """Let the end-to-end connection process what arrived, then write what it has."""
        self.drv.datagram_received(b"", ())
        self.drv.flush()

    def bulk_wake(self) -> None:
        """The hop moved data: bulk waiting for window room may go on."""
        if self.core.bulk_pending:
            self.drv.flush_soon()

    def _handshake_done(self, drv: _Driver) -> None:
        self._deadline.cancel()
        core = drv.core
        if core.peer_name != self.peer:
            core.close(QuicAppError.HANDSHAKE_FAILED, f"reached {core.peer_name}, not {self.peer}")
            return
        session = CircuitSession(
            drv,
            peer_name=self.peer,
            initiator=self.is_source,
            proxy_request=False,
        )
        session.router = self.router
        session.remote = f"circuit {self.circuit_id} via {self.router}"
        self.session = session
        if not session.closed:
            self._on_session(session)

    def _handshake_expired(self) -> None:
        if self.session is None and not self.core.is_closed:
            self.drv.close(QuicAppError.HANDSHAKE_TIMEOUT, "circuit handshake timed out")

    async def wait_session(self, timeout: float) -> CircuitSession:
        """Source: the session, once its handshake completed (SessionClosed otherwise)."""
        async with asyncio.timeout(timeout):
            await self.drv.settled.wait()
        if self.session is None or self.session.closed:
            closed = self.core.closed
            raise SessionClosed(closed.reason if closed else "circuit handshake failed")
        return self.session

    # --- the hop -------------------------------------------------------------------------

    def can_open(self) -> bool:
        opened = len(self._numbers) - len(self._fin_in & self._fin_out)
        return (
            not self.gone
            and self.hop.core.can_open_circuit_stream()
            and opened < limits.CIRCUIT_RELAY_STREAMS
        )

    def open_relay(self, number: int, data: bytes, fin: bool) -> int:
        cid = self.circuit_id
        sid, _ours, _theirs = self.hop.core.open_circuit_stream(
            StreamKind.RELAY, lambda c: seal_relay_header(c, cid, number)[3:]
        )
        self._numbers[sid] = number
        self._registry[sid] = self
        if data or fin:
            self.write(sid, data, fin)
        self.hop.kick()
        return sid

    def write(self, sid: int, data: bytes, fin: bool) -> None:
        if self.gone:
            return
        self.hop.core.send_circuit_data(sid, data, fin)
        if fin:
            self._ended(sid, out=True)
        self.hop.kick()

    def relay_opened(self, sid: int, number: int, data: bytes, fin: bool) -> None:
        """The router opened a relayed stream of this circuit on the hop."""
        if self.gone:
            self._discard(sid, fin)
            return
        self._numbers[sid] = number
        self._registry[sid] = self
        self.vq.stream_opened(number, sid)
        self.relay_data(sid, data, fin)

    def relay_data(self, sid: int, data: bytes, fin: bool) -> None:
        number = self._numbers.get(sid)
        if number is None or self.gone:
            self._discard(sid, fin)
            return
        if fin:
            self._ended(sid, out=False)
        self.vq.stream_data(number, data, fin)
        self.poke()

    def _discard(self, sid: int, fin: bool) -> None:
        if fin and not self.hop.core.is_closed:
            self.hop.core.send_circuit_data(sid, b"", True)
            self.hop.kick()

    def _ended(self, sid: int, *, out: bool) -> None:
        (self._fin_out if out else self._fin_in).add(sid)
        if sid in self._fin_in and sid in self._fin_out:
            self._fin_in.discard(sid)
            self._fin_out.discard(sid)
            self._numbers.pop(sid, None)
            if self._registry.get(sid) is self:
                del self._registry[sid]

    def control_frames(self, frames: list[ControlFrame]) -> None:
        """Frames from the router on our control stream after its answer (CLOSE)."""
        for frame in frames:
            if isinstance(frame, CloseFrame):
                self.vq.peer_closed(frame.code, frame.reason)
                self.control.finish()
                self.poke()

    def hop_lost(self, reason: str = "") -> None:
        """The hop connection closed (or was declared dead): the circuit ends now, and the
        messages its session wrote and never saw delivered are reported lost."""
        text = f"connection to {self.router} lost" + (f" ({reason})" if reason else "")
        self.vq.peer_closed(CircuitCode.PEER_GONE, text)
        self.poke()
        self._teardown()
        if self.session is not None:
            n = self.session.fail_undelivered(text)
            if n:
                log.info("undelivered messages reported", peer=self.peer, count=n, reason=text)

    def closed_by_us(self, code: CircuitCode, reason: str) -> None:
        """Our end-to-end connection closed: CLOSE the circuit (FIN follows)."""
        self.control.send(CloseFrame(code, Origin.PEER, reason[: limits.CIRCUIT_REASON_MAX]), True)

    def _teardown(self) -> None:
        if self.gone:
            return
        self.gone = True
        self._deadline.cancel()
        hop = self.hop
        if not hop.core.is_closed:
            for sid in list(self._numbers):
                if sid not in self._fin_out:
                    hop.core.send_circuit_data(sid, b"", True)
            if not self.control.ended:
                self.control.send(CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "closed"), True)
            hop.kick()
        for sid in self._numbers:
            if self._registry.get(sid) is self:
                del self._registry[sid]
        self._numbers.clear()
        if not self.core.is_closed:
            self.drv.close(QuicAppError.NO_ERROR, "circuit gone")
        self._on_gone(self)

    def describe(self) -> str:
        role = "to" if self.is_source else "from"
        return f"circuit {self.circuit_id} {role} {self.peer} via {self.router}"
