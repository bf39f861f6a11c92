"""``hnet send``, ``hnet ps`` and ``hnet kill``: the running node's kernel and its processes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hnet.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_home,
    control_call,
)
from hnet.runtime import run as run_loop

#: what the control call may take beyond ``--await`` (the node's own work)
_SLACK = 10.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "send",
        help="send a request to a process (node@process:package:publisher)",
        description="Send a Request with BODY (UTF-8) from the local node's terminal process to "
        "ADDRESS. With --await, wait that long for the response and print its body. Exit 0 on "
        "a response (or once sent, without --await), 1 on SendError (Offline or Timeout), 2 on "
        "a usage error or when no local node runs.",
    )
    s.add_argument("address", metavar="ADDRESS", help="node@process:package:publisher")
    s.add_argument("body", metavar="BODY", help="the request body (UTF-8 text)")
    s.add_argument("--await", dest="wait", type=float, metavar="SECONDS", help="wait this long")
    s.add_argument("--json", action="store_true", help="print the reply as JSON")
    add_home(s)
    s.set_defaults(func=run_send)
    p = sub.add_parser(
        "ps",
        help="the running node's processes",
        description="List the running node's processes, their state and capabilities.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_home(p)
    p.set_defaults(func=run_ps)
    k = sub.add_parser("kill", help="stop a process", description="Stop and remove a process.")
    k.add_argument("process", metavar="PROCESS", help="process:package:publisher")
    add_home(k)
    k.set_defaults(func=run_kill)


async def _call(args: argparse.Namespace, req: dict[str, Any], timeout: float) -> dict[str, Any]:
    return await control_call(args, req, timeout)


def run_send(args: argparse.Namespace) -> int:
    if args.wait is not None and not args.wait > 0:
        raise CliError("--await must be a positive number of seconds", EXIT_USAGE)
    req: dict[str, Any] = {"op": "send", "target": args.address, "body": args.body}
    if args.wait is not None:
        req["await"] = args.wait
    reply = run_loop(_call(args, req, (args.wait or 0) + _SLACK))
    if args.json:
        print(json.dumps(reply))
    if not reply.get("ok"):
        kind = reply.get("kind")
        code = EXIT_FAIL if kind in ("offline", "timeout") else EXIT_USAGE
        if not args.json:
            raise CliError(str(reply.get("error")), code)
        return code
    if not args.json and args.wait is not None:
        print(reply.get("body", ""))
    return EXIT_OK


def run_ps(args: argparse.Namespace) -> int:
    reply = run_loop(_call(args, {"op": "ps"}, _SLACK))
    if not reply.get("ok"):
        raise CliError(str(reply.get("error")), EXIT_USAGE)
    procs = reply["processes"]
    if args.json:
        print(json.dumps(procs, indent=2))
        return EXIT_OK
    if not procs:
        print("no processes")
        return EXIT_OK
    print(f"{'PROCESS':40} {'STATE':10} {'PUBLIC':6} {'ON EXIT':8} CAPABILITIES")
    for p in procs:
        caps = len(p.get("capabilities", []))
        public = "yes" if p.get("public") else "no"
        print(f"{p['process']:40} {p['state']:10} {public:6} {p.get('on_exit', ''):8} {caps}")
    return EXIT_OK


def run_kill(args: argparse.Namespace) -> int:
    reply = run_loop(_call(args, {"op": "kill", "process": args.process}, _SLACK))
    if not reply.get("ok"):
        raise CliError(
            str(reply.get("error")), EXIT_FAIL if reply.get("kind") == "lookup" else EXIT_USAGE
        )
    print(f"killed {args.process}")
    return EXIT_OK
