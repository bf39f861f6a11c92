"""Set up our side, run the scenario matrix, and build the report.

Our side is two temporary identities: A (``interop-XXXX.TLD``) plays the peer in every
scenario, listening on TCP, WS and QUIC for the target to dial; B (``interop-XXXX-b.TLD``,
TCP and WS) is the node the target routes to and the name a spoofed source claims. With a
local registry both are registered there (direct, on our own ports); with ``--rpc`` they must
already be on chain, and :class:`SetupError` says what to register. With ``--home`` the
identities (names, keys, ports) are kept in ``HOME/interop-identity.json`` and reused, so a
foreign node can be given them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hnet import keys
from hnet.core.quic.backend import BackendError, resolve_name
from hnet.interopsuite.links import (
    QUIC_COLUMNS,
    STREAM_TRANSPORTS,
    Endpoint,
    Identity,
    Keys,
    Link,
    RawLink,
    RecordLookup,
    local_ip_towards,
)
from hnet.interopsuite.model import Failure, Outcome, Report, Result, Skip, failed, skipped
from hnet.interopsuite.scenarios import SCENARIOS, Scenario
from hns import Registry, RegistryError
from hns.records import NodeRecord

#: Matrix columns in order.
COLUMNS: tuple[str, ...] = (*STREAM_TRANSPORTS, *QUIC_COLUMNS)
IDENTITY_FILE = "interop-identity.json"


class SetupError(Exception):
    """The suite cannot run: unknown target, our identities not registered, bad options."""


@dataclass(slots=True)
class Context:
    """What every scenario gets: the target's record, our identities and listeners."""

    target: str
    record: NodeRecord
    routers: dict[str, NodeRecord]
    a: Identity
    b: Identity
    #: indirect behind the target (the target routes to it through a ConnectionRequest)
    c: Identity
    keyring: Keys
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    dial_command: str | None
    our_quic_backend: str
    lookup: RecordLookup
    opened: list[Link] = field(default_factory=list)
    raw_opened: list[RawLink] = field(default_factory=list)

    async def close_all(self) -> None:
        links, self.opened = self.opened, []
        for link in links:
            await link.aclose()
        raws, self.raw_opened = self.raw_opened, []
        for r in raws:
            r.close()


@dataclass(slots=True)
class Options:
    target: str
    lookup: RecordLookup
    #: a local registry to register our identities in (None: they must be in HNS already)
    registry: Registry | None = None
    home: Path | None = None
    dial_command: str | None = None
    only: Sequence[str] = ()


def select(only: Sequence[str], scenario: str, column: str) -> bool:
    """``--only`` patterns (fnmatch) against ``scenario/column``, ``scenario`` or ``column``:
    selected if some pattern matches (or none is given) and no ``!pattern`` does."""
    ident = f"{scenario}/{column}"

    def hit(p: str) -> bool:
        return any(fnmatch.fnmatchcase(x, p) for x in (ident, scenario, column))

    positive = [p for p in only if not p.startswith("!")]
    negative = [p[1:] for p in only if p.startswith("!")]
    return (not positive or any(map(hit, positive))) and not any(map(hit, negative))


# --- identities ---------------------------------------------------------------------------------


ROLES = ("a", "b", "c")


def _new_identity(target: str, tag: str, role: str) -> Identity:
    tld = target.rsplit(".", 1)[-1]
    suffix = "" if role == "a" else f"-{role}"
    return Identity(f"interop-{tag}{suffix}.{tld}", keys.generate())


def load_identities(home: Path | None, target: str) -> tuple[Identity, Identity, Identity]:
    """A, B and C from ``HOME/interop-identity.json`` (made on first use), or fresh ones."""
    tag = os.urandom(4).hex()
    found: dict[str, Identity] = {}
    path = home / IDENTITY_FILE if home is not None else None
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
            for role in ROLES:
                d = data.get(role)
                if d is None:
                    continue
                key = keys.from_seed(bytes.fromhex(d["seed"]))
                ports = {str(k): int(v) for k, v in d.get("ports", {}).items()}
                found[role] = Identity(str(d["name"]), key, ports)
            if "a" in found:
                tag = found["a"].name.split(".", 1)[0].removeprefix("interop-")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise SetupError(f"{path}: unreadable identity file ({e})") from None
    a, b, c = (found.get(r) or _new_identity(target, tag, r) for r in ROLES)
    return a, b, c


ETH_PROVIDERS_FILE = "interop-eth-providers.json"


def save_identities(
    home: Path, a: Identity, b: Identity, c: Identity, ip: str, target: str
) -> None:
    """Keep the identities in ``HOME/interop-identity.json`` (mode 0600), and write, for a
    reference node, their static HNS entries (``.eth_providers`` form) beside it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / IDENTITY_FILE
    data = {
        role: {"name": i.name, "seed": keys.seed_bytes(i.key).hex(), "ports": i.ports}
        for role, i in zip(ROLES, (a, b, c), strict=True)
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    entries = [hns_entry(a, ip), hns_entry(b, ip), hns_entry(c, None, [target])]
    (home / ETH_PROVIDERS_FILE).write_text(json.dumps(entries, indent=2) + "\n")


def hns_entry(i: Identity, ip: str | None, routers: Sequence[str] = ()) -> dict[str, object]:
    """Our identity as a reference node's static ``.eth_providers`` entry."""
    return {
        "chain_id": 8453,
        "trusted": False,
        "provider": {
            "Node": {
                "hns_update": {
                    "name": i.name,
                    "public_key": "0x" + i.public_hex,
                    "ips": [ip] if ip and not routers else [],
                    "ports": {}
                    if routers
                    else {k: v for k, v in sorted(i.ports.items()) if k in ("tcp", "ws")},
                    "routers": list(routers),
                },
                "use_as_provider": False,
            }
        },
    }


def describe_identity(i: Identity, ip: str) -> str:
    ports = " ".join(f"{k} {v}" for k, v in sorted(i.ports.items()))
    return f"{i.name} (key {i.public_hex}, {ip} {ports})"


async def _check_registered(lookup: RecordLookup, i: Identity, ip: str) -> str | None:
    rec = await lookup(i.name)
    want = f"register {i.name} with --public-key {i.public_hex} --ip {ip} " + " ".join(
        f"--{k}-port {v}" for k, v in sorted(i.ports.items())
    )
    if rec is None:
        return f"{i.name} is not in HNS: {want}"
    if rec.net_key != i.public_hex:
        return f"{i.name} has another key in HNS: {want}"
    if ip not in rec.ips or any(rec.ports.get(k) != v for k, v in i.ports.items()):
        return f"{i.name}'s address or ports in HNS differ: {want}"
    return None


# --- the run --------------------------------------------------------------------------------------


async def _run_one(ctx: Context, sc: Scenario, column: str) -> Result:
    t0 = time.monotonic()
    outcome: Outcome
    try:
        async with asyncio.timeout(sc.deadline):
            outcome = await sc.fn(ctx, column)
    except Failure as e:
        outcome = failed(str(e))
    except Skip as e:
        outcome = skipped(str(e))
    except TimeoutError:
        outcome = failed(f"expected the scenario to finish within its {sc.deadline:g} s deadline")
    except Exception as e:  # the target did something we did not foresee: say what
        outcome = failed(f"unexpected {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(Exception):
            await ctx.close_all()
    return Result(sc.name, column, outcome, time.monotonic() - t0, sc.role)


async def run_suite(opts: Options) -> Report:
    """Look the target up, set up our side, run every selected scenario x column."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    target = opts.target
    record = await opts.lookup(target)
    if record is None:
        raise SetupError(f"{target}: not in HNS")
    if record.net_key is None:
        raise SetupError(f"{target}: its HNS record has no ~net-key")
    routers: dict[str, NodeRecord] = {}
    for r in record.routers:
        rrec = await opts.lookup(r)
        if rrec is not None:
            routers[r] = rrec
    if not record.is_direct and not routers:
        raise SetupError(f"{target}: its record has neither an address with ports nor routers")
    target_ip = record.ips[0] if record.ips else next(iter(routers.values())).ips[0]
    host = local_ip_towards(target_ip)

    keyring = Keys(opts.lookup)
    keyring.add(target, bytes.fromhex(record.net_key))
    for name, rrec in routers.items():
        if rrec.net_key:
            keyring.add(name, bytes.fromhex(rrec.net_key))
    a, b, c = load_identities(opts.home, target)
    for i in (a, b, c):
        keyring.add(i.name, keys.public_bytes(i.key))
    try:
        our_quic = resolve_name(None)
    except BackendError as e:
        raise SetupError(str(e)) from None
    ep_a = Endpoint(a, keyring, host, quic_backend=our_quic)
    ep_b = Endpoint(b, keyring, host)
    try:
        try:
            await ep_a.start(("tcp", "ws", "quic"))
            await ep_b.start(("tcp", "ws"))
        except OSError as e:
            raise SetupError(f"cannot listen on {host}: {e}") from None
        if opts.home is not None:
            save_identities(opts.home, a, b, c, host, target)
        if opts.registry is not None:
            try:
                for i in (a, b):
                    opts.registry.register(i.name, keys.public_bytes(i.key), ip=host, ports=i.ports)
                if record.is_direct and not record.routers:  # C: indirect, behind the target
                    opts.registry.register(c.name, keys.public_bytes(c.key), routers=[target])
            except RegistryError as e:
                raise SetupError(str(e)) from None
        else:
            problems = [p for i in (a, b) if (p := await _check_registered(opts.lookup, i, host))]
            if problems:
                raise SetupError(
                    "our identities must be in HNS before the suite can run: "
                    + "; ".join(problems)
                    + (f" (kept in {opts.home / IDENTITY_FILE})" if opts.home else "")
                )
        ctx = Context(
            target,
            record,
            routers,
            a,
            b,
            c,
            keyring,
            ep_a,
            ep_b,
            opts.dial_command,
            our_quic,
            opts.lookup,
        )
        report = Report(
            target=target,
            ours=a.name,
            transports=list(COLUMNS),
            scenarios=[s.name for s in SCENARIOS],
            started=started,
        )
        report.notes.append(
            f"us: {describe_identity(a, host)}; {b.name} (routed to, spoofed); "
            f"{c.name} (indirect behind the target)"
        )
        chosen = [
            (sc, col) for col in COLUMNS for sc in SCENARIOS if select(opts.only, sc.name, col)
        ]
        if not chosen:
            raise SetupError(f"--only {' '.join(opts.only)}: selects no scenario")
        report.scenarios = [s.name for s in SCENARIOS if any(s is c for c, _ in chosen)]
        report.transports = [c for c in COLUMNS if any(c == col for _, col in chosen)]
        for sc, col in chosen:
            report.results.append(await _run_one(ctx, sc, col))
        report.seconds = time.monotonic() - t0
        return report
    finally:
        await ep_a.aclose()
        await ep_b.aclose()
