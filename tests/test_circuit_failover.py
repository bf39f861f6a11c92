"""Circuit failover (docs/quic.md §11, "Our implementation"): an indirect node behind two
routers; the router carrying a source's circuit is killed (its QUIC socket goes silent: no
CONNECTION_CLOSE). The source's hop is declared dead within HOP_DEAD_AFTER of its unanswered
data, the circuit session closes, its unacknowledged messages are reported (SendError), and the
next message reaches the target through the other router within 5 s. Every hello sent is
either acknowledged or failed: the counts add up. Every wait is bounded. The indirect target
refuses to share its address (``share_address=False``), so sessions stay routed (the direct
upgrade is tests/test_punch.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hnet import limits
from hnet.net.requests import SendFailed
from hnet.node import Node
from hnet.testing.harness import Net, hello, until
from hnet.transport.quic.circuit import CircuitSession
from hnet.transport.quic.transport import QuicSession

ALL = ("quic", "tcp", "ws")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def _two_routers(net: Net) -> tuple[Node, Node, Node, Node]:
    net.direct("a.os", ALL)
    net.direct("r1.os", ALL)
    net.direct("r2.os", ALL)
    net.indirect("c.os", ["r1.os", "r2.os"])
    a = await net.node("a.os")
    r1 = await net.node("r1.os", max_passthroughs=4)
    r2 = await net.node("r2.os", max_passthroughs=4)
    c = await net.node("c.os", share_address=False)
    await until(
        lambda: all(isinstance(r.peers.routing_for("c.os"), QuicSession) for r in (r1, r2)),
        what="c.os routed by both over QUIC",
    )
    return a, r1, r2, c


def _kill(node: Node) -> None:
    """As SIGKILL does to a node's QUIC: silence, no CONNECTION_CLOSE."""
    quic = node.listeners.quic
    assert quic is not None
    quic.go_silent()


async def test_a_killed_router_fails_over_within_5_s(net: Net) -> None:
    a, r1, r2, c = await _two_routers(net)
    assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    circuit = a.peers.session("c.os")
    assert isinstance(circuit, CircuitSession)
    first = circuit.router
    dead, alive = (r1, r2) if first == "r1.os" else (r2, r1)
    hop = a.peers.session(first)  # type: ignore[arg-type]
    assert isinstance(hop, QuicSession)
    c_circuit = c.peers.session("a.os")
    assert isinstance(c_circuit, CircuitSession) and c_circuit.router == first

    results: list[tuple[float, float, str]] = []  # (sent at, answered at, router or error)
    stop = asyncio.Event()

    async def pinger() -> None:
        while not stop.is_set() and len(results) < 200:
            t0 = time.monotonic()
            try:
                await hello(a, "c.os", "quic", timeout=5)
                s = a.peers.session("c.os")
                results.append((t0, time.monotonic(), s.router or "?" if s else "?"))
            except SendFailed as e:
                results.append((t0, time.monotonic(), f"failed: {e}"))
            await asyncio.sleep(max(0.0, 0.25 - (time.monotonic() - t0)))

    task = asyncio.create_task(pinger())
    try:
        await asyncio.sleep(0.6)
        killed = time.monotonic()
        _kill(dead)
        await until(lambda: hop.closed, timeout=limits.HOP_DEAD_AFTER + 2, what="hop dead")
        detected = time.monotonic() - killed
        assert circuit.closed
        assert "unresponsive" in (circuit.close_reason or ""), circuit.close_reason
        await until(
            lambda: any(t >= killed and r == alive.name for t, _, r in results),
            timeout=6,
            what="hellos through the other router",
        )
        resumed = min(done for t, done, r in results if t >= killed and r == alive.name)
        assert resumed - killed < 5.0, (resumed - killed, results)
        # the target's hop to the dead router dies too; it keeps the other and the new session
        await until(
            lambda: c_circuit.closed, timeout=limits.HOP_PING_INTERVAL + 4, what="c's circuit"
        )
        assert isinstance(alive.peers.routing_for("c.os"), QuicSession)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    failures = [r for _, _, r in results if r.startswith("failed")]
    acked = [r for _, _, r in results if not r.startswith("failed")]
    assert len(results) == len(acked) + len(failures)
    assert len(failures) <= 2, failures  # at most the hello in flight at the kill, and one more
    assert acked[-1] == alive.name
    new = a.peers.session("c.os")
    assert isinstance(new, CircuitSession) and new.router == alive.name
    print(f"detected in {detected:.2f} s, resumed in {resumed - killed:.2f} s, {failures}")


async def test_an_idle_hop_to_a_killed_router_is_noticed(net: Net) -> None:
    a, r1, r2, _c = await _two_routers(net)
    assert (await hello(a, "c.os", "quic", timeout=10)).via == "quic"
    circuit = a.peers.session("c.os")
    assert isinstance(circuit, CircuitSession)
    dead = r1 if circuit.router == "r1.os" else r2
    await asyncio.sleep(0.3)  # everything acknowledged: nothing in flight
    killed = time.monotonic()
    _kill(dead)
    bound = limits.HOP_PING_INTERVAL + limits.HOP_DEAD_AFTER + 1
    await until(lambda: circuit.closed, timeout=bound, what="idle circuit closed")
    took = time.monotonic() - killed
    assert took < bound
    # and the next hello goes through the other router at once (the dead one is tried last)
    t0 = time.monotonic()
    reply = await hello(a, "c.os", "quic", timeout=5)
    assert reply.via == "quic" and time.monotonic() - t0 < 2.0
    assert a.peers.session("c.os").router != dead.name  # type: ignore[union-attr]
    assert a.circuits.lost_recently(dead.name)


async def test_a_direct_quic_session_is_not_cut_by_the_hop_check(net: Net) -> None:
    """Only hops carrying circuits are checked: a plain session over QUIC stays up though its
    peer goes silent for longer than HOP_DEAD_AFTER (QUIC's idle timeout decides)."""
    net.direct("a.os", ALL)
    net.direct("b.os", ALL)
    a = await net.node("a.os")
    b = await net.node("b.os")
    assert (await hello(a, "b.os", "quic", timeout=10)).via == "quic"
    session = a.peers.session("b.os")
    assert isinstance(session, QuicSession)
    _kill(b)
    with pytest.raises(SendFailed):
        await hello(a, "b.os", timeout=0.5)  # data in flight, never acknowledged
    await asyncio.sleep(limits.HOP_DEAD_AFTER + 0.5)
    assert not session.closed
