"""A user-space netem: two TUN devices joined by a process that delays, drops and reorders
every IP packet between them (docs/reliability.md §6).

For kernels without ``sch_netem``. The test creates two network namespaces; this module's
process (``python -m hnet.testing.impair``) creates the TUN devices ``NAME0`` and ``NAME1`` in
the namespace it starts in and prints ``ready``; the test then moves one device into each
namespace and gives them point-to-point addresses. Every packet one side sends comes out of
the other device after the impairment: lost with probability ``loss``, else delayed by
``delay`` ± ``jitter`` (uniform), or, with probability ``reorder``, sent at once (so it
overtakes the delayed ones, as netem's ``reorder`` does). Both directions, independently.

Real kernel TCP and UDP stacks run on both ends: TCP retransmits, QUIC's loss detection
runs, exactly as over a real lossy link. Bounded: at most ``MAX_HELD`` packets are held
(more are dropped and counted, as a full qdisc would); the process exits when its stdin
closes (the test ended or died) or after ``--max-seconds``. On exit it prints one JSON line
of counters.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import random
import selectors
import struct
import sys
import time
from dataclasses import dataclass, field

#: <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
#: packets held for later delivery, both directions together
MAX_HELD = 20_000
#: the largest packet a TUN device of MTU 1500 hands over, with room to spare
READ_SIZE = 65_536


@dataclass(frozen=True)
class Impairment:
    """What happens to each packet (one direction; both use the same)."""

    delay: float = 0.1
    jitter: float = 0.01
    loss: float = 0.05
    reorder: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= self.delay <= 10:
            raise ValueError("need 0 <= jitter <= delay <= 10 s")
        for p in (self.loss, self.reorder):
            if not 0 <= p <= 1:
                raise ValueError("probabilities are in [0, 1]")

    def describe(self) -> str:
        return (
            f"user-space link: delay {self.delay * 1000:g}ms ±{self.jitter * 1000:g}ms, "
            f"loss {self.loss:.0%}, {self.reorder:.0%} sent at once (reordered)"
        )


@dataclass
class Counters:
    forwarded: int = 0
    lost: int = 0
    reordered: int = 0
    overflow: int = 0
    held_max: int = 0
    per_direction: list[int] = field(default_factory=lambda: [0, 0])


def open_tun(name: str) -> int:
    """A TUN device ``name`` (no packet-info header); its file descriptor."""
    if len(name.encode()) >= 16:
        raise ValueError(f"interface name {name!r} longer than 15 bytes")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Bridge:
    """The packet scheduler: sans-I/O but for the two descriptors it reads and writes."""

    def __init__(self, fds: tuple[int, int], imp: Impairment, rng: random.Random) -> None:
        self.fds = fds
        self.imp = imp
        self.rng = rng
        self.counters = Counters()
        #: (due time, sequence, output fd, packet)
        self._held: list[tuple[float, int, int, bytes]] = []
        self._seq = 0

    def arrived(self, direction: int, packet: bytes, now: float) -> None:
        c = self.counters
        c.per_direction[direction] += 1
        if self.rng.random() < self.imp.loss:
            c.lost += 1
            return
        out = self.fds[1 - direction]
        if self.rng.random() < self.imp.reorder:
            c.reordered += 1
            self._write(out, packet)
            return
        if len(self._held) >= MAX_HELD:
            c.overflow += 1
            return
        due = now + self.imp.delay + self.rng.uniform(-self.imp.jitter, self.imp.jitter)
        self._seq += 1
        heapq.heappush(self._held, (due, self._seq, out, packet))
        c.held_max = max(c.held_max, len(self._held))

    def release_due(self, now: float) -> float | None:
        """Write every packet that is due; seconds until the next one (None: none held)."""
        held = self._held
        while held and held[0][0] <= now:
            _, _, out, packet = heapq.heappop(held)
            self._write(out, packet)
        return None if not held else max(0.0, held[0][0] - now)

    def _write(self, fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
            self.counters.forwarded += 1
        except (BlockingIOError, OSError):  # the device is down or full: a lost packet
            self.counters.lost += 1


def run(names: tuple[str, str], imp: Impairment, seed: int, max_seconds: float) -> Counters:
    fds = (open_tun(names[0]), open_tun(names[1]))
    bridge = Bridge(fds, imp, random.Random(seed))
    sel = selectors.DefaultSelector()
    for direction, fd in enumerate(fds):
        sel.register(fd, selectors.EVENT_READ, direction)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, -1)
    print("ready", flush=True)
    end = time.monotonic() + max_seconds
    try:
        while (now := time.monotonic()) < end:
            wait = bridge.release_due(now)
            timeout = min(end - now, 1.0 if wait is None else wait)
            for key, _ in sel.select(timeout):
                direction = key.data
                if direction == -1:
                    if not os.read(key.fd, 4096):
                        return bridge.counters  # stdin closed: the test is done
                    continue
                for _ in range(64):  # bounded per wakeup: the other side gets its turn
                    try:
                        packet = os.read(key.fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    bridge.arrived(direction, packet, time.monotonic())
        return bridge.counters
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hnet.testing.impair", description=__doc__)
    ap.add_argument("name", help="devices NAME0 and NAME1 are created (at most 14 bytes)")
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--jitter-ms", type=float, default=10.0)
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--reorder", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    imp = Impairment(args.delay_ms / 1000, args.jitter_ms / 1000, args.loss, args.reorder)
    try:
        counters = run((f"{args.name}0", f"{args.name}1"), imp, args.seed, args.max_seconds)
    except OSError as e:
        print(f"error: {e.strerror or e}", flush=True)
        return 1
    print(json.dumps(counters.__dict__), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
