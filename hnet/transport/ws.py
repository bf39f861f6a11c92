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
    IdleWatchdog,
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
        self._send_lock = asyncio.Lock()

    async def send(self, message: bytes) -> None:
        if self.closed:
            raise SessionClosed(self.close_reason or "closed")
        async with self._send_lock:
            # Encrypted under the lock: nonces follow the order the chunks are written.
            chunks = self._core.encrypt_message(message)
            try:
                for ct in chunks:
                    await self._ws.send(ct)
            except (ConnectionClosed, OSError) as e:
                self.abort(f"write failed: {e}")
                raise SessionClosed(str(e)) from None
        self.messages_out += 1
        self.touch()

    async def run(self, deliver: Deliver, idle_timeout: float) -> None:
        watchdog = IdleWatchdog(self, idle_timeout)
        try:
            while not self.closed:
                try:
                    data = await recv_binary(self._ws)
                except SessionClosed:
                    self.abort("closed by peer")
                    return
                except SessionError as e:
                    self.abort(str(e))
                    raise
                self.touch()
                try:
                    messages = self._core.feed_ws_message(data)
                except FramingError as e:
                    self.abort(f"framing: {e}")
                    raise SessionError(str(e)) from None
                for m in messages:
                    self.messages_in += 1
                    await deliver(self, m)
        finally:
            watchdog.cancel()
            self.abort(self.close_reason or "done")

    def abort(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
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


async def accept(ws: Connection, hs: PeerHandshake, first: bytes | None = None) -> WsSession:
    """Run the responder side on an accepted WS connection (caller bounds the time).

    ``first`` is the first message when the caller has read it already (to route a
    RoutingRequest).
    """
    await run_handshake(hs, WsHandshakeChannel(ws), first=first)
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
