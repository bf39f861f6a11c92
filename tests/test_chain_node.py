"""``hnet node --rpc``: real node processes whose records come from a local anvil chain.

A node syncs, then follows the chain while it runs: a node registered after it started is
reachable (read live before its block is confirmed, then indexed), a reorganisation near the
head ends with the canonical records, and a peer's key or routing changing on chain changes
the sessions to it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hnet import keys
from hnet.testing.chain import TestChain, registration_events
from hnet.testing.cluster import Cluster, ClusterNode, free_port

pytestmark = pytest.mark.chain

LOOPBACK = "127.0.0.1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "nodes")
    try:
        yield c
    finally:
        c.stop_all()


def on_chain(
    cluster: Cluster, chain: TestChain, name: str, *, confirmations: int | None = None
) -> ClusterNode:
    """A TCP node whose ``hnet node`` reads HNS from ``chain``, registered there."""
    args = ["--rpc", chain.url]
    if confirmations is not None:
        args += ["--confirmations", str(confirmations)]
    node = cluster.add(name, ("tcp",), args=tuple(args))
    public = keys.public_bytes(keys.read_keyfile(node.keyfile))
    chain.register(name, public, ip=LOOPBACK, ports=node.ports)
    return node


async def ping(cluster: Cluster, src: str, dst: str, timeout: float = 5.0) -> dict[str, Any]:
    return await cluster.call(
        src, {"op": "ping", "target": dst, "via": "tcp", "timeout": timeout}, timeout=timeout + 5
    )


async def until(what: str, check: Any, timeout: float) -> Any:
    """Poll ``await check()`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last})")


def test_a_node_registered_after_start_is_pinged_within_30_s(
    chain: TestChain, cluster: Cluster
) -> None:
    async def main() -> None:
        on_chain(cluster, chain, "alice.os")
        chain.mine(12)  # alice's registration is confirmed: she starts from the index
        cluster.start("alice.os")
        await cluster.wait_ready("alice.os", timeout=30)

        # bob registers once alice runs; default confirmations, so his block is not confirmed
        # yet: both nodes find him by a live chain read.
        on_chain(cluster, chain, "bob.os")
        cluster.start("bob.os")
        await cluster.wait_ready("bob.os", timeout=30)
        started = time.monotonic()

        async def acked() -> bool:
            return bool((await ping(cluster, "alice.os", "bob.os"))["ok"])

        await until("alice pings bob", acked, timeout=30)
        assert time.monotonic() - started < 30

        # Confirmed: the index has him too, and bob reaches alice back.
        chain.mine(12)
        assert (await ping(cluster, "bob.os", "alice.os"))["ok"]
        alice_log = cluster.nodes["alice.os"].log_text()
        assert "HNS sync" in alice_log and "found by a live chain read" in alice_log

    asyncio.run(main())


def test_reorgs_and_changed_records_reach_a_running_node(
    chain: TestChain, cluster: Cluster
) -> None:
    async def main() -> None:
        on_chain(cluster, chain, "alice.os", confirmations=0)
        bob = on_chain(cluster, chain, "bob.os", confirmations=0)
        for name in ("alice.os", "bob.os"):
            cluster.start(name)
        for name in ("alice.os", "bob.os"):
            await cluster.wait_ready(name, timeout=30)
        assert (await ping(cluster, "alice.os", "bob.os"))["ok"]

        async def lookup(name: str) -> dict[str, Any]:
            return await cluster.call("alice.os", {"op": "lookup", "name": name})

        # A reorg near the head: carol's first registration (and dave, only on that fork)
        # are replaced by the canonical chain's.
        fork = chain.snapshot()
        chain.register("carol.os", bytes(range(32)), ip="10.0.0.3", ports={"tcp": 1})
        chain.register("dave.os", bytes(range(1, 33)), ip="10.0.0.9", ports={"tcp": 9})
        await until(
            "alice sees the first fork",
            lambda: _has(lookup, "dave.os"),
            timeout=20,
        )
        chain.revert(fork)
        # (emit, not register: the twin registry would think carol's Mint is still there)
        carol2 = registration_events(
            "carol.os", bytes(range(2, 34)), ip="10.0.0.4", ports={"tcp": 2}, mint=["carol.os"]
        )
        chain.emit(carol2)
        chain.mine(2)  # the canonical chain is the longer one

        async def canonical() -> bool:
            carol = await lookup("carol.os")
            dave = await lookup("dave.os")
            return bool(carol.get("ips") == ["10.0.0.4"] and not dave["ok"])

        await until("alice's records follow the reorg", canonical, timeout=30)
        carol = await lookup("carol.os")
        assert carol["net_key"] == bytes(range(2, 34)).hex() and carol["ports"] == {"tcp": 2}

        # bob's routing changes on chain to a port nothing listens on: alice retires her
        # session to him and dials the new record, which fails.
        dead = free_port()
        chain.register(
            "bob.os",
            keys.public_bytes(keys.read_keyfile(bob.keyfile)),
            ip=LOOPBACK,
            ports={"tcp": dead},
        )

        async def moved() -> bool:
            return (await lookup("bob.os")).get("ports") == {"tcp": dead}

        await until("alice sees bob's new port", moved, timeout=20)

        async def unreachable() -> bool:
            return not (await ping(cluster, "alice.os", "bob.os", timeout=3))["ok"]

        await until("alice's pings to bob's new port fail", unreachable, timeout=20)
        assert "routing changed in HNS; redialling" in cluster.nodes["alice.os"].log_text()

        # Back on his real port but under a new key: alice drops what she has and a dial
        # fails, since bob's handshake proves the old key.
        chain.register("bob.os", bytes(range(9, 41)), ip=LOOPBACK, ports=bob.ports)

        async def rekeyed() -> bool:
            return (await lookup("bob.os")).get("net_key") == bytes(range(9, 41)).hex()

        await until("alice sees bob's new key", rekeyed, timeout=20)
        reply = await ping(cluster, "alice.os", "bob.os", timeout=3)
        assert not reply["ok"], reply

    asyncio.run(main())


async def _has(lookup: Any, name: str) -> bool:
    return bool((await lookup(name))["ok"])


def test_wrong_chain_id_stops_the_node_with_exit_2(chain: TestChain, cluster: Cluster) -> None:
    node = on_chain(cluster, chain, "alice.os")
    node.args += ["--chain-id", "1"]
    cluster.start("alice.os")
    assert node.process is not None
    assert node.process.wait(timeout=30) == 2
    lines = [x for x in node.log_text().splitlines() if "wrong chain" in x]
    assert lines and "serves chain 8453 (Base), expected 1 (Ethereum)" in lines[-1]
