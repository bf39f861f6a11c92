"""The send path and the peer state machine, on real loopback sockets (in one event loop).

Each failure mode of the old layer above Session has a test here: bidirectional bulk (the
old deadlock), a peer that stops reading, a dial that raises, no message written twice,
queue overflow, eviction with messages queued, simultaneous open, falling back to a retired
session. Every wait is bounded; nothing sleeps a fixed time to let something happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hnet import limits
from hnet.core.handshake import PeerHandshake
from hnet.core.sendqueue import ByteBudget, Outgoing, SendQueue
from hnet.core.wire import (
    Address,
    HnsUpdate,
    KernelMessage,
    Request,
    SendErrorKind,
)
from hnet.net.peers import TRANSITIONS, PeerEvent, PeerState, PeerStateError
from hnet.net.pki import Pki
from hnet.net.processes import Delivery, Failed, Incoming
from hnet.net.requests import SendFailed
from hnet.node import Node
from hnet.testing.harness import Net, hello, until
from hnet.transport import tcp as tcp_transport
from hnet.transport.session import Session

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


def message(src: Node, target: str, body: bytes, process: str = "chat:chat:sys") -> KernelMessage:
    return KernelMessage(
        id=int.from_bytes(body[:8].ljust(8, b"\0"), "big"),
        source=Address.parse(f"{src.name}@{process}"),
        target=Address.parse(f"{target}@chat:chat:sys"),
        rsvp=None,
        message=Request(False, None, body, None, ()),
        lazy_load_blob=None,
    )


class Inbox:
    """A registered process that records what it gets."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d)

    def bodies(self) -> list[bytes]:
        out = []
        for d in self.got:
            if isinstance(d, Incoming) and isinstance(d.message.message, Request):
                out.append(d.message.message.body)
        return out

    def failures(self) -> list[Failed]:
        return [d for d in self.got if isinstance(d, Failed)]


# --- the state machine alone ------------------------------------------------------------------


def test_transition_table_is_explicit_and_closed_is_terminal() -> None:
    for (state, event), new in TRANSITIONS.items():
        assert isinstance(state, PeerState) and isinstance(event, PeerEvent)
        assert isinstance(new, PeerState)
    assert not any(s is PeerState.CLOSED for s, _ in TRANSITIONS)
    # every state but CLOSED can be evicted and shut down
    for s in PeerState:
        if s is not PeerState.CLOSED:
            assert TRANSITIONS[(s, PeerEvent.EVICT)] is PeerState.CLOSED
    # a dial can only fail from a dialling state
    assert (PeerState.IDLE, PeerEvent.DIAL_FAILED) not in TRANSITIONS
    assert (PeerState.CONNECTED, PeerEvent.DIAL_OK) not in TRANSITIONS


def test_invalid_event_raises() -> None:
    from hnet.net.peers import Peer

    p = Peer(name="x.os", dial_queue=SendQueue(100, ByteBudget(100)))
    with pytest.raises(PeerStateError):
        p.fire(PeerEvent.DIAL_OK)
    assert p.state is PeerState.IDLE


def test_send_queue_bounds_in_bytes_and_budget() -> None:
    budget = ByteBudget(1000)
    q1 = SendQueue(600, budget)
    q2 = SendQueue(600, budget)
    now = time.monotonic()
    assert q1.push(Outgoing(b"x" * 500, now + 10, None))
    assert not q1.push(Outgoing(b"x" * 200, now + 10, None))  # the queue's own bound
    assert q1.push(Outgoing(b"x" * 200, now + 10, None), headroom=200)  # a reply may go over
    assert budget.used == 700
    assert not q2.push(Outgoing(b"x" * 400, now + 10, None))  # the node's budget
    item = q1.pop()
    assert item is not None and budget.used == 700  # charged until written
    item.written()
    assert budget.used == 200 and q1.bytes == 200


def test_cancelled_item_gives_its_bytes_back_at_once() -> None:
    budget = ByteBudget(1000)
    q = SendQueue(1000, budget)
    failed: list[tuple[SendErrorKind, str]] = []
    item = Outgoing(b"x" * 300, time.monotonic() + 10, None, lambda i, k, r: failed.append((k, r)))
    assert q.push(item)
    item.fail(SendErrorKind.TIMEOUT, "cancelled")
    item.fail(SendErrorKind.OFFLINE, "twice")  # reported once only
    assert budget.used == 0 and q.bytes == 0 and failed == [(SendErrorKind.TIMEOUT, "cancelled")]
    assert q.pop() is None  # the tombstone is skipped


# --- real nodes -------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["tcp", "ws", "quic"])
async def test_bidirectional_bulk_does_not_deadlock(net: Net, via: str) -> None:
    """16 hellos of 5 MB each way at once, 8 in flight each way: every one acked."""
    net.register("a.os", (via,))
    net.register("b.os", (via,))
    a = await net.node("a.os")
    b = await net.node("b.os")
    body = b"x" * 5_000_000
    sem_a, sem_b = asyncio.Semaphore(8), asyncio.Semaphore(8)

    async def one(src: Node, dst: str, sem: asyncio.Semaphore) -> str | None:
        async with sem:
            reply = await hello(src, dst, timeout=60, body=body)
            return reply.via

    async with asyncio.timeout(90):
        results = await asyncio.gather(
            *(one(a, "b.os", sem_a) for _ in range(16)),
            *(one(b, "a.os", sem_b) for _ in range(16)),
        )
    assert results == [via] * 32
    assert a.budget.used == 0 and b.budget.used == 0  # nothing left charged


class Stalled:
    """A peer that completes the handshake and then never reads again."""

    def __init__(self, server: asyncio.Server, held: list[Session], pki: Pki) -> None:
        self.server, self.held, self.pki = server, held, pki

    async def aclose(self) -> None:
        for s in self.held:
            s.abort("test done")
        self.server.close()
        await self.pki.aclose()


async def stalled_peer(net: Net, name: str) -> Stalled:
    """A peer that completes the handshake and then never reads again."""
    key = net.register(name, ("tcp",))
    port = net.registry.resolve(name).ports["tcp"]
    pki = Pki.from_registry(net.registry)
    await pki.start()
    held: list[Session] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hs = PeerHandshake(
            initiator=False, our_name=name, signing_key=key, lookup=pki.networking_key
        )
        held.append(await tcp_transport.accept(reader, writer, hs))  # never started: no reads

    server = await asyncio.start_server(on_conn, "127.0.0.1", port)
    return Stalled(server, held, pki)


async def test_peer_that_stops_reading(net: Net) -> None:
    """Requests to it time out within their deadline, what is queued for it stays bounded,
    and the node keeps answering others."""
    a = await net.node("a.os", send_queue_bytes=8_000_000)
    b = await net.node("b.os")
    stalled = await stalled_peer(net, "stall.os")
    try:
        body = b"y" * 4_000_000
        high = 0
        for _ in range(12):
            t0 = time.monotonic()
            with pytest.raises(SendFailed) as e:
                await hello(a, "stall.os", timeout=0.5, body=body)
            assert e.value.kind is SendErrorKind.TIMEOUT
            assert time.monotonic() - t0 < 0.5 + 0.5  # within the deadline, give or take
            high = max(high, a.budget.used)
            # others are still answered meanwhile, both ways
            assert (await hello(a, "b.os", timeout=5)).via
            assert (await hello(b, "a.os", timeout=5)).via
        # what is held for the stalled peer never exceeds its queue bound plus one message in
        # the writer's hands
        assert high <= 8_000_000 + 4_100_000
        info = next(i for i in a.peers.infos() if i.name == "stall.os")
        assert info.queued_bytes <= 8_000_000
    finally:
        await stalled.aclose()


async def test_write_stall_closes_the_session_and_reports_offline(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "WRITE_STALL_TIMEOUT", 1.0)
    a = await net.node("a.os")
    stalled = await stalled_peer(net, "stall.os")
    inbox = Inbox()
    a.register("chat:chat:sys", inbox)
    try:
        big = b"z" * 4_000_000
        for i in range(6):
            await a.send(message(a, "stall.os", i.to_bytes(8, "big") + big), timeout=30)
        await until(lambda: a.peers.session("stall.os") is not None, what="connected")
        session = a.peers.session("stall.os")
        assert session is not None
        await until(lambda: session.closed, timeout=10, what="stalled session closed")
        assert "stalled" in session.close_reason
        await until(lambda: len(inbox.failures()) >= 1, what="failures reported")
        assert all(f.error.kind is SendErrorKind.OFFLINE for f in inbox.failures())
        await until(lambda: a.budget.used == 0, what="budget released")
    finally:
        await stalled.aclose()


async def test_dial_that_raises_reports_offline_and_redials(net: Net) -> None:
    a = await net.node("a.os")
    b = await net.node("b.os")
    real = a.dialler.dial
    calls = 0

    async def broken(name: str, via: str | None = None) -> Session:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the dialler")
        return await real(name, via)

    a.dialler.dial = broken  # type: ignore[method-assign]
    results = await asyncio.gather(*(hello(a, "b.os") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, SendFailed) and r.kind is SendErrorKind.OFFLINE for r in results)
    assert "local error" in str(results[0])
    peer = a.peers.get("b.os")
    assert peer is None or peer.state is PeerState.IDLE
    # the next message redials and gets through
    assert (await hello(a, "b.os")).via
    assert calls == 2 and b.net.hellos >= 1


async def test_hns_update_with_a_bad_ip_fails_offline_and_recovers(net: Net) -> None:
    a = await net.node("a.os")
    b = await net.node("b.os")
    rec = a.pki.record("b.os")
    assert rec is not None and rec.net_key is not None
    a.pki.ingest(
        HnsUpdate(
            name="b.os",
            public_key=rec.net_key,
            ips=("not-an-ip",),
            ports={"tcp": rec.ports["tcp"], "quic": 1},
            routers=(),
        )
    )
    with pytest.raises(SendFailed) as e:
        await hello(a, "b.os", timeout=10)
    assert e.value.kind is SendErrorKind.OFFLINE
    peer = a.peers.get("b.os")
    assert peer is None or not peer.dialling
    a.pki.ingest(
        HnsUpdate(
            name="b.os", public_key=rec.net_key, ips=rec.ips, ports=dict(rec.ports), routers=()
        )
    )
    assert (await hello(a, "b.os")).via
    assert b.net.hellos == 1


async def test_messages_queued_while_dialling_are_written_once_in_order(net: Net) -> None:
    a = await net.node("a.os")
    b = await net.node("b.os")
    inbox = Inbox()
    b.register("chat:chat:sys", inbox)
    bodies = [b"m%04d" % i for i in range(200)]
    for body in bodies:  # all queued before the dial completes (one task, no await between)
        a.peers.send_nowait("b.os", a._outgoing(message(a, "b.os", body), time.monotonic() + 10))
    peer = a.peers.get("b.os")
    assert peer is not None and peer.state is PeerState.DIALLING and len(peer.dial_queue) == 200
    await until(lambda: len(inbox.got) >= 200, what="all delivered")
    await asyncio.sleep(0)  # (nothing more can be in flight: give stragglers one loop turn)
    assert inbox.bodies() == bodies
    # and again once connected (the direct path), still once each, in order
    more = [b"n%04d" % i for i in range(200)]
    for body in more:
        await a.send(message(a, "b.os", body))
    await until(lambda: len(inbox.got) >= 400, what="all delivered")
    assert inbox.bodies() == bodies + more


async def test_full_queue_gives_offline_to_nowait_and_timeout_to_waiting_senders(
    net: Net,
) -> None:
    a = await net.node("a.os", send_queue_bytes=1_000_000)
    stalled = await stalled_peer(net, "stall.os")
    inbox = Inbox()
    a.register("chat:chat:sys", inbox)
    try:
        chunk = b"q" * 400_000
        # fill the socket buffers and the queue (the session's writer blocks on the peer)
        for i in range(40):
            await a.send(message(a, "stall.os", i.to_bytes(8, "big") + chunk), timeout=0.3)
        await until(lambda: len(inbox.failures()) > 0, what="a waiting sender timed out")
        assert all(f.error.kind is SendErrorKind.TIMEOUT for f in inbox.failures())
        # a sender that cannot wait (a reply on a receive path) gets Offline at once
        session = a.peers.session("stall.os")
        assert session is not None and session.queue is not None
        n_before = len(inbox.failures())
        for _ in range(10):
            a.peers.send_nowait(
                "stall.os",
                a._outgoing(message(a, "stall.os", b"r" * 600_000), time.monotonic() + 30),
            )
        await until(lambda: len(inbox.failures()) > n_before, what="nowait refused")
        offline = [f for f in inbox.failures()[n_before:] if f.error.kind is SendErrorKind.OFFLINE]
        assert offline and "full" in offline[0].reason
    finally:
        await stalled.aclose()


async def test_eviction_reports_queued_messages(net: Net) -> None:
    a = await net.node("a.os", max_peers=1)
    await net.node("b.os")
    net.register("tarpit.os", ("tcp",))
    port = net.registry.resolve("tarpit.os").ports["tcp"]
    conns: list[asyncio.StreamWriter] = []

    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)  # accepts, never answers the handshake: the dial hangs

    server = await asyncio.start_server(tarpit, "127.0.0.1", port)
    try:
        pending = [asyncio.ensure_future(hello(a, "tarpit.os", timeout=30)) for _ in range(5)]
        await until(lambda: bool(conns), what="tarpit dialled")
        await hello(a, "b.os")  # a second peer: tarpit.os is evicted
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, SendFailed) and r.kind is SendErrorKind.OFFLINE for r in results)
        assert "evicted" in str(results[0])
        assert [i.name for i in a.peers.infos()] == ["b.os"]
    finally:
        server.close()
        for w in conns:
            w.close()


async def test_simultaneous_open_converges_without_cutting_a_session(net: Net) -> None:
    pairs = [(f"s{i}a.os", f"s{i}b.os") for i in range(4)]
    for x, y in pairs:
        net.register(x, ("tcp",))
        net.register(y, ("tcp",))
    settled = 0
    for x, y in pairs:
        nx, ny = await net.node(x), await net.node(y)
        rx, ry = await asyncio.gather(hello(nx, y), hello(ny, x))
        assert rx.via == ry.via == "tcp"
        sx, sy = nx.peers.session(y), ny.peers.session(x)
        assert sx is not None and sy is not None
        await until(
            lambda sx=sx, sy=sy, nx=nx, ny=ny, x=x, y=y: (
                (nx.peers.session(y) or sx).initiator is True
                and (ny.peers.session(x) or sy).initiator is False
            ),
            what="both ends on the smaller name's session",
        )
        # the pair keeps working both ways
        assert (await hello(nx, y)).via == "tcp"
        assert (await hello(ny, x)).via == "tcp"
        for n in (nx, ny):
            assert n.peers.stats["protocol_errors"] == 0 and n.peers.stats["local_errors"] == 0
            settled += n.peers.stats["simultaneous_opens"]
    assert settled > 0, "no pair actually opened simultaneously"


async def test_fallback_to_a_retired_session(net: Net) -> None:
    a = await net.node("a.os", retire_grace=30)
    await net.node("b.os", retire_grace=30)
    await hello(a, "b.os", "tcp")
    tcp = a.peers.session("b.os")
    await hello(a, "b.os", "ws")  # a new session over ws; the tcp one is retired
    ws = a.peers.session("b.os")
    assert tcp is not None and ws is not None and ws.transport == "ws" and tcp.retired
    dials = a.peers.stats["dial_failures"]
    ws.abort("test: the new session dies young")
    await until(lambda: a.peers.session("b.os") is tcp, what="fell back to tcp")
    assert not tcp.retired
    reply = await hello(a, "b.os")
    assert reply.via == "tcp" and a.peers.stats["dial_failures"] == dials


async def test_dial_error_message_lists_what_was_tried(net: Net) -> None:
    a = await net.node("a.os")
    net.register("down.os", ("tcp", "ws"))
    with pytest.raises(SendFailed) as e:
        await hello(a, "down.os")
    assert "tcp 127.0.0.1" in e.value.reason and "ws 127.0.0.1" in e.value.reason


async def test_send_error_reaches_the_sending_process(net: Net) -> None:
    a = await net.node("a.os")
    net.register("down.os")
    inbox = Inbox()
    a.register("chat:chat:sys", inbox)
    await a.send(message(a, "down.os", b"lost?"))
    await until(lambda: bool(inbox.failures()), what="SendError delivered")
    f = inbox.failures()[0]
    assert f.error.kind is SendErrorKind.OFFLINE and str(f.error.target).startswith("down.os@")
    assert a.budget.used == 0
