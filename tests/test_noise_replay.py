"""The fixed-key reference session (interop i2r.bin / r2i.bin) through the production path.

Both roles run :class:`hnet.core.stream.StreamConnection` with a real
:class:`hnet.core.handshake.PeerHandshake` (the code every TCP and WebSocket connection runs);
the keys come from interop-tests/vectors/README.md. A missing vector file fails the run.
This module also provides the vectors and identities to tests/test_stream_connection.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.framing import HandshakeFrameReader
from hnet.core.handshake import PeerHandshake
from hnet.core.stream import (
    Event,
    HandshakeComplete,
    MessageReceived,
    State,
    StreamConnection,
)
from hnet.limits import HANDSHAKE_MAX_MESSAGE

INTEROP = Path(__file__).resolve().parent.parent / "interop-tests" / "vectors"

ALICE_STATIC = bytes(range(0x00, 0x20))
BOB_STATIC = bytes(range(0x01, 0x21))
ALICE_EPHEMERAL = bytes(range(0x20, 0x40))
BOB_EPHEMERAL = bytes(range(0x41, 0x61))
ALICE_KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
BOB_KEY = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
BOOK = {"alice.os": keys.public_bytes(ALICE_KEY), "bob.os": keys.public_bytes(BOB_KEY)}
HANDSHAKE_HASH = "0f346c1aa1d314d50eda5218d3c4d12b771b312b947a95f5ce55bae2b156de4b"
I2R_SHA256 = "07d0a0cb524c06c70c30a4ee10a8360a0889ef8a1152fe7a28c46604f73734e7"
R2I_SHA256 = "b3ea90f51ad536ea430f498dd029fe9760fd296b7ecc5ea316468a1565041293"


def vector_file(name: str) -> bytes:
    """The bytes of an interop vector file; a missing one is a failure, never a skip."""
    path = INTEROP / name
    if not path.is_file():
        raise AssertionError(f"interop vector {path} is missing (see interop-tests/README.md)")
    return path.read_bytes()


def _vectors() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for line in vector_file("hyperware-msgpack-vectors.tsv").decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _type, hexdata = line.split("\t")
        out[name] = bytes.fromhex(hexdata)
    return out


VECTORS = _vectors()
KM_HELLO = VECTORS["km_request_hello"]
KM_BIG = VECTORS["km_big_blob"]
KM_RESPONSE = VECTORS["km_response_context"]
I2R = vector_file("i2r.bin")
R2I = vector_file("r2i.bin")


def handshake_frames(stream: bytes, count: int) -> tuple[list[bytes], bytes]:
    """The first ``count`` handshake messages of a TCP vector and the transport bytes after."""
    reader = HandshakeFrameReader(max_len=HANDSHAKE_MAX_MESSAGE, max_frames=count)
    frames = reader.feed(stream)
    assert len(frames) == count
    return frames, reader.take_remaining()


def alice(book: dict[str, bytes] | None = None, **kw: object) -> PeerHandshake:
    """The reference session's initiator (its payload asks for routing: proxy_request);
    ``kw`` overrides PeerHandshake arguments."""
    args: dict[str, object] = {
        "initiator": True,
        "our_name": "alice.os",
        "signing_key": ALICE_KEY,
        "lookup": (book if book is not None else BOOK).get,
        "expected_peer": "bob.os",
        "proxy_request": True,
        "static_private": ALICE_STATIC,
        "ephemeral_private": ALICE_EPHEMERAL,
    }
    return PeerHandshake(**(args | kw))  # type: ignore[arg-type]


def bob(book: dict[str, bytes] | None = None, **kw: object) -> PeerHandshake:
    """The reference session's responder; ``kw`` overrides PeerHandshake arguments."""
    args: dict[str, object] = {
        "initiator": False,
        "our_name": "bob.os",
        "signing_key": BOB_KEY,
        "lookup": (book if book is not None else BOOK).get,
        "static_private": BOB_STATIC,
        "ephemeral_private": BOB_EPHEMERAL,
    }
    return PeerHandshake(**(args | kw))  # type: ignore[arg-type]


def drain(conn: StreamConnection) -> list[Event]:
    out: list[Event] = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def splits(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in pieces of the given sizes, cycling."""
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def test_files_are_the_documented_ones() -> None:
    assert len(I2R) == 150_432 and len(R2I) == 364
    assert hashlib.sha256(I2R).hexdigest() == I2R_SHA256
    assert hashlib.sha256(R2I).hexdigest() == R2I_SHA256
    assert len(KM_BIG) == 150_064
    (msg1, msg3), _ = handshake_frames(I2R, 2)
    (msg2,), _ = handshake_frames(R2I, 1)
    assert (len(msg1), len(msg2), len(msg3)) == (32, 206, 168)


def test_initiator_alice_reproduces_i2r() -> None:
    conn = StreamConnection(alice(), "tcp")
    sent = b"".join(conn.data_to_send())
    assert len(sent) == 2 + 32
    conn.receive_data(R2I)  # msg2 and bob's message at once: the rest is transport
    assert conn.state is State.OPEN
    sent += b"".join(conn.data_to_send())
    conn.send_message(KM_HELLO)
    conn.send_message(KM_BIG)
    sent += b"".join(conn.data_to_send())
    assert sent == I2R
    assert conn.hs.handshake_hash.hex() == HANDSHAKE_HASH
    assert drain(conn) == [HandshakeComplete("bob.os", False), MessageReceived(KM_RESPONSE)]
    assert conn.buffered == 0


@pytest.mark.parametrize("size", [1, 7, 34, 4096, 65_536, len(I2R)])
def test_responder_bob_reproduces_r2i(size: int) -> None:
    conn = StreamConnection(bob(), "tcp")
    out = b""
    for piece in splits(I2R, [size]):
        conn.receive_data(piece)
        out += b"".join(conn.data_to_send())
    conn.send_message(KM_RESPONSE)
    out += b"".join(conn.data_to_send())
    assert out == R2I
    assert conn.hs.handshake_hash.hex() == HANDSHAKE_HASH
    assert drain(conn) == [
        HandshakeComplete("alice.os", True),  # alice asked bob to route for her
        MessageReceived(KM_HELLO),
        MessageReceived(KM_BIG),
    ]
    assert conn.buffered == 0
