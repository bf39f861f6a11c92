"""Nodes in one event loop over real loopback sockets: delivery, errors, bounds, NetActions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hnet import keys
from hnet.core.handshake import PeerHandshake
from hnet.core.wire import (
    Address,
    Diagnostics,
    GetDiagnostics,
    GetPeer,
    GetPeers,
    LazyLoadBlob,
    Peer,
    Peers,
    ResponseMessage,
    SendErrorKind,
    Sign,
    Signed,
    Verified,
    Verify,
    decode_net_response,
    encode_net_action,
)
from hnet.net.pki import Pki
from hnet.net.requests import SendFailed
from hnet.node import Node
from hnet.testing.harness import Net, hello, until
from hnet.transport import tcp as tcp_transport


@pytest.fixture
async def net(tmp_path: Path):
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def local(node: Node, action: object, blob: LazyLoadBlob | None = None):
    reply = await node.request(
        Address.net(node.name),
        encode_net_action(action),
        blob=blob,  # type: ignore[arg-type]
    )
    msg = reply.message.message
    assert isinstance(msg, ResponseMessage)
    return decode_net_response(msg.response.body), reply.message.lazy_load_blob


async def test_hello_ack_over_each_transport(net: Net) -> None:
    a = await net.node("a.os")
    await net.node("b.os")
    for via in ("tcp", "ws", None):
        reply = await hello(a, "b.os", via)
        msg = reply.message.message
        assert isinstance(msg, ResponseMessage) and msg.response.body == b"ack"
        assert reply.via == (via or "ws")  # no --via: the current session is reused
        assert str(reply.message.source) == "b.os@net:distro:sys"


async def test_local_net_actions(net: Net) -> None:
    a = await net.node("a.os")
    await net.node("b.os")
    await hello(a, "b.os")
    peers, _ = await local(a, GetPeers())
    assert isinstance(peers, Peers) and [i.name for i in peers.identities] == ["b.os"]
    peer, _ = await local(a, GetPeer("b.os"))
    assert isinstance(peer, Peer) and peer.identity is not None
    assert peer.identity.networking_key == keys.public_bytes(net.keys["b.os"]).hex()
    none, _ = await local(a, GetPeer("nobody.os"))
    assert none == Peer(None)
    diag, _ = await local(a, GetDiagnostics())
    assert isinstance(diag, Diagnostics) and "b.os" in diag.text
    signed, blob = await local(a, Sign(), LazyLoadBlob(None, b"data"))
    assert isinstance(signed, Signed) and blob is not None
    source = Address.parse("a.os@ping:hnet:sys")
    assert keys.verify(
        keys.public_bytes(net.keys["a.os"]), blob.bytes, str(source).encode() + b"data"
    )
    ok, _ = await local(a, Verify(source, blob.bytes), LazyLoadBlob(None, b"data"))
    assert ok == Verified(True)
    bad, _ = await local(a, Verify(source, blob.bytes), LazyLoadBlob(None, b"other"))
    assert bad == Verified(False)


async def test_queued_messages_to_a_down_node_all_come_back_offline(net: Net) -> None:
    a = await net.node("a.os")
    net.register("down.os")
    results = await asyncio.gather(
        *(hello(a, "down.os") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, SendFailed) and r.kind is SendErrorKind.OFFLINE for r in results)
    assert "connection refused" in str(results[0])
    assert len(a.peers) == 0


async def test_silent_peer_gives_timeout(net: Net) -> None:
    """A peer that completes the handshake but never answers: the sender gets Timeout."""
    a = await net.node("a.os")
    skey = net.register("silent.os", ("tcp",))
    port = net.registry.resolve("silent.os").ports["tcp"]
    pki = Pki.from_registry(net.registry)
    await pki.start()
    held: list[object] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hs = PeerHandshake(
            initiator=False, our_name="silent.os", signing_key=skey, lookup=pki.networking_key
        )
        held.append(await tcp_transport.accept(reader, writer, hs))
        await reader.read()  # read and ignore until closed

    server = await asyncio.start_server(on_conn, "127.0.0.1", port)
    try:
        with pytest.raises(SendFailed) as e:
            await hello(a, "silent.os", timeout=0.5)
        assert e.value.kind is SendErrorKind.TIMEOUT
    finally:
        server.close()
        await pki.aclose()


async def test_max_peers_evicts_least_recently_active(net: Net) -> None:
    a = await net.node("a.os", max_peers=2)
    for n in ("b.os", "c.os", "d.os"):
        await net.node(n)
    await hello(a, "b.os")
    await hello(a, "c.os")
    await hello(a, "b.os")  # b is now more recent than c
    await hello(a, "d.os")  # evicts c
    assert sorted(i.name for i in a.peers.infos()) == ["b.os", "d.os"]
    await hello(a, "c.os")  # redials; evicts b (least recent)
    assert sorted(i.name for i in a.peers.infos()) == ["c.os", "d.os"]


async def test_new_handshake_replaces_old_session(net: Net) -> None:
    a = await net.node("a.os")
    b = await net.node("b.os", retire_grace=0.2)
    await hello(a, "b.os", "tcp")
    first = b.peers.session("a.os")
    assert first is not None
    await hello(a, "b.os", "ws")  # a dials again over ws: b's tcp session is replaced
    second = b.peers.session("a.os")
    assert second is not None and second is not first and second.transport == "ws"
    assert first.retired
    async with asyncio.timeout(5):
        while not first.closed:
            await asyncio.sleep(0.05)
    # a restarted b: a's next hello redials and succeeds
    await b.aclose()
    net.nodes.remove(b)
    await net.node("b.os")
    reply = await hello(a, "b.os", "tcp")
    assert reply.via == "tcp"


async def test_shutdown_reports_outstanding_requests(net: Net) -> None:
    a = await net.node("a.os")
    # a TCP listener that accepts and never answers the handshake: the dial hangs
    net.register("tarpit.os", ("tcp",))
    port = net.registry.resolve("tarpit.os").ports["tcp"]
    conns: list[asyncio.StreamWriter] = []

    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)

    server = await asyncio.start_server(tarpit, "127.0.0.1", port)
    try:
        pending = asyncio.ensure_future(hello(a, "tarpit.os", timeout=30))
        await until(lambda: bool(conns), what="the dial reached the tarpit")
        assert not pending.done()
        await a.aclose()
        net.nodes.remove(a)
        with pytest.raises(SendFailed) as e:
            await asyncio.wait_for(pending, 5)
        assert e.value.kind is SendErrorKind.OFFLINE and "shutting down" in e.value.reason
    finally:
        server.close()
        for w in conns:
            w.close()


async def test_handshake_deadline_on_tarpit(net: Net) -> None:
    a = await net.node("a.os", handshake_timeout=0.3)
    net.register("tarpit.os", ("tcp",))
    port = net.registry.resolve("tarpit.os").ports["tcp"]
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        with pytest.raises(SendFailed) as e:
            await hello(a, "tarpit.os", timeout=5)
        assert e.value.kind is SendErrorKind.OFFLINE and "timed out" in e.value.reason
    finally:
        server.close()


async def test_idle_sessions_are_closed(net: Net) -> None:
    a = await net.node("a.os", idle_timeout=0.3)
    b = await net.node("b.os")
    await hello(a, "b.os", "tcp")
    session = a.peers.session("b.os")
    assert session is not None
    async with asyncio.timeout(5):
        while not session.closed:
            await asyncio.sleep(0.05)
    assert session.close_reason == "idle"
    # both ends drop the session (ours once its reader ends, the peer on the close)
    async with asyncio.timeout(5):
        while a.peers.session("b.os") is not None or b.peers.session("a.os") is not None:
            await asyncio.sleep(0.05)


async def test_dial_race_converges_on_quic_on_both_ends(net: Net) -> None:
    """QUIC races TCP on a first dial; whatever order the two sessions reach each end in,
    hellos never get lost and both ends settle on the same (QUIC) session."""
    for i in range(6):
        net.register(f"x{i}.os", ("quic", "tcp", "ws"))
        net.register(f"y{i}.os", ("quic", "tcp", "ws"))
        x = await net.node(f"x{i}.os")
        y = await net.node(f"y{i}.os")
        for _ in range(3):
            await hello(x, y.name)
        async with asyncio.timeout(10):
            while True:
                sx, sy = x.peers.session(y.name), y.peers.session(x.name)
                if sx is not None and sy is not None and sx.transport == sy.transport == "quic":
                    break
                await hello(x, y.name)
                await asyncio.sleep(0.05)
        reply = await hello(y, x.name)
        assert reply.via == "quic"


async def test_quic_session_survives_client_rebinding_during_a_ping_run(net: Net) -> None:
    """Migration: the dialling node's UDP socket moves to a new port twice mid-run; the QUIC
    session (and the peer's view of it) carries on and every hello is answered."""
    from hnet.transport.quic import QuicSession

    net.register("m.os", ("quic",))
    net.register("n.os", ("quic",))
    m = await net.node("m.os")
    n = await net.node("n.os")
    await hello(m, "n.os", "quic")
    client = m.peers.session("n.os")
    server = n.peers.session("m.os")
    assert isinstance(client, QuicSession) and isinstance(server, QuicSession)
    ports = {client.local_address[1]}
    remotes = {server.remote}
    for i in range(30):
        if i in (10, 20):
            ports.add(client.rebind()[1])
        reply = await hello(m, "n.os", timeout=5)
        assert reply.via == "quic"
        remotes.add(server.remote)
    assert m.peers.session("n.os") is client and n.peers.session("m.os") is server
    assert len(ports) == 3
    assert len(remotes) == 3, remotes  # the server followed the client to each new address
