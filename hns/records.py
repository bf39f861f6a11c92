"""Node records and the byte encodings of the HNS networking notes.

Notes live under a node's name in Hypermap (``~net-key.alice.os`` ...):

==============  ==============================================================
``~net-key``    32 raw bytes, the Ed25519 public networking key
``~ip``         4 bytes (IPv4) or 16 bytes (IPv6), binary
``~tcp-port``   2 bytes big-endian; 0 means "not offered"
``~ws-port``    2 bytes big-endian; 0 means "not offered"
``~quic-port``  2 bytes big-endian; 0 means "not offered" (this project's extension)
``~routers``    concatenated 32-byte namehashes of the routers' full names
==============  ==============================================================

Decoders follow the reference reader: a value of the wrong length decodes to ``None`` (the
reader rejects the note and keeps the old value), except ``~routers``, whose wrong length means
"no routers" (an empty tuple). Encoders raise :class:`InvalidRecordValue`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hns.names import InvalidName, namehash, validate_name

NOTE_NET_KEY = "~net-key"
NOTE_IP = "~ip"
NOTE_TCP_PORT = "~tcp-port"
NOTE_WS_PORT = "~ws-port"
NOTE_QUIC_PORT = "~quic-port"
NOTE_ROUTERS = "~routers"

PORT_NOTES: Mapping[str, str] = {"tcp": NOTE_TCP_PORT, "ws": NOTE_WS_PORT, "quic": NOTE_QUIC_PORT}
"""Protocol key in :attr:`NodeRecord.ports` -> note label."""

REFERENCE_NOTES: frozenset[str] = frozenset(
    {NOTE_NET_KEY, NOTE_IP, NOTE_TCP_PORT, NOTE_WS_PORT, NOTE_ROUTERS}
)
"""The notes the reference indexer reads."""

HNS_NOTES: frozenset[str] = REFERENCE_NOTES | {NOTE_QUIC_PORT}
"""The notes this implementation reads (reference plus ``~quic-port``)."""

NET_KEY_BYTES = 32


class InvalidRecordValue(ValueError):
    """A value cannot be encoded as an HNS note."""


# --- ~net-key -------------------------------------------------------------------------------


def encode_net_key(key: bytes) -> bytes:
    """The ``~net-key`` note value: the 32 raw key bytes."""
    if not isinstance(key, bytes | bytearray) or len(key) != NET_KEY_BYTES:
        raise InvalidRecordValue("networking key must be exactly 32 bytes")
    return bytes(key)


def decode_net_key(data: bytes) -> str | None:
    """The key as lowercase hex without ``0x`` (the reference form), or None if not 32 bytes."""
    if len(data) != NET_KEY_BYTES:
        return None
    return data.hex()


def net_key_from_hex(text: str) -> bytes:
    """Parse a key in hex, ``0x`` prefix optional (the wire's Identity allows both)."""
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise InvalidRecordValue(f"networking key {text!r} is not hex") from None
    if len(raw) != NET_KEY_BYTES or len(digits) != 2 * NET_KEY_BYTES:
        raise InvalidRecordValue("networking key must be exactly 32 bytes (64 hex digits)")
    return raw


# --- ~ip ------------------------------------------------------------------------------------


def encode_ip(text: str) -> bytes:
    """The ``~ip`` note value: 4 or 16 bytes from an IPv4 or IPv6 address in text form."""
    if not isinstance(text, str):
        raise InvalidRecordValue(f"IP address must be a string, not {type(text).__name__}")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidRecordValue(f"invalid IP address {text!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise InvalidRecordValue(f"IP address {text!r} has a scope id, which cannot be published")
    return addr.packed


def decode_ip(data: bytes) -> str | None:
    """Text form of a 4- or 16-byte ``~ip`` value, or None for any other length.

    Formatted like Rust's ``IpAddr`` Display (what the reference stores): RFC 5952 compressed
    IPv6, and IPv4-mapped IPv6 as ``::ffff:a.b.c.d``.
    """
    if len(data) == 4:
        return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}"  # = str(IPv4Address(data)), faster
    if len(data) == 16:
        addr = ipaddress.IPv6Address(data)
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return f"::ffff:{mapped}"
        return str(addr)
    return None


# --- ports ----------------------------------------------------------------------------------


def encode_port(port: int) -> bytes:
    """A port note value: 2 bytes big-endian (0 withdraws the port)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise InvalidRecordValue(f"port {port!r} is not in 0..65535")
    return port.to_bytes(2, "big")


def decode_port(data: bytes) -> int | None:
    """A 2-byte big-endian port (0 = not offered), or None for any other length."""
    if len(data) != 2:
        return None
    return int.from_bytes(data, "big")


# --- ~routers -------------------------------------------------------------------------------


def encode_routers(names: Iterable[str]) -> bytes:
    """The ``~routers`` note value: each router's 32-byte namehash, concatenated."""
    out = bytearray()
    for name in names:
        try:
            validate_name(name)
        except InvalidName as e:
            raise InvalidRecordValue(f"router {e}") from None
        out += namehash(name)
    return bytes(out)


def decode_router_hashes(data: bytes) -> tuple[bytes, ...]:
    """Split a ``~routers`` value into 32-byte namehashes; a length that is not a multiple of
    32 means "no routers" (empty tuple), as in the reference reader."""
    if len(data) % 32:
        return ()
    return tuple(data[i : i + 32] for i in range(0, len(data), 32))


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What HNS says about one name.

    ``namehash`` is ``0x``-prefixed lowercase hex. ``net_key`` is lowercase hex *without* ``0x``
    (exactly the reference's ``HnsUpdate.public_key``/``Identity.networking_key`` form), or None
    before a ``~net-key`` note. ``ips`` holds at most one address in the reference's text form.
    ``ports`` maps ``"tcp"``/``"ws"``/``"quic"`` to offered ports; a port noted as 0 is absent.
    ``routers`` holds router *names*. Treat ``ports`` as read-only: records are snapshots.
    """

    name: str
    namehash: str
    net_key: str | None = None
    ips: tuple[str, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    routers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ips", tuple(self.ips))
        object.__setattr__(self, "ports", dict(self.ports))
        object.__setattr__(self, "routers", tuple(self.routers))

    @classmethod
    def _of(
        cls,
        name: str,
        namehash: str,
        net_key: str | None,
        ips: tuple[str, ...],
        ports: Mapping[str, int],
        routers: tuple[str, ...],
    ) -> NodeRecord:
        """``NodeRecord(...)`` for ``ips`` and ``routers`` already tuples (``ports`` is copied),
        without the generated ``__init__``'s and ``__post_init__``'s extra steps (the indexer
        builds one per changed name)."""
        if cls is not NodeRecord:  # pragma: no cover - a subclass: the generic way
            rec = object.__new__(cls)
            for field_name, value in zip(
                _FIELDS, (name, namehash, net_key, ips, dict(ports), routers), strict=True
            ):
                object.__setattr__(rec, field_name, value)
            return rec
        rec = _new(cls)
        _set_name(rec, name)  # the slots' own setters: no lookup by name, no frozen check
        _set_namehash(rec, namehash)
        _set_net_key(rec, net_key)
        _set_ips(rec, ips)
        _set_ports(rec, dict(ports))
        _set_routers(rec, routers)
        return rec

    @property
    def is_direct(self) -> bool:
        """Reachable at its own address (has an IP); otherwise reached through routers."""
        return bool(self.ips)

    @property
    def is_usable(self) -> bool:
        """A key plus either (an IP and an offered port) or routers."""
        if not self.net_key:
            return False
        if self.ips and any(p > 0 for p in self.ports.values()):
            return True
        return bool(self.routers)

    def port(self, proto: str) -> int | None:
        """The offered port for ``"tcp"``, ``"ws"`` or ``"quic"``, or None."""
        p = self.ports.get(proto)
        return p if p else None

    @property
    def net_key_bytes(self) -> bytes | None:
        """The 32-byte networking key, or None."""
        return bytes.fromhex(self.net_key) if self.net_key else None


_FIELDS = ("name", "namehash", "net_key", "ips", "ports", "routers")
_new = object.__new__
_set_name, _set_namehash, _set_net_key, _set_ips, _set_ports, _set_routers = (
    NodeRecord.__dict__[f].__set__ for f in _FIELDS
)
