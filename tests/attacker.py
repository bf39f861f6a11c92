"""A raw peer for hostile tests: real sockets, our own handshake, then whatever bytes we like."""

from __future__ import annotations

import asyncio
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.framing.tcp import TcpTransport
from hnet.core.handshake import PeerHandshake
from hnet.transport.session import run_handshake
from hnet.transport.tcp import TcpHandshakeChannel
from hns import Registry


def register_attacker(registry_path, name: str = "mallory.os") -> Ed25519PrivateKey:
    key = keys.generate()
    Registry(registry_path).register(name, keys.public_bytes(key), ip="127.0.0.1", ports={"tcp": 9})
    return key


class RawTcpPeer:
    """An authenticated TCP session we drive by hand."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, core: TcpTransport
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.core = core

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        our_name: str,
        key: Ed25519PrivateKey,
        target: str,
        registry_path,
    ) -> RawTcpPeer:
        registry = Registry(registry_path)

        def lookup(name: str) -> bytes | None:
            rec = registry.lookup(name)
            return rec.net_key_bytes if rec else None

        reader, writer = await asyncio.open_connection(host, port)
        hs = PeerHandshake(
            initiator=True, our_name=our_name, signing_key=key, lookup=lookup, expected_peer=target
        )
        async with asyncio.timeout(5):
            await run_handshake(hs, TcpHandshakeChannel(reader, writer))
        return cls(reader, writer, TcpTransport(*hs.split()))

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
