"""Address-validation tokens for QUIC Retry (RFC 9000 §8.1.2), independent of the QUIC library.

A token is ``0x01 || nonce(12) || ChaCha20-Poly1305(key, nonce, ad = client address,
t || len || odcid || len || rscid)`` under a random key held by one listener: only that
listener can read it, it is bound to the client's address and port, and it expires after
``QUIC_RETRY_TOKEN_LIFETIME`` seconds.
"""

from __future__ import annotations

import ipaddress
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hnet import limits
from hnet.core.quic.backend import Addr

_VERSION = b"\x01"
_TIME = struct.Struct(">d")
_NONCE_LEN = 12


def _address_bytes(addr: Addr) -> bytes:
    return ipaddress.ip_address(addr[0]).packed + struct.pack(">H", addr[1])


class RetryTokens:
    """Creates and checks the Retry tokens of one listener."""

    def __init__(self, lifetime: float = limits.QUIC_RETRY_TOKEN_LIFETIME) -> None:
        self._aead = ChaCha20Poly1305(os.urandom(32))
        self._lifetime = lifetime

    def create(self, addr: Addr, original_dcid: bytes, retry_scid: bytes, now: float) -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        body = (
            _TIME.pack(now)
            + bytes((len(original_dcid),))
            + original_dcid
            + bytes((len(retry_scid),))
            + retry_scid
        )
        return _VERSION + nonce + self._aead.encrypt(nonce, body, _address_bytes(addr))

    def validate(
        self, token: bytes, addr: Addr, dcid: bytes, now: float
    ) -> tuple[bytes, bytes] | None:
        """(original DCID, Retry SCID) if ``token`` is ours, fresh and for ``addr``; else None.

        ``dcid`` is the Destination CID of the Initial carrying the token, which must be the
        Source CID of our Retry.
        """
        if len(token) < 1 + _NONCE_LEN + 16 or token[:1] != _VERSION:
            return None
        nonce = token[1 : 1 + _NONCE_LEN]
        try:
            body = self._aead.decrypt(nonce, token[1 + _NONCE_LEN :], _address_bytes(addr))
        except (InvalidTag, ValueError):
            return None
        try:
            (issued,) = _TIME.unpack_from(body, 0)
            pos = _TIME.size
            n = body[pos]
            odcid = body[pos + 1 : pos + 1 + n]
            pos += 1 + n
            m = body[pos]
            rscid = body[pos + 1 : pos + 1 + m]
        except (IndexError, struct.error):
            return None
        if not 0 <= now - issued <= self._lifetime or rscid != dcid:
            return None
        return odcid, rscid
