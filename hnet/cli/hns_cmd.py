"""``hnet hns register``: the local HNS registry; ``hnet hns sync|status``: Hypermap from a
chain JSON-RPC endpoint into the home's checkpoint (``hns.ChainSource``); ``hnet hns show``:
a record from that store, else the registry, or live from the chain (``hns.LiveLookup``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hnet import keys
from hnet.cli.chain_opts import (
    add_chain_args,
    chain_source,
    check_chain_args,
    check_endpoint_args,
)
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
from hns import (
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    ChainIdMismatch,
    CheckpointError,
    CheckpointStatus,
    Indexer,
    InvalidName,
    LogCache,
    LogsMetadata,
    NodeRecord,
    Registry,
    RegistryError,
    SourceError,
    SourceReset,
    SyncProgress,
    checkpoint_path,
    validate_name,
    write_log_cache,
)
from hns.cacher import timestamp_str
from hns.checkpoint import find_checkpoints, read_logs, read_status
from hns.lookup import LiveLookup
from hns.sources.chain import chain_name, redact_url

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PLAIN_EVERY = 5.0
"""Seconds between progress lines when stderr is not a terminal."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hns", help="HNS records: the local registry, a chain sync, live lookups")
    hsub = p.add_subparsers(dest="hns_cmd", required=True, metavar="COMMAND")

    r = hsub.add_parser(
        "register",
        help="register a node name (writes the Mint and Note logs the chain would)",
        description="Register NAME in the local registry, direct (--ip and ports) or "
        "indirect (--routers). Re-registering a name rewrites its notes.",
    )
    r.add_argument("name", metavar="NAME")
    key = r.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", metavar="KEYFILE", help="networking key file (from hnet keygen)")
    key.add_argument("--public-key", metavar="HEX", help="networking public key, 32 bytes hex")
    r.add_argument("--ip", metavar="IP", help="IPv4 or IPv6 address of a direct node")
    r.add_argument("--tcp-port", type=int, metavar="N", help="TCP port (0 = not offered)")
    r.add_argument("--ws-port", type=int, metavar="N", help="WebSocket port (0 = not offered)")
    r.add_argument(
        "--quic-port",
        type=int,
        metavar="N",
        help="QUIC port, an hnet extension ignored by reference readers (0 = not offered)",
    )
    r.add_argument("--routers", metavar="A,B", help="router names of an indirect node")
    add_registry(r)
    add_home(r)
    r.set_defaults(func=run_register)

    s = hsub.add_parser(
        "show",
        help="show a name's record",
        description="Show NAME's record: from the chain sync under HOME when there is one "
        "(hnet hns sync), else from the local registry; with --rpc, read live from the chain.",
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--rpc", metavar="URL", help="look the name up live on this JSON-RPC endpoint")
    s.add_argument(
        "--contract", default=HYPERMAP_ADDRESS, metavar="ADDR", help="Hypermap contract address"
    )
    s.add_argument(
        "--chain-id",
        type=int,
        default=HYPERMAP_CHAIN_ID,
        metavar="N",
        help=f"expected chain id (default {HYPERMAP_CHAIN_ID}, Base)",
    )
    add_registry(s)
    add_home(s)
    s.set_defaults(func=run_show)

    y = hsub.add_parser(
        "sync",
        help="fetch Hypermap's node records from a chain JSON-RPC endpoint",
        description="Sync Hypermap logs from an Ethereum JSON-RPC endpoint (http(s) or ws(s)) "
        "into the checkpoint under HOME/hns, up to the confirmed head (or --to-block), and "
        "exit. With --cache, hypermap-cacher files are read first and RPC catches up from "
        "their last block. A later sync, or a node, resumes from the checkpoint.",
    )
    add_chain_args(y, rpc_required=True)
    y.add_argument("--to-block", type=int, metavar="N", help="last block (default: the head)")
    y.add_argument(
        "--write-cache",
        metavar="DIR",
        help="also write the synced logs as one hypermap-cacher file into DIR",
    )
    add_home(y)
    y.set_defaults(func=run_sync)

    t = hsub.add_parser(
        "status",
        help="show where the home's records come from and how fresh they are",
        description="Show the record store hnet hns show and hnet node read: the chain sync "
        "under HOME/hns (the last block synced, the head last seen, the lag between them, logs "
        "and records), or else the local registry.",
    )
    t.add_argument("--json", action="store_true", help="print JSON")
    add_home(t)
    t.set_defaults(func=run_status)


def _public_key(args: argparse.Namespace) -> bytes:
    if args.key:
        try:
            return keys.public_bytes(keys.read_keyfile(Path(args.key)))
        except keys.KeyFileError as e:
            raise CliError(str(e), EXIT_USAGE) from None
    try:
        return keys.parse_public_key(args.public_key)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None


def run_register(args: argparse.Namespace) -> int:
    net_key = _public_key(args)
    ports = {
        proto: port
        for proto, port in (("tcp", args.tcp_port), ("ws", args.ws_port), ("quic", args.quic_port))
        if port is not None
    }
    routers = [r.strip() for r in args.routers.split(",") if r.strip()] if args.routers else []
    if routers and (args.ip or ports):
        raise CliError("give either --ip with ports (direct) or --routers (indirect)", EXIT_USAGE)
    if not routers and not args.ip:
        raise CliError("a direct node needs --ip (or give --routers)", EXIT_USAGE)
    registry = Registry(registry_of(args))
    try:
        rec = registry.register(
            args.name, net_key, ip=args.ip, ports=ports, routers=routers or None
        )
    except RegistryError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    print(f"registered {rec.name} in {registry.path}")
    print(format_record(rec))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    if args.rpc:
        check_lookup_args(args)
        rec = asyncio.run(_live_show(args))
        where = f"chain {redact_url(args.rpc)}"
    else:
        store = open_store(home_of(args), registry_of(args))
        rec = store.records.get(args.name)
        where = store.source
        if rec is None:
            try:
                validate_name(args.name)
            except InvalidName as e:
                raise CliError(f"{args.name!r}: {e}", EXIT_USAGE) from None
    if rec is None:
        raise CliError(f"{args.name}: not in HNS ({where})", EXIT_USAGE)
    if args.json:
        print(json.dumps(record_json(rec), indent=2))
    else:
        print(format_record(rec))
    return EXIT_OK


def check_lookup_args(args: argparse.Namespace) -> None:
    check_endpoint_args(args)
    try:
        validate_name(args.name)
    except InvalidName as e:
        raise CliError(f"{args.name!r}: {e}", EXIT_USAGE) from None


async def _live_show(args: argparse.Namespace) -> NodeRecord | None:
    """A live read of one name (``hns.lookup``); router names come from the home's store."""
    store = open_store(home_of(args), registry_of(args))
    names = {rec.namehash: rec.name for rec in store.records.values()}
    lookup = LiveLookup(args.rpc, chain_id=args.chain_id, contract=args.contract, names=names.get)
    try:
        result = await lookup.resolve(args.name)
        if result.unresolved_routers:
            print(
                f"{args.name}: routers not named in the home's store (hnet hns sync names "
                f"them): {', '.join(result.unresolved_routers)}",
                file=sys.stderr,
            )
        return result.record
    except ChainIdMismatch as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except SourceError as e:
        raise CliError(str(e), EXIT_FAIL) from None
    finally:
        await lookup.aclose()


@dataclass
class Store:
    """The records a home's commands read, and where they come from."""

    source: str
    records: dict[str, NodeRecord]
    status: CheckpointStatus | None = None


def open_store(home: Path, registry: Path) -> Store:
    """The chain sync under ``home`` if there is one (the most recently updated, when
    several chains or contracts were synced), else the local registry."""
    status = _latest_checkpoint(home)
    if status is not None:
        try:
            logs = read_logs(status.path)
        except CheckpointError as e:
            raise CliError(str(e)) from None
        indexer = Indexer(contract=status.contract)
        indexer.feed_all(logs)
        return Store(f"chain sync {status.path}", indexer.records(), status)
    reg = Registry(registry)
    try:
        records = reg.load().records()
    except RegistryError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    return Store(f"registry {reg.path}", dict(records))


def _latest_checkpoint(home: Path) -> CheckpointStatus | None:
    statuses: list[CheckpointStatus] = []
    for path in find_checkpoints(home):
        try:
            statuses.append(read_status(path))
        except CheckpointError as e:
            raise CliError(str(e)) from None
    if not statuses:
        return None
    return max(statuses, key=lambda st: (st.updated or 0.0, st.path))


def record_json(rec: NodeRecord) -> dict[str, object]:
    return {
        "name": rec.name,
        "namehash": rec.namehash,
        "net_key": rec.net_key,
        "ips": list(rec.ips),
        "ports": dict(sorted(rec.ports.items())),
        "routers": list(rec.routers),
        "direct": rec.is_direct,
        "usable": rec.is_usable,
    }


def format_record(rec: NodeRecord) -> str:
    lines = [
        f"name      {rec.name}",
        f"namehash  {rec.namehash}",
        f"net-key   {rec.net_key or '(none)'}",
    ]
    if rec.is_direct:
        lines.append(f"ip        {', '.join(rec.ips)}")
        ports = ", ".join(f"{p} {n}" for p, n in sorted(rec.ports.items())) or "(none)"
        lines.append(f"ports     {ports}")
    else:
        lines.append(f"routers   {', '.join(rec.routers) or '(none)'}")
    lines.append(f"usable    {'yes' if rec.is_usable else 'no'}")
    return "\n".join(lines)


# --- sync and status -----------------------------------------------------------------------------


def run_sync(args: argparse.Namespace) -> int:
    check_chain_args(args)
    if args.to_block is not None and args.to_block < args.from_block:
        raise CliError("--to-block is before --from-block", EXIT_USAGE)
    return asyncio.run(_sync(args))


async def _sync(args: argparse.Namespace) -> int:
    home = home_of(args)
    view = _ProgressView(sys.stderr)
    src = chain_source(args, home, to_block=args.to_block, progress=view.update)
    indexer = Indexer(contract=args.contract)
    logs: list[dict[str, object]] = []
    try:
        while True:
            try:
                new = await src.read_new()
            except SourceReset as e:
                view.note(f"{e}; rebuilding")
                indexer, logs = Indexer(contract=args.contract), []
                continue
            finally:
                for problem in src.take_problems():
                    view.note(problem)
            logs += new
            indexer.feed_all(new)
            if src.synced:
                break
    except ChainIdMismatch as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except SourceError as e:
        raise CliError(str(e), EXIT_FAIL) from None
    finally:
        view.close()
        await src.aclose()
    records = indexer.records()
    usable = sum(1 for r in records.values() if r.is_usable)
    last = src.cursor.block if src.cursor else args.from_block - 1
    boot = src.bootstrap
    if boot is not None and boot.covers:
        print(
            f"from the cache: blocks {boot.first_block}..{boot.last_block}, {len(boot.logs)} "
            f"logs from {boot.files_used} files; then RPC"
        )
    print(
        f"synced {src.name}: blocks {args.from_block}..{last}, {len(logs)} logs, "
        f"{len(records)} names ({usable} usable); "
        f"checkpoint {checkpoint_path(home, args.chain_id, args.contract)}"
    )
    if args.write_cache:
        print(f"wrote {_write_cache(Path(args.write_cache), args, last, logs)}")
    return EXIT_OK


def _write_cache(
    directory: Path, args: argparse.Namespace, last: int, logs: list[dict[str, object]]
) -> Path:
    metadata = LogsMetadata(
        chain_id=str(args.chain_id),
        from_block=str(args.from_block),
        to_block=str(max(last, args.from_block)),
        time_created=timestamp_str(),
        created_by="hnet-hns-sync:hnet:sys",
        signature="",
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return write_log_cache(directory, LogCache(metadata=metadata, logs=logs))
    except OSError as e:
        raise CliError(f"--write-cache {directory}: {e.strerror or e}") from None


def run_status(args: argparse.Namespace) -> int:
    home = home_of(args)
    store = open_store(home, registry_of(args))
    others = [
        str(p)
        for p in find_checkpoints(home)
        if store.status is None or str(p) != store.status.path
    ]
    st = store.status
    usable = sum(1 for r in store.records.values() if r.is_usable)
    last = st.cursor.block if st and st.cursor else None
    lag = st.head - last if st and st.head is not None and last is not None else None
    out: dict[str, object] = {
        "source": store.source,
        "kind": "chain" if st else "registry",
        "chain_id": st.chain_id if st else None,
        "contract": st.contract if st else None,
        "first_block": st.first_block if st else None,
        "last_block": last,
        "last_block_hash": st.cursor.hash if st and st.cursor else None,
        "head": st.head if st else None,
        "lag": lag,
        "logs": st.logs if st else None,
        "records": len(store.records),
        "usable": usable,
        "updated": st.updated if st else None,
        "other_checkpoints": others,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    lines = [f"source      {store.source}"]
    if st is not None:
        updated = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.updated))
            if st.updated
            else "never"
        )
        shown = f"{last} ({st.cursor.hash[:18]}…)" if st.cursor else "(none yet)"
        lines += [
            f"chain       {chain_name(st.chain_id)}, contract {st.contract}",
            f"blocks      {st.first_block}..{shown}",
            f"head        {st.head if st.head is not None else '(not seen)'}"
            + (f", lag {lag} blocks" if lag is not None else ""),
            f"logs        {st.logs}",
            f"updated     {updated}",
        ]
    else:
        lines.append("chain       none (run: hnet hns sync --rpc URL)")
    lines.append(f"records     {len(store.records)} names ({usable} usable)")
    lines += [f"also        {p}" for p in others]
    print("\n".join(lines))
    return EXIT_OK


class _ProgressView:
    """A rich progress bar on a terminal, plain lines (at most every ``PLAIN_EVERY`` s)
    otherwise; notes (skipped data, reorgs) go above it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last_line = 0.0
        self._last: SyncProgress | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("sync"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("blocks  {task.fields[logs]} logs  {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("sync", total=None, logs=0, rate="")

    def update(self, p: SyncProgress) -> None:
        self._last = p
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=p.done,
                total=p.total or None,
                logs=p.logs,
                rate=f"{p.blocks_per_s:,.0f} blocks/s",
            )
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY or p.synced:
            self._last_line = now
            self._line(p)

    def _line(self, p: SyncProgress) -> None:
        share = f" ({100 * p.done / p.total:.1f}%)" if p.total else ""
        head = f", head {p.head}" if p.head is not None else ""
        print(
            f"sync: block {p.cursor if p.cursor is not None else '-'} of {p.target}{share}, "
            f"{p.logs} logs, {p.blocks_per_s:,.0f} blocks/s{head}",
            file=self._stream,
            flush=True,
        )

    def note(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self._stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
