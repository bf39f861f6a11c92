"""Passphrases and passwords: from the environment, or asked on a terminal."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hnet.keys.errors import KeyFileError

PASSPHRASE_ENV = "HNET_KEY_PASSPHRASE"

Passphrase = str | bytes | Callable[[], str | bytes]
"""A passphrase, or a function asked for it only when a file turns out to be encrypted."""


def _utf8(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def ask_secret(prompt: str, env: str, *, what: str, label: str, confirm: bool = False) -> str:
    """``$env`` if set (even to ""), else ``getpass(prompt)`` on a terminal (twice if
    ``confirm``), else ``KeyFileError``. ``what``/``label`` word the one-line errors."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise KeyFileError(f"{label}: {what} needed: set {env} or run on a terminal")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass(f"{what.capitalize()} again: ") != first:
            raise KeyFileError(f"{label}: the {what}s do not match")
    except EOFError:
        raise KeyFileError(f"{label}: no {what} given") from None
    return first


def ask_passphrase(path: Path, *, confirm: bool = False) -> str:
    """The passphrase of our encrypted key file at ``path``: ``$HNET_KEY_PASSPHRASE`` or a
    prompt (asked twice when ``confirm``, for a new file)."""
    return ask_secret(
        f"Passphrase for {path}: ",
        PASSPHRASE_ENV,
        what="passphrase",
        label=str(path),
        confirm=confirm,
    )


def _resolve(passphrase: Passphrase) -> bytes:
    return _utf8(passphrase() if callable(passphrase) else passphrase)
