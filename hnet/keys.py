"""The node's long-term Ed25519 networking key: generation, key files, signing helpers."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEYFILE_PREFIX = "hnet-ed25519-seed:"


class KeyFileError(Exception):
    """A key file that cannot be read; the message is one line for the user."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def from_seed(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def seed_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def write_keyfile(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the seed as one text line, created with mode 0600 (never world-readable)."""
    data = (KEYFILE_PREFIX + seed_bytes(key).hex() + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_keyfile(path: Path) -> Ed25519PrivateKey:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{path}: cannot read key file ({e})") from None
    if not text.startswith(KEYFILE_PREFIX):
        raise KeyFileError(f"{path}: not an hnet key file")
    try:
        seed = bytes.fromhex(text[len(KEYFILE_PREFIX) :])
    except ValueError:
        raise KeyFileError(f"{path}: key file is not valid hex") from None
    if len(seed) != 32:
        raise KeyFileError(f"{path}: key file must hold a 32-byte seed")
    return from_seed(seed)


def parse_public_key(text: str) -> bytes:
    """A 32-byte Ed25519 public key from hex (optional 0x), as HNS stores it."""
    raw = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise ValueError(f"public key {text!r} is not hex") from None
    if len(key) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(key)}")
    return key


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
