"""Reading one half of a circuit control stream (docs/quic.md §11.6): frames sealed with the
hop key, each length checked on its prefix before it is buffered, and their order checked
against an explicit table per half."""

from __future__ import annotations

import enum
import struct

from hnet.core.circuit.errors import CircuitCode, CircuitError, Origin
from hnet.core.circuit.frames import (
    AcceptFrame,
    AddressFrame,
    CloseFrame,
    ControlFrame,
    OfferFrame,
    RefuseFrame,
    RequestFrame,
    decode_control,
)
from hnet.core.noise.cipher import CipherState
from hnet.core.noise.errors import NoiseError
from hnet.limits import CIRCUIT_CONTROL_FRAME_MAX, CIRCUIT_CONTROL_FRAMES, NOISE_TAG_LEN

__all__ = ["ControlReader", "ControlRole"]

_U16 = struct.Struct(">H")


class ControlRole(enum.Enum):
    """Which half of which control stream a reader is reading."""

    #: the source's half of its request stream (read by the router)
    SOURCE = "source"
    #: the router's half of a request stream (read by the source)
    ROUTER_TO_SOURCE = "router-to-source"
    #: the router's half of an offer stream (read by the target)
    ROUTER_TO_TARGET = "router-to-target"
    #: the target's half of an offer stream (read by the router)
    TARGET = "target"


_START, _ANSWERED, _ADDRESSED, _ENDED = "start", "answered", "addressed", "ended"

#: (role, position, frame type) -> next position. Anything not listed breaks the protocol. A
#: REFUSE or CLOSE ends the half: only FIN may follow.
_ORDER: dict[tuple[ControlRole, str, type], str] = {
    (ControlRole.SOURCE, _START, RequestFrame): _ANSWERED,
    (ControlRole.SOURCE, _ANSWERED, CloseFrame): _ENDED,
    (ControlRole.ROUTER_TO_SOURCE, _START, AcceptFrame): _ANSWERED,
    (ControlRole.ROUTER_TO_SOURCE, _START, RefuseFrame): _ENDED,
    (ControlRole.ROUTER_TO_SOURCE, _ANSWERED, AddressFrame): _ADDRESSED,
    (ControlRole.ROUTER_TO_SOURCE, _ANSWERED, CloseFrame): _ENDED,
    (ControlRole.ROUTER_TO_SOURCE, _ADDRESSED, CloseFrame): _ENDED,
    (ControlRole.ROUTER_TO_TARGET, _START, OfferFrame): _ANSWERED,
    (ControlRole.ROUTER_TO_TARGET, _ANSWERED, AddressFrame): _ADDRESSED,
    (ControlRole.ROUTER_TO_TARGET, _ANSWERED, CloseFrame): _ENDED,
    (ControlRole.ROUTER_TO_TARGET, _ADDRESSED, CloseFrame): _ENDED,
    (ControlRole.TARGET, _START, AcceptFrame): _ANSWERED,
    (ControlRole.TARGET, _START, RefuseFrame): _ENDED,
    (ControlRole.TARGET, _ANSWERED, CloseFrame): _ENDED,
}


class ControlReader:
    """Reads one half of a control stream (after its opening, for the opener's half): frames
    ``[u16 BE n][AEAD]``, each length checked on its prefix before it is buffered, decrypted
    with the half's cipher, decoded, and checked against the order of ``role``.

    ``feed`` returns the frames completed; with ``fin`` it also checks the half may end there
    (a FIN before the first frame, or inside a frame, is a violation; FIN after REQUEST, OFFER,
    ACCEPT or ADDRESS means CLOSE NO_ERROR and is reported as such). Any violation raises
    CircuitError and the reader refuses further input.
    """

    __slots__ = ("_broken", "_buf", "_cipher", "_count", "_pos", "role")

    def __init__(self, cipher: CipherState, role: ControlRole) -> None:
        self._cipher = cipher
        self.role = role
        self._buf = bytearray()
        self._pos = _START
        self._count = 0
        self._broken = False

    @property
    def ended(self) -> bool:
        return self._pos == _ENDED

    def feed(self, data: bytes, fin: bool = False) -> list[ControlFrame]:
        if self._broken:
            raise CircuitError("control stream already failed")
        try:
            frames = self._feed(data)
            if fin:
                if self._buf:
                    raise CircuitError("control stream ended inside a frame")
                if self._pos == _START:
                    raise CircuitError("control stream ended before its first frame")
                if self._pos != _ENDED:
                    self._pos = _ENDED
                    frames.append(CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "FIN"))
                self._broken = True  # nothing may follow FIN
            return frames
        except CircuitError:
            self._broken = True
            self._buf = bytearray()
            raise

    def _feed(self, data: bytes) -> list[ControlFrame]:
        buf = self._buf
        buf += data
        out: list[ControlFrame] = []
        while len(buf) >= 2:
            if self._pos == _ENDED:
                raise CircuitError("bytes after the control stream's last frame")
            (n,) = _U16.unpack_from(buf)
            if not NOISE_TAG_LEN < n <= NOISE_TAG_LEN + CIRCUIT_CONTROL_FRAME_MAX:
                raise CircuitError(f"control frame of {n} bytes")
            if len(buf) < 2 + n:
                break
            try:
                plain = self._cipher.decrypt(bytes(buf[2 : 2 + n]))
            except NoiseError:
                raise CircuitError("control frame failed to authenticate") from None
            del buf[: 2 + n]
            frame = decode_control(plain)
            nxt = _ORDER.get((self.role, self._pos, type(frame)))
            if nxt is None:
                raise CircuitError(
                    f"{type(frame).__name__} out of order on a {self.role.value} half"
                )
            self._count += 1
            if self._count > CIRCUIT_CONTROL_FRAMES:  # cannot happen with _ORDER; kept as a bound
                raise CircuitError("too many control frames")
            self._pos = nxt
            out.append(frame)
        if self._pos == _ENDED and buf:
            raise CircuitError("bytes after the control stream's last frame")
        return out
