"""Circuits (routed QUIC, docs/quic.md §11) between real ``hnet node`` processes: carol.os is
indirect behind two routers; alice.os pings her over QUIC through them, sees the router in
``hnet peers --json``, and still reaches her through the other router once the first one is
gone. TCP/WS routing to carol keeps working beside it. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hnet.testing.cluster import Cluster

from .conftest import run_cli

PING_LINE = re.compile(r"^ack from (\S+) via (quic|tcp|ws): seq=(\d+) time=([0-9.]+) ms$", re.M)


@pytest.fixture(scope="module")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("circuits"))
    c.add("alice.os")
    c.add("r1.os", args=("--max-passthroughs", "8"))
    c.add("r2.os", args=("--max-passthroughs", "8"))
    # routed is what is tested here: carol keeps her address private (no direct upgrade)
    c.add("carol.os", routers=("r1.os", "r2.os"), args=("--no-share-address",))
    for n in ("alice.os", "r1.os", "r2.os", "carol.os"):
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.wait_ready(n) for n in c.nodes))
            for router in ("r1.os", "r2.os"):
                await _routed(c, router)

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


async def _routed(c: Cluster, router: str, timeout: float = 20.0) -> None:
    """Until ``router`` holds carol's QUIC session opened with proxy_request."""
    async with asyncio.timeout(timeout):
        while True:
            peers = (await c.call(router, {"op": "peers"}))["peers"]
            if any(
                p["name"] == "carol.os" and p["routing_for"] and p["transport"] == "quic"
                for p in peers
            ):
                return
            await asyncio.sleep(0.05)


def _peers(c: Cluster, name: str) -> dict[str, Any]:
    res = run_cli("peers", "--json", home=c.nodes[name].home)
    assert res.returncode == 0, res.stdout + res.stderr
    return {p["name"]: p for p in json.loads(res.stdout)}


def _ping_quic(c: Cluster, count: int = 3) -> None:
    res = run_cli(
        "ping", "carol.os", "-c", str(count), "-i", "0.05", "--via", "quic",
        home=c.nodes["alice.os"].home,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    lines = PING_LINE.findall(res.stdout)
    assert [(n, v, s) for n, v, s, _ in lines] == [
        ("carol.os", "quic", str(i)) for i in range(1, count + 1)
    ]
    assert f"{count} sent, {count} received, 0% loss" in res.stdout


def test_ping_over_quic_through_either_router(cc: Cluster) -> None:
    _ping_quic(cc)
    alice = _peers(cc, "alice.os")
    first = alice["carol.os"]["router"]
    assert first in ("r1.os", "r2.os") and alice["carol.os"]["transport"] == "quic"
    carol = _peers(cc, "carol.os")
    assert carol["alice.os"]["router"] == first
    assert {carol[r]["transport"] for r in ("r1.os", "r2.os")} == {"quic"}
    diag = run_cli("diag", home=cc.nodes[first].home).stdout
    assert "circuits (8 max): 1 live" in diag
    # the reference's way still works to the same node, through a router, over TCP and WS
    for via in ("tcp", "ws"):
        res = run_cli("ping", "carol.os", "-c", "1", "--via", via, home=cc.nodes["alice.os"].home)
        assert res.returncode == 0, res.stdout + res.stderr
        assert PING_LINE.findall(res.stdout)[0][1] == via
    # the router in use goes away: the next QUIC dial goes through the other one
    cc.stop(first)

    async def circuit_gone() -> None:
        async with asyncio.timeout(5):
            while True:
                peers = (await cc.call("alice.os", {"op": "peers"}))["peers"]
                carol = [p for p in peers if p["name"] == "carol.os"]
                if not carol or carol[0]["router"] != first or carol[0]["transport"] != "quic":
                    return
                await asyncio.sleep(0.05)

    asyncio.run(circuit_gone())
    # The stopped router closed our hop under the circuit: circuit dials try it last for a
    # while (ROUTER_LOST_PENALTY), so the next hello goes through the other one at once.
    t0 = time.monotonic()
    req = {"op": "ping", "target": "carol.os", "via": "quic", "timeout": 5}
    reply = asyncio.run(cc.call("alice.os", req, timeout=10))
    assert time.monotonic() - t0 < 5.0
    assert reply["ok"] and reply["via"] == "quic", reply
    _ping_quic(cc, count=2)
    second = _peers(cc, "alice.os")["carol.os"]["router"]
    assert second in ("r1.os", "r2.os") and second != first
