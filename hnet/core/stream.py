"""One TCP or WebSocket Noise connection, sans-I/O: the twin of :mod:`hnet.core.quic.connection`.

:class:`StreamConnection` is everything a TCP or WebSocket connection does between the socket
and the session, from the first byte to the last: the responder's first-frame rule (a Noise
``-> e`` or a RoutingRequest, docs/protocol.md §4 and §7 "Routed connections"), the Noise XX
handshake with its identity checks (:class:`~hnet.core.handshake.PeerHandshake`, §3), a
deferred key lookup for an initiator we do not know yet, then the transport framing (§4 TCP,
§5 WebSocket). Feed it what arrives, send what it gives back, act on its events. It never
awaits and never touches a socket; :mod:`hnet.transport.tcp` and :mod:`hnet.transport.ws` move
the bytes, and the tests and fuzzers drive exactly this object.

Two framings (``kind``):

* ``"tcp"``: a byte stream. Handshake messages (and a RoutingRequest) are ``[u16 BE len][msg]``
  (:func:`~hnet.core.framing.tcp.encode_handshake_frame`,
  :class:`~hnet.core.framing.tcp.HandshakeFrameReader`, the one u16 framer of the tree); then
  :class:`~hnet.core.framing.tcp.TcpTransport`. Input: :meth:`receive_data`.
* ``"ws"``: a sequence of binary WebSocket messages, one per handshake message
  (:func:`~hnet.core.framing.ws.check_handshake_message`); then
  :class:`~hnet.core.framing.ws.WsTransport`. Input: :meth:`receive_message`. A text message is
  a protocol error (§5).

Output for both: :meth:`data_to_send` returns a list of buffers: over TCP the byte stream in
pieces (one piece per message, to be written with one write each), over WebSocket one binary
message per item.

States and what moves between them (``_TRANSITIONS`` is the table; anything else is a bug of
ours and raises :class:`LocalProtocolError`)::

    AWAIT_FIRST --first frame is -> e-------------> HANDSHAKE      (responder, accepted socket)
    AWAIT_FIRST --first frame is a RoutingRequest-> ROUTED         RoutingRequestReceived
    HANDSHAKE ----last message, peer verified-----> OPEN           HandshakeComplete
    HANDSHAKE ----last message, name unknown------> NEEDS_KEY      KeyNeeded
    NEEDS_KEY ----provide_key, peer verified------> OPEN           HandshakeComplete
    any but ROUTED, CLOSED --peer closed----------> CLOSED         ConnectionClosed
    any but ROUTED, CLOSED --peer broke a rule----> CLOSED         ProtocolError
    any but CLOSED --close()----------------------> CLOSED

An initiator, and a responder that dialled a router itself (``routing_request`` given: an
indirect node answering a ConnectionRequest, §7), start in HANDSHAKE; only a responder on an
accepted connection reads a first frame that may be a RoutingRequest. ROUTED means the
connection now belongs to the router: :meth:`take_buffered` gives what arrived behind the
RoutingRequest (to be piped on first, untouched) and nothing more may be fed.

Bounds (docs/protocol.md §3-§5; every length is checked before anything is buffered for it):
a first frame of at most ``ROUTING_REQUEST_MAX`` bytes, handshake messages of at most
``HANDSHAKE_MAX_MESSAGE``, at most :data:`EARLY_DATA_MAX` bytes held while the initiator's key
is looked up, then the transport framings' own bounds.

Errors say whose fault they are (h11's split): a peer that breaks the protocol produces a
:class:`ProtocolError` event carrying a :class:`RemoteProtocolError` and the connection is
CLOSED (input is never raised at the caller); calling a method the state does not allow
(sending before OPEN, feeding a TCP connection WebSocket messages, ...) raises
:class:`LocalProtocolError` at once.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from hnet.core.framing.errors import FramingError
from hnet.core.framing.tcp import (
    NOISE_E_LEN,
    FirstFrame,
    HandshakeFrameReader,
    TcpTransport,
    classify_first_frame,
    encode_handshake_frame,
)
from hnet.core.framing.ws import WsTransport, check_handshake_message
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.limits import (
    HANDSHAKE_MAX_MESSAGE,
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    ROUTING_REQUEST_MAX,
    STREAM_EARLY_DATA_MAX,
)

__all__ = [
    "EARLY_DATA_MAX",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "KeyNeeded",
    "Kind",
    "LocalProtocolError",
    "MessageReceived",
    "ProtocolError",
    "RemoteProtocolError",
    "RoutingRequestReceived",
    "State",
    "StreamConnection",
    "StreamProtocolError",
]

BytesLike = bytes | bytearray | memoryview
Kind = Literal["tcp", "ws"]

#: (see ``limits.STREAM_EARLY_DATA_MAX``)
EARLY_DATA_MAX = STREAM_EARLY_DATA_MAX
#: What one early WebSocket message costs against EARLY_DATA_MAX beyond its bytes (its list
#: entry), so a flood of tiny messages is bounded too.
_EARLY_MESSAGE_COST = 64
#: Largest first frame of a responder: a RoutingRequest or the 32-byte ``-> e`` (§4).
_FIRST_FRAME_MAX = max(ROUTING_REQUEST_MAX, NOISE_E_LEN)


# --- errors ----------------------------------------------------------------------------------


class StreamProtocolError(Exception):
    """Base of the two error kinds below; ``reason`` is one line for a log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteProtocolError(StreamProtocolError):
    """The peer broke the protocol; the connection is closed. Never raised at the caller:
    it arrives in a :class:`ProtocolError` event.

    ``handshake`` is True when the handshake itself refused the peer (Noise failed, or an
    identity check of §3: protocol version, name, signature), False for a framing violation.
    """

    def __init__(self, reason: str, *, handshake: bool = False) -> None:
        super().__init__(reason)
        self.handshake = handshake


class LocalProtocolError(StreamProtocolError):
    """We used the connection wrongly (a bug of ours, never the peer's fault)."""


# --- events ----------------------------------------------------------------------------------


@dataclass(slots=True)
class RoutingRequestReceived:
    """The first frame of an accepted connection is a RoutingRequest (docs/protocol.md §7):
    hand ``first_frame`` and :meth:`StreamConnection.take_buffered` to the router."""

    first_frame: bytes


@dataclass(slots=True)
class KeyNeeded:
    """The initiator's name is not known yet: look its networking key up (within the
    handshake deadline) and call :meth:`StreamConnection.provide_key`."""

    name: str


@dataclass(slots=True)
class HandshakeComplete:
    """The peer is authenticated as ``peer_name``; messages may flow both ways.
    ``proxy_request``: the peer (our initiator) asked us to route for it (§3)."""

    peer_name: str
    proxy_request: bool


@dataclass(slots=True)
class MessageReceived:
    """One whole transport message (a serialized KernelMessage, not yet decoded)."""

    data: bytes


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed the connection (end of stream)."""

    reason: str


@dataclass(slots=True)
class ProtocolError:
    """The peer broke the protocol; the connection is closed."""

    error: RemoteProtocolError

    @property
    def reason(self) -> str:
        return self.error.reason


Event = (
    RoutingRequestReceived
    | KeyNeeded
    | HandshakeComplete
    | MessageReceived
    | ConnectionClosed
    | ProtocolError
)


# --- the state machine -----------------------------------------------------------------------


class State(enum.Enum):
    #: responder on an accepted connection: waiting for the first frame
    AWAIT_FIRST = "await_first"
    #: the Noise XX handshake is running
    HANDSHAKE = "handshake"
    #: responder: the initiator's last message is in, its key is being looked up
    NEEDS_KEY = "needs_key"
    #: authenticated; transport messages both ways
    OPEN = "open"
    #: the first frame was a RoutingRequest: the connection belongs to the router (terminal)
    ROUTED = "routed"
    #: terminal
    CLOSED = "closed"


class _Input(enum.Enum):
    FIRST_NOISE = "first frame is -> e"
    FIRST_ROUTING = "first frame is a RoutingRequest"
    KEY_UNKNOWN = "initiator's key unknown"
    VERIFIED = "peer verified"
    PEER_CLOSED = "peer closed"
    REMOTE_ERROR = "peer broke the protocol"
    LOCAL_CLOSE = "closed by us"


_LIVE = (State.AWAIT_FIRST, State.HANDSHAKE, State.NEEDS_KEY, State.OPEN)
#: states in which handshake messages are read
_HANDSHAKING = (State.AWAIT_FIRST, State.HANDSHAKE)

_TRANSITIONS: dict[tuple[State, _Input], State] = {
    (State.AWAIT_FIRST, _Input.FIRST_NOISE): State.HANDSHAKE,
    (State.AWAIT_FIRST, _Input.FIRST_ROUTING): State.ROUTED,
    (State.HANDSHAKE, _Input.VERIFIED): State.OPEN,
    (State.HANDSHAKE, _Input.KEY_UNKNOWN): State.NEEDS_KEY,
    (State.NEEDS_KEY, _Input.VERIFIED): State.OPEN,
    **{(s, _Input.PEER_CLOSED): State.CLOSED for s in _LIVE},
    **{(s, _Input.REMOTE_ERROR): State.CLOSED for s in _LIVE},
    **{(s, _Input.LOCAL_CLOSE): State.CLOSED for s in (*_LIVE, State.ROUTED)},
}


class StreamConnection:
    """The sans-I/O core of one TCP or WebSocket connection (see the module docstring).

    ``hs`` decides the Noise role (``hs.initiator``). ``routing_request`` (msgpack bytes) is
    sent first, before any Noise message, when we dial a router (§7). ``max_message`` bounds
    transport messages both ways (``MESSAGE_MAX_SIZE``).
    """

    def __init__(
        self,
        hs: PeerHandshake,
        kind: Kind,
        *,
        routing_request: bytes | None = None,
        max_message: int = MESSAGE_MAX_SIZE,
        early_data_max: int = EARLY_DATA_MAX,
    ) -> None:
        if kind not in ("tcp", "ws"):
            raise ValueError(f"no stream framing {kind!r}")
        if routing_request is not None and not routing_request:
            raise ValueError("an empty RoutingRequest")
        self.hs = hs
        self.kind: Kind = kind
        self._tcp = kind == "tcp"
        self._max_message = max_message
        self._early_max = early_data_max
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        #: handshake messages received so far (the responder's first frame included)
        self._received = 0
        self._transport: TcpTransport | WsTransport | None = None
        #: the TCP transport while OPEN (the hot paths' one check), else None
        self._tcp_open: TcpTransport | None = None
        # TCP: frames of the handshake phase; what follows the last one stays in it
        self._reader = HandshakeFrameReader(max_len=HANDSHAKE_MAX_MESSAGE, max_frames=1)
        # WS: messages that arrived while the initiator's key was looked up
        self._early: list[bytes] = []
        self._early_cost = 0
        #: why the connection closed, once CLOSED
        self.close_reason = ""
        if hs.initiator or routing_request is not None:
            self._state = State.HANDSHAKE
            if routing_request is not None:
                self._send_handshake(routing_request)
            if hs.initiator:
                self._send_handshake(self._hs_call(hs.initial_message))
            else:  # responder behind a router: -> e, then -> s, se
                self._reader.max_frames = 2
        else:
            self._state = State.AWAIT_FIRST
            self._reader.max_len = _FIRST_FRAME_MAX

    # --- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is State.OPEN

    @property
    def peer_name(self) -> str | None:
        """The authenticated peer, once OPEN."""
        return self.hs.peer_name if self._state is State.OPEN else None

    @property
    def buffered(self) -> int:
        """Bytes held for input not yet returned as events (partial frames, early data,
        the message in progress)."""
        if self._transport is not None:
            return self._transport.buffered
        return self._reader.buffered + sum(len(m) for m in self._early)

    def _transition(self, what: _Input) -> None:
        new = _TRANSITIONS.get((self._state, what))
        if new is None:
            raise LocalProtocolError(f"{what.value} is not possible in state {self._state.name}")
        self._state = new
        if new is not State.OPEN:
            self._tcp_open = None

    def next_event(self) -> Event | None:
        """The next event, or None when there is none until more input arrives."""
        return self._events.popleft() if self._events else None

    # --- input ---------------------------------------------------------------------------

    def receive_data(self, data: BytesLike) -> None:
        """TCP: bytes from the socket; ``b""`` is the end of the stream (as h11)."""
        if not self._tcp:
            raise LocalProtocolError("receive_data on a WebSocket connection")
        if not self._accepting_input():
            return
        if not data:
            self._peer_closed()
            return
        state = self._state
        if state is State.OPEN:
            assert isinstance(self._transport, TcpTransport)
            try:
                messages = self._transport.feed(data)
            except FramingError as e:
                self._fail(RemoteProtocolError(f"framing: {e}"))
                return
            self._events.extend(map(MessageReceived, messages))
            return
        reader = self._reader
        try:
            if state is State.NEEDS_KEY:
                reader.feed(data)  # done: nothing is parsed, the bytes wait for the key
                self._check_early()
                return
            frames = reader.feed(data)
            while frames and self._state in _HANDSHAKING:
                self._on_handshake_message(frames.pop(0))
                if not frames and self._state in _HANDSHAKING:
                    frames = reader.feed(b"")  # the limits changed: parse what is buffered
        except FramingError as e:
            self._fail(RemoteProtocolError(f"handshake framing: {e}"))
            return
        except HandshakeError as e:
            self._fail(RemoteProtocolError(str(e), handshake=True))
            return
        if self._state is State.NEEDS_KEY:
            self._check_early()

    def receive_open_data(self, data: BytesLike) -> list[bytes] | None:
        """TCP, OPEN, no events pending: :meth:`receive_data` returning the messages in
        ``data`` directly instead of as events (the hot path of an open session). None when
        it does not apply: then call :meth:`receive_data`. A framing error leaves a
        ProtocolError event (and returns no messages), exactly as :meth:`receive_data` would."""
        tcp = self._tcp_open
        if tcp is None or self._events or not data:
            return None
        try:
            return tcp.feed(data)
        except FramingError as e:
            self._fail(RemoteProtocolError(f"framing: {e}"))
            return []

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def receive_message(self, message: BytesLike, *, text: bool = False) -> None:
        """WebSocket: one whole message; ``text`` for a text message (a protocol error, §5).
        The adapter caps messages at one Noise message before it buffers them."""
        if self._tcp:
            raise LocalProtocolError("receive_message on a TCP connection")
        if not self._accepting_input():
            return
        if text:
            self._fail(RemoteProtocolError("text frame on a binary protocol"))
            return
        state = self._state
        try:
            if state is State.OPEN:
                assert isinstance(self._transport, WsTransport)
                messages = self._transport.feed_ws_message(message)
                self._events.extend(map(MessageReceived, messages))
            elif state is State.NEEDS_KEY:
                # capped like any WS message of ours before it is kept (§5)
                self._early.append(check_handshake_message(message, NOISE_MAX_MESSAGE))
                self._early_cost += len(message) + _EARLY_MESSAGE_COST
                self._check_early()
            else:
                cap = _FIRST_FRAME_MAX if state is State.AWAIT_FIRST else HANDSHAKE_MAX_MESSAGE
                self._on_handshake_message(check_handshake_message(message, cap))
        except FramingError as e:
            self._fail(RemoteProtocolError(f"framing: {e}"))
        except HandshakeError as e:
            self._fail(RemoteProtocolError(str(e), handshake=True))

    def receive_eof(self) -> None:
        """The peer closed its side (TCP: as ``receive_data(b"")``)."""
        if self._accepting_input():
            self._peer_closed()

    def provide_key(self, key: bytes | None) -> None:
        """Answer :class:`KeyNeeded`: the initiator's networking key, or None if its name is
        not in HNS (then the handshake fails)."""
        if self._state is not State.NEEDS_KEY:
            raise LocalProtocolError(f"provide_key in state {self._state.name}")
        try:
            self.hs.provide_key(key)
        except HandshakeError as e:
            self._fail(RemoteProtocolError(str(e), handshake=True))
            return
        self._open()

    def _accepting_input(self) -> bool:
        if self._state is State.ROUTED:
            raise LocalProtocolError("the connection was handed to the router")
        return self._state is not State.CLOSED

    # --- output --------------------------------------------------------------------------

    def send_message(self, plaintext: BytesLike) -> None:
        """Frame and encrypt one transport message (OPEN only); collect it with
        :meth:`data_to_send` (TCP: one buffer; WS: one binary message per chunk)."""
        transport = self._transport
        if self._state is not State.OPEN or transport is None:
            raise LocalProtocolError(f"send_message in state {self._state.name}")
        try:
            if isinstance(transport, TcpTransport):
                self._out.append(transport.encrypt_message(plaintext))
            else:
                self._out += transport.encrypt_message(plaintext)
        except FramingError as e:  # our own message: empty, too large, nonces exhausted
            raise LocalProtocolError(f"cannot send: {e}") from None

    def encrypt_open(self, plaintext: BytesLike) -> bytes | None:
        """TCP, OPEN, nothing else waiting to be sent: :meth:`send_message` returning the
        framed, encrypted message itself (the hot path of an open session) instead of adding
        it to :meth:`data_to_send`. None where that does not apply (then use send_message)."""
        tcp = self._tcp_open
        if tcp is None or self._out:
            return None
        try:
            return tcp.encrypt_message(plaintext)
        except FramingError as e:  # our own message: empty, too large, nonces exhausted
            raise LocalProtocolError(f"cannot send: {e}") from None

    def data_to_send(self) -> list[bytes]:
        """What to write, in order: TCP byte-stream pieces (one per message or handshake
        message), or WebSocket binary messages."""
        out, self._out = self._out, []
        return out

    def take_buffered(self) -> list[bytes]:
        """ROUTED only: what arrived behind the RoutingRequest (TCP: bytes; WS: messages), to
        be piped on before anything else, untouched. Returns it once."""
        if self._state is not State.ROUTED:
            raise LocalProtocolError(f"take_buffered in state {self._state.name}")
        if self._tcp:
            rest = self._reader.take_remaining()
            return [rest] if rest else []
        early, self._early = self._early, []
        return early

    def close(self, reason: str = "closed") -> None:
        """Close from our side (idempotent): later input is ignored, sending is an error."""
        if self._state is State.CLOSED:
            return
        self._transition(_Input.LOCAL_CLOSE)
        self._release(reason)

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _hs_call(fn: Callable[[], bytes]) -> bytes:
        try:
            return fn()
        except HandshakeError as e:  # our own first step cannot fail unless we misuse hs
            raise LocalProtocolError(f"handshake: {e}") from None

    def _send_handshake(self, message: bytes) -> None:
        if self._tcp:
            try:
                self._out.append(encode_handshake_frame(message))
            except FramingError as e:
                raise LocalProtocolError(f"our handshake message: {e}") from None
        else:
            self._out.append(message)

    def _on_handshake_message(self, message: bytes) -> None:
        """One handshake-phase frame (TCP) or message (WS). Raises HandshakeError or
        FramingError for the caller to turn into a ProtocolError."""
        hs = self.hs
        self._received += 1
        if self._state is State.AWAIT_FIRST:
            if classify_first_frame(message) is FirstFrame.ROUTING_REQUEST:
                self._transition(_Input.FIRST_ROUTING)
                self._events.append(RoutingRequestReceived(message))
                return
            self._transition(_Input.FIRST_NOISE)
            self._reader.max_len = HANDSHAKE_MAX_MESSAGE
            self._reader.max_frames = 2
        if hs.initiator:  # <- e, ee, s, es: check the responder, answer -> s, se, done
            reply = hs.receive(message)
            assert reply is not None
            self._send_handshake(reply)
            self._open()
            return
        if self._received == 1:  # -> e: answer <- e, ee, s, es
            reply = hs.receive(message)
            assert reply is not None
            self._send_handshake(reply)
            return
        hs.receive(message)  # -> s, se: check the initiator
        if hs.needs_key is not None:
            self._transition(_Input.KEY_UNKNOWN)
            self._events.append(KeyNeeded(hs.needs_key))
            return
        self._open()

    def _open(self) -> None:
        hs = self.hs
        if not hs.complete or hs.peer_name is None:  # PeerHandshake guarantees it
            raise LocalProtocolError("handshake ended without an authenticated peer")
        send, recv = hs.split()
        self._transition(_Input.VERIFIED)
        self._events.append(
            HandshakeComplete(hs.peer_name, False if hs.initiator else hs.peer_proxy_request)
        )
        if self._tcp:
            tcp = self._transport = self._tcp_open = TcpTransport(send, recv, self._max_message)
            rest = self._reader.take_remaining()
            if rest:
                try:
                    self._events.extend(map(MessageReceived, tcp.feed(rest)))
                except FramingError as e:
                    self._fail(RemoteProtocolError(f"framing: {e}"))
            return
        ws = self._transport = WsTransport(send, recv, self._max_message)
        early, self._early = self._early, []
        self._early_cost = 0
        try:
            for m in early:
                self._events.extend(map(MessageReceived, ws.feed_ws_message(m)))
        except FramingError as e:
            self._fail(RemoteProtocolError(f"framing: {e}"))

    def _check_early(self) -> None:
        held = self._reader.buffered if self._tcp else self._early_cost
        if held > self._early_max:
            self._fail(
                RemoteProtocolError(
                    f"more than {self._early_max} bytes before the handshake completed"
                )
            )

    def _peer_closed(self) -> None:
        during = "" if self._state is State.OPEN else " during the handshake"
        reason = f"closed by peer{during}"
        self._transition(_Input.PEER_CLOSED)
        self._release(reason)
        self._events.append(ConnectionClosed(reason))

    def _fail(self, error: RemoteProtocolError) -> None:
        self._transition(_Input.REMOTE_ERROR)
        self._release(error.reason)
        self._events.append(ProtocolError(error))

    def _release(self, reason: str) -> None:
        """CLOSED: drop every buffer (a partial message of up to MESSAGE_MAX_SIZE included)."""
        self.close_reason = reason
        self._transport = self._tcp_open = None
        self._reader = HandshakeFrameReader(max_len=0, max_frames=0)
        self._early = []
        self._early_cost = 0
        self._out = []
