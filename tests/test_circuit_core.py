"""The circuit core (docs/quic.md §11), sans-I/O: requests, replay cache, frames, router table.

Every check must fail closed with the code the spec names; every bound must hold under floods.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

from hnet import keys, limits
from hnet.core import relay
from hnet.core.circuit import actions as ac
from hnet.core.circuit import frames as fr
from hnet.core.circuit import states as st
from hnet.core.circuit import table as tb
from hnet.core.circuit.control import ControlReader, ControlRole
from hnet.core.circuit.errors import (
    CircuitCode,
    CircuitError,
    CircuitRefused,
    CircuitStateError,
    Origin,
)
from hnet.core.circuit.numbers import StreamNumbers
from hnet.core.circuit.replay import ReplayGuard
from hnet.core.circuit.request import (
    SIGNING_CONTEXT,
    CircuitFields,
    CircuitRequest,
    check_offer,
    check_request,
    decode,
    encode,
    new_request,
    sign,
    verify,
)
from hnet.core.noise import CipherState
from hnet.core.quic.streams import MessageSealer

T0 = 1_700_000_000.0
W = limits.CIRCUIT_REQUEST_WINDOW
NAMES = ("alice.os", "bob.os", "carol.os", "x.os", "r.os", "r2.os")
KEYS = {name: keys.from_seed(bytes([i + 1]) * 32) for i, name in enumerate(NAMES)}
PUB = {name: keys.public_bytes(k) for name, k in KEYS.items()}


def req(
    source: str = "alice.os",
    target: str = "x.os",
    router: str = "r.os",
    now: float = T0,
    nonce: bytes | None = None,
) -> CircuitRequest:
    return new_request(source, KEYS[source], target=target, router=router, now=now, nonce=nonce)


def replace(r: CircuitRequest, **changes: object) -> CircuitRequest:
    fields = {f: getattr(r, f) for f in CircuitRequest.__dataclass_fields__}
    fields.update(changes)
    return CircuitRequest(**fields)  # type: ignore[arg-type]


# --- CircuitRequest bytes -----------------------------------------------------------------------


def test_round_trip_and_layout() -> None:
    r = req(nonce=bytes(range(16)))
    data = encode(r)
    assert decode(data) == r
    assert data[:10] == b"\x01\x08alice.os"
    assert data[10:20] == b"\x04x.os\x04r.os"
    assert struct.unpack_from(">Q", data, 20)[0] == int(T0)
    assert data[28:44] == bytes(range(16))
    assert data[44:] == r.signature and len(r.signature) == 64
    assert len(data) == 1 + 9 + 5 + 5 + 8 + 16 + 64


def test_largest_request_is_the_cap() -> None:
    long = ".".join(["a" * 63] * 4)  # 255 bytes
    assert len(long) == limits.CIRCUIT_NAME_MAX
    fields = CircuitFields(1, long, long[:-1] + "b", long[:-1] + "c", 2**64 - 1, b"\xff" * 16)
    r = sign(fields, KEYS["alice.os"])
    data = encode(r)
    assert len(data) == limits.CIRCUIT_REQUEST_MAX == 857
    assert decode(data) == r
    assert verify(r, PUB["alice.os"])


def test_every_truncation_and_extension_is_refused() -> None:
    data = encode(req())
    for n in range(len(data)):  # bounded: 107 prefixes
        with pytest.raises(CircuitError):
            decode(data[:n])
    with pytest.raises(CircuitError, match="after the names"):
        decode(data + b"\x00")
    with pytest.raises(CircuitError, match="at most 857"):
        decode(b"\x01" + b"\xff" * limits.CIRCUIT_REQUEST_MAX)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00", "empty source"),
        (b"\x01\xff" + b"a" * 10, "overruns"),
        (b"\x01\x05Alice" + b"\x00" * 100, "not a node name"),
        (b"\x01\x05a..os" + b"\x00" * 100, "not a node name"),
        (b"\x01\x05al\xc3\xa9e" + b"\x00" * 100, "not ASCII"),
        (b"\x01\x04a.os\x00", "empty target"),
    ],
)
def test_bad_fields_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(CircuitError, match=match) as e:
        decode(data)
    assert e.value.code is CircuitCode.MALFORMED


def test_bad_version_has_its_own_code() -> None:
    data = bytearray(encode(req()))
    data[0] = 2
    with pytest.raises(CircuitError) as e:
        decode(bytes(data))
    assert e.value.code is CircuitCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    "change",
    [
        {"source": "a" * 256},
        {"target": "X.os"},
        {"router": ""},
        {"nonce": b"\x00" * 15},
        {"timestamp": -1},
        {"timestamp": 2**64},
        {"signature": b"\x00" * 63},
        {"version": 0},
    ],
)
def test_encode_refuses_out_of_range_fields(change: dict[str, object]) -> None:
    with pytest.raises(CircuitError):
        encode(replace(req(), **change))


# --- signatures -----------------------------------------------------------------------------------


def test_signature_checks() -> None:
    r = req()
    assert verify(r, PUB["alice.os"])
    assert not verify(r, PUB["bob.os"])  # wrong key
    assert not verify(replace(r, target="bob.os"), PUB["alice.os"])  # re-targeted
    assert not verify(replace(r, router="r2.os"), PUB["alice.os"])  # another router
    assert not verify(replace(r, timestamp=r.timestamp + 1), PUB["alice.os"])
    assert not verify(replace(r, nonce=os.urandom(16)), PUB["alice.os"])
    assert not verify(replace(r, source="bob.os"), PUB["alice.os"])
    assert not verify(replace(r, nonce=b"short"), PUB["alice.os"])  # unencodable: False


def test_signature_is_domain_separated() -> None:
    r = req()
    key = KEYS["alice.os"]
    # The same fields signed without the context do not verify ...
    assert not verify(replace(r, signature=key.sign(r.fields.body())), PUB["alice.os"])
    # ... nor does the RoutingRequest signature over the same target and router.
    rr = relay.build("alice.os", key, target="x.os", router="r.os")
    assert not verify(replace(r, signature=rr.signature), PUB["alice.os"])
    # and a circuit signature is no RoutingRequest signature.
    assert not keys.verify(PUB["alice.os"], r.signature, relay.signed_bytes("x.os", "r.os"))
    assert SIGNING_CONTEXT[4:5] == b" "
    smallest = CircuitFields(1, "a", "b", "c", 0, bytes(16)).signed_bytes()
    assert len(smallest) == 54 > 32


# --- the router's and target's checks -------------------------------------------------------------


def router_check(r: CircuitRequest, *, peer: str = "alice.os", now: float = T0, guard=None):
    return check_request(
        r,
        router="r.os",
        peer=peer,
        source_key=PUB.get(r.source),
        now=now,
        guard=ReplayGuard() if guard is None else guard,
    )


@pytest.mark.parametrize(
    ("r", "peer", "code"),
    [
        (req(router="r2.os"), "alice.os", CircuitCode.WRONG_ROUTER),
        (req(), "bob.os", CircuitCode.WRONG_SOURCE),
        (req(target="alice.os"), "alice.os", CircuitCode.MALFORMED),
        (req(target="r.os"), "alice.os", CircuitCode.MALFORMED),
        (req(now=T0 - W - 1), "alice.os", CircuitCode.STALE),
        (req(now=T0 + W + 1), "alice.os", CircuitCode.STALE),
        (replace(req(), target="bob.os"), "alice.os", CircuitCode.BAD_SIGNATURE),
        (replace(req(), signature=bytes(64)), "alice.os", CircuitCode.BAD_SIGNATURE),
    ],
)
def test_router_refuses(r: CircuitRequest, peer: str, code: CircuitCode) -> None:
    with pytest.raises(CircuitRefused) as e:
        router_check(r, peer=peer)
    assert e.value.code is code


def test_router_refuses_unknown_source_and_replay() -> None:
    guard = ReplayGuard()
    r = req()
    with pytest.raises(CircuitRefused) as e:
        check_request(r, router="r.os", peer="alice.os", source_key=None, now=T0, guard=guard)
    assert e.value.code is CircuitCode.UNKNOWN_SOURCE
    router_check(r, guard=guard)  # accepted once ...
    with pytest.raises(CircuitRefused) as e:
        router_check(r, guard=guard, now=T0 + 5)  # ... and never again within the window
    assert e.value.code is CircuitCode.REPLAY
    with pytest.raises(CircuitRefused) as e:
        router_check(r, guard=guard, now=T0 + W + 1)  # after it: stale
    assert e.value.code is CircuitCode.STALE
    assert router_check(req(now=T0 + W), guard=guard, now=T0) is None  # the window's edge


def target_check(r: CircuitRequest, *, router: str = "r.os", routers=("r.os",), guard=None):
    return check_offer(
        r,
        our_name="x.os",
        router=router,
        our_routers=routers,
        source_key=PUB.get(r.source),
        now=T0,
        guard=ReplayGuard() if guard is None else guard,
    )


def test_target_checks() -> None:
    guard = ReplayGuard()
    r = req()
    assert target_check(r, guard=guard) is None
    cases = [
        (r, {"guard": guard}, CircuitCode.REPLAY),  # a router replaying an offer
        (req(target="bob.os"), {}, CircuitCode.WRONG_TARGET),  # re-targeted to us
        (req(router="r2.os"), {}, CircuitCode.WRONG_ROUTER),  # not through this router
        (req(router="r2.os"), {"router": "r2.os"}, CircuitCode.WRONG_ROUTER),  # not our router
        (
            replace(req(), router="r2.os"),
            {"router": "r2.os", "routers": ("r2.os",)},
            CircuitCode.BAD_SIGNATURE,
        ),  # a router rewriting the request to name itself
        (req(source="r.os"), {}, CircuitCode.MALFORMED),
        (req(now=T0 - W - 1), {}, CircuitCode.STALE),
    ]
    for request, kwargs, code in cases:
        with pytest.raises(CircuitRefused) as e:
            target_check(request, **kwargs)
        assert e.value.code is code, (request, kwargs)


# --- the replay cache -----------------------------------------------------------------------------


def test_replay_guard_window_edges_and_future() -> None:
    g = ReplayGuard(window=60)
    g.check("a", b"1" * 16, int(T0) - 60, T0)
    g.check("a", b"2" * 16, int(T0) + 60, T0)
    for ts in (int(T0) - 61, int(T0) + 61):
        with pytest.raises(CircuitRefused) as e:
            g.check("a", b"3" * 16, ts, T0)
        assert e.value.code is CircuitCode.STALE
    assert len(g) == 2
    # The same nonce from another source is another key.
    g.check("b", b"1" * 16, int(T0), T0)
    assert len(g) == 3


def test_replay_guard_flood_stays_bounded_and_expires() -> None:
    g = ReplayGuard(window=60, capacity=16_384, per_source=256)
    now = T0
    accepted = refused = 0
    for i in range(100_000):  # 1,000 sources, a request every millisecond
        now = T0 + i / 1000
        try:
            g.check(f"s{i % 1000}", i.to_bytes(16, "big"), int(now), now)
            accepted += 1
        except CircuitRefused as e:
            assert e.code in (CircuitCode.SOURCE_LIMIT, CircuitCode.STALE)
            refused += 1
        assert len(g) <= 16_384
    assert g.buckets <= 2 * 60 + 2
    assert accepted + refused == 100_000 and accepted > 50_000
    # every entry is younger than the window, and everything older has expired
    assert g.low >= int(now) - 60
    g.expire(now + 61)
    assert len(g) == 0 and g.buckets == 0 and g.count("s1") == 0


def test_replay_guard_full_cache_never_forgets_then_accepts() -> None:
    g = ReplayGuard(window=60, capacity=100, per_source=100)
    for i in range(100):
        g.check("a", i.to_bytes(16, "big"), int(T0) - 10, T0)
    assert len(g) == 100
    g.check("b", b"\xff" * 16, int(T0), T0)  # full: the oldest second is dropped ...
    assert len(g) == 1 and g.low == int(T0) - 9
    with pytest.raises(CircuitRefused) as e:  # ... and refused from now on
        g.check("a", (5).to_bytes(16, "big"), int(T0) - 10, T0)
    assert e.value.code is CircuitCode.STALE
    # A clock stepped back cannot reopen it either.
    with pytest.raises(CircuitRefused):
        g.check("a", (5).to_bytes(16, "big"), int(T0) - 10, T0 - 30)


def test_replay_guard_one_source_cannot_raise_the_floor_for_others() -> None:
    g = ReplayGuard(window=60, capacity=1_000, per_source=10)
    for i in range(5_000):  # one source floods
        try:
            g.check("mallory", i.to_bytes(16, "big"), int(T0), T0)
        except CircuitRefused as e:
            assert e.code is CircuitCode.SOURCE_LIMIT
    assert g.count("mallory") == 10 and len(g) == 10
    g.check("alice", b"a" * 16, int(T0) - 50, T0)  # an honest, slightly slow clock
    assert g.count("alice") == 1


# --- frames ---------------------------------------------------------------------------------------


def test_openings_are_unambiguous() -> None:
    # Every message stream starts with frame 0's prefix, 00 14, whatever the message.
    for size in (1, 65_519, 65_520, 200_000):
        wire = MessageSealer(CipherState(bytes(32)), b"m" * size).next_frames(1)
        assert wire[:2] == fr.MESSAGE_OPENING
        assert fr.classify_opening(wire[:2]) == (fr.StreamKind.MESSAGE, 0)
    assert fr.classify_opening(b"\x00\x00\x01") == (fr.StreamKind.CONTROL, 3)
    assert fr.classify_opening(b"\x00\x00\x02\xaa") == (fr.StreamKind.RELAY, 3)
    assert fr.classify_opening(b"\x00") is None
    assert fr.classify_opening(b"\x00\x00") is None
    for bad in (b"\x00\x15", b"\x00\x11", b"\xff\xff", b"\x00\x00\x00", b"\x00\x00\x03"):
        with pytest.raises(CircuitError):
            fr.classify_opening(bad)


def test_relay_header_round_trip_and_tamper() -> None:
    key = bytes(range(32))
    wire = fr.seal_relay_header(CipherState(key), 7, 12)
    assert wire[:3] == fr.RELAY_OPENING and len(wire) == 3 + fr.RELAY_HEADER_LEN == 37
    assert fr.decode_relay_header(CipherState(key), wire[3:]) == (7, 12)
    tampered = bytearray(wire[3:])
    tampered[5] ^= 1  # the router (or a hop MITM) changes the stream number
    with pytest.raises(CircuitError, match="authenticate"):
        fr.decode_relay_header(CipherState(key), bytes(tampered))
    with pytest.raises(CircuitError, match="length"):
        fr.decode_relay_header(CipherState(key), wire[3:-1])


CONTROL_FRAMES: list[fr.ControlFrame] = [
    fr.RequestFrame(fr.SHARE_ADDRESS, req()),
    fr.OfferFrame(3, 0, req()),
    fr.AcceptFrame(3, fr.SHARE_ADDRESS),
    fr.RefuseFrame(CircuitCode.BUSY, Origin.ROUTER, "full"),
    fr.CloseFrame(CircuitCode.IDLE, Origin.PEER, "é" * 200),  # cut to 255 bytes, whole chars
    fr.AddressFrame("192.0.2.7", 4433),
    fr.AddressFrame("2001:db8::1", 1),
]


def test_control_frames_round_trip() -> None:
    for frame in CONTROL_FRAMES:
        data = fr.encode_control(frame)
        assert len(data) <= limits.CIRCUIT_CONTROL_FRAME_MAX
        back = fr.decode_control(data)
        if isinstance(frame, fr.CloseFrame):
            assert back == fr.CloseFrame(frame.code, frame.origin, "é" * 127)
        else:
            assert back == frame
        for n in range(len(data)):  # bounded: every truncation fails
            with pytest.raises(CircuitError):
                fr.decode_control(data[:n])
    with pytest.raises(CircuitError, match="flags"):
        fr.decode_control(b"\x03" + (1).to_bytes(8, "big") + b"\x02")
    with pytest.raises(CircuitError, match="unknown"):
        fr.decode_control(b"\x04\x00\x63\x00\x00")  # code 99


def sealed(frames_: list[fr.ControlFrame], key: bytes = bytes(32)) -> bytes:
    c = CipherState(key)
    return b"".join(fr.seal_control(c, f) for f in frames_)


def test_control_reader_order_and_bounds() -> None:
    accept, close = fr.AcceptFrame(1, 0), fr.CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "")
    r = ControlReader(CipherState(bytes(32)), ControlRole.TARGET)
    wire = sealed([accept, close])
    assert r.feed(wire[:5]) == []  # byte by byte is fine
    assert r.feed(wire[5:]) == [accept, close]
    assert r.ended and r.feed(b"", fin=True) == []
    # out of order: OFFER on the target's half; a second ACCEPT; bytes after CLOSE
    for role, seq in [
        (ControlRole.TARGET, [fr.OfferFrame(1, 0, req())]),
        (ControlRole.TARGET, [accept, accept]),
        (ControlRole.SOURCE, [fr.RequestFrame(0, req()), close, close]),
        (ControlRole.ROUTER_TO_SOURCE, [fr.AddressFrame("192.0.2.1", 9)]),
    ]:
        with pytest.raises(CircuitError):
            ControlReader(CipherState(bytes(32)), role).feed(sealed(seq))
    # a length above the cap is refused on its 2-byte prefix, before anything is buffered
    with pytest.raises(CircuitError, match="control frame of"):
        ControlReader(CipherState(bytes(32)), ControlRole.TARGET).feed(b"\xff\xff")
    # wrong key: authentication fails
    with pytest.raises(CircuitError, match="authenticate"):
        ControlReader(CipherState(bytes(31) + b"\x01"), ControlRole.TARGET).feed(wire)
    # FIN before the first frame; FIN inside a frame; FIN after ACCEPT reads as CLOSE NO_ERROR
    with pytest.raises(CircuitError, match="before its first frame"):
        ControlReader(CipherState(bytes(32)), ControlRole.TARGET).feed(b"", fin=True)
    with pytest.raises(CircuitError, match="inside a frame"):
        ControlReader(CipherState(bytes(32)), ControlRole.TARGET).feed(wire[:9], fin=True)
    got = ControlReader(CipherState(bytes(32)), ControlRole.TARGET).feed(sealed([accept]), fin=True)
    assert got == [accept, fr.CloseFrame(CircuitCode.NO_ERROR, Origin.PEER, "FIN")]


def test_stream_numbers_refuse_reuse_with_bounded_memory() -> None:
    n = StreamNumbers(0, max_open=17)
    for number in (8, 0, 4, 12):  # out of order is fine
        n.accept(number)
    for bad in (0, 8, 5, 13):  # reused, or the other end's kind
        with pytest.raises(CircuitError) as e:
            n.accept(bad)
        assert e.value.code is CircuitCode.PROTOCOL_VIOLATION
    n.accept(16 + 4 * 17)  # skips 17 numbers: the most that may be outstanding
    assert n.outstanding == 17
    with pytest.raises(CircuitError, match="skips"):
        n.accept(2**62 - 4)  # refused before anything is allocated for the gap
    for number in range(16, 16 + 4 * 17, 4):
        n.accept(number)
    assert n.outstanding == 0
    t = StreamNumbers(1, max_open=17)
    t.accept(1)
    with pytest.raises(CircuitError):
        t.accept(1)


# --- the router's table ---------------------------------------------------------------------------


def table(max_circuits: int = 64, **kw) -> tb.CircuitTable:
    return tb.CircuitTable("r.os", max_circuits, **kw)


def ask(
    t: tb.CircuitTable,
    source: str = "alice.os",
    target: str = "x.os",
    now: float = T0,
    flags: int = 0,
    connected: bool = True,
    wall: float | None = None,
) -> ac.Admitted | ac.Refused:
    """A fresh request made at ``now``; the router's clocks read ``now`` (monotonic) and
    ``wall`` (unix time, ``now`` unless given)."""
    return t.request(
        req(source, target, now=now if wall is None else wall),
        peer=source,
        source_key=PUB[source],
        target_connected=connected,
        now=now,
        wall=now if wall is None else wall,
        flags=flags,
    )


def open_circuit(
    t: tb.CircuitTable, source: str = "alice.os", target: str = "x.os", now: float = T0
) -> int:
    a = ask(t, source, target, now)
    assert isinstance(a, ac.Admitted), a
    t.offer_sent(a.circuit_id, now)
    t.accepted(a.circuit_id, 0, now)
    assert t.state(a.circuit_id) is st.CircuitState.OPEN
    return a.circuit_id


def test_every_illegal_transition_raises() -> None:
    legal = 0
    for state in st.CircuitState:
        for event in st.CircuitEvent:
            if (state, event) in st.TRANSITIONS:
                assert st.transition(state, event) is st.TRANSITIONS[(state, event)]
                legal += 1
            else:
                with pytest.raises(CircuitStateError):
                    st.transition(state, event)
    assert legal == 11
    assert not any(s is st.CircuitState.CLOSED for s, _ in st.TRANSITIONS)  # terminal


def test_out_of_order_events_raise_through_the_table() -> None:
    t = table()
    a = ask(t)
    assert isinstance(a, ac.Admitted)
    with pytest.raises(CircuitStateError):
        t.accepted(a.circuit_id, 0, T0)  # before the offer went out
    t.offer_sent(a.circuit_id, T0)
    with pytest.raises(CircuitStateError):
        t.offer_sent(a.circuit_id, T0)
    t.accepted(a.circuit_id, 0, T0)
    with pytest.raises(CircuitStateError):
        t.accepted(a.circuit_id, 0, T0)  # a second ACCEPT
    with pytest.raises(CircuitStateError):
        t.refused(a.circuit_id, CircuitCode.BUSY, "", T0)  # REFUSE after ACCEPT
    t.end_closed(a.circuit_id, "alice.os", CircuitCode.NO_ERROR, "", T0)
    with pytest.raises(CircuitStateError):
        t.accepted(a.circuit_id, 0, T0)  # ACCEPT while closing
    t.end_finished(a.circuit_id, "alice.os", T0)
    t.end_finished(a.circuit_id, "x.os", T0)
    with pytest.raises(CircuitStateError):
        t.offer_sent(a.circuit_id, T0)  # closed


def test_life_of_a_circuit() -> None:
    t = table()
    a = ask(t, flags=fr.SHARE_ADDRESS)
    assert isinstance(a, ac.Admitted) and a.circuit_id == 1
    (offer,) = a.actions
    assert offer == ac.SendOffer(1, "x.os", fr.SHARE_ADDRESS, offer.request)
    t.offer_sent(1, T0)
    assert t.accepted(1, fr.SHARE_ADDRESS, T0 + 1) == [
        ac.SendAccept(1, "alice.os", fr.SHARE_ADDRESS),
        ac.ExchangeAddresses(1, "alice.os", "x.os"),
    ]
    assert t.open_stream(1, "alice.os", 0, T0 + 1).verdict is ac.Verdict.RELAY
    actions = t.end_closed(1, "x.os", CircuitCode.NO_ERROR, "bye", T0 + 2)
    assert actions == [
        ac.StopRelay(1),
        ac.SendClose(1, "alice.os", CircuitCode.NO_ERROR, Origin.PEER, "bye"),
        ac.FinishControl(1, "x.os"),
    ]
    assert t.state(1) is st.CircuitState.CLOSING and len(t) == 0 and t.closing == 1
    assert t.end_finished(1, "x.os", T0 + 2) == []
    assert t.end_finished(1, "alice.os", T0 + 2) == [ac.Release(1)]
    assert (
        t.state(1) is st.CircuitState.CLOSED and t.closing == 0 and t.circuits_of("alice.os") == 0
    )


def test_refusals_before_admission() -> None:
    assert ask(table(0)) == ac.Refused(CircuitCode.NOT_ROUTING, "this node routes no circuits")
    r = ask(table(), connected=False)
    assert isinstance(r, ac.Refused) and r.code is CircuitCode.NOT_ROUTING
    t = table()
    r = t.request(
        req(), peer="bob.os", source_key=PUB["alice.os"], target_connected=True, now=T0, wall=T0
    )
    assert isinstance(r, ac.Refused) and r.code is CircuitCode.WRONG_SOURCE
    assert len(t) == 0 and t.stats["refused"] == 1


def test_target_refusal_and_offer_timeout() -> None:
    t = table()
    a = ask(t)
    assert isinstance(a, ac.Admitted)
    t.offer_sent(a.circuit_id, T0)
    assert t.refused(a.circuit_id, CircuitCode.BUSY, "full", T0) == [
        ac.SendRefuse(a.circuit_id, "alice.os", CircuitCode.BUSY, Origin.PEER, "full"),
        ac.FinishControl(a.circuit_id, "x.os"),
    ]
    assert t.end_finished(a.circuit_id, "x.os", T0) == []  # the FIN behind its REFUSE
    assert t.end_finished(a.circuit_id, "alice.os", T0) == [ac.Release(a.circuit_id)]
    b = ask(t, now=T0 + 1)
    assert isinstance(b, ac.Admitted)
    t.offer_sent(b.circuit_id, T0 + 1)
    assert t.next_deadline() == T0 + 1 + limits.CIRCUIT_OFFER_TIMEOUT
    assert t.tick(T0 + 1 + limits.CIRCUIT_OFFER_TIMEOUT - 0.01) == []
    actions = t.tick(T0 + 1 + limits.CIRCUIT_OFFER_TIMEOUT)
    assert (
        ac.SendRefuse(
            b.circuit_id,
            "alice.os",
            CircuitCode.TIMEOUT,
            Origin.ROUTER,
            "the target did not answer",
        )
        in actions
    )
    assert any(isinstance(x, ac.SendClose) and x.to == "x.os" for x in actions)


def test_flood_from_one_source_does_not_stop_another() -> None:
    t = table(64)
    assert t.max_per_source == 16
    codes: dict[CircuitCode, int] = {}
    admitted = 0
    for i in range(2_000):  # bounded flood, each request fresh and validly signed
        r = ask(t, "alice.os", now=T0 + i / 100)
        if isinstance(r, ac.Admitted):
            admitted += 1
        else:
            codes[r.code] = codes.get(r.code, 0) + 1
    assert admitted == 16 and t.circuits_of("alice.os") == 16
    assert set(codes) == {CircuitCode.SOURCE_LIMIT} and sum(codes.values()) == 1_984
    # Others still get circuits, with slightly old clocks too.
    for name, skew in (("bob.os", 0), ("carol.os", -50)):
        b = ask(t, name, now=T0 + 20 + skew)
        assert isinstance(b, ac.Admitted), b
    assert len(t) == 18


def test_per_source_cap_is_at_most_half_the_total() -> None:
    t = table(4)
    assert t.max_per_source == 2
    assert all(isinstance(ask(t, "alice.os", now=T0 + i), ac.Admitted) for i in range(2))
    r = ask(t, "alice.os", now=T0 + 3)
    assert isinstance(r, ac.Refused) and r.code is CircuitCode.SOURCE_LIMIT
    assert isinstance(ask(t, "bob.os", now=T0 + 3), ac.Admitted)


def test_eviction_of_the_oldest_idle_circuit() -> None:
    t = table(4)
    ids = [
        open_circuit(t, "alice.os", now=T0),
        open_circuit(t, "alice.os", now=T0 + 1),
        open_circuit(t, "bob.os", now=T0 + 2),
        open_circuit(t, "bob.os", now=T0 + 3),
    ]
    # the first circuit is used again later: the second is now the least recently active
    assert t.open_stream(ids[0], "alice.os", 0, T0 + 10).verdict is ac.Verdict.RELAY
    # full, and nothing has been idle for CIRCUIT_EVICT_MIN_IDLE: refused
    r = ask(t, "carol.os", now=T0 + 20)
    assert isinstance(r, ac.Refused) and r.code is CircuitCode.BUSY
    a = ask(t, "carol.os", now=T0 + 1 + limits.CIRCUIT_EVICT_MIN_IDLE)
    assert isinstance(a, ac.Admitted)
    reason = "evicted for a new circuit"
    assert a.actions[:3] == (
        ac.StopRelay(ids[1]),
        ac.SendClose(ids[1], "alice.os", CircuitCode.EVICTED, Origin.ROUTER, reason),
        ac.SendClose(ids[1], "x.os", CircuitCode.EVICTED, Origin.ROUTER, reason),
    )
    assert t.state(ids[1]) is st.CircuitState.CLOSING
    assert [t.state(i) for i in (ids[0], ids[2], ids[3])] == [st.CircuitState.OPEN] * 3
    assert len(t) == 4 and t.stats["evicted"] == 1


def test_idle_expiry_then_close_timeout() -> None:
    t = table()
    cid = open_circuit(t)
    t.open_stream(cid, "alice.os", 0, T0 + 100)
    idle_at = T0 + 100 + limits.CIRCUIT_IDLE_TIMEOUT
    assert t.next_deadline() == idle_at
    assert t.tick(idle_at - 1) == []
    actions = t.tick(idle_at)
    assert actions == [
        ac.StopRelay(cid),
        ac.SendClose(cid, "alice.os", CircuitCode.IDLE, Origin.ROUTER, "idle"),
        ac.SendClose(cid, "x.os", CircuitCode.IDLE, Origin.ROUTER, "idle"),
    ]
    # the ends never finish: the record goes after the close timeout
    assert t.tick(idle_at + limits.CIRCUIT_CLOSE_TIMEOUT - 1) == []
    assert t.tick(idle_at + limits.CIRCUIT_CLOSE_TIMEOUT) == [ac.Release(cid)]
    assert t.get(cid) is None and t.next_deadline() is None


def test_connection_lost_closes_its_circuits() -> None:
    t = table()
    c1 = open_circuit(t, "alice.os")
    c2 = open_circuit(t, "bob.os")
    actions = t.connection_lost("x.os", T0 + 1)
    assert (
        ac.SendClose(c1, "alice.os", CircuitCode.PEER_GONE, Origin.ROUTER, "x.os disconnected")
        in actions
    )
    assert not any(getattr(x, "to", None) == "x.os" for x in actions)
    assert t.end_finished(c1, "alice.os", T0 + 1) == [ac.Release(c1)]
    assert t.connection_lost("bob.os", T0 + 1) == [ac.Release(c2)]
    assert len(t) == 0 and t.closing == 0


def test_relayed_stream_verdicts() -> None:
    t = table()
    a = ask(t)
    assert isinstance(a, ac.Admitted)
    cid = a.circuit_id
    assert t.open_stream(99, "alice.os", 0, T0).verdict is ac.Verdict.VIOLATION  # never issued
    assert t.open_stream(cid, "alice.os", 0, T0).verdict is ac.Verdict.VIOLATION  # not open yet
    t.offer_sent(cid, T0)
    t.accepted(cid, 0, T0)
    assert t.open_stream(cid, "bob.os", 0, T0).verdict is ac.Verdict.DISCARD  # not its circuit
    d = t.open_stream(cid, "x.os", 4, T0)  # the target's numbers are 1, 5, 9, ...
    assert d.verdict is ac.Verdict.DISCARD
    assert (
        ac.SendClose(
            cid,
            "alice.os",
            CircuitCode.PROTOCOL_VIOLATION,
            Origin.ROUTER,
            "stream number 4 from x.os",
        )
        in d.actions
    )
    assert t.open_stream(cid, "alice.os", 4, T0).verdict is ac.Verdict.DISCARD  # closing


def test_streams_per_circuit_limit() -> None:
    t = table()
    cid = open_circuit(t)
    n = limits.CIRCUIT_RELAY_STREAMS
    for i in range(n):
        assert t.open_stream(cid, "alice.os", 4 * i, T0).verdict is ac.Verdict.RELAY
        assert t.open_stream(cid, "x.os", 4 * i + 1, T0).verdict is ac.Verdict.RELAY
    assert t.open_streams(cid, "alice.os") == n == 17
    t.stream_done(cid, "alice.os", 0)  # one finishes: room for exactly one more
    assert t.open_stream(cid, "alice.os", 4 * n, T0).verdict is ac.Verdict.RELAY
    dup = t.open_stream(cid, "alice.os", 4, T0)
    assert dup.verdict is ac.Verdict.DISCARD
    assert any(getattr(x, "code", None) is CircuitCode.PROTOCOL_VIOLATION for x in dup.actions)
    t2 = table()
    cid2 = open_circuit(t2)
    for i in range(n):
        t2.open_stream(cid2, "alice.os", 4 * i, T0)
    over = t2.open_stream(cid2, "alice.os", 4 * n, T0)
    assert over.verdict is ac.Verdict.DISCARD
    assert (
        ac.SendClose(
            cid2,
            "x.os",
            CircuitCode.LIMIT_EXCEEDED,
            Origin.ROUTER,
            "alice.os opened more than 17 relayed streams",
        )
        in over.actions
    )


def test_bytes_in_flight_per_circuit() -> None:
    t = table()
    cid = open_circuit(t)
    small = limits.CIRCUIT_SMALL_STREAM_BYTES
    full, reserve = limits.CIRCUIT_MAX_BUFFERED, limits.CIRCUIT_SMALL_RESERVE
    assert (full, reserve, small) == (262_144, 131_118, 65_559)
    # Two large messages: their first small-sized part may use the whole budget ...
    for number in (0, 4):
        t.open_stream(cid, "alice.os", number, T0)
        assert t.room(cid, "alice.os", number) == small
        assert t.take(cid, "alice.os", number, small, T0) == []
        t.forwarded(cid, "alice.os", number, small, T0)
    # ... beyond it they are bulk: at most a stream buffer each, and never the reserve.
    assert t.room(cid, "alice.os", 0) == small
    assert t.take(cid, "alice.os", 0, small, T0) == []
    assert t.room(cid, "alice.os", 4) == full - reserve - small == 65_467
    assert t.take(cid, "alice.os", 4, 65_467, T0) == []
    assert t.buffered(cid) == full - reserve
    assert t.room(cid, "alice.os", 0) == t.room(cid, "alice.os", 4) == 0
    # Small messages in either direction still fit whole: two of them, exactly the reserve.
    t.open_stream(cid, "x.os", 1, T0)
    t.open_stream(cid, "alice.os", 8, T0)
    t.open_stream(cid, "alice.os", 12, T0)
    assert t.room(cid, "x.os", 1) == small
    assert t.take(cid, "x.os", 1, small, T0) == []
    assert t.room(cid, "alice.os", 8) == small
    assert t.take(cid, "alice.os", 8, small, T0) == []
    assert t.buffered(cid) == full and t.room(cid, "alice.os", 12) == 0
    # taking more than the room closes the circuit
    actions = t.take(cid, "alice.os", 12, 1, T0)
    assert actions[0] == ac.StopRelay(cid)
    assert [x.code for x in actions[1:]] == [CircuitCode.LIMIT_EXCEEDED] * 2  # type: ignore[union-attr]
    assert t.buffered(cid) == 0 and t.state(cid) is st.CircuitState.CLOSING


def test_forwarding_frees_room_and_counts_as_activity() -> None:
    t = table()
    cid = open_circuit(t)
    t.open_stream(cid, "alice.os", 0, T0)
    t.take(cid, "alice.os", 0, 1000, T0)
    assert t.room(cid, "alice.os", 0) == limits.CIRCUIT_STREAM_BUFFER - 1000
    with pytest.raises(ValueError):
        t.forwarded(cid, "alice.os", 0, 1001, T0)
    t.forwarded(cid, "alice.os", 0, 1000, T0 + 500)
    assert t.buffered(cid) == 0
    assert t.next_deadline() == T0 + 500 + limits.CIRCUIT_IDLE_TIMEOUT


def test_closing_records_are_bounded() -> None:
    t = table(2)
    for i in range(50):  # open and close in a loop, the ends never finishing
        cid = open_circuit(t, ("alice.os", "bob.os")[i % 2], now=T0 + i)
        t.end_closed(cid, "x.os", CircuitCode.NO_ERROR, "", T0 + i)
        assert t.closing <= t.max_closing == 2
    assert len(t) == 0


def test_close_all() -> None:
    t = table()
    open_circuit(t)
    pending = ask(t, "bob.os")
    assert isinstance(pending, ac.Admitted)
    actions = t.close_all(T0)
    assert (
        ac.SendRefuse(
            pending.circuit_id, "bob.os", CircuitCode.GOING_AWAY, Origin.ROUTER, "router stopping"
        )
        in actions
    )
    assert len(t) == 0 and t.closing == 2


def test_table_memory_does_not_grow_with_churn() -> None:
    t = table(8)
    for i in range(500):
        cid = open_circuit(t, NAMES[i % 3], now=T0 + i / 10)
        t.end_finished(cid, "x.os", T0 + i / 10)
        t.end_finished(cid, NAMES[i % 3], T0 + i / 10)
    assert len(t) == 0 and t.closing == 0
    assert t._by_end == {} and t._per_source == {}  # nothing left behind
    assert sys.getsizeof(t._circuits) < 1024


def test_freshness_uses_the_wall_clock_and_timers_the_monotonic_one() -> None:
    t = table()
    a = ask(t, now=5.0, wall=T0)  # monotonic 5 s, unix time T0
    assert isinstance(a, ac.Admitted)
    t.offer_sent(a.circuit_id, 5.0)
    assert t.next_deadline() == 5.0 + limits.CIRCUIT_OFFER_TIMEOUT
    # The wall clock steps back an hour. The replay cache fails closed: timestamps below its
    # floor stay refused until the clock is back where it was ...
    b = ask(t, "bob.os", now=6.0, wall=T0 - 3600)
    assert isinstance(b, ac.Refused) and b.code is CircuitCode.STALE
    assert "older than the replay cache remembers" in b.reason
    # ... while the table's timers, on the monotonic clock, are unaffected.
    expired = t.tick(5.0 + limits.CIRCUIT_OFFER_TIMEOUT)
    assert expired[0] == ac.SendRefuse(
        a.circuit_id, "alice.os", CircuitCode.TIMEOUT, Origin.ROUTER, "the target did not answer"
    )
    c = ask(t, "carol.os", now=20.0, wall=T0 + 10)
    assert isinstance(c, ac.Admitted)
    assert t.next_deadline() == 10.0 + limits.CIRCUIT_CLOSE_TIMEOUT  # a, closing since 10 s
    assert t.tick(20.0) == [ac.Release(a.circuit_id)]
    assert t.next_deadline() == 20.0 + limits.CIRCUIT_OFFER_TIMEOUT  # c's offer
