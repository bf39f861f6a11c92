"""Noise XX against the snow and cacophony vectors, plus handshake misuse and edge cases."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from hnet.core.noise import MAX_NONCE, CipherState, NoiseError, XXHandshake
from hnet.core.noise import primitives as prim

INTEROP = Path(__file__).resolve().parent.parent / "interop-tests" / "vectors"
VECTOR_FILES = ["snow-XX.json", "cacophony-XX.json"]


def _load(name: str) -> list[dict[str, Any]]:
    vectors = json.loads((INTEROP / name).read_text())["vectors"]
    return [v for v in vectors if v["protocol_name"] == "Noise_XX_25519_ChaChaPoly_BLAKE2s"]


def _cases() -> list[Any]:
    return [
        pytest.param(v, id=f"{name}-{i}")
        for name in VECTOR_FILES
        for i, v in enumerate(_load(name))
    ]


def test_vector_files_present() -> None:
    for name in VECTOR_FILES:
        assert _load(name), name


@pytest.mark.parametrize("vector", _cases())
def test_vector(vector: dict[str, Any]) -> None:
    assert not vector.get("init_psks") and not vector.get("resp_psks")
    init = XXHandshake(
        True,
        bytes.fromhex(vector["init_static"]),
        prologue=bytes.fromhex(vector["init_prologue"]),
        ephemeral_private=bytes.fromhex(vector["init_ephemeral"]),
    )
    resp = XXHandshake(
        False,
        bytes.fromhex(vector["resp_static"]),
        prologue=bytes.fromhex(vector["resp_prologue"]),
        ephemeral_private=bytes.fromhex(vector["resp_ephemeral"]),
    )
    messages = vector["messages"]
    assert len(messages) >= 3
    # Handshake: messages 0, 1, 2 alternate initiator, responder, initiator.
    for i, m in enumerate(messages[:3]):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        assert sender.is_my_turn and not receiver.is_my_turn
        ct = sender.write_message(bytes.fromhex(m["payload"]))
        assert ct.hex() == m["ciphertext"], f"handshake message {i}"
        assert receiver.read_message(ct).hex() == m["payload"]
    assert init.is_complete and resp.is_complete
    assert init.handshake_hash == resp.handshake_hash
    if "handshake_hash" in vector:
        assert init.handshake_hash.hex() == vector["handshake_hash"]
    assert init.remote_static == resp.static_public
    assert resp.remote_static == init.static_public
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    # Transport messages keep alternating: even index = initiator sends.
    for i, m in enumerate(messages[3:], start=3):
        send, recv = (i_send, r_recv) if i % 2 == 0 else (r_send, i_recv)
        ct = send.encrypt(bytes.fromhex(m["payload"]))
        assert ct.hex() == m["ciphertext"], f"transport message {i}"
        assert recv.decrypt(ct).hex() == m["payload"]


def _pair() -> tuple[XXHandshake, XXHandshake]:
    return XXHandshake(True, bytes(range(32))), XXHandshake(False, bytes(range(1, 33)))


def _complete() -> tuple[XXHandshake, XXHandshake]:
    i, r = _pair()
    r.read_message(i.write_message())
    i.read_message(r.write_message(b"r"))
    r.read_message(i.write_message(b"i"))
    return i, r


def test_fresh_ephemerals_differ() -> None:
    a, _ = _pair()
    b, _ = _pair()
    assert a.write_message() != b.write_message()


def test_out_of_turn() -> None:
    i, r = _pair()
    with pytest.raises(NoiseError):
        r.write_message()
    with pytest.raises(NoiseError):
        i.read_message(bytes(32))
    with pytest.raises(NoiseError):
        i.split()


def test_complete_then_misuse() -> None:
    i, r = _complete()
    with pytest.raises(NoiseError):
        i.write_message()
    with pytest.raises(NoiseError):
        r.read_message(bytes(100))
    i.split()
    with pytest.raises(NoiseError):
        i.split()


@pytest.mark.parametrize("length", [0, 31])
def test_short_first_message(length: int) -> None:
    _, r = _pair()
    with pytest.raises(NoiseError):
        r.read_message(bytes(length))


def test_failure_poisons() -> None:
    i, r = _pair()
    r.read_message(i.write_message())
    msg2 = bytearray(r.write_message(b"x"))
    msg2[-1] ^= 1
    with pytest.raises(NoiseError):
        i.read_message(bytes(msg2))
    with pytest.raises(NoiseError):
        i.read_message(bytes(msg2))
    with pytest.raises(NoiseError):
        i.write_message()


@pytest.mark.parametrize("index", [1, 2])
def test_trailing_garbage_rejected(index: int) -> None:
    i, r = _pair()
    r.read_message(i.write_message())
    msg2 = r.write_message(b"payload")
    if index == 1:
        with pytest.raises(NoiseError):
            i.read_message(msg2 + b"\x00")
        return
    i.read_message(msg2)
    with pytest.raises(NoiseError):
        r.read_message(i.write_message(b"payload") + b"junk")


def test_truncated_rejected() -> None:
    i, r = _pair()
    r.read_message(i.write_message())
    msg2 = r.write_message(b"")
    with pytest.raises(NoiseError):
        i.read_message(msg2[:-1])


@pytest.mark.parametrize(
    "point",
    [
        bytes(32),  # 0
        b"\x01" + bytes(31),  # 1
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ],
)
def test_low_order_ephemeral_rejected(point: bytes) -> None:
    _, r = _pair()
    r.read_message(point)  # `-> e` itself does no DH
    with pytest.raises(NoiseError):
        r.write_message()  # ee = DH(e, re) is all zeros


def test_low_order_dh_direct() -> None:
    with pytest.raises(NoiseError):
        prim.dh(bytes(range(32)), bytes(32))


def test_payload_too_large() -> None:
    i, _ = _pair()
    with pytest.raises(NoiseError):
        i.write_message(bytes(65535 - 32 + 1))
    # not poisoned by a refused write
    assert len(i.write_message(bytes(65535 - 32))) == 65535


def test_oversized_read_rejected() -> None:
    _, r = _pair()
    with pytest.raises(NoiseError):
        r.read_message(bytes(65536))


def test_bad_key_lengths() -> None:
    with pytest.raises(NoiseError):
        XXHandshake(True, bytes(31))
    with pytest.raises(NoiseError):
        XXHandshake(True, bytes(32), ephemeral_private=bytes(33))
    with pytest.raises(NoiseError):
        CipherState(bytes(16))


def test_split_directions() -> None:
    i, r = _complete()
    i_send, i_recv = i.split()
    r_send, r_recv = r.split()
    assert r_recv.decrypt(i_send.encrypt(b"to responder")) == b"to responder"
    assert i_recv.decrypt(r_send.encrypt(b"to initiator")) == b"to initiator"
    with pytest.raises(NoiseError):
        i_recv.decrypt(i_send.encrypt(b"wrong way"))


def test_cipher_nonce_and_ad() -> None:
    key = bytes(range(32))
    a, b = CipherState(key), CipherState(key)
    ct = a.encrypt(b"hello", b"ad")
    assert ct == prim.encrypt(key, 0, b"ad", b"hello")
    assert prim.decrypt(key, 0, b"ad", ct) == b"hello"
    with pytest.raises(NoiseError):
        b.decrypt(ct, b"other ad")
    assert b.nonce == 0  # failure does not advance
    assert b.decrypt(ct, b"ad") == b"hello"
    assert a.nonce == b.nonce == 1
    with pytest.raises(NoiseError):
        b.decrypt(bytes(15))
    # replayed ciphertext fails (nonce moved on)
    with pytest.raises(NoiseError):
        b.decrypt(ct, b"ad")
    assert prim.nonce_bytes(0x0102) == b"\x00\x00\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00"


def test_cipher_without_key_is_identity() -> None:
    c = CipherState()
    assert not c.has_key
    assert c.encrypt(b"abc") == b"abc"
    assert c.decrypt(b"abc") == b"abc"


def test_nonce_exhaustion() -> None:
    key = bytes(32)
    a, b = CipherState(key), CipherState(key)
    a.set_nonce(MAX_NONCE)
    b.set_nonce(MAX_NONCE)
    ct = a.encrypt(b"last")
    assert b.decrypt(ct) == b"last"
    assert a.nonce == 2**64 - 1
    with pytest.raises(NoiseError):
        a.encrypt(b"one too many")
    with pytest.raises(NoiseError):
        b.decrypt(ct)
    with pytest.raises(NoiseError):
        a.set_nonce(2**64)


def test_repr_hides_key() -> None:
    key = bytes(range(100, 132))
    assert key.hex() not in repr(CipherState(key))


def test_hkdf_rfc_shape() -> None:
    out = prim.hkdf(bytes(32), b"ikm", 3)
    assert len(out) == 3 and all(len(x) == 32 for x in out)
    assert out[:2] == prim.hkdf(bytes(32), b"ikm", 2)
    with pytest.raises(ValueError):
        prim.hkdf(bytes(32), b"", 4)


@pytest.mark.parametrize("key_len", [0, 1, 32, 64, 65, 200])
@pytest.mark.parametrize("data_len", [0, 1, 33, 500])
def test_hmac_matches_stdlib(key_len: int, data_len: int) -> None:
    """The written-out HMAC-BLAKE2s equals :func:`hmac.new` for keys shorter and longer than
    a block (a longer key is hashed first)."""
    key = bytes((i * 7 + 3) % 256 for i in range(key_len))
    data = bytes((i * 13 + 1) % 256 for i in range(data_len))
    assert prim.hmac_hash(key, data) == hmac.new(key, data, hashlib.blake2s).digest()


def test_loaded_key_dh_matches_raw() -> None:
    a, b = bytes(range(1, 33)), bytes(range(40, 72))
    ka = prim.private_key(a)
    assert prim.public_bytes(ka) == prim.public_key(a)
    assert prim.dh_key(ka, prim.public_key(b)) == prim.dh(b, prim.public_key(a))
    with pytest.raises(NoiseError):
        prim.private_key(a[:31])
    with pytest.raises(NoiseError):
        prim.dh_key(ka, bytes(31))
