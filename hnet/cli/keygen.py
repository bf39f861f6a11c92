"""``hnet keygen``: a new Ed25519 networking key."""

from __future__ import annotations

import argparse
from pathlib import Path

from hnet import keys
from hnet.cli.common import EXIT_OK, CliError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keygen",
        help="create a new Ed25519 networking key",
        description="Create a new Ed25519 networking key file (mode 0600) "
        "and print its public key.",
    )
    p.add_argument("--out", required=True, metavar="KEYFILE", help="where to write the key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.out)
    key = keys.generate()
    try:
        keys.write_keyfile(path, key)
    except FileExistsError:
        raise CliError(f"{path}: already exists (refusing to overwrite a key)") from None
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    print(keys.public_bytes(key).hex())
    return EXIT_OK
