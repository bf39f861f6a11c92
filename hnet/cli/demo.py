"""``hnet demo``: three local nodes in a temporary home, pinging over QUIC, TCP and WS."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

from hnet.cli.common import EXIT_FAIL, EXIT_OK, CliError
from hnet.runtime import run as run_loop
from hnet.testing.cluster import Cluster

NAMES = ("alice.os", "bob.os", "carol.os")
PAIRS = (("alice.os", "bob.os"), ("bob.os", "carol.os"), ("carol.os", "alice.os"))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run three local nodes and ping across QUIC, TCP and WS",
        description="In a temporary home: create keys, register three nodes in a local "
        "registry, start them as separate processes on free loopback ports, ping across QUIC, "
        "TCP and WS, print a table, stop everything. No chain and no internet needed.",
    )
    p.add_argument("-c", "--count", type=int, default=3, metavar="N", help="hellos per pair")
    p.add_argument("--keep", action="store_true", help="keep the temporary home")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CliError("demo: --count must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="hnet-demo-"))
    cluster = Cluster(root)
    try:
        return run_loop(_demo(cluster, args.count))
    finally:
        cluster.stop_all()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _demo(cluster: Cluster, count: int) -> int:
    print(f"demo home {cluster.root}")
    for name in NAMES:
        node = cluster.add(name)
        ports = ", ".join(f"{t} {p}" for t, p in node.ports.items())
        print(f"registered {name} at 127.0.0.1 ({ports})")
    for name in NAMES:
        cluster.start(name)
    try:
        await asyncio.gather(*(cluster.wait_ready(n) for n in NAMES))
    except (RuntimeError, TimeoutError) as e:
        raise CliError(f"demo: a node failed to start: {e}") from None
    print(f"started {len(NAMES)} nodes\n")
    rows: list[tuple[str, str, int, list[float]]] = []
    for via in ("quic", "tcp", "ws"):
        for src, dst in PAIRS:
            rtts: list[float] = []
            for _ in range(count):
                reply = await cluster.call(src, {"op": "ping", "target": dst, "via": via})
                if reply.get("ok") and reply.get("via") == via:
                    rtts.append(float(reply["rtt_ms"]))
            rows.append((f"{src} -> {dst}", via, len(rtts), rtts))
    print(f"{'PAIR':24} {'TRANSPORT':9} {'REPLIES':>7}  {'RTT ms (min/median/max)'}")
    for pair, via, n, rtts in rows:
        rtt = f"{min(rtts):.2f}/{statistics.median(rtts):.2f}/{max(rtts):.2f}" if rtts else "-"
        print(f"{pair:24} {via:9} {f'{n}/{count}':>7}  {rtt}")
    ok = all(n == count for _, _, n, _ in rows)
    print("\nall pairs answered" if ok else "\nsome pairs did not answer (see node logs)")
    return EXIT_OK if ok else EXIT_FAIL
