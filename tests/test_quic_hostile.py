"""Hostile peers are cut off with an error code, and the listener's other sessions carry on."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from hnet import limits
from hnet.core.quic import backend as qb
from hnet.core.quic.streams import MessageSealer
from hnet.transport.quic import QuicAppError
from hnet.transport.session import Session, SessionError
from tests.test_quic_util import (
    BACKENDS,
    HOST,
    Book,
    Client,
    RawQuicClient,
    Server,
    dial,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

Attack = Callable[[RawQuicClient, Server], Awaitable[None]]


async def echo(session: Session, data: bytes) -> None:
    await session.send(data)


async def check_alive(client: Client, tag: bytes) -> None:
    msg = tag + os.urandom(100)
    await client.session.send(msg)
    assert await client.recv() == msg


async def run_attack(
    backend: str,
    attack: Attack,
    expected: QuicAppError,
    *,
    noise: bool,
    handshake_timeout: float = 5.0,
) -> tuple[Server, RawQuicClient]:
    """A good client and an attacker on one listener: the attacker is cut off with
    ``expected``; the good client's session works before and after."""
    book = Book()
    alice, bob, mallory = book.add("alice.os"), book.add("bob.os"), book.add("mallory.os")
    async with running_server(
        book, bob, backend, on_message=echo, handshake_timeout=handshake_timeout
    ) as (server, port):
        good = await dial(book, alice, "bob.os", port, backend)
        raw = RawQuicClient(backend)
        try:
            await check_alive(good, b"before")
            await raw.open(port)
            if noise:
                await raw.noise_handshake(book.initiator(mallory, "bob.os"))
                await wait_until(lambda: len(server.sessions) == 2)
            await attack(raw, server)
            t = await raw.wait_closed()
            assert t.by_peer, t
            assert t.frame_type is None, t  # an application close, with our code
            assert t.error_code == expected, t
            await check_alive(good, b"after")
            assert not good.session.closed
            if noise:
                hostile = next(s for s in server.sessions if s.peer_name == "mallory.os")
                await wait_until(lambda: hostile.closed and len(server.errors) == 1)
                assert isinstance(server.errors[0], SessionError)
                assert expected.name in str(server.errors[0])
            else:
                await wait_until(
                    lambda: (
                        server.listener.stats["handshake_failures"]
                        + server.listener.stats["handshake_timeouts"]
                        == 1
                    )
                )
                assert len(server.sessions) == 1
            await wait_until(lambda: server.listener.connections == 1)
            return server, raw
        finally:
            raw.close()
            await good.aclose()


def header_frame(raw: RawQuicClient, sid: int, claimed: int) -> bytes:
    assert raw.send_keys is not None
    cipher = raw.send_keys.cipher(sid)
    ct = cipher.encrypt(struct.pack(">I", claimed))
    return struct.pack(">H", len(ct)) + ct


@pytest.mark.parametrize("backend", BACKENDS)
async def test_stream_flood_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        # streams that never finish: each holds a slot until the limit is crossed
        for i in range(limits.QUIC_MAX_STREAMS + 1):
            raw.send(4 * (i + 1), b"\x00")

    await run_attack(backend, attack, QuicAppError.LIMIT_EXCEEDED, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_garbage_on_a_stream_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(4, struct.pack(">H", 20) + os.urandom(500), fin=True)

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_app_stream_before_handshake_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(4, b"\x00\x14" + os.urandom(20), fin=True)  # no Noise at all

    await run_attack(backend, attack, QuicAppError.EARLY_DATA, noise=False)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_oversize_claimed_length_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(4, header_frame(raw, 4, limits.MESSAGE_MAX_SIZE + 1))

    await run_attack(backend, attack, QuicAppError.LIMIT_EXCEEDED, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_undelivered_bytes_beyond_the_window_are_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        # each claim is legal; together they exceed QUIC_SEND_WINDOW
        n = limits.QUIC_SEND_WINDOW // limits.MESSAGE_MAX_SIZE + 1
        for i in range(n):
            raw.send(4 * (i + 1), header_frame(raw, 4 * (i + 1), limits.MESSAGE_MAX_SIZE))

    await run_attack(backend, attack, QuicAppError.LIMIT_EXCEEDED, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unidirectional_stream_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(2, b"hello", fin=True)

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_stream_reset_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(4, header_frame(raw, 4, 1000))
        raw.conn._c.reset_stream(4, 7)
        raw.flush()

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_data_on_the_return_half_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        hostile = next(s for s in server.sessions if s.peer_name == "mallory.os")
        await hostile.send(b"a message on stream 1")
        await raw.wait_for(lambda: 1 in raw.fins)
        raw.send(1, b"this half must stay empty")

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_message_replayed_on_another_stream_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        assert raw.send_keys is not None
        wire = MessageSealer(raw.send_keys.cipher(4), b"pay mallory 10").seal_all()
        raw.send(4, wire, fin=True)
        await wait_until(
            lambda: b"pay mallory 10" in [bytes(v) for v in raw.streams.values()] or 4 in raw.fins
        )
        raw.send(8, wire, fin=True)  # the same bytes again, on the next stream

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_oversize_handshake_frame_is_cut_off(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        raw.send(0, struct.pack(">H", limits.HANDSHAKE_MAX_MESSAGE + 1))

    await run_attack(backend, attack, QuicAppError.HANDSHAKE_FAILED, noise=False)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_silent_peer_hits_the_handshake_deadline(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        pass  # QUIC handshake done, then nothing

    server, _ = await run_attack(
        backend, attack, QuicAppError.HANDSHAKE_TIMEOUT, noise=False, handshake_timeout=0.5
    )
    assert server.listener.stats["handshake_timeouts"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pending_handshakes_are_bounded(backend: str):
    """max_pending=1: a stalled handshake holds the only slot; a second client's Initials are
    dropped until the deadline frees it, then it gets in (QUIC retransmits its Initial)."""
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, handshake_timeout=0.5, max_pending=1) as (
        server,
        port,
    ):
        raw = RawQuicClient(backend)
        try:
            await raw.open(port)
            assert server.listener.pending == 1
            good = await dial(book, alice, "bob.os", port, backend)
            await good.aclose()
            stats = server.listener.stats
            assert stats["busy_drops"] >= 1 and stats["handshake_timeouts"] == 1
        finally:
            raw.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unknown_version_gets_version_negotiation(backend: str):
    book = Book()
    bob = book.add("bob.os")
    async with running_server(book, bob, backend) as (server, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            dcid, scid = os.urandom(8), os.urandom(8)
            packet = bytes([0xC0]) + struct.pack(">I", 0x1A2A3A4A) + bytes([8]) + dcid
            packet += bytes([8]) + scid
            packet += bytes(1200 - len(packet))
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, packet, (HOST, port))
            async with asyncio.timeout(5):
                reply, _ = await loop.sock_recvfrom(sock, 2048)
            assert reply[1:5] == b"\x00\x00\x00\x00"  # a Version Negotiation packet
            assert struct.pack(">I", qb.QUIC_VERSION_1) in reply
            # a short datagram (amplification bait) is never answered: send it, then a full
            # one; datagrams are handled in order, so once the second is answered the first
            # was handled, and only the second counts
            await loop.sock_sendto(sock, packet[:100], (HOST, port))
            await loop.sock_sendto(sock, packet, (HOST, port))
            async with asyncio.timeout(5):
                reply, _ = await loop.sock_recvfrom(sock, 2048)
            assert reply[1:5] == b"\x00\x00\x00\x00"
            assert server.listener.stats["version_negotiations"] == 2
        finally:
            sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_crash_inside_one_connection_stays_there(backend: str):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        hostile = next(s for s in server.sessions if s.peer_name == "mallory.os")

        def boom(*args: object) -> None:
            raise RuntimeError("simulated bug")

        hostile._drv.core.receive_datagram = boom  # type: ignore[method-assign]
        raw.send(4, b"anything")

    book = Book()
    alice, bob, mallory = book.add("alice.os"), book.add("bob.os"), book.add("mallory.os")
    async with running_server(book, bob, backend, on_message=echo) as (server, port):
        good = await dial(book, alice, "bob.os", port, backend)
        raw = RawQuicClient(backend)
        try:
            await raw.open(port)
            await raw.noise_handshake(book.initiator(mallory, "bob.os"))
            await wait_until(lambda: len(server.sessions) == 2)
            await attack(raw, server)
            t = await raw.wait_closed()
            assert t.error_code == QuicAppError.INTERNAL_ERROR
            await check_alive(good, b"after")
            hostile = server.sessions[1]
            await wait_until(lambda: hostile.closed)
            assert "internal error" in hostile.close_reason
        finally:
            raw.close()
            await good.aclose()


async def test_aioquic_receive_window_slides_instead_of_doubling():
    """aioquic alone doubles MAX_DATA on received bytes (gaps included); ours keeps the credit
    ahead of what was delivered in order within QUIC_MAX_DATA, bounding out-of-order buffering."""
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, "aioquic") as (server, port):
        client = await dial(book, alice, "bob.os", port, "aioquic")
        try:
            for _ in range(2):
                await client.session.send(bytes(limits.MESSAGE_MAX_SIZE))
            await wait_until(lambda: len(server.received) == 2, timeout=30)
            quic = server.sessions[0]._drv.core.quic
            ahead = quic._c._local_max_data.value - quic.consumed
            assert quic.consumed > 2 * limits.MESSAGE_MAX_SIZE
            assert ahead <= limits.QUIC_MAX_DATA
        finally:
            await client.aclose()
