"""What a failed connection attempt can raise, for the layers above (which must not know the
socket libraries): a refused or unreachable address, a deadline, a WebSocket upgrade that
failed, a peer that broke the protocol or failed the handshake."""

from __future__ import annotations

from websockets.exceptions import WebSocketException

from hnet.core.handshake import HandshakeError
from hnet.transport.session import SessionError

CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    HandshakeError,
    SessionError,
    TimeoutError,
    OSError,
    WebSocketException,
)

__all__ = ["CONNECT_ERRORS"]
