"""Socket ends of a router's pipes: TCP (raw bytes) and WebSocket (whole binary messages).

Each implements :class:`hnet.core.passthroughs.PipeEnd`; :func:`open_end` dials one for a
router that pipes to a direct target. A WebSocket message is one Noise message, forwarded untouched.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, WebSocketException

from hnet import limits
from hnet.core.passthroughs import PipeEnd, PipeError
from hnet.transport import ws as ws_transport
from hnet.transport.tcp import tune_socket

__all__ = ["TcpEnd", "WsEnd", "open_end"]


class TcpEnd:
    """A TCP socket; what its reader already buffered (bytes behind a RoutingRequest) is
    forwarded first, untouched."""

    kind = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"

    async def recv(self) -> bytes | None:
        try:
            data = await self._reader.read(limits.PASSTHROUGH_READ_SIZE)
        except (ConnectionError, OSError):
            return None
        return data or None

    async def send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise PipeError(f"{self.remote} closed")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise PipeError(f"{self.remote}: {e}") from None

    def close(self) -> None:
        self._writer.close()


class WsEnd:
    """A WebSocket connection; binary messages are forwarded one by one, a text frame ends
    the pipe (both ends speak a binary protocol)."""

    kind = "ws"

    def __init__(self, ws: Connection) -> None:
        self._ws = ws
        peer = ws.remote_address
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"

    async def recv(self) -> bytes | None:
        try:
            msg = await self._ws.recv()
        except ConnectionClosed:
            return None
        except WebSocketException as e:
            raise PipeError(f"{self.remote}: websocket: {e}") from None
        if isinstance(msg, str):
            raise PipeError(f"{self.remote}: text frame")
        return msg

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except (ConnectionClosed, OSError) as e:
            raise PipeError(f"{self.remote}: {e}") from None

    def close(self) -> None:
        # No closing handshake (a hostile peer could stall it); written data is still flushed.
        self._ws.transport.close()


async def open_end(kind: str, host: str, port: int) -> PipeEnd:
    """Open a raw connection of ``kind`` (``tcp`` or ``ws``) for a pipe; the caller bounds
    the time."""
    if kind == "tcp":
        reader, writer = await asyncio.open_connection(
            host, port, limit=limits.PASSTHROUGH_READ_SIZE
        )
        tune_socket(writer)
        return TcpEnd(reader, writer)
    if kind == "ws":
        ws = await ws_connect(
            f"ws://{ws_transport.format_host(host)}:{port}",
            open_timeout=None,
            **ws_transport.WS_OPTIONS,  # type: ignore[arg-type]
        )
        return WsEnd(ws)
    raise ValueError(f"no passthrough over {kind!r}")
