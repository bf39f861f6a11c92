"""Circuit failover between real ``hnet node`` processes (docs/quic.md §11, "Our
implementation"): carol.os is indirect behind r1.os and r2.os; while ``hnet ping carol.os
--via quic -c 40 -i 0.25`` runs on alice.os, the router carrying the circuit is killed
(SIGKILL: it never sends a CONNECTION_CLOSE). Pings resume through the other router within
5 s of the kill, and the summary adds up: sent = received + the failures reported. Every wait
is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterator

import pytest

from hnet.testing.cluster import Cluster

from .conftest import run_cli

ACK = re.compile(r"^ack from carol\.os via quic: seq=(\d+) time=[0-9.]+ ms$")
NO_REPLY = re.compile(r"^no reply from carol\.os: seq=(\d+) (\w+): ")
SUMMARY = re.compile(r"^(\d+) sent, (\d+) received, \d+% loss")


@pytest.fixture(scope="module")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("failover"))
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
                while True:
                    routed = 0
                    for router in ("r1.os", "r2.os"):
                        peers = (await c.call(router, {"op": "peers"}))["peers"]
                        routed += any(
                            p["name"] == "carol.os" and p["routing_for"]
                            and p["transport"] == "quic"
                            for p in peers
                        )  # fmt: skip
                    if routed == 2:
                        return
                    await asyncio.sleep(0.05)

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


def _router_of_carol(c: Cluster) -> str | None:
    res = run_cli("peers", "--json", home=c.nodes["alice.os"].home)
    assert res.returncode == 0, res.stdout + res.stderr
    peers = {p["name"]: p for p in json.loads(res.stdout)}
    carol = peers.get("carol.os")
    return carol["router"] if carol and carol["transport"] == "quic" else None


async def _ping_and_kill(c: Cluster, router: str) -> tuple[list[tuple[float, str]], float]:
    """Run the ping; SIGKILL ``router`` after the 6th ack. Lines with their arrival times,
    and the time of the kill."""
    env = dict(os.environ, HNET_HOME=str(c.nodes["alice.os"].home))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hnet", "ping", "carol.os", "--via", "quic",
        "-c", "40", "-i", "0.25",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    killed = 0.0
    try:
        async with asyncio.timeout(60):
            while line := await proc.stdout.readline():
                text = line.decode().rstrip("\n")
                lines.append((time.monotonic(), text))
                m = ACK.match(text)
                if not killed and m and int(m.group(1)) == 6:
                    victim = c.nodes[router].process
                    assert victim is not None
                    victim.kill()  # SIGKILL
                    killed = time.monotonic()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return lines, killed


def test_killing_the_router_in_use_during_a_ping_run(cc: Cluster) -> None:
    res = run_cli("ping", "carol.os", "-c", "2", "-i", "0.05", "--via", "quic",
                  home=cc.nodes["alice.os"].home)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    first = _router_of_carol(cc)
    assert first in ("r1.os", "r2.os")
    other = "r2.os" if first == "r1.os" else "r1.os"
    lines, killed = asyncio.run(_ping_and_kill(cc, first))
    out = "\n".join(t for _, t in lines)
    assert killed, out
    acks = [(at, int(m.group(1))) for at, t in lines if (m := ACK.match(t))]
    failures = [int(m.group(1)) for _, t in lines if (m := NO_REPLY.match(t))]
    summary = [m for _, t in lines if (m := SUMMARY.match(t))]
    assert len(summary) == 1, out
    sent, received = int(summary[0].group(1)), int(summary[0].group(2))
    # the counts add up: every hello is acknowledged or its failure is reported
    assert sent == 40 and received == len(acks), out
    assert sent == received + len(failures), out
    assert sorted([s for _, s in acks] + failures) == list(range(1, 41)), out
    # pings resume through the other router within 5 s of the kill
    after = [at for at, _ in acks if at > killed]
    assert after, out
    resumed = after[0] - killed
    assert resumed < 5.0, (resumed, out)
    assert len(failures) <= 2, out
    assert _router_of_carol(cc) == other
    print(f"resumed {resumed:.2f} s after the kill; failures: {failures}")
