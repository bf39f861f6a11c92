"""The chain options shared by ``hnet hns sync`` and ``hnet node --rpc``: where Hypermap is
(``--rpc``, ``--contract``, ``--chain-id``, ``--from-block``), how far behind the head to
stay (``--confirmations``) and the hypermap-cacher files to start from (``--cache``)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hnet.cli.common import EXIT_USAGE, CliError
from hns import (
    DEFAULT_CONFIRMATIONS,
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    ChainSource,
    checkpoint_path,
)
from hns.sources.chain import ProgressCallback

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


def add_chain_args(p: argparse.ArgumentParser, *, rpc_required: bool) -> None:
    p.add_argument(
        "--rpc",
        required=rpc_required,
        metavar="URL",
        help="Ethereum JSON-RPC endpoint, http(s):// or ws(s):// (Base for the real Hypermap)",
    )
    p.add_argument(
        "--contract", default=HYPERMAP_ADDRESS, metavar="ADDR", help="Hypermap contract address"
    )
    p.add_argument(
        "--chain-id",
        type=int,
        default=HYPERMAP_CHAIN_ID,
        metavar="N",
        help=f"expected chain id (default {HYPERMAP_CHAIN_ID}, Base)",
    )
    p.add_argument(
        "--from-block",
        type=int,
        default=HYPERMAP_FIRST_BLOCK,
        metavar="N",
        help=f"first block to read (default {HYPERMAP_FIRST_BLOCK}, Hypermap's first)",
    )
    p.add_argument(
        "--confirmations",
        type=int,
        default=DEFAULT_CONFIRMATIONS,
        metavar="N",
        help=f"blocks to stay behind the head (default {DEFAULT_CONFIRMATIONS})",
    )
    p.add_argument(
        "--cache",
        metavar="DIR|URL",
        help="start from hypermap-cacher log files: a directory, or a cacher's http(s) URL "
        "(URL/manifest, URL/log-cache/FILE); then catch up by RPC from their last block",
    )


def check_endpoint_args(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) for ``--rpc`` and ``--contract``."""
    if not args.rpc.startswith(("http://", "https://", "ws://", "wss://")):
        raise CliError("--rpc must be an http(s):// or ws(s):// URL", EXIT_USAGE)
    if not _ADDRESS_RE.fullmatch(args.contract):
        raise CliError(f"--contract {args.contract!r} is not a 0x-prefixed address", EXIT_USAGE)


def check_chain_args(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) for bad chain options; a no-op without ``--rpc``."""
    if not args.rpc:
        if args.cache:
            raise CliError(
                "--cache needs --rpc (the files are caught up from the chain)", EXIT_USAGE
            )
        return
    check_endpoint_args(args)
    if args.from_block < 0 or args.confirmations < 0:
        raise CliError("--from-block and --confirmations must not be negative", EXIT_USAGE)
    if (
        args.cache
        and not args.cache.startswith(("http://", "https://"))
        and not Path(args.cache).is_dir()
    ):
        raise CliError(
            f"--cache {args.cache}: not a directory (or give an http(s) URL)", EXIT_USAGE
        )


def chain_source(
    args: argparse.Namespace,
    home: Path,
    *,
    to_block: int | None = None,
    progress: ProgressCallback | None = None,
) -> ChainSource:
    """The chain source the options describe, checkpointed under ``home``."""
    return ChainSource(
        args.rpc,
        chain_id=args.chain_id,
        contract=args.contract,
        first_block=args.from_block,
        to_block=to_block,
        confirmations=args.confirmations,
        checkpoint=checkpoint_path(home, args.chain_id, args.contract),
        progress=progress,
        bootstrap=args.cache,
    )
