"""One ``hnet-noise/1`` connection: QUIC streams carrying Noise, sans-I/O.

:class:`NoiseQuicConnection` wraps a backend :class:`~hnet.core.quic.backend.QuicConn` (itself a
sans-I/O QUIC state machine) and a :class:`~hnet.core.handshake.PeerHandshake`. Feed it datagrams
and timer ticks; collect datagrams to send and :data:`Event` objects. It never awaits and
never touches a socket; :mod:`hnet.transport.quic.transport` moves the bytes.

The rules it enforces (docs/quic.md):

* stream 0 (the client's first bidirectional stream) carries the Noise XX handshake, each
  message ``[u16 BE len][msg]``; each side ends its half of stream 0 with its last handshake
  message;
* every message travels on its own new bidirectional stream opened by its sender, framed and
  encrypted by :mod:`hnet.core.quic.streams`; the receiver ends its (otherwise empty) half of that
  stream once the message was *delivered*: this FIN is the sender's acknowledgement and
  returns the message's credit;
* a sender keeps at most ``QUIC_SEND_WINDOW`` bytes and ``QUIC_MAX_STREAMS`` messages
  unacknowledged; the receiver cuts off a peer that exceeds either;
* every other stream begins with an opening (docs/quic.md §11.2): ``00 14`` is a message
  stream (the opening is its frame 0's prefix), ``00 00 01`` a circuit control stream and
  ``00 00 02`` a relayed one; circuit streams are handed to the adapter as
  :class:`CircuitData` (written with :meth:`NoiseQuicConnection.open_circuit_stream` and
  :meth:`NoiseQuicConnection.send_circuit_data`), anything else is a protocol violation;
* unidirectional streams, resets, STOP_SENDING, data on a half that must stay empty, and
  application data before the handshake could have completed are protocol violations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from hnet import limits
from hnet.core.circuit.errors import CircuitError
from hnet.core.circuit.frames import StreamKind, classify_opening
from hnet.core.framing.errors import FramingError
from hnet.core.framing.tcp import HandshakeFrameReader, encode_handshake_frame
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.noise.cipher import CipherState
from hnet.core.quic import backend as qb
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.core.quic.streams import (
    DIR_I2R,
    DIR_R2I,
    DirectionKeys,
    MessageOpener,
    MessageSealer,
    open_whole,
    seal_small,
    wire_size,
)

__all__ = [
    "HANDSHAKE_STREAM",
    "BulkPacer",
    "CircuitData",
    "Closed",
    "Event",
    "HandshakeDone",
    "KeyNeeded",
    "MessageReceived",
    "NoiseQuicConnection",
    "PathCidIssued",
    "PathCidRetired",
    "SendCredit",
]

#: The stream carrying the Noise handshake: the client's first bidirectional stream.
HANDSHAKE_STREAM = 0


# --- events ----------------------------------------------------------------------------------


@dataclass(slots=True)
class HandshakeDone:
    """QUIC and Noise handshakes are complete; the peer is authenticated."""

    peer_name: str


@dataclass(slots=True)
class KeyNeeded:
    """Responder: the initiator's name is not known yet. Look its networking key up (within
    the handshake deadline) and call :meth:`NoiseQuicConnection.provide_key`; its application
    data waits in the early buffer meanwhile (docs/protocol.md §3)."""

    name: str


@dataclass(slots=True)
class MessageReceived:
    """A complete message; call :meth:`NoiseQuicConnection.message_delivered` once handled."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class CircuitData:
    """Bytes of a circuit stream (docs/quic.md §11.2) for the circuit layer: of the opener's
    half of a stream the peer opened (``ours`` False; the opening is already consumed), or of
    the return half of one we opened (``ours`` True). The connection forgets the stream once
    both halves ended (or at :meth:`NoiseQuicConnection.circuit_stream_done`)."""

    stream_id: int
    kind: StreamKind
    ours: bool
    data: bytes
    fin: bool


@dataclass(slots=True)
class SendCredit:
    """Credit came back (the peer delivered a message, or raised our stream credit)."""


@dataclass(slots=True)
class Closed:
    """The connection is closed (or closing); nothing more can be sent or received."""

    code: int
    reason: str
    #: the peer closed it (its code and reason); else we did
    by_peer: bool
    #: we closed it because the peer broke the protocol (ours or QUIC's)
    violation: bool


@dataclass(slots=True)
class PathCidIssued:
    """We issued a connection ID: the server endpoint must route it to us."""

    cid: bytes


@dataclass(slots=True)
class PathCidRetired:
    cid: bytes


Event = (
    HandshakeDone
    | CircuitData
    | KeyNeeded
    | MessageReceived
    | SendCredit
    | Closed
    | PathCidIssued
    | PathCidRetired
)


# --- per-stream state ------------------------------------------------------------------------


class _Outbound:
    __slots__ = ("bulk", "pending", "sealer", "size", "stream_id", "written")

    def __init__(self, stream_id: int, size: int, sealer: MessageSealer | None) -> None:
        self.stream_id = stream_id
        #: the frames still to seal: large messages only (a small one is sealed at once)
        self.sealer = sealer
        self.size = size
        self.bulk = sealer is not None
        self.written = False
        #: the rest of a sealed frame not yet handed to QUIC (bulk feeding)
        self.pending = memoryview(b"")


class BulkPacer:
    """Sizes the bulk window from the path's measured bandwidth-delay product (BDP).

    While large messages are being fed, :meth:`sample` (called at least one minimum RTT apart)
    measures the delivery rate: bytes that left the in-flight set per second. The window is
    ``gain x max(recent rates) x min_rtt``, clamped to [QUIC_BULK_MIN_WINDOW,
    QUIC_BULK_MAX_WINDOW]. In *startup* the gain is 2: a window that fills the path measures a
    higher rate next round, so it doubles per round trip; once three rounds in a row bring less
    than 25% more rate the path is full and the gain drops to 1.25, which keeps the path busy
    with a standing queue of about a quarter of a minimum RTT in front of small messages.
    (The scheme is BBR's, reduced to what a window needs.)

    While small messages are waiting, the connection uses :meth:`yield_window` instead and
    takes no rate samples (they would measure the cap, not the path).
    """

    STARTUP_GAIN = 2.0
    GAIN = 1.25
    SAMPLES = 8

    __slots__ = ("_d0", "_full_bw", "_full_rounds", "_rates", "_t0", "startup", "window")

    def __init__(self) -> None:
        self.window = limits.QUIC_BULK_MIN_WINDOW
        self.startup = True
        self._t0: float | None = None
        self._d0 = 0
        self._rates: deque[float] = deque(maxlen=self.SAMPLES)
        self._full_bw = 0.0
        self._full_rounds = 0

    def idle(self) -> None:
        """No bulk data queued: the next measurement starts afresh (idle time is no rate)."""
        self._t0 = None

    def yield_window(self, min_rtt: float | None) -> int:
        """The window while small messages wait: one BDP at gain 1 (no standing queue), with
        the RTT at the low end of what QUIC's granularity allows (QUIC clamps RTT samples to at
        least QUIC_RTT_GRANULARITY, so on loopback and LAN this is 0), and at least
        QUIC_BULK_YIELD_WINDOW; never above :attr:`window`."""
        rtt = max(0.0, (min_rtt or 0.0) - limits.QUIC_RTT_GRANULARITY)
        rate = max(self._rates, default=0.0)
        return min(self.window, max(int(rate * rtt), limits.QUIC_BULK_YIELD_WINDOW))

    def sample(self, now: float, delivered: int, min_rtt: float | None) -> None:
        if min_rtt is None:
            return
        if self._t0 is None:
            self._t0, self._d0 = now, delivered
            return
        elapsed = now - self._t0
        if elapsed < max(min_rtt, 0.001):
            return
        self._rates.append((delivered - self._d0) / elapsed)
        self._t0, self._d0 = now, delivered
        rate = max(self._rates)
        if self.startup:
            if rate > 1.25 * self._full_bw:
                self._full_bw, self._full_rounds = rate, 0
            else:
                self._full_rounds += 1
                self.startup = self._full_rounds < 3
        gain = self.STARTUP_GAIN if self.startup else self.GAIN
        self.window = int(
            min(
                max(gain * rate * min_rtt, limits.QUIC_BULK_MIN_WINDOW), limits.QUIC_BULK_MAX_WINDOW
            )
        )


class _CircuitStream:
    """A circuit stream (control or relayed) on this connection, or (kind None) a stream of the
    peer's whose opening has not fully arrived yet (at most 2 bytes held)."""

    __slots__ = ("fin_in", "fin_out", "head", "kind")

    def __init__(self, kind: StreamKind | None) -> None:
        self.kind = kind
        self.head = b""
        self.fin_in = False
        self.fin_out = False


class _Inbound:
    __slots__ = ("claimed", "complete", "opener")

    def __init__(self, opener: MessageOpener | None) -> None:
        #: None: the message came whole in one piece (see streams.open_whole)
        self.opener = opener
        self.complete = False
        #: the message's length, once complete (its share of the receive window)
        self.claimed = 0


# --- the connection --------------------------------------------------------------------------

_HANDSHAKING = 0
_OPEN = 1
_CLOSED = 2


class NoiseQuicConnection:
    """The sans-I/O core of one connection (see the module docstring)."""

    def __init__(
        self,
        quic: qb.QuicConn,
        hs: PeerHandshake,
        *,
        max_streams: int = limits.QUIC_MAX_STREAMS,
        small_streams_reserve: int = limits.QUIC_SMALL_STREAMS_RESERVE,
    ) -> None:
        self.quic = quic
        #: message streams open per direction (a circuit session uses CIRCUIT_MAX_STREAMS)
        self.max_streams = max_streams
        self.small_streams_reserve = small_streams_reserve
        self.hs = hs
        #: the QUIC client is always the Noise initiator
        self.is_client = hs.initiator
        self._state = _HANDSHAKING
        self._events: deque[Event] = deque()
        self.closed: Closed | None = None
        self.peer_name: str | None = None
        # handshake stream
        self._hs_reader = HandshakeFrameReader(
            max_len=limits.HANDSHAKE_MAX_MESSAGE, max_frames=1 if self.is_client else 2
        )
        self._hs_sent_reply = False  # responder: msg2 sent (initiator may now finish)
        #: responder: KeyNeeded was emitted, provide_key has not come yet
        self.awaiting_key = False
        #: the responder has verified the initiator (its FIN on stream 0); until then an
        #: initiator sends at most QUIC_EARLY_SEND bytes of messages
        self.confirmed = False
        self._early_budget = limits.QUIC_EARLY_SEND
        self._quic_ready = False
        # keys (after the handshake)
        self._send_keys: DirectionKeys | None = None
        self._recv_keys: DirectionKeys | None = None
        # streams the peer opened: message being received or awaiting delivery
        self._in: dict[int, _Inbound] = {}
        self._partial = 0  # of those, messages still arriving
        self._recv_reserved = 0
        # circuit streams (§11.2): either side's, and peer streams still in their opening
        self._circ: dict[int, _CircuitStream] = {}
        self._opening = 0  # peer streams in _circ whose opening is incomplete
        # responder: application stream data that raced ahead of "-> s, se"
        self._early: list[tuple[int, bytes, bool]] = []
        self._early_bytes = 0
        # our messages not yet acknowledged, and the large ones still being fed to QUIC
        self._out: dict[int, _Outbound] = {}
        self._feeding: deque[_Outbound] = deque()
        self.pacer = BulkPacer()
        #: the bulk window has room for another slice (see datagrams_to_send)
        self.bulk_ready = False
        self._small_written = False
        #: our small messages not yet acknowledged; bulk yields to them (and until
        #: _yield_until after the last acknowledgement): see QUIC_BULK_YIELD_WINDOW
        self._small_out = 0
        self._small_acked = False
        self._yield_until = 0.0
        self._sent_bytes = 0
        self.inflight_bytes = 0
        self.inflight_bulk_bytes = 0
        self.inflight_bulk_streams = 0
        #: counters for diagnostics and tests
        self.stats = {"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}
        self._ping_uid = 0
        self._stream_credit_wait = False

    # --- state ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._state == _OPEN

    @property
    def is_closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def inbound_open(self) -> int:
        """Peer message streams being received or awaiting delivery."""
        return len(self._in)

    @property
    def outbound_open(self) -> int:
        return len(self._out)

    @property
    def small_only(self) -> bool:
        """No large message of ours is being fed to QUIC, none of the peer's is arriving (no
        message in several pieces) and no circuit stream is open: nothing that waits on the
        acknowledgements of a flush (a flush may then wait QUIC_ACK_DELAY for company)."""
        return not self._feeding and not self._partial and not self._circ

    @property
    def waiting_stream_credit(self) -> bool:
        """A send found no QUIC stream credit (SendCredit follows once there is)."""
        return self._stream_credit_wait

    @property
    def bulk_pending(self) -> bool:
        """Large messages of ours are still being fed to QUIC."""
        return bool(self._feeding)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- I/O surface (called by the adapter) ---------------------------------------------

    def connect(self, addr: qb.Addr, now: float) -> None:
        """Client: start the QUIC handshake towards ``addr``."""
        if not self.is_client:
            raise RuntimeError("only a client connects")
        self.quic.connect(addr, now)

    def receive_datagram(self, data: bytes, addr: qb.Addr, now: float) -> None:
        if self._state == _CLOSED:
            return
        self.quic.receive_datagram(data, addr, now)
        self._process()
        if self._small_acked:
            self._small_acked = False
            self._yield_until = now + limits.QUIC_BULK_YIELD_HOLD

    def handle_timer(self, now: float) -> None:
        self.quic.handle_timer(now)
        self._process()

    def get_timer(self) -> float | None:
        return self.quic.get_timer()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, qb.Addr]]:
        """Datagrams ready to go, after feeding QUIC one slice of bulk data.

        If the bulk window has room for more, :attr:`bulk_ready` is set: the adapter should
        call again soon, after letting other work run (a slice is a fraction of a millisecond
        of sending, so small messages and deliveries interleave with a large transfer).
        """
        out: list[tuple[bytes, qb.Addr]] = []
        if self._small_written:
            # Small messages written since the last call go out before any new bulk slice.
            self._small_written = False
            out = self.quic.datagrams_to_send(now)
        self._feed_bulk(now)
        out += self.quic.datagrams_to_send(now)
        for data, _addr in out:
            self._sent_bytes += len(data)
        if self._state != _CLOSED:
            self._check_termination()  # a local QUIC error becomes visible once sent
        return out

    def ping(self) -> None:
        """Queue a QUIC PING (keepalive; also probes a new path after migration)."""
        if self._state != _CLOSED:
            self._ping_uid += 1
            self.quic.send_ping(self._ping_uid)

    def close(self, code: QuicAppError = QuicAppError.NO_ERROR, reason: str = "") -> None:
        """Close with one of our codes (idempotent); :class:`Closed` follows."""
        if self._state == _CLOSED:
            return
        self.quic.close(int(code), reason)
        self._set_closed(Closed(int(code), reason, by_peer=False, violation=False))

    # --- messages ------------------------------------------------------------------------

    def can_send(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits our credit now."""
        if self._state != _OPEN:
            return False
        if len(self._out) >= self.max_streams:
            return False
        if not self.quic.can_open_stream():
            self._stream_credit_wait = True
            return False
        if not self.confirmed and wire_size(size) > self._early_budget:
            return False
        if self.inflight_bytes + size > limits.QUIC_SEND_WINDOW:
            return False
        if size > limits.QUIC_SMALL_MESSAGE:
            if self.inflight_bulk_streams >= self.max_streams - self.small_streams_reserve:
                return False
            if (
                self.inflight_bulk_bytes + size
                > limits.QUIC_SEND_WINDOW - limits.QUIC_SMALL_RESERVE
            ):
                return False
        return True

    def send_message(self, message: bytes) -> int:
        """Open a stream for ``message`` and queue it; return the stream id.

        The caller checked :meth:`can_send`. Small messages are handed to QUIC whole; larger
        ones one chunk now and the rest as QUIC sends (:meth:`datagrams_to_send`).
        """
        if self._state != _OPEN:
            raise RuntimeError("connection is not open")
        if not self.can_send(len(message)):
            raise RuntimeError("no credit for this message (check can_send first)")
        assert self._send_keys is not None
        sid = self.quic.next_bidi_stream_id()
        size = len(message)
        key = self._send_keys.key(sid)
        if size > limits.QUIC_SMALL_MESSAGE:
            sealer = MessageSealer(CipherState(key), message)
            out = _Outbound(sid, size, sealer)
        else:
            wire = seal_small(key, message)  # before any state changes: it may raise
            out = _Outbound(sid, size, None)
        self._out[sid] = out
        if not self.confirmed:
            self._early_budget -= wire_size(size)
        self.inflight_bytes += size
        if out.sealer is not None:
            self.inflight_bulk_bytes += size
            self.inflight_bulk_streams += 1
            # the length frame now: this opens the stream (the next id moves on)
            self.quic.send_stream_data(sid, out.sealer.next_frames(1), False)
            self._feeding.append(out)
        else:
            self.quic.send_stream_data(sid, wire, True)
            out.written = True
            self._small_out += 1
            self._small_written = bool(self._feeding)
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += out.size
        return sid

    def message_delivered(self, stream_id: int) -> None:
        """The application handled the message of ``stream_id``: acknowledge it (FIN)."""
        ib = self._in.pop(stream_id, None)
        if ib is None or not ib.complete:
            raise KeyError(f"no delivered message on stream {stream_id}")
        self._recv_reserved -= ib.claimed
        if self._state != _CLOSED:
            self.quic.send_stream_data(stream_id, b"", True)

    def _feed_bulk(self, now: float) -> bool:
        """Hand large messages to QUIC as the bulk window allows; True if anything was written.

        Frames are sealed one chunk at a time and sliced to the window, so QUIC never holds
        more bulk data than the path can take; a small message written meanwhile finds
        nothing but this short queue ahead of it. While small messages of ours are waiting
        for their acknowledgement (and shortly after), the window is the pacer's smaller
        :meth:`~BulkPacer.yield_window`, so the queue in front of them stays shorter still.
        """
        self.bulk_ready = False
        if not self._feeding or self._state != _OPEN:
            self.pacer.idle()
            return False
        quic = self.quic
        in_flight = quic.bytes_in_flight()
        min_rtt = quic.min_rtt()
        if self._small_out or now < self._yield_until:
            window = self.pacer.yield_window(min_rtt)
            self.pacer.idle()  # the rate we allow now is not the path's: take no sample
        else:
            self.pacer.sample(now, self._sent_bytes - in_flight, min_rtt)
            window = self.pacer.window
        budget = window - in_flight
        for out in self._feeding:
            budget -= quic.unsent_bytes(out.stream_id)
        self.bulk_ready = budget > limits.QUIC_BULK_SLICE
        budget = min(budget, limits.QUIC_BULK_SLICE)
        wrote = False
        feeding = self._feeding
        while budget > 0 and feeding:
            out = feeding[0]
            sealer = out.sealer
            assert sealer is not None  # only large messages are fed
            if not out.pending:
                out.pending = memoryview(sealer.next_frames(1))
            piece = out.pending[:budget]
            out.pending = out.pending[len(piece) :]
            fin = sealer.done and not out.pending
            quic.send_stream_data(out.stream_id, piece, fin)
            budget -= len(piece)
            wrote = True
            if fin:
                out.written = True
                feeding.popleft()
        return wrote

    # --- event processing ----------------------------------------------------------------

    def _process(self) -> None:
        quic = self.quic
        try:
            while self._state != _CLOSED:
                ev = quic.next_event()
                if ev is None:
                    break
                t = type(ev)
                if t is qb.StreamData:
                    assert isinstance(ev, qb.StreamData)
                    self._on_stream_data(ev.stream_id, ev.data, ev.end_stream)
                elif t is qb.HandshakeCompleted:
                    assert isinstance(ev, qb.HandshakeCompleted)
                    self._on_quic_handshake(ev.alpn)
                elif t is qb.CidIssued:
                    assert isinstance(ev, qb.CidIssued)
                    self._events.append(PathCidIssued(ev.cid))
                elif t is qb.CidRetired:
                    assert isinstance(ev, qb.CidRetired)
                    self._events.append(PathCidRetired(ev.cid))
                elif t is qb.StreamReset:
                    assert isinstance(ev, qb.StreamReset)
                    raise QuicProtocolError(
                        QuicAppError.PROTOCOL_VIOLATION, f"stream {ev.stream_id} reset by peer"
                    )
                elif t is qb.StopSending:
                    assert isinstance(ev, qb.StopSending)
                    raise QuicProtocolError(
                        QuicAppError.PROTOCOL_VIOLATION, f"STOP_SENDING on stream {ev.stream_id}"
                    )
                else:
                    raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, "DATAGRAM frame")
        except QuicProtocolError as e:
            self._violation(e.code, e.reason)
            return
        except HandshakeError as e:
            self._violation(QuicAppError.HANDSHAKE_FAILED, str(e))
            return
        if self._state != _CLOSED:
            if self._stream_credit_wait and self.quic.can_open_stream():
                self._stream_credit_wait = False
                self._events.append(SendCredit())
            self._check_termination()

    def protocol_error(self, code: QuicAppError, reason: str) -> None:
        """Close because the peer broke a rule the adapter checks (circuit streams)."""
        self._violation(code, reason)

    def _violation(self, code: QuicAppError, reason: str) -> None:
        if self._state == _CLOSED:
            return
        self.quic.close(int(code), reason)
        self._set_closed(Closed(int(code), reason, by_peer=False, violation=True))

    def _check_termination(self) -> None:
        t = self.quic.termination()
        if t is None:
            return
        if t.by_peer:
            closed = Closed(t.error_code, t.reason, by_peer=True, violation=False)
        elif t.frame_type is not None:  # our QUIC stack refused something the peer did
            closed = Closed(t.error_code, f"QUIC: {t.reason}", by_peer=False, violation=True)
        else:  # idle timeout, or a close that did not come through close()
            closed = Closed(t.error_code, t.reason or "closed", by_peer=False, violation=False)
        self._set_closed(closed)

    def _set_closed(self, closed: Closed) -> None:
        self._state = _CLOSED
        self.closed = closed
        self._in.clear()
        self._partial = 0
        self._circ.clear()
        self._opening = 0
        self._early.clear()
        self._feeding.clear()
        self._events.append(closed)

    # --- handshake -----------------------------------------------------------------------

    def _on_quic_handshake(self, alpn: str | None) -> None:
        if alpn != qb.ALPN:
            raise QuicProtocolError(QuicAppError.HANDSHAKE_FAILED, f"ALPN {alpn!r}")
        self._quic_ready = True
        if self.is_client:
            if self.quic.next_bidi_stream_id() != HANDSHAKE_STREAM:
                raise RuntimeError("stream 0 already used")
            self.quic.send_stream_data(
                HANDSHAKE_STREAM, encode_handshake_frame(self.hs.initial_message()), False
            )

    def _on_handshake_stream(self, data: bytes, fin: bool) -> None:
        reader = self._hs_reader
        try:
            frames = reader.feed(data)
        except FramingError as e:
            raise QuicProtocolError(QuicAppError.HANDSHAKE_FAILED, str(e)) from None
        if reader.done and reader.buffered:
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, "bytes after the handshake")
        for frame in frames:
            self._handshake_message(frame)
        if fin:
            if not reader.done:
                raise QuicProtocolError(
                    QuicAppError.HANDSHAKE_FAILED, "handshake stream ended early"
                )
            if self.is_client and not self.confirmed:
                # The responder ends stream 0 only once it has verified our identity.
                self.confirmed = True
                self._events.append(SendCredit())

    def _handshake_message(self, message: bytes) -> None:
        hs = self.hs
        if self.is_client:
            if not self._quic_ready:
                raise QuicProtocolError(QuicAppError.HANDSHAKE_FAILED, "handshake out of order")
            reply = hs.receive(message)
            assert reply is not None
            self.quic.send_stream_data(HANDSHAKE_STREAM, encode_handshake_frame(reply), True)
            self._complete()
        elif not self._hs_sent_reply:
            reply = hs.receive(message)
            assert reply is not None
            self.quic.send_stream_data(HANDSHAKE_STREAM, encode_handshake_frame(reply), False)
            self._hs_sent_reply = True
        else:
            hs.receive(message)
            if hs.needs_key is not None:
                # An initiator we do not know yet: the adapter looks it up and calls
                # provide_key; its early application data waits in _early (bounded).
                self.awaiting_key = True
                self._events.append(KeyNeeded(hs.needs_key))
                return
            self._responder_verified()

    def _responder_verified(self) -> None:
        self._complete()
        # FIN on our half of stream 0: tells the initiator we verified it (confirmation)
        self.quic.send_stream_data(HANDSHAKE_STREAM, b"", True)
        self.confirmed = True

    def provide_key(self, key: bytes | None) -> None:
        """Answer :class:`KeyNeeded` with the initiator's networking key, or None if its
        name is not in HNS (the handshake then fails). Ignored once the connection closed
        (the handshake timed out meanwhile)."""
        if not self.awaiting_key:
            raise RuntimeError("no key was asked for")
        self.awaiting_key = False
        if self._state == _CLOSED:
            return
        try:
            self.hs.provide_key(key)
            self._responder_verified()
        except HandshakeError as e:
            self._violation(QuicAppError.HANDSHAKE_FAILED, str(e))
        except QuicProtocolError as e:  # early data replayed by _complete broke a rule
            self._violation(e.code, e.reason)

    def _complete(self) -> None:
        hs = self.hs
        if not hs.complete or hs.peer_name is None:
            raise QuicProtocolError(QuicAppError.HANDSHAKE_FAILED, "handshake incomplete")
        send, recv = hs.split()
        h = hs.handshake_hash
        out_dir, in_dir = (DIR_I2R, DIR_R2I) if self.is_client else (DIR_R2I, DIR_I2R)
        self._send_keys = DirectionKeys(send.export_key(), h, out_dir)
        self._recv_keys = DirectionKeys(recv.export_key(), h, in_dir)
        self.peer_name = hs.peer_name
        self._state = _OPEN
        self._events.append(HandshakeDone(hs.peer_name))
        early, self._early = self._early, []
        self._early_bytes = 0
        for sid, data, fin in early:
            self._on_stream_data(sid, data, fin)

    # --- streams -------------------------------------------------------------------------

    def _on_stream_data(self, sid: int, data: bytes, fin: bool) -> None:
        if sid == HANDSHAKE_STREAM:
            self._on_handshake_stream(data, fin)
            return
        if sid & 2:
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, f"unidirectional stream {sid}")
        if (sid & 1) == (0 if self.is_client else 1):
            self._on_return_half(sid, data, fin)
            return
        if self._state != _OPEN:
            self._on_early(sid, data, fin)
            return
        ib = self._in.get(sid)
        if ib is None:
            if sid in self._circ or data[:2] == b"\x00\x00" or data == b"\x00":
                rest = self._circuit_opening(sid, data, fin)
                if rest is None:
                    return
                data = rest
            if len(self._in) >= self.max_streams:
                raise QuicProtocolError(
                    QuicAppError.LIMIT_EXCEEDED,
                    f"more than {self.max_streams} message streams open",
                )
            assert self._recv_keys is not None
            key = self._recv_keys.key(sid)
            message = open_whole(key, data, on_claim=self._claim) if fin else None
            if message is not None:  # the usual small message: all of it in one piece
                ib = self._in[sid] = _Inbound(None)
                self._message_complete(sid, ib, message)
                return
            ib = self._in[sid] = _Inbound(MessageOpener(CipherState(key), on_claim=self._claim))
            self._partial += 1
        opener = ib.opener
        if ib.complete or opener is None:
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, "data after the message")
        message = opener.feed(data, fin)
        if message is not None:
            self._message_complete(sid, ib, message)

    def _message_complete(self, sid: int, ib: _Inbound, message: bytes) -> None:
        ib.complete = True
        ib.claimed = len(message)
        if ib.opener is not None:
            self._partial -= 1
        self.stats["messages_in"] += 1
        self.stats["bytes_in"] += len(message)
        self._events.append(MessageReceived(sid, message))

    # --- circuit streams (docs/quic.md §11.2) ----------------------------------------------

    def _circuit_opening(self, sid: int, data: bytes, fin: bool) -> bytes | None:
        """A peer stream that begins ``00`` (or one already classified as a circuit stream):
        the bytes for the message path if it turns out to be one (``00 14``), else None (held
        or handed to the circuit layer)."""
        circ = self._circ.get(sid)
        if circ is None:
            # A stream still in its opening holds a message stream's slot (a message stream
            # is what it becomes if its next byte is 0x14).
            if len(self._in) + self._opening >= self.max_streams:
                raise QuicProtocolError(
                    QuicAppError.LIMIT_EXCEEDED,
                    f"more than {self.max_streams} message streams open",
                )
            circ = self._circ[sid] = _CircuitStream(None)
            self._opening += 1
        if circ.kind is None:
            head = circ.head + data
            try:
                got = classify_opening(head)
            except CircuitError as e:
                raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, str(e)) from None
            if got is None:
                if fin:
                    raise QuicProtocolError(
                        QuicAppError.PROTOCOL_VIOLATION, f"stream {sid} ended in its opening"
                    )
                circ.head = head
                return None
            kind, n = got
            self._opening -= 1
            if kind is StreamKind.MESSAGE:
                del self._circ[sid]
                return head
            circ.kind, circ.head = kind, b""
            data = head[n:]
        self._circuit_data(sid, circ, False, data, fin)
        return None

    def _circuit_data(
        self, sid: int, circ: _CircuitStream, ours: bool, data: bytes, fin: bool
    ) -> None:
        assert circ.kind is not None
        if circ.fin_in:
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, f"data after FIN on {sid}")
        circ.fin_in = fin
        if fin and circ.fin_out:
            del self._circ[sid]
        if data or fin:
            self._events.append(CircuitData(sid, circ.kind, ours, data, fin))

    def can_open_circuit_stream(self) -> bool:
        return self._state == _OPEN and self.quic.can_open_stream()

    def open_circuit_stream(
        self, kind: StreamKind, first: Callable[[CipherState], bytes]
    ) -> tuple[int, CipherState, CipherState]:
        """Open a control or relayed stream: write its opening, then ``first(ours)`` (what the
        caller seals with the new stream's key, e.g. a relayed stream's header). Returns the
        stream id and its ciphers ``(ours, theirs)`` (see :meth:`hop_ciphers`). The caller
        checked :meth:`can_open_circuit_stream`."""
        if not self.can_open_circuit_stream():
            raise RuntimeError("cannot open a stream now")
        if kind is StreamKind.MESSAGE:
            raise ValueError("message streams are opened by send_message")
        sid = self.quic.next_bidi_stream_id()
        ours, theirs = self.hop_ciphers(sid)
        opening = b"\x00\x00\x01" if kind is StreamKind.CONTROL else b"\x00\x00\x02"
        self._circ[sid] = _CircuitStream(kind)
        self.quic.send_stream_data(sid, opening + first(ours), False)
        return sid, ours, theirs

    def hop_ciphers(self, sid: int) -> tuple[CipherState, CipherState]:
        """Fresh ciphers for stream ``sid`` of this connection: ``(ours, theirs)`` — ours seals
        what we write on it, theirs opens what the peer writes (§11.2, hop keys)."""
        if self._send_keys is None or self._recv_keys is None:
            raise RuntimeError("handshake not complete")
        return self._send_keys.cipher(sid), self._recv_keys.cipher(sid)

    def send_circuit_data(self, sid: int, data: bytes | memoryview, fin: bool = False) -> None:
        """Write on our half of circuit stream ``sid`` (ignored once closed or ended)."""
        circ = self._circ.get(sid)
        if self._state == _CLOSED or circ is None or circ.fin_out:
            return
        circ.fin_out = fin
        if fin and circ.fin_in:
            del self._circ[sid]
        self.quic.send_stream_data(sid, data, fin)

    def circuit_unsent(self, sid: int) -> int:
        return self.quic.unsent_bytes(sid) if sid in self._circ else 0

    def circuit_stream_done(self, sid: int) -> None:
        """The circuit layer is done with ``sid`` (both halves ended, or abandoned)."""
        self._circ.pop(sid, None)

    @property
    def circuit_streams(self) -> int:
        return len(self._circ)

    def _claim(self, size: int) -> None:
        if self._recv_reserved + size > limits.QUIC_SEND_WINDOW:
            raise QuicProtocolError(
                QuicAppError.LIMIT_EXCEEDED,
                f"{self._recv_reserved + size} bytes of undelivered messages "
                f"(window {limits.QUIC_SEND_WINDOW})",
            )
        self._recv_reserved += size

    def _on_return_half(self, sid: int, data: bytes, fin: bool) -> None:
        """The peer's half of a stream we opened: empty, then FIN once it delivered."""
        circ = self._circ.get(sid)
        if circ is not None:
            self._circuit_data(sid, circ, True, data, fin)
            return
        out = self._out.get(sid)
        if data:
            raise QuicProtocolError(
                QuicAppError.PROTOCOL_VIOLATION, f"data on the return half of stream {sid}"
            )
        if not fin:
            return
        if out is None or not out.written:
            raise QuicProtocolError(
                QuicAppError.PROTOCOL_VIOLATION, f"acknowledgement for stream {sid} unsent"
            )
        del self._out[sid]
        self.inflight_bytes -= out.size
        if out.bulk:
            self.inflight_bulk_bytes -= out.size
            self.inflight_bulk_streams -= 1
        else:
            self._small_out -= 1
            self._small_acked = True
        self._events.append(SendCredit())

    def _on_early(self, sid: int, data: bytes, fin: bool) -> None:
        """Application data before our handshake completed."""
        if self.is_client or not self._hs_sent_reply:
            # The peer cannot have completed its handshake yet: it skipped it.
            raise QuicProtocolError(
                QuicAppError.EARLY_DATA, f"stream {sid} before the Noise handshake"
            )
        self._early_bytes += max(len(data), 1)  # an empty FIN counts too
        if self._early_bytes > limits.QUIC_EARLY_DATA_MAX:
            raise QuicProtocolError(
                QuicAppError.EARLY_DATA,
                f"more than {limits.QUIC_EARLY_DATA_MAX} bytes before the handshake completed",
            )
        self._early.append((sid, data, fin))
