"""``hnet node``: run a node until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from hnet import keys, limits
from hnet.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_home,
    add_registry,
    home_of,
    registry_of,
)
from hnet.control import ControlServer, socket_path
from hnet.log import configure, get_logger
from hnet.net.pki import Pki
from hnet.node import Node, NodeConfig, NodeStartError
from hnet.runtime import run as run_loop
from hns import Registry

log = get_logger("cli.node")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "node",
        help="run a node",
        description="Run a node: listen on the ports of NAME's HNS record (or, if the record "
        "lists routers instead of an address, keep sessions to those routers), answer hellos, "
        "and serve a control socket (owner-only) in the home directory. SIGINT/SIGTERM stop it.",
    )
    p.add_argument("--name", required=True, metavar="NAME", help="this node's HNS name")
    p.add_argument("--key", required=True, metavar="KEYFILE", help="networking key file")
    add_registry(p)
    add_home(p)
    p.add_argument("--bind", metavar="IP", help="listen on this IP instead of the record's")
    p.add_argument(
        "--max-peers", type=int, default=limits.MAX_PEERS, metavar="N", help="peer bound"
    )
    p.add_argument(
        "--max-passthroughs",
        type=int,
        default=limits.MAX_PASSTHROUGHS,
        metavar="N",
        help="act as a router for up to N passthroughs, pending and active "
        f"(default {limits.MAX_PASSTHROUGHS}: not a router)",
    )
    p.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure(json=args.log_json, level=args.log_level)
    home = home_of(args)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
    except OSError as e:
        raise CliError(f"{home}: cannot use as home ({e.strerror})") from None
    try:
        key = keys.read_keyfile(Path(args.key))
    except keys.KeyFileError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if args.max_peers < 1:
        raise CliError("--max-peers must be at least 1")
    if args.max_passthroughs < 0:
        raise CliError("--max-passthroughs must be at least 0")
    config = NodeConfig(
        name=args.name,
        key=key,
        home=home,
        bind=args.bind,
        max_peers=args.max_peers,
        max_passthroughs=args.max_passthroughs,
    )
    registry = Registry(registry_of(args))
    return run_loop(_main(config, registry))


async def _main(config: NodeConfig, registry: Registry) -> int:
    pki = Pki.from_registry(registry)
    node = Node(config, pki)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except NodeStartError as e:
        raise CliError(str(e), EXIT_FAIL) from None
    control = ControlServer(node, socket_path(config.home), stop.set)
    try:
        await control.start()
    except OSError as e:
        await node.aclose()
        raise CliError(f"control socket {socket_path(config.home)}: {e.strerror}") from None
    try:
        await stop.wait()
    finally:
        log.info("shutting down", name=config.name)
        await control.aclose()
        await node.aclose()
    return EXIT_OK
