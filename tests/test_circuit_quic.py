"""Circuits (routed QUIC, docs/quic.md §11) between Nodes in one event loop over real
loopback sockets: a direct source reaching an indirect target through its router, messages
both ways, a large routed message beside a small one, requests the router must refuse, and
what the router sees. Every wait is bounded. The indirect target refuses to share its
address (``share_address=False``), so sessions stay routed (the direct upgrade is
tests/test_punch.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hnet.core.circuit.control import ControlRole
from hnet.core.circuit.errors import CircuitCode
from hnet.core.circuit.frames import (
    AcceptFrame,
    OfferFrame,
    RefuseFrame,
    StreamKind,
    seal_relay_header,
)
from hnet.core.circuit.request import new_request
from hnet.core.quic.connection import CircuitData
from hnet.core.wire import Address, ResponseMessage
from hnet.net.circuit_router import CircuitRouter
from hnet.node import Node
from hnet.testing.harness import Net, hello, until
from hnet.transport.quic.circuit import CircuitSession, ControlHalf
from hnet.transport.quic.transport import QuicSession

ALL = ("quic", "tcp", "ws")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def circuit_trio(net: Net, **a_kw: float) -> tuple[Node, Node, Node]:
    """a.os (direct), r.os (router of passthroughs and circuits), c.os (indirect behind r.os,
    connected to it over QUIC)."""
    net.direct("a.os", ALL)
    net.direct("r.os", ALL)
    net.indirect("c.os", ["r.os"])
    a = await net.node("a.os", **a_kw)
    r = await net.node("r.os", max_passthroughs=8)
    c = await net.node("c.os", share_address=False)
    await until(lambda: r.peers.routing_for("c.os") is not None, what="c.os routed by r.os")
    assert r.peers.session("c.os").transport == "quic"  # type: ignore[union-attr]
    return a, r, c


async def _hop(a: Node, router: str) -> QuicSession:
    """a's QUIC connection to ``router`` (dialled if needed)."""
    s = a.peers.session(router)
    if not isinstance(s, QuicSession):
        s = await a.dialler.dial(router, "quic")
        a.circuits.install(s)
        a.peers.adopt(s)
    assert isinstance(s, QuicSession)
    return s


async def test_routed_quic_session_carries_hellos_and_acks_both_ways(net: Net) -> None:
    a, r, c = await circuit_trio(net)
    reply = await hello(a, "c.os", "quic", timeout=10)
    msg = reply.message.message
    assert isinstance(msg, ResponseMessage) and msg.response.body == b"ack"
    assert reply.via == "quic" and reply.message.source.node == "c.os"
    # more hellos on the same circuit (no --via: the session that exists), and the way back
    for _ in range(3):
        assert (await hello(a, "c.os", timeout=10)).via == "quic"
    back = await hello(c, "a.os", timeout=10)
    assert back.via == "quic" and back.message.source.node == "a.os"
    # both ends hold a routed QUIC session naming the router; the router holds none with a
    # that carries a's messages to c: only its hop connection (a dialled it for the circuit)
    a_info = {i.name: i for i in a.peers.infos()}["c.os"]
    assert (a_info.transport, a_info.router, a_info.routing_for) == ("quic", "r.os", False)
    c_info = {i.name: i for i in c.peers.infos()}["a.os"]
    assert (c_info.transport, c_info.router) == ("quic", "r.os")
    assert isinstance(a.peers.session("c.os"), CircuitSession)
    assert c.peers.session("a.os").initiator is False  # type: ignore[union-attr]
    router = r.circuits.router
    assert router is not None and router.table.stats["admitted"] == 1
    assert len(router.table) == 1 and router.stats["relayed_streams"] >= 10
    assert r.net.hellos == 0  # the hellos went through r, not to it
    # the TCP/WS way still works beside it
    assert (await hello(a, "c.os", "tcp", timeout=10)).via == "tcp"


async def test_a_large_routed_message_does_not_delay_a_small_one(net: Net) -> None:
    a, _r, _c = await circuit_trio(net)
    await hello(a, "c.os", "quic", timeout=10)  # the circuit is up
    session = a.peers.session("c.os")
    assert isinstance(session, CircuitSession)
    done: list[str] = []

    async def req(label: str, body: bytes) -> None:
        reply = await a.request(Address.net("c.os"), body, timeout=30)
        assert isinstance(reply.message.message, ResponseMessage)
        done.append(label)

    big = asyncio.create_task(req("big", b"B" * 1_000_000))
    await until(lambda: session.core.inflight_bulk_streams > 0, what="bulk on its way")
    small = asyncio.create_task(req("small", b"small"))
    async with asyncio.timeout(30):
        await asyncio.gather(big, small)
    assert done == ["small", "big"]


async def test_the_router_relays_ciphertext_only(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    a, r, _c = await circuit_trio(net)
    seen: list[bytes] = []
    original = CircuitRouter.relay_data

    def spy(self: CircuitRouter, hop: QuicSession, sid: int, data: bytes, fin: bool) -> bool:
        seen.append(bytes(data))
        return original(self, hop, sid, data, fin)

    monkeypatch.setattr(CircuitRouter, "relay_data", spy)
    marker = b"plaintext-marker-0123456789"
    reply = await hello(a, "c.os", "quic", timeout=10, body=marker * 4)
    assert isinstance(reply.message.message, ResponseMessage)
    relayed = b"".join(seen)
    assert len(relayed) > len(marker) * 4  # the handshake, the hello and the ack went by
    assert marker not in relayed and b"ack" not in relayed and b"c.os" not in relayed
    assert r.circuits.router is not None and r.circuits.router.stats["relayed_bytes"] > 0


async def test_replayed_or_retargeted_requests_are_refused(net: Net) -> None:
    a, r, _c = await circuit_trio(net)
    net.direct("r2.os", ALL)
    await net.node("r2.os")
    hop = await _hop(a, "r.os")
    key = net.keys["a.os"]
    req = new_request("a.os", key, target="c.os", router="r.os", now=time.time())

    async def ask(request: object) -> AcceptFrame | RefuseFrame:
        async with asyncio.timeout(10):
            answer = await a.circuits.ask(hop, request)  # type: ignore[arg-type]
        assert isinstance(answer, (AcceptFrame, RefuseFrame))
        return answer

    assert isinstance(await ask(req), AcceptFrame)  # genuine: c accepts
    replayed = await ask(req)  # the same bytes again
    assert isinstance(replayed, RefuseFrame) and replayed.code is CircuitCode.REPLAY
    # re-targeted: another target in the signed fields breaks the signature
    fresh = new_request("a.os", key, target="c.os", router="r.os", now=time.time())
    retargeted = await ask(dataclasses.replace(fresh, target="r2.os"))
    assert isinstance(retargeted, RefuseFrame) and retargeted.code is CircuitCode.BAD_SIGNATURE
    # signed for another router
    other = new_request("a.os", key, target="c.os", router="r2.os", now=time.time())
    wrong = await ask(other)
    assert isinstance(wrong, RefuseFrame) and wrong.code is CircuitCode.WRONG_ROUTER
    # stale
    old = new_request("a.os", key, target="c.os", router="r.os", now=time.time() - 600)
    stale = await ask(old)
    assert isinstance(stale, RefuseFrame) and stale.code is CircuitCode.STALE
    # for a node the router does not route for
    nobody = new_request("a.os", key, target="r2.os", router="r.os", now=time.time())
    refused = await ask(nobody)
    assert isinstance(refused, RefuseFrame) and refused.code is CircuitCode.NOT_ROUTING
    # none of this hurt the hop connection, and a real circuit still opens
    assert not hop.closed
    assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    router = r.circuits.router
    assert router is not None and router.table.stats["refused"] == 5


async def test_a_node_that_routes_no_circuits_refuses(net: Net) -> None:
    net.direct("a.os", ALL)
    net.direct("plain.os", ALL)
    net.indirect("c.os", ["plain.os"])
    a = await net.node("a.os")
    plain = await net.node("plain.os")  # max_passthroughs 0: no circuits
    await net.node("c.os", share_address=False)
    await until(lambda: plain.peers.session("c.os") is not None, what="c.os connected")
    hop = await _hop(a, "plain.os")
    req = new_request("a.os", net.keys["a.os"], target="c.os", router="plain.os", now=time.time())
    async with asyncio.timeout(10):
        answer = await a.circuits.ask(hop, req)
    assert isinstance(answer, RefuseFrame) and answer.code is CircuitCode.NOT_ROUTING
    assert not hop.closed
    # a routed QUIC dial says why it failed
    with pytest.raises(Exception) as e:
        await hello(a, "c.os", "quic", timeout=10)
    assert "NOT_ROUTING" in str(e.value)


async def test_the_circuit_closes_with_the_target(net: Net) -> None:
    a, r, c = await circuit_trio(net)
    await hello(a, "c.os", "quic", timeout=10)
    session = a.peers.session("c.os")
    assert isinstance(session, CircuitSession)
    await net.stop(c)
    await until(lambda: session.closed, what="circuit session closed")
    router = r.circuits.router
    assert router is not None
    await until(lambda: len(router.table) == 0, what="circuit gone at the router")


async def test_a_relayed_stream_for_a_circuit_never_issued_closes_the_hop(net: Net) -> None:
    a, _r, _c = await circuit_trio(net)
    hop = await _hop(a, "r.os")
    hop.core.open_circuit_stream(
        StreamKind.RELAY, lambda cipher: seal_relay_header(cipher, 999, 0)[3:]
    )
    hop.kick()
    await until(lambda: hop.closed, what="hop closed by the router")
    assert "PROTOCOL_VIOLATION" in hop.close_reason and "never issued" in hop.close_reason
    # a new hop and a real circuit work
    assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"


async def test_an_indirect_node_with_two_routers(net: Net) -> None:
    net.direct("a.os", ALL)
    net.direct("r1.os", ALL)
    net.direct("r2.os", ALL)
    net.indirect("c.os", ["r1.os", "r2.os"])
    a = await net.node("a.os")
    r1 = await net.node("r1.os", max_passthroughs=4)
    r2 = await net.node("r2.os", max_passthroughs=4)
    c = await net.node("c.os", share_address=False)
    await until(
        lambda: (
            r1.peers.routing_for("c.os") is not None and r2.peers.routing_for("c.os") is not None
        ),
        what="c.os routed by both",
    )
    reply = await hello(a, "c.os", "quic", timeout=10)
    assert reply.via == "quic"
    first = {i.name: i for i in a.peers.infos()}["c.os"].router
    assert first in ("r1.os", "r2.os")
    # that router goes away: the circuit ends, and the next dial goes through the other
    session = a.peers.session("c.os")
    assert session is not None
    await net.stop(r1 if first == "r1.os" else r2)
    await until(lambda: session.closed, what="circuit through the stopped router closed")
    reply = await hello(a, "c.os", "quic", timeout=15)
    assert reply.via == "quic"
    second = {i.name: i for i in a.peers.infos()}["c.os"].router
    assert second in ("r1.os", "r2.os") and second != first
    assert c.circuits.stats["accepted"] == 2


class _Collect:
    """Stands in for a node's circuit handler on one hop: reads our own control stream."""

    def __init__(self) -> None:
        self.half: ControlHalf | None = None
        self.frames: list[object] = []

    def circuit_data(self, session: QuicSession, ev: CircuitData) -> None:
        assert self.half is not None and ev.stream_id == self.half.sid
        self.frames += self.half.feed(ev.data, ev.fin)


async def test_an_offer_from_a_node_that_is_not_our_router_is_refused(net: Net) -> None:
    a, r, _c = await circuit_trio(net)
    hop = await _hop(a, "r.os")
    # a pretends to be a router offering r a circuit: r is nobody's target
    req = new_request("c.os", net.keys["c.os"], target="r.os", router="a.os", now=time.time())
    collect = _Collect()
    handler = hop.circuits
    hop.set_circuits(collect)
    try:
        collect.half = ControlHalf.open(hop, OfferFrame(7, 0, req), ControlRole.TARGET)
        await until(lambda: bool(collect.frames), what="an answer")
    finally:
        hop.set_circuits(handler)
    refuse = collect.frames[0]
    assert isinstance(refuse, RefuseFrame) and refuse.code is CircuitCode.WRONG_ROUTER
    assert not hop.closed and r.circuits.stats["accepted"] == 0


async def test_a_replaced_hop_stays_open_while_it_carries_circuits(net: Net) -> None:
    a, _r, _c = await circuit_trio(net, retire_grace=0.2)
    await hello(a, "c.os", "quic", timeout=10)
    circuit = a.peers.session("c.os")
    hop = a.peers.session("r.os")
    assert isinstance(circuit, CircuitSession) and isinstance(hop, QuicSession)
    # a talks to r itself over TCP: that session replaces the QUIC one in the peer table
    assert (await hello(a, "r.os", "tcp", timeout=10)).via == "tcp"
    assert hop.retired
    await asyncio.sleep(0.6)  # three grace periods
    assert not hop.closed
    assert (await hello(a, "c.os", timeout=10)).via == "quic"
    assert a.peers.session("c.os") is circuit
    # once the circuit has ended, the retired hop goes at its next expiry
    circuit.abort("done")
    await until(lambda: hop.closed, what="retired hop closed")
