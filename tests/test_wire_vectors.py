"""The codec against the reference vectors: byte-exact round trips and the described values."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from hnet.core.wire import (
    DECODERS,
    ENCODERS,
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
    Peer,
    Peers,
    ProcessId,
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
    decode_handshake_payload,
    decode_hns_update,
    decode_identity,
    decode_kernel_message,
    decode_lazy_load_blob,
    decode_net_action,
    decode_net_response,
    decode_routing_request,
    decode_send_error,
    encode_handshake_payload,
    encode_hns_update,
    encode_identity,
    encode_kernel_message,
    encode_lazy_load_blob,
    encode_net_action,
    encode_net_response,
    encode_routing_request,
    encode_send_error,
    sign_bytes_for_capability,
)
from hnet.interop import (
    VectorReport,
    check_vector_file,
    check_vector_lines,
    find_vector_file,
    format_report,
)

VECTOR_FILE = find_vector_file()  # a missing file fails collection, with its path


def _load() -> list[tuple[str, str, bytes]]:
    rows = []
    for line in VECTOR_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, type_name, hex_text = line.split("\t")
        rows.append((name, type_name, bytes.fromhex(hex_text)))
    return rows


ROWS = _load()
VECTORS = {name: data for name, _, data in ROWS}

CHAT_ALICE = Address("alice.os", ProcessId("chat", "chat", "template.os"))
CHAT_BOB = Address("bob.os", ProcessId("chat", "chat", "template.os"))
CAROL_TERMINAL = Address("carol.os", ProcessId("terminal", "terminal", "sys"))


def test_vector_file_has_every_type() -> None:
    assert len(ROWS) >= 39
    assert {t for _, t, _ in ROWS} == {
        "KernelMessage",
        "HandshakePayload",
        "RoutingRequest",
        "NetAction",
        "NetResponse",
        "LazyLoadBlob",
    }


@pytest.mark.parametrize(("name", "type_name", "data"), ROWS, ids=[r[0] for r in ROWS])
def test_vector_round_trip(name: str, type_name: str, data: bytes) -> None:
    value = DECODERS[type_name](data)
    assert ENCODERS[type_name](value) == data
    # Decoding is deterministic and accepts every input form.
    assert DECODERS[type_name](bytearray(data)) == value
    assert DECODERS[type_name](memoryview(data)) == value


# --- the values the README describes --------------------------------------------------------


def test_km_request_hello() -> None:
    expected = KernelMessage(
        id=7,
        source=CHAT_ALICE,
        target=CHAT_BOB,
        rsvp=None,
        message=Request(
            inherit=False, expects_response=30, body=b"hello", metadata=None, capabilities=()
        ),
        lazy_load_blob=None,
    )
    assert decode_kernel_message(VECTORS["km_request_hello"]) == expected
    assert encode_kernel_message(expected) == VECTORS["km_request_hello"]


def test_km_response_context() -> None:
    expected = KernelMessage(
        id=2**32,
        source=CHAT_BOB,
        target=CHAT_ALICE,
        rsvp=CAROL_TERMINAL,
        message=ResponseMessage(
            Response(inherit=True, body=b"world", metadata='{"k":1}', capabilities=()),
            context=bytes([1, 2, 3]),
        ),
        lazy_load_blob=None,
    )
    assert decode_kernel_message(VECTORS["km_response_context"]) == expected
    assert encode_kernel_message(expected) == VECTORS["km_response_context"]


def test_km_response_no_context() -> None:
    km = decode_kernel_message(VECTORS["km_response_no_context"])
    assert km.id == 255
    assert km.message == ResponseMessage(Response(False, b"", None, ()), None)
    assert km.lazy_load_blob is None
    # Some(empty) is 0x90, None is nil: they must stay distinct.
    with_empty = KernelMessage(
        km.id,
        km.source,
        km.target,
        km.rsvp,
        ResponseMessage(Response(False, b"", None, ()), b""),
        None,
    )
    assert encode_kernel_message(with_empty) != VECTORS["km_response_no_context"]
    assert decode_kernel_message(encode_kernel_message(with_empty)) == with_empty


def test_km_blob_and_cap() -> None:
    expected = KernelMessage(
        id=2**64 - 1,
        source=CHAT_ALICE,
        target=CHAT_BOB,
        rsvp=None,
        message=Request(
            inherit=False,
            expects_response=None,
            body=bytes(i * 13 for i in range(20)),
            metadata="meta",
            capabilities=((Capability(CHAT_BOB, '"messaging"'), bytes.fromhex("deadbeef")),),
        ),
        lazy_load_blob=LazyLoadBlob(mime="text/plain", bytes=b"blobdata"),
    )
    assert decode_kernel_message(VECTORS["km_blob_and_cap"]) == expected
    assert encode_kernel_message(expected) == VECTORS["km_blob_and_cap"]


def test_handshake() -> None:
    expected = HandshakePayload(1, "alice.os", bytes(4 * i for i in range(64)), False)
    assert decode_handshake_payload(VECTORS["handshake"]) == expected
    assert encode_handshake_payload(expected) == VECTORS["handshake"]


def test_routing_request() -> None:
    expected = RoutingRequest(1, "alice.os", bytes([0, 4, 8, 12]), "bob.os")
    assert decode_routing_request(VECTORS["routing_request"]) == expected
    assert encode_routing_request(expected) == VECTORS["routing_request"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("net_get_peers", GetPeers()),
        ("net_get_peer", GetPeer("bob.os")),
        ("net_connection_request", ConnectionRequest("bob.os")),
        ("net_verify", Verify(CHAT_ALICE, bytes([1, 128, 255]))),
        (
            "net_hns_update",
            HnsUpdateAction(
                HnsUpdate("bob.os", "0xab", ("127.0.0.1",), {"tcp": 9000, "ws": 9001}, ())
            ),
        ),
    ],
)
def test_net_actions(name: str, value: object) -> None:
    assert decode_net_action(VECTORS[name]) == value
    assert ENCODERS["NetAction"](value) == VECTORS[name]


def test_net_get_peers_is_bare_string() -> None:
    assert msgpack.unpackb(VECTORS["net_get_peers"]) == "GetPeers"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("netresp_signed", Signed()),
        ("netresp_verified", Verified(True)),
        ("netresp_diag", Diagnostics("ok")),
        ("netresp_peer_none", Peer(None)),
        (
            "netresp_peer_both",
            Peer(Identity("dave.os", "0x", Both("10.0.0.1", {}, ("r.os",)))),
        ),
        (
            "netresp_peers",
            Peers(
                (
                    Identity("bob.os", "0x1234", Direct("127.0.0.1", {"tcp": 65535, "ws": 9001})),
                    Identity("carol.os", "0x5678", Routers(("router-1.os",))),
                )
            ),
        ),
        ("edge_utf8", Diagnostics("héllo 😀")),
    ],
)
def test_net_responses(name: str, value: object) -> None:
    assert decode_net_response(VECTORS[name]) == value
    assert ENCODERS["NetResponse"](value) == VECTORS[name]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("edge_id_0", 0),
        ("edge_id_127", 127),
        ("edge_id_128", 128),
        ("edge_id_255", 255),
        ("edge_id_256", 256),
        ("edge_id_65535", 65535),
        ("edge_id_65536", 65536),
        ("edge_id_4294967295", 2**32 - 1),
        ("edge_id_4294967296", 2**32),
    ],
)
def test_edge_ids(name: str, value: int) -> None:
    km = decode_kernel_message(VECTORS[name])
    assert km.id == value
    assert isinstance(km.message, Request)
    assert km.message.expects_response == value
    assert km.message.inherit is True
    assert km.message.body == b""


@pytest.mark.parametrize("length", [31, 32, 255, 256, 65535, 65536])
def test_edge_strings(length: int) -> None:
    data = VECTORS[f"edge_str_{length}"]
    value = HandshakePayload(200, "x" * length, b"", True)
    assert decode_handshake_payload(data) == value
    assert encode_handshake_payload(value) == data
    # rmp uses str8 (0xd9) from 32 bytes, str16 from 256, str32 from 65536.
    marker = data[3]
    assert marker == {31: 0xBF, 32: 0xD9, 255: 0xD9, 256: 0xDA, 65535: 0xDA, 65536: 0xDB}[length]


@pytest.mark.parametrize("length", [15, 16, 65535, 65536])
def test_edge_bodies(length: int) -> None:
    data = VECTORS[f"edge_body_{length}"]
    value = LazyLoadBlob(None, bytes(i % 251 for i in range(length)))
    assert decode_lazy_load_blob(data) == value
    assert encode_lazy_load_blob(value) == data


def test_edge_map_17() -> None:
    action = decode_net_action(VECTORS["edge_map_17"])
    assert isinstance(action, HnsUpdateAction)
    assert action.update.ports == {f"p{i}": i * 1000 for i in range(17)}
    # Inserted in numeric order, encoded in byte-wise order (p0, p1, p10, ...).
    numeric = HnsUpdateAction(HnsUpdate("n", "k", (), {f"p{i}": i * 1000 for i in range(17)}, ()))
    assert encode_net_action(numeric) == VECTORS["edge_map_17"]


def test_km_big_blob() -> None:
    data = VECTORS["km_big_blob"]
    assert len(data) == 150_064
    km = decode_kernel_message(data)
    assert km.lazy_load_blob is not None
    assert len(km.lazy_load_blob.bytes) == 100_000
    assert encode_kernel_message(km) == data


# --- types without vectors: built by hand, checked against docs/protocol.md §2 --------


def test_send_error_shape() -> None:
    message = Request(False, 5, b"hi", None, ())
    err = SendError(SendErrorKind.TIMEOUT, CHAT_BOB, message, None)
    data = encode_send_error(err)
    generic = msgpack.unpackb(data)
    assert generic == [
        "Timeout",
        "bob.os@chat:chat:template.os",
        {"Request": [False, 5, [104, 105], None, []]},
        None,
    ]
    assert decode_send_error(data) == err
    offline = SendError(SendErrorKind.OFFLINE, CHAT_BOB, message, LazyLoadBlob("a/b", b"\x00"))
    assert decode_send_error(encode_send_error(offline)) == offline


def test_identity_and_hns_update_standalone() -> None:
    ident = Identity("a.os", "0x00", Direct("1.2.3.4", {"ws": 2, "tcp": 1}))
    data = encode_identity(ident)
    assert msgpack.unpackb(data) == ["a.os", "0x00", {"Direct": ["1.2.3.4", {"tcp": 1, "ws": 2}]}]
    assert decode_identity(data) == ident
    update = HnsUpdate("a.os", "00", ("1.2.3.4", "::1"), {"tcp": 1}, ("r.os",))
    assert decode_hns_update(encode_hns_update(update)) == update


def test_remaining_variants_round_trip() -> None:
    for action in (
        GetDiagnostics(),
        Sign(),
        HnsBatchUpdate(
            (HnsUpdate("a.os", "k", (), {}, ()), HnsUpdate("b.os", "k", ("1.1.1.1",), {}, ()))
        ),
    ):
        assert decode_net_action(encode_net_action(action)) == action
    assert msgpack.unpackb(encode_net_action(Sign())) == "Sign"
    for response in (Accepted("a.os"), Rejected("b.os"), Verified(False), Peers(())):
        assert decode_net_response(encode_net_response(response)) == response


def test_sign_bytes_for_capability() -> None:
    cap = Capability(CHAT_BOB, '"messaging"')
    data = sign_bytes_for_capability(cap)
    assert msgpack.unpackb(data) == ["bob.os@chat:chat:template.os", '"messaging"']
    # The same bytes the capability's array form has inside km_blob_and_cap.
    assert data in VECTORS["km_blob_and_cap"]


# --- the interop checker --------------------------------------------------------------------


def test_check_vector_file_passes() -> None:
    assert VECTOR_FILE is not None
    report = check_vector_file(VECTOR_FILE)
    assert report.failures == []
    assert report.passed == len(ROWS)
    assert report.ok
    assert format_report(report) == [f"{len(ROWS)} passed, 0 failed"]


def test_check_vector_file_reports_bad_rows(tmp_path: Path) -> None:
    hello = VECTORS["km_request_hello"].hex()
    flipped = VECTORS["km_request_hello"][:-1] + b"\x90"  # blob nil -> empty array
    # routing_request with its signature as bin (c4 04) instead of an int array
    routing_with_bin = "9401a8616c6963652e6f73" + "c404" + "0004080c" + "a6626f622e6f73"
    path = tmp_path / "v.tsv"
    path.write_bytes(
        "\n".join(
            [
                "# comment",
                "",
                f"good\tKernelMessage\t{hello}",
                f"unknown\tBanana\t{hello}",
                "badhex\tKernelMessage\tzz11",
                "empty\tKernelMessage\t",
                "short\tKernelMessage",
                f"wrongtype\tHandshakePayload\t{hello}",
                f"trailing\tKernelMessage\t{hello}00",
                f"mismatch\tKernelMessage\t{flipped.hex()}",
                f"noncanonical\tRoutingRequest\t{routing_with_bin}",
            ]
        ).encode()
        + b"\nbin\xff\tKernelMessage\t00\n"
    )
    report = check_vector_file(path)
    assert report.passed == 1
    reasons = dict(report.failures)
    assert set(reasons) == {
        "unknown",
        "badhex",
        "empty",
        "short",
        "wrongtype",
        "trailing",
        "mismatch",
        "noncanonical",
        "bin\ufffd",
    }
    assert "unknown type" in reasons["unknown"]
    assert "malformed hex" in reasons["badhex"]
    assert "3 tab-separated fields" in reasons["short"]
    assert reasons["wrongtype"].startswith("decode failed")
    assert "trailing" in reasons["trailing"]
    assert reasons["mismatch"].startswith("decode failed")
    # bin is accepted on decode but re-encodes as an int array: a byte mismatch, not a crash.
    assert "differ at offset" in reasons["noncanonical"]
    lines = format_report(report)
    assert len(lines) == len(report.failures) + 1
    assert lines[-1] == "1 passed, 9 failed"
    assert all(line.startswith("FAIL ") for line in lines[:-1])


def test_format_report_empty() -> None:
    assert format_report(VectorReport()) == ["0 passed, 0 failed"]
    assert not VectorReport().ok
    assert check_vector_lines([]).passed == 0
