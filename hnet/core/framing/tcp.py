"""Reference TCP framing, sans-I/O (docs/protocol.md §4 "TCP framing"; §7 "Routed connections").

Handshake phase: every message, including a RoutingRequest, is ``[u16 BE len][bytes]``.
The responder classifies the first frame with :func:`classify_first_frame`: exactly 32 bytes is
Noise ``-> e``, anything else a RoutingRequest (reference: ``net/tcp/mod.rs`` ``recv_connection``).

Transport phase, per message (reference: ``net/tcp/utils.rs`` ``send_protocol_message``)::

    [u32 BE plaintext length, in clear]
    then, per chunk of at most 65,519 plaintext bytes: [u16 BE ciphertext length][ciphertext]

Receiving is stricter than the reference (which allocates whatever length is claimed):

* the claimed length must be ``1..max_message`` before anything is allocated;
* a chunk's ciphertext length must be ``17..65535`` (no empty chunks, which would let a peer
  spin us without progress) and its plaintext must fit in what the message still lacks;
* chunks are decrypted as soon as they are complete, so at most one partial chunk of
  ciphertext is ever buffered, plus the plaintext of the message so far.

A zero-length message is an error both ways. The reference never sends one (a serialized
KernelMessage is never empty) and, if it received one, would fail to decode the empty body and
close the connection; we reject it at the framing layer instead.
"""

from __future__ import annotations

import enum
import struct

from hnet.core.framing.errors import FramingError
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.limits import (
    HANDSHAKE_MAX_MESSAGE,
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_MAX_PLAINTEXT,
    NOISE_TAG_LEN,
    ROUTING_REQUEST_MAX,
)

__all__ = [
    "NOISE_E_LEN",
    "FirstFrame",
    "HandshakeFrameReader",
    "TcpTransport",
    "classify_first_frame",
    "encode_handshake_frame",
]

BytesLike = bytes | bytearray | memoryview

#: Length of the first Noise XX message (``-> e`` with an empty payload).
NOISE_E_LEN = 32
#: Smallest transport chunk: one plaintext byte plus the tag.
_MIN_CHUNK = NOISE_TAG_LEN + 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


# --- handshake phase --------------------------------------------------------------------------


def encode_handshake_frame(msg: BytesLike) -> bytes:
    """``[u16 BE len][msg]`` for a handshake message or a RoutingRequest."""
    n = len(msg)
    if n > NOISE_MAX_MESSAGE:
        raise FramingError(f"handshake frame of {n} bytes exceeds {NOISE_MAX_MESSAGE}")
    return _U16.pack(n) + bytes(msg)


class FirstFrame(enum.Enum):
    """What the first frame a responder receives is (same rule over TCP and WebSocket)."""

    #: Noise ``-> e``: continue as Noise responder with this frame as message 1.
    NOISE = "noise"
    #: A msgpack RoutingRequest: decode it with the codec; the Noise handshake (or a
    #: passthrough) follows on the same connection.
    ROUTING_REQUEST = "routing_request"


def classify_first_frame(frame: BytesLike) -> FirstFrame:
    """Classify a responder's first frame by length only (the reference's rule).

    Exactly 32 bytes is Noise; otherwise a RoutingRequest, which must be 1..ROUTING_REQUEST_MAX
    bytes (an empty frame cannot be msgpack, and a longer one is refused before decoding).
    """
    n = len(frame)
    if n == NOISE_E_LEN:
        return FirstFrame.NOISE
    if n == 0:
        raise FramingError("empty first frame")
    if n > ROUTING_REQUEST_MAX:
        raise FramingError(f"first frame of {n} bytes exceeds ROUTING_REQUEST_MAX")
    return FirstFrame.ROUTING_REQUEST


class HandshakeFrameReader:
    """Incremental reader of ``[u16 BE len][msg]`` frames.

    ``feed`` returns the frames completed so far. A length above ``max_len`` raises
    :class:`FramingError` as soon as its 2-byte header arrives, so at most ``2 + max_len``
    bytes of an unfinished frame are ever held.

    ``max_frames`` stops parsing after that many frames in total: bytes after the last expected
    frame (transport data, or a routed stream to pipe) stay untouched and are returned by
    :meth:`take_remaining`. Both limits may be changed between calls, e.g. a responder reads
    one frame with ``max_len=ROUTING_REQUEST_MAX``; if it is Noise it sets ``max_frames = 2``
    and ``max_len = HANDSHAKE_MAX_MESSAGE`` and calls ``feed(b"")`` to parse what is buffered.
    The caller bounds what it feeds after :attr:`done`.
    """

    __slots__ = ("_buf", "_frames_read", "_max_frames", "_max_len")

    def __init__(self, max_len: int = HANDSHAKE_MAX_MESSAGE, max_frames: int | None = None) -> None:
        self._buf = bytearray()
        self._frames_read = 0
        self._max_len = 0
        self._max_frames: int | None = None
        self.max_len = max_len
        self.max_frames = max_frames

    @property
    def max_len(self) -> int:
        return self._max_len

    @max_len.setter
    def max_len(self, value: int) -> None:
        if not 0 <= value <= NOISE_MAX_MESSAGE:
            raise ValueError(f"max_len must be 0..{NOISE_MAX_MESSAGE}")
        self._max_len = value

    @property
    def max_frames(self) -> int | None:
        return self._max_frames

    @max_frames.setter
    def max_frames(self, value: int | None) -> None:
        if value is not None and value < self._frames_read:
            raise ValueError("max_frames below the number of frames already read")
        self._max_frames = value

    @property
    def frames_read(self) -> int:
        return self._frames_read

    @property
    def done(self) -> bool:
        """True once ``max_frames`` frames have been returned."""
        return self._max_frames is not None and self._frames_read >= self._max_frames

    @property
    def buffered(self) -> int:
        """Bytes held that were not returned as frames."""
        return len(self._buf)

    @property
    def needed(self) -> int:
        """Bytes still missing from the frame in progress (its header first); 0 once
        :attr:`done`. A reader that must not read past a frame reads exactly this much."""
        if self.done:
            return 0
        held = len(self._buf)
        if held < 2:
            return 2 - held
        n: int = _U16.unpack_from(self._buf, 0)[0]
        return max(0, 2 + n - held)

    def feed(self, data: BytesLike) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while not self.done and end - pos >= 2:
            (n,) = _U16.unpack_from(buf, pos)
            if n > self._max_len:
                raise FramingError(f"handshake frame of {n} bytes exceeds the cap {self._max_len}")
            if end - pos - 2 < n:
                break
            frames.append(bytes(buf[pos + 2 : pos + 2 + n]))
            pos += 2 + n
            self._frames_read += 1
        if pos:
            del buf[:pos]
        return frames

    def take_remaining(self) -> bytes:
        """Return and forget every byte not returned as a frame (a partial frame included)."""
        rest = bytes(self._buf)
        self._buf = bytearray()
        return rest


# --- transport phase --------------------------------------------------------------------------

_HEADER = 0  # waiting for the u32 message length
_CHUNK_HEADER = 1  # waiting for a u16 ciphertext length
_CHUNK = 2  # waiting for the ciphertext

#: Message length and first chunk length together (the common case: both arrive at once).
_U32_U16 = struct.Struct(">IH")


class TcpTransport:
    """Encrypting framer for one TCP Noise session (both directions).

    ``send``/``recv`` are the :class:`CipherState` pair from ``XXHandshake.split()``. Any
    receive error (bad length, bad tag) raises :class:`FramingError` and the object refuses
    all further input. Nonce exhaustion on send also raises :class:`FramingError`.
    """

    __slots__ = (
        "_broken",
        "_buf",
        "_claimed",
        "_ct_len",
        "_got",
        "_max_message",
        "_parts",
        "_recv",
        "_send",
        "_state",
    )

    def __init__(
        self, send: CipherState, recv: CipherState, max_message: int = MESSAGE_MAX_SIZE
    ) -> None:
        if not 1 <= max_message < 2**32:
            raise ValueError("max_message must be 1..2**32-1")
        self._send = send
        self._recv = recv
        self._max_message = max_message
        self._buf = bytearray()
        self._state = _HEADER
        self._claimed = 0
        self._got = 0
        self._ct_len = 0
        self._parts: list[bytes] = []
        self._broken = False

    # --- send ---------------------------------------------------------------------------------

    def encrypt_message(self, plaintext: BytesLike) -> bytes:
        """The whole framed, encrypted message as one buffer (one write per message)."""
        n = len(plaintext)
        if n == 0:
            raise FramingError("refusing to send an empty message")
        if n > self._max_message:
            raise FramingError(f"message of {n} bytes exceeds {self._max_message}")
        encrypt = self._send.encrypt
        try:
            if n <= NOISE_MAX_PLAINTEXT:
                return _U32_U16.pack(n, n + NOISE_TAG_LEN) + encrypt(plaintext)
            pack = _U16.pack
            parts = [_U32.pack(n)]
            view = memoryview(plaintext)
            for off in range(0, n, NOISE_MAX_PLAINTEXT):
                ct = encrypt(view[off : off + NOISE_MAX_PLAINTEXT])
                parts.append(pack(len(ct)))
                parts.append(ct)
        except NoiseError as exc:
            raise FramingError(f"cannot encrypt: {exc}") from exc
        return b"".join(parts)

    # --- receive ------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes held for incomplete messages: unparsed ciphertext plus decrypted plaintext."""
        return len(self._buf) + self._got

    def feed(self, data: BytesLike) -> list[bytes]:
        """Consume bytes from the socket; return the messages they complete, in order."""
        if self._broken:
            raise FramingError("transport already failed")
        try:
            # The usual case: nothing pending and ``data`` is exactly one single-chunk message
            # (length, chunk length = length + tag, ciphertext). The same checks as _feed.
            if self._state == _HEADER and not self._buf and len(data) > 6:
                claimed, ct_len = _U32_U16.unpack_from(data)
                if ct_len == claimed + NOISE_TAG_LEN == len(data) - 6 and (
                    0 < claimed <= self._max_message
                ):
                    try:
                        return [self._recv.decrypt(data[6:])]
                    except NoiseError as exc:
                        raise FramingError(f"transport chunk failed to decrypt: {exc}") from exc
            return self._feed(data)
        except FramingError:
            self._fail()
            raise

    def _fail(self) -> None:
        self._broken = True
        self._buf = bytearray()  # a fresh object: views of the old one may live in a traceback
        self._parts = []

    def _claim(self, claimed: int) -> None:
        if claimed == 0:
            raise FramingError("zero-length transport message")
        if claimed > self._max_message:
            raise FramingError(f"claimed message length {claimed} exceeds {self._max_message}")
        self._claimed = claimed

    def _chunk(self, ct_len: int) -> None:
        if ct_len < _MIN_CHUNK:
            raise FramingError(f"transport chunk of {ct_len} bytes (minimum {_MIN_CHUNK})")
        if ct_len - NOISE_TAG_LEN > self._claimed - self._got:
            raise FramingError("transport chunk overruns the claimed message length")
        self._ct_len = ct_len

    def _feed(self, data: BytesLike) -> list[bytes]:
        # Parse straight from ``data`` when nothing is pending; copy only the unfinished tail.
        src: BytesLike
        if self._buf:
            self._buf += data
            src = self._buf
        else:
            src = data
        end = len(src)
        pos = 0
        out: list[bytes] = []
        state = self._state
        decrypt = self._recv.decrypt
        view = memoryview(src)
        try:
            while True:
                avail = end - pos
                if state == _CHUNK:
                    ct_len = self._ct_len
                    if avail < ct_len:
                        break
                    try:
                        pt = decrypt(view[pos : pos + ct_len])
                    except NoiseError as exc:
                        raise FramingError(f"transport chunk failed to decrypt: {exc}") from exc
                    pos += ct_len
                    if self._got == 0 and len(pt) == self._claimed:  # single-chunk message
                        out.append(pt)
                        state = _HEADER
                        continue
                    self._parts.append(pt)
                    self._got += len(pt)
                    if self._got == self._claimed:
                        out.append(b"".join(self._parts))
                        self._parts = []
                        self._got = 0
                        state = _HEADER
                    else:
                        state = _CHUNK_HEADER
                elif state == _HEADER:
                    if avail >= 6:
                        claimed, ct_len = _U32_U16.unpack_from(src, pos)
                        pos += 6
                        # fast path for the usual lengths; the methods give the precise error
                        if not 0 < claimed <= self._max_message:
                            self._claim(claimed)
                        self._claimed = claimed
                        if not _MIN_CHUNK <= ct_len <= claimed + NOISE_TAG_LEN:
                            self._chunk(ct_len)
                        self._ct_len = ct_len
                        state = _CHUNK
                    elif avail >= 4:
                        (claimed,) = _U32.unpack_from(src, pos)
                        pos += 4
                        self._claim(claimed)
                        state = _CHUNK_HEADER
                    else:
                        break
                else:  # _CHUNK_HEADER
                    if avail < 2:
                        break
                    (ct_len,) = _U16.unpack_from(src, pos)
                    pos += 2
                    self._chunk(ct_len)
                    state = _CHUNK
        finally:
            view.release()
        self._state = state
        if src is self._buf:
            if pos:
                del self._buf[:pos]  # O(1) in CPython: moves the logical start
        elif pos < end:
            self._buf = bytearray(src[pos:])
        return out
