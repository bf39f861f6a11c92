"""Shared pieces of the benchmark suite: identities, statistics, machine info, the table.

Nothing here times anything; :mod:`bench.run` does. Kept free of hnet transport imports so a
new benchmark module (QUIC, ...) can reuse it without pulling in the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.handshake import PeerHandshake

LOOPBACK = "127.0.0.1"
#: Bytes per MB in every throughput figure (decimal, as ``MB/s`` usually means).
MB = 1_000_000

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"


# --- identities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identities:
    """Two node identities that know each other's networking key (an in-memory HNS)."""

    client_name: str
    client_key: Ed25519PrivateKey
    server_name: str
    server_key: Ed25519PrivateKey

    @classmethod
    def generate(
        cls, client: str = "bench-client.os", server: str = "bench-server.os"
    ) -> Identities:
        return cls(client, keys.generate(), server, keys.generate())

    def lookup(self, name: str) -> bytes | None:
        if name == self.client_name:
            return keys.public_bytes(self.client_key)
        if name == self.server_name:
            return keys.public_bytes(self.server_key)
        return None

    def initiator(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=True,
            our_name=self.client_name,
            signing_key=self.client_key,
            lookup=self.lookup,
            expected_peer=self.server_name,
        )

    def responder(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=False,
            our_name=self.server_name,
            signing_key=self.server_key,
            lookup=self.lookup,
        )


# --- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] (no interpolation; fine for >= 100 samples)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def spread(values: Sequence[float]) -> float:
    """Relative spread of the rounds: (max - min) / median, a quick noise indicator."""
    if len(values) < 2:
        return 0.0
    m = median(values)
    return (max(values) - min(values)) / m if m else float("nan")


# --- metrics and the table --------------------------------------------------------------------

LATENCY = "latency"
THROUGHPUT = "throughput"


@dataclass
class Metric:
    """One benchmark's per-round values and how they compare with its raw yardstick.

    ``kind`` is :data:`LATENCY` (value in µs per round trip; lower is better) or
    :data:`THROUGHPUT` (value in MB/s; higher is better). ``yardstick`` names the raw metric it
    is compared with, or is None for a yardstick itself.
    """

    key: str
    label: str
    kind: str
    yardstick: str | None
    per_round: list[float] = field(default_factory=list)
    #: per-round detail (e.g. node RTT percentiles), same order as ``per_round``
    details: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)
    #: unit of the values; default ``us/rt`` for latency, ``MB/s`` for throughput
    unit: str = ""
    #: heading of the table section the line is printed under
    section: str = ""
    #: False: reported elsewhere (its own table), not in the main one
    in_table: bool = True
    #: key of a second yardstick, the bare QUIC library under our QUIC line ("vs lib" column,
    #: ``vs_library`` in the JSON), or None
    floor: str | None = None
    #: key of the bare library carrying hnet-noise/1's message pattern under our QUIC line
    #: (bench/pattern.py; ``vs_pattern`` in the JSON), or None
    pattern: str | None = None

    def __post_init__(self) -> None:
        if not self.unit:
            self.unit = "us/rt" if self.kind == LATENCY else "MB/s"

    @property
    def median(self) -> float:
        return median(self.per_round)

    def round_trips_per_s(self) -> list[float]:
        """Round trips per second of each round, for values in µs per round trip."""
        return [1e6 / v for v in self.per_round] if self.unit == "us/rt" else []


class Measured(Protocol):
    """One benchmark line: its metric, and one timed measurement for a plan."""

    @property
    def metric(self) -> Metric: ...

    def measure(self, plan: Any) -> Awaitable[tuple[float, dict[str, float]]]: ...


M = TypeVar("M", bound=Measured)


async def run_round(
    lines: Sequence[M],
    plan: object,
    offset: int,
    *,
    record: bool,
    timeout: float,
    error: type[Exception],
) -> list[M]:
    """Measure every line once, starting ``offset`` lines later (so no line always follows the
    same one), each after a full collection and within ``timeout`` seconds (else ``error``);
    with ``record``, keep each value and detail in the line's metric. Returns the order run."""
    k = offset % len(lines) if lines else 0
    order = [*lines[k:], *lines[:k]]
    for line in order:
        gc.collect()
        try:
            async with asyncio.timeout(timeout):
                value, detail = await line.measure(plan)
        except TimeoutError:
            raise error(f"{line.metric.label}: no result within {timeout:g} s") from None
        if record:
            line.metric.per_round.append(value)
            line.metric.details.append(detail)
    return order


@dataclass(frozen=True)
class Comparison:
    """``ours / raw`` for one metric: the median of per-round ratios (rounds are interleaved,
    so each round's ratio cancels machine-wide drift) and the ratio of the medians."""

    per_round: list[float]
    median_of_ratios: float
    ratio_of_medians: float


def compare(ours: Metric, raw: Metric) -> Comparison:
    """Latency ratio = ours/raw (above 1: slower); throughput ratio = ours/raw (below 1)."""
    pairs = list(zip(ours.per_round, raw.per_round, strict=True))
    ratios = [o / r for o, r in pairs if r > 0]
    return Comparison(
        per_round=ratios,
        median_of_ratios=median(ratios),
        ratio_of_medians=ours.median / raw.median if raw.median else float("nan"),
    )


def _fmt_value(v: float) -> str:
    if v != v:  # NaN
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def format_table(metrics: Sequence[Metric], labels: dict[str, str]) -> str:
    """A plain-text table: medians across rounds, round trips/s, ratio to the raw yardstick.

    Lines are grouped under their :attr:`Metric.section` headings (in the order given);
    metrics with ``in_table`` False are left out. When some line has a :attr:`Metric.floor`
    that was measured, a "vs lib" column gives its ratio to that floor too; likewise "vs pat"
    for :attr:`Metric.pattern`.
    """
    by_key = {m.key: m for m in metrics}
    floors = any(m.floor in by_key for m in metrics if m.in_table and m.floor is not None)
    patterns = any(m.pattern in by_key for m in metrics if m.in_table and m.pattern is not None)
    header: tuple[str, ...] = ("benchmark", "median", "unit", "rt/s", "vs raw")
    header += ("vs lib",) if floors else ()
    header += ("vs pat",) if patterns else ()
    header += ("spread", "yardstick")
    rows: list[tuple[str, ...] | str] = []
    section = None
    for m in metrics:
        if not m.in_table:
            continue
        if m.section != section:
            section = m.section
            if section:
                rows.append(section)
        rts = m.round_trips_per_s()
        rt_s = _fmt_value(median(rts)) if rts else ""
        if m.yardstick is None:
            vs, yard = "1 (raw)", ""
        else:
            raw = by_key[m.yardstick]
            c = compare(m, raw)
            vs = f"{c.median_of_ratios:.2f}x"
            yard = labels.get(raw.key, raw.key)
        row: tuple[str, ...] = (m.label, _fmt_value(m.median), m.unit, rt_s, vs)
        for shown, key in ((floors, m.floor), (patterns, m.pattern)):
            if shown:
                under = by_key.get(key) if key is not None else None
                row += (f"{compare(m, under).median_of_ratios:.2f}x" if under is not None else "",)
        rows.append((*row, f"{spread(m.per_round):.0%}", yard))
    cells = [r for r in rows if isinstance(r, tuple)]
    widths = [max(len(r[i]) for r in (header, *cells)) for i in range(len(header))]
    right = set(range(1, len(header) - 1)) - {2}

    def line(row: tuple[str, ...] | str) -> str:
        if isinstance(row, str):
            return f"[{row}]"
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# --- CPU pinning ------------------------------------------------------------------------------


def pin_choice() -> int | None:
    """The CPU to pin every benchmark process to, or None where there is nothing to pin.

    Why pin at all: on a small VM a loopback round trip between two processes is bimodal. When
    the scheduler puts them on different vCPUs each message wakes a halted vCPU (here ~4x slower
    than on one CPU); unpinned, runs flip between the two modes and the 2-process figures are
    noise. On one CPU the two sides take turns, as a ping-pong does anyway.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    return max(allowed) if len(allowed) > 1 else None


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of process ``pid`` (0: this one) to ``cpu``; None or no support: no-op.

    Threads started later inherit the affinity of the thread that starts them.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    pid = pid or os.getpid()
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread may have just exited
            os.sched_setaffinity(tid, {cpu})


# --- machine ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(loop_kind: str) -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "loop": loop_kind,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for dist in ("cryptography", "websockets", "uvloop", "qh3", "aioquic"):
        info[dist] = _version(dist)
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = list(os.getloadavg())
    return info
