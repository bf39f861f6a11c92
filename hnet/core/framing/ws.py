"""Reference WebSocket framing, sans-I/O (docs/protocol.md §5 "WebSocket framing").

Handshake phase: each Noise handshake message (and a RoutingRequest) is one whole binary WS
message, so there is nothing to frame, only caps to enforce (:func:`check_handshake_message`;
the first message is classified with :func:`classify_first_frame`, same rule as TCP: reference
``net/ws/mod.rs`` ``recv_connection``).

Transport phase, confirmed against the reference ``net/ws/utils.rs`` ``send_protocol_message`` /
``recv_protocol_message``: the u32 BE length is prepended to the serialized message and the
*concatenation* is encrypted in chunks of 65,519 plaintext bytes, so the first chunk holds the
4-byte length plus the first 65,515 message bytes. Each ciphertext is one binary WS message with
no other prefix. The receiver decrypts a WS message, requires >= 4 plaintext bytes, reads the
length, checks it against the cap, then takes chunks until it has that many bytes.

Receiving is stricter than the reference in two ways: a chunk may not carry more bytes than the
message still lacks (the reference appends them and lets msgpack ignore the trailing bytes; its
sender never produces that), and a zero-length message is an error (as over TCP). A WS message
longer than 65,535 bytes is refused before decryption; the adapter should also set its WebSocket
library's maximum message size to :data:`hnet.limits.NOISE_MAX_MESSAGE`.
"""

from __future__ import annotations

import struct

from hnet.core.framing.errors import FramingError
from hnet.core.framing.tcp import FirstFrame, classify_first_frame
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.limits import (
    HANDSHAKE_MAX_MESSAGE,
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_MAX_PLAINTEXT,
    NOISE_TAG_LEN,
)

__all__ = ["FirstFrame", "WsTransport", "check_handshake_message", "classify_first_frame"]

BytesLike = bytes | bytearray | memoryview

_U32 = struct.Struct(">I")
_LEN_PREFIX = 4
#: Smallest WS transport message: one plaintext byte plus the tag.
_MIN_CHUNK = NOISE_TAG_LEN + 1


def check_handshake_message(msg: BytesLike, max_len: int = HANDSHAKE_MAX_MESSAGE) -> bytes:
    """Return a handshake-phase WS message as bytes, or raise if it is larger than ``max_len``."""
    if len(msg) > max_len:
        raise FramingError(f"handshake WS message of {len(msg)} bytes exceeds the cap {max_len}")
    return bytes(msg)


class WsTransport:
    """Encrypting framer for one WebSocket Noise session (both directions).

    ``encrypt_message`` returns the binary WS messages to send, in order. ``feed_ws_message``
    takes one received binary WS message and returns the messages it completes (0 or 1).
    Any receive error raises :class:`FramingError` and the object refuses further input.
    """

    __slots__ = ("_broken", "_claimed", "_got", "_max_message", "_parts", "_recv", "_send")

    def __init__(
        self, send: CipherState, recv: CipherState, max_message: int = MESSAGE_MAX_SIZE
    ) -> None:
        if not 1 <= max_message < 2**32:
            raise ValueError("max_message must be 1..2**32-1")
        self._send = send
        self._recv = recv
        self._max_message = max_message
        self._claimed = 0  # 0: waiting for the first chunk of a message
        self._got = 0
        self._parts: list[bytes] = []
        self._broken = False

    # --- send ---------------------------------------------------------------------------------

    def encrypt_message(self, plaintext: BytesLike) -> list[bytes]:
        """One ciphertext per WS message: ``len(u32 BE) || plaintext`` in 65,519-byte chunks."""
        n = len(plaintext)
        if n == 0:
            raise FramingError("refusing to send an empty message")
        if n > self._max_message:
            raise FramingError(f"message of {n} bytes exceeds {self._max_message}")
        encrypt = self._send.encrypt
        first = NOISE_MAX_PLAINTEXT - _LEN_PREFIX
        try:
            if n <= first:  # the common case: one WS message
                return [encrypt(_U32.pack(n) + plaintext)]
            view = memoryview(plaintext)
            out = [encrypt(_U32.pack(n) + view[:first])]
            for off in range(first, n, NOISE_MAX_PLAINTEXT):
                out.append(encrypt(view[off : off + NOISE_MAX_PLAINTEXT]))
        except NoiseError as exc:
            raise FramingError(f"cannot encrypt: {exc}") from exc
        return out

    # --- receive ------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Plaintext bytes held for the message in progress."""
        return self._got

    def feed_ws_message(self, ct: BytesLike) -> list[bytes]:
        """Consume one binary WS message; return the message it completes, if any."""
        if self._broken:
            raise FramingError("transport already failed")
        try:
            return self._feed(ct)
        except FramingError:
            self._broken = True
            self._parts = []
            raise

    def _feed(self, ct: BytesLike) -> list[bytes]:
        n = len(ct)
        if n > NOISE_MAX_MESSAGE:
            raise FramingError(f"WS message of {n} bytes exceeds {NOISE_MAX_MESSAGE}")
        first = self._claimed == 0
        minimum = _MIN_CHUNK + (_LEN_PREFIX if first else 0)
        if n < minimum:
            raise FramingError(f"WS transport message of {n} bytes (minimum {minimum})")
        try:
            pt = self._recv.decrypt(ct)
        except NoiseError as exc:
            raise FramingError(f"WS transport message failed to decrypt: {exc}") from exc
        if first:
            (claimed,) = _U32.unpack_from(pt, 0)
            if claimed == 0:
                raise FramingError("zero-length transport message")
            if claimed > self._max_message:
                raise FramingError(f"claimed message length {claimed} exceeds {self._max_message}")
            body = pt[_LEN_PREFIX:]
            if len(body) > claimed:
                raise FramingError("first chunk overruns the claimed message length")
            if len(body) == claimed:
                return [body]
            self._claimed = claimed
            self._parts = [body]
            self._got = len(body)
            return []
        if len(pt) > self._claimed - self._got:
            raise FramingError("chunk overruns the claimed message length")
        self._parts.append(pt)
        self._got += len(pt)
        if self._got < self._claimed:
            return []
        msg = b"".join(self._parts)
        self._claimed = 0
        self._got = 0
        self._parts = []
        return [msg]
