"""``hnet keygen``: a new Ed25519 networking key."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.cli.common import EXIT_OK, EXIT_USAGE, CliError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keygen",
        help="create a new Ed25519 networking key",
        description="Create a new Ed25519 networking key file (mode 0600) "
        "and print its public key. With --encrypt the key is sealed under a passphrase "
        f"(Argon2id + XSalsa20-Poly1305), taken from ${keys.PASSPHRASE_ENV} if set, else "
        "asked twice on the terminal; hnet asks for it again whenever it reads the file.",
    )
    p.add_argument("--out", required=True, metavar="KEYFILE", help="where to write the key")
    p.add_argument("--encrypt", action="store_true", help="encrypt the key file under a passphrase")
    p.set_defaults(func=run)


def passphrase_for_new_file(path: Path) -> str:
    """The passphrase of a new encrypted key file (environment, or asked twice)."""
    try:
        passphrase = keys.ask_passphrase(path, confirm=True)
    except keys.KeyFileError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if not passphrase:
        raise CliError(f"{path}: refusing an empty passphrase", EXIT_USAGE)
    return passphrase


def write_new_keyfile(path: Path, key: Ed25519PrivateKey, passphrase: str | None) -> None:
    """``keys.write_keyfile`` with its failures as one-line CLI errors."""
    try:
        keys.write_keyfile(path, key, passphrase=passphrase)
    except FileExistsError:
        raise CliError(f"{path}: already exists (refusing to overwrite a key)") from None
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None


def refuse_existing(path: Path) -> None:
    """Fail early (before any prompt or key derivation) if ``path`` is taken."""
    if path.exists() or path.is_symlink():
        raise CliError(f"{path}: already exists (refusing to overwrite a key)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.out)
    refuse_existing(path)
    passphrase = passphrase_for_new_file(path) if args.encrypt else None
    key = keys.generate()
    write_new_keyfile(path, key, passphrase)
    print(keys.public_bytes(key).hex())
    return EXIT_OK
