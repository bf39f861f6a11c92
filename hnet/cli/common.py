"""Shared CLI pieces: homes, registries, errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A one-line error for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def default_home() -> Path:
    env = os.environ.get("HNET_HOME")
    return Path(env) if env else Path.home() / ".hnet"


def home_of(args: argparse.Namespace) -> Path:
    home = getattr(args, "home", None)
    return Path(home) if home else default_home()


def registry_of(args: argparse.Namespace) -> Path:
    reg = getattr(args, "registry", None)
    return Path(reg) if reg else home_of(args) / "registry"


def add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home",
        metavar="DIR",
        help="node home directory (default: $HNET_HOME or ~/.hnet)",
    )


def add_registry(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        metavar="PATH",
        help="local HNS registry directory (default: HOME/registry)",
    )


def err(line: str) -> None:
    print(line, file=sys.stderr)


async def control_call(
    args: argparse.Namespace, req: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """One request to the running node's control socket (the node under ``--home``); its
    reply. A node that cannot be reached or does not answer in ``timeout`` is a
    :class:`CliError` (usage exit code) naming why."""
    from hnet.control import ControlClient, ControlError  # only the commands that ask need it

    try:
        client = await ControlClient.connect(home_of(args))
        try:
            return await client.call(req, timeout=timeout)
        finally:
            await client.aclose()
    except (ControlError, TimeoutError, OSError) as e:
        raise CliError(str(e) or "no answer from the node", EXIT_USAGE) from None
