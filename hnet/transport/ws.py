"""WebSocket transport: plain ``ws://ip:port``, one binary WS message per Noise message.

Two thin layers over asyncio streams, no WebSocket server library:

* :class:`WsStream` drives websockets' sans-I/O ``ServerProtocol``/``ClientProtocol``: the
  HTTP upgrade (:func:`open_server`, :func:`open_client`), RFC 6455 frames, and our keepalive
  (a ping every ``ping_interval``, the connection dropped when no pong comes within
  ``ping_timeout``; docs/protocol.md §5). WS messages larger than one Noise message are
  refused from their frame header, before their payload is buffered; compression is never
  negotiated. Because we own the TCP accept, the listener counts a WS connection in the
  handshake gate from its accept, HTTP upgrade included.
* :class:`WsSession` and :func:`connect` / :func:`accept_or_route` feed whole messages into a
  :class:`~hnet.core.stream.StreamConnection`, which holds every rule of the protocol (the
  first-message rule, §4/§7; the handshake, §3; the framing, §5; text frames are an error).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHandshake,
    WebSocketException,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from hnet import limits
from hnet.core.handshake import PeerHandshake
from hnet.core.stream import (
    RoutingRequestReceived,
    StreamConnection,
)
from hnet.transport.session import Deliver, ResolveKey, Session, SessionClosed, SessionError
from hnet.transport.tcp import (
    HANDSHAKE_READ_SIZE,
    READ_SIZE,
    Routed,
    RoutingRequestRefused,
    deliver_events,
    drive_handshake,
    tune_socket,
)

__all__ = [
    "WS_MAX_SIZE",
    "WS_UPGRADE_MAX",
    "WsSession",
    "WsStream",
    "accept",
    "accept_or_route",
    "connect",
    "format_host",
    "open_client",
    "open_server",
]

#: WS-level cap on a message (fragments together): one Noise message, handshake or transport.
WS_MAX_SIZE = limits.NOISE_MAX_MESSAGE
WS_UPGRADE_MAX = limits.WS_UPGRADE_MAX

#: (payload, is_text) of one whole WS message
WsMessage = tuple[bytes, bool]
#: Largest message that travels as one WS frame (its u32 length prefix is encrypted with it).
_ONE_FRAME = limits.NOISE_MAX_PLAINTEXT - 4


def format_host(host: str) -> str:
    """Bracket IPv6 literals for a URL."""
    return f"[{host}]" if ":" in host else host


class WsStream:
    """One WebSocket connection over asyncio streams (binary messages, keepalive).

    :meth:`recv` returns whole messages; :meth:`send_messages` writes binary messages without
    waiting (the caller waits through :meth:`drain` when :attr:`write_buffer_size` is over
    :attr:`high_water`). Pings from the peer are answered while it takes what we write.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        protocol: ServerProtocol | ClientProtocol,
        *,
        ping_interval: float | None = limits.WS_PING_INTERVAL,
        ping_timeout: float = limits.WS_PING_INTERVAL,
        pending: Sequence[object] = (),
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._p = protocol
        self._loop = asyncio.get_running_loop()
        self._inbox: deque[WsMessage] = deque()
        self._parts: list[bytes] = []
        self._parts_text = False
        self._eof = False
        self._closed = False
        #: why the connection ended, when we know better than "closed by peer"
        self.close_reason: str | None = None
        transport = writer.transport
        self.high_water: int = transport.get_write_buffer_limits()[1]
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload = b""
        #: keepalive counters (diagnostics)
        self.pings_sent = 0
        self.pongs_received = 0
        self._handle(pending)
        if ping_interval:
            self._ping_timer = self._loop.call_later(ping_interval, self._ping)

    # --- state ---------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self._closed and self._p.state is OPEN and not self._writer.is_closing()

    @property
    def write_buffer_size(self) -> int:
        return self._writer.transport.get_write_buffer_size()

    # --- receiving -----------------------------------------------------------------------

    async def recv(self) -> WsMessage | None:
        """The next whole message as (payload, is_text), or None once the connection has
        ended. Raises a WebSocketException when the peer broke RFC 6455 (a frame above
        :data:`WS_MAX_SIZE` among them)."""
        p = self._p
        while not self._inbox:
            if self._eof or self._closed:
                return None
            data = await self._reader.read(READ_SIZE)
            if data:
                p.receive_data(data)
            else:
                p.receive_eof()
                self._eof = True
            self._write_control(p.data_to_send())
            self._handle(p.events_received())
            exc = p.parser_exc
            if exc is not None and not isinstance(exc, EOFError):
                self._eof = True
                if isinstance(exc, WebSocketException):
                    raise exc
                raise InvalidHandshake(f"bad frame: {exc}")  # e.g. a close reason not UTF-8
        return self._inbox.popleft()

    def _handle(self, events: Sequence[object]) -> None:
        for ev in events:
            if not isinstance(ev, Frame):
                continue
            op = ev.opcode
            if op is Opcode.BINARY or op is Opcode.TEXT:
                if ev.fin:
                    self._inbox.append((bytes(ev.data), op is Opcode.TEXT))
                else:
                    self._parts = [bytes(ev.data)]
                    self._parts_text = op is Opcode.TEXT
            elif op is Opcode.CONT:
                # websockets checks the sum of the fragments against WS_MAX_SIZE
                self._parts.append(bytes(ev.data))
                if ev.fin:
                    self._inbox.append((b"".join(self._parts), self._parts_text))
                    self._parts = []
            elif op is Opcode.PONG:
                self._on_pong(bytes(ev.data))
            elif op is Opcode.CLOSE:
                self._eof = True
                rcvd = self._p.close_rcvd
                code = rcvd.code if rcvd is not None else "none"
                self.close_reason = self.close_reason or f"closed by peer (WebSocket close {code})"
            # PING: websockets queued the PONG already (written by _write_control)

    def _write_control(self, out: list[bytes]) -> None:
        """What the protocol wrote in answer to input: pongs, a close echo, end of stream.
        While the peer is not taking what we write, answers are skipped (RFC 6455 §5.5.3
        lets a pong answer only the latest ping), so pings cannot grow our buffer."""
        if not out:
            return
        eof = out[-1] == b""
        data = [b for b in out if b]
        if data and self._writer.transport.get_write_buffer_size() <= self.high_water:
            self._writer.write(data[0] if len(data) == 1 else b"".join(data))
        if eof:
            self.close()

    # --- sending -------------------------------------------------------------------------

    def send_messages(self, messages: list[bytes]) -> None:
        """Write binary messages now (one write); the caller checked :attr:`writable`."""
        p = self._p
        for m in messages:
            p.send_binary(m)
        out = p.data_to_send()
        if out:
            self._writer.write(out[0] if len(out) == 1 else b"".join(out))

    async def drain(self) -> None:
        await self._writer.drain()

    # --- keepalive -----------------------------------------------------------------------

    def _ping(self) -> None:
        self._ping_timer = None
        if self._closed or self._ping_interval is None:
            return
        if self._pong_timer is None and self.writable:
            self._ping_payload = os.urandom(4)
            self._p.send_ping(self._ping_payload)
            self._writer.write(b"".join(self._p.data_to_send()))
            self.pings_sent += 1
            self._pong_timer = self._loop.call_later(self._ping_timeout, self._pong_missed)
        self._ping_timer = self._loop.call_later(self._ping_interval, self._ping)

    def _on_pong(self, data: bytes) -> None:
        if self._pong_timer is not None and data == self._ping_payload:
            self._pong_timer.cancel()
            self._pong_timer = None
            self.pongs_received += 1

    def _pong_missed(self) -> None:
        self._pong_timer = None
        if self._closed:
            return
        self.close_reason = f"no pong within {self._ping_timeout:g} s"
        self.abort()  # the peer is not answering: do not wait for it to take our buffer

    # --- closing -------------------------------------------------------------------------

    def _stop_timers(self) -> None:
        for t in (self._ping_timer, self._pong_timer):
            if t is not None:
                t.cancel()
        self._ping_timer = self._pong_timer = None

    def close(self) -> None:
        """Close the TCP connection without a closing handshake (a hostile peer could stall
        one); what we wrote is still flushed. Idempotent."""
        self._closed = True
        self._stop_timers()
        self._writer.close()

    def abort(self) -> None:
        """Drop the TCP connection now, unsent data included."""
        self._closed = True
        self._stop_timers()
        self._writer.transport.abort()


def _write_all(writer: asyncio.StreamWriter, out: list[bytes]) -> None:
    data = [b for b in out if b]
    if data:
        writer.write(b"".join(data))


async def open_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    ping_interval: float | None = limits.WS_PING_INTERVAL,
    ping_timeout: float = limits.WS_PING_INTERVAL,
) -> WsStream:
    """The server side of the HTTP upgrade on an accepted socket (the caller bounds the time
    and closes the socket on failure). No path is checked, no extension accepted (§5)."""
    p = ServerProtocol(max_size=WS_MAX_SIZE)
    got = 0
    while True:
        data = await reader.read(HANDSHAKE_READ_SIZE)
        if not data:
            raise SessionError("closed during the WebSocket upgrade")
        got += len(data)
        p.receive_data(data)
        events = p.events_received()
        if events:
            break
        if p.handshake_exc is not None:
            _write_all(writer, p.data_to_send())  # e.g. 431 for an oversized header
            raise p.handshake_exc
        if got > WS_UPGRADE_MAX:
            raise SessionError(f"WebSocket upgrade request over {WS_UPGRADE_MAX} bytes")
    request = events[0]
    if not isinstance(request, Request):
        raise InvalidHandshake("no HTTP request")
    p.send_response(p.accept(request))
    _write_all(writer, p.data_to_send())
    if p.state is not OPEN:
        raise p.handshake_exc or InvalidHandshake("WebSocket upgrade refused")
    return WsStream(
        reader,
        writer,
        p,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        pending=events[1:],
    )


async def open_client(
    host: str,
    port: int,
    *,
    ping_interval: float | None = limits.WS_PING_INTERVAL,
    ping_timeout: float = limits.WS_PING_INTERVAL,
) -> WsStream:
    """Dial ``ws://host:port`` and run the client side of the HTTP upgrade (the caller
    bounds the time)."""
    reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    try:
        tune_socket(writer)
        p = ClientProtocol(parse_uri(f"ws://{format_host(host)}:{port}"), max_size=WS_MAX_SIZE)
        p.send_request(p.connect())
        _write_all(writer, p.data_to_send())
        got = 0
        while True:
            data = await reader.read(HANDSHAKE_READ_SIZE)
            if data:
                p.receive_data(data)
            else:
                p.receive_eof()
            events = p.events_received()
            if p.handshake_exc is not None:
                raise p.handshake_exc
            if p.state is OPEN and any(isinstance(e, Response) for e in events):
                break
            if not data:
                raise SessionError("closed during the WebSocket upgrade")
            got += len(data)
            if got > WS_UPGRADE_MAX:
                raise SessionError(f"WebSocket upgrade response over {WS_UPGRADE_MAX} bytes")
    except BaseException:
        writer.close()
        raise
    return WsStream(
        reader,
        writer,
        p,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        pending=[e for e in events if isinstance(e, Frame)],
    )


class WsSession(Session):
    transport = "ws"

    def __init__(
        self,
        ws: WsStream,
        conn: StreamConnection,
        *,
        peer_name: str,
        initiator: bool,
        proxy_request: bool,
    ) -> None:
        super().__init__(
            peer_name=peer_name,
            initiator=initiator,
            proxy_request=proxy_request,
            remote=ws.remote,
        )
        self._ws = ws
        self._conn = conn

    def _write_nowait(self, data: bytes) -> bool:
        # Only a message of one WS frame; a larger one goes to the writer, frame by frame.
        ws, conn = self._ws, self._conn
        if (
            len(data) > _ONE_FRAME
            or not ws.writable
            or not conn.is_open
            or ws.write_buffer_size > ws.high_water
        ):
            return False
        conn.send_message(data)
        ws.send_messages(conn.data_to_send())
        return True

    async def _write(self, data: bytes) -> None:
        ws, conn = self._ws, self._conn
        if self.closed or not ws.writable or not conn.is_open:
            raise SessionClosed(self.close_reason or "closed")
        # Every chunk is encrypted now (nonces in order; one writer per session), then written
        # one frame per write, waiting while the socket is behind: a 10 MB message is never
        # copied whole into the transport's buffer (as websockets' own flow control does).
        conn.send_message(data)
        for frame in conn.data_to_send():
            if not ws.writable:
                raise SessionClosed(self.close_reason or "closed")
            ws.send_messages([frame])
            if ws.write_buffer_size > ws.high_water:
                await self._wait_progress(ws.drain, lambda: ws.write_buffer_size)

    async def _read_loop(self, deliver: Deliver) -> None:
        ws, conn = self._ws, self._conn
        while True:
            # Events first: messages may have arrived right behind the handshake.
            if (
                await deliver_events(
                    self, conn, deliver, lambda: ws.close_reason or "closed by peer"
                )
                or self.closed
            ):
                return
            try:
                item = await ws.recv()
            except WebSocketException as e:
                raise SessionError(f"websocket: {e}") from None
            if item is None:
                conn.receive_eof()
            else:
                self.touch()
                conn.receive_message(item[0], text=item[1])

    def _close_transport(self) -> None:
        self._conn.close(self.close_reason or "closed")
        self._ws.close()


def _feeder(ws: WsStream, conn: StreamConnection) -> Callable[[], Awaitable[None]]:
    async def feed() -> None:
        item = await ws.recv()
        if item is None:
            conn.receive_eof()
        else:
            conn.receive_message(item[0], text=item[1])

    return feed


def _flusher(ws: WsStream, conn: StreamConnection) -> Callable[[], None]:
    def flush() -> None:
        out = conn.data_to_send()
        if out and ws.writable:
            ws.send_messages(out)

    return flush


def _session(ws: WsStream, conn: StreamConnection) -> WsSession:
    hs = conn.hs
    assert hs.peer_name is not None
    return WsSession(
        ws,
        conn,
        peer_name=hs.peer_name,
        initiator=hs.initiator,
        proxy_request=False if hs.initiator else hs.peer_proxy_request,
    )


async def connect(
    host: str,
    port: int,
    hs: PeerHandshake,
    routing_request: bytes | None = None,
    *,
    resolve: ResolveKey | None = None,
    ping_interval: float | None = limits.WS_PING_INTERVAL,
    ping_timeout: float = limits.WS_PING_INTERVAL,
) -> WsSession:
    """Dial ``ws://host:port``, run the handshake (caller bounds the time).

    With ``routing_request`` (msgpack bytes) the host is a router: the request is sent first,
    as one binary message, and the handshake then runs end to end with the node the router
    pairs us with (``hs`` is the responder when answering a ConnectionRequest, §7).
    """
    ws = await open_client(host, port, ping_interval=ping_interval, ping_timeout=ping_timeout)
    try:
        conn = StreamConnection(hs, "ws", routing_request=routing_request)
        await drive_handshake(conn, _feeder(ws, conn), _flusher(ws, conn), resolve)
    except BaseException:
        ws.close()
        raise
    return _session(ws, conn)


async def accept_or_route(
    ws: WsStream, hs: PeerHandshake, resolve: ResolveKey | None = None
) -> WsSession | Routed:
    """The responder side of an upgraded connection (caller bounds the time and closes it on
    failure): a session, or :class:`~hnet.transport.tcp.Routed` when the first message is a
    RoutingRequest (docs/protocol.md §4, §7); its later messages stay in ``ws``."""
    if hs.initiator:
        raise ValueError("accept needs a responder handshake")
    conn = StreamConnection(hs, "ws")
    ev = await drive_handshake(conn, _feeder(ws, conn), _flusher(ws, conn), resolve)
    if isinstance(ev, RoutingRequestReceived):
        return Routed(ev.first_frame, conn.take_buffered())
    return _session(ws, conn)


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hs: PeerHandshake,
    resolve: ResolveKey | None = None,
    *,
    ping_interval: float | None = limits.WS_PING_INTERVAL,
    ping_timeout: float = limits.WS_PING_INTERVAL,
) -> WsSession:
    """Upgrade an accepted TCP socket and run the responder side (caller bounds the time and
    closes the socket on failure); a RoutingRequest is refused."""
    ws = await open_server(reader, writer, ping_interval=ping_interval, ping_timeout=ping_timeout)
    try:
        result = await accept_or_route(ws, hs, resolve)
        if isinstance(result, Routed):
            raise RoutingRequestRefused("routing request refused: this node does not route")
    except BaseException:
        ws.close()
        raise
    return result
