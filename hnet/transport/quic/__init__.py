"""The Noise-over-QUIC transport (``hnet-noise/1``): see docs/quic.md.

Public API::

    session = await connect(host, port, handshake, backend=None)      # QuicSession
    listener = QuicListener(backend=None)
    await listener.start(host, port, make_responder=..., on_session=..., handshake_timeout=5.0)
    listener.close()

The QUIC library (aioquic or qh3) is chosen by :mod:`hnet.core.quic.backend`, the only module that
imports one.
"""

from __future__ import annotations

from hnet.core.quic.backend import ALPN, BACKENDS, DEFAULT_BACKEND, ENV_VAR, BackendError
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.transport.quic.transport import QuicListener, QuicSession, connect

__all__ = [
    "ALPN",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "ENV_VAR",
    "BackendError",
    "QuicAppError",
    "QuicListener",
    "QuicProtocolError",
    "QuicSession",
    "connect",
]
