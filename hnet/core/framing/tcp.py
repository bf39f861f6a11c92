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
  ciphertext is ever buffered, plus the message's plaintext so far: the first chunks of a
  message of several as they are, then, once half of it has arrived, one buffer of the
  claimed length (already checked) that they are copied into and the rest are decrypted
  straight into, handed out as ``bytes`` without a copy. What a peer makes us hold stays
  within twice what it has sent.
  Sending likewise encrypts every chunk into one preallocated output buffer.

A zero-length message is an error both ways. The reference never sends one (a serialized
KernelMessage is never empty) and, if it received one, would fail to decode the empty body and
close the connection; we reject it at the framing layer instead.
"""

from __future__ import annotations

import enum
import io
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


def _buffer(n: int) -> io.BytesIO:
    """``n`` zero bytes to fill in place through ``getbuffer()`` and hand out as ``bytes`` with
    ``getvalue()``: CPython returns the BytesIO's own bytes object when no view of it is left,
    so the message is never copied (elsewhere ``getvalue`` copies; still correct)."""
    return io.BytesIO(bytes(n))


def _open(recv: CipherState, chunk: BytesLike) -> bytes:
    """One chunk's plaintext; a chunk that fails to authenticate is a FramingError."""
    try:
        return recv.decrypt(chunk)
    except NoiseError as exc:
        reason = str(exc)
    del chunk  # raised outside the handler, with no view of the input kept by a traceback
    raise FramingError(f"transport chunk failed to decrypt: {reason}")


def _open_into(recv: CipherState, chunk: BytesLike, out: BytesLike) -> None:
    """:func:`_open` into ``out``, a view of the message's plaintext buffer."""
    try:
        recv.decrypt_into(chunk, out)
        return
    except NoiseError as exc:
        reason = str(exc)
    del chunk, out  # as in _open: the buffers they view must stay free to drop or resize
    raise FramingError(f"transport chunk failed to decrypt: {reason}")


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
        "_bio",
        "_broken",
        "_buf",
        "_claimed",
        "_ct_len",
        "_got",
        "_max_message",
        "_parts",
        "_plain",
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
        #: a multi-chunk message's first chunks, decrypted, until half of it has arrived
        self._parts: list[bytes] = []
        self._bio: io.BytesIO | None = None  # then the buffer of its whole plaintext
        self._plain: memoryview | None = None  # ... and the view chunks are decrypted into
        self._broken = False

    # --- send ---------------------------------------------------------------------------------

    def encrypt_message(self, plaintext: BytesLike) -> bytes:
        """The whole framed, encrypted message as one buffer (one write per message)."""
        n = len(plaintext)
        if n == 0:
            raise FramingError("refusing to send an empty message")
        if n > self._max_message:
            raise FramingError(f"message of {n} bytes exceeds {self._max_message}")
        try:
            if n <= NOISE_MAX_PLAINTEXT:
                return _U32_U16.pack(n, n + NOISE_TAG_LEN) + self._send.encrypt(plaintext)
            return self._encrypt_chunks(plaintext, n)
        except NoiseError as exc:
            raise FramingError(f"cannot encrypt: {exc}") from exc

    def _encrypt_chunks(self, plaintext: BytesLike, n: int) -> bytes:
        """A multi-chunk message, encrypted chunk by chunk straight into its one output buffer
        (no per-chunk objects, no join)."""
        chunks = -(-n // NOISE_MAX_PLAINTEXT)
        bio = _buffer(4 + n + chunks * (2 + NOISE_TAG_LEN))
        encrypt_into = self._send.encrypt_into
        pack_into = _U16.pack_into
        with memoryview(plaintext) as src, bio.getbuffer() as out:
            _U32.pack_into(out, 0, n)
            pos = 4
            for off in range(0, n, NOISE_MAX_PLAINTEXT):
                m = min(NOISE_MAX_PLAINTEXT, n - off)
                pack_into(out, pos, m + NOISE_TAG_LEN)
                pos += 2
                encrypt_into(src[off : off + m], out[pos : pos + m + NOISE_TAG_LEN])
                pos += m + NOISE_TAG_LEN
        return bio.getvalue()

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
                    return [_open(self._recv, data[6:])]
            return self._feed(data)
        except FramingError:
            self._fail()
            raise

    def _fail(self) -> None:
        self._broken = True
        self._buf = bytearray()  # a fresh object: views of the old one may live in a traceback
        self._plain = None  # partial plaintext is never delivered: drop it with its buffer
        self._bio = None
        self._parts = []
        self._got = 0

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

    def _need(self) -> int:
        """Bytes that complete the item in progress (``_buf`` holds its start)."""
        held = len(self._buf)
        if self._state == _CHUNK:
            return self._ct_len - held
        if self._state == _HEADER:  # fewer than 4 held: the u32 and the first u16
            return 6 - held
        return 2 - held  # _CHUNK_HEADER

    def _feed(self, data: BytesLike) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        if not buf:
            self._parse_all(data, out)
            return out
        # An item (header or chunk) is pending in ``buf``: complete only that one there, then
        # parse the rest of ``data`` in place, so a read is not copied whole into ``buf``.
        need = self._need()
        with memoryview(data) as view:
            if len(view) < need:
                buf += view
                return out
            buf += view[:need]
            self._parse(buf, out)  # consumes exactly ``buf``: the item ends there
            buf.clear()
            if len(view) > need:
                self._parse_all(view[need:], out)
        return out

    def _parse_all(self, src: BytesLike, out: list[bytes]) -> None:
        """Parse ``src`` (nothing pending); keep its unfinished tail in ``_buf``."""
        pos = self._parse(src, out)
        if pos < len(src):
            with memoryview(src) as view:
                self._buf += view[pos:]

    def _start_message(self) -> memoryview:
        """The buffer for the whole plaintext of a multi-chunk message (its length was checked
        against ``max_message`` with the header), holding the chunks decrypted so far; the
        rest are decrypted at their offsets.

        It is made only once half of the message has arrived, so what a peer makes us hold
        stays within twice what it sent (a claim alone, or one chunk of a 10 MB claim, costs
        no 10 MB buffer); the chunks before are copied in once, at most half the message."""
        bio = self._bio = _buffer(self._claimed)
        plain = self._plain = bio.getbuffer()
        off = 0
        for part in self._parts:
            plain[off : off + len(part)] = part
            off += len(part)
        self._parts = []
        return plain

    def _finish_message(self) -> bytes:
        bio, plain = self._bio, self._plain
        assert bio is not None and plain is not None
        self._bio = self._plain = None
        self._got = 0
        plain.release()
        return bio.getvalue()

    def _parse(self, src: BytesLike, out: list[bytes]) -> int:
        """Parse ``src`` from the start, appending completed messages; return bytes consumed."""
        end = len(src)
        pos = 0
        state = self._state
        recv = self._recv
        view = memoryview(src)
        try:
            while True:
                avail = end - pos
                if state == _CHUNK:
                    ct_len = self._ct_len
                    if avail < ct_len:
                        break
                    plain = self._plain
                    if plain is None:
                        if ct_len - NOISE_TAG_LEN == self._claimed:  # single-chunk message
                            out.append(_open(recv, view[pos : pos + ct_len]))
                            pos += ct_len
                            state = _HEADER
                            continue
                        got = self._got
                        if (got + ct_len - NOISE_TAG_LEN) * 2 < self._claimed:
                            # under half of the message so far: keep the pieces
                            part = _open(recv, view[pos : pos + ct_len])
                            pos += ct_len
                            self._parts.append(part)
                            self._got = got + len(part)
                            state = _CHUNK_HEADER
                            continue
                        plain = self._start_message()
                    got = self._got
                    pt_end = got + ct_len - NOISE_TAG_LEN
                    _open_into(recv, view[pos : pos + ct_len], plain[got:pt_end])
                    pos += ct_len
                    if pt_end == self._claimed:
                        out.append(self._finish_message())
                        state = _HEADER
                    else:
                        self._got = pt_end
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
        return pos
