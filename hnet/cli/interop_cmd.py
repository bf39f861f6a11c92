"""``hnet interop vectors [FILE]``: check a vector file against our codec."""

from __future__ import annotations

import argparse
from pathlib import Path

from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError
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
