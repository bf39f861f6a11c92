"""``hnet interop vectors FILE``: check a vector file against our codec."""

from __future__ import annotations

import argparse
from pathlib import Path

from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError
from hnet.interop import check_vector_file, format_report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("interop", help="interoperability checks")
    isub = p.add_subparsers(dest="interop_cmd", required=True, metavar="COMMAND")
    v = isub.add_parser(
        "vectors",
        help="check a msgpack vector file",
        description="Decode every row of FILE (name<TAB>type<TAB>hex) by its type, re-encode, "
        "compare; print one line per failure and 'N passed, M failed'. Exit 1 if any failed.",
    )
    v.add_argument("file", metavar="FILE")
    v.set_defaults(func=run_vectors)


def run_vectors(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        report = check_vector_file(path)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}", EXIT_USAGE) from None
    for line in format_report(report):
        print(line)
    return EXIT_FAIL if report.failures else EXIT_OK
