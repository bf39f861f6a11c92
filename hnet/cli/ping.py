"""``hnet ping``: hellos to ``NAME@net:distro:sys`` through the local node, ping(8)-style.

With ``-l PRELOAD`` that many workers share one pipelined control connection
(:class:`hnet.control.ControlPipeline`): each keeps one hello in flight, waiting ``-i`` between
its sends, so the node has up to PRELOAD requests outstanding at once. Sequence numbers are
handed out in send order; replies are printed as they come.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from hnet import limits
from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, add_home, home_of
from hnet.control import ControlError, ControlPipeline
from hnet.runtime import run as run_loop

TRANSPORT_CHOICES = ("quic", "tcp", "ws")
MAX_SIZE = limits.CONTROL_PING_MAX_BODY
MAX_PRELOAD = limits.CONTROL_MAX_IN_FLIGHT


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ping",
        help="send hellos to a node and time the acks",
        description="Ask the local node to send hellos to NAME@net:distro:sys and print one line "
        "per ack. Exit 0 if any ack came, 1 if none, 2 on a usage or lookup error or when no "
        "local node runs. Without -c it runs until interrupted.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("-c", "--count", type=int, metavar="COUNT", help="stop after COUNT hellos")
    p.add_argument(
        "-i",
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="between hellos (with -l: between the sends of each of the PRELOAD workers)",
    )
    p.add_argument(
        "-W",
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait for each ack (default: 5 s, plus 1 s per MB of hellos in flight at once, "
        "since large hellos queued behind each other take time to cross)",
    )
    p.add_argument(
        "-s",
        "--size",
        type=int,
        metavar="SIZE",
        help=f"hello body of exactly SIZE bytes (0..{MAX_SIZE}): the --text bytes repeated and "
        "cut to SIZE; the node builds it (default: the --text bytes)",
    )
    p.add_argument(
        "-l",
        "--preload",
        type=int,
        default=1,
        metavar="PRELOAD",
        help=f"keep PRELOAD hellos in flight at once, sending that many without waiting for "
        f"an ack (1..{MAX_PRELOAD}, default 1)",
    )
    p.add_argument("--via", choices=TRANSPORT_CHOICES, help="force a transport")
    p.add_argument("--text", default="ping", help="hello text (default: ping)")
    add_home(p)
    p.set_defaults(func=run)


#: The default wait for an ack: a small hello's (the reference's ``hi`` waits 5 s) ...
BASE_TIMEOUT = 5.0
#: ... plus this long per byte of hellos in flight at once: 1 s per MB, a rate every
#: transport beats even with both directions loaded (QUIC in Python moves ~5-20 MB/s).
TIMEOUT_PER_BYTE = 1.0 / 1_000_000


def default_timeout(size: int | None, preload: int) -> float:
    """``-W`` when not given: 5 s, plus 1 s per MB of hellos in flight (at most 600 s)."""
    in_flight = (size or 0) * max(1, preload)
    return min(600.0, BASE_TIMEOUT + in_flight * TIMEOUT_PER_BYTE)


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("ping: -c must be at least 1", EXIT_USAGE)
    if args.timeout is None:
        args.timeout = default_timeout(args.size, args.preload)
    if not (0 <= args.interval <= 3600) or not (0 < args.timeout <= 600):
        raise CliError("ping: -i must be in [0, 3600] and -W in (0, 600]", EXIT_USAGE)
    if args.size is not None and not 0 <= args.size <= MAX_SIZE:
        raise CliError(f"ping: -s must be in 0..{MAX_SIZE}", EXIT_USAGE)
    if args.size and not args.text:
        raise CliError("ping: -s above 0 needs a non-empty --text", EXIT_USAGE)
    if not 1 <= args.preload <= MAX_PRELOAD:
        raise CliError(f"ping: -l must be in 1..{MAX_PRELOAD}", EXIT_USAGE)
    return run_loop(_ping(args))


@dataclass
class _Run:
    """State shared by the workers of one ``hnet ping``."""

    args: argparse.Namespace
    pipe: ControlPipeline
    stop: asyncio.Event
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    #: the first error that ends the run (usage, lookup, lost node); raised once workers stop
    fatal: CliError | None = None

    def next_seq(self) -> int | None:
        """The next sequence number, or None once COUNT are sent or the run is stopping."""
        count = self.args.count
        if self.stop.is_set() or (count is not None and self.sent >= count):
            return None
        self.sent += 1
        return self.sent

    def request(self) -> dict[str, Any]:
        req: dict[str, Any] = {
            "op": "ping",
            "target": self.args.name,
            "via": self.args.via,
            "timeout": self.args.timeout,
            "text": self.args.text,
        }
        if self.args.size is not None:
            req["size"] = self.args.size
        return req

    def end(self, error: CliError) -> None:
        if self.fatal is None:
            self.fatal = error
        self.stop.set()


async def _worker(run: _Run) -> None:
    args = run.args
    name = args.name
    while (seq := run.next_seq()) is not None:
        t0 = time.monotonic()
        try:
            reply = await run.pipe.call(run.request(), timeout=args.timeout + 10)
        except (ControlError, TimeoutError, OSError) as e:
            run.end(CliError(f"ping: lost the local node ({e})", EXIT_USAGE))
            return
        if reply.get("ok"):
            rtt = float(reply["rtt_ms"])
            run.rtts.append(rtt)
            print(
                f"{reply.get('body', 'ack')} from {reply['from']} via {reply['via']}: "
                f"seq={seq} time={rtt:.2f} ms",
                flush=True,
            )
        elif reply.get("kind") in ("usage", "lookup"):
            run.end(CliError(str(reply.get("error")), EXIT_USAGE))
            return
        else:
            kind = str(reply.get("kind", "error")).capitalize()
            print(f"no reply from {name}: seq={seq} {kind}: {reply.get('error')}", flush=True)
        if args.count is not None and run.sent >= args.count:
            return
        delay = args.interval - (time.monotonic() - t0)
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await run.stop.wait()
            except TimeoutError:
                pass


async def _ping(args: argparse.Namespace) -> int:
    try:
        pipe = await ControlPipeline.connect(home_of(args))
    except ControlError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    state = _Run(args, pipe, stop)
    started = time.monotonic()
    name = args.name
    via_text = f" via {args.via}" if args.via else ""
    size_text = f", {args.size} bytes" if args.size is not None else ""
    print(f"PING {name}{via_text}: hello to {name}@net:distro:sys{size_text}", flush=True)
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(args.preload):
                tg.create_task(_worker(state))
    finally:
        await pipe.aclose()
    if state.fatal is not None:
        raise state.fatal
    sent, rtts = state.sent, state.rtts
    elapsed = (time.monotonic() - started) * 1000
    received = len(rtts)
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    print(f"--- {name} ping statistics ---")
    print(f"{sent} sent, {received} received, {loss:.0f}% loss, time {elapsed:.0f} ms")
    if rtts:
        mean = statistics.fmean(rtts)
        mdev = math.sqrt(statistics.fmean([(r - mean) ** 2 for r in rtts]))
        print(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{mean:.3f}/{max(rtts):.3f}/{mdev:.3f} ms")
    return EXIT_OK if received else EXIT_FAIL
