"""``hnet interop vectors [FILE]``: check a vector file against our codec.
``hnet interop run --target NAME``: the scenario suite against a running node (ours or not)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hnet.cli.chain_opts import add_chain_args, check_endpoint_args
from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, home_of, registry_of
from hnet.interop import check_vector_file, find_vector_file, format_report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("interop", help="interoperability checks")
    isub = p.add_subparsers(dest="interop_cmd", required=True, metavar="COMMAND")
    v = isub.add_parser(
        "vectors",
        help="check a msgpack vector file",
        description="Decode every row of FILE (name<TAB>type<TAB>hex) by its type, re-encode, "
        "compare; print one line per failure and 'N passed, M failed'. Exit 1 if any failed, "
        "2 if FILE cannot be read. Without FILE: hyperware-msgpack-vectors.tsv in "
        "$HNET_INTEROP_DIR if set, else in the repository's interop-tests/vectors/.",
    )
    v.add_argument("file", metavar="FILE", nargs="?")
    v.set_defaults(func=run_vectors)

    r = isub.add_parser(
        "run",
        help="run the interop scenario suite against a node",
        description="Run the scenario matrix (scenario x transport: tcp, ws, and QUIC with each "
        "backend on our side) against the node NAME, looked up in HNS like any peer. hnet plays "
        "the other side with temporary identities, registered in the local registry (with "
        "--rpc they must be on chain already: the error says what to register). Scenarios "
        "where the target must dial us run --dial-command, a shell template with {name}, {via} "
        "and {count} (e.g. 'hnet ping {name} --via {via} -c {count} --home DIR'); without it "
        "they are skipped. Prints the matrix; exit 0 only if no scenario failed (and one "
        "passed), 1 otherwise, 2 on a usage error or an unknown target.",
    )
    r.add_argument("--target", required=True, metavar="NAME", help="the node to test")
    r.add_argument(
        "--registry",
        metavar="DIR",
        help="local HNS registry directory (default: HOME/registry); ours are registered in it",
    )
    r.add_argument(
        "--home",
        metavar="DIR",
        help="keep our identities (names, keys, ports) in DIR/interop-identity.json and reuse "
        "them (default: fresh ones each run; with --rpc, $HNET_HOME or ~/.hnet)",
    )
    r.add_argument(
        "--dial-command",
        metavar="CMD",
        help="shell template that makes the target dial us: {name} (ours), {via} "
        "(tcp, ws, quic), {count} (hellos to send)",
    )
    r.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only scenario/transport ids matching PATTERN (fnmatch, e.g. 'hello*', "
        "'*/tcp', 'size-cap/ws'; comma-separated or repeated; '!PATTERN' leaves matches out)",
    )
    r.add_argument("--json", metavar="FILE", help="write the results as JSON")
    r.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    add_chain_args(r, rpc_required=False)
    r.set_defaults(func=run_suite)


def run_vectors(args: argparse.Namespace) -> int:
    try:
        path = Path(args.file) if args.file else find_vector_file()
    except FileNotFoundError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    try:
        report = check_vector_file(path)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}", EXIT_USAGE) from None
    for line in format_report(report):
        print(line)
    return EXIT_FAIL if report.failures else EXIT_OK


def run_suite(args: argparse.Namespace) -> int:
    from hnet.interopsuite.cli import run_from_args

    if args.registry and args.rpc:
        raise CliError("interop run: give --registry or --rpc, not both", EXIT_USAGE)
    if args.rpc:
        check_endpoint_args(args)
    only = [p.strip() for item in args.only for p in item.split(",") if p.strip()]
    home = Path(args.home) if args.home else (home_of(args) if args.rpc else None)
    registry = None if args.rpc else registry_of(args)
    return run_from_args(args, only=only, home=home, registry=registry, out=sys.stdout)
