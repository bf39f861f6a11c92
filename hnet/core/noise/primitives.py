"""Cryptographic primitives of ``Noise_XX_25519_ChaChaPoly_BLAKE2s`` (Noise spec rev. 34, §12).

Thin, allocation-light wrappers around :mod:`cryptography` (X25519, ChaCha20-Poly1305) and
:mod:`hashlib` / :mod:`hmac` (BLAKE2s). Nothing here keeps state except the AEAD key object.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hnet.core.noise.errors import NoiseError

#: Any contiguous byte buffer accepted as input.
BytesLike = bytes | bytearray | memoryview

#: X25519 key and shared-secret length.
DHLEN = 32
#: BLAKE2s output length.
HASHLEN = 32
#: BLAKE2s block length (HMAC pad size).
BLOCKLEN = 64
#: ChaCha20-Poly1305 key length.
KEYLEN = 32
#: Poly1305 tag length.
TAGLEN = 16

_ZERO_DH = bytes(DHLEN)
#: Noise nonce: 32 bits of zeros, then the 64-bit counter little-endian (Noise §12.3).
_NONCE = struct.Struct("<4xQ")
nonce_bytes = _NONCE.pack


# --- DH ---------------------------------------------------------------------------------------


def generate_private_key() -> bytes:
    """A fresh X25519 private key (32 random bytes; clamping happens inside X25519)."""
    return os.urandom(DHLEN)


def private_key(private: bytes) -> X25519PrivateKey:
    """The X25519 key object of 32 private bytes.

    Loading a key costs about as much as one exchange (OpenSSL derives the public key), so a
    handshake loads each of its keys once and passes the object to :func:`dh_key`.
    """
    if len(private) != DHLEN:
        raise NoiseError(f"X25519 private key must be {DHLEN} bytes, got {len(private)}")
    return X25519PrivateKey.from_private_bytes(private)


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte public key of a loaded private key."""
    return key.public_key().public_bytes_raw()


def public_key(private: bytes) -> bytes:
    """The X25519 public key of ``private`` (32 bytes)."""
    return public_bytes(private_key(private))


def dh_key(key: X25519PrivateKey, public: BytesLike) -> bytes:
    """X25519(key, public). An all-zero result (low-order public key) is an error."""
    if len(public) != DHLEN:
        raise NoiseError("X25519 keys must be 32 bytes")
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
    except ValueError as exc:  # OpenSSL refuses an all-zero shared secret
        raise NoiseError("X25519 with a low-order public key") from exc
    if hmac.compare_digest(shared, _ZERO_DH):
        raise NoiseError("X25519 with a low-order public key")
    return shared


def dh(private: bytes, public: BytesLike) -> bytes:
    """X25519(private, public) from raw private bytes (see :func:`dh_key`)."""
    return dh_key(private_key(private), public)


# --- hash -------------------------------------------------------------------------------------


def hash_(data: BytesLike) -> bytes:
    """BLAKE2s-256."""
    return hashlib.blake2s(data).digest()


def hash2(a: BytesLike, b: BytesLike) -> bytes:
    """BLAKE2s-256(a || b) without concatenating."""
    h = hashlib.blake2s(a)
    h.update(b)
    return h.digest()


#: Byte maps XORing every byte with the HMAC inner and outer pads (RFC 2104).
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def hmac_hash(key: bytes, data: BytesLike) -> bytes:
    """HMAC-BLAKE2s-256 (RFC 2104 with a 64-byte block).

    Written out rather than through :mod:`hmac`, which for a hash constructor (BLAKE2s has no
    OpenSSL HMAC here) builds two hash objects and copies them: this is half the time, and a
    handshake makes a dozen of these per side. Checked against :func:`hmac.new` in the tests.
    """
    if len(key) > BLOCKLEN:
        key = hashlib.blake2s(key).digest()
    padded = key.ljust(BLOCKLEN, b"\0")
    inner = hashlib.blake2s(padded.translate(_IPAD))
    inner.update(data)
    outer = hashlib.blake2s(padded.translate(_OPAD))
    outer.update(inner.digest())
    return outer.digest()


def hkdf(chaining_key: bytes, ikm: BytesLike, outputs: int) -> tuple[bytes, ...]:
    """Noise HKDF (§4.3): 2 or 3 outputs of HASHLEN bytes each."""
    if outputs not in (2, 3):
        raise ValueError("HKDF produces 2 or 3 outputs")
    temp = hmac_hash(chaining_key, ikm)
    out1 = hmac_hash(temp, b"\x01")
    out2 = hmac_hash(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, hmac_hash(temp, out2 + b"\x03")


# --- AEAD -------------------------------------------------------------------------------------


def encrypt(key: bytes, n: int, ad: BytesLike, plaintext: BytesLike) -> bytes:
    """Noise ``ENCRYPT(k, n, ad, plaintext)``: one-shot ChaCha20-Poly1305 with the Noise nonce.

    Stateless reference form; sessions use :class:`hnet.core.noise.cipher.CipherState`, which keeps
    the key schedule between calls.
    """
    return ChaCha20Poly1305(key).encrypt(nonce_bytes(n), plaintext, ad)


def decrypt(key: bytes, n: int, ad: BytesLike, ciphertext: BytesLike) -> bytes:
    """Noise ``DECRYPT(k, n, ad, ciphertext)``; :class:`NoiseError` on a bad tag."""
    try:
        return ChaCha20Poly1305(key).decrypt(nonce_bytes(n), ciphertext, ad)
    except InvalidTag as exc:
        raise NoiseError("decryption failed (bad tag)") from exc
