"""Replay the fixed-key reference session (interop i2r.bin / r2i.bin) byte for byte, both roles.

Also a WebSocket round trip between two WsTransport objects with the same messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hnet.core.framing import (
    FirstFrame,
    HandshakeFrameReader,
    TcpTransport,
    WsTransport,
    check_handshake_message,
    classify_first_frame,
    encode_handshake_frame,
)
from hnet.core.noise import XXHandshake
from hnet.limits import HANDSHAKE_MAX_MESSAGE, ROUTING_REQUEST_MAX

INTEROP = Path(__file__).resolve().parent.parent / "interop-tests" / "vectors"

ALICE_STATIC = bytes(range(0x00, 0x20))
BOB_STATIC = bytes(range(0x01, 0x21))
ALICE_EPHEMERAL = bytes(range(0x20, 0x40))
BOB_EPHEMERAL = bytes(range(0x41, 0x61))
ALICE_SEED = b"\x11" * 32
BOB_SEED = b"\x22" * 32
HANDSHAKE_HASH = "0f346c1aa1d314d50eda5218d3c4d12b771b312b947a95f5ce55bae2b156de4b"
I2R_SHA256 = "07d0a0cb524c06c70c30a4ee10a8360a0889ef8a1152fe7a28c46604f73734e7"
R2I_SHA256 = "b3ea90f51ad536ea430f498dd029fe9760fd296b7ecc5ea316468a1565041293"


def _vectors() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for line in (INTEROP / "hyperware-msgpack-vectors.tsv").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _type, hexdata = line.split("\t")
        out[name] = bytes.fromhex(hexdata)
    return out


VECTORS = _vectors()
KM_HELLO = VECTORS["km_request_hello"]
KM_BIG = VECTORS["km_big_blob"]
KM_RESPONSE = VECTORS["km_response_context"]
I2R = (INTEROP / "i2r.bin").read_bytes()
R2I = (INTEROP / "r2i.bin").read_bytes()


def _payload(seed: bytes, name: str, noise_static_public: bytes, proxy: bool) -> bytes:
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(noise_static_public)
    return msgpack.packb([1, name, list(sig), proxy], use_bin_type=True)


def _check_payload(payload: bytes, seed: bytes, name: str, remote_static: bytes | None) -> bool:
    assert remote_static is not None
    version, got_name, sig, proxy = msgpack.unpackb(payload)
    assert version == 1 and got_name == name
    pub: Ed25519PublicKey = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    pub.verify(bytes(sig), remote_static)  # raises if bad
    return bool(proxy)


def _splits(data: bytes, size: int) -> Iterator[bytes]:
    for off in range(0, len(data), size):
        yield data[off : off + size]


def test_files_are_the_documented_ones() -> None:
    assert len(I2R) == 150_432 and len(R2I) == 364
    assert hashlib.sha256(I2R).hexdigest() == I2R_SHA256
    assert hashlib.sha256(R2I).hexdigest() == R2I_SHA256
    assert len(KM_BIG) == 150_064


def test_initiator_alice_reproduces_i2r() -> None:
    hs = XXHandshake(True, ALICE_STATIC, ephemeral_private=ALICE_EPHEMERAL)
    sent = bytearray()

    msg1 = hs.write_message()
    assert len(msg1) == 32
    sent += encode_handshake_frame(msg1)

    reader = HandshakeFrameReader(max_len=HANDSHAKE_MAX_MESSAGE, max_frames=1)
    frames = reader.feed(R2I)  # whole stream at once: transport bytes must be left alone
    assert len(frames) == 1 and len(frames[0]) == 206
    assert reader.done
    bob_payload = hs.read_message(frames[0])
    assert _check_payload(bob_payload, BOB_SEED, "bob.os", hs.remote_static) is False

    msg3 = hs.write_message(_payload(ALICE_SEED, "alice.os", hs.static_public, True))
    assert len(msg3) == 168
    sent += encode_handshake_frame(msg3)
    assert hs.is_complete
    assert hs.handshake_hash.hex() == HANDSHAKE_HASH

    transport = TcpTransport(*hs.split())
    sent += transport.encrypt_message(KM_HELLO)
    sent += transport.encrypt_message(KM_BIG)
    assert bytes(sent) == I2R

    assert transport.feed(reader.take_remaining()) == [KM_RESPONSE]
    assert transport.buffered == 0


class Responder:
    """Minimal sans-I/O responder driver over the TCP framing, as a session would use it."""

    def __init__(self) -> None:
        self.hs = XXHandshake(False, BOB_STATIC, ephemeral_private=BOB_EPHEMERAL)
        self.reader = HandshakeFrameReader(max_len=ROUTING_REQUEST_MAX, max_frames=1)
        self.transport: TcpTransport | None = None
        self.out = bytearray()
        self.messages: list[bytes] = []
        self.alice_payload: bytes | None = None

    def feed(self, data: bytes) -> None:
        if self.transport is not None:
            self.messages += self.transport.feed(data)
            return
        frames = self.reader.feed(data)
        while frames:
            self._frame(frames.pop(0))
            if not frames and self.transport is None:
                # the limits may have changed: parse what is already buffered
                frames = self.reader.feed(b"")

    def _frame(self, frame: bytes) -> None:
        if self.reader.max_frames == 1:  # the first frame
            assert classify_first_frame(frame) is FirstFrame.NOISE
            self.hs.read_message(frame)
            payload = _payload(BOB_SEED, "bob.os", self.hs.static_public, False)
            self.out += encode_handshake_frame(self.hs.write_message(payload))
            self.reader.max_len = HANDSHAKE_MAX_MESSAGE
            self.reader.max_frames = 2
            return
        self.alice_payload = self.hs.read_message(frame)
        assert self.hs.is_complete
        self.transport = TcpTransport(*self.hs.split())
        self.out += self.transport.encrypt_message(KM_RESPONSE)
        self.messages += self.transport.feed(self.reader.take_remaining())


@pytest.mark.parametrize("size", [1, 7, 34, 4096, 65_536, len(I2R)])
def test_responder_bob_reproduces_r2i(size: int) -> None:
    bob = Responder()
    for piece in _splits(I2R, size):
        bob.feed(piece)
    assert bytes(bob.out) == R2I
    assert bob.hs.handshake_hash.hex() == HANDSHAKE_HASH
    assert bob.alice_payload is not None
    assert _check_payload(bob.alice_payload, ALICE_SEED, "alice.os", bob.hs.remote_static)
    assert bob.messages == [KM_HELLO, KM_BIG]
    assert bob.transport is not None and bob.transport.buffered == 0


def test_responder_irregular_splits() -> None:
    bob = Responder()
    sizes = [1, 7, 4096, 3, 65_521, 2, 19_000]
    pos = 0
    i = 0
    while pos < len(I2R):
        n = sizes[i % len(sizes)]
        bob.feed(I2R[pos : pos + n])
        pos += n
        i += 1
    assert bytes(bob.out) == R2I
    assert bob.messages == [KM_HELLO, KM_BIG]


def _ws_pair() -> tuple[WsTransport, WsTransport]:
    a = XXHandshake(True, ALICE_STATIC, ephemeral_private=ALICE_EPHEMERAL)
    b = XXHandshake(False, BOB_STATIC, ephemeral_private=BOB_EPHEMERAL)
    # handshake messages travel as whole WS messages
    b.read_message(check_handshake_message(a.write_message()))
    a.read_message(check_handshake_message(b.write_message(b"bob")))
    b.read_message(check_handshake_message(a.write_message(b"alice")))
    return WsTransport(*a.split()), WsTransport(*b.split())


def test_ws_round_trip() -> None:
    alice, bob = _ws_pair()
    wire = alice.encrypt_message(KM_BIG)
    # (4 + 150064) bytes in 65,519-byte chunks: 65519 + 65519 + 19030
    assert [len(m) for m in wire] == [65_535, 65_535, 19_030 + 16]
    got: list[bytes] = []
    for m in wire:
        got += bob.feed_ws_message(m)
    assert got == [KM_BIG]
    for msg in (KM_HELLO, KM_BIG, KM_HELLO):
        results = [bob.feed_ws_message(m) for m in alice.encrypt_message(msg)]
        assert results[-1] == [msg] and all(r == [] for r in results[:-1])
    back = bob.encrypt_message(KM_RESPONSE)
    assert len(back) == 1 and len(back[0]) == 4 + len(KM_RESPONSE) + 16
    assert alice.feed_ws_message(back[0]) == [KM_RESPONSE]


@pytest.mark.parametrize("n", [1, 65_515, 65_516, 65_519, 131_034, 131_035])
def test_ws_chunk_boundaries(n: int) -> None:
    alice, bob = _ws_pair()
    msg = bytes(i & 0xFF for i in range(n))
    wire = alice.encrypt_message(msg)
    assert len(wire) == -(-(n + 4) // 65_519)
    got: list[bytes] = []
    for m in wire:
        got += bob.feed_ws_message(m)
    assert got == [msg]


@pytest.mark.parametrize("n", [1, 65_518, 65_519, 65_520, 131_038, 131_039])
def test_tcp_chunk_boundaries(n: int) -> None:
    alice_hs = XXHandshake(True, ALICE_STATIC)
    bob_hs = XXHandshake(False, BOB_STATIC)
    bob_hs.read_message(alice_hs.write_message())
    alice_hs.read_message(bob_hs.write_message())
    bob_hs.read_message(alice_hs.write_message())
    alice, bob = TcpTransport(*alice_hs.split()), TcpTransport(*bob_hs.split())
    msg = bytes(i & 0xFF for i in range(n))
    wire = alice.encrypt_message(msg)
    chunks = -(-n // 65_519)
    assert len(wire) == 4 + chunks * 18 + n
    assert bob.feed(wire + wire[:5]) == [msg]
    assert bob.buffered == 1  # the u32 header was parsed; one byte of the u16 is held
