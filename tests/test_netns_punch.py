"""The direct upgrade of a routed QUIC session through two real NATs (docs/quic.md §11.13), with
real ``hnet node`` processes in the network namespaces of :class:`hnet.testing.netns.NatTopology`:
r.os routes circuits on the public side, alice.os (a direct node on her LAN address) sits
behind nat_a, carol.os (indirect, behind r.os) behind nat_b.

- alice pings carol ``--via quic``: the circuit through r.os comes up, then alice dials carol's
  observed address from her listener socket while carol punches, and ``hnet peers --json``
  shows the session direct (carol's NAT's public address, no router) on both ends; pings keep
  acking throughout.
- With the direct path blocked between the NATs (``block_direct``), or carol's NAT symmetric,
  the upgrade fails and the session stays routed; pings keep acking.

Skipped (with the reason) where namespaces cannot be made. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hnet import keys
from hnet.testing import netns
from hnet.testing.cluster import Cluster, ClusterNode
from hnet.testing.netns import NatTopology
from hns import Registry

from .conftest import run_cli

PING_LINE = re.compile(r"^ack from (\S+) via (quic|tcp|ws): seq=(\d+) time=([0-9.]+) ms$", re.M)
PORTS = {"quic": 9101, "tcp": 9102, "ws": 9103}


@pytest.fixture(autouse=True)
def _need_netns() -> None:
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)


class NatCluster(Cluster):
    """A :class:`Cluster` whose nodes run inside the topology's namespaces."""

    def __init__(self, root: Path, topo: NatTopology) -> None:
        super().__init__(root)
        self.topo = topo
        self.where: dict[str, str] = {}

    def place(
        self, name: str, ns: str, *, ip: str | None = None, routers: tuple[str, ...] = ()
    ) -> ClusterNode:
        home = self.root / name
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
        key = keys.generate()
        keys.write_keyfile(home / "key", key)
        reg = Registry(self.registry)
        if routers:
            reg.register(name, keys.public_bytes(key), routers=routers)
        else:
            reg.register(name, keys.public_bytes(key), ip=ip, ports=PORTS)
        node = ClusterNode(name, home, home / "key", {} if routers else dict(PORTS),
                           log_path=home / "node.log", routers=routers)  # fmt: skip
        self.nodes[name] = node
        self.where[name] = ns
        return node

    def start(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        node = self.nodes[name]
        with open(node.log_path, "ab") as logf:
            argv = self.topo.exec_argv(self.where[name], node.command(self.registry))
            node.process = subprocess.Popen(
                argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )


def _cluster(tmp: Path, topo: NatTopology) -> NatCluster:
    c = NatCluster(tmp, topo)
    c.place("r.os", topo.public, ip=topo.router_ip).args = ["--max-passthroughs", "8"]
    c.place("alice.os", topo.host_a, ip=topo.host_a_ip)
    c.place("carol.os", topo.host_b, routers=("r.os",))
    for n in ("r.os", "alice.os", "carol.os"):
        c.start(n)

    async def ready() -> None:
        async with asyncio.timeout(20):
            await asyncio.gather(*(c.wait_ready(n) for n in c.nodes))
            while True:  # carol holds her QUIC hop to r.os (opened with proxy_request)
                peers = (await c.call("r.os", {"op": "peers"}))["peers"]
                if any(p["name"] == "carol.os" and p["routing_for"] and p["transport"] == "quic"
                       for p in peers):  # fmt: skip
                    return
                await asyncio.sleep(0.05)

    try:
        asyncio.run(ready())
    except BaseException:
        c.stop_all()
        raise
    return c


@contextlib.contextmanager
def nat_cluster(tmp: Path, prepare: Any = None) -> Iterator[tuple[NatTopology, NatCluster]]:
    """A topology (``prepare(topo)`` first: NAT behaviour is set before the nodes open their
    flows) and the three nodes in it, all torn down after."""
    with NatTopology() as topo:
        if prepare is not None:
            prepare(topo)
        c = _cluster(tmp, topo)
        try:
            yield topo, c
        finally:
            c.stop_all()


def _peers(c: Cluster, name: str) -> dict[str, Any]:
    """``hnet peers --json`` of ``name``, by peer name."""
    res = run_cli("peers", "--json", home=c.nodes[name].home, timeout=15)
    assert res.returncode == 0, res.stdout + res.stderr
    return {p["name"]: p for p in json.loads(res.stdout)}


def _path(c: Cluster, name: str, peer: str) -> str | None:
    """The path of ``name``'s session with ``peer``, over the control socket (cheap to poll)."""
    peers = asyncio.run(c.call(name, {"op": "peers"}, timeout=5))["peers"]
    return next((p["path"] for p in peers if p["name"] == peer), None)


def _diag(c: Cluster, name: str) -> str:
    text: str = asyncio.run(c.call(name, {"op": "diag"}, timeout=5))["text"]
    return text


def _ping(c: Cluster, count: int, interval: float = 0.1) -> None:
    res = run_cli(
        "ping", "carol.os", "-c", str(count), "-i", str(interval), "--via", "quic",
        home=c.nodes["alice.os"].home, timeout=30,
    )  # fmt: skip
    logs = "\n".join(f"--- {n}\n{c.nodes[n].log_text()[-3000:]}" for n in c.nodes)
    assert res.returncode == 0, res.stdout + res.stderr + logs
    lines = PING_LINE.findall(res.stdout)
    assert [(n, v, s) for n, v, s, _ in lines] == [
        ("carol.os", "quic", str(i)) for i in range(1, count + 1)
    ], res.stdout
    assert f"{count} sent, {count} received, 0% loss" in res.stdout


def _wait(c: Cluster, predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {n}\n{c.nodes[n].log_text()[-3000:]}" for n in c.nodes)
    raise AssertionError(f"{what} not reached within {timeout} s\n{logs}")


def test_routed_session_upgrades_to_direct(tmp_path: Path) -> None:
    with nat_cluster(tmp_path) as (topo, c):
        _upgrades(topo, c)


def _upgrades(topo: NatTopology, c: Cluster) -> None:
    _ping(c, 10)  # the circuit opens with the first; the upgrade happens during the run
    _wait(c, lambda: _path(c, "alice.os", "carol.os") == "direct", 10, "direct path")
    carol = _peers(c, "alice.os")["carol.os"]
    assert carol["transport"] == "quic" and carol["router"] is None
    assert carol["remote"].startswith(f"{topo.nat_b_public_ip}:")  # through carol's NAT
    _ping(c, 5)
    _wait(c, lambda: _path(c, "carol.os", "alice.os") == "direct", 5, "carol direct")
    alice = _peers(c, "carol.os")["alice.os"]
    assert alice["remote"].startswith(f"{topo.nat_a_public_ip}:") and alice["router"] is None
    assert "direct upgrades (on): tried 1, succeeded 1, failed 0" in _diag(c, "alice.os")
    assert "direct upgrades (on): tried 1, succeeded 1, failed 0" in _diag(c, "carol.os")


def _stays_routed(c: Cluster) -> None:
    _ping(c, 5)
    _wait(c, lambda: "failed 1" in _diag(c, "alice.os"), 10, "the failed upgrade")
    _ping(c, 5)
    carol = _peers(c, "alice.os")["carol.os"]
    assert (carol["path"], carol["router"], carol["transport"]) == ("routed", "r.os", "quic")
    assert "direct upgrades (on): tried 1, succeeded 0, failed 1" in _diag(c, "alice.os")
    # carol punched, saw no connection within her window, and backs off too
    _wait(c, lambda: "failed 1" in _diag(c, "carol.os"), 10, "carol's window passing")
    assert _path(c, "carol.os", "alice.os") == "routed"


def test_blocked_direct_path_stays_routed(tmp_path: Path) -> None:
    with nat_cluster(tmp_path, NatTopology.block_direct) as (_topo, c):
        _stays_routed(c)


def test_symmetric_nat_stays_routed(tmp_path: Path) -> None:
    with nat_cluster(tmp_path, lambda t: t.set_symmetric("b")) as (_topo, c):
        _stays_routed(c)
