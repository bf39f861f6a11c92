"""Circuit stream openings, the relayed stream header and control frames (docs/quic.md §11.2,
§11.6, §11.7), sans-I/O.

Every bidirectional stream other than stream 0 starts with two bytes that say what it is::

    00 14            a message stream: frame 0's length prefix, always exactly 20 (§5)
    00 00 01         a circuit control stream
    00 00 02         a relayed circuit stream

A length prefix of 0 is never valid for any frame of ``hnet-noise/1``: every frame is an AEAD
ciphertext, which carries at least its 16-byte tag. So ``00 00`` cannot begin a message stream,
and a receiver tells the three apart from the first two (or three) bytes, before it buffers
anything else.

After the opening, a control stream's halves carry control frames ``[u16 BE n][AEAD]`` sealed
with the hop session's stream key (the same ``K(dir, sid)`` as a message on that stream), and a
relayed stream carries one sealed header frame (circuit id, stream number) and then raw bytes.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from hnet.core.circuit.errors import CircuitCode, CircuitError, Origin
from hnet.core.circuit.request import CircuitRequest, decode, encode
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.limits import (
    CIRCUIT_CONTROL_FRAME_MAX,
    CIRCUIT_REASON_MAX,
    NOISE_TAG_LEN,
)

__all__ = [
    "CONTROL_OPENING",
    "MESSAGE_OPENING",
    "RELAY_HEADER_LEN",
    "RELAY_OPENING",
    "SHARE_ADDRESS",
    "AcceptFrame",
    "AddressFrame",
    "CloseFrame",
    "ControlFrame",
    "OfferFrame",
    "RefuseFrame",
    "RequestFrame",
    "StreamKind",
    "classify_opening",
    "decode_control",
    "decode_relay_header",
    "encode_control",
    "seal_control",
    "seal_relay_header",
]

MESSAGE_OPENING = b"\x00\x14"
CONTROL_OPENING = b"\x00\x00\x01"
RELAY_OPENING = b"\x00\x00\x02"
#: flags bit 0 (REQUEST, OFFER, ACCEPT): this end agrees to the observed-address exchange
SHARE_ADDRESS = 0x01

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_RELAY_PLAIN = struct.Struct(">QQ")
#: the relayed stream's header frame: u16 prefix, then circuit id and stream number and the tag
RELAY_HEADER_LEN = 2 + _RELAY_PLAIN.size + NOISE_TAG_LEN
_MAX_VSID = 2**62 - 1


class StreamKind(enum.Enum):
    MESSAGE = "message"
    CONTROL = "control"
    RELAY = "relay"


def classify_opening(prefix: bytes | bytearray | memoryview) -> tuple[StreamKind, int] | None:
    """What a peer-opened stream is, from its first bytes: ``(kind, opening length)``, or None
    if more bytes are needed. A message stream's opening is frame 0 itself, so it consumes
    nothing. CircuitError for anything else (the connection is then closed,
    PROTOCOL_VIOLATION)."""
    if len(prefix) < 2:
        return None
    head = bytes(prefix[:2])
    if head == MESSAGE_OPENING:
        return StreamKind.MESSAGE, 0
    if head != b"\x00\x00":
        raise CircuitError(f"stream opening {head.hex()}")
    if len(prefix) < 3:
        return None
    kind = prefix[2]
    if kind == CONTROL_OPENING[2]:
        return StreamKind.CONTROL, 3
    if kind == RELAY_OPENING[2]:
        return StreamKind.RELAY, 3
    raise CircuitError(f"stream opening 0000{kind:02x}")


# --- relayed stream header ----------------------------------------------------------------------


def seal_relay_header(cipher: CipherState, circuit_id: int, stream_number: int) -> bytes:
    """The opening and header frame of a relayed stream, sealed with the hop's stream key
    (nonce 0 of the opener's half)."""
    if not 1 <= circuit_id < 2**64 or not 0 <= stream_number <= _MAX_VSID:
        raise CircuitError("circuit id or stream number out of range")
    ct = cipher.encrypt(_RELAY_PLAIN.pack(circuit_id, stream_number))
    return RELAY_OPENING + _U16.pack(len(ct)) + ct


def decode_relay_header(cipher: CipherState, frame: bytes) -> tuple[int, int]:
    """``(circuit id, stream number)`` from the header frame that follows the opening
    (exactly RELAY_HEADER_LEN bytes); CircuitError if it is not that, or fails to open."""
    if len(frame) != RELAY_HEADER_LEN or _U16.unpack_from(frame)[0] != RELAY_HEADER_LEN - 2:
        raise CircuitError("relayed stream header of the wrong length")
    try:
        plain = cipher.decrypt(frame[2:])
    except NoiseError:
        raise CircuitError("relayed stream header failed to authenticate") from None
    circuit_id, number = _RELAY_PLAIN.unpack(plain)
    if circuit_id == 0 or number > _MAX_VSID:
        raise CircuitError("circuit id 0 or stream number out of range")
    return circuit_id, number


# --- control frames -----------------------------------------------------------------------------


class _Type(enum.IntEnum):
    REQUEST = 1
    OFFER = 2
    ACCEPT = 3
    REFUSE = 4
    CLOSE = 5
    ADDRESS = 6


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """Source to router, first frame of the source's half."""

    flags: int
    request: CircuitRequest


@dataclass(frozen=True, slots=True)
class OfferFrame:
    """Router to target, first frame of the router's half."""

    circuit_id: int
    flags: int
    request: CircuitRequest


@dataclass(frozen=True, slots=True)
class AcceptFrame:
    """Target to router, or router to source: the circuit is open."""

    circuit_id: int
    flags: int


@dataclass(frozen=True, slots=True)
class RefuseFrame:
    """Instead of ACCEPT: no circuit. Followed by FIN."""

    code: CircuitCode
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The circuit ends. Followed by FIN."""

    code: CircuitCode
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class AddressFrame:
    """Router to an end: the other end's UDP address as the router observes it."""

    ip: str
    port: int


ControlFrame = RequestFrame | OfferFrame | AcceptFrame | RefuseFrame | CloseFrame | AddressFrame


def _flags(flags: int) -> bytes:
    if flags & ~SHARE_ADDRESS or flags < 0:
        raise CircuitError(f"unknown flags {flags:#x}")
    return bytes((flags,))


def _reason(code: CircuitCode, origin: Origin, reason: str) -> bytes:
    raw = reason.encode()[:CIRCUIT_REASON_MAX]
    raw = raw.decode(errors="ignore").encode()  # never cut a character in two
    return _U16.pack(int(code)) + bytes((int(origin), len(raw))) + raw


def encode_control(frame: ControlFrame) -> bytes:
    """The plaintext of a control frame (type byte first)."""
    if isinstance(frame, RequestFrame):
        body = bytes((_Type.REQUEST,)) + _flags(frame.flags) + encode(frame.request)
    elif isinstance(frame, OfferFrame):
        body = (
            bytes((_Type.OFFER,))
            + _cid(frame.circuit_id)
            + _flags(frame.flags)
            + encode(frame.request)
        )
    elif isinstance(frame, AcceptFrame):
        body = bytes((_Type.ACCEPT,)) + _cid(frame.circuit_id) + _flags(frame.flags)
    elif isinstance(frame, RefuseFrame):
        body = bytes((_Type.REFUSE,)) + _reason(frame.code, frame.origin, frame.reason)
    elif isinstance(frame, CloseFrame):
        body = bytes((_Type.CLOSE,)) + _reason(frame.code, frame.origin, frame.reason)
    else:
        ip = ipaddress.ip_address(frame.ip)
        if not 0 < frame.port < 65536:
            raise CircuitError(f"port {frame.port}")
        body = bytes((_Type.ADDRESS, ip.version)) + ip.packed + _U16.pack(frame.port)
    if len(body) > CIRCUIT_CONTROL_FRAME_MAX:  # cannot happen: the fields are bounded
        raise CircuitError("control frame too large")
    return body


def _cid(circuit_id: int) -> bytes:
    if not 1 <= circuit_id < 2**64:
        raise CircuitError(f"circuit id {circuit_id}")
    return _U64.pack(circuit_id)


def decode_control(data: bytes) -> ControlFrame:
    """Decode one control frame plaintext exactly; CircuitError on anything else."""
    if not 1 <= len(data) <= CIRCUIT_CONTROL_FRAME_MAX:
        raise CircuitError(f"control frame of {len(data)} bytes")
    kind, body = data[0], data[1:]
    if kind in (_Type.REQUEST, _Type.OFFER):
        head = 1 if kind == _Type.REQUEST else 9
        if len(body) < head:
            raise CircuitError("control frame truncated")
        flags = body[head - 1]
        _flags(flags)
        request = decode(body[head:])
        if kind == _Type.REQUEST:
            return RequestFrame(flags, request)
        return OfferFrame(_read_cid(body), flags, request)
    if kind == _Type.ACCEPT:
        if len(body) != 9:
            raise CircuitError("ACCEPT frame of the wrong length")
        _flags(body[8])
        return AcceptFrame(_read_cid(body), body[8])
    if kind in (_Type.REFUSE, _Type.CLOSE):
        if len(body) < 4 or len(body) != 4 + body[3]:
            raise CircuitError("REFUSE/CLOSE frame of the wrong length")
        (code,) = _U16.unpack_from(body)
        try:
            c, o = CircuitCode(code), Origin(body[2])
            reason = body[4:].decode()
        except ValueError:
            raise CircuitError("REFUSE/CLOSE with an unknown code, origin or bad text") from None
        return RefuseFrame(c, o, reason) if kind == _Type.REFUSE else CloseFrame(c, o, reason)
    if kind == _Type.ADDRESS:
        if not body or (body[0], len(body)) not in ((4, 7), (6, 19)):
            raise CircuitError("ADDRESS frame of the wrong length or family")
        (port,) = _U16.unpack_from(body, len(body) - 2)
        if port == 0:
            raise CircuitError("ADDRESS with port 0")
        raw = body[1:-2]
        ip = ipaddress.IPv4Address(raw) if body[0] == 4 else ipaddress.IPv6Address(raw)
        return AddressFrame(str(ip), port)
    raise CircuitError(f"unknown control frame type {kind}")


def _read_cid(body: bytes) -> int:
    cid: int = _U64.unpack_from(body)[0]
    if cid == 0:
        raise CircuitError("circuit id 0")
    return cid


def seal_control(cipher: CipherState, frame: ControlFrame) -> bytes:
    """``[u16 BE n][AEAD(K, i, plaintext)]`` for the next frame of our half."""
    ct = cipher.encrypt(encode_control(frame))
    return _U16.pack(len(ct)) + ct
