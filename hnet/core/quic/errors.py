"""Application error codes carried in QUIC ``CONNECTION_CLOSE`` (type 0x1d) and the core's errors.

The codes are part of the wire protocol (docs/quic.md, "Error codes"): a peer that breaks a
rule is cut off with the code that names the rule, so the other side's logs say why.
"""

from __future__ import annotations

import enum


class QuicAppError(enum.IntEnum):
    """Application error codes of ``hnet-noise/1``."""

    #: Orderly close (the session ended, the node shuts down, the session went idle).
    NO_ERROR = 0x0
    #: The Noise handshake or an identity check failed (bad signature, unknown name, wrong
    #: peer, malformed handshake message).
    HANDSHAKE_FAILED = 0x1
    #: The QUIC + Noise handshake did not finish within the deadline.
    HANDSHAKE_TIMEOUT = 0x2
    #: Bytes that break the stream framing, fail to decrypt or violate a stream rule (data on a
    #: stream that must stay empty, a unidirectional stream, a reset, a truncated message).
    PROTOCOL_VIOLATION = 0x3
    #: Application data before the Noise handshake could have completed.
    EARLY_DATA = 0x4
    #: Too many open streams, a claimed length above the cap, or more undelivered bytes than
    #: the send window allows.
    LIMIT_EXCEEDED = 0x5
    #: The listener is at capacity (connections or pending handshakes).
    SERVER_BUSY = 0x6
    #: Our side failed unexpectedly (a bug, or the QUIC library raised); only this connection
    #: is closed.
    INTERNAL_ERROR = 0x7


class QuicProtocolError(Exception):
    """The peer broke the ``hnet-noise/1`` rules; the connection is closed with ``code``."""

    def __init__(self, code: QuicAppError, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code.name}: {self.reason}"
