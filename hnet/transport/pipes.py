"""Socket ends of a router's pipes: TCP (raw bytes) and WebSocket (whole binary messages).

Each implements :class:`hnet.core.passthroughs.PipeEnd`; :func:`open_end` dials one for a
router that pipes to a direct target. An accepted end starts with what arrived behind the
RoutingRequest (``initial``, from :meth:`hnet.core.stream.StreamConnection.take_buffered`):
those bytes or messages are forwarded first, untouched, then whatever the socket delivers
(docs/protocol.md §7 "Routed connections": the router takes no part in the handshake). A
WebSocket message is one Noise message, forwarded as one message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from websockets.exceptions import WebSocketException

from hnet import limits
from hnet.core.passthroughs import PipeEnd, PipeError
from hnet.transport import ws as ws_transport
from hnet.transport.tcp import tune_socket

__all__ = ["TcpEnd", "WsEnd", "open_end"]


class TcpEnd:
    """A TCP socket; ``initial`` bytes (those behind a RoutingRequest, already read by the
    handshake core) come out of :meth:`recv` first, then what the reader buffered and reads."""

    kind = "tcp"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: Iterable[bytes] = (),
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._initial = deque(b for b in initial if b)
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"

    async def recv(self) -> bytes | None:
        if self._initial:
            return self._initial.popleft()
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
    """A WebSocket connection; ``initial`` messages first, then binary messages one by one.
    A text frame ends the pipe (both ends speak a binary protocol)."""

    kind = "ws"

    def __init__(self, ws: ws_transport.WsStream, initial: Iterable[bytes] = ()) -> None:
        self._ws = ws
        self._initial = deque(initial)
        self.remote = ws.remote

    async def recv(self) -> bytes | None:
        if self._initial:
            return self._initial.popleft()
        try:
            item = await self._ws.recv()
        except WebSocketException as e:
            raise PipeError(f"{self.remote}: websocket: {e}") from None
        except (ConnectionError, OSError):
            return None
        if item is None:
            return None
        data, text = item
        if text:
            raise PipeError(f"{self.remote}: text frame")
        return data

    async def send(self, data: bytes) -> None:
        ws = self._ws
        if not ws.writable:
            raise PipeError(f"{self.remote} closed")
        ws.send_messages([data])
        try:
            await ws.drain()
        except (ConnectionError, OSError) as e:
            raise PipeError(f"{self.remote}: {e}") from None

    def close(self) -> None:
        # No closing handshake (a hostile peer could stall it); written data is still flushed.
        self._ws.close()


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
        return WsEnd(await ws_transport.open_client(host, port))
    raise ValueError(f"no passthrough over {kind!r}")
