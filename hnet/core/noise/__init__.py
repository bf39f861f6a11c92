"""Noise ``XX_25519_ChaChaPoly_BLAKE2s``, sans-I/O, on :mod:`cryptography`."""

from __future__ import annotations

from hnet.core.noise.cipher import MAX_NONCE, CipherState
from hnet.core.noise.errors import NoiseError
from hnet.core.noise.handshake import PROTOCOL_NAME, SymmetricState, XXHandshake

__all__ = [
    "MAX_NONCE",
    "PROTOCOL_NAME",
    "CipherState",
    "NoiseError",
    "SymmetricState",
    "XXHandshake",
]
