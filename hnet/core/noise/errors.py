"""Errors of the Noise layer."""

from __future__ import annotations


class NoiseError(ValueError):
    """A Noise handshake or transport operation failed.

    Raised for calls out of order, malformed lengths, failed authentication (AEAD), low-order
    public keys and nonce exhaustion. The session must be dropped after any of these.
    """
