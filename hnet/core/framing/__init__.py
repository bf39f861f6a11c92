"""Reference TCP and WebSocket framings of a Noise session, sans-I/O."""

from __future__ import annotations

from hnet.core.framing.errors import FramingError
from hnet.core.framing.tcp import (
    NOISE_E_LEN,
    FirstFrame,
    HandshakeFrameReader,
    TcpTransport,
    classify_first_frame,
    encode_handshake_frame,
)
from hnet.core.framing.ws import WsTransport, check_handshake_message

__all__ = [
    "NOISE_E_LEN",
    "FirstFrame",
    "FramingError",
    "HandshakeFrameReader",
    "TcpTransport",
    "WsTransport",
    "check_handshake_message",
    "classify_first_frame",
    "encode_handshake_frame",
]
