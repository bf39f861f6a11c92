"""TCP and WebSocket framing: hostile input, limits, incremental decoding."""

from __future__ import annotations

import os
import random
import struct

import pytest

from hnet.core.framing import (
    FirstFrame,
    FramingError,
    HandshakeFrameReader,
    TcpTransport,
    WsTransport,
    check_handshake_message,
    classify_first_frame,
    encode_handshake_frame,
)
from hnet.core.noise import CipherState
from hnet.limits import (
    HANDSHAKE_MAX_MESSAGE,
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_MAX_PLAINTEXT,
    ROUTING_REQUEST_MAX,
)

K1 = bytes(range(32))
K2 = bytes(range(32, 64))


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def tcp_pair() -> tuple[TcpTransport, TcpTransport]:
    return (
        TcpTransport(CipherState(K1), CipherState(K2)),
        TcpTransport(CipherState(K2), CipherState(K1)),
    )


def ws_pair() -> tuple[WsTransport, WsTransport]:
    return (
        WsTransport(CipherState(K1), CipherState(K2)),
        WsTransport(CipherState(K2), CipherState(K1)),
    )


# --- handshake frames ---------------------------------------------------------------------------


def test_encode_handshake_frame() -> None:
    assert encode_handshake_frame(b"abc") == b"\x00\x03abc"
    assert encode_handshake_frame(b"") == b"\x00\x00"
    assert len(encode_handshake_frame(bytes(65_535))) == 65_537
    with pytest.raises(FramingError):
        encode_handshake_frame(bytes(65_536))


def test_reader_incremental_and_leftover() -> None:
    stream = encode_handshake_frame(b"a" * 32) + encode_handshake_frame(b"b" * 100) + b"TRANSPORT"
    reader = HandshakeFrameReader(max_frames=2)
    frames: list[bytes] = []
    for byte in stream:
        frames += reader.feed(bytes([byte]))
    assert frames == [b"a" * 32, b"b" * 100]
    assert reader.done and reader.frames_read == 2
    assert reader.buffered == len(b"TRANSPORT")
    assert reader.feed(b"MORE") == []  # after done, nothing is parsed
    assert reader.take_remaining() == b"TRANSPORTMORE"
    assert reader.take_remaining() == b""


def test_reader_unlimited_frames() -> None:
    reader = HandshakeFrameReader()
    data = b"".join(encode_handshake_frame(bytes([i]) * i) for i in range(10))
    assert reader.feed(data) == [bytes([i]) * i for i in range(10)]
    assert not reader.done and reader.buffered == 0


def test_reader_partial_frame_is_leftover() -> None:
    reader = HandshakeFrameReader(max_frames=3)
    assert reader.feed(encode_handshake_frame(b"x") + b"\x00\x05ab") == [b"x"]
    assert reader.take_remaining() == b"\x00\x05ab"


def test_reader_cap_before_buffering() -> None:
    reader = HandshakeFrameReader(max_len=HANDSHAKE_MAX_MESSAGE)
    with pytest.raises(FramingError):
        reader.feed(u16(HANDSHAKE_MAX_MESSAGE + 1))  # just the header is enough
    reader = HandshakeFrameReader(max_len=100)
    assert reader.feed(u16(100) + bytes(99)) == []
    assert reader.buffered == 101
    with pytest.raises(FramingError):
        HandshakeFrameReader(max_len=100).feed(u16(101) + bytes(10_000))


def test_reader_needed() -> None:
    reader = HandshakeFrameReader(max_frames=1)
    assert reader.needed == 2
    assert reader.feed(b"\x00") == [] and reader.needed == 1
    assert reader.feed(b"\x05ab") == [] and reader.needed == 3
    assert reader.feed(b"cde") == [b"abcde"]
    assert reader.done and reader.needed == 0
    empty = HandshakeFrameReader(max_frames=1)
    assert empty.feed(b"\x00\x00") == [b""] and empty.needed == 0


def test_reader_limits_change_between_frames() -> None:
    # the responder pattern of hnet.core.stream.StreamConnection (tested there end to end):
    # first frame capped at ROUTING_REQUEST_MAX; then frame 2 is parsed from what is already
    # buffered once the caller raises max_frames.
    reader = HandshakeFrameReader(max_len=ROUTING_REQUEST_MAX, max_frames=1)
    data = encode_handshake_frame(bytes(32)) + encode_handshake_frame(bytes(168)) + b"\x00\x00"
    [first] = reader.feed(data)
    assert classify_first_frame(first) is FirstFrame.NOISE
    reader.max_frames = 2
    reader.max_len = HANDSHAKE_MAX_MESSAGE
    assert reader.feed(b"") == [bytes(168)]
    assert reader.take_remaining() == b"\x00\x00"
    with pytest.raises(ValueError):
        reader.max_frames = 1
    with pytest.raises(ValueError):
        reader.max_len = 65_536


def test_classify_first_frame() -> None:
    assert classify_first_frame(bytes(32)) is FirstFrame.NOISE
    for n in (1, 31, 33, 200, ROUTING_REQUEST_MAX):
        assert classify_first_frame(bytes(n)) is FirstFrame.ROUTING_REQUEST
    with pytest.raises(FramingError):
        classify_first_frame(b"")
    with pytest.raises(FramingError):
        classify_first_frame(bytes(ROUTING_REQUEST_MAX + 1))


def test_ws_handshake_message_cap() -> None:
    assert check_handshake_message(bytearray(b"abc")) == b"abc"
    assert len(check_handshake_message(bytes(HANDSHAKE_MAX_MESSAGE))) == HANDSHAKE_MAX_MESSAGE
    with pytest.raises(FramingError):
        check_handshake_message(bytes(HANDSHAKE_MAX_MESSAGE + 1))


# --- TCP transport ------------------------------------------------------------------------------


def test_tcp_round_trip_many_in_one_feed() -> None:
    a, b = tcp_pair()
    msgs = [os.urandom(n) for n in (1, 2, 100, NOISE_MAX_PLAINTEXT, 200_000, 3)]
    wire = b"".join(a.encrypt_message(m) for m in msgs)
    assert b.feed(wire) == msgs
    assert b.buffered == 0


def test_tcp_random_splits() -> None:
    rng = random.Random(1)
    a, b = tcp_pair()
    msgs = [rng.randbytes(rng.choice([1, 50, 65_519, 65_520, 140_000])) for _ in range(20)]
    wire = b"".join(a.encrypt_message(m) for m in msgs)
    got: list[bytes] = []
    pos = 0
    while pos < len(wire):
        n = rng.choice([1, 2, 3, 17, 1000, 65_536, 100_000])
        got += b.feed(memoryview(wire)[pos : pos + n])
        pos += n
    assert got == msgs


def test_tcp_bytearray_input_not_retained() -> None:
    a, b = tcp_pair()
    wire = bytearray(a.encrypt_message(b"hello world"))
    first = bytearray(wire[:10])
    assert b.feed(first) == []
    first[:] = bytes(10)  # caller reuses its buffer
    assert b.feed(wire[10:]) == [b"hello world"]


def test_tcp_send_limits() -> None:
    a, _ = tcp_pair()
    with pytest.raises(FramingError):
        a.encrypt_message(b"")
    with pytest.raises(FramingError):
        a.encrypt_message(bytes(MESSAGE_MAX_SIZE + 1))


def test_tcp_max_size_message() -> None:
    a, b = tcp_pair()
    msg = bytes(MESSAGE_MAX_SIZE)
    assert b.feed(a.encrypt_message(msg)) == [msg]


def test_tcp_claimed_4gib() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError):
        b.feed(u32(0xFFFF_FFFF) + os.urandom(1000))
    assert b.buffered < 1024
    with pytest.raises(FramingError):  # stays failed
        b.feed(b"x")


def test_tcp_claimed_just_above_limit() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError):
        b.feed(u32(MESSAGE_MAX_SIZE + 1))
    _, b = tcp_pair()
    assert b.feed(u32(MESSAGE_MAX_SIZE)) == []  # accepted claim allocates nothing
    assert b.buffered == 0


def test_tcp_zero_length_message() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError):
        b.feed(u32(0))


@pytest.mark.parametrize("ct_len", range(17))
def test_tcp_chunk_too_small(ct_len: int) -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError):
        b.feed(u32(100) + u16(ct_len))


def test_tcp_chunk_max_len_accepted_header() -> None:
    _, b = tcp_pair()
    assert b.feed(u32(MESSAGE_MAX_SIZE) + u16(65_535)) == []


def test_tcp_chunk_overruns_claim() -> None:
    _, b = tcp_pair()
    with pytest.raises(FramingError):
        b.feed(u32(10) + u16(16 + 11))
    # a second chunk overrunning what is left
    _, b = tcp_pair()
    ct = CipherState(K1).encrypt(b"x" * 10)
    with pytest.raises(FramingError):
        b.feed(u32(12) + u16(len(ct)) + ct + u16(16 + 3))


def test_tcp_chunk_of_exactly_what_is_left() -> None:
    _, b = tcp_pair()
    send = CipherState(K1)
    c1, c2 = send.encrypt(b"abc"), send.encrypt(b"defg")
    assert b.feed(u32(7) + u16(len(c1)) + c1 + u16(len(c2)) + c2) == [b"abcdefg"]


def test_tcp_flipped_bit() -> None:
    a, b = tcp_pair()
    wire = bytearray(a.encrypt_message(b"secret message"))
    wire[10] ^= 0x01
    with pytest.raises(FramingError):
        b.feed(bytes(wire))


def test_tcp_flipped_bit_in_lengths() -> None:
    for index in range(6):
        a, b = tcp_pair()
        wire = bytearray(a.encrypt_message(b"m" * 1000))
        wire[index] ^= 0x04
        with pytest.raises(FramingError):
            b.feed(bytes(wire) + bytes(70_000))


def test_tcp_replayed_message() -> None:
    a, b = tcp_pair()
    wire = a.encrypt_message(b"once")
    assert b.feed(wire) == [b"once"]
    with pytest.raises(FramingError):
        b.feed(wire)


def test_tcp_garbage() -> None:
    rng = random.Random(7)
    for _ in range(200):
        _, b = tcp_pair()
        with pytest.raises(FramingError):
            b.feed(rng.randbytes(rng.randint(4, 70_000)) + bytes(70_000))


def test_tcp_ciphertext_never_fully_buffered() -> None:
    a, b = tcp_pair()
    wire = a.encrypt_message(bytes(1_000_000))
    peak = 0
    for off in range(0, len(wire), 4096):
        b.feed(wire[off : off + 4096])
        peak = max(peak, len(b._buf))  # ciphertext held (white-box)
    assert peak <= NOISE_MAX_MESSAGE + 6


# --- WS transport -------------------------------------------------------------------------------


def test_ws_chunking_layout() -> None:
    a, _ = ws_pair()
    [only] = a.encrypt_message(b"hi")
    assert len(only) == 4 + 2 + 16
    assert CipherState(K1).decrypt(only) == u32(2) + b"hi"
    wire = a.encrypt_message(bytes(NOISE_MAX_PLAINTEXT - 4 + 1))
    assert [len(m) for m in wire] == [NOISE_MAX_MESSAGE, 17]


def test_ws_send_limits() -> None:
    a, _ = ws_pair()
    with pytest.raises(FramingError):
        a.encrypt_message(b"")
    with pytest.raises(FramingError):
        a.encrypt_message(bytes(MESSAGE_MAX_SIZE + 1))


def test_ws_oversized_message_refused_before_decrypt() -> None:
    recv = CipherState(K1)
    b = WsTransport(CipherState(K2), recv)
    with pytest.raises(FramingError):
        b.feed_ws_message(bytes(NOISE_MAX_MESSAGE + 1))
    assert recv.nonce == 0
    with pytest.raises(FramingError):
        b.feed_ws_message(bytes(20))


def test_ws_bad_ciphertext() -> None:
    a, b = ws_pair()
    [m] = a.encrypt_message(b"hello")
    bad = bytearray(m)
    bad[5] ^= 0x80
    with pytest.raises(FramingError):
        b.feed_ws_message(bytes(bad))


@pytest.mark.parametrize("n", [0, 16, 17, 19])
def test_ws_too_short(n: int) -> None:
    _, b = ws_pair()
    with pytest.raises(FramingError):
        b.feed_ws_message(bytes(n))


def _raw_ws(*plaintexts: bytes) -> tuple[list[bytes], WsTransport]:
    send = CipherState(K1)
    return [send.encrypt(p) for p in plaintexts], WsTransport(CipherState(K2), CipherState(K1))


def test_ws_length_prefix_above_cap() -> None:
    msgs, b = _raw_ws(u32(MESSAGE_MAX_SIZE + 1) + b"x")
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[0])
    msgs, b = _raw_ws(u32(0xFFFF_FFFF) + b"x")
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[0])


def test_ws_zero_length_prefix() -> None:
    msgs, b = _raw_ws(u32(0) + b"x")
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[0])


def test_ws_first_chunk_shorter_than_prefix() -> None:
    msgs, b = _raw_ws(b"\x00")  # 17-byte WS message, 1 plaintext byte
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[0])


def test_ws_overrun() -> None:
    msgs, b = _raw_ws(u32(2) + b"abc")
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[0])
    msgs, b = _raw_ws(u32(4) + b"ab", b"cde")
    assert b.feed_ws_message(msgs[0]) == []
    with pytest.raises(FramingError):
        b.feed_ws_message(msgs[1])


def test_ws_lenient_chunk_sizes() -> None:
    # the reference receiver accepts any chunking; so do we, as long as nothing overruns
    msgs, b = _raw_ws(u32(6) + b"a", b"bc", b"def", u32(1) + b"z")
    assert [b.feed_ws_message(m) for m in msgs] == [[], [], [b"abcdef"], [b"z"]]
    assert b.buffered == 0


def test_ws_failed_stays_failed() -> None:
    a, b = ws_pair()
    with pytest.raises(FramingError):
        b.feed_ws_message(bytes(40))
    with pytest.raises(FramingError):
        b.feed_ws_message(a.encrypt_message(b"ok")[0])


def test_fuzz_script_smoke() -> None:
    """Keep fuzz/fuzz_framing.py runnable: a short deterministic run must find nothing."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_framing.py"
    result = subprocess.run(
        [sys.executable, str(script), "--iterations", "300", "--seed", "12345"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_failed_feed_releases_caller_buffer() -> None:
    # The caller may reuse (resize) its receive buffer even while handling our error.
    a, b = tcp_pair()
    wire = bytearray(a.encrypt_message(b"hello" * 10))
    wire[-1] ^= 1
    try:
        b.feed(wire)
    except FramingError:
        wire += b"resize"
    else:
        raise AssertionError("bad tag accepted")


def test_tcp_whole_single_messages_fed_one_at_a_time() -> None:
    """The one-message-per-read fast path: the same results and errors as the general parser."""
    a, b = tcp_pair()
    for i in range(1, 50):
        assert b.feed(a.encrypt_message(bytes([i]) * i)) == [bytes([i]) * i]
    _, b = tcp_pair()  # a zero-length claim shaped as a whole message (16-byte chunk)
    with pytest.raises(FramingError, match="zero-length"):
        b.feed(u32(0) + u16(16) + CipherState(K1).encrypt(b""))
    small_a = TcpTransport(CipherState(K1), CipherState(K2))
    small_b = TcpTransport(CipherState(K2), CipherState(K1), max_message=10)
    with pytest.raises(FramingError, match="exceeds"):
        small_b.feed(small_a.encrypt_message(b"x" * 11))
    a, b = tcp_pair()
    wire = bytearray(a.encrypt_message(b"tampered"))
    wire[-1] ^= 0x80
    with pytest.raises(FramingError, match="decrypt"):
        b.feed(bytes(wire))
    with pytest.raises(FramingError, match="already failed"):
        b.feed(a.encrypt_message(b"next"))
