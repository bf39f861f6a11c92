"""Two real nodes in one process doing hello/ack over one transport, for a sampling profiler.

    python bench/profile_nodes.py [--via tcp|ws|quic] [--run-for S] [--burst N]

``bench/run.py``'s node lines run each node in its own process, where a sampler charges the
time one node runs inside the other's ``write`` (both on one CPU). Here both nodes
(:class:`hnet.testing.harness.Net`: real :class:`~hnet.node.Node` objects on loopback sockets,
one local registry) share one event loop, so every sample of the hello/ack path, both ends,
is in one profile::

    py-spy record --native --rate 200 --format raw -o /tmp/nodes.txt -- \\
        .venv/bin/python bench/profile_nodes.py --run-for 15
    .venv/bin/python bench/spy_owners.py /tmp/nodes.txt

It prints the median time of a hello/ack over bursts of ``--burst`` sequential requests (the
same request as the ``burst`` control op: a 64-byte body to ``B@net:distro:sys``, answered by
its net module). The figure is for reading, like the bench's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hnet import runtime
from hnet.core.wire import Address
from hnet.testing.harness import Net

HELLO_SIZE = 64
WARM_UP = 200


async def hellos(via: str, run_for: float, burst: int) -> str:
    """Hello/ack bursts between two in-process nodes for ``run_for`` seconds (at least one
    burst); a line with the median µs per hello/ack."""
    with tempfile.TemporaryDirectory(prefix="hnet-profile-nodes-") as tmp:
        net = Net(Path(tmp))
        for name in ("profile-a.os", "profile-b.os"):
            net.register(name, (via,))
        a = await net.node("profile-a.os", transports=(via,))
        await net.node("profile-b.os", transports=(via,))
        try:
            target, body = Address.net("profile-b.os"), b"x" * HELLO_SIZE
            for _ in range(WARM_UP):  # the dial and handshake, outside the bursts
                await a.request(target, body, via=via)
            per_burst: list[float] = []
            deadline = time.monotonic() + run_for
            while not per_burst or time.monotonic() < deadline:
                t0 = time.perf_counter()
                for _ in range(burst):
                    await a.request(target, body, via=via)
                per_burst.append((time.perf_counter() - t0) / burst * 1e6)
        finally:
            await net.close()
    return (
        f"node hello/ack in one process, {via.upper()}: {len(per_burst)} bursts of {burst},"
        f" median {statistics.median(per_burst):.1f} us/rt"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--via", choices=["tcp", "ws", "quic"], default="tcp")
    p.add_argument("--run-for", type=float, default=10.0, metavar="S")
    p.add_argument("--burst", type=int, default=2000, metavar="N")
    args = p.parse_args()
    if args.burst < 1 or args.run_for < 0:
        p.error("--burst must be at least 1 and --run-for not negative")
    print(runtime.run(hellos(args.via, args.run_for, args.burst)))


if __name__ == "__main__":
    main()
