"""Noise ``SymmetricState`` and the XX handshake (``Noise_XX_25519_ChaChaPoly_BLAKE2s``).

Sans-I/O: :class:`XXHandshake` takes and returns whole Noise messages (no framing). The pattern::

    XX:
      -> e
      <- e, ee, s, es
      -> s, se

The caller alternates :meth:`XXHandshake.write_message` and :meth:`XXHandshake.read_message`
according to its role, then calls :meth:`XXHandshake.split` once for the transport ciphers.
Any failure (call out of turn, bad length, bad tag, low-order key) raises :class:`NoiseError`
and poisons the handshake: every later call raises too.
"""

from __future__ import annotations

from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.core.noise.primitives import (
    DHLEN,
    HASHLEN,
    TAGLEN,
    BytesLike,
    dh_key,
    generate_private_key,
    hash2,
    hash_,
    hkdf,
    private_key,
    public_bytes,
)
from hnet.limits import NOISE_MAX_MESSAGE

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_BLAKE2s"

__all__ = ["PROTOCOL_NAME", "NoiseError", "SymmetricState", "XXHandshake"]


class SymmetricState:
    """Chaining key, handshake hash and the handshake's :class:`CipherState` (Noise §5.2)."""

    __slots__ = ("_cipher", "_ck", "_h")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        if len(protocol_name) <= HASHLEN:
            self._h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self._h = hash_(protocol_name)
        self._ck = self._h
        self._cipher = CipherState()

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after the handshake, a unique, secret-free session identifier."""
        return self._h

    @property
    def has_key(self) -> bool:
        return self._cipher.has_key

    def mix_key(self, ikm: BytesLike) -> None:
        self._ck, temp_k = hkdf(self._ck, ikm, 2)
        self._cipher.initialize_key(temp_k)

    def mix_hash(self, data: BytesLike) -> None:
        self._h = hash2(self._h, data)

    def encrypt_and_hash(self, plaintext: BytesLike) -> bytes:
        ciphertext = self._cipher.encrypt(plaintext, self._h)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: BytesLike) -> bytes:
        plaintext = self._cipher.decrypt(ciphertext, self._h)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: (c1, c2); the initiator sends with c1, the responder with c2."""
        k1, k2 = hkdf(self._ck, b"", 2)
        return CipherState(k1), CipherState(k2)


# Message index -> (sender is initiator, fixed bytes before the payload, payload is encrypted).
# -> e                : 32 (e)                              ; no key yet, payload in clear
# <- e, ee, s, es     : 32 (e) + 32 + 16 (encrypted s)      ; payload encrypted
# -> s, se            : 32 + 16 (encrypted s)               ; payload encrypted
_XX_MESSAGES: tuple[tuple[bool, int, bool], ...] = (
    (True, DHLEN, False),
    (False, DHLEN + DHLEN + TAGLEN, True),
    (True, DHLEN + TAGLEN, True),
)


class XXHandshake:
    """One side of a ``Noise_XX_25519_ChaChaPoly_BLAKE2s`` handshake.

    ``static_private`` is this side's X25519 static key (the reference uses a fresh one per
    connection; identity is proved by the payload's signature over it). ``ephemeral_private``
    is for test vectors only; by default a fresh ephemeral key is generated.
    """

    __slots__ = (
        "_e",
        "_e_pub",
        "_failed",
        "_index",
        "_initiator",
        "_re",
        "_rs",
        "_s",
        "_s_pub",
        "_split_done",
        "_ss",
    )

    def __init__(
        self,
        initiator: bool,
        static_private: bytes,
        prologue: bytes = b"",
        ephemeral_private: bytes | None = None,
    ) -> None:
        if len(static_private) != DHLEN:
            raise NoiseError("static private key must be 32 bytes")
        if ephemeral_private is not None and len(ephemeral_private) != DHLEN:
            raise NoiseError("ephemeral private key must be 32 bytes")
        self._initiator = initiator
        # Key objects, loaded once: each load costs about as much as an exchange.
        self._s = private_key(bytes(static_private))
        self._s_pub = public_bytes(self._s)
        self._e = private_key(
            bytes(ephemeral_private) if ephemeral_private is not None else generate_private_key()
        )
        self._e_pub = public_bytes(self._e)
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._index = 0
        self._failed = False
        self._split_done = False
        self._ss = SymmetricState(PROTOCOL_NAME)
        self._ss.mix_hash(prologue)

    # --- state --------------------------------------------------------------------------------

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def is_complete(self) -> bool:
        return self._index == len(_XX_MESSAGES) and not self._failed

    @property
    def handshake_hash(self) -> bytes:
        return self._ss.handshake_hash

    @property
    def static_public(self) -> bytes:
        return self._s_pub

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, known after its ``s`` token was read."""
        return self._rs

    @property
    def is_my_turn(self) -> bool:
        """Whether the next call must be :meth:`write_message` (False: :meth:`read_message`)."""
        return self._index < len(_XX_MESSAGES) and _XX_MESSAGES[self._index][0] == self._initiator

    def _check_turn(self, writing: bool) -> tuple[int, bool]:
        if self._failed:
            raise NoiseError("handshake already failed")
        if self._index >= len(_XX_MESSAGES):
            raise NoiseError("handshake already complete")
        sender_is_initiator, fixed, encrypted = _XX_MESSAGES[self._index]
        if (sender_is_initiator == self._initiator) != writing:
            raise NoiseError(
                f"out of turn: expected to {'read' if writing else 'write'} message {self._index}"
            )
        return fixed, encrypted

    # --- messages -----------------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """Produce the next handshake message carrying ``payload``."""
        fixed, encrypted = self._check_turn(writing=True)
        total = fixed + len(payload) + (TAGLEN if encrypted else 0)
        if total > NOISE_MAX_MESSAGE:
            raise NoiseError(f"handshake message of {total} bytes exceeds {NOISE_MAX_MESSAGE}")
        try:
            out = self._write_tokens()
            out.append(self._ss.encrypt_and_hash(payload))
        except BaseException:
            self._failed = True
            raise
        self._index += 1
        return b"".join(out)

    def read_message(self, message: BytesLike) -> bytes:
        """Consume the peer's next handshake message; return its (decrypted) payload."""
        fixed, encrypted = self._check_turn(writing=False)
        minimum = fixed + (TAGLEN if encrypted else 0)
        if not minimum <= len(message) <= NOISE_MAX_MESSAGE:
            self._failed = True
            raise NoiseError(
                f"handshake message {self._index} has {len(message)} bytes "
                f"(must be {minimum}..{NOISE_MAX_MESSAGE})"
            )
        # Work on our own immutable copy (at most 64 KiB): no view of the caller's buffer
        # survives this call, even in a traceback.
        view = memoryview(bytes(message))
        try:
            rest = self._read_tokens(view)
            payload = self._ss.decrypt_and_hash(rest)
        except BaseException:
            self._failed = True
            raise
        self._index += 1
        return payload

    def _write_tokens(self) -> list[bytes]:
        ss = self._ss
        if self._index == 0:  # -> e
            ss.mix_hash(self._e_pub)
            return [self._e_pub]
        if self._index == 1:  # <- e, ee, s, es   (we are the responder)
            assert self._re is not None
            ss.mix_hash(self._e_pub)
            ss.mix_key(dh_key(self._e, self._re))  # ee
            enc_s = ss.encrypt_and_hash(self._s_pub)
            ss.mix_key(dh_key(self._s, self._re))  # es (responder side: DH(s, re))
            return [self._e_pub, enc_s]
        # -> s, se   (we are the initiator)
        assert self._re is not None
        enc_s = ss.encrypt_and_hash(self._s_pub)
        ss.mix_key(dh_key(self._s, self._re))  # se
        return [enc_s]

    def _read_tokens(self, view: memoryview) -> memoryview:
        ss = self._ss
        if self._index == 0:  # -> e   (we are the responder)
            self._re = bytes(view[:DHLEN])
            ss.mix_hash(self._re)
            return view[DHLEN:]
        if self._index == 1:  # <- e, ee, s, es   (we are the initiator)
            self._re = bytes(view[:DHLEN])
            ss.mix_hash(self._re)
            ss.mix_key(dh_key(self._e, self._re))  # ee
            rs = ss.decrypt_and_hash(view[DHLEN : DHLEN + DHLEN + TAGLEN])
            ss.mix_key(dh_key(self._e, rs))  # es (initiator side: DH(e, rs))
            self._rs = rs
            return view[DHLEN + DHLEN + TAGLEN :]
        # -> s, se   (we are the responder)
        rs = ss.decrypt_and_hash(view[: DHLEN + TAGLEN])
        ss.mix_key(dh_key(self._e, rs))  # se (responder side: DH(e, rs))
        self._rs = rs
        return view[DHLEN + TAGLEN :]

    # --- transport ----------------------------------------------------------------------------

    def split(self) -> tuple[CipherState, CipherState]:
        """Return ``(send, recv)`` for this side. Allowed once, after the last message."""
        if not self.is_complete:
            raise NoiseError("split before the handshake is complete")
        if self._split_done:
            raise NoiseError("split already called")
        self._split_done = True
        c1, c2 = self._ss.split()
        return (c1, c2) if self._initiator else (c2, c1)
