"""Per-stream keys and the message framing of ``hnet-noise/1`` (sans-I/O).

After the Noise handshake each direction has one ``Split()`` key. No byte is ever encrypted with
it directly: every QUIC stream gets its own key, derived per direction and stream id, and its own
nonce counter from 0 (docs/quic.md, "Keys")::

    PRK(dir)     = HMAC-BLAKE2s(key = h, data = k_dir)                 HKDF-Extract, salt h
    K(dir, sid)  = HMAC-BLAKE2s(key = PRK(dir),
                                data = "hnet-quic/1" || dir || u64be(sid) || 0x01)
                                                                     HKDF-Expand, one block

where ``h`` is the Noise handshake hash, ``k_dir`` the Split() key of the direction and ``dir``
one byte, 0x00 initiator->responder, 0x01 responder->initiator.

One stream carries exactly one message, in frames ``[u16 BE ciphertext length][ciphertext]``::

    frame 0:   ENC(K, n=0, ad="", u32be(L))            the length header (22 bytes on the wire)
    frame i:   ENC(K, n=i, ad="", chunk_i)              i = 1.., chunks of 1..65,519 bytes
    then FIN, right after the frame completing L bytes.

A frame moved to another stream, replayed, reordered or reflected fails to authenticate (other
key or other nonce); a truncated message never completes (the header fixes L, FIN must come
exactly at L). Every length is checked before anything is buffered for it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hnet.core.framing.errors import FramingError
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.core.noise.primitives import hmac_hash, nonce_bytes
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.limits import (
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_MAX_PLAINTEXT,
    NOISE_TAG_LEN,
    QUIC_STREAM_MAX_BYTES,
)

__all__ = [
    "DIR_I2R",
    "DIR_R2I",
    "HEADER_FRAME_LEN",
    "LABEL",
    "DirectionKeys",
    "MessageOpener",
    "MessageSealer",
    "derive_stream_key",
    "open_whole",
    "seal_small",
    "wire_size",
]

#: HKDF info prefix of every stream key.
LABEL = b"hnet-quic/1"
#: Direction bytes: initiator (QUIC client) to responder (QUIC server), and back.
DIR_I2R = 0x00
DIR_R2I = 0x01
#: The length header frame on the wire: u16 length, then 4 bytes of length + the tag.
HEADER_FRAME_LEN = 2 + 4 + NOISE_TAG_LEN
#: Largest QUIC stream id (62-bit varint).
MAX_STREAM_ID = 2**62 - 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER_CT = 4 + NOISE_TAG_LEN
_MIN_CHUNK = NOISE_TAG_LEN + 1
_BLOCK = 64  # BLAKE2s block size, the HMAC pad length
_HEADER_PREFIX = _U16.pack(_HEADER_CT)
#: a whole one-chunk message: header frame, then a chunk frame's u16 prefix
_WHOLE_MIN = HEADER_FRAME_LEN + 2 + _MIN_CHUNK
#: the Noise nonces of frames 0 and 1, for the one-chunk fast paths
_NONCE0 = nonce_bytes(0)
_NONCE1 = nonce_bytes(1)

BytesLike = bytes | bytearray | memoryview


def wire_size(size: int) -> int:
    """Bytes a message of ``size`` bytes takes on its stream (frames and tags)."""
    chunks = -(-size // NOISE_MAX_PLAINTEXT)
    return HEADER_FRAME_LEN + size + (2 + NOISE_TAG_LEN) * chunks


def derive_stream_key(prk: bytes, direction: int, stream_id: int) -> bytes:
    """``K(dir, sid)`` from the direction's HKDF pseudo-random key (see the module docstring)."""
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream id {stream_id} out of range")
    return hmac_hash(prk, LABEL + bytes((direction,)) + _U64.pack(stream_id) + b"\x01")


class DirectionKeys:
    """The key schedule of one direction of one session.

    ``cipher`` computes exactly :func:`derive_stream_key`, with the HMAC's inner and outer
    hash states keyed once (Python's ``hmac`` re-keys BLAKE2s in pure Python on every call).
    """

    __slots__ = ("_inner", "_outer", "_prefix", "direction")

    def __init__(self, split_key: bytes, handshake_hash: bytes, direction: int) -> None:
        if direction not in (DIR_I2R, DIR_R2I):
            raise ValueError("direction must be DIR_I2R or DIR_R2I")
        if len(split_key) != 32 or len(handshake_hash) != 32:
            raise ValueError("split key and handshake hash are 32 bytes")
        prk = hmac_hash(handshake_hash, split_key).ljust(_BLOCK, b"\x00")
        self._inner = hashlib.blake2s(bytes(b ^ 0x36 for b in prk))
        self._outer = hashlib.blake2s(bytes(b ^ 0x5C for b in prk))
        self._prefix = LABEL + bytes((direction,))
        self.direction = direction

    def key(self, stream_id: int) -> bytes:
        """``K(dir, stream_id)``, the stream's 32-byte key (never log it)."""
        if not 0 <= stream_id <= MAX_STREAM_ID:
            raise ValueError(f"stream id {stream_id} out of range")
        inner = self._inner.copy()
        inner.update(self._prefix + _U64.pack(stream_id) + b"\x01")
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def cipher(self, stream_id: int) -> CipherState:
        """A fresh cipher (nonce 0) under ``K(dir, stream_id)``."""
        return CipherState(self.key(stream_id))

    def __repr__(self) -> str:  # never show key material
        return f"DirectionKeys(direction={self.direction})"


def seal_small(key: bytes, message: BytesLike) -> bytes:
    """Every frame of a message of one chunk (1..NOISE_MAX_PLAINTEXT bytes) on a stream whose
    key is ``key``, as ``MessageSealer(CipherState(key), message).seal_all()`` gives them, in
    fewer steps: the two nonces are constants, so no cipher state is kept."""
    n = len(message)
    if not 0 < n <= NOISE_MAX_PLAINTEXT:
        raise ValueError(f"message of {n} bytes (one chunk is 1..{NOISE_MAX_PLAINTEXT})")
    aead = ChaCha20Poly1305(key)
    body = aead.encrypt(_NONCE1, message, None)
    return b"".join(
        (_HEADER_PREFIX, aead.encrypt(_NONCE0, _U32.pack(n), None), _U16.pack(len(body)), body)
    )


def open_whole(
    key: bytes,
    data: bytes,
    *,
    max_message: int = MESSAGE_MAX_SIZE,
    on_claim: Callable[[int], None] | None = None,
) -> bytes | None:
    """The message of a stream whose key is ``key`` and whose bytes all came at once, FIN
    included (``data``), when they are exactly one header frame and one chunk frame completing
    it: the common small message.

    None when ``data`` is anything else, or its header frame does not authenticate or claims
    another length: then :class:`MessageOpener` (with a fresh cipher under ``key``) must take
    the stream, which applies every rule and raises what breaks one. Once the claim is
    accepted the checks are :class:`MessageOpener`'s own: ``on_claim`` is called as it would
    call it, and a chunk that fails to authenticate raises the same error.
    """
    size = len(data)
    if size < _WHOLE_MIN or data[:2] != _HEADER_PREFIX:
        return None
    (n,) = _U16.unpack_from(data, HEADER_FRAME_LEN)
    if size != HEADER_FRAME_LEN + 2 + n or n > NOISE_MAX_MESSAGE:
        return None
    aead = ChaCha20Poly1305(key)
    view = memoryview(data)
    try:
        try:
            header = aead.decrypt(_NONCE0, view[2:HEADER_FRAME_LEN], None)
        except InvalidTag:
            return None
        (claimed,) = _U32.unpack(header)
        if claimed != n - NOISE_TAG_LEN or not 0 < claimed <= max_message:
            return None
        if on_claim is not None:
            on_claim(claimed)
        try:
            return aead.decrypt(_NONCE1, view[HEADER_FRAME_LEN + 2 :], None)
        except InvalidTag:
            pass
    finally:
        view.release()
    raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, "frame failed to authenticate")


class MessageSealer:
    """Encrypts one message for one stream, frame by frame, as QUIC can take it."""

    __slots__ = ("_cipher", "_message", "_pos", "_started", "size")

    def __init__(self, cipher: CipherState, message: BytesLike) -> None:
        n = len(message)
        if not 0 < n <= MESSAGE_MAX_SIZE:
            raise ValueError(f"message of {n} bytes (must be 1..{MESSAGE_MAX_SIZE})")
        self._cipher = cipher
        self._message = memoryview(message)
        self._pos = 0
        self._started = False
        self.size = n

    @property
    def done(self) -> bool:
        return self._pos >= self.size

    def _frame(self, plaintext: BytesLike) -> bytes:
        try:
            ct = self._cipher.encrypt(plaintext)
        except NoiseError as e:  # cannot happen below 2**64 frames; kept for completeness
            raise FramingError(f"cannot encrypt: {e}") from e
        return _U16.pack(len(ct)) + ct

    def next_frames(self, budget: int) -> bytes:
        """The next whole frames, about ``budget`` bytes (at least one frame), for the stream."""
        parts: list[bytes] = []
        total = 0
        if not self._started:
            self._started = True
            header = self._frame(_U32.pack(self.size))
            parts.append(header)
            total += len(header)
        while not self.done and (total < budget or not parts):
            end = min(self._pos + NOISE_MAX_PLAINTEXT, self.size)
            frame = self._frame(self._message[self._pos : end])
            self._pos = end
            parts.append(frame)
            total += len(frame)
        if self.done:
            self._message.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seal_all(self) -> bytes:
        """Every remaining frame."""
        return self.next_frames(2**62)


_LEN = 0  # waiting for a frame's u16 length
_FRAME = 1  # waiting for the frame's ciphertext
_DONE = 2  # the message is complete; only FIN may follow


class MessageOpener:
    """Reassembles and decrypts the one message of one incoming stream.

    ``feed`` takes the stream's bytes in order (as QUIC delivers them) and returns the message
    once it is complete *and* the stream has ended; any rule broken raises
    :class:`QuicProtocolError` and the opener refuses further input. ``on_claim`` is called with
    the claimed length as soon as the header frame is authenticated, before anything is
    allocated for the body: it may raise to refuse it (the connection's memory bound).
    """

    __slots__ = (
        "_broken",
        "_buf",
        "_cipher",
        "_claimed",
        "_got",
        "_max_message",
        "_need",
        "_on_claim",
        "_parts",
        "_state",
        "_wire",
    )

    def __init__(
        self,
        cipher: CipherState,
        *,
        max_message: int = MESSAGE_MAX_SIZE,
        on_claim: Callable[[int], None] | None = None,
    ) -> None:
        self._cipher = cipher
        self._max_message = max_message
        self._on_claim = on_claim
        self._buf = bytearray()
        self._state = _LEN
        self._need = 0
        self._claimed = 0
        self._got = 0
        self._parts: list[bytes] = []
        self._broken = False
        #: bytes fed so far: never more than one maximal message takes on the wire
        self._wire = 0

    @property
    def claimed(self) -> int:
        """The message length from the header, 0 before it."""
        return self._claimed

    @property
    def buffered(self) -> int:
        """Bytes held: undecrypted ciphertext plus the plaintext so far."""
        return len(self._buf) + self._got

    def feed(self, data: BytesLike, fin: bool = False) -> bytes | None:
        if self._broken:
            raise QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, "stream already failed")
        try:
            if data:
                self._wire += len(data)
                if self._wire > QUIC_STREAM_MAX_BYTES:
                    raise self._violation(
                        f"stream carries over {QUIC_STREAM_MAX_BYTES} bytes (one message's most)"
                    )
                self._feed(data)
            if not fin:
                return None
            if self._state != _DONE or self._buf:
                raise QuicProtocolError(
                    QuicAppError.PROTOCOL_VIOLATION,
                    f"stream ended after {self._got} of {self._claimed or '?'} bytes (truncated)",
                )
            message = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts = []
            self._broken = True  # nothing may follow
            return message
        except QuicProtocolError:
            self._broken = True
            self._buf = bytearray()
            self._parts = []
            raise

    def _violation(self, reason: str) -> QuicProtocolError:
        return QuicProtocolError(QuicAppError.PROTOCOL_VIOLATION, reason)

    def _feed(self, data: BytesLike) -> None:
        if self._state == _DONE:
            raise self._violation("bytes after the end of the message")
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while True:
                avail = end - pos
                if self._state == _LEN:
                    if avail < 2:
                        break
                    (n,) = _U16.unpack_from(buf, pos)
                    pos += 2
                    if self._claimed == 0:
                        if n != _HEADER_CT:
                            raise self._violation(f"length frame of {n} bytes, not {_HEADER_CT}")
                    elif not _MIN_CHUNK <= n <= NOISE_MAX_MESSAGE:
                        raise self._violation(f"frame of {n} bytes")
                    elif n - NOISE_TAG_LEN > self._claimed - self._got:
                        raise self._violation("frame overruns the claimed message length")
                    self._need = n
                    self._state = _FRAME
                elif self._state == _FRAME:
                    n = self._need
                    if avail < n:
                        break
                    try:
                        pt = self._cipher.decrypt(view[pos : pos + n])
                    except NoiseError:
                        raise self._violation("frame failed to authenticate") from None
                    pos += n
                    if self._claimed == 0:
                        self._header(pt)
                    else:
                        self._parts.append(pt)
                        self._got += len(pt)
                    self._state = _DONE if self._got == self._claimed else _LEN
                else:  # _DONE
                    if avail:
                        raise self._violation("bytes after the end of the message")
                    break
        finally:
            view.release()
        if pos:
            del buf[:pos]

    def _header(self, pt: bytes) -> None:
        (claimed,) = _U32.unpack(pt)
        if not 0 < claimed <= self._max_message:
            raise QuicProtocolError(
                QuicAppError.LIMIT_EXCEEDED,
                f"claimed message length {claimed} (must be 1..{self._max_message})",
            )
        if self._on_claim is not None:
            self._on_claim(claimed)
        self._claimed = claimed
