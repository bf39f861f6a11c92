"""hnet x hnet: the suite against real ``hnet node`` processes, one per QUIC backend.

``python -m hnet.interopsuite.selftest [--out DIR] [--only PATTERN]``: starts, on loopback, a
target node per QUIC backend (``HNET_QUIC_BACKEND`` of the node process; each a router, with
``--max-passthroughs``) and an indirect node behind the first, sharing one registry
(:class:`hnet.testing.cluster.Cluster`); runs ``hnet interop run`` against each (QUIC with
both backends on our side; ``hnet ping`` as the dial command; the indirect node with the
routed and hello scenarios only; then the "target dials" QUIC rows again with our listener on
the other backend), prints the matrices, and exits 0 only if every run passed.
CI runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from hnet.core.quic.backend import BACKENDS
from hnet.testing.cluster import Cluster


def dial_command(home: Path) -> str:
    """``hnet ping`` from the target's home: makes the target dial us."""
    py = shlex.quote(sys.executable)
    where = shlex.quote(str(home))
    return f"{py} -m hnet ping {{name}} --via {{via}} -c {{count}} -i 0.05 --home {where}"


INDIRECT = "indirect.os"
#: what the indirect node is run with (it is reached only through its router)
INDIRECT_ONLY = "routed-*,hello*,handshake*"


def start_targets(root: Path, backends: tuple[str, ...]) -> tuple[Cluster, list[str]]:
    """A direct router per backend, and :data:`INDIRECT` behind the first of them."""
    cluster = Cluster(root)
    names = [f"target-{b}.os" for b in backends]
    for name in names:
        cluster.add(name, args=("--max-passthroughs", "8"))
    cluster.add(INDIRECT, routers=(names[0],), args=("--no-share-address",))
    for name, backend in zip(names, backends, strict=True):
        cluster.start(name, extra_env={"HNET_QUIC_BACKEND": backend})
    cluster.start(INDIRECT, extra_env={"HNET_QUIC_BACKEND": backends[0]})
    names.append(INDIRECT)

    async def ready() -> None:
        async with asyncio.timeout(60):
            await asyncio.gather(*(cluster.wait_ready(n, timeout=60) for n in names))

    try:
        asyncio.run(ready())
    except BaseException:
        cluster.stop_all()
        raise
    return cluster, names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hnet.interopsuite.selftest", description=__doc__)
    p.add_argument("--out", metavar="DIR", help="keep the JSON/JUnit files and logs here")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN")
    p.add_argument("--backend", action="append", choices=BACKENDS, help="target backends")
    args = p.parse_args(argv)
    backends = tuple(args.backend or BACKENDS)
    with tempfile.TemporaryDirectory(prefix="hnet-interop-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cluster, names = start_targets(root / "cluster", backends)
        worst = 0
        summary: list[str] = []
        try:
            runs: list[tuple[str, list[str], str | None]] = []
            for name in names:
                only = args.only or ([INDIRECT_ONLY] if name == INDIRECT else [])
                runs.append((name, only, None))
            if not args.only:  # our QUIC listener on the other backends: the target dials it
                for ours in backends[1:]:
                    for name in names[: len(backends)]:
                        runs.append((name, [f"*-target-dials/quic-{ours}"], ours))
            for name, only, ours in runs:
                node = cluster.nodes[name]
                tag = name if ours is None else f"{name}-listener-{ours}"
                cmd = [
                    sys.executable,
                    "-m",
                    "hnet",
                    "interop",
                    "run",
                    "--target",
                    name,
                    "--registry",
                    str(cluster.registry),
                    "--dial-command",
                    dial_command(node.home),
                    "--json",
                    str(root / f"{tag}.json"),
                    "--junit",
                    str(root / f"{tag}.xml"),
                ]
                for pattern in only:
                    cmd += ["--only", pattern]
                env = dict(os.environ)
                if ours is not None:
                    env["HNET_QUIC_BACKEND"] = ours
                backend = backends[0] if name == INDIRECT else name[len("target-") : -len(".os")]
                listener = f", our QUIC listener: {ours}" if ours else ""
                print(
                    f"== hnet interop run --target {name} (its QUIC backend: {backend}{listener})"
                )
                sys.stdout.flush()
                rc = subprocess.run(cmd, env=env, timeout=900).returncode
                worst = max(worst, rc)
                summary.append(f"{tag}: {'OK' if rc == 0 else f'FAILED (exit {rc})'}")
                if rc:
                    print(f"-- {name} log (tail):\n{node.log_text()[-3000:]}", flush=True)
        finally:
            cluster.stop_all()
    print("== interop matrix: " + "; ".join(summary), flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
