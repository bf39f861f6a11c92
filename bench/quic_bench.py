"""QUIC transport benchmarks, each backend against our TCP transport, on loopback.

    python bench/quic_bench.py [--quick] [--kinds quic-qh3,quic-aioquic,tcp] [--loop uvloop]

Every function is ``async`` and returns plain numbers, for the lead's runner:

* :func:`connection_setup` -- dial, handshake, one 64-byte request to its verified reply (ms);
* :func:`round_trip_64` -- 64-byte request/response on one session, one at a time (µs);
* :func:`concurrent_round_trips` -- 100 concurrent request/response loops (round trips/s);
* :func:`bulk` -- 10 MB messages one way, each acknowledged by a small reply (MB/s);
* :func:`head_of_line` -- 1 KiB round trips idle, then while 10 MB messages stream to the same
  peer (p50/p99 µs, and loaded p99 / idle p99).

``kind`` is ``"quic-qh3"``, ``"quic-aioquic"`` or ``"tcp"``. Client and server share one event
loop (one core does both ends' work), as in the rest of bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``hnet`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LOOPBACK, MB, Identities, median, percentile
from hnet import keys
from hnet.transport import tcp
from hnet.transport.quic import QuicListener
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session

KINDS = ("quic-qh3", "quic-aioquic", "tcp")
BULK_SIZE = 10_000_000

_ECHO = b"E"  # reply with the same bytes
_BULK = b"B"  # reply with a short ack carrying the id
_STAMP = b"T"  # reply with the same bytes, our arrival time (perf_counter) after the id
_ID = struct.Struct(">cQ")
_TIME = struct.Struct(">d")


def _request(kind: bytes, rid: int, size: int) -> bytes:
    head = _ID.pack(kind, rid)
    return head + bytes(max(0, size - len(head)))


async def _server_deliver(session: Session, data: bytes) -> None:
    kind, rid = _ID.unpack_from(data)
    if kind == _ECHO:
        await session.send(data)
    elif kind == _STAMP:
        # perf_counter is CLOCK_MONOTONIC: comparable across processes on one machine
        stamp = _TIME.pack(time.perf_counter())
        await session.send(data[: _ID.size] + stamp + data[_ID.size + _TIME.size :])
    else:
        await session.send(_ID.pack(b"A", rid))


class Pair:
    """A client session to a server on loopback; requests matched to replies by id."""

    def __init__(self, kind: str, ids: Identities | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (choose from {', '.join(KINDS)})")
        self.kind = kind
        self.ids = ids or Identities.generate()
        self._child: asyncio.subprocess.Process | None = None
        self.port = 0
        self._ids = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: QuicListener | None = None
        self._tcp_server: asyncio.Server | None = None
        self.client: Session | None = None

    # --- server ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: Session) -> None:
        with contextlib.suppress(Exception):
            await session.run(_server_deliver, 3600)

    async def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                session = await tcp.accept(reader, writer, self.ids.responder())
        except Exception:
            writer.close()
            return
        await self._serve(session)

    async def start_server_process(self) -> None:
        """Run the server side in a child process (its own core); wait for its port."""
        seeds = ",".join(
            keys.seed_bytes(k).hex() for k in (self.ids.client_key, self.ids.server_key)
        )
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            self.kind,
            "--seeds",
            seeds,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._child.stdout is not None
        async with asyncio.timeout(30):
            line = await self._child.stdout.readline()
        self.port = int(line)

    async def start_server(self) -> None:
        if self.kind == "tcp":
            self._tcp_server = await asyncio.start_server(
                lambda r, w: self._spawn(self._accept_tcp(r, w)),
                LOOPBACK,
                0,
                limit=tcp.READ_SIZE,
            )
            self.port = self._tcp_server.sockets[0].getsockname()[1]
        else:
            self._listener = QuicListener(backend=self.kind.split("-", 1)[1])
            await self._listener.start(
                LOOPBACK,
                0,
                make_responder=self.ids.responder,
                on_session=lambda s: self._spawn(self._serve(s)),
            )
            self.port = int(self._listener.address[1])

    # --- client ----------------------------------------------------------------------------

    async def dial(self) -> Session:
        """A new client session (replacing the previous one), with its reader running."""
        async with asyncio.timeout(10):
            if self.kind == "tcp":
                session: Session = await tcp.connect(LOOPBACK, self.port, self.ids.initiator())
            else:
                session = await quic_connect(
                    LOOPBACK,
                    self.port,
                    self.ids.initiator(),
                    backend=self.kind.split("-", 1)[1],
                )
        self.client = session
        self._spawn(self._read(session))
        return session

    async def _read(self, session: Session) -> None:
        async def deliver(s: Session, data: bytes) -> None:
            _, rid = _ID.unpack_from(data)
            fut = self._waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(data)

        with contextlib.suppress(Exception):
            await session.run(deliver, 3600)

    async def request(self, kind: bytes, size: int, session: Session | None = None) -> bytes:
        rid = next(self._ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        s = session or self.client
        assert s is not None
        await s.send(_request(kind, rid, size))
        return await fut

    async def aclose(self) -> None:
        if self.client is not None:
            self.client.abort("bench done")
        if self._listener is not None:
            self._listener.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                self._child.terminate()
            async with asyncio.timeout(10):
                await self._child.wait()


#: Where the server side runs: 1 = in this process and event loop, 2 = in a child process.
PROCESSES = 1


@contextlib.asynccontextmanager
async def pair(
    kind: str, *, dial: bool = True, processes: int | None = None
) -> AsyncIterator[Pair]:
    p = Pair(kind)
    if (processes or PROCESSES) == 2:
        await p.start_server_process()
    else:
        await p.start_server()
    try:
        if dial:
            await p.dial()
        yield p
    finally:
        await p.aclose()


# --- the benchmarks ------------------------------------------------------------------------------


async def connection_setup(kind: str, n: int = 20) -> dict[str, float]:
    """Dial + handshake + one 64-byte request to its verified reply, on fresh connections (ms)."""
    samples: list[float] = []
    async with pair(kind, dial=False) as p:
        for _ in range(n):
            t0 = time.perf_counter()
            session = await p.dial()
            async with asyncio.timeout(10):
                await p.request(_ECHO, 64)
            samples.append((time.perf_counter() - t0) * 1e3)
            session.abort("next")
            await asyncio.sleep(0)
    return {"setup_p50_ms": median(samples), "setup_min_ms": min(samples)}


async def round_trip_64(kind: str, n: int = 2000) -> dict[str, float]:
    """64-byte round trips on one session, one at a time (µs)."""
    async with pair(kind) as p:
        for _ in range(50):  # warm up
            await p.request(_ECHO, 64)
        samples = []
        async with asyncio.timeout(120):
            for _ in range(n):
                t0 = time.perf_counter()
                await p.request(_ECHO, 64)
                samples.append((time.perf_counter() - t0) * 1e6)
    return {
        "rtt64_p50_us": median(samples),
        "rtt64_p99_us": percentile(samples, 99),
        "rtt64_per_s": 1e6 / median(samples),
    }


async def concurrent_round_trips(
    kind: str, concurrency: int = 100, per_worker: int = 50
) -> dict[str, float]:
    """``concurrency`` request/response loops at once on one session (round trips/s)."""
    async with pair(kind) as p:

        async def worker() -> None:
            for _ in range(per_worker):
                await p.request(_ECHO, 64)

        await asyncio.gather(*(p.request(_ECHO, 64) for _ in range(concurrency)))  # warm up
        t0 = time.perf_counter()
        async with asyncio.timeout(300):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        dt = time.perf_counter() - t0
    return {"concurrent_rt_per_s": concurrency * per_worker / dt}


async def bulk(kind: str, count: int = 5, size: int = BULK_SIZE) -> dict[str, float]:
    """``count`` messages of ``size`` bytes one way, all in the air at once as far as each
    transport's own flow control lets them; each acknowledged with a short reply (MB/s)."""
    async with pair(kind) as p:
        await p.request(_BULK, size)  # warm up (congestion window, buffers)
        t0 = time.perf_counter()
        async with asyncio.timeout(300):
            await asyncio.gather(*(p.request(_BULK, size) for _ in range(count)))
        dt = time.perf_counter() - t0
    return {"bulk_MB_per_s": count * size / MB / dt}


async def head_of_line(
    kind: str, probes: int = 200, probe_size: int = 1024, bulk_messages: int = 3
) -> dict[str, float]:
    """1 KiB round trips idle, then while 10 MB messages stream to the same peer.

    A probe counts as loaded only if a 10 MB message was unacknowledged for its whole round
    trip. Loaded probing stops after ``bulk_messages`` big messages (or ``probes`` samples).
    """
    async with pair(kind) as p:
        for _ in range(50):
            await p.request(_ECHO, probe_size)

        async def probe() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            reply = await p.request(_STAMP, probe_size)
            t2 = time.perf_counter()
            (t1,) = _TIME.unpack_from(reply, _ID.size)
            return (t2 - t0) * 1e6, (t1 - t0) * 1e6, (t2 - t1) * 1e6

        idle = [await probe() for _ in range(probes)]

        in_flight = 0
        done = asyncio.Event()

        async def big() -> None:
            nonlocal in_flight
            for _ in range(bulk_messages):
                in_flight += 1
                try:
                    await p.request(_BULK, BULK_SIZE)
                finally:
                    in_flight -= 1
            done.set()

        loaded: list[tuple[float, float, float]] = []
        bulk_task = asyncio.get_running_loop().create_task(big())
        async with asyncio.timeout(300):
            while in_flight == 0:
                await asyncio.sleep(0)
            while not done.is_set() and len(loaded) < probes:
                sample = await probe()
                if in_flight and not done.is_set():
                    loaded.append(sample)
            await bulk_task
    rtt_idle = [x[0] for x in idle]
    rtt_loaded = [x[0] for x in loaded]
    idle_p99 = percentile(rtt_idle, 99)
    loaded_p99 = percentile(rtt_loaded, 99)
    return {
        "hol_idle_p50_us": median(rtt_idle),
        "hol_idle_p99_us": idle_p99,
        "hol_loaded_p50_us": median(rtt_loaded),
        "hol_loaded_p99_us": loaded_p99,
        "hol_loaded_samples": float(len(loaded)),
        "hol_p99_ratio": loaded_p99 / idle_p99 if idle_p99 else float("nan"),
        # one-way parts (same machine, same clock): request leg, reply leg
        "hol_idle_up_p50_us": median([x[1] for x in idle]),
        "hol_idle_down_p50_us": median([x[2] for x in idle]),
        "hol_loaded_up_p50_us": median([x[1] for x in loaded]),
        "hol_loaded_down_p50_us": median([x[2] for x in loaded]),
    }


async def run_kind(kind: str, quick: bool = False) -> dict[str, float]:
    """Every benchmark for one transport kind."""
    out: dict[str, float] = {}
    out |= await connection_setup(kind, n=5 if quick else 20)
    out |= await round_trip_64(kind, n=300 if quick else 2000)
    out |= await concurrent_round_trips(kind, per_worker=10 if quick else 50)
    out |= await bulk(kind, count=2 if quick else 5)
    out |= await head_of_line(kind, probes=100 if quick else 200, bulk_messages=2 if quick else 3)
    return out


COLUMNS = (
    ("setup_p50_ms", "setup ms"),
    ("rtt64_p50_us", "rtt64 p50 us"),
    ("rtt64_p99_us", "rtt64 p99 us"),
    ("concurrent_rt_per_s", "100-conc rt/s"),
    ("bulk_MB_per_s", "bulk MB/s"),
    ("hol_idle_p50_us", "1K idle p50"),
    ("hol_idle_p99_us", "1K idle p99"),
    ("hol_loaded_p50_us", "1K +10MB p50"),
    ("hol_loaded_p99_us", "1K +10MB p99"),
    ("hol_p99_ratio", "p99 ratio"),
    ("hol_idle_up_p50_us", "1K idle up/down"),
    ("hol_loaded_up_p50_us", "1K +10MB up/down"),
)


def format_results(results: dict[str, dict[str, float]]) -> str:
    kinds = list(results)
    rows = [("metric", *kinds)]
    for key, label in COLUMNS:
        cells = []
        for k in kinds:
            v = results[k].get(key, float("nan"))
            cell = f"{v:,.0f}" if v >= 100 else f"{v:.2f}"
            if key.endswith("_up_p50_us"):
                down = results[k].get(key.replace("_up_", "_down_"), float("nan"))
                cell += f"/{down:,.0f}"
            cells.append(cell)
        rows.append((label, *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def _serve_forever(kind: str, seeds: str) -> None:
    """Child-process mode: the server side of a :class:`Pair`; prints its port, then serves."""
    client_seed, server_seed = (bytes.fromhex(x) for x in seeds.split(","))
    ids = Identities(
        "bench-client.os",
        keys.from_seed(client_seed),
        "bench-server.os",
        keys.from_seed(server_seed),
    )
    p = Pair(kind, ids)
    await p.start_server()
    print(p.port, flush=True)
    await asyncio.Event().wait()


async def _main(kinds: list[str], quick: bool) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for kind in kinds:
        results[kind] = await run_kind(kind, quick)
        print(f"{kind}: done", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated, from " + ", ".join(KINDS)
    )
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: both ends in this event loop; 2: the server in a child process",
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_forever(args.serve, args.seeds))
        return 0
    global PROCESSES
    PROCESSES = args.processes
    kinds = [k for k in args.kinds.split(",") if k]
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if args.loop == "uvloop":
        import uvloop

        results = uvloop.run(_main(kinds, args.quick))
    else:
        results = asyncio.run(_main(kinds, args.quick))
    print(format_results(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
