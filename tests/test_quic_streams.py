"""The per-stream encryption and framing core, sans-I/O: round trips and the cross-stream rules.

Every attack here must fail closed: a QuicProtocolError, never a delivered message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest

from hnet import limits
from hnet.core.noise import CipherState
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.core.quic.streams import (
    DIR_I2R,
    DIR_R2I,
    HEADER_FRAME_LEN,
    DirectionKeys,
    MessageOpener,
    MessageSealer,
    derive_stream_key,
)

H = bytes(range(32))  # a handshake hash
K_I2R = bytes(range(100, 132))  # Split() keys
K_R2I = bytes(range(200, 232))


def pair() -> tuple[DirectionKeys, DirectionKeys, DirectionKeys, DirectionKeys]:
    """(initiator send, initiator recv, responder send, responder recv)."""
    return (
        DirectionKeys(K_I2R, H, DIR_I2R),
        DirectionKeys(K_R2I, H, DIR_R2I),
        DirectionKeys(K_R2I, H, DIR_R2I),
        DirectionKeys(K_I2R, H, DIR_I2R),
    )


def seal(keys: DirectionKeys, sid: int, message: bytes) -> bytes:
    return MessageSealer(keys.cipher(sid), message).seal_all()


def frames(wire: bytes) -> list[bytes]:
    """Split a stream's bytes into its ``[u16 len][ct]`` frames (with their length prefix)."""
    out, pos = [], 0
    while pos < len(wire):
        (n,) = struct.unpack_from(">H", wire, pos)
        out.append(wire[pos : pos + 2 + n])
        pos += 2 + n
    return out


def open_(keys: DirectionKeys, sid: int, wire: bytes, fin: bool = True) -> bytes | None:
    return MessageOpener(keys.cipher(sid)).feed(wire, fin)


def assert_fails(keys: DirectionKeys, sid: int, wire: bytes, fin: bool = True) -> None:
    with pytest.raises(QuicProtocolError):
        open_(keys, sid, wire, fin)


# --- key schedule ----------------------------------------------------------------------------


def test_stream_key_is_hkdf_blake2s_as_documented():
    # docs/quic.md: PRK = HMAC-BLAKE2s(h, k); K = HMAC-BLAKE2s(PRK, "hnet-quic/1"||dir||u64||1)
    prk = hmac.new(H, K_I2R, hashlib.blake2s).digest()
    info = b"hnet-quic/1" + b"\x00" + (4).to_bytes(8, "big") + b"\x01"
    expected = hmac.new(prk, info, hashlib.blake2s).digest()
    assert derive_stream_key(prk, DIR_I2R, 4) == expected
    # the published test vectors (docs/quic.md, "Test vectors")
    assert expected.hex() == VECTOR_K_I2R_4
    prk_r2i = hmac.new(H, K_R2I, hashlib.blake2s).digest()
    assert derive_stream_key(prk_r2i, DIR_R2I, 1).hex() == VECTOR_K_R2I_1


VECTOR_K_I2R_4 = "05d943e4adf275f04d1230aa9b7df6b2f5361333c52d8cecd08670b97f109026"
VECTOR_K_R2I_1 = "9839f28f5b18bf15916f0b1acaad5ff275c48f4e2e0d180cbc70c7293f86dd6b"


VECTOR_HELLO_ON_4 = (
    "0014a668eb6c5ea46e2dea1fa91d7895fcf684d61b37"  # length frame: ENC(K, 0, u32be(5))
    "0015931fa9a3f72f52c658b76612d767721829276fb39a"  # chunk frame: ENC(K, 1, b"hello")
)


def test_message_wire_vector():
    assert seal(DirectionKeys(K_I2R, H, DIR_I2R), 4, b"hello").hex() == VECTOR_HELLO_ON_4


def test_keys_differ_per_stream_and_direction():
    i_send, i_recv, _, _ = pair()
    ks = {i_send.cipher(s).export_key() for s in (4, 8, 12)}
    ks |= {i_recv.cipher(s).export_key() for s in (4, 8, 12)}
    assert len(ks) == 6


def test_stream_id_range():
    i_send, *_ = pair()
    with pytest.raises(ValueError):
        i_send.cipher(2**62)
    with pytest.raises(ValueError):
        DirectionKeys(K_I2R, H, 7)


def test_repr_hides_keys():
    assert K_I2R.hex() not in repr(pair()[0])


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [1, 4, 64, limits.NOISE_MAX_PLAINTEXT, limits.NOISE_MAX_PLAINTEXT + 1, 150_064]
)
def test_round_trip(size: int):
    i_send, _, _, r_recv = pair()
    msg = os.urandom(size)
    wire = seal(i_send, 4, msg)
    chunks = -(-size // limits.NOISE_MAX_PLAINTEXT)
    assert len(wire) == HEADER_FRAME_LEN + size + 18 * chunks
    assert open_(r_recv, 4, wire) == msg


def test_round_trip_byte_by_byte_and_sliced_sealing():
    i_send, _, _, r_recv = pair()
    msg = os.urandom(3 * limits.NOISE_MAX_PLAINTEXT + 5)
    sealer = MessageSealer(i_send.cipher(8), msg)
    parts = []
    while not sealer.done:
        parts.append(sealer.next_frames(1000))
    wire = b"".join(parts)
    opener = MessageOpener(r_recv.cipher(8))
    out = None
    for i in range(len(wire)):
        assert out is None
        out = opener.feed(wire[i : i + 1], fin=False)
    assert out is None  # complete, but no FIN yet: not delivered
    assert opener.feed(b"", fin=True) == msg


def test_max_size_message():
    i_send, _, _, r_recv = pair()
    msg = bytes(limits.MESSAGE_MAX_SIZE)
    wire = seal(i_send, 4, msg)
    assert len(wire) == limits.QUIC_STREAM_MAX_BYTES
    assert open_(r_recv, 4, wire) == msg


def test_sealer_refuses_bad_sizes():
    i_send, *_ = pair()
    with pytest.raises(ValueError):
        MessageSealer(i_send.cipher(4), b"")
    with pytest.raises(ValueError):
        MessageSealer(i_send.cipher(4), bytes(limits.MESSAGE_MAX_SIZE + 1))


# --- the cross-stream properties -------------------------------------------------------------


def test_frame_moved_to_another_stream_fails():
    i_send, _, _, r_recv = pair()
    wire = seal(i_send, 4, b"hello")
    assert_fails(r_recv, 8, wire)  # the whole stream's bytes, moved
    # one chunk frame moved into another stream at the same position
    other = frames(seal(i_send, 8, b"world"))
    mine = frames(wire)
    assert_fails(r_recv, 8, other[0] + mine[1])


def test_replayed_stream_fails():
    i_send, _, _, r_recv = pair()
    wire = seal(i_send, 4, b"pay alice 10")
    assert open_(r_recv, 4, wire) == b"pay alice 10"
    assert_fails(r_recv, 12, wire)  # replayed on a new stream


def test_replayed_frame_within_a_stream_fails():
    i_send, _, _, r_recv = pair()
    msg = os.urandom(2 * limits.NOISE_MAX_PLAINTEXT)
    f = frames(seal(i_send, 4, msg))
    assert len(f) == 3
    assert_fails(r_recv, 4, f[0] + f[1] + f[1])  # chunk 1 again instead of chunk 2
    assert_fails(r_recv, 4, f[0] + f[0] + f[1] + f[2])  # header replayed


def test_reordered_frames_fail():
    i_send, _, _, r_recv = pair()
    msg = os.urandom(2 * limits.NOISE_MAX_PLAINTEXT)
    f = frames(seal(i_send, 4, msg))
    assert_fails(r_recv, 4, f[0] + f[2] + f[1])
    assert_fails(r_recv, 4, f[1] + f[0] + f[2])


def test_truncated_message_fails():
    i_send, _, _, r_recv = pair()
    msg = os.urandom(2 * limits.NOISE_MAX_PLAINTEXT)
    f = frames(seal(i_send, 4, msg))
    assert_fails(r_recv, 4, f[0] + f[1])  # final frame missing, FIN
    assert_fails(r_recv, 4, f[0])  # header only
    assert_fails(r_recv, 4, b"".join(f)[:-1])  # last byte missing
    assert_fails(r_recv, 4, b"")  # FIN only
    # without the FIN the message is never delivered, however long we wait
    opener = MessageOpener(r_recv.cipher(4))
    assert opener.feed(b"".join(f), fin=False) is None


def test_reflected_message_fails():
    # the initiator's message bounced back to it (same stream id, other direction)
    i_send, i_recv, _, _ = pair()
    wire = seal(i_send, 4, b"hello")
    assert_fails(i_recv, 4, wire)
    # and the same stream id under the other direction's key
    assert_fails(i_recv, 5, wire)


def test_bit_flip_fails():
    i_send, _, _, r_recv = pair()
    wire = bytearray(seal(i_send, 4, b"hello world"))
    for pos in (3, HEADER_FRAME_LEN + 3, len(wire) - 1):
        bad = bytearray(wire)
        bad[pos] ^= 1
        assert_fails(r_recv, 4, bytes(bad))


def test_bytes_after_the_message_fail():
    i_send, _, _, r_recv = pair()
    wire = seal(i_send, 4, b"hello")
    assert_fails(r_recv, 4, wire + b"\x00")
    opener = MessageOpener(r_recv.cipher(4))
    assert opener.feed(wire) is None
    with pytest.raises(QuicProtocolError):
        opener.feed(b"x")


def test_opener_refuses_input_after_failure():
    _, _, _, r_recv = pair()
    opener = MessageOpener(r_recv.cipher(4))
    with pytest.raises(QuicProtocolError):
        opener.feed(b"\x00\x05garbage")
    with pytest.raises(QuicProtocolError):
        opener.feed(b"", fin=True)


# --- caps before allocation ------------------------------------------------------------------


def _header(keys: DirectionKeys, sid: int, claimed: int) -> tuple[bytes, CipherState]:
    c = keys.cipher(sid)
    ct = c.encrypt(struct.pack(">I", claimed))
    return struct.pack(">H", len(ct)) + ct, c


@pytest.mark.parametrize("claimed", [0, limits.MESSAGE_MAX_SIZE + 1, 2**32 - 1])
def test_claimed_length_checked_before_allocation(claimed: int):
    i_send, _, _, r_recv = pair()
    head, _ = _header(i_send, 4, claimed)
    with pytest.raises(QuicProtocolError) as e:
        MessageOpener(r_recv.cipher(4)).feed(head)
    assert e.value.code == QuicAppError.LIMIT_EXCEEDED


def test_on_claim_can_refuse():
    i_send, _, _, r_recv = pair()
    head, _ = _header(i_send, 4, 1000)

    def refuse(n: int) -> None:
        raise QuicProtocolError(QuicAppError.LIMIT_EXCEEDED, f"{n}")

    opener = MessageOpener(r_recv.cipher(4), on_claim=refuse)
    with pytest.raises(QuicProtocolError):
        opener.feed(head)
    assert opener.buffered == 0


def test_first_frame_must_be_the_length_frame():
    _, _, _, r_recv = pair()
    opener = MessageOpener(r_recv.cipher(4))
    with pytest.raises(QuicProtocolError):
        opener.feed(struct.pack(">H", 60_000))  # refused on the 2-byte prefix alone
    assert opener.buffered == 0


@pytest.mark.parametrize("ct_len", [0, 16, limits.NOISE_TAG_LEN + 101])
def test_chunk_lengths_checked(ct_len: int):
    i_send, _, _, r_recv = pair()
    head, _ = _header(i_send, 4, 100)
    opener = MessageOpener(r_recv.cipher(4))
    assert opener.feed(head) is None
    with pytest.raises(QuicProtocolError):
        opener.feed(struct.pack(">H", ct_len))  # empty, tag-only, or overrunning 100 bytes


def test_garbage_fails():
    _, _, _, r_recv = pair()
    with pytest.raises(QuicProtocolError):
        MessageOpener(r_recv.cipher(4)).feed(struct.pack(">H", 20) + os.urandom(20))


def test_stream_byte_cap_is_one_maximal_message() -> None:
    """QUIC_STREAM_MAX_BYTES is exactly what the largest message takes on the wire, and a
    stream carrying more is a violation before the surplus is buffered."""
    from hnet import limits
    from hnet.core.noise import CipherState
    from hnet.core.quic.errors import QuicProtocolError
    from hnet.core.quic.streams import MessageOpener, wire_size

    assert wire_size(limits.MESSAGE_MAX_SIZE) == limits.QUIC_STREAM_MAX_BYTES
    opener = MessageOpener(CipherState(bytes(32)))
    opener._wire = limits.QUIC_STREAM_MAX_BYTES  # as if a maximal message had been fed
    assert opener.feed(b"") is None  # nothing more: fine
    with pytest.raises(QuicProtocolError, match="carries over"):
        opener.feed(b"\x00")  # one byte more (a lone byte alone would just be buffered)
