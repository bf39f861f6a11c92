"""The KernelMessage fast paths against the general codec: equal values, bytes and errors.

``decode_kernel_message`` and ``encode_kernel_message`` try a specialised path first and fall
back to the general one; the fast path may only ever produce what the general path produces.
These tests compare the public functions with ``codec._decode_kernel_message_general`` and
``codec._encode_kernel_message_general`` (the general paths alone) on vectors, generated
messages, mutated bytes and malformed objects.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest

from hnet.core.wire import (
    Address,
    Capability,
    CodecError,
    KernelMessage,
    LazyLoadBlob,
    ProcessId,
    Request,
    Response,
    ResponseMessage,
    codec,
    decode_kernel_message,
    encode_kernel_message,
)
from hnet.interop import find_vector_file

VECTOR_FILE = find_vector_file()

KM_VECTORS = [
    (name, bytes.fromhex(hex_text))
    for name, type_name, hex_text in (
        line.split("\t")
        for line in VECTOR_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    if type_name == "KernelMessage"
]

A = Address.parse("a.os@net:distro:sys")
B = Address.parse("b.os@net:distro:sys")
HELLO = KernelMessage(123456789, A, B, None, Request(False, 5, b"x" * 64, None, ()), None)
REPLY = KernelMessage(
    123456789, A, B, None, ResponseMessage(Response(False, b"x" * 64, None, ()), None), None
)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (``b"" == bytearray()`` and ``1 == True``,
    but their reprs differ)."""
    return a == b and repr(a) == repr(b)


def outcome(f: Callable[[Any], object], arg: object) -> tuple[str, object]:
    """("ok", value) or ("error", message); anything but CodecError propagates."""
    try:
        return "ok", f(arg)
    except CodecError as e:
        assert "internal decoder error" not in str(e), e
        return "error", str(e)


def assert_decoders_agree(data: bytes) -> KernelMessage | None:
    public = outcome(decode_kernel_message, data)
    general = outcome(codec._decode_kernel_message_general, data)
    assert public[0] == general[0], (data.hex(), public, general)
    if public[0] == "ok":
        assert same(public[1], general[1]), data.hex()
    else:
        assert public[1] == general[1], data.hex()
    # The fast path alone: never raises, and only ever agrees with the general decoder.
    fast = codec._fast_kernel_message(data)
    if fast is not None:
        assert general[0] == "ok" and same(fast, general[1]), data.hex()
    return general[1] if general[0] == "ok" else None  # type: ignore[return-value]


def assert_encoders_agree(km: object) -> bytes | None:
    public = outcome(encode_kernel_message, km)
    general = outcome(codec._encode_kernel_message_general, km)
    assert public == general, (km, public, general)
    if type(km) is KernelMessage:
        fast = codec._fast_encode_kernel_message(km)
        if fast is not None:
            assert general == ("ok", fast), km
    return public[1] if public[0] == "ok" else None  # type: ignore[return-value]


# --- generated messages ---------------------------------------------------------------------

_IDS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
_LABEL = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _text(rng: random.Random, n: int, alphabet: str = _LABEL) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def random_address(rng: random.Random) -> Address:
    kind = rng.random()
    if kind < 0.7:
        node = f"{_text(rng, rng.randint(1, 12))}.os"
    elif kind < 0.8:
        node = "nöde-ü.os" + _text(rng, rng.randint(0, 3))  # non-ASCII UTF-8
    elif kind < 0.9:
        node = "a:b" + _text(rng, 2)  # ':' in the node is allowed
    else:
        node = _text(rng, rng.randint(200, 300))  # str8 and str16 addresses
    parts = [_text(rng, rng.randint(1, 10)) for _ in range(3)]
    return Address(node, ProcessId(*parts))


def random_bytes(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 5, 15, 16, 40, 41, 64, 200, 255, 256, 1000, 65535, 65536, 70000])
    if n > 1000 and rng.random() < 0.7:
        n = rng.randint(0, 300)  # keep most cases small
    kind = rng.random()
    if kind < 0.5:
        return bytes(rng.randrange(128) for _ in range(n))  # ASCII
    if kind < 0.8:
        return rng.randbytes(n)
    data = bytearray(rng.randrange(128) for _ in range(n))  # ASCII with one high byte
    if n:
        data[rng.randrange(n)] = rng.randrange(128, 256)
    return bytes(data)


def random_str(rng: random.Random) -> str | None:
    kind = rng.random()
    if kind < 0.4:
        return None
    if kind < 0.45:
        return ""
    if kind < 0.7:
        return '{"k":' + str(rng.randrange(1000)) + "}"
    if kind < 0.85:
        return "méta-\u20ac-\U0001f600" + _text(rng, rng.randint(0, 5))
    return _text(rng, rng.choice([31, 32, 255, 256, 300]))  # fixstr/str8/str16 boundaries


def random_caps(rng: random.Random) -> tuple[tuple[Capability, bytes], ...]:
    if rng.random() < 0.7:
        return ()
    return tuple(
        (Capability(random_address(rng), '{"messaging":1}'), rng.randbytes(rng.choice([0, 64])))
        for _ in range(rng.randint(1, 3))
    )


def random_km(rng: random.Random) -> KernelMessage:
    kid = rng.choice(_IDS) if rng.random() < 0.5 else rng.randrange(2 ** rng.choice([7, 16, 64]))
    message: Request | ResponseMessage
    if rng.random() < 0.5:
        expects = None if rng.random() < 0.3 else rng.choice([*_IDS, rng.randrange(100)])
        message = Request(
            rng.random() < 0.5, expects, random_bytes(rng), random_str(rng), random_caps(rng)
        )
    else:
        response = Response(
            rng.random() < 0.5, random_bytes(rng), random_str(rng), random_caps(rng)
        )
        message = ResponseMessage(response, None if rng.random() < 0.5 else random_bytes(rng))
    blob = None if rng.random() < 0.6 else LazyLoadBlob(random_str(rng), random_bytes(rng))
    rsvp = None if rng.random() < 0.6 else random_address(rng)
    return KernelMessage(kid, random_address(rng), random_address(rng), rsvp, message, blob)


def generated(count: int, seed: int) -> Iterator[KernelMessage]:
    rng = random.Random(seed)
    for _ in range(count):
        yield random_km(rng)


# --- the fast paths take the common shapes --------------------------------------------------


def _shapes() -> list[KernelMessage]:
    blob = LazyLoadBlob("application/json", b'{"a": 1}')
    return [
        HELLO,
        REPLY,
        dataclasses.replace(HELLO, rsvp=A, lazy_load_blob=blob),
        dataclasses.replace(HELLO, message=Request(True, None, b"", '{"m":1}', ())),
        dataclasses.replace(HELLO, id=2**64 - 1, message=Request(True, 2**64 - 1, b"", None, ())),
        dataclasses.replace(REPLY, message=ResponseMessage(Response(True, b"ok", "m", ()), b"ctx")),
        dataclasses.replace(HELLO, lazy_load_blob=LazyLoadBlob(None, b"\x00\xff" * 10)),
        dataclasses.replace(REPLY, message=ResponseMessage(Response(False, b"", "", ()), b"")),
        dataclasses.replace(HELLO, lazy_load_blob=LazyLoadBlob("", b"")),
        dataclasses.replace(
            HELLO, message=Request(False, 5, b"x", "m", ((Capability(B, '{"a":1}'), b"\x01" * 64),))
        ),
        dataclasses.replace(
            REPLY,
            message=ResponseMessage(
                Response(False, b"", None, ((Capability(A, ""), b""), (Capability(B, "p"), b"s"))),
                None,
            ),
        ),
    ]


@pytest.mark.parametrize("km", _shapes())
def test_fast_paths_taken(km: KernelMessage) -> None:
    data = codec._fast_encode_kernel_message(km)
    assert data is not None
    assert data == codec._encode_kernel_message_general(km)
    assert data == codec._encode_kernel_message_simple(km)
    assert data == codec._encode_kernel_message_spliced(km)
    decoded = codec._fast_kernel_message(data)
    assert decoded is not None
    assert same(decoded, km)
    assert same(decoded, codec._decode_kernel_message_general(data))
    assert hash(decoded) == hash(km)


def test_fast_decoder_reads_binary_bodies_and_capabilities() -> None:
    # Not read inline, but handed to the general reader rather than decoded twice.
    cap = Capability(A, '{"messaging":1}')
    for km in (
        dataclasses.replace(HELLO, message=Request(False, 5, bytes(range(256)), None, ())),
        dataclasses.replace(HELLO, message=Request(False, 5, b"x", "m" * 300, ((cap, b"s"),))),
        dataclasses.replace(
            REPLY, message=ResponseMessage(Response(False, b"", None, ((cap, b""),)), b"\xff")
        ),
    ):
        data = encode_kernel_message(km)
        decoded = codec._fast_kernel_message(data)
        assert decoded is not None and same(decoded, km)


def test_vector_hello_timing_shape() -> None:
    """The benchmark messages are 129 and 131 bytes and round-trip through the fast paths."""
    assert len(encode_kernel_message(HELLO)) == 129
    assert len(encode_kernel_message(REPLY)) == 131


# --- differential: vectors and generated messages -------------------------------------------


@pytest.mark.parametrize(("name", "data"), KM_VECTORS, ids=[n for n, _ in KM_VECTORS])
def test_vectors(name: str, data: bytes) -> None:
    km = assert_decoders_agree(data)
    assert km is not None
    assert assert_encoders_agree(km) == data
    assert codec._fast_encode_kernel_message(km) in (None, data)


def test_generated_messages() -> None:
    for km in generated(800, seed=1):
        data = assert_encoders_agree(km)
        assert data is not None
        assert data == codec._encode_kernel_message_simple(km)
        assert same(assert_decoders_agree(data), km)
        # Decoding bytearray / memoryview input (general path only) gives the same value.
        assert same(decode_kernel_message(bytearray(data)), km)


def test_generated_size_classes() -> None:
    for size in (0, 15, 16, 255, 256, 65535, 65536, 70000):
        for payload in (b"a" * size, bytes(i % 256 for i in range(size))):
            for message in (
                Request(False, 1, payload, None, ()),
                ResponseMessage(Response(True, payload, "m", ()), payload),
            ):
                km = KernelMessage(size, A, B, A, message, LazyLoadBlob("t", payload))
                data = assert_encoders_agree(km)
                assert data is not None
                assert same(assert_decoders_agree(data), km)


class _Raw:
    """Bytes spliced verbatim into a hand-built msgpack value by ``_pack_raw``."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _pack_raw(obj: object) -> bytes:
    """msgpack of ``obj`` (lists as arrays, one-entry dicts as maps) with ``_Raw`` spliced in."""
    if isinstance(obj, _Raw):
        return obj.data
    if isinstance(obj, list):
        n = len(obj)
        if n < 16:
            header = bytes((0x90 + n,))
        elif n <= 0xFFFF:
            header = b"\xdc" + n.to_bytes(2, "big")
        else:
            header = b"\xdd" + n.to_bytes(4, "big")
        return header + b"".join(_pack_raw(x) for x in obj)
    if isinstance(obj, dict):
        ((key, value),) = obj.items()
        return b"\x81" + _pack_raw(key) + _pack_raw(value)
    return msgpack.packb(obj, use_bin_type=True)


def _generic(
    km: KernelMessage,
    vec: Callable[[bytes], object] = list,
    uint: Callable[[int], object] = int,
    text: Callable[[str], object] = str,
) -> list[object]:
    """``km`` as a generic msgpack value, each byte vector, integer and string through the
    given function (to produce other encodings the decoder accepts). No capabilities."""
    m = km.message
    msg: dict[str, object]
    if isinstance(m, Request):
        expects = m.expects_response
        msg = {
            "Request": [
                m.inherit,
                None if expects is None else uint(expects),
                vec(m.body),
                None if m.metadata is None else text(m.metadata),
                [],
            ]
        }
    else:
        r = m.response
        msg = {
            "Response": [
                [r.inherit, vec(r.body), None if r.metadata is None else text(r.metadata), []],
                None if m.context is None else vec(m.context),
            ]
        }
    blob = km.lazy_load_blob
    return [
        uint(km.id),
        text(str(km.source)),
        text(str(km.target)),
        None if km.rsvp is None else text(str(km.rsvp)),
        msg,
        None if blob is None else [None if blob.mime is None else text(blob.mime), vec(blob.bytes)],
    ]


def _u64(v: int) -> _Raw:
    return _Raw(b"\xcf" + v.to_bytes(8, "big"))


def _i64(v: int) -> _Raw:
    return _Raw(b"\xd3" + v.to_bytes(8, "big", signed=True))


def _str8(s: str) -> object:
    data = s.encode()
    return _Raw(b"\xd9" + bytes((len(data),)) + data) if len(data) < 256 else s


def _array16(v: bytes) -> object:
    if len(v) > 0xFFFF:
        return list(v)
    return _Raw(b"\xdc" + len(v).to_bytes(2, "big") + b"".join(msgpack.packb(x) for x in v))


def _wide_elements(v: bytes) -> _Raw:
    return _Raw(_pack_raw([_Raw(b"\xcd\x00" + bytes((x,))) for x in v]))


def _lenient_forms(km: KernelMessage) -> Iterator[bytes]:
    """Non-canonical encodings the general decoder accepts (module docstring, "Deliberate
    leniency"): bin byte vectors, wider and signed integer markers, str8 for short strings,
    array16 for short arrays, wide byte-array elements."""
    yield _pack_raw(_generic(km))  # canonical
    yield _pack_raw(_generic(km, vec=bytes))
    yield _pack_raw(_generic(km, uint=_u64))
    if km.id < 2**63 and (
        not isinstance(km.message, Request)
        or km.message.expects_response is None
        or km.message.expects_response < 2**63
    ):
        yield _pack_raw(_generic(km, uint=_i64))
    yield _pack_raw(_generic(km, text=_str8))
    yield _pack_raw(_generic(km, vec=_array16))
    yield _pack_raw(_generic(km, vec=_wide_elements))


def test_lenient_forms() -> None:
    for km in [*_shapes(), *generated(80, seed=2)]:
        m = km.message
        caps = m.capabilities if isinstance(m, Request) else m.response.capabilities
        if caps:
            continue
        for data in _lenient_forms(km):
            assert same(assert_decoders_agree(data), km)


# --- differential: mutated bytes ------------------------------------------------------------

#: Markers worth swapping in: nil, bools, every int / str / bin / array / map width, ext,
#: float, fixint edges, the reserved byte.
_MARKERS = [
    0x00, 0x05, 0x7F, 0x80, 0x81, 0x82, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x9F, 0xA0, 0xA7, 0xA8, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xCA, 0xCB,
    0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE,
    0xDF, 0xE0, 0xFF,
]  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.randrange(8)
        i = rng.randrange(len(buf) + 1)
        if kind == 0 and i < len(buf):  # flip bits
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and i < len(buf):  # any byte value
            buf[i] = rng.randrange(256)
        elif kind == 2 and i < len(buf):  # a marker
            buf[i] = rng.choice(_MARKERS)
        elif kind == 3:  # truncate
            del buf[i:]
        elif kind == 4:  # insert
            buf[i:i] = rng.choice(
                [bytes((rng.choice(_MARKERS),)), rng.randbytes(rng.randint(1, 4))]
            )
        elif kind == 5 and i < len(buf):  # delete a few bytes
            del buf[i : i + rng.randint(1, 4)]
        elif kind == 6 and i < len(buf):  # high bit in a byte (breaks ASCII runs, UTF-8)
            buf[i] |= 0x80
        elif kind == 7:  # duplicate a slice
            j = rng.randrange(len(buf) + 1)
            buf[i:i] = buf[min(i, j) : max(i, j)][:16]
        if not buf:
            break
    return bytes(buf)


def test_mutated_messages() -> None:
    rng = random.Random(20240601)
    bases = [data for _, data in KM_VECTORS]
    bases += [encode_kernel_message(km) for km in _shapes()]
    bases += [
        encode_kernel_message(km)
        for km in generated(300, seed=3)
        if len(encode_kernel_message(km)) < 2000
    ]
    deadline = time.monotonic() + 20
    cases = accepted = 0
    while cases < 6000 and time.monotonic() < deadline:
        data = mutate(rng, rng.choice(bases))
        if assert_decoders_agree(data) is not None:
            accepted += 1
        cases += 1
    assert cases >= 1000
    assert accepted  # some mutations keep a valid message (e.g. a changed ASCII body byte)


def test_every_byte_value_at_every_offset() -> None:
    # The benchmark shapes, and one with every optional field.
    full = KernelMessage(
        7, A, B, A, ResponseMessage(Response(True, b"ok", "m", ()), b"ctx"), LazyLoadBlob("t", b"d")
    )
    for km in (HELLO, REPLY, full):
        data = encode_kernel_message(km)
        for i in range(len(data)):
            for value in range(256):
                assert_decoders_agree(data[:i] + bytes((value,)) + data[i + 1 :])


#: Integer encodings for the u64 fields: every marker with extreme payloads, negative
#: fixints, floats, nil, bools.
_INT_FORMS = [
    bytes((marker,)) + bytes((fill,)) * size
    for marker, size in (
        *((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)),
        *((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8), (0xCA, 4), (0xCB, 8)),
    )
    for fill in (0x00, 0x01, 0x7F, 0x80, 0xFF)
] + [b"\x00", b"\x7f", b"\xe0", b"\xff", b"\xc0", b"\xc2", b"\xc3", b"\xcf\x00", b""]


def test_integer_field_forms() -> None:
    for km in (HELLO, dataclasses.replace(HELLO, message=Request(True, None, b"", None, ()))):
        for form in _INT_FORMS:
            raw = _Raw(form)

            def as_form(v: int, raw: _Raw = raw) -> _Raw:
                return raw

            assert_decoders_agree(_pack_raw(_generic(km, uint=as_form)))
            generic = _generic(km)
            generic[0] = raw
            assert_decoders_agree(_pack_raw(generic))
            generic = _generic(km)
            request = generic[4]
            assert isinstance(request, dict)
            request["Request"][1] = raw
            assert_decoders_agree(_pack_raw(generic))


def _string_forms(s: str) -> list[_Raw]:
    data = s.encode()
    n = len(data)
    return [
        _Raw(bytes((0xA0 + n,)) + data),
        _Raw(b"\xd9" + bytes((n,)) + data),
        _Raw(b"\xda" + n.to_bytes(2, "big") + data),
        _Raw(b"\xdb" + n.to_bytes(4, "big") + data),
        _Raw(b"\xc4" + bytes((n,)) + data),  # bin is not a string
        _Raw(b"\xc5" + n.to_bytes(2, "big") + data),
        _Raw(bytes((0xA0 + n + 1,)) + data),  # claims one byte more
        _Raw(bytes((0xA0 + n,)) + data[:-1] + b"\xff"),  # invalid UTF-8
        _Raw(bytes((0xA0 + n + 2,)) + data[:-1] + b"\xed\xa0\x80"),  # encoded surrogate
        _Raw(b"\xc0"),
        _Raw(b"\x05"),
        _Raw(b"\x90"),
        _Raw(b""),
    ]


def _byte_vec_forms(v: bytes) -> list[_Raw]:
    n = len(v)
    elements = b"".join(bytes((x,)) for x in v)
    return [
        _Raw(bytes((0x90 + n,)) + elements),
        _Raw(b"\xdc" + n.to_bytes(2, "big") + elements),
        _Raw(b"\xdd" + n.to_bytes(4, "big") + elements),
        _Raw(b"\xc4" + bytes((n,)) + v),
        _Raw(b"\xc5" + n.to_bytes(2, "big") + v),
        _Raw(b"\xc6" + n.to_bytes(4, "big") + v),
        _Raw(b"\xc4" + bytes((n + 1,)) + v),  # claims one byte more
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xcc\xff"),  # non-ASCII element
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xcd\x00\xff"),  # wide element
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xcd\x01\x00"),  # 256
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xc3"),  # a bool
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xc0"),  # nil
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\xff"),  # -1
        _Raw(bytes((0x90 + n,)) + elements[:-1] + b"\x80"),  # a map header
        _Raw(bytes((0x90 + n + 1,)) + elements),  # one element short
        _Raw(bytes((0xA0 + n,)) + v),  # a string is not a byte vector
        _Raw(b"\xc0"),
        _Raw(b""),
    ]


C = Address.parse("c.os@terminal:terminal:sys")


def test_string_and_byte_vector_field_forms() -> None:
    """Each string and byte-vector field in turn in every form, the others canonical."""
    blob = LazyLoadBlob("mime", b"blob")
    messages = [
        KernelMessage(7, A, B, C, Request(True, 5, b"body", "meta", ()), blob),
        KernelMessage(
            7, A, B, C, ResponseMessage(Response(True, b"body", "meta", ()), b"ctx"), blob
        ),
    ]
    for km in messages:
        for chosen in (str(A), str(B), str(C), "meta", "mime"):
            for form in _string_forms(chosen):

                def text(s: str, chosen: str = chosen, form: _Raw = form) -> object:
                    return form if s == chosen else s

                assert_decoders_agree(_pack_raw(_generic(km, text=text)))
        for chosen_bytes in (b"body", b"ctx", b"blob"):
            for form in _byte_vec_forms(chosen_bytes):

                def vec(v: bytes, chosen: bytes = chosen_bytes, form: _Raw = form) -> object:
                    return form if v == chosen else list(v)

                assert_decoders_agree(_pack_raw(_generic(km, vec=vec)))


def test_truncations_and_trailing_bytes() -> None:
    rng = random.Random(6)
    for data in [encode_kernel_message(km) for km in _shapes()] + [d for _, d in KM_VECTORS]:
        # Every cut of small messages; of big ones, the head, the tail and a sample.
        cuts = set(range(min(len(data), 400))) | set(range(max(0, len(data) - 50), len(data)))
        cuts |= {rng.randrange(len(data)) for _ in range(50)}
        for n in sorted(cuts):
            assert_decoders_agree(data[:n])
        assert_decoders_agree(data + b"\xc0")
        assert_decoders_agree(data + data[:100])


# --- differential: malformed objects --------------------------------------------------------


class _Int(int):
    pass


class _Str(str):
    pass


class _Bytes(bytes):
    pass


class _Km(KernelMessage):
    pass


_SURROGATE_ADDRESS = Address("\ud800", ProcessId("a", "b", "c"))


def _malformed() -> list[object]:
    cap = Capability(A, "p")
    req = HELLO.message
    assert isinstance(req, Request)
    resp = REPLY.message
    assert isinstance(resp, ResponseMessage)
    r = resp.response

    def km(**change: Any) -> KernelMessage:
        return dataclasses.replace(HELLO, **change)

    def rq(**change: Any) -> KernelMessage:
        return km(message=dataclasses.replace(req, **change))

    def rs(**change: Any) -> KernelMessage:
        return km(message=ResponseMessage(dataclasses.replace(r, **change), None))

    def ctx(context: object) -> KernelMessage:
        return km(message=ResponseMessage(r, context))  # type: ignore[arg-type]

    values: list[object] = [
        object(),
        None,
        b"\x96",
        _Km(*[getattr(HELLO, f.name) for f in dataclasses.fields(HELLO)]),
    ]
    # Fields never set (object.__new__): AttributeError, converted by the general path.
    values += [object.__new__(KernelMessage), km(message=object.__new__(Request))]
    values += [km(message=object.__new__(ResponseMessage)), ctx(None)]
    values += [km(lazy_load_blob=object.__new__(LazyLoadBlob))]
    values += [km(id=v) for v in (True, False, -1, 2**64, 7.0, "7", None, _Int(7))]
    values += [km(source=v) for v in ("a.os@net:distro:sys", None, B.process)]
    values += [km(target=v) for v in ("x", 5, _SURROGATE_ADDRESS)]
    values += [km(source=_SURROGATE_ADDRESS), km(rsvp=_SURROGATE_ADDRESS)]
    values += [km(rsvp=v) for v in ("x", A.process, 0)]
    messages: tuple[Any, ...] = (None, r, resp.response, "Request", {"Request": []})
    values += [km(message=v) for v in messages]
    values += [km(lazy_load_blob=v) for v in (b"data", (None, b""), LazyLoadBlob)]
    mimes: tuple[Any, ...] = (5, b"text", "\ud800", _Str("t"))
    values += [km(lazy_load_blob=LazyLoadBlob(v, b"")) for v in mimes]
    values += [
        km(lazy_load_blob=LazyLoadBlob(None, v))  # type: ignore[arg-type]
        for v in ([1, 2], "x", None, bytearray(b"x"), memoryview(b"xy"), _Bytes(b"z"), b"y" * 300)
    ]
    values += [rq(inherit=v) for v in (1, 0, None, "true")]
    values += [rq(expects_response=v) for v in (-5, True, 2**64, 5.0, "5", _Int(5))]
    values += [
        rq(body=v)
        for v in ("hello", None, [1, 2], bytearray(b"hi"), memoryview(b"hi"), _Bytes(b"hi"), 5)
    ]
    values += [rq(body=v) for v in (bytearray(300), "x" * 300, [300], [-1])]
    values += [rq(metadata=v) for v in (b"meta", "\ud800", 5, _Str("m"), "m" * 300)]
    values += [
        rq(capabilities=v)
        for v in (
            [],
            None,
            ((A, b""),),
            ((cap,),),
            ((cap, b"sig"),),
            [(cap, b"sig")],
            ((cap, "sig"),),
            ((Capability(A, 5), b""),),  # type: ignore[arg-type]
            "caps",
        )
    ]
    values += [rs(inherit=v) for v in (1, None)]
    values += [rs(body=v) for v in ("x", None, bytearray(b"x"), _Bytes(b"x"))]
    values += [rs(metadata=v) for v in (b"m", "\udfff")]
    response_caps: tuple[Any, ...] = ([], None, ((cap, b""),))
    values += [rs(capabilities=v) for v in response_caps]
    values += [ctx(v) for v in ("ctx", 5, bytearray(b"c"), _Bytes(b"c"), [1], b"\xff" * 300)]
    responses: tuple[Any, ...] = (None, req, "r")
    values += [km(message=ResponseMessage(v, None)) for v in responses]
    # A bad field after a big body (the general encoder's piecewise path).
    values += [
        rq(body=b"x" * 5000, metadata=5),
        km(message=dataclasses.replace(req, body=b"x" * 5000), lazy_load_blob=b"x"),
    ]
    return values


def test_malformed_objects() -> None:
    values = _malformed()
    results = [assert_encoders_agree(v) for v in values]
    assert results.count(None) > len(values) // 2  # most are errors; a few are valid variants


def test_malformed_generated() -> None:
    """Random single-field corruptions of generated messages."""
    rng = random.Random(4)
    bad_values: list[object] = [True, -1, 2**64, 1.5, "s", b"b", None, (), [], object(), _Int(3)]
    for base in generated(300, seed=5):
        m = base.message
        target: object = rng.choice([base, m, m.response if isinstance(m, ResponseMessage) else m])
        assert dataclasses.is_dataclass(target) and not isinstance(target, type)
        field = rng.choice(dataclasses.fields(target)).name
        changed: Any = dataclasses.replace(target, **{field: rng.choice(bad_values)})
        if target is base:
            km = changed
        elif target is m:
            km = dataclasses.replace(base, message=changed)
        else:
            assert isinstance(m, ResponseMessage)
            km = dataclasses.replace(base, message=dataclasses.replace(m, response=changed))
        assert_encoders_agree(km)
