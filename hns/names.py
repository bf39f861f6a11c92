"""HNS names: label rules and the ENS-style namehash Hypermap uses.

A name is labels joined by dots, e.g. ``alice.os``. Readers never lowercase or normalise:
lookups are exact. Entry labels are ``[a-z0-9-]+``; note labels are ``~`` followed by the same
alphabet (``~net-key``); fact labels start with ``!``. On chain a label is at most 63 bytes.
"""

from __future__ import annotations

import re

from hns.keccak import keccak256

LABEL_MAX_BYTES = 63
"""Longest label Hypermap accepts on chain."""

ROOT_HASH = bytes(32)
"""Namehash of the Hypermap root (32 zero bytes); top-level zones are minted under it."""

_LABEL_RE = re.compile(r"[a-z0-9-]+")
_NOTE_RE = re.compile(r"~[a-z0-9-]+")
_FACT_RE = re.compile(r"![a-z0-9-]+")


class InvalidName(ValueError):
    """A name or label breaks the HNS rules; the message says which part and why."""


def is_valid_label(label: str) -> bool:
    """True for an entry label: ``[a-z0-9-]+``, at most 63 bytes."""
    return len(label) <= LABEL_MAX_BYTES and _LABEL_RE.fullmatch(label) is not None


def is_valid_note_label(label: str) -> bool:
    """True for a note label: ``~`` then ``[a-z0-9-]+``, at most 63 bytes in all."""
    return len(label) <= LABEL_MAX_BYTES and _NOTE_RE.fullmatch(label) is not None


def is_valid_fact_label(label: str) -> bool:
    """True for a fact label: ``!`` then ``[a-z0-9-]+``, at most 63 bytes in all."""
    return len(label) <= LABEL_MAX_BYTES and _FACT_RE.fullmatch(label) is not None


def validate_label(label: str) -> str:
    """Return ``label`` if it is a valid entry label, else raise :class:`InvalidName`."""
    if not isinstance(label, str):
        raise InvalidName(f"label must be a string, not {type(label).__name__}")
    if not label:
        raise InvalidName("empty label")
    if len(label) > LABEL_MAX_BYTES:
        raise InvalidName(f"label {label[:20]!r}... is longer than {LABEL_MAX_BYTES} bytes")
    if _LABEL_RE.fullmatch(label) is None:
        raise InvalidName(f"label {label!r} may only contain a-z, 0-9 and '-'")
    return label


def validate_name(name: str) -> str:
    """Return ``name`` if every dot-separated label is valid, else raise :class:`InvalidName`.

    Nothing is normalised: ``Alice.os`` is rejected, not lowercased.
    """
    if not isinstance(name, str):
        raise InvalidName(f"name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidName("empty name")
    for label in name.split("."):
        try:
            validate_label(label)
        except InvalidName as e:
            raise InvalidName(f"{name!r}: {e}") from None
    return name


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``alice.os`` into ``("alice", "os")``; a top-level name gives ``(label, None)``."""
    label, dot, parent = name.partition(".")
    return label, (parent if dot else None)


def ancestors(name: str) -> list[str]:
    """The name and its ancestors, top-level zone first: ``a.b.os`` -> ``[os, b.os, a.b.os]``."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1, -1, -1)]


def labelhash(label: str | bytes) -> bytes:
    """keccak256 of the label's UTF-8 bytes (what an indexed ``bytes label`` topic holds)."""
    return keccak256(label.encode() if isinstance(label, str) else label)


def child_hash(parent_hash: bytes, label: str | bytes) -> bytes:
    """Namehash of ``label`` under the entry whose namehash is ``parent_hash``."""
    if len(parent_hash) != 32:
        raise ValueError("parent hash must be 32 bytes")
    return keccak256(parent_hash + labelhash(label))


def namehash(name: str) -> bytes:
    """ENS-style namehash, no normalisation.

    Right to left: ``node = keccak(node || keccak(label))``, starting from the zero root.

    The empty string is the root itself. Labels are not validated, so note and fact
    paths such as ``~net-key.alice.os`` hash as they are.
    """
    node = ROOT_HASH
    if not name:
        return node
    for label in reversed(name.split(".")):
        node = keccak256(node + labelhash(label))
    return node


def namehash_hex(name: str) -> str:
    """:func:`namehash` as ``0x``-prefixed lowercase hex (the reference indexer's key form)."""
    return "0x" + namehash(name).hex()
