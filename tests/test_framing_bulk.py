"""TCP framing of large (multi-chunk) messages: encrypted into one buffer on send, each chunk
decrypted in place into the message's one plaintext buffer on receive (issue #10)."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from hnet.core.framing import FramingError, TcpTransport
from hnet.core.noise import CipherState
from hnet.limits import MESSAGE_MAX_SIZE, NOISE_MAX_PLAINTEXT, NOISE_TAG_LEN

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
P = NOISE_MAX_PLAINTEXT


def tcp_pair() -> tuple[TcpTransport, TcpTransport]:
    return (
        TcpTransport(CipherState(K1), CipherState(K2)),
        TcpTransport(CipherState(K2), CipherState(K1)),
    )


def reference_wire(plaintext: bytes, cipher: CipherState) -> bytes:
    """The wire format of docs/protocol.md §4, built the obvious way (one chunk at a time)."""
    parts = [struct.pack(">I", len(plaintext))]
    for off in range(0, len(plaintext), P):
        ct = cipher.encrypt(plaintext[off : off + P])
        parts += [struct.pack(">H", len(ct)), ct]
    return b"".join(parts)


def chunk_offsets(wire: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each ciphertext of one framed message."""
    pos, out = 4, []
    while pos < len(wire):
        (n,) = struct.unpack_from(">H", wire, pos)
        out.append((pos + 2, n))
        pos += 2 + n
    return out


def feed_split(t: TcpTransport, wire: bytes, rng: random.Random, cuts: int) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(wire)), min(cuts, len(wire) - 1)))
    got: list[bytes] = []
    for lo, hi in zip([0, *points], [*points, len(wire)], strict=True):
        got += t.feed(wire[lo:hi])
    return got


@pytest.mark.parametrize("size", [P + 1, 2 * P, 2 * P + 1, 3 * P - 1, 1_000_003, MESSAGE_MAX_SIZE])
def test_encrypt_matches_reference_layout(size: int) -> None:
    a, _ = tcp_pair()
    msg = random.Random(size).randbytes(size)
    wire = a.encrypt_message(msg)
    assert type(wire) is bytes
    assert wire == reference_wire(msg, CipherState(K1))
    assert a._send.nonce == -(-size // P)


def test_round_trip_random_splits() -> None:
    rng = random.Random(10)
    for _ in range(30):
        a, b = tcp_pair()
        msgs = [
            rng.randbytes(rng.choice([1, 64, P, P + 1, rng.randint(1, 400_000)]))
            for _ in range(rng.randint(1, 4))
        ]
        wire = b"".join(a.encrypt_message(m) for m in msgs)
        got = feed_split(b, wire, rng, rng.randint(1, 60))
        assert got == msgs
        assert all(type(m) is bytes for m in got)
        assert b.buffered == 0 and b._plain is None


def test_round_trip_byte_by_byte_around_chunk_boundaries() -> None:
    a, b = tcp_pair()
    msg = random.Random(1).randbytes(2 * P + 5)
    wire = a.encrypt_message(msg)
    got: list[bytes] = []
    # single bytes across every header and chunk boundary, large pieces elsewhere
    edges = {0, 4, 6}
    for off, n in chunk_offsets(wire):
        edges |= {off - 2, off - 1, off, off + n - 1}
    pos = 0
    while pos < len(wire):
        step = 1 if any(pos <= e < pos + 1000 for e in edges) else 1000
        got += b.feed(wire[pos : pos + step])
        pos += step
    assert got == [msg]


def test_one_feed_of_a_large_message_and_a_small_one() -> None:
    a, b = tcp_pair()
    big, small = bytes(range(256)) * 5000, b"tail"
    assert b.feed(a.encrypt_message(big) + a.encrypt_message(small)) == [big, small]


def test_memoryview_and_bytearray_input_not_retained() -> None:
    a, b = tcp_pair()
    msg = bytes(3 * P)
    wire = bytearray(a.encrypt_message(msg))
    half = len(wire) // 2 + 7
    first = bytearray(wire[:half])
    assert b.feed(memoryview(first)) == []
    first += b"x"  # resizable again: no view of it is held
    rest = bytearray(wire[half:])
    assert b.feed(rest) == [msg]
    rest.clear()


def test_several_chunks_for_a_small_message() -> None:
    """Not what we send, but the format allows it: a 10-byte message in chunks of 3, 3, 4."""
    send = CipherState(K1)
    wire = struct.pack(">I", 10)
    for part in (b"abc", b"def", b"ghij"):
        ct = send.encrypt(part)
        wire += struct.pack(">H", len(ct)) + ct
    _, b = tcp_pair()
    assert feed_split(b, wire, random.Random(3), 5) == [b"abcdefghij"]


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_bad_tag_in_a_chunk_of_a_large_message(which: str) -> None:
    a, b = tcp_pair()
    before = b"before"
    assert b.feed(a.encrypt_message(before)) == [before]
    msg = random.Random(2).randbytes(5 * P + 100)
    wire = bytearray(a.encrypt_message(msg))
    chunks = chunk_offsets(bytes(wire))
    off, n = chunks[{"first": 0, "middle": 2, "last": -1}[which]]
    wire[off + n // 2] ^= 0x01
    got: list[bytes] = []
    with pytest.raises(FramingError, match="decrypt"):
        for pos in range(0, len(wire), 100_000):
            got += b.feed(bytes(wire[pos : pos + 100_000]))
    assert got == []  # nothing of the message, not even the chunks before the bad one
    assert b._plain is None and b._bio is None and b.buffered == 0
    with pytest.raises(FramingError, match="already failed"):
        b.feed(a.encrypt_message(b"after"))


def test_chunk_overrun_in_a_later_chunk() -> None:
    send = CipherState(K1)
    claimed = P + 10
    first = send.encrypt(bytes(P))
    second = send.encrypt(bytes(11))  # one byte more than the message still lacks
    wire = struct.pack(">IH", claimed, len(first)) + first + struct.pack(">H", len(second))
    _, b = tcp_pair()
    with pytest.raises(FramingError, match="overruns"):
        b.feed(wire + second)
    with pytest.raises(FramingError):
        b.feed(b"\x00")


def test_overlong_claim_refused_before_allocation() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError, match="exceeds"):
        b.feed(struct.pack(">IH", MESSAGE_MAX_SIZE + 1, P + NOISE_TAG_LEN))
    assert b._bio is None


def test_a_large_claim_costs_at_most_twice_what_arrived() -> None:
    """One chunk of a 10 MB claim allocates no 10 MB buffer; past half of the message the
    whole buffer is made, and the message still comes out whole and right."""
    a, b = tcp_pair()
    msg = random.Random(7).randbytes(MESSAGE_MAX_SIZE)
    wire = a.encrypt_message(msg)
    chunks = chunk_offsets(wire)
    first_end = chunks[0][0] + chunks[0][1]
    tracemalloc.start()
    try:
        assert b.feed(wire[:first_end]) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * (first_end + 64 * 1024), f"one chunk made us hold {peak} bytes"
    half = next(off + n for off, n in chunks if (off + n) * 2 >= len(wire))
    assert b.feed(wire[first_end:half]) == []
    assert b.buffered >= len(msg) // 2
    assert b.feed(wire[half:]) == [msg]
    assert b.buffered == 0


def test_zero_length_claim() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError, match="zero-length"):
        b.feed(struct.pack(">IH", 0, 17))


def test_cipher_into_without_key_is_identity() -> None:
    c = CipherState()
    out = bytearray(3)
    c.encrypt_into(b"abc", out)
    assert out == b"abc"
    c.decrypt_into(b"xyz", out)
    assert out == b"xyz"


def test_cipher_into_matches_cipher() -> None:
    c1, c2, c3 = CipherState(K1), CipherState(K1), CipherState(K1)
    ct = c1.encrypt(b"hello")
    out = bytearray(len(ct))
    c2.encrypt_into(b"hello", memoryview(out))
    assert bytes(out) == ct and c2.nonce == 1
    pt = bytearray(5)
    c3.decrypt_into(ct, pt)
    assert pt == b"hello" and c3.nonce == 1
    bad = bytearray(ct)
    bad[0] ^= 1
    d = CipherState(K1)
    with pytest.raises(Exception, match="bad tag"):
        d.decrypt_into(bytes(bad), bytearray(5))
    assert d.nonce == 0
