"""``hnet peers`` and ``hnet diag``: read from the running node."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hnet.cli.common import EXIT_OK, EXIT_USAGE, CliError, add_home, control_call
from hnet.runtime import run as run_loop


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "peers",
        help="list the running node's peers",
        description="List the running node's peers and their sessions.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_home(p)
    p.set_defaults(func=run_peers)
    d = sub.add_parser(
        "diag",
        help="the running node's diagnostics",
        description="Print the running node's diagnostics.",
    )
    add_home(d)
    d.set_defaults(func=run_diag)


async def _call(args: argparse.Namespace, op: str) -> dict[str, Any]:
    reply = await control_call(args, {"op": op})
    if not reply.get("ok"):
        raise CliError(str(reply.get("error")), EXIT_USAGE)
    return reply


def run_peers(args: argparse.Namespace) -> int:
    reply = run_loop(_call(args, "peers"))
    peers = reply["peers"]
    if args.json:
        print(json.dumps(peers, indent=2))
        return EXIT_OK
    if not peers:
        print("no peers")
        return EXIT_OK
    print(f"{'PEER':24} {'TRANSPORT':9} {'REMOTE':22} {'IN':>6} {'OUT':>6} {'IDLE':>8}  NOTE")
    for p in peers:
        notes = []
        if p.get("router"):
            notes.append(f"via router {p['router']}")
        if p.get("routing_for"):
            notes.append("we route for it")
        print(
            f"{p['name']:24} {p['transport'] or 'dialling':9} {p['remote'] or '-':22} "
            f"{p['messages_in']:>6} {p['messages_out']:>6} {p['last_active_ago']:>7.1f}s  "
            + ", ".join(notes)
        )
    return EXIT_OK


def run_diag(args: argparse.Namespace) -> int:
    print(run_loop(_call(args, "diag"))["text"])
    return EXIT_OK
