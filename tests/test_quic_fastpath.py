"""The small-message fast paths: ``seal_small`` / ``open_whole`` give exactly what the general
sealer and opener give (bytes on the wire, errors, claims), and a 64-byte request/response over a
session takes about one datagram each way (the acknowledgements ride along with the messages)."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from hnet import limits
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.core.quic.streams import (
    DIR_I2R,
    HEADER_FRAME_LEN,
    DirectionKeys,
    MessageOpener,
    MessageSealer,
    open_whole,
    seal_small,
)
from hnet.transport.quic import udp as quic_udp
from hnet.transport.session import Session
from tests.test_quic_util import BACKENDS, Book, dial, running_server

pytestmark = pytest.mark.timeout(60)

H = bytes(range(32))
K_I2R = bytes(range(100, 132))


def keys() -> DirectionKeys:
    return DirectionKeys(K_I2R, H, DIR_I2R)


def test_seal_small_is_the_general_sealer_byte_for_byte() -> None:
    k = keys()
    for size in (1, 5, 64, 1000, limits.NOISE_MAX_PLAINTEXT):
        msg = os.urandom(size)
        assert seal_small(k.key(4), msg) == MessageSealer(k.cipher(4), msg).seal_all()
    # the docs/quic.md test vector: "hello" from the initiator on stream 4
    wire = seal_small(k.key(4), b"hello")
    assert wire.hex() == (
        "0014a668eb6c5ea46e2dea1fa91d7895fcf684d61b370015931fa9a3f72f52c658b76612d767721829276fb39a"
    )
    for bad in (b"", bytes(limits.NOISE_MAX_PLAINTEXT + 1)):
        with pytest.raises(ValueError):
            seal_small(k.key(4), bad)


def test_open_whole_opens_what_the_opener_opens() -> None:
    k = keys()
    claims: list[int] = []
    for size in (1, 64, limits.NOISE_MAX_PLAINTEXT):
        msg = os.urandom(size)
        wire = seal_small(k.key(8), msg)
        assert open_whole(k.key(8), wire, on_claim=claims.append) == msg
        assert MessageOpener(k.cipher(8)).feed(wire, True) == msg
    assert claims == [1, 64, limits.NOISE_MAX_PLAINTEXT]


def _two_chunks(k: DirectionKeys, sid: int) -> bytes:
    return MessageSealer(k.cipher(sid), os.urandom(limits.NOISE_MAX_PLAINTEXT + 1)).seal_all()


def test_open_whole_leaves_anything_else_to_the_opener_untouched() -> None:
    k = keys()
    good = seal_small(k.key(4), b"x" * 64)
    wrong_key = seal_small(k.key(8), b"x" * 64)
    # header claiming 63 bytes in front of a 64-byte chunk frame
    c = k.cipher(4)
    lying = struct.pack(">H", 20) + c.encrypt(struct.pack(">I", 63)) + good[HEADER_FRAME_LEN:]
    cases = [
        good[:-1],  # truncated
        good + b"\x00",  # trailing byte
        good[:HEADER_FRAME_LEN],  # header only
        b"\x00\x15" + good[2:],  # wrong header prefix
        wrong_key,  # header does not authenticate
        lying,
        _two_chunks(k, 4),
    ]
    for wire in cases:
        claims: list[int] = []
        assert open_whole(k.key(4), wire, on_claim=claims.append) is None
        assert claims == []
        # and the general opener, on a fresh cipher of the stream, decides as it always did
        opener = MessageOpener(k.cipher(4))
        if wire is cases[-1]:
            assert opener.feed(wire, True) is not None
        else:
            with pytest.raises(QuicProtocolError):
                opener.feed(wire, True)


def test_open_whole_tampered_chunk_and_refused_claim() -> None:
    k = keys()
    wire = bytearray(seal_small(k.key(4), b"y" * 64))
    wire[-1] ^= 1
    with pytest.raises(QuicProtocolError) as e:
        open_whole(k.key(4), bytes(wire))
    assert e.value.code == QuicAppError.PROTOCOL_VIOLATION

    def refuse(n: int) -> None:
        raise QuicProtocolError(QuicAppError.LIMIT_EXCEEDED, f"no room for {n}")

    with pytest.raises(QuicProtocolError) as e:
        open_whole(k.key(4), seal_small(k.key(4), b"z" * 10), on_claim=refuse)
    assert e.value.code == QuicAppError.LIMIT_EXCEEDED
    with pytest.raises(QuicProtocolError):  # above the opener's limit: the opener's error
        w = seal_small(k.key(4), b"z" * 10)
        assert open_whole(k.key(4), w, max_message=9) is None
        MessageOpener(k.cipher(4), max_message=9).feed(w, True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_small_round_trip_datagrams(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One 64 B request and its reply: the server's QUIC acknowledgement and delivery FIN go
    with the reply, the client's with its next request (was ~3.5 datagrams each way on qh3)."""
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    sent: list[int] = []
    orig = quic_udp.UdpSocket.sendto

    def sendto(self: quic_udp.UdpSocket, data: bytes, addr: tuple[object, ...]) -> None:
        sent.append(len(data))
        orig(self, data, addr)

    monkeypatch.setattr(quic_udp.UdpSocket, "sendto", sendto)

    async def echo(session: Session, data: bytes) -> None:
        await session.send(data)

    async with running_server(book, bob, backend, on_message=echo) as (_server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            msg = os.urandom(64)
            for _ in range(20):  # warm up
                await client.session.send(msg)
                assert await client.recv() == msg
            await asyncio.sleep(0.05)
            sent.clear()
            n = 100
            for _ in range(n):
                await client.session.send(msg)
                assert await client.recv() == msg
            # both directions together; the bare library takes ~2 each way on qh3
            assert len(sent) / n <= (2.5 if backend == "qh3" else 4.0), len(sent) / n
        finally:
            await client.aclose()
