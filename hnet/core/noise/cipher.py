"""Noise ``CipherState`` (Noise spec §5.1) for ChaChaPoly.

After ``Split()`` each direction of a session owns one :class:`CipherState`. The transport fast
path is :meth:`CipherState.encrypt` / :meth:`CipherState.decrypt`: one call into the AEAD object
held since construction, plus the 12-byte nonce built with a precompiled :class:`struct.Struct`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hnet.core.noise.errors import NoiseError
from hnet.core.noise.primitives import KEYLEN, TAGLEN, BytesLike, nonce_bytes

#: The largest nonce value ever used. 2**64 - 1 is reserved by the spec (§5.1), so a cipher that
#: has used ``MAX_NONCE`` refuses any further operation.
MAX_NONCE = 2**64 - 2


class CipherState:
    """A ChaChaPoly key and its 64-bit nonce counter.

    Without a key (``key is None``, only during the handshake) encryption is the identity, as the
    spec requires. The nonce starts at 0 and increases by one per successful operation; a failed
    decryption leaves it unchanged (the caller must drop the session anyway).
    """

    __slots__ = ("_aead", "_key", "_n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self._key: bytes | None = None
        self._n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """Set a new key and reset the nonce to 0 (``InitializeKey``)."""
        if len(key) != KEYLEN:
            raise NoiseError(f"cipher key must be {KEYLEN} bytes, got {len(key)}")
        self._key = bytes(key)
        self._aead = ChaCha20Poly1305(self._key)
        self._n = 0

    def export_key(self) -> bytes:
        """The raw 32-byte key, read-only, as input keying material for sub-key derivation.

        Used by the QUIC transport to derive per-stream keys from the ``Split()`` keys
        (docs/quic.md). A key used for derivation must not also encrypt. Never log it.
        """
        if self._key is None:
            raise NoiseError("cipher has no key")
        return self._key

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    @property
    def nonce(self) -> int:
        """The nonce the next operation will use."""
        return self._n

    def set_nonce(self, n: int) -> None:
        """``SetNonce``: for tests and out-of-order transports; not used by TCP/WS."""
        if not 0 <= n < 2**64:
            raise NoiseError("nonce out of range")
        self._n = n

    def encrypt(self, plaintext: BytesLike, ad: BytesLike = b"") -> bytes:
        """``EncryptWithAd``: ciphertext (plaintext length + 16) with the next nonce."""
        aead = self._aead
        if aead is None:
            return bytes(plaintext)
        n = self._n
        if n > MAX_NONCE:
            raise NoiseError("nonce exhausted")
        ct = aead.encrypt(nonce_bytes(n), plaintext, ad)
        self._n = n + 1
        return ct

    def decrypt(self, ciphertext: BytesLike, ad: BytesLike = b"") -> bytes:
        """``DecryptWithAd``: the plaintext, or :class:`NoiseError` if authentication fails."""
        aead = self._aead
        if aead is None:
            return bytes(ciphertext)
        n = self._n
        if n > MAX_NONCE:
            raise NoiseError("nonce exhausted")
        if len(ciphertext) < TAGLEN:
            raise NoiseError("ciphertext shorter than the tag")
        try:
            pt = aead.decrypt(nonce_bytes(n), ciphertext, ad)
        except InvalidTag:
            pt = None
        if pt is None:
            # Drop our references first: the traceback keeps this frame alive, and a
            # memoryview held there would stop the caller from resizing its buffer.
            del ciphertext, ad
            raise NoiseError("decryption failed (bad tag)")
        self._n = n + 1
        return pt

    def encrypt_into(self, plaintext: BytesLike, out: BytesLike, ad: BytesLike = b"") -> None:
        """:meth:`encrypt` writing the ciphertext into ``out`` (a writable buffer of exactly
        ``len(plaintext) + 16`` bytes, e.g. a memoryview slice) instead of a new object."""
        aead = self._aead
        if aead is None:
            memoryview(out)[:] = plaintext
            return
        n = self._n
        if n > MAX_NONCE:
            raise NoiseError("nonce exhausted")
        aead.encrypt_into(nonce_bytes(n), plaintext, ad, out)
        self._n = n + 1

    def decrypt_into(self, ciphertext: BytesLike, out: BytesLike, ad: BytesLike = b"") -> None:
        """:meth:`decrypt` writing the plaintext into ``out`` (a writable buffer of exactly
        ``len(ciphertext) - 16`` bytes). On a bad tag ``out`` may hold unauthenticated bytes:
        the caller must discard it (and the session)."""
        aead = self._aead
        if aead is None:
            memoryview(out)[:] = ciphertext
            return
        n = self._n
        if n > MAX_NONCE:
            raise NoiseError("nonce exhausted")
        if len(ciphertext) < TAGLEN:
            raise NoiseError("ciphertext shorter than the tag")
        try:
            aead.decrypt_into(nonce_bytes(n), ciphertext, ad, out)
        except InvalidTag:
            ok = False
        else:
            ok = True
        if not ok:
            del ciphertext, ad, out  # as in decrypt: no views kept alive by the traceback
            raise NoiseError("decryption failed (bad tag)")
        self._n = n + 1

    def __repr__(self) -> str:  # never show the key
        return f"CipherState(has_key={self.has_key}, nonce={self._n})"
