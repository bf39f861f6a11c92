"""Routed connections between Nodes in one event loop over real loopback sockets: a direct
node reaching an indirect one through its router (TCP and WS), the way back, the router's
bounds, routers that are down, and ConnectionRequests from nodes that are not our routers.
Every wait is bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hnet.core.wire import (
    Address,
    ConnectionRequest,
    Rejected,
    ResponseMessage,
    SendErrorKind,
    decode_net_response,
    encode_net_action,
)
from hnet.net.requests import SendFailed
from hnet.node import Node
from hnet.testing.harness import Net, hello, until


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def routed_trio(net: Net, **router_kw: object) -> tuple[Node, Node, Node]:
    """a.os (direct), r.os (router), c.os (indirect behind r.os), c connected to r."""
    net.direct("a.os")
    net.direct("r.os")
    net.indirect("c.os", ["r.os"])
    a = await net.node("a.os")
    r = await net.node("r.os", max_passthroughs=router_kw.pop("max_passthroughs", 8), **router_kw)
    c = await net.node("c.os")
    await until(lambda: r.peers.routing_for("c.os") is not None, what="c.os routed by r.os")
    return a, r, c


async def test_direct_node_reaches_indirect_node_through_its_router(net: Net) -> None:
    a, r, c = await routed_trio(net)
    assert c.listening == {} and c.indirect is not None
    for via in (None, "tcp", "ws"):
        reply = await hello(a, "c.os", via)
        msg = reply.message.message
        assert isinstance(msg, ResponseMessage) and msg.response.body == b"ack"
        assert str(reply.message.source) == "c.os@net:distro:sys"
        assert reply.via == (via or "tcp")
    # the way back, on the session that exists (or a direct dial)
    back = await hello(c, "a.os")
    assert back.message.source.node == "a.os"
    # who sees what
    a_info = {i.name: i for i in a.peers.infos()}
    assert a_info["c.os"].router == "r.os" and not a_info["c.os"].routing_for
    r_info = {i.name: i for i in r.peers.infos()}
    assert r_info["c.os"].routing_for and "a.os" not in r_info  # r saw no plaintext from a
    assert "routing for: c.os" in r.diagnostics()
    assert "via router r.os" in a.diagnostics()
    assert "indirect: routers r.os (connected: r.os)" in c.diagnostics()
    assert r.router.stats["pipes"] == 2  # tcp (reused without --via), then ws


async def test_router_offering_only_ws(net: Net) -> None:
    net.direct("a.os")
    net.direct("w.os", ("ws",))
    net.indirect("c.os", ["w.os"])
    a = await net.node("a.os")
    w = await net.node("w.os", max_passthroughs=4)
    await net.node("c.os")
    await until(lambda: w.peers.routing_for("c.os") is not None)
    reply = await hello(a, "c.os")
    assert reply.via == "ws"
    with pytest.raises(SendFailed) as e:
        await hello(a, "c.os", "tcp")
    assert e.value.kind is SendErrorKind.OFFLINE and "offers no tcp port" in e.value.reason


async def test_indirect_node_behind_a_down_router_is_offline(net: Net) -> None:
    a, _r, _c = await routed_trio(net)
    net.direct("dead.os")  # registered, never started: connection refused
    net.indirect("z.os", ["dead.os", "a.os"])
    # z's routers: dead.os (down) and a.os (us: skipped)
    with pytest.raises(SendFailed) as e:
        await hello(a, "z.os", timeout=10)
    assert e.value.kind is SendErrorKind.OFFLINE
    assert "via dead.os tcp" in e.value.reason and "connection refused" in e.value.reason
    # QUIC is not routed
    with pytest.raises(SendFailed) as e:
        await hello(a, "c.os", "quic", timeout=10)
    assert e.value.kind is SendErrorKind.OFFLINE and "not routed" in e.value.reason


async def test_router_that_does_not_route_for_the_target(net: Net) -> None:
    """c's record names a router that is up but not a router (max_passthroughs 0), and one
    that is a router but holds no session with c: both refuse, a gets Offline."""
    net.direct("a.os")
    net.direct("plain.os")
    net.direct("r2.os")
    net.indirect("c.os", ["plain.os", "r2.os"])
    a = await net.node("a.os")
    await net.node("plain.os")
    await net.node("r2.os", max_passthroughs=4)
    with pytest.raises(SendFailed) as e:
        await hello(a, "c.os", timeout=10)  # c is not running: nobody routes for it
    assert e.value.kind is SendErrorKind.OFFLINE
    assert "via plain.os" in e.value.reason and "via r2.os" in e.value.reason


async def test_max_passthroughs_evicts_the_oldest(net: Net) -> None:
    a, r, _c = await routed_trio(net, max_passthroughs=1)
    net.direct("b.os")
    b = await net.node("b.os")
    await hello(a, "c.os", "tcp")
    a_session = a.peers.session("c.os")
    assert a_session is not None
    await hello(b, "c.os", "tcp")  # needs the only slot: a's pipe is evicted
    await until(lambda: a_session.closed, what="a's routed session closed by eviction")
    assert r.router.table.evicted >= 1 and len(r.router.table) <= 1
    # a redials (evicting b's pipe in turn) and still gets through
    await hello(a, "c.os", "tcp")


async def test_connection_request_only_from_our_routers(net: Net) -> None:
    a, _r, c = await routed_trio(net)
    net.direct("b.os")
    b = await net.node("b.os")
    body = encode_net_action(ConnectionRequest("b.os"))
    assert c.indirect is not None
    await hello(a, "c.os")  # the routed session a -> c is up
    before = dict(c.indirect.stats)
    # from a node that is not c's router: ignored, so no response
    with pytest.raises(SendFailed) as e:
        await a.request(Address.net("c.os"), body, timeout=0.5)
    assert e.value.kind is SendErrorKind.TIMEOUT
    # to a direct node: ignored as well
    with pytest.raises(SendFailed) as e:
        await a.request(Address.net("b.os"), body, timeout=0.5)
    assert e.value.kind is SendErrorKind.TIMEOUT
    assert c.indirect.stats == before
    assert b.net.hellos == 0


async def test_indirect_node_reconnects_to_a_restarted_router(net: Net) -> None:
    a, r, c = await routed_trio(net)
    await hello(a, "c.os")
    await net.stop(r)
    assert c.indirect is not None
    await until(lambda: not c.indirect.connected("r.os"), what="c notices r is gone")
    r = await net.node("r.os", max_passthroughs=8)
    await until(lambda: r.peers.routing_for("c.os") is not None, what="c back on r")
    reply = await hello(a, "c.os")
    assert reply.message.source.node == "c.os"


async def test_indirect_node_shuts_down_cleanly(net: Net) -> None:
    net.direct("dead.os")
    net.indirect("c.os", ["dead.os"])
    c = await net.node("c.os")
    assert c.indirect is not None
    indirect = c.indirect
    await until(lambda: indirect.stats["dials"] >= 3, what="a few reconnect rounds")
    await net.stop(c)
    assert len(c.indirect._sup) == 0


async def test_large_messages_cross_the_pipe(net: Net) -> None:
    a, _r, _c = await routed_trio(net)
    body = bytes(range(256)) * 8192  # 2 MiB: many Noise chunks on either framing
    for via in ("tcp", "ws"):
        reply = await a.request(Address.net("c.os"), body, via=via, timeout=10)
        msg = reply.message.message
        assert isinstance(msg, ResponseMessage) and msg.response.body == b"ack"


async def test_indirect_node_answers_its_routers_connection_request(net: Net) -> None:
    """c answers r's ConnectionRequest for a name not in HNS (or for itself) with Rejected."""
    _a, r, c = await routed_trio(net)
    for name in ("nobody.os", "c.os"):
        reply = await r.request(
            Address.net("c.os"), encode_net_action(ConnectionRequest(name)), timeout=5
        )
        msg = reply.message.message
        assert isinstance(msg, ResponseMessage)
        assert decode_net_response(msg.response.body) == Rejected(name)
    assert c.indirect is not None and c.indirect.stats["rejected"] == 2
