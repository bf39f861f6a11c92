"""WebSocket transport: plain ``ws://ip:port``, one binary WS message per Noise message.

The transport framing (length prefix inside the encryption, 65,519-byte chunks) is the sans-I/O
:mod:`hnet.core.framing.ws`; this adapter only moves WS messages. Text frames are a protocol error.
WS messages larger than one Noise message are refused by the WS layer before it buffers them.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, WebSocketException

from hnet import limits
from hnet.core.framing.errors import FramingError
from hnet.core.framing.ws import WsTransport
from hnet.core.handshake import PeerHandshake
from hnet.core.noise import CipherState
from hnet.transport.session import (
    Deliver,
    ResolveKey,
    Session,
    SessionClosed,
    SessionError,
    run_handshake,
)

#: WS-level cap: one Noise message (handshake or transport chunk).
WS_MAX_SIZE = limits.NOISE_MAX_MESSAGE

WS_OPTIONS: dict[str, object] = {
    "max_size": WS_MAX_SIZE,
    "compression": None,
    "ping_interval": limits.WS_PING_INTERVAL,
    "ping_timeout": limits.WS_PING_INTERVAL,
    "max_queue": 16,
}


async def recv_binary(ws: Connection) -> bytes:
    try:
        msg = await ws.recv()
    except ConnectionClosed:
        raise SessionClosed("connection closed") from None
    except WebSocketException as e:
        raise SessionError(f"websocket: {e}") from None
    if isinstance(msg, str):
        raise SessionError("text frame on a binary protocol")
    return msg


class WsHandshakeChannel:
    def __init__(self, ws: Connection) -> None:
        self.ws = ws

    async def send_handshake(self, message: bytes) -> None:
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            raise SessionError("connection closed during handshake") from None

    async def recv_handshake(self) -> bytes:
        try:
            msg = await recv_binary(self.ws)
        except SessionClosed:
            raise SessionError("connection closed during handshake") from None
        if len(msg) > limits.HANDSHAKE_MAX_MESSAGE:
            raise SessionError(f"handshake message of {len(msg)} bytes")
        return msg


class WsSession(Session):
    transport = "ws"

    def __init__(
        self,
        ws: Connection,
        ciphers: tuple[CipherState, CipherState],
        *,
        peer_name: str,
        initiator: bool,
        proxy_request: bool,
    ) -> None:
        peer = ws.remote_address
        super().__init__(
            peer_name=peer_name,
            initiator=initiator,
            proxy_request=proxy_request,
            remote=f"{peer[0]}:{peer[1]}" if peer else "?",
        )
        self._ws = ws
        self._core = WsTransport(*ciphers)

    async def _write(self, data: bytes) -> None:
        if self.closed:
            raise SessionClosed(self.close_reason or "closed")
        # One writer per session: nonces follow the order the chunks are written.
        chunks = self._core.encrypt_message(data)
        transport = self._ws.transport

        async def send_all() -> None:
            for ct in chunks:
                await self._ws.send(ct)

        sending = asyncio.ensure_future(send_all())

        async def done() -> None:
            await asyncio.wait({sending})

        try:
            await self._wait_progress(done, transport.get_write_buffer_size)
        finally:
            if not sending.done():
                sending.cancel()
        exc = None if sending.cancelled() else sending.exception()
        if exc is not None:
            self.abort(f"write failed: {exc}")
            raise SessionClosed(str(exc))

    async def _read_loop(self, deliver: Deliver) -> None:
        core = self._core
        while not self.closed:
            try:
                data = await recv_binary(self._ws)
            except SessionClosed:
                self.abort("closed by peer")
                return
            self.touch()
            try:
                messages = core.feed_ws_message(data)
            except FramingError as e:
                raise SessionError(f"framing: {e}") from None
            for m in messages:
                self.messages_in += 1
                pending = deliver(self, m)
                if pending is not None:  # standalone use only (see Deliver)
                    await pending

    def _close_transport(self) -> None:
        # Close the TCP connection under the WS without a closing handshake, which a hostile
        # peer could stall; what we had written is still flushed.
        self._ws.transport.close()


async def connect(
    host: str, port: int, hs: PeerHandshake, routing_request: bytes | None = None
) -> WsSession:
    """Dial ``ws://host:port``, run the handshake (caller bounds the time).

    With ``routing_request`` (msgpack bytes) the host is a router: the request is sent first,
    as one binary message, and the handshake then runs end to end with the node the router
    pairs us with (``hs`` is the responder when answering a ConnectionRequest).
    """
    ws = await ws_connect(
        f"ws://{format_host(host)}:{port}",
        open_timeout=None,
        **WS_OPTIONS,  # type: ignore[arg-type]
    )
    try:
        channel = WsHandshakeChannel(ws)
        if routing_request is not None:
            await channel.send_handshake(routing_request)
        await run_handshake(hs, channel)
    except BaseException:
        ws.transport.close()
        raise
    assert hs.peer_name is not None
    return WsSession(
        ws,
        hs.split(),
        peer_name=hs.peer_name,
        initiator=hs.initiator,
        proxy_request=False if hs.initiator else hs.peer_proxy_request,
    )


async def read_first_message(ws: Connection) -> bytes:
    """A responder's first message: Noise ``-> e`` (32 bytes) or a RoutingRequest; classify it
    with :func:`hnet.core.framing.classify_first_frame`."""
    return await WsHandshakeChannel(ws).recv_handshake()


async def accept(
    ws: Connection,
    hs: PeerHandshake,
    first: bytes | None = None,
    resolve: ResolveKey | None = None,
) -> WsSession:
    """Run the responder side on an accepted WS connection (caller bounds the time).

    ``first`` is the first message when the caller has read it already (to route a
    RoutingRequest).
    """
    await run_handshake(hs, WsHandshakeChannel(ws), first=first, resolve=resolve)
    assert hs.peer_name is not None
    return WsSession(
        ws,
        hs.split(),
        peer_name=hs.peer_name,
        initiator=False,
        proxy_request=hs.peer_proxy_request,
    )


def format_host(host: str) -> str:
    """Bracket IPv6 literals for a URL."""
    return f"[{host}]" if ":" in host else host
