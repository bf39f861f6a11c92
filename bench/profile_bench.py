"""Profile one in-process benchmark of ``bench/run.py`` with cProfile.

    python bench/profile_bench.py [KEY] [--n N] [--sort tottime|cumtime] [--top K]

KEY is a benchmark key from the JSON (default ``noise_tcp_pingpong``), including the transports
section's (``rt64_quic_qh3``, ``hol_quic_aioquic``, ...; their servers run in this process, so
the profile covers both ends); node benchmarks run in other processes and cannot be profiled
from here. cProfile slows Python code several times
over, so read the output as "where the time goes", not as a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Identities
from bench.run import DEFAULT_PLAN, SESSIONS, SETUP_TIMEOUT, Bench, NodeCluster, NodeHello, build
from bench.transports import DRIVES, STANDALONE, Endpoint, TransportServers
from hnet import runtime


async def profile(
    key: str, n: int, sort: str, top: int, run_for: float = 0.0, drive: str = STANDALONE
) -> str:
    ids = Identities.generate()
    ep = Endpoint(ids, {}, drive)
    with tempfile.TemporaryDirectory(prefix="hnet-profile-") as tmp:
        benches = build(NodeCluster(Path(tmp)), ep)  # the node cluster is never started
    candidates: dict[str, Bench] = {
        b.metric.key: b for b in benches if not isinstance(b, NodeHello)
    }
    if key not in candidates:
        raise SystemExit(f"unknown or unprofilable key {key!r}; one of: {', '.join(candidates)}")
    bench = candidates[key]
    tplan = replace(DEFAULT_PLAN.transport, setup=max(5, n // 10))
    plan = replace(DEFAULT_PLAN, pingpong_n=n, bulk_count=max(1, n // 500), transport=tplan)
    servers = TransportServers(ids, drive=drive)
    try:
        if bench.metric.section != SESSIONS:  # the transports section: start its servers
            ep.ports.update(await servers.start())
        async with asyncio.timeout(SETUP_TIMEOUT):
            await bench.setup()
        await bench.measure(plan.warmup())
        plain, _ = await bench.measure(plan)
        if run_for > 0:  # no cProfile: a sampling profiler outside watches this process
            values = [plain]
            deadline = time.monotonic() + run_for
            while time.monotonic() < deadline:
                values.append((await bench.measure(plan))[0])
            return (
                f"{bench.metric.label}: {len(values)} measurements in {run_for:.0f} s,"
                f" median {statistics.median(values):.1f} {bench.metric.unit}"
            )
        prof = cProfile.Profile()
        prof.enable()
        profiled, _ = await bench.measure(plan)
        prof.disable()
    finally:
        await bench.aclose()
        await servers.aclose()
    out = io.StringIO()
    print(
        f"{bench.metric.label}: {plain:.1f} {bench.metric.unit} unprofiled, "
        f"{profiled:.1f} under cProfile",
        file=out,
    )
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("key", nargs="?", default="noise_tcp_pingpong")
    p.add_argument(
        "--n",
        type=int,
        default=5000,
        help=(
            "round trips (bulk: n/500 messages; setup: n/10 connections); the transports"
            " section's other lines use their default sizes"
        ),
    )
    p.add_argument("--sort", default="tottime", choices=["tottime", "cumtime"])
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--run-for",
        type=float,
        default=0.0,
        metavar="S",
        help="no cProfile: measure again and again for S seconds, for a sampling profiler"
        " (bench/spy_owners.py)",
    )
    p.add_argument(
        "--sessions",
        choices=DRIVES,
        default=STANDALONE,
        help="the transports section's sessions: standalone or driven as a peer table does",
    )
    args = p.parse_args()
    print(runtime.run(profile(args.key, args.n, args.sort, args.top, args.run_for, args.sessions)))


if __name__ == "__main__":
    main()
