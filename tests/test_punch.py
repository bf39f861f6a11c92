"""The direct upgrade of a routed QUIC session (hole punching, docs/quic.md §11.13): the
sans-I/O state machine, schedule and back-off, a listener dialling from its own socket, and
Nodes in one event loop on loopback (a direct source, a router, an indirect target): the
circuit session upgrades to a direct one while messages keep flowing, none lost or
duplicated; with sharing refused by either end, or the direct path failing, it stays routed.
Every wait is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hnet import limits
from hnet.core.handshake import PeerHandshake
from hnet.core.punch import (
    PUNCH_DATAGRAM,
    SOURCE_TRANSITIONS,
    TARGET_TRANSITIONS,
    Punch,
    PunchBackoff,
    PunchEvent,
    PunchRole,
    PunchState,
    PunchStateError,
    punch_delays,
)
from hnet.core.quic import backend as qb
from hnet.core.wire import ResponseMessage
from hnet.node import Node
from hnet.testing.harness import Net, hello, until
from hnet.transport.quic.circuit import CircuitSession
from hnet.transport.quic.transport import QuicListener, QuicSession

ALL = ("quic", "tcp", "ws")

# --- sans-I/O -----------------------------------------------------------------------------------


def test_source_dials_once_it_has_both_the_address_and_the_routed_session() -> None:
    for first, second in (
        (PunchEvent.ADDRESS, PunchEvent.SESSION_UP),
        (PunchEvent.SESSION_UP, PunchEvent.ADDRESS),
    ):
        p = Punch(PunchRole.SOURCE, "x.os")
        if first is PunchEvent.ADDRESS:
            p.addressed("192.0.2.1", 4433)
        else:
            p.fire(first)
        assert not p.must_dial
        if second is PunchEvent.ADDRESS:
            p.addressed("192.0.2.1", 4433)
        else:
            p.fire(second)
        assert p.must_dial and p.address == ("192.0.2.1", 4433)
        # the circuit ending does not stop a running dial
        assert p.fire(PunchEvent.CIRCUIT_GONE) is PunchState.DIALLING
        assert p.fire(PunchEvent.DIAL_OK) is PunchState.DIRECT and p.done
        # terminal: late events change nothing
        assert p.fire(PunchEvent.CIRCUIT_GONE) is PunchState.DIRECT


def test_source_failure_and_events_out_of_place() -> None:
    p = Punch(PunchRole.SOURCE, "x.os")
    p.fire(PunchEvent.SESSION_UP)
    p.addressed("192.0.2.1", 1)
    assert p.fire(PunchEvent.DIAL_FAILED) is PunchState.FAILED
    q = Punch(PunchRole.SOURCE, "x.os")
    with pytest.raises(PunchStateError):
        q.fire(PunchEvent.DIAL_OK)  # no dial ran
    with pytest.raises(PunchStateError):
        q.fire(PunchEvent.DIRECT_UP)  # a target's event
    assert Punch(PunchRole.SOURCE, "x").fire(PunchEvent.CIRCUIT_GONE) is PunchState.GONE


def test_target_punches_on_address_and_ends_direct_or_failed() -> None:
    t = Punch(PunchRole.TARGET, "a.os")
    assert t.addressed("198.51.100.2", 5000) is PunchState.PUNCHING and not t.must_dial
    assert t.fire(PunchEvent.CIRCUIT_GONE) is PunchState.PUNCHING
    assert t.fire(PunchEvent.DIRECT_UP) is PunchState.DIRECT
    u = Punch(PunchRole.TARGET, "a.os")
    u.addressed("198.51.100.2", 5000)
    assert u.fire(PunchEvent.EXPIRED) is PunchState.FAILED
    with pytest.raises(PunchStateError):
        Punch(PunchRole.TARGET, "a.os").fire(PunchEvent.SESSION_UP)


def test_tables_only_name_known_states_and_terminal_states_have_no_exits() -> None:
    for table in (SOURCE_TRANSITIONS, TARGET_TRANSITIONS):
        for (state, event), new in table.items():
            assert isinstance(state, PunchState) and isinstance(event, PunchEvent)
            assert state not in (PunchState.DIRECT, PunchState.FAILED, PunchState.GONE)
            assert isinstance(new, PunchState)


def test_schedule_is_bounded_and_the_datagram_is_not_quic() -> None:
    delays = punch_delays()
    assert delays[0] == 0 and all(d >= 0 for d in delays)
    assert len(delays) == len(limits.PUNCH_SCHEDULE) <= 8
    assert sum(delays) == pytest.approx(limits.PUNCH_SCHEDULE[-1]) and sum(delays) < 3
    assert PUNCH_DATAGRAM[0] & 0x40 == 0  # QUIC's fixed bit clear: every endpoint drops it
    for name in qb.BACKENDS:
        assert qb.get_backend(name).parse_header(PUNCH_DATAGRAM) is None


def test_backoff_forgets_after_its_period_and_is_bounded() -> None:
    b = PunchBackoff(backoff=10, max_size=2)
    assert b.allowed("a", 0)
    b.failed("a", 100)
    assert not b.allowed("a", 105) and b.allowed("a", 110)
    b.failed("a", 200)
    b.succeeded("a")
    assert b.allowed("a", 201)
    for i, n in enumerate("xyz"):
        b.failed(n, 300 + i)
    assert b.allowed("x", 301) and not b.allowed("z", 303)  # x was forgotten (bound 2)


# --- a listener dialling from its own socket -------------------------------------------------


async def test_listener_dials_from_its_own_port(tmp_path: Path) -> None:
    """A client connection from a QuicListener's socket: the server sees the listener's port,
    and the listener keeps accepting beside it."""
    net = Net(tmp_path)
    try:
        net.direct("a.os", ALL)
        net.direct("b.os", ALL)
        a = await net.node("a.os")
        b = await net.node("b.os")
        la = a.quic_listener()
        assert la is not None
        port = b.listening["quic"][1]
        hs = PeerHandshake(
            initiator=True,
            our_name="a.os",
            signing_key=net.keys["a.os"],
            lookup=a.pki.networking_key,
            expected_peer="b.os",
        )
        async with asyncio.timeout(5):
            s = await la.connect("127.0.0.1", port, hs)
        assert isinstance(s, QuicSession) and s.peer_name == "b.os"
        await until(lambda: b.peers.session("a.os") is not None, what="b sees a")
        seen = b.peers.session("a.os")
        assert isinstance(seen, QuicSession) and seen.remote_address is not None
        assert seen.remote_address[1] == la.address[1]
        s.abort("done")
        # a punch datagram to a listener is dropped silently
        la.send_datagram(PUNCH_DATAGRAM, ("127.0.0.1", port))
        assert (await hello(a, "b.os", "quic", timeout=5)).via == "quic"
    finally:
        await net.close()


# --- nodes ---------------------------------------------------------------------------------------


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def trio(net: Net, *, a_share: bool = True, c_share: bool = True) -> tuple[Node, Node, Node]:
    net.direct("a.os", ALL)
    net.direct("r.os", ALL)
    net.indirect("c.os", ["r.os"])
    a = await net.node("a.os", share_address=a_share)
    r = await net.node("r.os", max_passthroughs=8)
    c = await net.node("c.os", share_address=c_share)
    await until(lambda: r.peers.routing_for("c.os") is not None, what="c.os routed by r.os")
    return a, r, c


def _path(node: Node, peer: str) -> str | None:
    return {i.name: i for i in node.peers.infos()}[peer].path


async def test_routed_session_upgrades_to_direct_without_loss_or_duplication(net: Net) -> None:
    a, r, c = await trio(net)
    # hellos go out one after the other from the first (which opens the circuit), while the
    # upgrade happens under them
    bodies = [f"m{i}".encode() for i in range(60)]

    async def send(body: bytes) -> bytes:
        reply = await hello(a, "c.os", "quic", timeout=10, body=body)
        msg = reply.message.message
        assert isinstance(msg, ResponseMessage)
        return body

    async def spaced() -> list[bytes]:
        out = []
        for body in bodies:
            out.append(await send(body))
            await asyncio.sleep(0.01)
        return out

    before = c.net.hellos
    async with asyncio.timeout(20):
        done = await asyncio.gather(spaced(), until(lambda: _path(a, "c.os") == "direct"))
    assert done[0] == bodies
    assert c.net.hellos - before == len(bodies)  # each delivered exactly once
    direct = a.peers.session("c.os")
    assert isinstance(direct, QuicSession) and not isinstance(direct, CircuitSession)
    hop = a.peers.session("r.os")
    assert isinstance(hop, QuicSession) and not hop.own_socket  # dialled from a's listener
    assert direct.router is None and direct.initiator
    info = {i.name: i for i in a.peers.infos()}["c.os"]
    assert (info.transport, info.router, info.path) == ("quic", None, "direct")
    await until(lambda: _path(c, "a.os") == "direct", what="c on the direct session")
    assert a.puncher.stats == {"tried": 1, "succeeded": 1, "failed": 0}
    assert c.puncher.stats["succeeded"] == 1
    assert "direct upgrades (on): tried 1, succeeded 1" in a.diagnostics()
    # the routed session carried the first messages and was retired, not cut (it closes
    # after its grace period)
    peer = a.peers.get("c.os")
    assert peer is not None
    retired = [s for s in peer.retired if isinstance(s, CircuitSession)]
    assert len(retired) == 1 and retired[0].messages_out >= 1 and not retired[0].closed
    relayed = r.circuits.router.stats["relayed_streams"]  # type: ignore[union-attr]
    for _ in range(5):
        assert (await hello(a, "c.os", timeout=5)).via == "quic"
        assert (await hello(c, "a.os", timeout=5)).via == "quic"
    assert r.circuits.router.stats["relayed_streams"] == relayed  # type: ignore[union-attr]


@pytest.mark.parametrize("who", ["source", "target"])
async def test_either_end_refusing_to_share_keeps_it_routed(net: Net, who: str) -> None:
    a, _r, c = await trio(net, a_share=who != "source", c_share=who != "target")
    for _ in range(3):
        assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    await asyncio.sleep(0.3)  # an upgrade, if one were tried, would be up by now on loopback
    assert _path(a, "c.os") == "routed" and _path(c, "a.os") == "routed"
    assert a.puncher.stats["tried"] == 0 and c.puncher.stats["tried"] == 0


async def test_a_failed_punch_stays_routed_and_backs_off(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _r, c = await trio(net)
    a.puncher.dial_timeout = 0.3

    c_socket = c.quic_listener()
    assert c_socket is not None
    c_port = c_socket.address[1]
    real = QuicListener.connect

    async def blocked(self: QuicListener, host: str, port: int, hs: PeerHandshake) -> QuicSession:
        if port == c_port:
            await asyncio.sleep(10)  # the direct path drops everything
        return await real(self, host, port, hs)

    monkeypatch.setattr(QuicListener, "connect", blocked)
    assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    await until(lambda: a.puncher.stats["failed"] == 1, what="the punch failed")
    for _ in range(3):
        assert (await hello(a, "c.os", timeout=5)).via == "quic"
    assert _path(a, "c.os") == "routed"
    assert not a.puncher.share("c.os")  # backed off
    assert a.puncher.stats == {"tried": 1, "succeeded": 0, "failed": 1}


async def test_a_hop_on_a_socket_of_its_own_does_not_consent(net: Net) -> None:
    """a reached r.os by a plain dial first (a socket of its own, not the listener's): r would
    observe a port a's punch cannot use, so a does not ask for addresses on that hop."""
    a, _r, _c = await trio(net)
    assert (await hello(a, "r.os", "quic", timeout=10)).via == "quic"
    hop = a.peers.session("r.os")
    assert isinstance(hop, QuicSession) and hop.own_socket
    for _ in range(3):
        assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    assert a.peers.session("r.os") is hop  # the circuit went over that hop
    await asyncio.sleep(0.3)
    assert _path(a, "c.os") == "routed" and a.puncher.stats["tried"] == 0
