"""Routed QUIC (circuits, docs/quic.md §11): routed against direct, router CPU and memory.

    python bench/circuits.py [--quick] [--json PATH] [--circuits N] [--cpu CPU | --no-pin]

The router is a real ``hnet node`` process (:class:`hnet.testing.cluster.Cluster`, started
with ``--max-passthroughs``); the sources and targets are :class:`~hnet.node.Node` objects in
this process, one event loop (:class:`hnet.testing.harness.Net`), on the same registry. So
the router's CPU and memory are its own process's, read from ``/proc``.

Measured in one run (see bench/README.md, "Routed QUIC (circuits)"):

1. **Round trips**: 64 B hellos (``node.request`` to the net module, its ack), sequential,
   direct QUIC a.os -> d.os (the floor) and routed QUIC a.os -> r.os -> c.os (c.os indirect
   behind r.os); rounds alternate direct and routed batches (which goes first alternates),
   the ratio is the median of the per-round ratios routed/direct. Bulk: 10 MB hellos (10 MB
   request one way, to its ack), MB/s and the same ratio.
2. **Router CPU per relayed message**: user + system CPU of the router process (all its
   threads, ``/proc/<pid>/task/*/schedstat``, ns) across a batch of routed hellos, its idle
   rate subtracted; a hello round trip is 2 relayed messages. Beside it, this process's CPU
   (source + target) per routed and per direct round trip.
3. **Many circuits**: a fresh router process; ``ceil(N / 16)`` sources (16 circuits per source
   and router is CIRCUIT_MAX_PER_SOURCE) each open a circuit to 16 of ``max(16, sources)``
   indirect targets; the router's VmRSS growth per circuit (the sources' hop connections are up
   before the baseline) at each quarter, and the time to open them (16 dials at a time).
4. **Head-of-line**: on the routed session, p99 of sequential 64 B hellos sent while a 10 MB
   routed hello is in flight on the same session, against idle p99 on the same session (target
   within 3x); idle blocks and loaded transfers alternate, and so do the routed and the direct
   session (the direct one for reference).

Progress goes to stderr; a table to stdout; JSON to bench/results/circuits.json. Every loop and
wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``hnet`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, MB, machine_info, median, percentile, pin, pin_choice, spread
from hnet import keys, limits, runtime
from hnet.core.wire import ResponseMessage
from hnet.log import configure
from hnet.node import Node, NodeStartError
from hnet.testing.cluster import LOOPBACK, Cluster, free_port
from hnet.testing.harness import Net, hello, until
from hnet.transport.quic.circuit import CircuitSession
from hnet.transport.quic.transport import QuicSession

DEFAULT_JSON = BENCH_DIR / "results" / "circuits.json"
ALL = ("quic", "tcp", "ws")
HELLO_SIZE = 64
#: Upper bound on one request (a 10 MB routed hello on a slow, shared machine included).
REQUEST_TIMEOUT = 120.0
SETUP_TIMEOUT = 60.0
#: Circuits one source holds through one router (the router's CircuitTable cap).
PER_SOURCE = limits.CIRCUIT_MAX_PER_SOURCE
#: Circuit dials in flight at once in the many-circuits part.
OPEN_CONCURRENCY = 16


class BenchError(Exception):
    """The bench could not run or produced a wrong result; one line for the user."""


@dataclass(frozen=True)
class Plan:
    rounds: int  # rounds of (direct, routed) hello and bulk batches
    hellos: int  # sequential hellos per path per round
    bulk_count: int  # bulk messages per path per round
    bulk_size: int
    cpu_hellos: int  # routed hellos over which the router's CPU is read
    circuits: int  # circuits the many-circuits router is asked to hold
    hol_idle: int  # idle probes per path
    hol_bulks: int  # bulk messages probed per path


#: About 2-3 minutes on 2 shared vCPUs.
DEFAULT_PLAN = Plan(
    rounds=7,
    hellos=400,
    bulk_count=2,
    bulk_size=10_000_000,
    cpu_hellos=2000,
    circuits=1000,
    hol_idle=1000,
    hol_bulks=8,
)
#: A smoke run (the test's): ~15 s, figures too few to quote.
QUICK_PLAN = Plan(
    rounds=2,
    hellos=40,
    bulk_count=1,
    bulk_size=1_000_000,
    cpu_hellos=100,
    circuits=32,
    hol_idle=60,
    hol_bulks=1,
)


def log(msg: str) -> None:
    print(f"[circuits] {msg}", file=sys.stderr, flush=True)


# --- /proc ------------------------------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """CPU time (ns) of every thread of ``pid``: the first field of each task's schedstat, or
    utime + stime in clock ticks from ``stat`` where schedstat is missing."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/task: {e}") from None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            total += ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass  # the thread has just exited
    return total


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


# --- helpers ----------------------------------------------------------------------------------


async def rt(node: Node, target: str, body: bytes, via: str | None = None) -> float:
    """One hello and its ack, in seconds (checked: an ack from ``target``)."""
    t0 = time.perf_counter()
    reply = await hello(node, target, via, timeout=REQUEST_TIMEOUT, body=body)
    dt = time.perf_counter() - t0
    if not isinstance(reply.message.message, ResponseMessage) or reply.via != "quic":
        raise BenchError(f"hello to {target}: unexpected reply (via {reply.via})")
    return dt


async def batch(
    node: Node, target: str, n: int, body: bytes, via: str | None = None
) -> list[float]:
    return [await rt(node, target, body, via) for _ in range(n)]


def us(values: list[float]) -> list[float]:
    return [v * 1e6 for v in values]


def stats_us(values_s: list[float]) -> dict[str, float]:
    v = us(values_s)
    return {
        "median_us": median(v),
        "p50_us": percentile(v, 50),
        "p99_us": percentile(v, 99),
        "n": float(len(v)),
    }


class Router:
    """One ``hnet node`` router process in the cluster, pinned like the rest."""

    def __init__(self, cluster: Cluster, name: str, cpu: int | None) -> None:
        self.cluster = cluster
        self.name = name
        self.cpu = cpu

    async def start(self) -> None:
        self.cluster.start(self.name)
        await self.cluster.wait_ready(self.name, timeout=SETUP_TIMEOUT)
        pin(self.pid, self.cpu)

    @property
    def pid(self) -> int:
        proc = self.cluster.nodes[self.name].process
        if proc is None:
            raise BenchError(f"{self.name} not started")
        return proc.pid

    async def live_circuits(self) -> int:
        text = str((await self.cluster.call(self.name, {"op": "diag"}, timeout=30))["text"])
        for line in text.splitlines():
            if line.startswith("circuits ("):
                return int(line.split(":", 1)[1].split("live")[0].strip())
        raise BenchError(f"{self.name} diag has no circuits line")

    def stop(self) -> None:
        self.cluster.stop(self.name)


async def hop(node: Node, router: str) -> QuicSession:
    """``node``'s QUIC connection to ``router``, dialled now if it has none (as a circuit dial
    would, so its cost is not counted as the circuit's)."""
    s = node.peers.session(router)
    if not isinstance(s, QuicSession):
        s = await node.dialler.dial(router, "quic")
        node.circuits.install(s)
        node.peers.adopt(s)
    if not isinstance(s, QuicSession):
        raise BenchError(f"{node.name}: no QUIC hop to {router}")
    return s


async def start_node(net: Net, name: str) -> Node:
    """``net.node(name)``; a direct node whose port was taken meanwhile (the kernel hands the
    port picked at registration to an outgoing socket: this process opens hundreds) is
    re-registered with the same key on fresh ports and started again, at most 3 times."""
    for attempt in range(3):
        try:
            # routed QUIC is what is measured: no direct upgrade (docs/quic.md §11.13)
            return await net.node(name, share_address=False)
        except NodeStartError as e:
            rec = net.registry.lookup(name)
            if "is taken" not in str(e) or rec is None or attempt == 2:
                raise
            ports = {t: free_port() for t, port in rec.ports.items() if port}
            net.registry.register(name, keys.public_bytes(net.keys[name]), LOOPBACK, ports)
            log(f"{name}: {e}; re-registered on fresh ports")
    raise BenchError(f"{name} did not start")


# --- 1, 2, 4: one source, one router, a direct and an indirect target -------------------------


@dataclass
class Trio:
    a: Node  # the source
    d: Node  # direct target (the floor)
    c: Node  # indirect target behind the router
    router: Router


async def round_trips(t: Trio, plan: Plan) -> dict[str, Any]:
    body = b"h" * HELLO_SIZE
    big = b"B" * plan.bulk_size
    per: dict[str, list[float]] = {"direct": [], "routed": [], "bulk_direct": [], "bulk_routed": []}
    ratios: list[float] = []
    bulk_ratios: list[float] = []
    cpu_rt: dict[str, list[float]] = {"direct": [], "routed": []}
    targets = {"direct": t.d.name, "routed": t.c.name}
    for r in range(plan.rounds):
        order = ("direct", "routed") if r % 2 == 0 else ("routed", "direct")
        med: dict[str, float] = {}
        mbs: dict[str, float] = {}
        for path in order:
            c0 = time.process_time()
            rtts = await batch(t.a, targets[path], plan.hellos, body)
            cpu_rt[path].append((time.process_time() - c0) / plan.hellos * 1e6)
            med[path] = median(us(rtts))
            per[path].append(med[path])
            bulk = await batch(t.a, targets[path], plan.bulk_count, big)
            mbs[path] = plan.bulk_size / MB / median(bulk)
            per["bulk_" + path].append(mbs[path])
        ratios.append(med["routed"] / med["direct"])
        bulk_ratios.append(mbs["routed"] / mbs["direct"])
        log(
            f"round {r + 1}/{plan.rounds}: hello direct {med['direct']:.0f} us, routed "
            f"{med['routed']:.0f} us ({ratios[-1]:.2f}x); bulk direct {mbs['direct']:.1f} MB/s, "
            f"routed {mbs['routed']:.1f} MB/s ({bulk_ratios[-1]:.2f}x)"
        )
    return {
        "hello_direct_us": per["direct"],
        "hello_routed_us": per["routed"],
        "hello_ratio_per_round": ratios,
        "hello_ratio": median(ratios),
        "bulk_direct_mbs": per["bulk_direct"],
        "bulk_routed_mbs": per["bulk_routed"],
        "bulk_ratio_per_round": bulk_ratios,
        "bulk_ratio": median(bulk_ratios),
        "bulk_size": plan.bulk_size,
        "hellos_per_round": plan.hellos,
        "bulk_per_round": plan.bulk_count,
        "rounds": plan.rounds,
        "this_process_cpu_us_per_rt": {k: median(v) for k, v in cpu_rt.items()},
    }


async def router_cpu(t: Trio, plan: Plan) -> dict[str, Any]:
    pid = t.router.pid
    body = b"h" * HELLO_SIZE
    # the router's idle rate (timers, the registry poll), over a second
    c0, w0 = cpu_ns(pid), time.perf_counter()
    await asyncio.sleep(1.0)
    idle_rate = (cpu_ns(pid) - c0) / (time.perf_counter() - w0)  # ns per s
    c0, w0 = cpu_ns(pid), time.perf_counter()
    await batch(t.a, t.c.name, plan.cpu_hellos, body)
    wall = time.perf_counter() - w0
    used = cpu_ns(pid) - c0 - idle_rate * wall
    per_rt_us = used / plan.cpu_hellos / 1000
    log(
        f"router CPU: {per_rt_us:.0f} us per routed hello round trip "
        f"({per_rt_us / 2:.0f} us per relayed message), idle {idle_rate / 1e6:.2f} ms/s"
    )
    return {
        "hellos": plan.cpu_hellos,
        "router_cpu_us_per_rt": per_rt_us,
        "router_cpu_us_per_relayed_message": per_rt_us / 2,
        "router_idle_cpu_ms_per_s": idle_rate / 1e6,
        "wall_us_per_rt": wall / plan.cpu_hellos * 1e6,
    }


def _on_its_way(task: asyncio.Task[float], session: object) -> Callable[[], bool]:
    """True once the bulk message has a stream in flight on ``session`` (or is done)."""
    core = getattr(session, "core", None)
    return lambda: task.done() or getattr(core, "inflight_bulk_streams", 1) > 0


async def head_of_line(t: Trio, plan: Plan) -> dict[str, Any]:
    """Per transfer, for the routed then the direct session: a block of idle probes, then
    probes back to back while one bulk message is in flight (idle and loaded samples are so
    spread over the same minutes, and the two sessions over the same minutes too)."""
    body = b"h" * HELLO_SIZE
    big = b"B" * plan.bulk_size
    paths = {"routed": t.c.name, "direct": t.d.name}
    if not isinstance(t.a.peers.session(t.c.name), CircuitSession):
        raise BenchError(f"a.os -> {t.c.name} is not a circuit")
    idle: dict[str, list[float]] = {p: [] for p in paths}
    loaded: dict[str, list[float]] = {p: [] for p in paths}
    bulk_s: dict[str, list[float]] = {p: [] for p in paths}
    per_transfer: dict[str, list[float]] = {p: [] for p in paths}
    chunk = max(1, plan.hol_idle // plan.hol_bulks)
    for k in range(plan.hol_bulks):
        for path, target in paths.items():
            block = await batch(t.a, target, chunk, body)
            idle[path] += block
            session = t.a.peers.session(target)
            probes: list[float] = []
            t0 = time.perf_counter()
            task = asyncio.create_task(rt(t.a, target, big))
            try:
                await until(_on_its_way(task, session), timeout=30, what="bulk on its way")
                for _ in range(100_000):  # bounded: the bulk message ends well before
                    if task.done():
                        break
                    probes.append(await rt(t.a, target, body))
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await task
            finally:
                task.cancel()
            bulk_s[path].append(time.perf_counter() - t0)
            loaded[path] += probes
            if probes:
                per_transfer[path].append(percentile(probes, 99) / percentile(block, 99))
        log(
            f"head-of-line transfer {k + 1}/{plan.hol_bulks}: "
            + ", ".join(f"{p} {per_transfer[p][-1]:.2f}x" for p in paths if per_transfer[p])
        )
    out: dict[str, Any] = {}
    for path in paths:
        i, lo = stats_us(idle[path]), stats_us(loaded[path])
        ok = bool(loaded[path])
        out[path] = {
            "idle": i,
            "loaded": lo,
            "p99_ratio": lo["p99_us"] / i["p99_us"] if ok else float("nan"),
            "p50_ratio": lo["p50_us"] / i["p50_us"] if ok else float("nan"),
            "p99_ratio_per_transfer": per_transfer[path],
            "p99_ratio_median_of_transfers": median(per_transfer[path]),
            "bulk_mbs_while_probed": plan.bulk_size / MB / median(bulk_s[path]),
            "idle_us": us(idle[path]),
            "loaded_us": us(loaded[path]),
        }
        log(
            f"head-of-line {path}: idle p99 {i['p99_us']:.0f} us, loaded p99 "
            f"{lo['p99_us']:.0f} us ({int(lo['n'])} probes), {out[path]['p99_ratio']:.2f}x"
        )
    return out


# --- 3: many circuits through one router ------------------------------------------------------


def scale_shape(n: int) -> tuple[int, int]:
    """(sources, targets) for ``n`` circuits, at most PER_SOURCE per source."""
    sources = max(1, math.ceil(n / PER_SOURCE))
    return sources, max(PER_SOURCE, sources)


async def many_circuits(net: Net, router: Router, n: int) -> dict[str, Any]:
    n_src, n_tgt = scale_shape(n)
    pid = router.pid
    t0 = time.perf_counter()
    targets = [await start_node(net, f"t{j}.os") for j in range(n_tgt)]
    sources = [await start_node(net, f"s{i}.os") for i in range(n_src)]
    await until(
        lambda: all(x.peers.session(router.name) is not None for x in targets),
        timeout=SETUP_TIMEOUT,
        what="every target connected to its router",
    )
    sem = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def bounded(coro: Awaitable[Any]) -> Any:
        async with sem:
            return await coro

    await asyncio.gather(*(bounded(hop(s, router.name)) for s in sources))
    log(f"{n_tgt} targets and {n_src} sources up, hops dialled ({time.perf_counter() - t0:.1f} s)")
    await asyncio.sleep(1.0)  # let the router settle before the baseline
    base = rss_kib(pid)
    pairs = [
        (sources[k // PER_SOURCE], f"t{(k // PER_SOURCE + k % PER_SOURCE) % n_tgt}.os")
        for k in range(n)
    ]
    body = b"h" * HELLO_SIZE
    open_s: list[float] = []
    errors: list[str] = []

    async def open_one(src: Node, tgt: str) -> None:
        async with sem:
            try:
                open_s.append(await rt(src, tgt, body, via="quic"))
            except Exception as e:  # counted and reported; the others go on
                errors.append(f"{src.name}->{tgt}: {e}")

    steps: list[dict[str, float]] = []
    t0 = time.perf_counter()
    quarters = sorted({max(1, round(n * q / 4)) for q in (1, 2, 3, 4)})
    done = 0
    for upto in quarters:
        await asyncio.gather(*(open_one(s, tg) for s, tg in pairs[done:upto]))
        done = upto
        live = await router.live_circuits()
        kib = rss_kib(pid)
        steps.append(
            {
                "asked": float(upto),
                "live": float(live),
                "rss_kib": float(kib),
                "kib_per_circuit": (kib - base) / live if live else float("nan"),
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        log(
            f"circuits: {live} live of {upto} asked, router RSS {kib / 1024:.1f} MiB "
            f"(+{(kib - base) / max(1, live):.1f} KiB per circuit), "
            f"{time.perf_counter() - t0:.1f} s"
        )
    elapsed = time.perf_counter() - t0
    live = int(steps[-1]["live"])
    # the circuits carry traffic: one more hello on a sample of them
    for s, tg in pairs[:: max(1, n // 32)]:
        await rt(s, tg, body)
    # what holding them costs the router while nobody talks (its timers, the hop pings)
    c0, w0 = cpu_ns(pid), time.perf_counter()
    await asyncio.sleep(2.0)
    idle_ms_per_s = (cpu_ns(pid) - c0) / (time.perf_counter() - w0) / 1e6
    log(f"router CPU holding {live} idle circuits: {idle_ms_per_s:.1f} ms/s")
    return {
        "asked": n,
        "live": live,
        "sources": n_src,
        "targets": n_tgt,
        "errors": len(errors),
        "first_errors": errors[:5],
        "open_concurrency": OPEN_CONCURRENCY,
        "open_total_s": elapsed,
        "open_ms_per_circuit": elapsed / max(1, len(open_s)) * 1000,
        "open_latency_ms": {
            "median": median(open_s) * 1000,
            "p99": percentile(open_s, 99) * 1000,
        },
        "router_rss_base_kib": base,
        "router_rss_kib": steps[-1]["rss_kib"],
        "router_kib_per_circuit": steps[-1]["kib_per_circuit"],
        "router_idle_cpu_ms_per_s_holding": idle_ms_per_s,
        "steps": steps,
    }


# --- main -------------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM or SIGINT: everything was stopped, nothing written."""


async def bench_main(plan: Plan, root: Path, cpu: int | None) -> dict[str, Any]:
    """Every part, with SIGTERM / SIGINT turned into :class:`Interrupted` (the routers are
    stopped on the way out either way)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopped: list[int] = []

    def on_signal(sig: int) -> None:
        stopped.append(sig)
        if main is not None:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await run_parts(plan, root, cpu)
    except asyncio.CancelledError:
        if stopped:
            raise Interrupted from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def run_parts(plan: Plan, root: Path, cpu: int | None) -> dict[str, Any]:
    cluster = Cluster(root)
    n_src, n_tgt = scale_shape(plan.circuits)
    # everything is registered before the routers start (they read the registry at start)
    cluster.add("r.os", args=("--max-passthroughs", "64"))
    cluster.add("rs.os", args=("--max-passthroughs", str(plan.circuits + PER_SOURCE)))
    net = Net(root)
    net.direct("a.os", ALL)
    net.direct("d.os", ALL)
    net.indirect("c.os", ["r.os"])
    for j in range(n_tgt):
        net.indirect(f"t{j}.os", ["rs.os"])
    for i in range(n_src):
        net.direct(f"s{i}.os", ("quic",))
    router = Router(cluster, "r.os", cpu)
    result: dict[str, Any] = {}
    try:
        log("starting the router process ...")
        await router.start()
        a = await start_node(net, "a.os")
        d = await start_node(net, "d.os")
        c = await start_node(net, "c.os")
        await until(
            lambda: c.peers.session("r.os") is not None, timeout=SETUP_TIMEOUT, what="c.os up"
        )
        trio = Trio(a, d, c, router)
        for target in ("d.os", "c.os"):  # dial and handshake now, not in a timed round
            await batch(a, target, 5, b"h" * HELLO_SIZE, via="quic")
        if not isinstance(a.peers.session("c.os"), CircuitSession):
            raise BenchError("a.os -> c.os did not become a circuit")
        log("1. round trips and bulk, direct and routed ...")
        result["round_trips"] = await round_trips(trio, plan)
        log("2. router CPU ...")
        result["router_cpu"] = await router_cpu(trio, plan)
        log("4. head-of-line ...")
        result["head_of_line"] = await head_of_line(trio, plan)
        await net.close()
        router.stop()
        log(f"3. {plan.circuits} circuits through one router ...")
        scale_router = Router(cluster, "rs.os", cpu)
        await scale_router.start()
        result["many_circuits"] = await many_circuits(net, scale_router, plan.circuits)
    finally:
        await net.close()
        cluster.stop_all()
    return result


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v != v else f"{v:,.{digits}f}"


def table(res: dict[str, Any]) -> str:
    rtr, cpu, hol, many = (
        res["round_trips"],
        res["router_cpu"],
        res["head_of_line"],
        res["many_circuits"],
    )
    lines = [
        ("metric", "value", "floor (direct)", "ratio", "spread"),
        (
            "64 B hello RT, routed (us)",
            fmt(median(rtr["hello_routed_us"])),
            fmt(median(rtr["hello_direct_us"])),
            f"{rtr['hello_ratio']:.2f}x",
            f"{spread(rtr['hello_ratio_per_round']):.0%}",
        ),
        (
            f"{rtr['bulk_size'] / MB:g} MB hello, routed (MB/s)",
            fmt(median(rtr["bulk_routed_mbs"]), 1),
            fmt(median(rtr["bulk_direct_mbs"]), 1),
            f"{rtr['bulk_ratio']:.2f}x",
            f"{spread(rtr['bulk_ratio_per_round']):.0%}",
        ),
        (
            "this process CPU per RT (us)",
            fmt(rtr["this_process_cpu_us_per_rt"]["routed"]),
            fmt(rtr["this_process_cpu_us_per_rt"]["direct"]),
            "",
            "",
        ),
        ("router CPU per routed RT (us)", fmt(cpu["router_cpu_us_per_rt"]), "", "", ""),
        (
            "router CPU per relayed msg (us)",
            fmt(cpu["router_cpu_us_per_relayed_message"]),
            "",
            "",
            "",
        ),
    ]
    for path in ("routed", "direct"):
        h = hol[path]
        lines.append(
            (
                f"HOL {path}: p50 idle / loaded (us)",
                f"{fmt(h['idle']['p50_us'])} / {fmt(h['loaded']['p50_us'])}",
                "",
                f"{h['p50_ratio']:.2f}x",
                "",
            )
        )
        lines.append(
            (
                f"HOL {path}: p99 idle / loaded (us)",
                f"{fmt(h['idle']['p99_us'])} / {fmt(h['loaded']['p99_us'])}",
                "",
                f"{h['p99_ratio']:.2f}x",
                f"({h['p99_ratio_median_of_transfers']:.2f}x) n={int(h['loaded']['n'])}",
            )
        )
    lines += [
        (
            f"circuits held (of {many['asked']} asked)",
            str(many["live"]),
            "",
            "",
            f"{many['sources']} src x {many['targets']} tgt",
        ),
        ("router RSS per circuit (KiB)", fmt(many["router_kib_per_circuit"], 1), "", "", ""),
        (
            "router CPU holding them idle (ms/s)",
            fmt(many["router_idle_cpu_ms_per_s_holding"], 1),
            "",
            "",
            "",
        ),
        (
            "time to open them (s)",
            fmt(many["open_total_s"], 1),
            "",
            "",
            f"{OPEN_CONCURRENCY} at a time",
        ),
    ]
    widths = [max(len(r[i]) for r in lines) for i in range(5)]
    out = []
    for k, row in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke run (~15 s), few samples")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH")
    p.add_argument(
        "--circuits",
        type=int,
        metavar="N",
        help="circuits for part 3 (default: "
        f"{DEFAULT_PLAN.circuits}, --quick {QUICK_PLAN.circuits})",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin every process to one CPU")
    p.add_argument(
        "--cpu",
        type=int,
        metavar="CPU",
        help="pin every process to this CPU (default: the highest one, as bench/run.py)",
    )
    args = p.parse_args(argv)
    if args.circuits is not None and not 1 <= args.circuits <= 4000:
        p.error("--circuits must be 1..4000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(level="warning")
    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    if args.circuits:
        plan = dataclasses.replace(plan, circuits=args.circuits)
    cpu = None if args.no_pin else (args.cpu if args.cpu is not None else pin_choice())
    pin(0, cpu)
    info = machine_info(runtime.loop_name())
    info["pinned_to_cpu"] = cpu
    log(f"plan {plan}; {'unpinned' if cpu is None else f'all processes on CPU {cpu}'}")
    root = Path(tempfile.mkdtemp(prefix="hnet-circuits-"))
    t0 = time.monotonic()
    try:
        res = runtime.run(bench_main(plan, root, cpu))
    except (BenchError, NodeStartError, AssertionError, TimeoutError) as e:
        log(f"bench failed: {type(e).__name__}: {e}")
        return 1
    except (Interrupted, KeyboardInterrupt):
        log("interrupted; processes stopped, nothing written")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t0
    info["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else []
    print(
        f"routed QUIC (circuits), {info['date']}: {info['cpu_count']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}, loop {info['loop']}, "
        f"{'unpinned' if cpu is None else f'pinned to CPU {cpu}'}"
    )
    print(table(res))
    print(
        "ratio: median of per-round ratios routed/direct (RT: above 1 is slower; MB/s: below 1 "
        "is slower); HOL ratio: loaded / idle on the same session, pooled (target p99 within 3x), "
        "(x): median of the per-transfer p99 ratios; n: loaded probes."
    )
    out = {"machine": info, "plan": dataclasses.asdict(plan), "elapsed_s": elapsed, **res}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
