"""Hostile input: every decoder must raise only CodecError, quickly and without big allocations."""

from __future__ import annotations

import dataclasses
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hnet.core.wire import (
    DECODERS,
    ENCODERS,
    Accepted,
    Address,
    Both,
    Capability,
    CodecError,
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
    Peer,
    Peers,
    ProcessId,
    Rejected,
    Request,
    Response,
    ResponseMessage,
    Routers,
    RoutingRequest,
    Sign,
    Signed,
    Verified,
    Verify,
    codec,
    decode_handshake_payload,
    decode_kernel_message,
    decode_lazy_load_blob,
    decode_net_action,
    decode_net_response,
    encode_handshake_payload,
    encode_kernel_message,
    encode_lazy_load_blob,
    encode_net_action,
    encode_net_response,
    encode_routing_request,
)
from hnet.interop import find_vector_file
from hnet.limits import MESSAGE_MAX_SIZE

VECTOR_FILE = find_vector_file()


def _load() -> list[tuple[str, str, bytes]]:
    rows = []
    for line in VECTOR_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, type_name, hex_text = line.split("\t")
            rows.append((name, type_name, bytes.fromhex(hex_text)))
    return rows


ROWS = _load()
VECTORS = {name: data for name, _, data in ROWS}
TYPES = {name: type_name for name, type_name, _ in ROWS}

DECODER_ITEMS = sorted(DECODERS.items())
ALICE = Address.parse("alice.os@chat:chat:template.os")
BOB = Address.parse("bob.os@chat:chat:template.os")


def rejects(decode: Callable[[bytes], object], data: bytes | bytearray | memoryview) -> CodecError:
    """Assert ``decode`` raises CodecError (and not the internal-bug kind); return it."""
    with pytest.raises(CodecError) as info:
        decode(data)  # type: ignore[arg-type]
    assert "internal decoder error" not in str(info.value), info.value
    return info.value


def total(type_name: str, data: bytes) -> object | None:
    """Decode; only CodecError may escape. A decoded value must survive a canonical round trip."""
    try:
        value = DECODERS[type_name](data)
    except CodecError as e:
        assert "internal decoder error" not in str(e), e
        return None
    canonical = ENCODERS[type_name](value)
    assert DECODERS[type_name](canonical) == value
    assert ENCODERS[type_name](DECODERS[type_name](canonical)) == canonical
    return value


def hello_generic() -> list[Any]:
    """km_request_hello as generic msgpack data, to be altered and re-packed."""
    return [
        7,
        "alice.os@chat:chat:template.os",
        "bob.os@chat:chat:template.os",
        None,
        {"Request": [False, 30, list(b"hello"), None, []]},
        None,
    ]


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# --- truncation, cross-type and random input -------------------------------------------------


@pytest.mark.parametrize(("name", "type_name", "data"), ROWS, ids=[r[0] for r in ROWS])
def test_truncations_rejected(name: str, type_name: str, data: bytes) -> None:
    decode = DECODERS[type_name]
    offsets = range(len(data)) if len(data) < 512 else range(0, len(data), 97)
    for cut in offsets:
        rejects(decode, data[:cut])
    # ...and one extra byte of any kind is trailing garbage.
    rejects(decode, data + b"\xc0")
    rejects(decode, data + b"\x00")


def test_vectors_against_every_other_decoder() -> None:
    for _, type_name, data in ROWS:
        if len(data) > 4096:
            continue
        for other, decode in DECODER_ITEMS:
            if other == type_name:
                continue
            try:
                decode(data)
            except CodecError as e:
                assert "internal decoder error" not in str(e)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(sorted(DECODERS)))
def test_random_bytes(data: bytes, type_name: str) -> None:
    total(type_name, data)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            out.insert(i, rng.choice([0xC0, 0xC2, 0xC3, 0xCC, 0xCD, 0xD9, 0xDC, 0xDD, 0xDE, 0x91]))
        elif op == 2 and out:
            del out[min(i, len(out) - 1)]
        elif op == 3 and out:
            j = min(i, len(out) - 1)
            out[j] ^= 1 << rng.randrange(8)
        elif op == 4:
            out[i:i] = rng.choice(
                [b"\xdd\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff", b"\xd4\x01\x00"]
            )
        else:
            out = out[: rng.randrange(len(out) + 1)]
    return bytes(out)


SMALL_ROWS = [r for r in ROWS if len(r[2]) < 4096]


@settings(max_examples=500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=max(0, len(SMALL_ROWS) - 1)), st.randoms())
def test_mutated_vectors(index: int, rng: random.Random) -> None:
    _, type_name, data = SMALL_ROWS[index]
    total(type_name, _mutate(rng, data))


def test_mutated_big_vector() -> None:
    rng = random.Random(1234)
    data = VECTORS["km_big_blob"]
    for _ in range(40):
        total("KernelMessage", _mutate(rng, data))


# --- nesting and huge length claims ---------------------------------------------------------


def _hello_prefix_to_body() -> bytes:
    """The bytes of km_request_hello up to (not including) its body."""
    generic = hello_generic()
    whole = pack(generic)
    body = pack(list(b"hello"))
    return whole[: whole.index(body)]


NESTING = [
    b"\x91" * 100_000 + b"\xc0",
    b"\xdc\x00\x01" * 50_000 + b"\xc0",
    b"\x81\xa1a" * 50_000 + b"\xc0",
    b"\x96" + b"\x91" * 100_000,
]


@pytest.mark.parametrize("data", NESTING, ids=["fixarray", "array16", "map", "km-field"])
@pytest.mark.parametrize(("type_name", "decode"), DECODER_ITEMS, ids=[t for t, _ in DECODER_ITEMS])
def test_deep_nesting_rejected_fast(
    type_name: str, decode: Callable[[bytes], object], data: bytes
) -> None:
    start = time.perf_counter()
    rejects(decode, data)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "inner",
    [
        b"\x91" * 100_000 + b"\x00",  # small byte-array path: the element is an array
        b"\xdc\x00\x20" + b"\x91" * 100_000 + b"\x00",  # large path, nested arrays
        b"\xdc\x00\x20" + b"\xdd\x00\x00\xff\xff" * 1000,  # large path, nested big claims
        b"\xdc\x00\x20" + b"\xde\x00\x10" * 1000,  # large path, nested maps
        b"\xdd\x00\x01\x00\x00" + b"\x90" * 65_536,  # many empty arrays as elements
        b"\xdc\x00\x20" + b"\xdb\x00\x00\xff\xff" * 32,  # strings that run past the end
    ],
    ids=["small-nested", "large-nested", "large-claims", "large-maps", "empties", "strings"],
)
def test_hostile_bodies_rejected_cheaply(inner: bytes) -> None:
    data = _hello_prefix_to_body() + inner
    tracemalloc.start()
    try:
        start = time.perf_counter()
        rejects(decode_kernel_message, data)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    # Linear in the input with a small factor; never the claimed sizes.
    assert peak < 20 * len(data) + 1_000_000, peak


HUGE_HEADERS = [
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 Gi elements
    b"\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xdc\xff\xff",
    b"\xde\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01",  # ext32
]


@pytest.mark.parametrize("header", HUGE_HEADERS, ids=[h[:1].hex() for h in HUGE_HEADERS])
@pytest.mark.parametrize(("type_name", "decode"), DECODER_ITEMS, ids=[t for t, _ in DECODER_ITEMS])
def test_huge_claims_rejected(
    type_name: str, decode: Callable[[bytes], object], header: bytes
) -> None:
    tracemalloc.start()
    try:
        rejects(decode, header)
        rejects(decode, header + b"\x00" * 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize("header", HUGE_HEADERS, ids=[h[:1].hex() for h in HUGE_HEADERS])
def test_huge_claims_in_fields(header: bytes) -> None:
    prefix = _hello_prefix_to_body()
    rejects(decode_kernel_message, prefix + header)
    # as the metadata, the capabilities, and the blob
    body = pack(list(b"hello"))
    rejects(decode_kernel_message, prefix + body + header)
    rejects(decode_kernel_message, prefix + body + b"\xc0" + header)
    rejects(decode_kernel_message, prefix + body + b"\xc0\x90" + header)
    # a string field: the handshake name
    rejects(decode_handshake_payload, b"\x94\x01" + header)


def test_oversized_input_rejected_before_work() -> None:
    big = bytes(MESSAGE_MAX_SIZE + 1)
    start = time.perf_counter()
    for _, decode in DECODER_ITEMS:
        rejects(decode, big)
        rejects(decode, memoryview(big))
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("value", [None, "bytes", 5, [1, 2], object()])
def test_non_bytes_input(value: object) -> None:
    for _, decode in DECODER_ITEMS:
        rejects(decode, value)  # type: ignore[arg-type]


# --- field-by-field wrong types -------------------------------------------------------------

ALTERNATIVES: list[object] = [
    None,
    True,
    False,
    0,
    256,
    70_000,
    -1,
    2**64 - 1,
    1.5,
    "",
    "x",
    b"bin",
    [],
    [1],
    {},
    {"k": 1},
    msgpack.ExtType(1, b"x"),
]


def _paths(obj: object, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _paths(item, (*path, i))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _paths(item, (*path, key))


def _replace(obj: Any, path: tuple[Any, ...], new: object) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        copy = list(obj)
        copy[head] = _replace(obj[head], rest, new)
        return copy
    copy_d = dict(obj)
    copy_d[head] = _replace(obj[head], rest, new)
    return copy_d


@pytest.mark.parametrize(("name", "type_name", "data"), SMALL_ROWS, ids=[r[0] for r in SMALL_ROWS])
def test_every_field_with_every_wrong_type(name: str, type_name: str, data: bytes) -> None:
    generic = msgpack.unpackb(data, raw=False)
    accepted = 0
    rejected = 0
    for path in _paths(generic):
        for alternative in ALTERNATIVES:
            mutated = pack(_replace(generic, path, alternative))
            if mutated == data:
                continue
            if total(type_name, mutated) is None:
                rejected += 1
            else:
                accepted += 1
    # Only Option fields taking nil, byte vectors taking bin, and byte elements taking
    # in-range integers can legitimately be accepted; nearly everything else is refused.
    assert rejected > 5 * accepted


# --- specific strictness rules --------------------------------------------------------------


def _km(**changes: Any) -> bytes:
    generic = hello_generic()
    fields = {"id": 0, "source": 1, "target": 2, "rsvp": 3, "message": 4, "blob": 5}
    for key, value in changes.items():
        generic[fields[key]] = value
    return pack(generic)


def _request(*fields: object) -> bytes:
    return _km(message={"Request": list(fields)})


def test_hello_generic_matches_vector() -> None:
    km = decode_kernel_message(pack(hello_generic()))
    assert km.id == 7
    if VECTOR_FILE is not None:
        assert pack(hello_generic()) == VECTORS["km_request_hello"]


@pytest.mark.parametrize("bad", [-1, 1.0, True, "7", None, [7], b"\x07"])
def test_bad_ids(bad: object) -> None:
    rejects(decode_kernel_message, _km(id=bad))


def test_non_minimal_integers_accepted() -> None:
    base = pack(hello_generic())
    assert base[1] == 0x07
    for wide in (
        b"\xcc\x07",
        b"\xcd\x00\x07",
        b"\xce\x00\x00\x00\x07",
        b"\xcf" + bytes(7) + b"\x07",
        b"\xd0\x07",
        b"\xd3" + bytes(7) + b"\x07",
    ):
        km = decode_kernel_message(base[:1] + wide + base[2:])
        assert km.id == 7
        assert encode_kernel_message(km) == base
    rejects(decode_kernel_message, base[:1] + b"\xd0\xff" + base[2:])  # int8 -1
    rejects(decode_kernel_message, base[:1] + b"\xff" + base[2:])  # negative fixint
    rejects(decode_kernel_message, base[:1] + b"\xca\x40\xe0\x00\x00" + base[2:])  # float32 7.0


@pytest.mark.parametrize(
    "bad",
    [
        "alice.os",
        "alice.os@chat:chat",
        "@chat:chat:template.os",
        "a@b@c:d:e",
        "alice.os@chat:chat:template.os:x",
        "",
        b"alice.os@chat:chat:template.os",
        5,
        None,
    ],
)
def test_bad_source_addresses(bad: object) -> None:
    rejects(decode_kernel_message, _km(source=bad))
    if bad is not None:
        rejects(decode_kernel_message, _km(rsvp=bad))


def test_enum_shapes() -> None:
    body = [False, 30, list(b"hello"), None, []]
    rejects(decode_kernel_message, _km(message={"Request": body, "Response": body}))
    rejects(decode_kernel_message, _km(message={"Banana": body}))
    rejects(decode_kernel_message, _km(message="Request"))
    rejects(decode_kernel_message, _km(message=["Request", body]))
    rejects(decode_kernel_message, _km(message={}))
    rejects(decode_kernel_message, _km(message={"request": body}))
    rejects(decode_net_action, pack({"GetPeers": None}))
    rejects(decode_net_action, pack("GetPeer"))
    rejects(decode_net_action, pack("getpeers"))
    rejects(decode_net_action, pack({b"GetPeer": "bob.os"}))
    rejects(decode_net_response, pack({"Signed": []}))
    rejects(decode_net_response, pack("Peer"))
    rejects(decode_net_response, pack({"Verified": 1}))
    rejects(decode_net_response, pack({"Peer": ["a", "k", {"Direct": ["ip"]}]}))
    rejects(decode_net_response, pack({"Peer": ["a", "k", "Routers"]}))
    # Duplicate key in a one-entry-looking map: two entries on the wire.
    rejects(decode_net_action, b"\x82\xa7GetPeer\xa1a\xa7GetPeer\xa1b")


def test_struct_lengths() -> None:
    rejects(decode_kernel_message, pack(hello_generic()[:5]))
    rejects(decode_kernel_message, pack([*hello_generic(), None]))
    rejects(decode_kernel_message, _request(False, 30, list(b"hello"), None))
    rejects(decode_kernel_message, _request(False, 30, list(b"hello"), None, [], None))
    rejects(decode_kernel_message, _km(blob=["text/plain"]))
    rejects(decode_kernel_message, _km(message={"Response": [[False, [], None, []]]}))
    rejects(decode_kernel_message, pack({"id": 7}))


@pytest.mark.parametrize("bad", [0, 1, None, "false", []])
def test_bad_inherit(bad: object) -> None:
    rejects(decode_kernel_message, _request(bad, 30, list(b"hello"), None, []))


@pytest.mark.parametrize(
    "body",
    [
        [256],
        [-1],
        [True],
        [False, 1],
        [1.0],
        [None],
        [[]],
        [{}],
        [""],
        [b""],
        "hello",
        None,
        {"a": 1},
        [1] * 20 + [256],
        [1] * 20 + [True],
        [194] * 40 + [False],
        [195] * 40 + [True, 194],
        [5] * 30 + [1.5],
        [5] * 30 + [None],
        [5] * 30 + [""],
        [5] * 30 + [b""],
        [5] * 30 + [[]],
        [5] * 30 + [{}],
        [5] * 30 + [msgpack.ExtType(1, b"")],
        [5] * 30 + [msgpack.Timestamp(0, 0)],
        [5] * 30 + [-1],
        [5] * 30 + [2**64 - 1],
    ],
)
def test_bad_bodies(body: object) -> None:
    rejects(decode_kernel_message, _request(False, 30, body, None, []))


def test_byte_vector_forms_accepted() -> None:
    def body_of(data: bytes) -> bytes:
        km = decode_kernel_message(data)
        assert isinstance(km.message, Request)
        return km.message.body

    # msgpack bin (lenient), every size class
    for size in (0, 5, 255, 256, 70_000):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert body_of(_request(False, 30, payload, None, [])) == payload
    # values 194/195 (whose encodings contain the bool marker bytes) in both paths
    for values in ([194, 195, 0, 1], [194, 195, 0, 1] * 20, list(range(256)) * 3):
        assert body_of(_request(False, 30, values, None, [])) == bytes(values)
    # non-minimal element encodings, small and large arrays
    base = _request(False, 30, [], None, [])
    at = base.index(b"\x90\xc0\x90")
    for count in (3, 40):
        elements = b"\xcd\x00\xc2\xd0\x05\xce\x00\x00\x00\xc3\xcc\x07" * count
        header = (
            bytes([0x90 + 4 * count])
            if 4 * count < 16
            else b"\xdc" + (4 * count).to_bytes(2, "big")
        )
        data = base[:at] + header + elements + base[at + 1 :]
        assert body_of(data) == bytes([194, 5, 195, 7]) * count


@pytest.mark.parametrize("bad", [-1, "30", 1.5, True, [30]])
def test_bad_expects_response(bad: object) -> None:
    rejects(decode_kernel_message, _request(False, bad, list(b"hello"), None, []))


def test_expects_response_range() -> None:
    for value in (None, 0, 2**64 - 1):
        km = decode_kernel_message(_request(False, value, list(b"hello"), None, []))
        assert isinstance(km.message, Request)
        assert km.message.expects_response == value


@pytest.mark.parametrize("bad", [b"meta", 5, True, [], {}])
def test_bad_metadata(bad: object) -> None:
    rejects(decode_kernel_message, _request(False, 30, list(b"hello"), bad, []))


def test_bad_capabilities() -> None:
    cap = ["bob.os@chat:chat:template.os", '"messaging"']
    ok = _request(False, None, [], None, [[cap, [1, 2]]])
    km = decode_kernel_message(ok)
    assert isinstance(km.message, Request)
    assert km.message.capabilities == ((Capability(BOB, '"messaging"'), b"\x01\x02"),)
    for bad in (
        [[cap]],
        [[cap, [1], [2]]],
        [[[*cap, "x"], [1]]],
        [[["bob.os", '"m"'], [1]]],
        [[cap, [True]]],
        [[cap, "sig"]],
        [cap],
        {"a": 1},
        None,
    ):
        rejects(decode_kernel_message, _request(False, None, [], None, bad))


def test_bad_strings() -> None:
    prefix = b"\x94\x01"
    tail = b"\x90\xc2"
    assert decode_handshake_payload(prefix + b"\xa2ok" + tail).name == "ok"
    for bad in (
        b"\xa2\xff\xfe",  # not UTF-8
        b"\xa3\xed\xa0\x80",  # an encoded surrogate
        b"\xa2\xc0\xaf",  # overlong
        b"\xa4\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xc4\x02ok",  # bin for a string
        b"\xd9\x05ok",  # length past the end
    ):
        rejects(decode_handshake_payload, prefix + bad + tail)


def test_protocol_version_range() -> None:
    for version, ok in ((0, True), (1, True), (200, True), (255, True), (256, False), (-1, False)):
        data = pack([version, "alice.os", [], False])
        if ok:
            assert decode_handshake_payload(data).protocol_version == version
        else:
            rejects(decode_handshake_payload, data)
        data = pack([version, "a", [], "b"])
        if ok:
            assert DECODERS["RoutingRequest"](data) == RoutingRequest(version, "a", b"", "b")
        else:
            rejects(DECODERS["RoutingRequest"], data)


def test_ports_maps() -> None:
    def update(ports_bytes: bytes) -> bytes:
        return b"\x81\xa9HnsUpdate\x95\xa1n\xa1k\x90" + ports_bytes + b"\x90"

    good = decode_net_action(update(b"\x82\xa2ws\x02\xa3tcp\x01"))  # unsorted: accepted
    assert isinstance(good, HnsUpdateAction)
    assert good.update.ports == {"tcp": 1, "ws": 2}
    assert encode_net_action(good) == update(b"\x82\xa3tcp\x01\xa2ws\x02")  # re-sorted
    rejects(decode_net_action, update(b"\x82\xa3tcp\x01\xa3tcp\x02"))  # duplicate key
    rejects(decode_net_action, update(b"\x81\xa3tcp\xce\x00\x01\x00\x00"))  # 65536
    rejects(decode_net_action, update(b"\x81\xa3tcp\xff"))  # -1
    rejects(decode_net_action, update(b"\x81\x01\x01"))  # int key
    rejects(decode_net_action, update(b"\x81\xc4\x03tcp\x01"))  # bin key
    rejects(decode_net_action, update(b"\x81\xa3tcp\xc0"))  # nil port
    rejects(decode_net_action, update(b"\x91\xa3tcp"))  # array, not map


def test_ext_and_float_anywhere() -> None:
    rejects(decode_kernel_message, _km(id=msgpack.ExtType(1, b"\x07")))
    rejects(decode_kernel_message, _km(rsvp=msgpack.Timestamp(0, 0)))
    rejects(decode_kernel_message, _km(blob=1.5))
    rejects(decode_net_response, pack({"Verified": msgpack.ExtType(0, b"")}))


# --- encoders refuse values the reference could not read ------------------------------------


def _hello() -> KernelMessage:
    return KernelMessage(7, ALICE, BOB, None, Request(False, 30, b"hello", None, ()), None)


@pytest.mark.parametrize(
    "change",
    [
        {"id": -1},
        {"id": 2**64},
        {"id": True},
        {"id": 7.0},
        {"source": "alice.os@chat:chat:template.os"},
        {"rsvp": "x"},
        {"message": None},
        {"message": Response(False, b"", None, ())},
        {"lazy_load_blob": b"data"},
        {"message": Request(1, 30, b"hello", None, ())},  # type: ignore[arg-type]
        {"message": Request(False, -5, b"hello", None, ())},
        {"message": Request(False, 30, "hello", None, ())},  # type: ignore[arg-type]
        {"message": Request(False, 30, b"hello", b"meta", ())},  # type: ignore[arg-type]
        {"message": Request(False, 30, b"hello", "\ud800", ())},
        {"message": Request(False, 30, b"hello", None, ((ALICE, b""),))},  # type: ignore[arg-type]
        {"message": Request(False, 30, b"hello", None, ((Capability(ALICE, "p"),),))},  # type: ignore[arg-type]
        {"message": ResponseMessage(Response(False, b"", None, ()), "ctx")},  # type: ignore[arg-type]
        {"lazy_load_blob": LazyLoadBlob(None, [1, 2])},  # type: ignore[arg-type]
    ],
)
@pytest.mark.parametrize(
    "encode",
    [codec._encode_kernel_message_simple, codec._encode_kernel_message_spliced],
    ids=["simple", "spliced"],
)
def test_encoder_rejects(change: dict[str, Any], encode: Callable[[KernelMessage], bytes]) -> None:
    km = dataclasses.replace(_hello(), **change)
    with pytest.raises(CodecError):
        encode(km)
    # The same with a body big enough for the public encoder to take the piecewise path.
    message = km.message
    if isinstance(message, Request) and isinstance(message.body, bytes):
        big = dataclasses.replace(km, message=dataclasses.replace(message, body=b"x" * 5000))
        with pytest.raises(CodecError):
            encode_kernel_message(big)


def test_encoders_reject_wrong_objects() -> None:
    for encode in ENCODERS.values():
        with pytest.raises(CodecError):
            encode(object())
    with pytest.raises(CodecError):
        encode_handshake_payload(HandshakePayload(256, "a", b"", False))
    with pytest.raises(CodecError):
        encode_routing_request(RoutingRequest(1, "a", b"", 5))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_net_action(HnsUpdateAction(HnsUpdate("a", "k", (), {"tcp": 70_000}, ())))
    with pytest.raises(CodecError):
        encode_net_action(HnsUpdateAction(HnsUpdate("a", "k", "1.1.1.1", {}, ())))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_net_response(Verified(1))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_lazy_load_blob(LazyLoadBlob(5, b""))  # type: ignore[arg-type]


def test_encoder_accepts_bytes_like() -> None:
    km = KernelMessage(
        7,
        ALICE,
        BOB,
        None,
        Request(False, 30, bytearray(b"hello"), None, ()),
        None,  # type: ignore[arg-type]
    )
    assert decode_kernel_message(encode_kernel_message(km)) == _hello()


# --- round trips of generated values --------------------------------------------------------

_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_node_name = st.lists(_label, min_size=1, max_size=3).map(".".join)
_part = st.text(min_size=1, max_size=12).filter(lambda s: ":" not in s and "@" not in s)
_address = st.builds(
    Address,
    st.one_of(_node_name, st.text(min_size=1, max_size=12).filter(lambda s: "@" not in s)),
    st.builds(ProcessId, _part, _part, _part),
)
_ascii = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=3000).map(str.encode)
_bytes = st.one_of(
    st.binary(max_size=40), st.binary(min_size=100, max_size=3000), _ascii, _ascii.map(bytearray)
)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_caps = st.lists(
    st.tuples(st.builds(Capability, _address, st.text(max_size=20)), _bytes), max_size=3
)
_request_st = st.builds(
    Request,
    st.booleans(),
    st.none() | _u64,
    _bytes,
    st.none() | st.text(max_size=30),
    _caps.map(tuple),
)
_response_st = st.builds(
    ResponseMessage,
    st.builds(Response, st.booleans(), _bytes, st.none() | st.text(max_size=30), _caps.map(tuple)),
    st.none() | _bytes,
)
_blob = st.builds(LazyLoadBlob, st.none() | st.text(max_size=20), _bytes)
_km_st = st.builds(
    KernelMessage,
    _u64,
    _address,
    _address,
    st.none() | _address,
    st.one_of(_request_st, _response_st),
    st.none() | _blob,
)
_ports = st.dictionaries(st.text(max_size=8), st.integers(min_value=0, max_value=65535), max_size=5)
_names = st.lists(st.text(max_size=12), max_size=4).map(tuple)
_update = st.builds(HnsUpdate, st.text(max_size=12), st.text(max_size=66), _names, _ports, _names)
_routing = st.one_of(
    st.builds(Routers, _names),
    st.builds(Direct, st.text(max_size=15), _ports),
    st.builds(Both, st.text(max_size=15), _ports, _names),
)
_identity = st.builds(Identity, st.text(max_size=12), st.text(max_size=66), _routing)
_action = st.one_of(
    st.builds(ConnectionRequest, st.text(max_size=12)),
    st.builds(HnsUpdateAction, _update),
    st.builds(HnsBatchUpdate, st.lists(_update, max_size=3).map(tuple)),
    st.just(GetPeers()),
    st.builds(GetPeer, st.text(max_size=12)),
    st.just(GetDiagnostics()),
    st.just(Sign()),
    st.builds(Verify, _address, _bytes),
)
_response = st.one_of(
    st.builds(Accepted, st.text(max_size=12)),
    st.builds(Rejected, st.text(max_size=12)),
    st.builds(Peers, st.lists(_identity, max_size=3).map(tuple)),
    st.builds(Peer, st.none() | _identity),
    st.builds(Diagnostics, st.text(max_size=50)),
    st.just(Signed()),
    st.builds(Verified, st.booleans()),
)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_km_st)
def test_kernel_message_round_trip(km: KernelMessage) -> None:
    data = encode_kernel_message(km)
    # The one-call and the piecewise encoders agree byte for byte.
    assert codec._encode_kernel_message_simple(km) == data
    assert codec._encode_kernel_message_spliced(km) == data
    assert decode_kernel_message(data) == km
    # Independent check of the shape: byte vectors are int arrays, never bin.
    generic = msgpack.unpackb(data, raw=False)
    assert isinstance(generic[4], dict)
    assert b"\xc4" not in data[:1]
    assert not any(isinstance(x, bytes) for x in _walk(generic))


def _walk(obj: object) -> Iterator[object]:
    yield obj
    if isinstance(obj, list):
        for item in obj:
            yield from _walk(item)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield key
            yield from _walk(item)


@pytest.mark.parametrize("size", [0, 15, 16, 255, 256, 65535, 65536, 70000])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_spliced_encoder_size_classes(size: int, ascii_only: bool) -> None:
    payload = bytes((i * 7) % (128 if ascii_only else 256) for i in range(size))
    for message in (
        Request(True, None, payload, "m", ()),
        ResponseMessage(Response(False, payload, None, ()), payload),
        ResponseMessage(Response(False, payload, None, ()), None),
    ):
        for blob in (None, LazyLoadBlob(None, payload), LazyLoadBlob("text/plain", payload)):
            km = KernelMessage(size, ALICE, BOB, ALICE, message, blob)
            data = codec._encode_kernel_message_spliced(km)
            assert data == codec._encode_kernel_message_simple(km)
            assert encode_kernel_message(km) == data
            assert decode_kernel_message(data) == km


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_action)
def test_net_action_round_trip(action: Any) -> None:
    assert decode_net_action(encode_net_action(action)) == action


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_response)
def test_net_response_round_trip(response: Any) -> None:
    assert decode_net_response(encode_net_response(response)) == response


@settings(max_examples=100, deadline=2000)
@given(st.none() | st.text(max_size=20), _bytes)
def test_blob_round_trip(mime: str | None, data: bytes) -> None:
    blob = LazyLoadBlob(mime, data)
    assert decode_lazy_load_blob(encode_lazy_load_blob(blob)) == blob


def test_capability_count_is_capped() -> None:
    from hnet.core.wire import (
        Address,
        Capability,
        KernelMessage,
        Request,
        decode_kernel_message,
        encode_kernel_message,
    )
    from hnet.limits import MAX_CAPABILITIES

    def km(n: int) -> bytes:
        cap = (Capability(Address.parse("a.os@p:q:r.os"), '"x"'), b"\x01")
        return encode_kernel_message(
            KernelMessage(
                1,
                Address.parse("a.os@p:q:r.os"),
                Address.parse("b.os@p:q:r.os"),
                None,
                Request(False, None, b"", None, (cap,) * n),
                None,
            )
        )

    assert len(decode_kernel_message(km(MAX_CAPABILITIES)).message.capabilities) == MAX_CAPABILITIES
    with pytest.raises(CodecError, match="capabilities"):
        decode_kernel_message(km(MAX_CAPABILITIES + 1))
