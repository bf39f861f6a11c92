"""``hnet interop run``'s arguments to :func:`~hnet.interopsuite.suite.run_suite`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from hnet.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, err
from hnet.interopsuite.links import RecordLookup
from hnet.interopsuite.model import print_report
from hnet.interopsuite.suite import Options, SetupError, run_suite
from hnet.runtime import run as run_loop
from hns import Registry, RegistryError
from hns.records import NodeRecord


def registry_lookup(registry: Registry) -> RecordLookup:
    async def lookup(name: str) -> NodeRecord | None:
        try:
            return registry.lookup(name)
        except RegistryError as e:
            raise SetupError(str(e)) from None

    return lookup


def run_from_args(
    args: argparse.Namespace,
    *,
    only: list[str],
    home: Path | None,
    registry: Path | None,
    out: TextIO,
) -> int:
    return run_loop(_run(args, only=only, home=home, registry=registry, out=out))


async def _run(
    args: argparse.Namespace,
    *,
    only: list[str],
    home: Path | None,
    registry: Path | None,
    out: TextIO,
) -> int:
    reg: Registry | None = None
    live = None
    if registry is not None:
        if not registry.is_dir():
            raise CliError(f"{args.target}: not in HNS (no registry at {registry})", EXIT_USAGE)
        reg = Registry(registry)
        lookup = registry_lookup(reg)
    else:
        from hns.lookup import LiveLookup

        live = LiveLookup(args.rpc, chain_id=args.chain_id, contract=args.contract)
        lookup = live.lookup
    try:
        report = await run_suite(
            Options(
                target=args.target,
                lookup=lookup,
                registry=reg,
                home=home,
                dial_command=args.dial_command,
                only=only,
            )
        )
    except SetupError as e:
        raise CliError(f"interop run: {e}", EXIT_USAGE) from None
    except Exception as e:  # a chain endpoint failing, say
        if live is None:
            raise
        raise CliError(f"interop run: {type(e).__name__}: {e}", EXIT_USAGE) from None
    finally:
        if live is not None:
            await live.aclose()
    print_report(report, out)
    for path, write in ((args.json, report.write_json), (args.junit, report.write_junit)):
        if path:
            try:
                write(path)
            except OSError as e:
                err(f"interop run: {path}: {e.strerror or e}")
                return EXIT_FAIL
    return EXIT_OK if report.ok else EXIT_FAIL
