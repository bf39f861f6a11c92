"""A router killed mid-traffic, with figures (docs/reliability.md §5).

carol.os is indirect behind r1.os and r2.os (``--no-share-address``: she stays routed).
alice.os runs ``hnet ping carol.os -c 40 -i 0.25`` first ``--via quic`` (a QUIC circuit),
then ``--via tcp`` (a TCP passthrough); after the 6th ack of each run the router carrying the
session is SIGKILLed (it sends nothing more: no FIN from the process, no CONNECTION_CLOSE).
Between the runs the killed router is restarted and carol reconnects to it. For each run:
the pings resume through the other router, sent = received + the failures reported, the
RSS of alice.os and carol.os is sampled, and both answer ``status`` afterwards. Loopback only;
every wait is bounded (tests/test_circuit_failover_multiprocess.py is the QUIC-only original).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hnet.testing import chaos
from hnet.testing.cluster import Cluster

pytestmark = pytest.mark.timeout(150)

COUNT, INTERVAL, KILL_AFTER = 40, 0.25, 6
RSS_BOUND_KIB = 50 * 1024
SUMMARY = re.compile(r"^(\d+) sent, (\d+) received, \d+% loss")


def ack_re(via: str) -> re.Pattern[str]:
    return re.compile(rf"^ack from carol\.os via {via}: seq=(\d+) time=([0-9.]+) ms$")


NO_REPLY = re.compile(r"^no reply from carol\.os: seq=(\d+) (\w+): ")


async def carol_routed_by_both(c: Cluster, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            routed = 0
            for router in ("r1.os", "r2.os"):
                peers = (await c.call(router, {"op": "peers"}))["peers"]
                routed += any(p["name"] == "carol.os" and p["routing_for"] for p in peers)
            if routed == 2:
                return
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("chaos-router"))
    c.add("alice.os", ("quic", "tcp"))
    c.add("r1.os", ("quic", "tcp"), args=("--max-passthroughs", "8"))
    c.add("r2.os", ("quic", "tcp"), args=("--max-passthroughs", "8"))
    c.add("carol.os", routers=("r1.os", "r2.os"), args=("--no-share-address",))
    for n in c.nodes:
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(40):
                await asyncio.gather(*(c.wait_ready(n) for n in c.nodes))
            await carol_routed_by_both(c)

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


async def router_of_carol(c: Cluster, via: str) -> str | None:
    peers = {p["name"]: p for p in (await c.call("alice.os", {"op": "peers"}))["peers"]}
    carol = peers.get("carol.os")
    if carol and carol["transport"] == via:
        router: str | None = carol["router"]
        return router
    return None


async def ping_and_kill(c: Cluster, via: str) -> dict[str, Any]:
    """One ping run over ``via``; SIGKILL the router carrying it after the KILL_AFTER-th ack."""
    home = c.nodes["alice.os"].home
    warm = await c.call(
        "alice.os", {"op": "ping", "target": "carol.os", "via": via, "timeout": 10}, timeout=20
    )
    assert warm["ok"], warm
    victim = await router_of_carol(c, via)
    assert victim in ("r1.os", "r2.os"), victim
    other = "r2.os" if victim == "r1.os" else "r1.os"
    pids = {n: c.nodes[n].process.pid for n in ("alice.os", "carol.os")}  # type: ignore[union-attr]
    samplers = {n: chaos.RssSampler(pid, interval=0.5).start() for n, pid in pids.items()}
    ack = ack_re(via)
    env = dict(os.environ, HNET_HOME=str(home))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hnet", "ping", "carol.os", "--via", via,
        "-c", str(COUNT), "-i", str(INTERVAL),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    killed = 0.0
    try:
        async with asyncio.timeout(COUNT * INTERVAL + 40):
            while line := await proc.stdout.readline():
                text = line.decode().rstrip("\n")
                lines.append((time.monotonic(), text))
                m = ack.match(text)
                if not killed and m and int(m.group(1)) == KILL_AFTER:
                    vp = c.nodes[victim].process
                    assert vp is not None
                    vp.kill()  # SIGKILL
                    vp.wait(timeout=10)
                    killed = time.monotonic()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for s in samplers.values():
            await s.stop()
    out = "\n".join(t for _, t in lines)
    acks = [(at, int(m.group(1)), float(m.group(2))) for at, t in lines if (m := ack.match(t))]
    failures = [(int(m.group(1)), m.group(2)) for _, t in lines if (m := NO_REPLY.match(t))]
    summary = [m for _, t in lines if (m := SUMMARY.match(t))]
    assert killed, out
    assert len(summary) == 1, out
    sent, received = int(summary[0].group(1)), int(summary[0].group(2))
    after = [at for at, _, _ in acks if at > killed]
    rtts = [r for _, _, r in acks]
    now = await router_of_carol(c, via)
    figures = {
        "via": via,
        "killed": victim,
        "sent": sent,
        "received": received,
        "failures_reported": len(failures),
        "failed_seqs": failures,
        "resumed_s_after_kill": round(after[0] - killed, 2) if after else None,
        "rtt_p50_ms": chaos.percentile(rtts, 0.5),
        "rtt_p99_ms": chaos.percentile(rtts, 0.99),
        "rtt_max_ms": max(rtts, default=None),
        "router_after": now,
        "rss_kib": {n: s.thinned(8) for n, s in samplers.items()},
        "rss_growth_kib": {n: s.growth_kib for n, s in samplers.items()},
    }
    # the counts add up: every hello is acknowledged or its failure is reported
    assert sent == COUNT and received == len(acks), out
    assert sent == received + len(failures), out
    assert sorted([s for _, s, _ in acks] + [s for s, _ in failures]) == list(
        range(1, COUNT + 1)
    ), out
    assert after, out
    assert after[0] - killed < 5.0, (figures, out)
    assert len(failures) <= 3, (figures, out)
    assert now == other, figures
    for n, s in samplers.items():
        assert s.growth_kib < RSS_BOUND_KIB, (n, figures)
    for n in ("alice.os", "carol.os", other):
        assert (await c.call(n, {"op": "status"}))["ok"]
    return figures


def test_router_killed_mid_traffic(rc: Cluster) -> None:
    async def main() -> list[dict[str, Any]]:
        quic = await ping_and_kill(rc, "quic")
        # bring the killed router back; carol reconnects to it (every 4 s). QUIC first: carol's
        # hop to the killed router carried the circuit, so she notices its death within
        # HOP_DEAD_AFTER; a hop that carried none stays up until QUIC's idle timeout (60 s)
        rc.start(quic["killed"])
        await rc.wait_ready(quic["killed"], timeout=20)
        await carol_routed_by_both(rc)
        tcp = await ping_and_kill(rc, "tcp")
        return [quic, tcp]

    for figures in asyncio.run(main()):
        chaos.report(f"router killed mid-traffic ({figures['via']})", figures)
