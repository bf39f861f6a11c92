"""Errors of the framing layer."""

from __future__ import annotations


class FramingError(ValueError):
    """The byte stream (or WebSocket message sequence) broke the framing rules.

    Raised for lengths above a cap, impossible chunk sizes, a chunk that overruns its message,
    and failed decryption of transport data. The connection must be closed; the object that
    raised refuses further input.
    """
