"""TCP transport: a thin asyncio-streams adapter over :class:`~hnet.core.stream.StreamConnection`.

Everything the protocol says (the responder's first-frame rule, docs/protocol.md §4 and §7;
the handshake and its identity checks, §3; the framing and its bounds, §4) happens in the
sans-I/O core. This module only reads bytes into it, writes what it returns, answers its
:class:`~hnet.core.stream.KeyNeeded` through an async lookup, and wraps the open connection in
a :class:`TcpSession`. :func:`drive_handshake` is shared with :mod:`hnet.transport.ws`.

``connect`` dials; ``accept`` answers on an accepted socket and refuses a RoutingRequest;
``accept_or_route`` (the listener's) returns :class:`Routed` for one instead, with whatever
arrived behind it, for the router to pipe on first.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import cast

from hnet import limits
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.stream import (
    ConnectionClosed,
    HandshakeComplete,
    KeyNeeded,
    LocalProtocolError,
    MessageReceived,
    ProtocolError,
    RoutingRequestReceived,
    State,
    StreamConnection,
)
from hnet.transport.session import (
    Deliver,
    ResolveKey,
    Session,
    SessionClosed,
    SessionError,
)

__all__ = [
    "HANDSHAKE_READ_SIZE",
    "READ_SIZE",
    "Routed",
    "RoutingRequestRefused",
    "TcpSession",
    "accept",
    "accept_or_route",
    "connect",
    "deliver_events",
    "drive_handshake",
    "tune_socket",
]

#: Bytes read per call once a session is open (and the StreamReader's buffer limit).
READ_SIZE = 256 * 1024
_WRITE_NOWAIT_MAX = limits.WRITE_NOWAIT_MAX
HANDSHAKE_READ_SIZE = limits.HANDSHAKE_READ_SIZE


def tune_socket(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass


class RoutingRequestRefused(SessionError):
    """The first frame was a RoutingRequest and the caller does not route."""


@dataclass(frozen=True)
class Routed:
    """An accepted connection that opened with a RoutingRequest (docs/protocol.md §7)."""

    first: bytes
    #: what arrived behind it (TCP: bytes; WS: messages), to be piped on first, untouched
    buffered: list[bytes]


def handshake_exception(ev: ProtocolError | ConnectionClosed) -> Exception:
    """What a failed handshake raises: HandshakeError when the handshake refused the peer
    (Noise or an identity check, §3), SessionError for anything else."""
    if isinstance(ev, ConnectionClosed):
        return SessionError(ev.reason)
    if ev.error.handshake:
        return HandshakeError(ev.reason)
    return SessionError(ev.reason)


async def drive_handshake(
    conn: StreamConnection,
    feed: Callable[[], Awaitable[None]],
    flush: Callable[[], None],
    resolve: ResolveKey | None,
) -> HandshakeComplete | RoutingRequestReceived:
    """Run ``conn`` until it is OPEN (or ROUTED); the caller bounds the time.

    ``feed`` reads once from the socket into ``conn``; ``flush`` writes what ``conn`` has to
    send. A KeyNeeded is answered with ``resolve`` (None: the name is unknown). Raises
    HandshakeError or SessionError. Events after the returned one (messages that arrived
    right behind the last handshake message) stay in ``conn`` for the session.
    """
    flush()
    while True:
        ev = conn.next_event()
        if ev is None:
            if conn.state is State.CLOSED:  # conn.close() during the handshake: our bug
                raise LocalProtocolError(f"handshake driven after close ({conn.close_reason})")
            await feed()
            flush()
            continue
        if isinstance(ev, HandshakeComplete | RoutingRequestReceived):
            return ev
        if isinstance(ev, KeyNeeded):
            key = await resolve(ev.name) if resolve is not None else None
            if conn.state is State.NEEDS_KEY:
                conn.provide_key(key)
                flush()
            continue
        if isinstance(ev, ProtocolError | ConnectionClosed):
            raise handshake_exception(ev)
        raise AssertionError(f"{type(ev).__name__} before the handshake completed")


class TcpSession(Session):
    transport = "tcp"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: StreamConnection,
        *,
        peer_name: str,
        initiator: bool,
        proxy_request: bool,
    ) -> None:
        peer = writer.get_extra_info("peername")
        super().__init__(
            peer_name=peer_name,
            initiator=initiator,
            proxy_request=proxy_request,
            remote=f"{peer[0]}:{peer[1]}" if peer else "?",
        )
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self._transport = writer.transport
        self._high_water = writer.transport.get_write_buffer_limits()[1]

    def _write_nowait(self, data: bytes) -> bool:
        if len(data) > _WRITE_NOWAIT_MAX:
            return False  # large: the writer sends it and waits for the socket to drain
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size() > self._high_water:
            return False
        conn = self._conn
        framed = conn.encrypt_open(data)  # None unless OPEN with nothing else to send
        if framed is not None:
            transport.write(framed)  # the whole framed message: one write
            return True
        if not conn.is_open:
            return False
        conn.send_message(data)
        for buf in conn.data_to_send():
            transport.write(buf)
        return True

    async def _write(self, data: bytes) -> None:
        w = self._writer
        conn = self._conn
        if self.closed or w.is_closing() or not conn.is_open:
            raise SessionClosed(self.close_reason or "closed")
        # Encrypt and write in one synchronous step: nonces follow write order, one write.
        # A large message goes as a view: what the socket does not take at once is then
        # copied once into the transport's buffer, not first sliced into a new bytes object.
        conn.send_message(data)
        for buf in conn.data_to_send():
            w.write(buf if len(buf) <= _WRITE_NOWAIT_MAX else memoryview(buf))
        transport = w.transport
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            await self._wait_progress(w.drain, transport.get_write_buffer_size)

    async def _read_loop(self, deliver: Deliver) -> None:
        reader = self._reader
        conn = self._conn
        # Events first: messages may have arrived right behind the handshake.
        if await deliver_events(self, conn, deliver, _closed_by_peer) or self.closed:
            return
        if self._direct:
            direct = _DirectReader.attach(self, reader, deliver)
            if direct is not None:
                await direct.done
                return
        read = reader.read
        while True:
            data = await read(READ_SIZE)
            if data:
                self.last_activity = time.monotonic()
                messages = conn.receive_open_data(data)
                if messages is not None:
                    for message in messages:
                        if self.closed:
                            return
                        self.messages_in += 1
                        pending = deliver(self, message)
                        if pending is not None:  # standalone use only (see Deliver)
                            await pending
                    if self.closed:
                        return
                    if not conn.has_events:
                        continue
                    # else a framing error: handled as an event below
                else:
                    conn.receive_data(data)
            else:
                conn.receive_data(data)  # b"": end of stream
            if await deliver_events(self, conn, deliver, _closed_by_peer) or self.closed:
                return

    def _close_transport(self) -> None:
        self._conn.close(self.close_reason or "closed")
        self._writer.close()


def _deliver(
    session: Session, conn: StreamConnection, deliver: Deliver, why_closed: Callable[[], str]
) -> Generator[Awaitable[None], None, bool]:
    """Hand every pending event of an open ``conn`` to the session: messages to ``deliver``
    (yielding what it returns to be awaited, in standalone use), a protocol error raised as
    SessionError (the peer's fault), the peer's close as an abort with ``why_closed()``.
    Returns True once the connection has ended."""
    while (ev := conn.next_event()) is not None:
        if type(ev) is MessageReceived:
            session.messages_in += 1
            pending = deliver(session, ev.data)
            if pending is not None:  # standalone use only (see Deliver)
                yield pending
        elif isinstance(ev, ProtocolError):
            raise SessionError(ev.reason)
        elif isinstance(ev, ConnectionClosed):
            session.abort(why_closed())
            return True
    return False


async def deliver_events(
    session: Session, conn: StreamConnection, deliver: Deliver, why_closed: Callable[[], str]
) -> bool:
    """:func:`_deliver` from a read loop, awaiting what ``deliver`` returns. True once the
    connection has ended. Shared by TCP and WebSocket."""
    steps = _deliver(session, conn, deliver, why_closed)
    try:
        while True:
            await next(steps)
    except StopIteration as done:
        return bool(done.value)


def _closed_by_peer() -> str:
    return "closed by peer"


def deliver_events_now(
    session: Session, conn: StreamConnection, deliver: Deliver, why_closed: Callable[[], str]
) -> bool:
    """:func:`_deliver` for a ``deliver`` that never returns an awaitable (a peer table's),
    callable from a transport callback. True once the connection has ended."""
    steps = _deliver(session, conn, deliver, why_closed)
    try:
        pending = next(steps)
    except StopIteration as done:
        return bool(done.value)
    steps.close()
    raise TypeError(f"deliver returned {type(pending).__name__} on a direct reader")


class _DirectReader(asyncio.Protocol):
    """The open session's protocol in place of the StreamReader's: each chunk the socket
    gives is decrypted and its messages delivered in the transport's own callback, so a
    message costs no wake-up of a reader task (docs/architecture.md, "Stream connection").

    It stands in for the :class:`asyncio.StreamReaderProtocol` it replaces and forwards it
    what the :class:`asyncio.StreamWriter` still needs (write flow control and the end of the
    connection), so ``drain`` and ``wait_closed`` keep working. ``done`` ends like the read
    loop it replaces: a result at the end of the stream, SessionError on a protocol error,
    ConnectionError when the connection is lost with an error.
    """

    def __init__(
        self,
        session: TcpSession,
        stream: asyncio.BaseProtocol,
        deliver: Deliver,
    ) -> None:
        self.session = session
        self.stream = stream
        self.deliver = deliver
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def attach(
        cls, session: TcpSession, reader: asyncio.StreamReader, deliver: Deliver
    ) -> _DirectReader | None:
        """Swap the protocol in (after handing it what the StreamReader holds); None when
        this StreamReader or transport does not allow it (then the caller keeps reading)."""
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        transport = cast(asyncio.Transport, session._writer.transport)
        if not all(hasattr(transport, m) for m in ("get_protocol", "set_protocol")):
            return None
        stream = transport.get_protocol()
        buffered = getattr(reader, "_buffer", None)
        if stream is None or not isinstance(buffered, bytearray) or reader.exception():
            return None
        direct = cls(session, stream, deliver)
        transport.set_protocol(direct)
        held = bytes(buffered)
        buffered.clear()
        if getattr(reader, "_paused", False):  # it had paused the socket: full buffer
            reader._paused = False  # type: ignore[attr-defined]
            transport.resume_reading()
        if held:
            direct.data_received(held)
        if reader.at_eof() or getattr(reader, "_eof", False):
            direct.eof_received()
        if transport.is_closing() and not direct.done.done():
            direct.connection_lost(None)
        return direct

    def _end(self, error: BaseException | None = None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        session = self.session
        session.last_activity = time.monotonic()
        conn = session._conn
        try:
            messages = conn.receive_open_data(data)
            if messages is None:
                conn.receive_data(data)
            else:
                deliver = self.deliver
                for message in messages:
                    if session.closed:
                        break
                    session.messages_in += 1
                    deliver(session, message)
                if session.closed:
                    self._end()
                    return
                if not conn.has_events:
                    return
            if deliver_events_now(session, conn, self.deliver, _closed_by_peer):
                self._end()
        except Exception as e:  # SessionError (the peer's fault) or a bug: the reader task says
            self._end(e)

    def eof_received(self) -> bool:
        if not self.done.done():
            session = self.session
            try:
                session._conn.receive_data(b"")
                deliver_events_now(session, session._conn, self.deliver, _closed_by_peer)
            except Exception as e:
                self._end(e)
            self._end()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._end(ConnectionError(str(exc) or type(exc).__name__))
        else:
            self.eof_received()
        self.stream.connection_lost(exc)

    def pause_writing(self) -> None:
        self.stream.pause_writing()

    def resume_writing(self) -> None:
        self.stream.resume_writing()


def _feeder(reader: asyncio.StreamReader, conn: StreamConnection) -> Callable[[], Awaitable[None]]:
    async def feed() -> None:
        conn.receive_data(await reader.read(HANDSHAKE_READ_SIZE))

    return feed


def _flusher(writer: asyncio.StreamWriter, conn: StreamConnection) -> Callable[[], None]:
    def flush() -> None:
        out = conn.data_to_send()
        if out:  # the handshake phase: a RoutingRequest and ``-> e`` go in one segment
            writer.write(out[0] if len(out) == 1 else b"".join(out))

    return flush


def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: StreamConnection
) -> TcpSession:
    hs = conn.hs
    assert hs.peer_name is not None
    return TcpSession(
        reader,
        writer,
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
) -> TcpSession:
    """Dial, run the handshake and return the session (caller bounds the time).

    With ``routing_request`` (msgpack bytes) the host is a router: the request is sent first,
    as a ``[u16 BE len][msgpack]`` frame, and the handshake then runs end to end with the
    node the router pairs us with. ``hs`` is usually the initiator; it is the responder when
    an indirect node answers a ConnectionRequest through its router (docs/protocol.md §7).
    """
    reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    try:
        tune_socket(writer)
        conn = StreamConnection(hs, "tcp", routing_request=routing_request)
        await drive_handshake(conn, _feeder(reader, conn), _flusher(writer, conn), resolve)
    except BaseException:
        writer.close()
        raise
    return _session(reader, writer, conn)


async def accept_or_route(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hs: PeerHandshake,
    resolve: ResolveKey | None = None,
) -> TcpSession | Routed:
    """The responder side of an accepted socket (caller bounds the time and closes the
    socket on failure): a session, or :class:`Routed` if the first frame is a RoutingRequest
    (docs/protocol.md §4). ``resolve`` finds the key of an initiator we do not know yet."""
    if hs.initiator:
        raise ValueError("accept needs a responder handshake")
    conn = StreamConnection(hs, "tcp")
    ev = await drive_handshake(conn, _feeder(reader, conn), _flusher(writer, conn), resolve)
    if isinstance(ev, RoutingRequestReceived):
        return Routed(ev.first_frame, conn.take_buffered())
    return _session(reader, writer, conn)


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hs: PeerHandshake,
    resolve: ResolveKey | None = None,
) -> TcpSession:
    """Run the responder side on an accepted socket (caller bounds the time); a
    RoutingRequest is refused (this caller does not route)."""
    result = await accept_or_route(reader, writer, hs, resolve)
    if isinstance(result, Routed):
        raise RoutingRequestRefused("routing request refused: this node does not route")
    return result
