"""TCP transport: the reference framing over asyncio streams.

Handshake frames are ``[u16 BE len][noise message]``; the transport framing and encryption live
in :mod:`hnet.core.framing.tcp` (sans-I/O). Every length is checked before anything is buffered.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from hnet import limits
from hnet.core.framing.errors import FramingError
from hnet.core.framing.tcp import TcpTransport
from hnet.core.handshake import NOISE_E_LEN, PeerHandshake
from hnet.core.noise import CipherState
from hnet.transport.session import (
    Deliver,
    ResolveKey,
    Session,
    SessionClosed,
    SessionError,
    run_handshake,
)

READ_SIZE = 256 * 1024
_U16 = struct.Struct(">H")


class TcpHandshakeChannel:
    """Handshake messages over a TCP stream, each ``[u16 BE len][msg]``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send_handshake(self, message: bytes) -> None:
        self.writer.write(_U16.pack(len(message)) + message)
        await self.writer.drain()

    async def recv_frame(self, max_len: int) -> bytes:
        try:
            (n,) = _U16.unpack(await self.reader.readexactly(2))
            if n > max_len:
                raise SessionError(f"handshake frame of {n} bytes exceeds {max_len}")
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise SessionError("connection closed during handshake") from None

    async def recv_handshake(self) -> bytes:
        return await self.recv_frame(limits.HANDSHAKE_MAX_MESSAGE)


def tune_socket(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass


class TcpSession(Session):
    transport = "tcp"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ciphers: tuple[CipherState, CipherState],
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
        self._core = TcpTransport(*ciphers)
        self._high_water = writer.transport.get_write_buffer_limits()[1]

    def _write_nowait(self, data: bytes) -> bool:
        transport = self._writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() > self._high_water:
            return False
        transport.write(self._core.encrypt_message(data))
        return True

    async def _write(self, data: bytes) -> None:
        w = self._writer
        if self.closed or w.is_closing():
            raise SessionClosed(self.close_reason or "closed")
        # Encrypt and write in one synchronous step: nonces follow write order, one write.
        w.write(self._core.encrypt_message(data))
        transport = w.transport
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            await self._wait_progress(w.drain, transport.get_write_buffer_size)

    async def _read_loop(self, deliver: Deliver) -> None:
        reader = self._reader
        core = self._core
        while not self.closed:
            data = await reader.read(READ_SIZE)
            if not data:
                self.abort("closed by peer")
                return
            self.touch()
            try:
                messages = core.feed(data)
            except FramingError as e:
                raise SessionError(f"framing: {e}") from None
            for m in messages:
                self.messages_in += 1
                pending = deliver(self, m)
                if pending is not None:  # standalone use only (see Deliver)
                    await pending

    def _close_transport(self) -> None:
        self._writer.close()


class RoutingRequestRefused(SessionError):
    """The first frame was a RoutingRequest and the caller does not route."""


async def connect(
    host: str, port: int, hs: PeerHandshake, routing_request: bytes | None = None
) -> TcpSession:
    """Dial, run the handshake and return the session (caller bounds the time).

    With ``routing_request`` (msgpack bytes) the host is a router: the request is sent first,
    as a ``[u16 BE len][msgpack]`` frame, and the handshake then runs end to end with the
    node the router pairs us with. ``hs`` is usually the initiator; it is the responder when
    an indirect node answers a ConnectionRequest through its router.
    """
    reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    try:
        tune_socket(writer)
        channel = TcpHandshakeChannel(reader, writer)
        if routing_request is not None:
            await channel.send_handshake(routing_request)
        await run_handshake(hs, channel)
    except BaseException:
        writer.close()
        raise
    assert hs.peer_name is not None
    return TcpSession(
        reader,
        writer,
        hs.split(),
        peer_name=hs.peer_name,
        initiator=hs.initiator,
        proxy_request=False if hs.initiator else hs.peer_proxy_request,
    )


async def read_first_frame(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """A responder's first frame: Noise ``-> e`` (32 bytes) or a RoutingRequest (up to
    ROUTING_REQUEST_MAX); classify it with :func:`hnet.core.framing.classify_first_frame`."""
    tune_socket(writer)
    channel = TcpHandshakeChannel(reader, writer)
    return await channel.recv_frame(max(limits.ROUTING_REQUEST_MAX, NOISE_E_LEN))


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hs: PeerHandshake,
    first: bytes | None = None,
    resolve: ResolveKey | None = None,
) -> TcpSession:
    """Run the responder side on an accepted socket (caller bounds the time).

    ``first`` is the first frame when the caller has read it already (to route a
    RoutingRequest); otherwise it is read here, and a RoutingRequest is refused.
    """
    if first is None:
        first = await read_first_frame(reader, writer)
    if len(first) != NOISE_E_LEN:
        raise RoutingRequestRefused("routing request refused: this node does not route")
    await run_handshake(hs, TcpHandshakeChannel(reader, writer), first=first, resolve=resolve)
    assert hs.peer_name is not None
    return TcpSession(
        reader,
        writer,
        hs.split(),
        peer_name=hs.peer_name,
        initiator=False,
        proxy_request=hs.peer_proxy_request,
    )
