"""``hnet hns register|show``: the local HNS registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hnet import keys
from hnet.cli.common import EXIT_OK, EXIT_USAGE, CliError, add_home, add_registry, registry_of
from hns import NodeRecord, Registry, RegistryError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hns", help="register and show names in the local HNS registry")
    hsub = p.add_subparsers(dest="hns_cmd", required=True, metavar="COMMAND")

    r = hsub.add_parser(
        "register",
        help="register a node name (writes the Mint and Note logs the chain would)",
        description="Register NAME in the local registry, direct (--ip and ports) or "
        "indirect (--routers). Re-registering a name rewrites its notes.",
    )
    r.add_argument("name", metavar="NAME")
    key = r.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", metavar="KEYFILE", help="networking key file (from hnet keygen)")
    key.add_argument("--public-key", metavar="HEX", help="networking public key, 32 bytes hex")
    r.add_argument("--ip", metavar="IP", help="IPv4 or IPv6 address of a direct node")
    r.add_argument("--tcp-port", type=int, metavar="N", help="TCP port (0 = not offered)")
    r.add_argument("--ws-port", type=int, metavar="N", help="WebSocket port (0 = not offered)")
    r.add_argument(
        "--quic-port",
        type=int,
        metavar="N",
        help="QUIC port, an hnet extension ignored by reference readers (0 = not offered)",
    )
    r.add_argument("--routers", metavar="A,B", help="router names of an indirect node")
    add_registry(r)
    add_home(r)
    r.set_defaults(func=run_register)

    s = hsub.add_parser("show", help="show a name's record", description="Show NAME's record.")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_registry(s)
    add_home(s)
    s.set_defaults(func=run_show)


def _public_key(args: argparse.Namespace) -> bytes:
    if args.key:
        try:
            return keys.public_bytes(keys.read_keyfile(Path(args.key)))
        except keys.KeyFileError as e:
            raise CliError(str(e), EXIT_USAGE) from None
    try:
        return keys.parse_public_key(args.public_key)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None


def run_register(args: argparse.Namespace) -> int:
    net_key = _public_key(args)
    ports = {
        proto: port
        for proto, port in (("tcp", args.tcp_port), ("ws", args.ws_port), ("quic", args.quic_port))
        if port is not None
    }
    routers = [r.strip() for r in args.routers.split(",") if r.strip()] if args.routers else []
    if routers and (args.ip or ports):
        raise CliError("give either --ip with ports (direct) or --routers (indirect)", EXIT_USAGE)
    if not routers and not args.ip:
        raise CliError("a direct node needs --ip (or give --routers)", EXIT_USAGE)
    registry = Registry(registry_of(args))
    try:
        rec = registry.register(
            args.name, net_key, ip=args.ip, ports=ports, routers=routers or None
        )
    except RegistryError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    print(f"registered {rec.name} in {registry.path}")
    print(format_record(rec))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    registry = Registry(registry_of(args))
    try:
        rec = registry.resolve(args.name)
    except RegistryError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if args.json:
        print(json.dumps(record_json(rec), indent=2))
    else:
        print(format_record(rec))
    return EXIT_OK


def record_json(rec: NodeRecord) -> dict[str, object]:
    return {
        "name": rec.name,
        "namehash": rec.namehash,
        "net_key": rec.net_key,
        "ips": list(rec.ips),
        "ports": dict(sorted(rec.ports.items())),
        "routers": list(rec.routers),
        "direct": rec.is_direct,
        "usable": rec.is_usable,
    }


def format_record(rec: NodeRecord) -> str:
    lines = [
        f"name      {rec.name}",
        f"namehash  {rec.namehash}",
        f"net-key   {rec.net_key or '(none)'}",
    ]
    if rec.is_direct:
        lines.append(f"ip        {', '.join(rec.ips)}")
        ports = ", ".join(f"{p} {n}" for p, n in sorted(rec.ports.items())) or "(none)"
        lines.append(f"ports     {ports}")
    else:
        lines.append(f"routers   {', '.join(rec.routers) or '(none)'}")
    lines.append(f"usable    {'yes' if rec.is_usable else 'no'}")
    return "\n".join(lines)
