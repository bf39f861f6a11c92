"""The reference runtime's wire types as immutable Python values.

Field names and order follow ``hyperware-ai/hyperdrive`` ``lib/src/core.rs`` and the net
module's types; the codec (:mod:`hnet.core.wire.codec`) encodes each struct as a msgpack array
of its fields in this order. Sequences are tuples so values are immutable and, where they hold
no ``dict``, hashable. The ``ports`` maps (``HnsUpdate``, ``Direct``, ``Both``) are plain dicts,
so those values, and an ``Identity`` holding them, compare by value but are not hashable.

Names and addresses (docs/protocol.md §1 "Names and addresses"):

- an ``Address`` string is ``node@process:package:publisher``: exactly one ``@``, exactly two
  ``:`` after it, no empty part. The node may contain ``:`` (the reference's parser allows it,
  and the string still parses back to the same value); nothing else may contain ``:`` or ``@``.
- *Hypermap-safe* is a separate, stricter check (:meth:`ProcessId.is_hypermap_safe`,
  :meth:`Address.is_hypermap_safe`) that the net layer applies to peers' source addresses; the
  codec only enforces the parse rules above, as the reference's decoder does.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TypeAlias

from hnet.core.wire.errors import CodecError

__all__ = [
    "Accepted",
    "Address",
    "Both",
    "Capability",
    "ConnectionRequest",
    "Diagnostics",
    "Direct",
    "GetDiagnostics",
    "GetPeer",
    "GetPeers",
    "HandshakePayload",
    "HnsBatchUpdate",
    "HnsUpdate",
    "HnsUpdateAction",
    "Identity",
    "KernelMessage",
    "LazyLoadBlob",
    "Message",
    "NetAction",
    "NetResponse",
    "NodeRouting",
    "Peer",
    "Peers",
    "ProcessId",
    "Rejected",
    "Request",
    "Response",
    "ResponseMessage",
    "Routers",
    "RoutingRequest",
    "SendError",
    "SendErrorKind",
    "Sign",
    "Signed",
    "Verified",
    "Verify",
    "is_hypermap_safe_label",
    "is_valid_node_name",
]

_LABEL_RE = re.compile(r"[a-z0-9-]+")
_NODE_RE = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


def is_hypermap_safe_label(s: str) -> bool:
    """True if ``s`` is one Hypermap-safe label: ``[a-z0-9-]+`` (ASCII, no dot, non-empty).

    This is the rule for a process name and a package name.
    """
    return isinstance(s, str) and _LABEL_RE.fullmatch(s) is not None


def is_valid_node_name(s: str) -> bool:
    """True if ``s`` is a well-formed node (HNS) name: labels ``[a-z0-9-]+`` joined by single dots.

    No empty label, no leading or trailing dot, nothing lowercased or normalised. Label length
    (63 bytes on chain) is not checked here.
    """
    return isinstance(s, str) and _NODE_RE.fullmatch(s) is not None


# --- names and addresses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessId:
    """``process:package:publisher``; each part non-empty, containing neither ``:`` nor ``@``."""

    process_name: str
    package_name: str
    publisher_node: str

    def __post_init__(self) -> None:
        for what, part in (
            ("process name", self.process_name),
            ("package name", self.package_name),
            ("publisher node", self.publisher_node),
        ):
            if not isinstance(part, str):
                raise CodecError(f"process id: {what} must be a str, not {type(part).__name__}")
            if not part:
                raise CodecError(f"process id: empty {what}")
            if ":" in part or "@" in part:
                raise CodecError(f"process id: {what} {part!r} contains ':' or '@'")

    def __str__(self) -> str:
        return f"{self.process_name}:{self.package_name}:{self.publisher_node}"

    @classmethod
    def parse(cls, s: str) -> ProcessId:
        """Parse ``process:package:publisher`` (exactly two ``:``, no empty part, no ``@``)."""
        if not isinstance(s, str):
            raise CodecError(f"process id must be a str, not {type(s).__name__}")
        parts = s.split(":")
        if len(parts) != 3:
            raise CodecError(f"process id {_short(s)} must have exactly two ':'")
        return cls(parts[0], parts[1], parts[2])

    def is_hypermap_safe(self) -> bool:
        """Process and package are single safe labels and the publisher is a valid node name."""
        return (
            is_hypermap_safe_label(self.process_name)
            and is_hypermap_safe_label(self.package_name)
            and is_valid_node_name(self.publisher_node)
        )


@dataclass(frozen=True, slots=True)
class Address:
    """``node@process:package:publisher``; on the wire, exactly this string."""

    node: str
    process: ProcessId
    #: The string form, computed once: addresses are encoded on every message.
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.node, str):
            raise CodecError(f"address: node must be a str, not {type(self.node).__name__}")
        if not self.node:
            raise CodecError("address: empty node")
        if "@" in self.node:
            raise CodecError(f"address: node {_short(self.node)} contains '@'")
        if not isinstance(self.process, ProcessId):
            raise CodecError(
                f"address: process must be a ProcessId, not {type(self.process).__name__}"
            )
        object.__setattr__(self, "text", f"{self.node}@{self.process}")

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, s: str) -> Address:
        """Parse ``node@process:package:publisher``: one ``@``, two ``:`` after it, no empty
        part."""
        if not isinstance(s, str):
            raise CodecError(f"address must be a str, not {type(s).__name__}")
        node, at, rest = s.partition("@")
        if not at:
            raise CodecError(f"address {_short(s)} has no '@'")
        if "@" in rest:
            raise CodecError(f"address {_short(s)} has more than one '@'")
        parts = rest.split(":")
        if len(parts) != 3:
            raise CodecError(f"address {_short(s)} must have exactly two ':' after '@'")
        return cls(node, ProcessId(parts[0], parts[1], parts[2]))

    @classmethod
    def net(cls, node: str) -> Address:
        """The net module of ``node``: ``node@net:distro:sys``."""
        return cls(node, _NET_PROCESS)

    def is_hypermap_safe(self) -> bool:
        """The node is a valid node name and the process id is Hypermap-safe."""
        return is_valid_node_name(self.node) and self.process.is_hypermap_safe()


_NET_PROCESS = ProcessId("net", "distro", "sys")


def _short(s: str) -> str:
    """``repr`` of a possibly huge hostile string, cut for error messages."""
    return repr(s) if len(s) <= 80 else repr(s[:77]) + "..."


# --- kernel messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    """A capability: the issuing process and its parameters (JSON text)."""

    issuer: Address
    params: str


@dataclass(frozen=True, slots=True)
class Request:
    inherit: bool
    #: Seconds until the sender gives up waiting (u64), or None if no response is wanted.
    expects_response: int | None
    body: bytes
    #: JSON text, or None.
    metadata: str | None
    #: Each capability with its signature bytes.
    capabilities: tuple[tuple[Capability, bytes], ...]


@dataclass(frozen=True, slots=True)
class Response:
    inherit: bool
    body: bytes
    metadata: str | None
    capabilities: tuple[tuple[Capability, bytes], ...]


@dataclass(frozen=True, slots=True)
class ResponseMessage:
    """``Message::Response((Response, Option<Context>))``."""

    response: Response
    context: bytes | None


#: ``Message`` = ``{"Request": Request} | {"Response": [Response, context]}``.
Message: TypeAlias = Request | ResponseMessage


@dataclass(frozen=True, slots=True)
class LazyLoadBlob:
    mime: str | None
    bytes: bytes


@dataclass(frozen=True, slots=True)
class KernelMessage:
    #: u64.
    id: int
    source: Address
    target: Address
    rsvp: Address | None
    message: Message
    lazy_load_blob: LazyLoadBlob | None


class SendErrorKind(enum.Enum):
    OFFLINE = "Offline"
    TIMEOUT = "Timeout"


@dataclass(frozen=True, slots=True)
class SendError:
    """Delivery failure reported to the sender; ``kind`` encodes as a bare variant name."""

    kind: SendErrorKind
    target: Address
    message: Message
    lazy_load_blob: LazyLoadBlob | None


# --- handshake and routing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakePayload:
    """Carried inside Noise handshake messages 2 and 3.

    The codec accepts any u8 ``protocol_version``; requiring 1 is the handshake layer's job.
    """

    protocol_version: int
    name: str
    signature: bytes
    proxy_request: bool


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """First frame on a socket to a router: ``source`` asks to be paired with ``target``."""

    protocol_version: int
    source: str
    signature: bytes
    target: str


# --- HNS records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HnsUpdate:
    name: str
    #: Hex text of the Ed25519 networking key.
    public_key: str
    ips: tuple[str, ...]
    #: Protocol name ("tcp", "ws", ...) to port (u16). Encoded in byte-wise key order.
    ports: dict[str, int]
    routers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Routers:
    """``NodeRouting::Routers``: an indirect node, reachable through these routers."""

    routers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Direct:
    """``NodeRouting::Direct``: reachable at ``ip`` on these ports."""

    ip: str
    ports: dict[str, int]


@dataclass(frozen=True, slots=True)
class Both:
    """``NodeRouting::Both``: direct ports and routers."""

    ip: str
    ports: dict[str, int]
    routers: tuple[str, ...]


NodeRouting: TypeAlias = Routers | Direct | Both


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    #: Hex text, optionally ``0x``-prefixed.
    networking_key: str
    routing: NodeRouting


# --- net module actions and responses -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """From one of our routers: ``name`` wants a routed connection to us."""

    name: str


@dataclass(frozen=True, slots=True)
class HnsUpdateAction:
    """``NetAction::HnsUpdate`` (renamed here to keep ``HnsUpdate`` for the record type)."""

    update: HnsUpdate


@dataclass(frozen=True, slots=True)
class HnsBatchUpdate:
    updates: tuple[HnsUpdate, ...]


@dataclass(frozen=True, slots=True)
class GetPeers:
    pass


@dataclass(frozen=True, slots=True)
class GetPeer:
    name: str


@dataclass(frozen=True, slots=True)
class GetDiagnostics:
    pass


@dataclass(frozen=True, slots=True)
class Sign:
    pass


@dataclass(frozen=True, slots=True)
class Verify:
    """``Verify{from, signature}``; ``from`` is a Python keyword, hence ``from_``."""

    from_: Address
    signature: bytes


NetAction: TypeAlias = (
    ConnectionRequest
    | HnsUpdateAction
    | HnsBatchUpdate
    | GetPeers
    | GetPeer
    | GetDiagnostics
    | Sign
    | Verify
)


@dataclass(frozen=True, slots=True)
class Accepted:
    name: str


@dataclass(frozen=True, slots=True)
class Rejected:
    name: str


@dataclass(frozen=True, slots=True)
class Peers:
    identities: tuple[Identity, ...]


@dataclass(frozen=True, slots=True)
class Peer:
    identity: Identity | None


@dataclass(frozen=True, slots=True)
class Diagnostics:
    text: str


@dataclass(frozen=True, slots=True)
class Signed:
    pass


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool


NetResponse: TypeAlias = Accepted | Rejected | Peers | Peer | Diagnostics | Signed | Verified
