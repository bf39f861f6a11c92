"""``hnet ping``: hellos to ``NAME@net:distro:sys`` through the local node, ping(8)-style."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import statistics
import time

from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, add_home, home_of
from hnet.control import ControlClient, ControlError
from hnet.runtime import run as run_loop

TRANSPORT_CHOICES = ("quic", "tcp", "ws")


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
        "-i", "--interval", type=float, default=1.0, metavar="SECONDS", help="between hellos"
    )
    p.add_argument(
        "-W", "--timeout", type=float, default=5.0, metavar="SECONDS", help="wait for each ack"
    )
    p.add_argument("--via", choices=TRANSPORT_CHOICES, help="force a transport")
    p.add_argument("--text", default="ping", help="hello text (default: ping)")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("ping: -c must be at least 1", EXIT_USAGE)
    if not (0 <= args.interval <= 3600) or not (0 < args.timeout <= 600):
        raise CliError("ping: -i must be in [0, 3600] and -W in (0, 600]", EXIT_USAGE)
    return run_loop(_ping(args))


async def _ping(args: argparse.Namespace) -> int:
    try:
        client = await ControlClient.connect(home_of(args))
    except ControlError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    rtts: list[float] = []
    sent = 0
    started = time.monotonic()
    name = args.name
    via_text = f" via {args.via}" if args.via else ""
    print(f"PING {name}{via_text}: hello to {name}@net:distro:sys", flush=True)
    try:
        while not stop.is_set() and (args.count is None or sent < args.count):
            sent += 1
            t0 = time.monotonic()
            req = {
                "op": "ping",
                "target": name,
                "via": args.via,
                "timeout": args.timeout,
                "text": args.text,
            }
            try:
                reply = await client.call(req, timeout=args.timeout + 10)
            except (ControlError, TimeoutError, OSError) as e:
                raise CliError(f"ping: lost the local node ({e})", EXIT_USAGE) from None
            if reply.get("ok"):
                rtt = float(reply["rtt_ms"])
                rtts.append(rtt)
                print(
                    f"{reply.get('body', 'ack')} from {reply['from']} via {reply['via']}: "
                    f"seq={sent} time={rtt:.2f} ms",
                    flush=True,
                )
            elif reply.get("kind") in ("usage", "lookup"):
                raise CliError(str(reply.get("error")), EXIT_USAGE)
            else:
                kind = str(reply.get("kind", "error")).capitalize()
                print(f"no reply from {name}: seq={sent} {kind}: {reply.get('error')}", flush=True)
            if args.count is not None and sent >= args.count:
                break
            delay = args.interval - (time.monotonic() - t0)
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await stop.wait()
                except TimeoutError:
                    pass
    finally:
        await client.aclose()
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
