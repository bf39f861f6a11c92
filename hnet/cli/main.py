"""``hnet``: entry point and dispatch."""

from __future__ import annotations

import argparse
import sys

from hnet.cli import demo, hns_cmd, info, interop_cmd, key_cmd, keygen, node_cmd, ping, proc_cmd
from hnet.cli.common import CliError, err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hnet",
        description="hnet: the Hyperware node-to-node network stack (Noise over TCP and "
        "WebSocket, HNS records).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in (keygen, key_cmd, hns_cmd, node_cmd, ping, proc_cmd, info, demo, interop_cmd):
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as e:
        err(str(e))
        return e.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
