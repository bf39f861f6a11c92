"""``hnet node``: run a node until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import time
from pathlib import Path

from hnet import keys, limits
from hnet.cli.chain_opts import add_chain_args, chain_source, check_chain_args
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
from hnet.net.pki import Pki, PkiStartError
from hnet.node import Node, NodeConfig, NodeStartError
from hnet.runtime import run as run_loop
from hns import ChainIdMismatch, Registry, SyncProgress
from hns.lookup import LiveLookup

log = get_logger("cli.node")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "node",
        help="run a node",
        description="Run a node: listen on the ports of NAME's HNS record (or, if the record "
        "lists routers instead of an address, keep sessions to those routers), answer hellos, "
        "and serve a control socket (owner-only) in the home directory. SIGINT/SIGTERM stop it. "
        "Records come from the local registry, or with --rpc from Hypermap on chain: the node "
        "syncs (resuming from HOME/hns), then follows the chain while it runs.",
    )
    p.add_argument("--name", required=True, metavar="NAME", help="this node's HNS name")
    p.add_argument("--key", required=True, metavar="KEYFILE", help="networking key file")
    add_registry(p)
    add_home(p)
    add_chain_args(p, rpc_required=False)
    p.add_argument("--bind", metavar="IP", help="listen on this IP instead of the record's")
    p.add_argument(
        "--max-peers", type=int, default=limits.MAX_PEERS, metavar="N", help="peer bound"
    )
    p.add_argument(
        "--max-passthroughs",
        type=int,
        default=limits.MAX_PASSTHROUGHS,
        metavar="N",
        help="act as a router for up to N passthroughs (TCP/WS), pending and active, and up "
        "to N circuits (routed QUIC, docs/quic.md §11) "
        f"(default {limits.MAX_PASSTHROUGHS}: not a router)",
    )
    p.add_argument(
        "--no-share-address",
        dest="share_address",
        action="store_false",
        help="never consent to a router disclosing our observed UDP address to a circuit's "
        "other end, and never upgrade a routed QUIC session to a direct one (hole punching, "
        "docs/quic.md §11.13; on by default)",
    )
    p.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="DIR",
        help="install and start this package (metadata.json and pkg/ with manifest.json and "
        "the .wasm files; repeatable); installed packages start again on every restart",
    )
    p.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure(json=args.log_json, level=args.log_level)
    check_chain_args(args)
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
        share_address=args.share_address,
    )
    return run_loop(_main(config, args))


def _pki(args: argparse.Namespace, home: Path) -> Pki:
    """The registry's records, or with ``--rpc`` the chain's (checkpointed under home), with
    live reads for names registered after the last confirmed block."""
    if not args.rpc:
        return Pki.from_registry(Registry(registry_of(args)))
    source = chain_source(args, home, progress=_SyncLog())
    live = LiveLookup(args.rpc, chain_id=args.chain_id, contract=args.contract)
    pki = Pki([source], contract=args.contract, live=live.lookup)
    live.names = pki.name_of  # routers of a live read are named from the index
    pki.on_close(live.aclose)
    return pki


class _SyncLog:
    """Progress lines of the chain sync (at most every PKI_SYNC_LOG_INTERVAL s)."""

    def __init__(self) -> None:
        self._last = float("-inf")

    def __call__(self, p: SyncProgress) -> None:
        now = time.monotonic()
        if now - self._last < limits.PKI_SYNC_LOG_INTERVAL and not p.synced:
            return
        self._last = now
        log.info(
            "HNS sync",
            block=p.cursor,
            target=p.target,
            head=p.head,
            logs=p.logs,
            blocks_per_s=round(p.blocks_per_s),
            synced=p.synced,
        )


async def _main(config: NodeConfig, args: argparse.Namespace) -> int:
    pki = _pki(args, config.home)
    node = Node(config, pki)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = loop.create_task(node.start(), name="node start")
    stopping = loop.create_task(stop.wait(), name="stop signal")
    try:
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not starting.done():  # a signal during the start (a long chain sync): stop cleanly
        starting.cancel()
        await asyncio.wait([starting])
        await node.aclose()
        return EXIT_OK
    try:
        starting.result()
    except NodeStartError as e:
        cause = e.__cause__
        wrong_chain = isinstance(cause, PkiStartError) and isinstance(cause.error, ChainIdMismatch)
        raise CliError(str(e), EXIT_USAGE if wrong_chain else EXIT_FAIL) from None
    from kernel.boot import start_kernel
    from kernel.packages import PackageError

    try:
        stack = await start_kernel(node, config.home, [Path(p) for p in args.package])
    except PackageError as e:
        await node.aclose()
        raise CliError(str(e), EXIT_USAGE) from None
    control = ControlServer(node, socket_path(config.home), stop.set, extra_ops=stack.ops())
    try:
        await control.start()
    except OSError as e:
        await stack.aclose()
        await node.aclose()
        raise CliError(f"control socket {socket_path(config.home)}: {e.strerror}") from None
    # What start-up made (modules, the PKI's first load, the kernel) lives as long as the node:
    # leave it out of the cyclic collector's full passes, which otherwise walk it all again
    # (measured in-process: one such pass of ~20 ms per 10,000 hellos).
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        log.info("shutting down", name=config.name)
        await control.aclose()
        await stack.aclose()
        await node.aclose()
    return EXIT_OK
