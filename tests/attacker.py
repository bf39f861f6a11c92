"""A raw peer for hostile tests: real sockets, the production handshake, then whatever bytes
we like.

The honest part is :class:`hnet.core.stream.StreamConnection` (the code every node runs):
:func:`tcp_handshake` over asyncio streams, :func:`ws_handshake` over a ``websockets`` client
connection (an independent WebSocket implementation, so our server is checked against it).
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.connection import Connection

from hnet import keys
from hnet.core.framing.tcp import TcpTransport
from hnet.core.handshake import PeerHandshake
from hnet.core.stream import (
    ConnectionClosed,
    MessageReceived,
    ProtocolError,
    StreamConnection,
)
from hnet.transport.tcp import HANDSHAKE_READ_SIZE, drive_handshake
from hns import Registry


def register_attacker(registry_path: Path, name: str = "mallory.os") -> Ed25519PrivateKey:
    key = keys.generate()
    Registry(registry_path).register(name, keys.public_bytes(key), ip="127.0.0.1", ports={"tcp": 9})
    return key


async def tcp_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hs: PeerHandshake,
    routing_request: bytes | None = None,
) -> StreamConnection:
    """The production handshake over a TCP stream we opened; the open connection."""
    conn = StreamConnection(hs, "tcp", routing_request=routing_request)

    async def feed() -> None:
        conn.receive_data(await reader.read(HANDSHAKE_READ_SIZE))

    def flush() -> None:
        for buf in conn.data_to_send():
            writer.write(buf)

    await drive_handshake(conn, feed, flush, None)
    await writer.drain()
    return conn


async def ws_handshake(
    ws: Connection, hs: PeerHandshake, routing_request: bytes | None = None
) -> StreamConnection:
    """The production handshake over a ``websockets`` client connection we opened."""
    conn = StreamConnection(hs, "ws", routing_request=routing_request)
    out: list[bytes] = []

    async def feed() -> None:
        for m in out:
            await ws.send(m)
        out.clear()
        msg = await ws.recv()
        if isinstance(msg, str):
            conn.receive_message(msg.encode(), text=True)
        else:
            conn.receive_message(msg)

    def flush() -> None:
        out.extend(conn.data_to_send())

    await drive_handshake(conn, feed, flush, None)
    for m in out:
        await ws.send(m)
    return conn


class _ConnCore:
    """A StreamConnection seen as the TcpTransport-like core RawTcpPeer drives."""

    def __init__(self, conn: StreamConnection) -> None:
        self.conn = conn

    def encrypt_message(self, plaintext: bytes) -> bytes:
        self.conn.send_message(plaintext)
        return b"".join(self.conn.data_to_send())

    def feed(self, data: bytes) -> list[bytes]:
        self.conn.receive_data(data)
        out: list[bytes] = []
        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, MessageReceived):
                out.append(ev.data)
            elif isinstance(ev, ProtocolError | ConnectionClosed):
                raise ConnectionResetError(ev.reason)
        return out


class RawTcpPeer:
    """An authenticated TCP session we drive by hand."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        core: TcpTransport | StreamConnection,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.core = _ConnCore(core) if isinstance(core, StreamConnection) else core

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        our_name: str,
        key: Ed25519PrivateKey,
        target: str,
        registry_path: Path,
        routing_request: bytes | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> RawTcpPeer:
        registry = Registry(registry_path)

        def lookup(name: str) -> bytes | None:
            rec = registry.lookup(name)
            return rec.net_key_bytes if rec else None

        reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
        hs = PeerHandshake(
            initiator=True, our_name=our_name, signing_key=key, lookup=lookup, expected_peer=target
        )
        try:
            async with asyncio.timeout(5):
                conn = await tcp_handshake(reader, writer, hs, routing_request)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, conn)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_message(self, plaintext: bytes) -> None:
        await self.send_raw(self.core.encrypt_message(plaintext))

    async def recv_messages(self, timeout: float = 5.0) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("closed")
                out = self.core.feed(data)
                if out:
                    return out

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the other side closes the connection within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


def claim_length(n: int) -> bytes:
    return struct.pack(">I", n)
