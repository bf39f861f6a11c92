"""hnet.core.stream.StreamConnection, sans-I/O: the code every TCP and WebSocket connection runs.

The fixed-key reference session (interop i2r.bin / r2i.bin) is replayed through it with a real
PeerHandshake in both roles, fed in awkward pieces, byte for byte; then the state machine, the
first-frame rule (docs/protocol.md §4, §7), the deferred key lookup (§3), the bounds and the
typed errors (a peer's violation is an event; our misuse raises LocalProtocolError).
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core import stream as stream_mod
from hnet.core.framing import encode_handshake_frame
from hnet.core.noise import XXHandshake
from hnet.core.stream import (
    EARLY_DATA_MAX,
    ConnectionClosed,
    HandshakeComplete,
    KeyNeeded,
    LocalProtocolError,
    MessageReceived,
    ProtocolError,
    RemoteProtocolError,
    RoutingRequestReceived,
    State,
    StreamConnection,
)
from hnet.core.wire import HandshakePayload, encode_handshake_payload
from hnet.limits import HANDSHAKE_MAX_MESSAGE, MESSAGE_MAX_SIZE, NOISE_MAX_MESSAGE

from .test_noise_replay import (
    ALICE_KEY,
    ALICE_STATIC,
    BOOK,
    HANDSHAKE_HASH,
    I2R,
    KM_BIG,
    KM_HELLO,
    KM_RESPONSE,
    R2I,
    alice,
    bob,
    drain,
    handshake_frames,
    splits,
)

AWKWARD = [
    [1],
    [2, 1, 33],  # a frame header split from its body, the first frame split from the second
    [34, 170, 1],  # exactly msg1, exactly msg3, then the transport byte by byte for a while
    [3, 65_521, 2, 19_000],
    [4096, 7],
    [200_000],
]


def errors(conn: StreamConnection) -> list[RemoteProtocolError]:
    return [ev.error for ev in drain(conn) if isinstance(ev, ProtocolError)]


# --- the reference session, both roles -----------------------------------------------------


@pytest.mark.parametrize("sizes", AWKWARD, ids=lambda s: "-".join(map(str, s)))
def test_tcp_responder_replay_in_awkward_pieces(sizes: list[int]) -> None:
    conn = StreamConnection(bob(), "tcp")
    assert conn.state is State.AWAIT_FIRST
    assert conn.data_to_send() == []  # a responder speaks second
    out = b""
    events = []
    for piece in splits(I2R, sizes):
        conn.receive_data(piece)
        out += b"".join(conn.data_to_send())
        events += drain(conn)
    assert conn.state is State.OPEN and conn.peer_name == "alice.os"
    conn.send_message(KM_RESPONSE)
    out += b"".join(conn.data_to_send())
    assert out == R2I
    assert conn.hs.handshake_hash.hex() == HANDSHAKE_HASH
    assert events == [
        HandshakeComplete("alice.os", True),
        MessageReceived(KM_HELLO),
        MessageReceived(KM_BIG),
    ]


@pytest.mark.parametrize("sizes", AWKWARD, ids=lambda s: "-".join(map(str, s)))
def test_tcp_initiator_replay_in_awkward_pieces(sizes: list[int]) -> None:
    conn = StreamConnection(alice(), "tcp")
    assert conn.state is State.HANDSHAKE
    sent = b"".join(conn.data_to_send())
    events = []
    for piece in splits(R2I, sizes):
        conn.receive_data(piece)
        sent += b"".join(conn.data_to_send())
        events += drain(conn)
        if conn.is_open and len(sent) < len(I2R):
            conn.send_message(KM_HELLO)
            conn.send_message(KM_BIG)
            sent += b"".join(conn.data_to_send())
    assert sent == I2R
    assert events == [HandshakeComplete("bob.os", False), MessageReceived(KM_RESPONSE)]


def test_tcp_responder_replay_with_deferred_key() -> None:
    """Alice is unknown at first (registered a moment ago): bob asks for her key, holds what
    arrived behind her last message, and produces the reference bytes once given it."""
    conn = StreamConnection(bob({"bob.os": BOOK["bob.os"]}, defer_unknown=True), "tcp")
    out = b""
    for piece in splits(I2R, [34, 170 + 1000]):  # msg1; msg3 + 1,000 transport bytes
        conn.receive_data(piece)
        out += b"".join(conn.data_to_send())
        if conn.state is State.NEEDS_KEY:
            break
    assert drain(conn) == [KeyNeeded("alice.os")]
    assert conn.buffered == 1000
    with pytest.raises(LocalProtocolError):
        conn.send_message(b"too early")
    conn.provide_key(BOOK["alice.os"])
    assert conn.is_open
    conn.receive_data(I2R[34 + 170 + 1000 :])
    conn.send_message(KM_RESPONSE)
    out += b"".join(conn.data_to_send())
    assert out == R2I
    assert drain(conn) == [
        HandshakeComplete("alice.os", True),
        MessageReceived(KM_HELLO),
        MessageReceived(KM_BIG),
    ]


def test_deferred_key_not_found_is_the_peers_fault() -> None:
    conn = StreamConnection(bob({"bob.os": BOOK["bob.os"]}, defer_unknown=True), "tcp")
    conn.receive_data(I2R[:50_000])  # msg1, msg3 and part of alice's first messages
    assert drain(conn) == [KeyNeeded("alice.os")]
    assert conn.buffered == 50_000 - 34 - 170
    conn.provide_key(None)
    [err] = errors(conn)
    assert err.handshake and "unknown HNS name 'alice.os'" in err.reason
    assert conn.state is State.CLOSED
    conn.receive_data(b"more")  # ignored once closed
    assert drain(conn) == []


def test_deferred_key_with_the_wrong_key_fails_the_signature() -> None:
    conn = StreamConnection(bob({"bob.os": BOOK["bob.os"]}, defer_unknown=True), "tcp")
    conn.receive_data(I2R[: 34 + 170])
    assert drain(conn) == [KeyNeeded("alice.os")]
    conn.provide_key(keys.public_bytes(keys.generate()))
    [err] = errors(conn)
    assert err.handshake and "signature" in err.reason


def test_ws_replay_handshake_messages_are_the_reference_ones() -> None:
    """Over WebSocket each handshake message is one binary message: the same Noise bytes as
    the TCP vectors carry in their u16 frames (docs/protocol.md §5)."""
    (msg1, msg3), _ = handshake_frames(I2R, 2)
    (msg2,), _ = handshake_frames(R2I, 1)
    b = StreamConnection(bob(), "ws")
    a = StreamConnection(alice(), "ws")
    assert a.data_to_send() == [msg1]
    b.receive_message(msg1)
    assert b.data_to_send() == [msg2]
    a.receive_message(msg2)
    assert a.data_to_send() == [msg3]
    b.receive_message(msg3)
    assert drain(a) == [HandshakeComplete("bob.os", False)]
    assert drain(b) == [HandshakeComplete("alice.os", True)]
    assert a.hs.handshake_hash.hex() == b.hs.handshake_hash.hex() == HANDSHAKE_HASH
    # the transport: length inside the encryption, 65,519-byte chunks (§5)
    a.send_message(KM_BIG)
    wire = a.data_to_send()
    assert [len(m) for m in wire] == [65_535, 65_535, 19_046]
    for m in wire:
        b.receive_message(m)
    assert drain(b) == [MessageReceived(KM_BIG)]
    b.send_message(KM_RESPONSE)
    [back] = b.data_to_send()
    assert len(back) == 4 + len(KM_RESPONSE) + 16
    a.receive_message(back)
    assert drain(a) == [MessageReceived(KM_RESPONSE)]


def test_ws_deferred_key_holds_early_messages() -> None:
    a = StreamConnection(alice(), "ws")
    b = StreamConnection(bob({"bob.os": BOOK["bob.os"]}, defer_unknown=True), "ws")
    b.receive_message(a.data_to_send()[0])
    a.receive_message(b.data_to_send()[0])
    [msg3] = a.data_to_send()
    second = bytes(range(256)) * 100  # 25,600 bytes: well within EARLY_DATA_MAX
    a.send_message(KM_HELLO)
    a.send_message(second)
    b.receive_message(msg3)
    for m in a.data_to_send():
        b.receive_message(m)
    assert drain(b) == [KeyNeeded("alice.os")]
    b.provide_key(BOOK["alice.os"])
    assert drain(b) == [
        HandshakeComplete("alice.os", True),
        MessageReceived(KM_HELLO),
        MessageReceived(second),
    ]


# --- pairs in memory -------------------------------------------------------------------------


def pair(kind: str) -> tuple[StreamConnection, StreamConnection]:
    a = StreamConnection(alice(), kind)  # type: ignore[arg-type]
    b = StreamConnection(bob(), kind)  # type: ignore[arg-type]
    pump(a, b)
    assert a.is_open and b.is_open
    drain(a)
    drain(b)
    return a, b


def pump(a: StreamConnection, b: StreamConnection) -> None:
    """Move what each side has to send to the other until both are quiet."""
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            out = src.data_to_send()
            moved = moved or bool(out)
            for buf in out:
                if dst.kind == "tcp":
                    dst.receive_data(buf)
                else:
                    dst.receive_message(buf)


@pytest.mark.parametrize("n", [1, 65_515, 65_516, 65_519, 65_520, 131_034, 131_039])
@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_chunk_boundaries(kind: str, n: int) -> None:
    a, b = pair(kind)
    msg = bytes(i & 0xFF for i in range(n))
    a.send_message(msg)
    pump(a, b)
    assert drain(b) == [MessageReceived(msg)]
    assert b.buffered == 0


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_largest_message_both_ways_and_empty_refused(kind: str) -> None:
    a, b = pair(kind)
    big = bytes(MESSAGE_MAX_SIZE)
    b.send_message(big)
    pump(a, b)
    assert drain(a) == [MessageReceived(big)]
    with pytest.raises(LocalProtocolError):
        a.send_message(b"")
    with pytest.raises(LocalProtocolError):
        a.send_message(bytes(MESSAGE_MAX_SIZE + 1))


def test_initiator_may_send_right_behind_its_last_message() -> None:
    a = StreamConnection(alice(), "tcp")
    b = StreamConnection(bob(), "tcp")
    b.receive_data(b"".join(a.data_to_send()))
    a.receive_data(b"".join(b.data_to_send()))
    a.send_message(b"first")
    b.receive_data(b"".join(a.data_to_send()))  # msg3 and a message in one piece
    assert drain(b) == [HandshakeComplete("alice.os", True), MessageReceived(b"first")]


# --- the first frame: Noise or a RoutingRequest (§4, §7) ------------------------------------


ROUTING_REQUEST = b"\x94\x01\xa8alice.os\x90\xa6bob.os"  # any length but 32 is one


@pytest.mark.parametrize("sizes", [[1], [3], [1000]], ids=str)
def test_tcp_routing_request_and_the_bytes_behind_it(sizes: list[int]) -> None:
    behind = b"\x00\x20" + bytes(range(32)) + b"piped on untouched"
    stream = encode_handshake_frame(ROUTING_REQUEST) + behind
    conn = StreamConnection(bob(), "tcp")
    got = []
    for piece in splits(stream, sizes):
        if conn.state is State.ROUTED:
            got.append(piece)  # the adapter no longer feeds the core: this goes to the pipe
            continue
        conn.receive_data(piece)
    assert drain(conn) == [RoutingRequestReceived(ROUTING_REQUEST)]
    assert conn.state is State.ROUTED
    assert b"".join(conn.take_buffered() + got) == behind
    assert conn.data_to_send() == []  # the router takes no part in the handshake
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.send_message(b"x")


def test_ws_routing_request() -> None:
    conn = StreamConnection(bob(), "ws")
    conn.receive_message(ROUTING_REQUEST)
    assert drain(conn) == [RoutingRequestReceived(ROUTING_REQUEST)]
    assert conn.take_buffered() == []
    with pytest.raises(LocalProtocolError):
        conn.receive_message(b"x")


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_responder_behind_a_router_sends_its_request_then_expects_noise(kind: str) -> None:
    """An indirect node answering a ConnectionRequest (§7): RoutingRequest first, then it is
    the Noise responder; a first frame that is not ``-> e`` is an error, not a request."""
    b = StreamConnection(bob(), kind, routing_request=ROUTING_REQUEST)  # type: ignore[arg-type]
    out = b.data_to_send()
    assert b"".join(out) == (
        encode_handshake_frame(ROUTING_REQUEST) if kind == "tcp" else ROUTING_REQUEST
    )
    a = StreamConnection(alice(), kind)  # type: ignore[arg-type]
    pump(a, b)
    assert a.is_open and b.is_open
    c = StreamConnection(bob(), kind, routing_request=ROUTING_REQUEST)  # type: ignore[arg-type]
    c.data_to_send()
    if kind == "tcp":
        c.receive_data(encode_handshake_frame(ROUTING_REQUEST))
    else:
        c.receive_message(ROUTING_REQUEST)
    [err] = errors(c)
    assert err.handshake and "not 32" in err.reason


def test_initiator_through_a_router_sends_request_then_e() -> None:
    a = StreamConnection(alice(), "tcp", routing_request=ROUTING_REQUEST)
    out = b"".join(a.data_to_send())
    (rr, msg1), _ = handshake_frames(out, 2)
    assert rr == ROUTING_REQUEST and len(msg1) == 32


# --- hostile input: lengths checked before buffering, errors are events --------------------


def test_first_frame_longer_than_a_routing_request_is_refused_from_its_header() -> None:
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(struct.pack(">H", 4097))
    [err] = errors(conn)
    assert not err.handshake and "4097" in err.reason
    assert conn.state is State.CLOSED


def test_empty_first_frame() -> None:
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(b"\x00\x00")
    assert "empty first frame" in errors(conn)[0].reason


def test_handshake_frame_over_the_cap_is_refused_from_its_header() -> None:
    conn = StreamConnection(alice(), "tcp")
    conn.receive_data(struct.pack(">H", HANDSHAKE_MAX_MESSAGE + 1))
    assert "exceeds" in errors(conn)[0].reason
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(encode_handshake_frame(handshake_frames(I2R, 1)[0][0]))
    conn.receive_data(struct.pack(">H", 65_535) + bytes(1000))
    assert "exceeds" in errors(conn)[0].reason
    assert conn.buffered == 0


def test_partial_frame_bounded_before_the_handshake() -> None:
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(encode_handshake_frame(handshake_frames(I2R, 1)[0][0]))
    conn.data_to_send()
    conn.receive_data(struct.pack(">H", 4000) + bytes(3999))  # "-> s, se" of 4,000 bytes
    assert drain(conn) == [] and conn.buffered == 4001
    conn.receive_data(bytes(1) + bytes(10**6))  # it completes: not Noise; then junk
    [err] = errors(conn)
    assert err.handshake
    assert conn.state is State.CLOSED and conn.buffered == 0


def test_ws_handshake_message_caps() -> None:
    conn = StreamConnection(bob(), "ws")
    conn.receive_message(bytes(4097))
    assert "exceeds" in errors(conn)[0].reason
    conn = StreamConnection(alice(), "ws")
    conn.receive_message(bytes(HANDSHAKE_MAX_MESSAGE + 1))
    assert "exceeds" in errors(conn)[0].reason


@pytest.mark.parametrize("state", ["handshake", "open"])
def test_ws_text_frame_is_a_protocol_error(state: str) -> None:
    if state == "open":
        conn, _ = pair("ws")
    else:
        conn = StreamConnection(bob(), "ws")
    conn.receive_message(b"hello", text=True)
    assert "text frame" in errors(conn)[0].reason
    assert conn.state is State.CLOSED


def test_ws_message_over_one_noise_message_refused_before_decrypting() -> None:
    _, b = pair("ws")
    b.receive_message(bytes(NOISE_MAX_MESSAGE + 1))
    assert "exceeds" in errors(b)[0].reason


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_early_data_over_its_bound_while_a_key_is_looked_up(kind: str) -> None:
    a = StreamConnection(alice(), kind)  # type: ignore[arg-type]
    b = StreamConnection(
        bob({"bob.os": BOOK["bob.os"]}, defer_unknown=True),
        kind,  # type: ignore[arg-type]
        early_data_max=10_000,
    )
    pump(a, b)
    assert drain(b) == [KeyNeeded("alice.os")]
    for _ in range(3):
        a.send_message(bytes(4000))
    pump(a, b)
    [err] = errors(b)
    assert "more than 10000 bytes before the handshake completed" in err.reason
    assert b.buffered == 0
    assert EARLY_DATA_MAX >= 2 + HANDSHAKE_MAX_MESSAGE  # one handshake-phase read fits


def test_claimed_4gib_message_after_the_handshake() -> None:
    _, b = pair("tcp")
    b.receive_data(struct.pack(">I", 0xFFFF_FFFF) + bytes(100))
    [err] = errors(b)
    assert "exceeds" in err.reason and not err.handshake
    assert b.buffered == 0


def test_tampered_handshake_is_a_handshake_error() -> None:
    stream = bytearray(I2R)
    stream[2 + 32 + 2 + 40] ^= 1  # inside msg3's encrypted static key
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(bytes(stream))
    [err] = errors(conn)
    assert err.handshake and "noise" in err.reason


@pytest.mark.parametrize("cut", [0, 1, 2, 34, 35, 203])
def test_peer_closing_during_the_handshake(cut: int) -> None:
    conn = StreamConnection(bob(), "tcp")
    conn.receive_data(I2R[:cut])
    conn.receive_data(b"")  # end of stream
    events = drain(conn)
    assert events[-1] == ConnectionClosed("closed by peer during the handshake")
    assert conn.state is State.CLOSED


def test_peer_closing_an_open_connection() -> None:
    _, b = pair("ws")
    b.receive_eof()
    assert drain(b) == [ConnectionClosed("closed by peer")]
    b.receive_eof()  # idempotent once closed
    assert drain(b) == []


# --- our misuse raises LocalProtocolError --------------------------------------------------


def test_local_misuse() -> None:
    tcp = StreamConnection(bob(), "tcp")
    ws = StreamConnection(bob(), "ws")
    with pytest.raises(LocalProtocolError):
        tcp.receive_message(b"x")
    with pytest.raises(LocalProtocolError):
        ws.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        tcp.send_message(b"before the handshake")
    with pytest.raises(LocalProtocolError):
        tcp.provide_key(b"k" * 32)
    with pytest.raises(LocalProtocolError):
        tcp.take_buffered()
    with pytest.raises(ValueError):
        StreamConnection(bob(), "quic")  # type: ignore[arg-type]
    a, _ = pair("tcp")
    a.close()
    assert a.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        a.send_message(b"after close")
    a.receive_data(b"ignored")
    assert drain(a) == []
    assert issubclass(LocalProtocolError, stream_mod.StreamProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_transition_table_is_the_documented_one() -> None:
    table = {(s.name, i.name): t.name for (s, i), t in stream_mod._TRANSITIONS.items()}
    assert table[("AWAIT_FIRST", "FIRST_NOISE")] == "HANDSHAKE"
    assert table[("AWAIT_FIRST", "FIRST_ROUTING")] == "ROUTED"
    assert table[("HANDSHAKE", "VERIFIED")] == "OPEN"
    assert table[("HANDSHAKE", "KEY_UNKNOWN")] == "NEEDS_KEY"
    assert table[("NEEDS_KEY", "VERIFIED")] == "OPEN"
    # every live state ends on the peer's close or violation; ROUTED and CLOSED take no input
    for s in ("AWAIT_FIRST", "HANDSHAKE", "NEEDS_KEY", "OPEN"):
        assert table[(s, "PEER_CLOSED")] == table[(s, "REMOTE_ERROR")] == "CLOSED"
    assert not any(s in ("ROUTED", "CLOSED") for s, i in table if i != "LOCAL_CLOSE")
    assert not any(s == "CLOSED" for s, _ in table)


def test_responder_identity_checks_are_handshake_errors() -> None:
    """protocol_version, our own name, the dialled name (§3): each a typed handshake error."""
    book = dict(BOOK)
    # alice dials carol.os but reaches bob.os
    a = StreamConnection(alice(book, expected_peer="carol.os"), "tcp")  # type: ignore[arg-type]
    b = StreamConnection(bob(book), "tcp")
    pump(a, b)
    [err] = errors(a)
    assert err.handshake and "dialled carol.os but reached 'bob.os'" in err.reason
    # an initiator claiming the responder's own name; one of protocol version 2
    assert "our own name" in raw_initiator_refused(name="bob.os")
    assert "protocol version 2 != 1" in raw_initiator_refused(version=2)
    assert "bad handshake payload" in raw_initiator_refused(payload=b"\xc1")
    assert "signature does not verify" in raw_initiator_refused(key=keys.generate())


def raw_initiator_refused(
    *,
    name: str = "alice.os",
    version: int = 1,
    key: object = None,
    payload: bytes | None = None,
) -> str:
    """Run a hand-built initiator (any payload it likes) against a real responder; the
    responder's reason for refusing it."""
    hs = XXHandshake(True, ALICE_STATIC)
    b = StreamConnection(bob(), "tcp")
    b.receive_data(encode_handshake_frame(hs.write_message()))
    (msg2,), _ = handshake_frames(b"".join(b.data_to_send()), 1)
    hs.read_message(msg2)
    signer = key if key is not None else ALICE_KEY
    assert isinstance(signer, Ed25519PrivateKey)
    if payload is None:
        payload = encode_handshake_payload(
            HandshakePayload(version, name, signer.sign(hs.static_public), False)
        )
    b.receive_data(encode_handshake_frame(hs.write_message(payload)))
    [err] = errors(b)
    assert err.handshake and b.state is State.CLOSED
    return err.reason


def test_receive_open_data_returns_messages_and_falls_back_when_it_must() -> None:
    a, b = pair("tcp")
    for m in (b"one", b"two", bytes(70_000)):
        a.send_message(m)
    wire = b"".join(a.data_to_send())
    # Split mid-message: the first call returns what is complete, the second the rest.
    assert b.receive_open_data(wire[:100]) == [b"one", b"two"]
    assert b.receive_open_data(wire[100:]) == [bytes(70_000)]
    assert not b.has_events and b.buffered == 0
    assert b.receive_open_data(b"") is None  # the end of the stream: receive_data's job
    # A framing error: no messages, the ProtocolError event as receive_data gives it.
    assert b.receive_open_data(struct.pack(">I", 0xFFFF_FFFF) + bytes(8)) == []
    [err] = errors(b)
    assert "exceeds" in err.reason
    assert b.receive_open_data(b"more") is None  # closed now
    # Not open yet: not applicable.
    fresh = StreamConnection(alice(), "tcp")
    assert fresh.receive_open_data(b"x") is None


def test_encrypt_open_is_send_message_in_one_buffer() -> None:
    a, b = pair("tcp")
    framed = a.encrypt_open(b"hello")
    assert framed is not None and a.data_to_send() == []
    b.receive_data(framed)
    assert drain(b) == [MessageReceived(b"hello")]
    a.send_message(b"queued")  # something waiting in data_to_send: not applicable
    assert a.encrypt_open(b"later") is None
    a.data_to_send()
    with pytest.raises(LocalProtocolError):
        a.encrypt_open(b"")  # our own bad message, as send_message says
    assert StreamConnection(alice(), "tcp").encrypt_open(b"x") is None
