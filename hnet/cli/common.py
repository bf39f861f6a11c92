"""Shared CLI pieces: homes, registries, errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
