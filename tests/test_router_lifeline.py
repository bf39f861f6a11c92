"""An indirect node notices a router killed without a word (SIGKILL: no CONNECTION_CLOSE) in
seconds even when no circuit runs over its QUIC connection to it, and is back with the router
once it restarts on the same port (QUIC's idle timeout alone would take a minute). Real node
processes; every wait is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet.testing.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add("router.os", ("quic", "tcp"), args=("--max-passthroughs", "8"))
    c.add("carol.os", routers=("router.os",), args=("--no-share-address",))
    try:
        yield c
    finally:
        c.stop_all()


async def _carol_on_router(c: Cluster, timeout: float) -> str:
    """Until router.os holds carol's session (opened with proxy_request); its transport."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                peers = (await c.call("router.os", {"op": "peers"}, timeout=2))["peers"]
            except (OSError, TimeoutError, ConnectionError):
                peers = []
            for p in peers:
                if p["name"] == "carol.os" and p["routing_for"]:
                    return str(p["transport"])
            await asyncio.sleep(0.1)


def test_indirect_node_redials_a_router_killed_silently(cluster: Cluster) -> None:
    c = cluster
    c.start("router.os")
    asyncio.run(c.wait_ready("router.os"))
    c.start("carol.os")
    asyncio.run(c.wait_ready("carol.os"))
    assert asyncio.run(_carol_on_router(c, 20)) == "quic"
    proc = c.nodes["router.os"].process
    assert proc is not None
    proc.kill()  # SIGKILL: the router says nothing
    proc.wait(timeout=10)
    killed = time.monotonic()
    c.start("router.os")
    asyncio.run(c.wait_ready("router.os"))
    # carol declares the silent hop dead after ~2 s, then redials (every few seconds)
    assert asyncio.run(_carol_on_router(c, 25)) in ("quic", "tcp", "ws")
    assert time.monotonic() - killed < 25
