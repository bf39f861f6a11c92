"""Measuring a node under hostile load (tests/test_chaos_*.py, docs/reliability.md).

Three instruments, all bounded in count and time:

- :class:`RssSampler`: the VmRSS of a node process (``/proc/PID/status``), sampled at an
  interval while a scenario runs.
- :class:`GoodPeer`: a well-behaved peer's hello/ack round trips (the control ``ping`` op of
  another node), one after another at an interval; each one's outcome and latency.
- :func:`diag_counts`: the handshake counters of ``hnet diag`` (in progress, failed, refused).

:func:`report` prints one scenario's figures as a JSON line (``CHAOS {...}``) and appends it to
the file named by ``HNET_CHAOS_FIGURES`` if that is set; ``python -m hnet.testing.chaos FILE``
prints such a file as the tables of docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hnet.testing.cluster import Cluster

_DIAG = re.compile(r"handshakes in progress (\d+), failed (\d+), refused (\d+)")


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, load average, kernel."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    return {"cpus": os.cpu_count(), "loadavg": " ".join(load), "kernel": os.uname().release}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


class RssSampler:
    """VmRSS of one process every ``interval`` s (at most ``max_samples``) while running."""

    def __init__(self, pid: int, interval: float = 0.5, max_samples: int = 400) -> None:
        self.pid = pid
        self.interval = interval
        self.max_samples = max_samples
        self.samples: list[tuple[float, int]] = []
        self._t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> int:
        kib = rss_kib(self.pid)
        if len(self.samples) < self.max_samples:
            self.samples.append((round(time.monotonic() - self._t0, 2), kib))
        return kib

    async def _run(self) -> None:
        while len(self.samples) < self.max_samples:
            try:
                self.sample()
            except (OSError, RuntimeError):
                return  # the process is gone
            await asyncio.sleep(self.interval)

    def start(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError, RuntimeError):
            self.sample()

    @property
    def growth_kib(self) -> int:
        return self.samples[-1][1] - self.samples[0][1] if self.samples else 0

    @property
    def peak_kib(self) -> int:
        return max((k for _, k in self.samples), default=0)

    def thinned(self, n: int = 8) -> list[tuple[float, int]]:
        """At most ``n`` samples, evenly spread, first and last included."""
        s = self.samples
        if len(s) <= n:
            return list(s)
        step = (len(s) - 1) / (n - 1)
        return [s[round(i * step)] for i in range(n)]


@dataclass
class PingResult:
    at: float
    ok: bool
    rtt_ms: float | None
    error: str | None = None


@dataclass
class GoodPeer:
    """``src`` pings ``dst`` (control ``ping`` op) every ``interval`` s until stopped or
    ``max_count`` pings; each ping has its own ``timeout``."""

    cluster: Cluster
    src: str
    dst: str
    via: str | None = None
    interval: float = 0.1
    timeout: float = 5.0
    max_count: int = 1000
    results: list[PingResult] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _t0: float = 0.0

    async def ping_once(self) -> PingResult:
        at = time.monotonic() - self._t0
        req = {"op": "ping", "target": self.dst, "via": self.via, "timeout": self.timeout}
        try:
            reply = await self.cluster.call(self.src, req, timeout=self.timeout + 5)
        except Exception as e:  # control trouble (OSError, TimeoutError, ...) is a failure
            return PingResult(round(at, 2), False, None, f"control: {e!r}")
        if reply.get("ok"):
            return PingResult(round(at, 2), True, float(reply["rtt_ms"]))
        return PingResult(round(at, 2), False, None, f"{reply.get('kind')}: {reply.get('error')}")

    async def _run(self) -> None:
        while len(self.results) < self.max_count and not self._stop.is_set():
            self.results.append(await self.ping_once())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def start(self) -> GoodPeer:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def wait(self) -> None:
        """Until ``max_count`` pings were made (or :meth:`stop`)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def rtts(self) -> list[float]:
        return [r.rtt_ms for r in self.results if r.ok and r.rtt_ms is not None]

    @property
    def failures(self) -> list[PingResult]:
        return [r for r in self.results if not r.ok]

    def figures(self) -> dict[str, Any]:
        rtts = self.rtts
        return {
            "sent": len(self.results),
            "acked": len(rtts),
            "failed": len(self.failures),
            "p50_ms": _r(percentile(rtts, 0.5)),
            "p99_ms": _r(percentile(rtts, 0.99)),
            "max_ms": _r(max(rtts, default=None)),
            "errors": sorted({r.error or "" for r in self.failures})[:5],
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def diag_counts(text: str) -> dict[str, int]:
    """``{"pending", "failed", "refused"}`` from ``hnet diag`` text."""
    m = _DIAG.search(text)
    if m is None:
        raise ValueError(f"no handshake line in diag: {text[-400:]}")
    return {"pending": int(m[1]), "failed": int(m[2]), "refused": int(m[3])}


async def diag(cluster: Cluster, name: str) -> dict[str, int]:
    reply = await cluster.call(name, {"op": "diag"}, timeout=10)
    return diag_counts(str(reply["text"]))


async def wait_for_diag(
    cluster: Cluster, name: str, pred: Any, timeout: float, interval: float = 0.1
) -> tuple[dict[str, int], float]:
    """Poll ``diag`` until ``pred(counts)``; (the counts, seconds it took). TimeoutError."""
    t0 = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            counts = await diag(cluster, name)
            if pred(counts):
                return counts, round(time.monotonic() - t0, 2)
            await asyncio.sleep(interval)


def report(scenario: str, figures: dict[str, Any]) -> None:
    """Print one scenario's figures (``CHAOS {json}``) and append them to
    ``$HNET_CHAOS_FIGURES`` if set."""
    row = {"scenario": scenario, "machine": machine(), **figures}
    line = json.dumps(row, default=str)
    print(f"CHAOS {line}")
    out = os.environ.get("HNET_CHAOS_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def _table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        lines.append(f"## {row['scenario']}")
        m = row.get("machine", {})
        lines.append(f"machine: {m.get('cpus')} CPUs, loadavg {m.get('loadavg')}")
        for k, v in row.items():
            if k in ("scenario", "machine"):
                continue
            lines.append(f"- {k}: {json.dumps(v, default=str)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m hnet.testing.chaos FIGURES.jsonl\n"
            "  (made by: HNET_CHAOS_FIGURES=FIGURES.jsonl pytest tests/test_chaos_*.py)",
            file=sys.stderr,
        )
        return 2
    rows = [json.loads(x) for x in Path(args[0]).read_text().splitlines() if x.strip()]
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
