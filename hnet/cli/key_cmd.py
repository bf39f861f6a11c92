"""``hnet key import-reference``: take over a Hyperdrive node's networking key."""

from __future__ import annotations

import argparse
from pathlib import Path

from hnet import keys
from hnet.cli.common import EXIT_OK, EXIT_USAGE, CliError
from hnet.cli.keygen import passphrase_for_new_file, refuse_existing, write_new_keyfile


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("key", help="import and inspect networking keys")
    ksub = p.add_subparsers(dest="key_cmd", required=True, metavar="COMMAND")
    r = ksub.add_parser(
        "import-reference",
        help="read a Hyperdrive node's .keys file and write its networking key as ours",
        description="Decrypt a reference Hyperdrive node's .keys file with the node's login "
        f"password (${keys.REFERENCE_PASSWORD_ENV} if set, else asked on the terminal) and "
        "print its node name, routers and networking public key. With --out, write that key "
        "as an hnet key file (mode 0600), encrypted under a passphrase with --encrypt "
        f"(${keys.PASSPHRASE_ENV}, else asked twice). Without --out nothing is written.",
    )
    r.add_argument("path", metavar="PATH", help="the reference node's .keys file")
    r.add_argument("--out", metavar="KEYFILE", help="write the networking key here")
    r.add_argument("--encrypt", action="store_true", help="encrypt KEYFILE under a passphrase")
    r.add_argument(
        "--fake-node",
        action="store_true",
        help="the file is from a simulation-mode (fake) node: its password is used without Argon2",
    )
    r.set_defaults(func=run_import_reference)


def run_import_reference(args: argparse.Namespace) -> int:
    src = Path(args.path)
    out = Path(args.out) if args.out else None
    if args.encrypt and out is None:
        raise CliError("--encrypt needs --out KEYFILE", EXIT_USAGE)
    if out is not None:
        refuse_existing(out)
    try:
        ref = keys.read_reference_keyfile(src, fake_node=args.fake_node)
    except keys.KeyFileError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if out is not None:
        passphrase = passphrase_for_new_file(out) if args.encrypt else None
        write_new_keyfile(out, ref.key, passphrase)
    print(f"name      {ref.name}")
    print(f"routers   {', '.join(ref.routers) if ref.routers else '(none: a direct node)'}")
    print(f"net-key   {keys.public_bytes(ref.key).hex()}")
    if out is None:
        print("key file  not written (give --out KEYFILE)")
    else:
        print(f"key file  {out}{' (encrypted)' if args.encrypt else ''}")
    return EXIT_OK
