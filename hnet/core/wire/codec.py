"""msgpack encoding of the wire types, byte-identical to Rust's ``rmp_serde`` default.

Encoding (docs/protocol.md §2 "Serialization")
----------------------------------------------
Structs are arrays of their fields in declaration order; enums are externally tagged (newtype
variant ``{"Name": value}``, struct variant ``{"Name": [fields]}``, unit variant ``"Name"``);
every byte vector is an array of integers (never msgpack ``bin``); ``None`` is nil and
``Some(x)`` is ``x``; integers and strings take their smallest encoding (str8 for 32..255
bytes); the ports maps are written in byte-wise key order. Encoders check their input (types,
u64 / u16 / u8 ranges, address objects) and raise :class:`CodecError` rather than emit bytes the
reference could not read. Values are built as Python lists and packed by the ``msgpack`` C
extension in one call; a KernelMessage with 256 bytes or more of body/context/blob is instead
assembled piecewise so that ASCII payloads (JSON, text) are copied as they are (each byte below
0x80 is its own fixint) instead of going through a list of ints. Both paths are byte-identical
(tested against each other and against the vectors).

``encode_kernel_message`` first tries a fast path for the common case: exact types throughout
(``int`` id and ``expects_response`` in range, ``bool``, ``bytes``, ``str``, ``Address``, a
``Request`` or ``ResponseMessage(Response, ...)``, a tuple of ``(Capability, bytes)``
tuples, an optional ``LazyLoadBlob``). It assembles the bytes piecewise like the
large-message path, at any size. Anything else (subclasses, ``bytearray``, lists, wrong types,
a string msgpack cannot encode) goes to the general encoder, so its bytes and errors are
unchanged.

Decoding: strict and total
--------------------------
Every decoder takes ``bytes``, ``bytearray`` or ``memoryview`` and either returns a value or
raises :class:`CodecError`; nothing else escapes (an unexpected internal exception is converted
and says "internal decoder error", which the tests and the fuzzer treat as a bug). Rejected:

- input longer than ``MESSAGE_MAX_SIZE``; trailing bytes after the value;
- any wrong msgpack type for a field (``bin`` for a string, a bool or nil inside a byte array,
  a float for an integer, ext types, a map where a struct's array belongs, ...);
- arrays of the wrong length for a struct, enum maps with other than exactly one entry, unknown
  variant names, a unit variant written as a map or a newtype variant as a bare string;
- integers out of range: u64 for ids and ``expects_response``, u8 for ``protocol_version``
  (any u8; requiring 1 is the handshake layer's job), u16 for ports, 0..255 for byte elements;
- invalid UTF-8 (including encoded surrogates), duplicate keys in a ports map;
- address strings that do not parse (one ``@``, two ``:`` after it, no empty part). The codec
  does not apply the Hypermap-safe rule; the net layer does (``Address.is_hypermap_safe``).

Deliberate leniency, matching what the reference's decoder accepts:

- a byte vector may be msgpack ``bin`` as well as an array of integers;
- integers may use a wider encoding than the smallest (``cd 00 05`` for 5, or a signed marker
  with a non-negative value), in byte arrays too;
- a ports map may be in any key order (it is re-encoded sorted).

So a successful decode re-encodes to the canonical bytes, which equal the input whenever the
input was canonical.

``decode_kernel_message`` first tries a fast path (``bytes`` input within
``MESSAGE_MAX_SIZE``) that reads the canonical frame inline: fixarray(6), the id and
``expects_response`` as positive fixint or cc/cd/ce/cf, fixstr/str8 addresses, the
``{"Request": [...]}`` / ``{"Response": [[...], context]}`` maps, ASCII byte vectors, nil or
fixstr/str8 strings, empty capabilities. Later fields in other forms (binary or ``bin`` byte
vectors, longer strings, capabilities, a non-canonical blob) are read by the general reader's
own methods. On any other form, and on any error, the fast path declines and the general
decoder runs on the whole input and decides, with its usual error message; so the fast path
only ever returns what the general decoder returns (tested differentially on mutated input).

Bounded work
------------
The decoder walks the schema itself over the raw bytes; it never hands a whole message to a
generic msgpack decoder, so it never builds containers the schema does not expect (a generic
decoder allocates each array as large as its header claims before reading the elements: 10 KB
of nested array headers cost some 65 MB when tried). Every length header is checked against
the bytes that remain (each element needs at least one byte, so a claimed 4 GiB array is
refused before anything is allocated). Nesting is fixed by the schema:
the deepest value (``NetResponse::Peers`` and ``KernelMessage`` capabilities) is 6 containers
deep, below ``CODEC_MAX_DEPTH``, and anything nested where the schema has a scalar is a type
error, so input nested 100k deep is rejected at the first unexpected container. Large byte
arrays are read by the C extension one element at a time with every container length, string
length and ext length limited to zero, so no nested structure can be built there either; a
byte array whose bytes are all below 0x80 is taken as it is (``bytes.isascii``). Time and
memory are linear in the input size.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, NoReturn, TypeVar, cast

import msgpack

from hnet.core.wire import build
from hnet.core.wire.build import (
    RM_CONTEXT,
    RM_RESPONSE,
    RS_BODY,
    RS_CAPS,
    RS_INHERIT,
    RS_META,
    new_object,
)
from hnet.core.wire.errors import CodecError
from hnet.core.wire.types import (
    Accepted,
    Address,
    Both,
    Capability,
    ConnectionRequest,
    Diagnostics,
    Direct,
    GetDiagnostics,
    GetPeer,
    GetPeers,
    HandshakePayload,
    HnsBatchUpdate,
    HnsUpdate,
    HnsUpdateAction,
    Identity,
    KernelMessage,
    LazyLoadBlob,
    Message,
    NetAction,
    NetResponse,
    NodeRouting,
    Peer,
    Peers,
    Rejected,
    Request,
    Response,
    ResponseMessage,
    Routers,
    RoutingRequest,
    SendError,
    SendErrorKind,
    Sign,
    Signed,
    Verified,
    Verify,
)
from hnet.limits import CODEC_MAX_DEPTH, MAX_CAPABILITIES, MESSAGE_MAX_SIZE

__all__ = [
    "DECODERS",
    "ENCODERS",
    "decode_handshake_payload",
    "decode_hns_update",
    "decode_identity",
    "decode_kernel_message",
    "decode_lazy_load_blob",
    "decode_net_action",
    "decode_net_response",
    "decode_routing_request",
    "decode_send_error",
    "encode_handshake_payload",
    "encode_hns_update",
    "encode_identity",
    "encode_kernel_message",
    "encode_lazy_load_blob",
    "encode_net_action",
    "encode_net_response",
    "encode_routing_request",
    "encode_send_error",
    "sign_bytes_for_capability",
]

U64_MAX = (1 << 64) - 1
U16_MAX = 0xFFFF
U8_MAX = 0xFF

#: Deepest container nesting any wire type has (KernelMessage > Message map > Request >
#: capabilities > (Capability, sig) > Capability; NetResponse map > Peers > Identity > routing
#: map > Both > routers). The decoder follows the schema, so this is the most it ever descends.
SCHEMA_MAX_DEPTH = 6
if SCHEMA_MAX_DEPTH > CODEC_MAX_DEPTH:  # pragma: no cover - a configuration error
    raise RuntimeError("CODEC_MAX_DEPTH is below the wire schema's depth")

BytesLike = bytes | bytearray | memoryview
_T = TypeVar("_T")

# ============================================================================================
# Encoding
# ============================================================================================

_local = threading.local()


def _packb(obj: object) -> bytes:
    """``msgpack.packb`` with a reused per-thread Packer (saves its set-up on every call; the
    Packer resets its buffer after an exception, and nothing here re-enters it)."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer()
    return packer.pack(obj)


def _describe(v: object) -> str:
    return type(v).__name__


def _e_uint(v: object, maxv: int, what: str) -> int:
    if type(v) is int:
        if 0 <= v <= maxv:
            return v
    elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= maxv:
        return int(v)
    shown = repr(v) if isinstance(v, int) else _describe(v)
    raise CodecError(f"{what}: expected an integer in 0..{maxv}, got {shown}")


def _e_opt_u64(v: object, what: str) -> int | None:
    return None if v is None else _e_uint(v, U64_MAX, what)


def _e_bool(v: object, what: str) -> bool:
    if isinstance(v, bool):
        return v
    raise CodecError(f"{what}: expected a bool, got {_describe(v)}")


def _e_str(v: object, what: str) -> str:
    if isinstance(v, str):
        return v
    raise CodecError(f"{what}: expected a str, got {_describe(v)}")


def _e_opt_str(v: object, what: str) -> str | None:
    return None if v is None else _e_str(v, what)


def _e_bytes(v: object, what: str) -> list[int]:
    # rmp_serde writes Vec<u8> as an array of integers; list(bytes) is C-speed and the
    # msgpack packer writes each element in its smallest form (fixint or cc xx).
    if isinstance(v, bytes | bytearray):
        return list(v)
    if isinstance(v, memoryview):
        return list(v.tobytes())
    raise CodecError(f"{what}: expected bytes, got {_describe(v)}")


def _e_opt_bytes(v: object, what: str) -> list[int] | None:
    return None if v is None else _e_bytes(v, what)


def _e_addr(v: object, what: str) -> str:
    if isinstance(v, Address):
        return str(v)
    raise CodecError(f"{what}: expected an Address, got {_describe(v)}")


def _e_str_seq(v: object, what: str) -> list[str]:
    if isinstance(v, str) or not isinstance(v, tuple | list):
        raise CodecError(f"{what}: expected a tuple of str, got {_describe(v)}")
    return [_e_str(s, what) for s in v]


def _e_ports(v: object, what: str) -> dict[str, int]:
    if not isinstance(v, Mapping):
        raise CodecError(f"{what}: expected a mapping of str to port, got {_describe(v)}")
    keys = [_e_str(k, what + " key") for k in v]
    # BTreeMap<String, _> order is byte-wise; for str, code point order is UTF-8 byte order.
    keys.sort()
    return {k: _e_uint(v[k], U16_MAX, what + " value") for k in keys}


def _e_caps(v: object, what: str) -> list[list[object]]:
    if not isinstance(v, tuple | list):
        raise CodecError(f"{what}: expected a tuple of (Capability, bytes), got {_describe(v)}")
    out: list[list[object]] = []
    for item in v:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise CodecError(f"{what}: each entry must be a (Capability, signature) pair")
        cap, sig = item
        out.append([_e_capability(cap, what), _e_bytes(sig, what + " signature")])
    return out


def _e_capability(cap: object, what: str) -> list[str]:
    if not isinstance(cap, Capability):
        raise CodecError(f"{what}: expected a Capability, got {_describe(cap)}")
    return [_e_addr(cap.issuer, what + " issuer"), _e_str(cap.params, what + " params")]


def _e_request(r: Request) -> list[object]:
    return [
        _e_bool(r.inherit, "Request.inherit"),
        _e_opt_u64(r.expects_response, "Request.expects_response"),
        _e_bytes(r.body, "Request.body"),
        _e_opt_str(r.metadata, "Request.metadata"),
        _e_caps(r.capabilities, "Request.capabilities"),
    ]


def _e_response(r: object) -> list[object]:
    if not isinstance(r, Response):
        raise CodecError(f"ResponseMessage.response: expected a Response, got {_describe(r)}")
    return [
        _e_bool(r.inherit, "Response.inherit"),
        _e_bytes(r.body, "Response.body"),
        _e_opt_str(r.metadata, "Response.metadata"),
        _e_caps(r.capabilities, "Response.capabilities"),
    ]


def _e_message(m: object) -> dict[str, object]:
    if isinstance(m, Request):
        return {"Request": _e_request(m)}
    if isinstance(m, ResponseMessage):
        return {
            "Response": [
                _e_response(m.response),
                _e_opt_bytes(m.context, "ResponseMessage.context"),
            ]
        }
    raise CodecError(f"message: expected a Request or ResponseMessage, got {_describe(m)}")


def _e_blob(b: object) -> list[object]:
    if not isinstance(b, LazyLoadBlob):
        raise CodecError(f"lazy_load_blob: expected a LazyLoadBlob, got {_describe(b)}")
    return [_e_opt_str(b.mime, "LazyLoadBlob.mime"), _e_bytes(b.bytes, "LazyLoadBlob.bytes")]


def _e_opt_blob(b: object) -> list[object] | None:
    return None if b is None else _e_blob(b)


def _e_km(km: KernelMessage) -> list[object]:
    return [
        _e_uint(km.id, U64_MAX, "KernelMessage.id"),
        _e_addr(km.source, "KernelMessage.source"),
        _e_addr(km.target, "KernelMessage.target"),
        None if km.rsvp is None else _e_addr(km.rsvp, "KernelMessage.rsvp"),
        _e_message(km.message),
        _e_opt_blob(km.lazy_load_blob),
    ]


def _e_hns_update(u: object) -> list[object]:
    if not isinstance(u, HnsUpdate):
        raise CodecError(f"expected an HnsUpdate, got {_describe(u)}")
    return [
        _e_str(u.name, "HnsUpdate.name"),
        _e_str(u.public_key, "HnsUpdate.public_key"),
        _e_str_seq(u.ips, "HnsUpdate.ips"),
        _e_ports(u.ports, "HnsUpdate.ports"),
        _e_str_seq(u.routers, "HnsUpdate.routers"),
    ]


def _e_routing(r: object) -> dict[str, object]:
    if isinstance(r, Routers):
        return {"Routers": _e_str_seq(r.routers, "Routers.routers")}
    if isinstance(r, Direct):
        return {"Direct": [_e_str(r.ip, "Direct.ip"), _e_ports(r.ports, "Direct.ports")]}
    if isinstance(r, Both):
        return {
            "Both": [
                _e_str(r.ip, "Both.ip"),
                _e_ports(r.ports, "Both.ports"),
                _e_str_seq(r.routers, "Both.routers"),
            ]
        }
    raise CodecError(f"Identity.routing: expected Routers, Direct or Both, got {_describe(r)}")


def _e_identity(i: object) -> list[object]:
    if not isinstance(i, Identity):
        raise CodecError(f"expected an Identity, got {_describe(i)}")
    return [
        _e_str(i.name, "Identity.name"),
        _e_str(i.networking_key, "Identity.networking_key"),
        _e_routing(i.routing),
    ]


def _e_net_action(a: object) -> object:
    if isinstance(a, ConnectionRequest):
        return {"ConnectionRequest": _e_str(a.name, "ConnectionRequest.name")}
    if isinstance(a, HnsUpdateAction):
        return {"HnsUpdate": _e_hns_update(a.update)}
    if isinstance(a, HnsBatchUpdate):
        if not isinstance(a.updates, tuple | list):
            raise CodecError("HnsBatchUpdate.updates: expected a tuple of HnsUpdate")
        return {"HnsBatchUpdate": [_e_hns_update(u) for u in a.updates]}
    if isinstance(a, GetPeers):
        return "GetPeers"
    if isinstance(a, GetPeer):
        return {"GetPeer": _e_str(a.name, "GetPeer.name")}
    if isinstance(a, GetDiagnostics):
        return "GetDiagnostics"
    if isinstance(a, Sign):
        return "Sign"
    if isinstance(a, Verify):
        return {
            "Verify": [
                _e_addr(a.from_, "Verify.from"),
                _e_bytes(a.signature, "Verify.signature"),
            ]
        }
    raise CodecError(f"expected a NetAction, got {_describe(a)}")


def _e_net_response(r: object) -> object:
    if isinstance(r, Accepted):
        return {"Accepted": _e_str(r.name, "Accepted.name")}
    if isinstance(r, Rejected):
        return {"Rejected": _e_str(r.name, "Rejected.name")}
    if isinstance(r, Peers):
        if not isinstance(r.identities, tuple | list):
            raise CodecError("Peers.identities: expected a tuple of Identity")
        return {"Peers": [_e_identity(i) for i in r.identities]}
    if isinstance(r, Peer):
        return {"Peer": None if r.identity is None else _e_identity(r.identity)}
    if isinstance(r, Diagnostics):
        return {"Diagnostics": _e_str(r.text, "Diagnostics.text")}
    if isinstance(r, Signed):
        return "Signed"
    if isinstance(r, Verified):
        return {"Verified": _e_bool(r.ok, "Verified.ok")}
    raise CodecError(f"expected a NetResponse, got {_describe(r)}")


def _pack(build: Callable[[], object], what: str) -> bytes:
    """Build the msgpack-ready structure and pack it; any failure becomes a CodecError."""
    try:
        return _packb(build())
    except CodecError:
        raise
    except (AttributeError, TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"cannot encode {what}: {type(e).__name__}: {e}") from e


def _pack_bytes(build: Callable[[], bytes], what: str) -> bytes:
    """Run an encoder that assembles bytes itself; any failure becomes a CodecError."""
    try:
        return build()
    except CodecError:
        raise
    except (AttributeError, TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"cannot encode {what}: {type(e).__name__}: {e}") from e


def _require(v: object, cls: type, what: str) -> None:
    if not isinstance(v, cls):
        raise CodecError(f"expected a {what}, got {_describe(v)}")


def _raw_byte_array(v: object, what: str) -> bytes:
    """The encoding of one ``Vec<u8>``. ASCII data needs no per-element work: every byte below
    0x80 is its own positive fixint, so the encoding is the header followed by the bytes."""
    if isinstance(v, memoryview):
        v = v.tobytes()
    if not isinstance(v, bytes | bytearray):
        raise CodecError(f"{what}: expected bytes, got {_describe(v)}")
    if not v.isascii():
        return _packb(list(v))
    n = len(v)
    if n < 16:
        header = bytes((_FIXARRAY_MIN + n,))
    elif n <= U16_MAX:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    return header + v


def _raw_meta_caps(metadata: object, caps: object, what: str) -> bytes:
    if metadata is None and isinstance(caps, tuple | list) and not caps:
        return b"\xc0\x90"
    # packb of a 2-element list is 0x92 followed by the two encodings back to back.
    return _packb(
        [_e_opt_str(metadata, what + ".metadata"), _e_caps(caps, what + ".capabilities")]
    )[1:]


def _e_km_bytes(km: KernelMessage) -> bytes:
    """``KernelMessage`` encoded piecewise, so bodies and blobs skip the per-element path when
    they can; byte-identical to packing ``_e_km(km)`` (the tests check the two agree)."""
    # A 4-element list packs as 0x94 + the four encodings; the message has 6 fields.
    parts = [
        b"\x96",
        _packb(
            [
                _e_uint(km.id, U64_MAX, "KernelMessage.id"),
                _e_addr(km.source, "KernelMessage.source"),
                _e_addr(km.target, "KernelMessage.target"),
                None if km.rsvp is None else _e_addr(km.rsvp, "KernelMessage.rsvp"),
            ]
        )[1:],
    ]
    m = km.message
    if isinstance(m, Request):
        inherit = _e_bool(m.inherit, "Request.inherit")
        expects = _e_opt_u64(m.expects_response, "Request.expects_response")
        parts.append(b"\x81\xa7Request\x95\xc3" if inherit else b"\x81\xa7Request\x95\xc2")
        parts.append(b"\xc0" if expects is None else _packb(expects))
        parts.append(_raw_byte_array(m.body, "Request.body"))
        parts.append(_raw_meta_caps(m.metadata, m.capabilities, "Request"))
    elif isinstance(m, ResponseMessage):
        r = m.response
        if not isinstance(r, Response):
            raise CodecError(f"ResponseMessage.response: expected a Response, got {_describe(r)}")
        inherit = _e_bool(r.inherit, "Response.inherit")
        parts.append(
            b"\x81\xa8Response\x92\x94\xc3" if inherit else b"\x81\xa8Response\x92\x94\xc2"
        )
        parts.append(_raw_byte_array(r.body, "Response.body"))
        parts.append(_raw_meta_caps(r.metadata, r.capabilities, "Response"))
        parts.append(
            b"\xc0" if m.context is None else _raw_byte_array(m.context, "ResponseMessage.context")
        )
    else:
        raise CodecError(f"message: expected a Request or ResponseMessage, got {_describe(m)}")
    blob = km.lazy_load_blob
    if blob is None:
        parts.append(b"\xc0")
    elif isinstance(blob, LazyLoadBlob):
        mime = _e_opt_str(blob.mime, "LazyLoadBlob.mime")
        parts.append(b"\x92\xc0" if mime is None else b"\x92" + _packb(mime))
        parts.append(_raw_byte_array(blob.bytes, "LazyLoadBlob.bytes"))
    else:
        raise CodecError(f"lazy_load_blob: expected a LazyLoadBlob, got {_describe(blob)}")
    return b"".join(parts)


#: Below this many bytes of body + context + blob, one packb of the whole message is cheapest;
#: from here on the piecewise encoder wins (hugely, for ASCII/JSON payloads).
_SPLICE_MIN = 256


def _e_km_auto(km: KernelMessage) -> bytes:
    m, blob = km.message, km.lazy_load_blob
    size = len(blob.bytes) if isinstance(blob, LazyLoadBlob) else 0
    if isinstance(m, Request):
        size += len(m.body)
    elif isinstance(m, ResponseMessage) and isinstance(m.response, Response):
        size += len(m.response.body) + (0 if m.context is None else len(m.context))
    return _e_km_bytes(km) if size >= _SPLICE_MIN else _packb(_e_km(km))


# --- KernelMessage fast path ----------------------------------------------------------------
#
# The common case of a node's traffic: exact wire types throughout. Encoded piecewise
# like _e_km_bytes (ASCII byte vectors copied as they are), with exact type checks in place of
# the general validation; anything else returns None and the general encoder runs, so its
# bytes and errors are unchanged. The fast path never calls into user objects.


@functools.lru_cache(maxsize=4096)
def _address_bytes(text: str) -> bytes:
    # The msgpack string of an address; like _cached_address, addresses repeat on every
    # message between the same processes. Raises for lone surrogates (not cached).
    return _packb(text)


def _add_byte_array(parts: list[bytes], v: bytes) -> None:
    """Append the encoding of ``v`` (exactly ``bytes``) to ``parts``, as ``_raw_byte_array``
    does but without copying ASCII data: its header, then the bytes themselves."""
    if not v.isascii():
        parts.append(_packb(list(v)))
        return
    n = len(v)
    if n < 16:
        parts.append(bytes((_FIXARRAY_MIN + n,)))
    elif n <= U16_MAX:
        parts.append(b"\xdc" + n.to_bytes(2, "big"))
    else:
        parts.append(b"\xdd" + n.to_bytes(4, "big"))
    parts.append(v)


def _fast_meta_caps(metadata: object, caps: object) -> bytes | None:
    """The encoding of a Request's or Response's metadata and capabilities (adjacent fields),
    or None unless they are None or a ``str``, and a tuple of ``(Capability, bytes)`` tuples
    of exact types."""
    if metadata is None:
        head = b"\xc0"
    elif type(metadata) is str:
        head = _packb(metadata)
    else:
        return None
    if type(caps) is not tuple:
        return None
    if not caps:
        return head + b"\x90"
    entries: list[list[object]] = []
    for item in caps:
        if type(item) is not tuple or len(item) != 2:
            return None
        cap, signature = item
        if type(cap) is not Capability or type(signature) is not bytes:
            return None
        issuer, params = cap.issuer, cap.params
        if type(issuer) is not Address or type(params) is not str:
            return None
        # As _e_caps builds them: [[issuer, params], signature as a list of ints].
        entries.append([[issuer.text, params], list(signature)])
    return head + _packb(entries)


def _fast_encode_kernel_message(km: KernelMessage) -> bytes | None:
    """``encode_kernel_message`` for the common shape, or None to leave it to the general path.

    Handled: exact ``int``/``bool``/``bytes``/``str``/``Address`` field values in range, a
    ``Request`` or ``ResponseMessage(Response, ...)``, capabilities as in ``_fast_meta_caps``,
    and a blob that is None or a ``LazyLoadBlob`` of exact types. The caller has checked
    ``type(km) is KernelMessage``.
    """
    try:
        kid, source, target, rsvp = km.id, km.source, km.target, km.rsvp
        if (
            type(kid) is not int
            or kid < 0
            or kid > U64_MAX
            or type(source) is not Address
            or type(target) is not Address
            or (rsvp is not None and type(rsvp) is not Address)
        ):
            return None
        parts = [
            b"\x96",
            _packb(kid),
            _address_bytes(source.text),
            _address_bytes(target.text),
            b"\xc0" if rsvp is None else _address_bytes(rsvp.text),
        ]
        m = km.message
        if type(m) is Request:
            inherit, expects, body = m.inherit, m.expects_response, m.body
            meta_caps = _fast_meta_caps(m.metadata, m.capabilities)
            if type(inherit) is not bool or type(body) is not bytes or meta_caps is None:
                return None
            if expects is None:
                expects_bytes = b"\xc0"
            elif type(expects) is int and 0 <= expects <= U64_MAX:
                expects_bytes = _packb(expects)
            else:
                return None
            parts.append(b"\x81\xa7Request\x95\xc3" if inherit else b"\x81\xa7Request\x95\xc2")
            parts.append(expects_bytes)
            _add_byte_array(parts, body)
            parts.append(meta_caps)
        elif type(m) is ResponseMessage:
            r, context = m.response, m.context
            if type(r) is not Response or (context is not None and type(context) is not bytes):
                return None
            inherit, body = r.inherit, r.body
            meta_caps = _fast_meta_caps(r.metadata, r.capabilities)
            if type(inherit) is not bool or type(body) is not bytes or meta_caps is None:
                return None
            parts.append(
                b"\x81\xa8Response\x92\x94\xc3" if inherit else b"\x81\xa8Response\x92\x94\xc2"
            )
            _add_byte_array(parts, body)
            parts.append(meta_caps)
            if context is None:
                parts.append(b"\xc0")
            else:
                _add_byte_array(parts, context)
        else:
            return None
        blob = km.lazy_load_blob
        if blob is None:
            parts.append(b"\xc0")
        elif type(blob) is LazyLoadBlob:
            mime, data = blob.mime, blob.bytes
            if (mime is not None and type(mime) is not str) or type(data) is not bytes:
                return None
            parts.append(b"\x92\xc0" if mime is None else b"\x92" + _packb(mime))
            _add_byte_array(parts, data)
        else:
            return None
        return b"".join(parts)
    except Exception:
        # A string msgpack cannot encode (a lone surrogate), a field never set: the general
        # path raises for it.
        return None


def encode_kernel_message(km: KernelMessage) -> bytes:
    """``KernelMessage`` -> rmp_serde bytes."""
    if type(km) is KernelMessage:
        data = _fast_encode_kernel_message(km)
        if data is not None:
            return data
    return _encode_kernel_message_general(km)


def _encode_kernel_message_general(km: KernelMessage) -> bytes:
    """The general encoder alone, without the fast path (for tests)."""
    _require(km, KernelMessage, "KernelMessage")
    return _pack_bytes(lambda: _e_km_auto(km), "KernelMessage")


def _encode_kernel_message_spliced(km: KernelMessage) -> bytes:
    """The piecewise path regardless of size (for tests)."""
    _require(km, KernelMessage, "KernelMessage")
    return _pack_bytes(lambda: _e_km_bytes(km), "KernelMessage")


def _encode_kernel_message_simple(km: KernelMessage) -> bytes:
    """Reference path for tests: the whole message built as lists and packed in one call."""
    _require(km, KernelMessage, "KernelMessage")
    return _pack(lambda: _e_km(km), "KernelMessage")


def encode_handshake_payload(p: HandshakePayload) -> bytes:
    _require(p, HandshakePayload, "HandshakePayload")
    return _pack(
        lambda: [
            _e_uint(p.protocol_version, U8_MAX, "HandshakePayload.protocol_version"),
            _e_str(p.name, "HandshakePayload.name"),
            _e_bytes(p.signature, "HandshakePayload.signature"),
            _e_bool(p.proxy_request, "HandshakePayload.proxy_request"),
        ],
        "HandshakePayload",
    )


def encode_routing_request(r: RoutingRequest) -> bytes:
    _require(r, RoutingRequest, "RoutingRequest")
    return _pack(
        lambda: [
            _e_uint(r.protocol_version, U8_MAX, "RoutingRequest.protocol_version"),
            _e_str(r.source, "RoutingRequest.source"),
            _e_bytes(r.signature, "RoutingRequest.signature"),
            _e_str(r.target, "RoutingRequest.target"),
        ],
        "RoutingRequest",
    )


def encode_net_action(a: NetAction) -> bytes:
    return _pack(lambda: _e_net_action(a), "NetAction")


def encode_net_response(r: NetResponse) -> bytes:
    return _pack(lambda: _e_net_response(r), "NetResponse")


def encode_lazy_load_blob(b: LazyLoadBlob) -> bytes:
    return _pack(lambda: _e_blob(b), "LazyLoadBlob")


def encode_send_error(e: SendError) -> bytes:
    _require(e, SendError, "SendError")

    def build() -> list[object]:
        if not isinstance(e.kind, SendErrorKind):
            raise CodecError(f"SendError.kind: expected a SendErrorKind, got {_describe(e.kind)}")
        return [
            e.kind.value,
            _e_addr(e.target, "SendError.target"),
            _e_message(e.message),
            _e_opt_blob(e.lazy_load_blob),
        ]

    return _pack(build, "SendError")


def encode_hns_update(u: HnsUpdate) -> bytes:
    return _pack(lambda: _e_hns_update(u), "HnsUpdate")


def encode_identity(i: Identity) -> bytes:
    return _pack(lambda: _e_identity(i), "Identity")


def sign_bytes_for_capability(cap: Capability) -> bytes:
    """What the kernel signs for a capability: msgpack of ``[issuer_string, params_string]``."""
    _require(cap, Capability, "Capability")
    return _pack(lambda: _e_capability(cap, "Capability"), "Capability")


# ============================================================================================
# Decoding
# ============================================================================================

_FIXSTR_MIN, _FIXSTR_MAX = 0xA0, 0xBF
_FIXARRAY_MIN, _FIXARRAY_MAX = 0x90, 0x9F
_FIXMAP_MIN, _FIXMAP_MAX = 0x80, 0x8F

#: Integer markers: (payload bytes, signed).
_INT_MARKERS: dict[int, tuple[int, bool]] = {
    0xCC: (1, False),
    0xCD: (2, False),
    0xCE: (4, False),
    0xCF: (8, False),
    0xD0: (1, True),
    0xD1: (2, True),
    0xD2: (4, True),
    0xD3: (8, True),
}
#: bin8/16/32 markers: length-field size.
_BIN_MARKERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}

#: Byte arrays up to this many elements are read by a Python loop; longer ones by the C
#: extension, whose fixed set-up cost (a few microseconds) is amortised from about here on.
_SMALL_BYTE_ARRAY = 40


def _marker_name(m: int) -> str:
    """Human name of a msgpack marker byte, for error messages."""
    if m <= 0x7F:
        return "integer"
    if m <= _FIXMAP_MAX:
        return "map"
    if m <= _FIXARRAY_MAX:
        return "array"
    if m <= _FIXSTR_MAX:
        return "string"
    if m >= 0xE0:
        return "negative integer"
    return {
        0xC0: "nil",
        0xC1: "reserved byte 0xc1",
        0xC2: "bool",
        0xC3: "bool",
        0xC4: "bin",
        0xC5: "bin",
        0xC6: "bin",
        0xC7: "ext",
        0xC8: "ext",
        0xC9: "ext",
        0xCA: "float",
        0xCB: "float",
        0xD4: "ext",
        0xD5: "ext",
        0xD6: "ext",
        0xD7: "ext",
        0xD8: "ext",
        0xD9: "string",
        0xDA: "string",
        0xDB: "string",
        0xDC: "array",
        0xDD: "array",
        0xDE: "map",
        0xDF: "map",
    }.get(m, "integer")


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"ext type {code} is not valid in a byte array")


#: Unpacker settings for reading byte-array elements one top-level object at a time: every
#: container, string, bin and ext must be empty, so nothing nested can be built and the only
#: objects created are ints, floats and singletons. ``bytes()`` then rejects the non-ints.
_ELEMENT_UNPACKER_OPTIONS: dict[str, Any] = {
    "use_list": False,
    "raw": False,
    "max_str_len": 0,
    "max_bin_len": 0,
    "max_array_len": 0,
    "max_map_len": 0,
    "max_ext_len": 0,
    "object_pairs_hook": tuple,
    "ext_hook": _reject_ext,
}


@functools.lru_cache(maxsize=4096)
def _cached_address(s: str) -> Address:
    # Addresses are immutable and repeat on every message between the same processes.
    return Address.parse(s)


class _Decoder:
    """A cursor over the input; each method reads one schema element or raises CodecError."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0

    # --- errors -----------------------------------------------------------------------------

    def _truncated(self, what: str) -> NoReturn:
        raise CodecError(f"{what}: input truncated at offset {self.pos}")

    def _wrong_type(self, what: str, expected: str, m: int) -> NoReturn:
        raise CodecError(
            f"{what}: expected {expected}, found {_marker_name(m)} at offset {self.pos}"
        )

    # --- scalars ----------------------------------------------------------------------------

    def _len_field(self, p: int, size: int, what: str) -> int:
        """Big-endian unsigned length/value of ``size`` bytes at ``p``, bounds-checked."""
        if p + size > self.end:
            self._truncated(what)
        return int.from_bytes(self.buf[p : p + size], "big")

    def uint(self, maxv: int, what: str) -> int:
        buf, p = self.buf, self.pos
        if p >= self.end:
            self._truncated(what)
        m = buf[p]
        if m <= 0x7F:
            self.pos = p + 1
            return m if m <= maxv else self._out_of_range(m, maxv, what)
        spec = _INT_MARKERS.get(m)
        if spec is None:
            if m >= 0xE0:
                self._out_of_range(m - 0x100, maxv, what)
            self._wrong_type(what, "an unsigned integer", m)
        size, signed = spec
        q = p + 1 + size
        if q > self.end:
            self._truncated(what)
        v = int.from_bytes(buf[p + 1 : q], "big", signed=signed)
        if v < 0 or v > maxv:
            self._out_of_range(v, maxv, what)
        self.pos = q
        return v

    def _out_of_range(self, v: int, maxv: int, what: str) -> NoReturn:
        raise CodecError(f"{what}: integer {v} out of range 0..{maxv} at offset {self.pos}")

    def boolean(self, what: str) -> bool:
        p = self.pos
        if p >= self.end:
            self._truncated(what)
        m = self.buf[p]
        if m == 0xC3:
            self.pos = p + 1
            return True
        if m == 0xC2:
            self.pos = p + 1
            return False
        self._wrong_type(what, "a bool", m)

    def nil(self) -> bool:
        """Consume a nil if one is next (``Option::None``); otherwise leave the cursor."""
        p = self.pos
        if p < self.end and self.buf[p] == 0xC0:
            self.pos = p + 1
            return True
        return False

    def string(self, what: str) -> str:
        buf, p = self.buf, self.pos
        if p >= self.end:
            self._truncated(what)
        m = buf[p]
        if _FIXSTR_MIN <= m <= _FIXSTR_MAX:
            n = m - _FIXSTR_MIN
            p += 1
        elif m == 0xD9:
            n = self._len_field(p + 1, 1, what)
            p += 2
        elif m == 0xDA:
            n = self._len_field(p + 1, 2, what)
            p += 3
        elif m == 0xDB:
            n = self._len_field(p + 1, 4, what)
            p += 5
        else:
            self._wrong_type(what, "a string", m)
        q = p + n
        if q > self.end:
            raise CodecError(
                f"{what}: string of {n} bytes at offset {self.pos} runs past the end of input"
            )
        try:
            s = buf[p:q].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"{what}: invalid UTF-8 at offset {p + e.start}") from None
        self.pos = q
        return s

    def opt_string(self, what: str) -> str | None:
        return None if self.nil() else self.string(what)

    def address(self, what: str) -> Address:
        s = self.string(what)
        try:
            return _cached_address(s) if len(s) <= 256 else Address.parse(s)
        except CodecError as e:
            raise CodecError(f"{what}: {e}") from None

    # --- containers -------------------------------------------------------------------------

    def array(self, what: str) -> int:
        """Read an array header; the count is checked against the bytes left (>= 1 each)."""
        buf, p = self.buf, self.pos
        if p >= self.end:
            self._truncated(what)
        m = buf[p]
        if _FIXARRAY_MIN <= m <= _FIXARRAY_MAX:
            n = m - _FIXARRAY_MIN
            p += 1
        elif m == 0xDC:
            n = self._len_field(p + 1, 2, what)
            p += 3
        elif m == 0xDD:
            n = self._len_field(p + 1, 4, what)
            p += 5
        else:
            self._wrong_type(what, "an array", m)
        if n > self.end - p:
            raise CodecError(
                f"{what}: array of {n} elements at offset {self.pos} is longer than the "
                f"{self.end - p} bytes left"
            )
        self.pos = p
        return n

    def struct(self, n_fields: int, what: str) -> None:
        start = self.pos
        # Fast path: every struct here has < 16 fields, so canonically a fixarray.
        if start < self.end and self.buf[start] == _FIXARRAY_MIN + n_fields:
            self.pos = start + 1
            return
        n = self.array(what)
        if n != n_fields:
            raise CodecError(
                f"{what}: expected an array of {n_fields} fields, got {n} at offset {start}"
            )

    def map_header(self, what: str) -> int:
        buf, p = self.buf, self.pos
        if p >= self.end:
            self._truncated(what)
        m = buf[p]
        if _FIXMAP_MIN <= m <= _FIXMAP_MAX:
            n = m - _FIXMAP_MIN
            p += 1
        elif m == 0xDE:
            n = self._len_field(p + 1, 2, what)
            p += 3
        elif m == 0xDF:
            n = self._len_field(p + 1, 4, what)
            p += 5
        else:
            self._wrong_type(what, "a map", m)
        if 2 * n > self.end - p:
            raise CodecError(
                f"{what}: map of {n} entries at offset {self.pos} is longer than the "
                f"{self.end - p} bytes left"
            )
        self.pos = p
        return n

    def variant(self, what: str) -> tuple[str, bool]:
        """An externally tagged enum: ``("Name", False)`` for a bare unit variant string,
        ``("Name", True)`` for a one-entry map, with the cursor then on the variant's value."""
        p = self.pos
        if p >= self.end:
            self._truncated(what)
        m = self.buf[p]
        if _FIXSTR_MIN <= m <= _FIXSTR_MAX or 0xD9 <= m <= 0xDB:
            return self.string(what), False
        if _FIXMAP_MIN <= m <= _FIXMAP_MAX or m in (0xDE, 0xDF):
            n = self.map_header(what)
            if n != 1:
                raise CodecError(f"{what}: enum map must have exactly 1 entry, got {n}")
            return self.string(what + " variant name"), True
        self._wrong_type(what, "an enum (string or one-entry map)", m)

    def str_seq(self, what: str) -> tuple[str, ...]:
        n = self.array(what)
        string = self.string
        return tuple([string(what) for _ in range(n)])

    def ports(self, what: str) -> dict[str, int]:
        n = self.map_header(what)
        out: dict[str, int] = {}
        for _ in range(n):
            key = self.string(what + " key")
            if key in out:
                raise CodecError(f"{what}: duplicate key {key[:64]!r}")
            out[key] = self.uint(U16_MAX, what + " value")
        return out

    # --- byte vectors -----------------------------------------------------------------------

    def byte_vec(self, what: str) -> bytes:
        """``Vec<u8>``: an array of integers 0..255 (canonical), or ``bin`` (lenient)."""
        buf, p, end = self.buf, self.pos, self.end
        if p >= end:
            self._truncated(what)
        m = buf[p]
        if _FIXARRAY_MIN <= m <= _FIXARRAY_MAX:
            n = m - _FIXARRAY_MIN
            q = p + 1
        elif m == 0xDC:
            n = self._len_field(p + 1, 2, what)
            q = p + 3
        elif m == 0xDD:
            n = self._len_field(p + 1, 4, what)
            q = p + 5
        elif m in _BIN_MARKERS:
            width = _BIN_MARKERS[m]
            n = self._len_field(p + 1, width, what)
            q = p + 1 + width
            if n > end - q:
                raise CodecError(
                    f"{what}: bin of {n} bytes at offset {p} runs past the end of input"
                )
            self.pos = q + n
            return buf[q : q + n]
        else:
            self._wrong_type(what, "a byte array", m)
        if n > end - q:
            raise CodecError(
                f"{what}: array of {n} elements at offset {p} is longer than the "
                f"{end - q} bytes left"
            )
        # Fast path: n bytes all below 0x80 are exactly n positive-fixint elements (text and
        # JSON bodies). isascii() scans at C speed.
        run = buf[q : q + n]
        if run.isascii():
            self.pos = q + n
            return run
        self.pos = q
        if n <= _SMALL_BYTE_ARRAY:
            return self._small_byte_array(n, what)
        return self._large_byte_array(n, what)

    def opt_byte_vec(self, what: str) -> bytes | None:
        return None if self.nil() else self.byte_vec(what)

    def _small_byte_array(self, n: int, what: str) -> bytes:
        buf, end = self.buf, self.end
        out = bytearray(n)
        q = self.pos
        for i in range(n):
            if q >= end:
                self.pos = q
                self._truncated(what)
            v = buf[q]
            if v <= 0x7F:
                q += 1
            elif v == 0xCC and q + 1 < end:
                v = buf[q + 1]
                q += 2
            else:  # a wider integer encoding, or an error: the general reader decides
                self.pos = q
                v = self.uint(U8_MAX, what + " element")
                q = self.pos
            out[i] = v
        self.pos = q
        return bytes(out)

    def _large_byte_array(self, n: int, what: str) -> bytes:
        buf, start = self.buf, self.pos
        # Each element is at most 9 bytes (cf + u64), so the array lies within this window.
        limit = min(self.end, start + 9 * n)
        try:
            unpacker = msgpack.Unpacker(max_buffer_size=limit - start, **_ELEMENT_UNPACKER_OPTIONS)
            unpacker.feed(memoryview(buf)[start:limit])
            items = list(islice(unpacker, n))
            consumed = unpacker.tell()
        except Exception as e:  # msgpack's own errors, our ext rejection, limits exceeded
            raise CodecError(f"{what}: malformed byte array element near offset {start}") from e
        if len(items) != n:
            raise CodecError(f"{what}: input truncated inside a byte array of {n} elements")
        try:
            out = bytes(items)
        except (TypeError, ValueError):
            raise CodecError(
                f"{what}: byte array element at offset >= {start} is not an integer in 0..255"
            ) from None
        stop = start + consumed
        # bytes() accepts True/False as 1/0; rmp_serde does not. Every integer element whose
        # value is 194 or 195 contains exactly one 0xc2/0xc3 byte (its last), other integer
        # encodings contain none, and each bool is exactly one such byte. So the bools are the
        # surplus of 0xc2/0xc3 bytes over elements equal to 194/195: counted at C speed.
        surplus = (
            buf.count(b"\xc2", start, stop)
            + buf.count(b"\xc3", start, stop)
            - out.count(194)
            - out.count(195)
        )
        if surplus:
            raise CodecError(f"{what}: bool inside a byte array near offset {start}")
        self.pos = stop
        return out

    # --- wire types -------------------------------------------------------------------------

    def capabilities(self, what: str) -> tuple[tuple[Capability, bytes], ...]:
        n = self.array(what)
        if n > MAX_CAPABILITIES:
            # Each decoded capability costs ~50x its smallest encoding in Python objects: a
            # 10 MB message of tiny capabilities would otherwise cost hundreds of MB.
            raise CodecError(f"{what}: {n} capabilities (at most {MAX_CAPABILITIES})")
        out: list[tuple[Capability, bytes]] = []
        for _ in range(n):
            self.struct(2, what + " entry")
            self.struct(2, "Capability")
            issuer = self.address("Capability.issuer")
            params = self.string("Capability.params")
            signature = self.byte_vec("capability signature")
            out.append((Capability(issuer, params), signature))
        return tuple(out)

    def request(self) -> Request:
        self.struct(5, "Request")
        inherit = self.boolean("Request.inherit")
        expects = None if self.nil() else self.uint(U64_MAX, "Request.expects_response")
        body = self.byte_vec("Request.body")
        metadata = self.opt_string("Request.metadata")
        caps = self.capabilities("Request.capabilities")
        return Request(inherit, expects, body, metadata, caps)

    def response(self) -> Response:
        self.struct(4, "Response")
        inherit = self.boolean("Response.inherit")
        body = self.byte_vec("Response.body")
        metadata = self.opt_string("Response.metadata")
        caps = self.capabilities("Response.capabilities")
        return Response(inherit, body, metadata, caps)

    def message(self) -> Message:
        name, has_value = self.variant("Message")
        if has_value:
            if name == "Request":
                return self.request()
            if name == "Response":
                self.struct(2, "Message::Response")
                response = self.response()
                context = self.opt_byte_vec("Response context")
                return ResponseMessage(response, context)
        raise CodecError(f"Message: unknown or malformed variant {name[:64]!r}")

    def blob(self) -> LazyLoadBlob:
        self.struct(2, "LazyLoadBlob")
        mime = self.opt_string("LazyLoadBlob.mime")
        data = self.byte_vec("LazyLoadBlob.bytes")
        return LazyLoadBlob(mime, data)

    def kernel_message(self) -> KernelMessage:
        self.struct(6, "KernelMessage")
        kid = self.uint(U64_MAX, "KernelMessage.id")
        source = self.address("KernelMessage.source")
        target = self.address("KernelMessage.target")
        rsvp = None if self.nil() else self.address("KernelMessage.rsvp")
        message = self.message()
        blob = None if self.nil() else self.blob()
        return KernelMessage(kid, source, target, rsvp, message, blob)

    def send_error(self) -> SendError:
        self.struct(4, "SendError")
        kind_name, has_value = self.variant("SendError.kind")
        kind = _SEND_ERROR_KINDS.get(kind_name) if not has_value else None
        if kind is None:
            raise CodecError(f"SendError.kind: unknown or malformed variant {kind_name[:64]!r}")
        target = self.address("SendError.target")
        message = self.message()
        blob = None if self.nil() else self.blob()
        return SendError(kind, target, message, blob)

    def handshake_payload(self) -> HandshakePayload:
        self.struct(4, "HandshakePayload")
        version = self.uint(U8_MAX, "HandshakePayload.protocol_version")
        name = self.string("HandshakePayload.name")
        signature = self.byte_vec("HandshakePayload.signature")
        proxy = self.boolean("HandshakePayload.proxy_request")
        return HandshakePayload(version, name, signature, proxy)

    def routing_request(self) -> RoutingRequest:
        self.struct(4, "RoutingRequest")
        version = self.uint(U8_MAX, "RoutingRequest.protocol_version")
        source = self.string("RoutingRequest.source")
        signature = self.byte_vec("RoutingRequest.signature")
        target = self.string("RoutingRequest.target")
        return RoutingRequest(version, source, signature, target)

    def hns_update(self) -> HnsUpdate:
        self.struct(5, "HnsUpdate")
        name = self.string("HnsUpdate.name")
        key = self.string("HnsUpdate.public_key")
        ips = self.str_seq("HnsUpdate.ips")
        ports = self.ports("HnsUpdate.ports")
        routers = self.str_seq("HnsUpdate.routers")
        return HnsUpdate(name, key, ips, ports, routers)

    def routing(self) -> NodeRouting:
        name, has_value = self.variant("NodeRouting")
        if has_value:
            if name == "Routers":
                return Routers(self.str_seq("Routers"))
            if name == "Direct":
                self.struct(2, "Direct")
                ip = self.string("Direct.ip")
                return Direct(ip, self.ports("Direct.ports"))
            if name == "Both":
                self.struct(3, "Both")
                ip = self.string("Both.ip")
                ports = self.ports("Both.ports")
                return Both(ip, ports, self.str_seq("Both.routers"))
        raise CodecError(f"NodeRouting: unknown or malformed variant {name[:64]!r}")

    def identity(self) -> Identity:
        self.struct(3, "Identity")
        name = self.string("Identity.name")
        key = self.string("Identity.networking_key")
        return Identity(name, key, self.routing())

    def net_action(self) -> NetAction:
        name, has_value = self.variant("NetAction")
        if not has_value:
            unit = _NET_ACTION_UNITS.get(name)
            if unit is not None:
                return unit
        elif name == "ConnectionRequest":
            return ConnectionRequest(self.string("ConnectionRequest"))
        elif name == "HnsUpdate":
            return HnsUpdateAction(self.hns_update())
        elif name == "HnsBatchUpdate":
            n = self.array("HnsBatchUpdate")
            return HnsBatchUpdate(tuple([self.hns_update() for _ in range(n)]))
        elif name == "GetPeer":
            return GetPeer(self.string("GetPeer"))
        elif name == "Verify":
            self.struct(2, "Verify")
            from_ = self.address("Verify.from")
            return Verify(from_, self.byte_vec("Verify.signature"))
        raise CodecError(f"NetAction: unknown or malformed variant {name[:64]!r}")

    def net_response(self) -> NetResponse:
        name, has_value = self.variant("NetResponse")
        if not has_value:
            if name == "Signed":
                return _SIGNED
        elif name == "Accepted":
            return Accepted(self.string("Accepted"))
        elif name == "Rejected":
            return Rejected(self.string("Rejected"))
        elif name == "Peers":
            n = self.array("Peers")
            return Peers(tuple([self.identity() for _ in range(n)]))
        elif name == "Peer":
            return Peer(None if self.nil() else self.identity())
        elif name == "Diagnostics":
            return Diagnostics(self.string("Diagnostics"))
        elif name == "Verified":
            return Verified(self.boolean("Verified"))
        raise CodecError(f"NetResponse: unknown or malformed variant {name[:64]!r}")


_SEND_ERROR_KINDS = {k.value: k for k in SendErrorKind}
_NET_ACTION_UNITS: dict[str, NetAction] = {
    "GetPeers": GetPeers(),
    "GetDiagnostics": GetDiagnostics(),
    "Sign": Sign(),
}
_SIGNED = Signed()


def _decode(data: BytesLike, read: Callable[[_Decoder], _T], what: str) -> _T:
    if type(data) is bytes:
        buf = data
    elif isinstance(data, bytes | bytearray | memoryview):
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > MESSAGE_MAX_SIZE:
            raise CodecError(f"{what}: {size} bytes exceeds MESSAGE_MAX_SIZE")
        buf = bytes(data)
    else:
        raise CodecError(f"{what}: expected bytes, got {_describe(data)}")
    if len(buf) > MESSAGE_MAX_SIZE:
        raise CodecError(f"{what}: {len(buf)} bytes exceeds MESSAGE_MAX_SIZE")
    decoder = _Decoder(buf)
    try:
        value = read(decoder)
    except CodecError:
        raise
    except Exception as e:  # a bug, not the input's fault; still never escapes as non-Codec
        raise CodecError(f"{what}: internal decoder error ({type(e).__name__}: {e})") from e
    if decoder.pos != decoder.end:
        raise CodecError(
            f"{what}: {decoder.end - decoder.pos} trailing bytes after the value "
            f"at offset {decoder.pos}"
        )
    return value


# --- KernelMessage fast path ----------------------------------------------------------------
#
# A node decodes a KernelMessage per message, and for small messages the general decoder's
# per-field method calls dominate. The fast path reads the canonical frame with local
# variables. It never raises and never accepts anything the general decoder rejects: where it
# meets a form it does not read inline, either it declines (returns None; the general decoder
# then runs and decides, error message included), or, for the fields after the body, it hands
# that one field to the general reader's own method, so a valid message is not decoded twice
# after its (possibly large) body. Any error there also makes it decline.


@functools.lru_cache(maxsize=4096)
def _cached_address_raw(raw: bytes) -> Address:
    """``_cached_address`` keyed by the UTF-8 bytes (saves decoding them on every message)."""
    return _cached_address(raw.decode())


def _general_reader(buf: bytes, p: int) -> _Decoder:
    """The general decoder positioned at ``p``, for one field the fast path does not read."""
    d = _Decoder(buf)
    d.pos = p
    return d


def _fast_byte_vec(buf: bytes, p: int) -> tuple[bytes, int]:
    """A ``Vec<u8>`` at ``p`` and the offset after it: an ASCII fixarray/array16 here (as in
    ``_Decoder.byte_vec``), any other form by the general reader."""
    m = buf[p]
    if m == 0xDC:
        q = p + 3 + ((buf[p + 1] << 8) | buf[p + 2])
        run = buf[p + 3 : q]
    elif 0x90 <= m <= 0x9F:
        q = p + 1 + m - 0x90
        run = buf[p + 1 : q]
    else:
        q = -1
    # A short slice (truncated input) leaves q past the end, so the caller's checks decline.
    if q >= 0 and run.isascii():
        return run, q
    d = _general_reader(buf, p)
    return d.byte_vec("byte vector"), d.pos


def _fast_string(buf: bytes, p: int) -> tuple[str, int]:
    """A string at ``p`` and the offset after it: fixstr/str8 here, str16/32 (or an error) by
    the general reader."""
    m = buf[p]
    if 0xA0 <= m <= 0xBF:
        q = p + 1 + m - 0xA0
        return buf[p + 1 : q].decode(), q
    if m == 0xD9:
        q = p + 2 + buf[p + 1]
        return buf[p + 2 : q].decode(), q
    d = _general_reader(buf, p)
    return d.string("string"), d.pos


def _fast_kernel_message(buf: bytes) -> KernelMessage | None:
    """``KernelMessage`` read by the fast path, or None to leave it to ``_Decoder``.

    Read inline (docs/protocol.md §2): fixarray(6); the id as a positive fixint or cc/cd/ce/cf;
    source, target and rsvp (or nil) as fixstr/str8 addresses; ``{"Request": fixarray(5)}`` or
    ``{"Response": fixarray(2)[fixarray(4), context]}``; bools; ``expects_response`` nil or an
    unsigned marker; ASCII byte vectors as fixarray/array16; nil or fixstr/str8 strings; empty
    capabilities (0x90); a blob nil or fixarray(2). Any other form of the fields up to
    ``expects_response`` declines; later fields (byte vectors, metadata, capabilities, context,
    blob) in other forms are read by the general reader.
    """
    try:
        if buf[0] != 0x96:
            return None
        # id: u64. Slices of truncated input come out short, but p still advances past the
        # end, so the final length check declines.
        m = buf[1]
        if m <= 0x7F:
            kid, p = m, 2
        elif m == 0xCC:
            kid, p = buf[2], 3
        elif m == 0xCD:
            kid, p = int.from_bytes(buf[2:4], "big"), 4
        elif m == 0xCE:
            kid, p = int.from_bytes(buf[2:6], "big"), 6
        elif m == 0xCF:
            kid, p = int.from_bytes(buf[2:10], "big"), 10
        else:
            return None
        # source, target: fixstr or str8, so at most 255 bytes (the general decoder memoises
        # addresses up to 256 characters, so the values are the same).
        m = buf[p]
        if 0xA0 <= m <= 0xBF:
            q = p + 1 + m - 0xA0
            source = _cached_address_raw(buf[p + 1 : q])
        elif m == 0xD9:
            q = p + 2 + buf[p + 1]
            source = _cached_address_raw(buf[p + 2 : q])
        else:
            return None
        m = buf[q]
        if 0xA0 <= m <= 0xBF:
            p = q + 1 + m - 0xA0
            target = _cached_address_raw(buf[q + 1 : p])
        elif m == 0xD9:
            p = q + 2 + buf[q + 1]
            target = _cached_address_raw(buf[q + 2 : p])
        else:
            return None
        # rsvp: nil or an address.
        m = buf[p]
        if m == 0xC0:
            rsvp = None
            p += 1
        elif 0xA0 <= m <= 0xBF:
            q = p + 1 + m - 0xA0
            rsvp = _cached_address_raw(buf[p + 1 : q])
            p = q
        elif m == 0xD9:
            q = p + 2 + buf[p + 1]
            rsvp = _cached_address_raw(buf[p + 2 : q])
            p = q
        else:
            return None
        # message: an externally tagged enum, a one-entry map (docs/protocol.md §2).
        message: Request | ResponseMessage
        if buf.startswith(b"\x81\xa7Request\x95", p):
            m = buf[p + 10]
            if m == 0xC2:
                inherit = False
            elif m == 0xC3:
                inherit = True
            else:
                return None
            m = buf[p + 11]
            if m == 0xC0:
                expects: int | None = None
                p += 12
            elif m <= 0x7F:
                expects = m
                p += 12
            elif m == 0xCC:
                expects = buf[p + 12]
                p += 13
            elif m == 0xCD:
                expects = int.from_bytes(buf[p + 12 : p + 14], "big")
                p += 14
            elif m == 0xCE:
                expects = int.from_bytes(buf[p + 12 : p + 16], "big")
                p += 16
            elif m == 0xCF:
                expects = int.from_bytes(buf[p + 12 : p + 20], "big")
                p += 20
            else:
                return None
            body, p = _fast_byte_vec(buf, p)
            if buf[p] == 0xC0:
                metadata = None
                p += 1
            else:
                metadata, p = _fast_string(buf, p)
            if buf[p] == 0x90:
                caps: tuple[tuple[Capability, bytes], ...] = ()
                p += 1
            else:
                d = _general_reader(buf, p)
                caps = d.capabilities("Request.capabilities")
                p = d.pos
            message = build.request(inherit, expects, body, metadata, caps)
        elif buf.startswith(b"\x81\xa8Response\x92\x94", p):
            m = buf[p + 12]
            if m == 0xC2:
                inherit = False
            elif m == 0xC3:
                inherit = True
            else:
                return None
            body, p = _fast_byte_vec(buf, p + 13)
            if buf[p] == 0xC0:
                metadata = None
                p += 1
            else:
                metadata, p = _fast_string(buf, p)
            if buf[p] == 0x90:
                caps = ()
                p += 1
            else:
                d = _general_reader(buf, p)
                caps = d.capabilities("Response.capabilities")
                p = d.pos
            if buf[p] == 0xC0:
                context = None
                p += 1
            else:
                context, p = _fast_byte_vec(buf, p)
            response = new_object(Response)
            RS_INHERIT(response, inherit)
            RS_BODY(response, body)
            RS_META(response, metadata)
            RS_CAPS(response, caps)
            message = new_object(ResponseMessage)
            RM_RESPONSE(message, response)
            RM_CONTEXT(message, context)
        else:
            return None
        # lazy_load_blob: nil or [nil|str, bytes].
        m = buf[p]
        if m == 0xC0:
            blob = None
            p += 1
        elif m == 0x92:
            if buf[p + 1] == 0xC0:
                mime = None
                p += 2
            else:
                mime, p = _fast_string(buf, p + 1)
            data, p = _fast_byte_vec(buf, p)
            blob = LazyLoadBlob(mime, data)
        else:
            d = _general_reader(buf, p)
            blob = d.blob()
            p = d.pos
        if p != len(buf):
            return None
    except Exception:
        # Truncated input (IndexError), invalid UTF-8 (ValueError), a bad address or field
        # (CodecError), ...: the general decoder decides and reports it.
        return None
    return build.kernel_message(kid, source, target, rsvp, message, blob)


def decode_kernel_message(data: BytesLike) -> KernelMessage:
    """rmp_serde bytes -> ``KernelMessage``; raises only :class:`CodecError`."""
    if type(data) is bytes and len(data) <= MESSAGE_MAX_SIZE:
        km = _fast_kernel_message(data)
        if km is not None:
            return km
    return _decode(data, _Decoder.kernel_message, "KernelMessage")


def _decode_kernel_message_general(data: BytesLike) -> KernelMessage:
    """The general decoder alone, without the fast path (for tests)."""
    return _decode(data, _Decoder.kernel_message, "KernelMessage")


def decode_handshake_payload(data: BytesLike) -> HandshakePayload:
    return _decode(data, _Decoder.handshake_payload, "HandshakePayload")


def decode_routing_request(data: BytesLike) -> RoutingRequest:
    return _decode(data, _Decoder.routing_request, "RoutingRequest")


def decode_net_action(data: BytesLike) -> NetAction:
    return _decode(data, _Decoder.net_action, "NetAction")


def decode_net_response(data: BytesLike) -> NetResponse:
    return _decode(data, _Decoder.net_response, "NetResponse")


def decode_lazy_load_blob(data: BytesLike) -> LazyLoadBlob:
    return _decode(data, _Decoder.blob, "LazyLoadBlob")


def decode_send_error(data: BytesLike) -> SendError:
    return _decode(data, _Decoder.send_error, "SendError")


def decode_hns_update(data: BytesLike) -> HnsUpdate:
    return _decode(data, _Decoder.hns_update, "HnsUpdate")


def decode_identity(data: BytesLike) -> Identity:
    return _decode(data, _Decoder.identity, "Identity")


#: Decoders by wire type name (the vector file's ``type`` column).
DECODERS: dict[str, Callable[[bytes], object]] = {
    "KernelMessage": decode_kernel_message,
    "HandshakePayload": decode_handshake_payload,
    "RoutingRequest": decode_routing_request,
    "NetAction": decode_net_action,
    "NetResponse": decode_net_response,
    "LazyLoadBlob": decode_lazy_load_blob,
    "SendError": decode_send_error,
    "HnsUpdate": decode_hns_update,
    "Identity": decode_identity,
}

#: Encoders by wire type name. Each checks its argument's type at run time and raises
#: CodecError for anything else, which is what makes the ``object`` signature honest.
ENCODERS: dict[str, Callable[[object], bytes]] = {
    "KernelMessage": cast(Callable[[object], bytes], encode_kernel_message),
    "HandshakePayload": cast(Callable[[object], bytes], encode_handshake_payload),
    "RoutingRequest": cast(Callable[[object], bytes], encode_routing_request),
    "NetAction": cast(Callable[[object], bytes], encode_net_action),
    "NetResponse": cast(Callable[[object], bytes], encode_net_response),
    "LazyLoadBlob": cast(Callable[[object], bytes], encode_lazy_load_blob),
    "SendError": cast(Callable[[object], bytes], encode_send_error),
    "HnsUpdate": cast(Callable[[object], bytes], encode_hns_update),
    "Identity": cast(Callable[[object], bytes], encode_identity),
}
