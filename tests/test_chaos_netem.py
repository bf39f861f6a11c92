"""A lossy, slow, reordering path (netem) between two real nodes, for TCP and QUIC
(docs/reliability.md §6).

Two network namespaces joined by one veth pair (10.201.0.1 <-> 10.201.0.2, nothing else: no
route out), with ``netem delay 100ms 10ms loss 5% reorder 25% 50%`` on both ends, so a round
trip is >= 200 ms, 5 % of the packets are lost each way and a quarter leave early (reordered).
alice.os pings bob.os 50 times over TCP, then over QUIC; every hello must be acked within its
5 s deadline, bob.os's RSS must stay flat and it must answer ``status`` afterwards.

Needs root, ``ip``, ``tc`` and the kernel's ``sch_netem``; skipped with the probe's reason
otherwise (e.g. a kernel built without netem: "Error: Specified qdisc kind is unknown.").

A second topology, ``loss-only``, drops 5 % of the packets arriving in each namespace with an
nftables rule (``numgen random mod 100 < 5 drop``) instead: no delay, no reordering, but it
needs only nft, so it runs on kernels without sch_netem.

A third, ``tun``, is the netem impairment in user space: the namespaces are joined by two TUN
devices and :mod:`hnet.testing.impair` between them, which delays every packet 100 ms ± 10 ms,
drops 5 % and sends 25 % at once (reordered), each way. It needs only ``/dev/net/tun``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from hnet import keys
from hnet.testing import chaos, impair, netns
from hnet.testing.cluster import Cluster, ClusterNode
from hns import Registry

pytestmark = pytest.mark.timeout(150)

#: the impairment; ``HNET_CHAOS_NETEM=none`` runs the same test on an unimpaired veth (checks
#: the namespace plumbing on a machine without sch_netem), any other value replaces it
NETEM = os.environ.get("HNET_CHAOS_NETEM", "delay 100ms 10ms loss 5% reorder 25% 50%")
IPS = {"alice.os": "10.201.0.1", "bob.os": "10.201.0.2"}
PORTS = {"tcp": 9101, "ws": 9102, "quic": 9103}
COUNT, INTERVAL, DEADLINE = 50, 0.2, 5.0
RSS_BOUND_KIB = 50 * 1024
_counter = itertools.count()
#: the loss-only impairment: 5 % of the packets arriving in a namespace are dropped
NFT_LOSS = """
table ip chaos {
  chain in {
    type filter hook input priority filter; policy accept;
    numgen random mod 100 < 5 drop
  }
}
"""


def _run(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    cmd = [netns.find_tool(argv[0]) or argv[0], *argv[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _ns_name(tag: str) -> str:
    # hnet.testing.netns.cleanup_stale recognises (and removes, once we are gone) this form
    return f"{netns.PREFIX}{os.getpid()}-{next(_counter) + 1000}-{tag}"


@functools.cache
def nft_unavailable() -> str | None:
    """None if an nft ruleset loads in a namespace here, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if netns.find_tool("ip") is None or netns.find_tool("nft") is None:
        return "`ip` or `nft` is not installed"
    probe = _ns_name("probe")
    r = _run(["ip", "netns", "add", probe])
    if r.returncode != 0:
        return f"the kernel refuses `ip netns add`: {r.stderr.strip()}"
    try:
        r = _nft(probe, NFT_LOSS)
        if r.returncode != 0:
            return f"nft does not work in a namespace: {r.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe])
    return None


def _nft(ns: str, ruleset: str) -> subprocess.CompletedProcess[str]:
    ip = netns.find_tool("ip") or "ip"
    nft = netns.find_tool("nft") or "nft"
    return subprocess.run(
        [ip, "netns", "exec", ns, nft, "-f", "-"],
        input=ruleset, capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip


@functools.cache
def netem_unavailable() -> str | None:
    """None if netem works in a namespace here, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if netns.find_tool(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = _ns_name("probe")
    r = _run(["ip", "netns", "add", probe])
    if r.returncode != 0:
        return f"the kernel refuses `ip netns add`: {r.stderr.strip()}"
    try:
        _run(["ip", "-n", probe, "link", "set", "dev", "lo", "up"])
        if NETEM == "none":
            return None
        r = _run(["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", *NETEM.split()])
        if r.returncode != 0:
            return f"`tc qdisc add ... netem` fails here (no sch_netem?): {r.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe])
    return None


@functools.cache
def tun_unavailable() -> str | None:
    """None if TUN devices can be made here (the ``tun`` link), else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces and TUN devices need root"
    if netns.find_tool("ip") is None:
        return "`ip` (iproute2) is not installed"
    try:
        os.close(impair.open_tun(f"hp{os.getpid() % 100_000}"))
    except OSError as e:
        return f"no TUN device: {e.strerror or e}"
    return None


#: the user-space link's impairment (the netem default's figures)
TUN_IMPAIRMENT = impair.Impairment(delay=0.1, jitter=0.01, loss=0.05, reorder=0.25)


class Link:
    """Two namespaces, one veth pair between them with netem (or the nft loss rule) on both
    ends; or, mode ``tun``, two TUN devices joined by the user-space impairment."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ns = {"alice.os": _ns_name("a"), "bob.os": _ns_name("b")}
        self.created: list[str] = []
        self.bridge: subprocess.Popen[str] | None = None
        #: the bridge's counters, once closed (tun mode)
        self.counters: dict[str, Any] = {}

    def describe(self) -> str:
        if self.mode == "tun":
            return TUN_IMPAIRMENT.describe()
        if self.mode == "loss-only":
            return "nft: drop 5% of arriving packets"
        return NETEM

    def _tun_up(self) -> None:
        imp = TUN_IMPAIRMENT
        name = f"hi{os.getpid() % 100_000}"
        self.bridge = subprocess.Popen(
            [sys.executable, "-m", "hnet.testing.impair", name,
             "--delay-ms", str(imp.delay * 1000), "--jitter-ms", str(imp.jitter * 1000),
             "--loss", str(imp.loss), "--reorder", str(imp.reorder), "--max-seconds", "600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.bridge.stdout is not None
        # "ready" or "error: ..." (then it exits), within 20 s
        ready, _, _ = select.select([self.bridge.stdout], [], [], 20.0)
        line = self.bridge.stdout.readline() if ready else "(nothing within 20 s)"
        if line.strip() != "ready":
            raise RuntimeError(f"impairment bridge did not start: {line.strip()!r}")
        peers = {"alice.os": "bob.os", "bob.os": "alice.os"}
        for i, (node, ns) in enumerate(self.ns.items()):
            dev = f"{name}{i}"
            self._ip("link", "set", "dev", dev, "netns", ns)
            self._ip("-n", ns, "addr", "add", IPS[node], "peer", IPS[peers[node]], "dev", dev)
            self._ip("-n", ns, "link", "set", "dev", dev, "up")

    def _ip(self, *args: str) -> None:
        r = _run(["ip", *args])
        if r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def up(self) -> Link:
        a, b = self.ns["alice.os"], self.ns["bob.os"]
        for ns in (a, b):
            self.created.append(ns)
            self._ip("netns", "add", ns)
            self._ip("-n", ns, "link", "set", "dev", "lo", "up")
        if self.mode == "tun":
            self._tun_up()
            return self
        self._ip("link", "add", "name", "v0", "netns", a, "type", "veth", "peer", "name", "v0",
                 "netns", b)  # fmt: skip
        for name, ns in self.ns.items():
            self._ip("-n", ns, "addr", "add", f"{IPS[name]}/24", "dev", "v0")
            self._ip("-n", ns, "link", "set", "dev", "v0", "up")
            if self.mode == "loss-only":
                r = _nft(ns, NFT_LOSS)
                if r.returncode != 0:
                    raise RuntimeError(f"nft on {ns}: {r.stderr.strip()}")
                continue
            if NETEM == "none":
                continue
            r = _run(["tc", "-n", ns, "qdisc", "add", "dev", "v0", "root", "netem", *NETEM.split()])
            if r.returncode != 0:
                raise RuntimeError(f"netem on {ns}: {r.stderr.strip()}")
        return self

    def close(self) -> None:
        if self.bridge is not None:
            bridge, self.bridge = self.bridge, None
            with contextlib.suppress(Exception):
                out, _ = bridge.communicate("", timeout=10)  # stdin EOF: it prints its counters
                self.counters = json.loads(out.strip().splitlines()[-1])
            if bridge.poll() is None:
                bridge.kill()
                bridge.wait(5)
        for ns in reversed(self.created):
            with contextlib.suppress(Exception):
                pids = _run(["ip", "netns", "pids", ns]).stdout.split()
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), 9)
                _run(["ip", "netns", "del", ns])
        self.created.clear()


@pytest.fixture(scope="module", params=["netem", "loss-only", "tun"])
def lossy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Link]]:
    mode: str = request.param
    probe = {"netem": netem_unavailable, "loss-only": nft_unavailable, "tun": tun_unavailable}
    reason = probe[mode]()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp(f"chaos-{mode}")
    c = Cluster(root)
    registry = Registry(c.registry)
    link = Link(mode)
    try:
        link.up()
        for name, ip in IPS.items():
            home = root / name
            home.mkdir(mode=0o700)
            key = keys.generate()
            keys.write_keyfile(home / "key", key)
            registry.register(name, keys.public_bytes(key), ip=ip, ports=dict(PORTS))
            node = ClusterNode(name, home, home / "key", dict(PORTS), log_path=home / "node.log")
            c.nodes[name] = node
            with open(node.log_path, "ab") as logf:
                node.process = subprocess.Popen(
                    [netns.find_tool("ip") or "ip", "netns", "exec", link.ns[name],
                     *node.command(c.registry)],
                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )  # fmt: skip

        async def ready() -> None:
            async with asyncio.timeout(40):
                await asyncio.gather(*(c.wait_ready(n) for n in IPS))

        asyncio.run(ready())
        yield c, link
    finally:
        c.stop_all()
        link.close()
        if link.counters:
            chaos.report(f"{mode}: the bridge's packet counters", link.counters)


async def ping_run(c: Cluster, link: Link, via: str) -> dict[str, Any]:
    bob = c.nodes["bob.os"].process
    assert bob is not None
    # the session first (its handshake crosses the same path), timed on its own
    warm = chaos.GoodPeer(c, "alice.os", "bob.os", via=via, timeout=15.0)
    first = await warm.ping_once()
    assert first.ok, first
    rss = chaos.RssSampler(bob.pid, interval=1.0).start()
    good = chaos.GoodPeer(
        c, "alice.os", "bob.os", via=via, interval=INTERVAL, timeout=DEADLINE, max_count=COUNT
    ).start()
    try:
        async with asyncio.timeout(COUNT * (INTERVAL + DEADLINE) + 10):
            await good.wait()
    finally:
        await good.stop()
        await rss.stop()
    status = await c.call("bob.os", {"op": "status"})
    return {
        "via": via,
        "impairment": link.describe(),
        "first_ping_with_handshake_ms": first.rtt_ms,
        "good_peer": good.figures(),
        "rss_kib": rss.thinned(8),
        "rss_growth_kib": rss.growth_kib,
        "status_after": bool(status.get("ok")),
    }


@pytest.mark.parametrize("via", ["tcp", "quic"])
def test_pings_over_a_lossy_reordering_path(lossy: tuple[Cluster, Link], via: str) -> None:
    c, link = lossy
    figures = asyncio.run(ping_run(c, link, via))
    chaos.report(f"{link.mode} ({via})", figures)
    g = figures["good_peer"]
    assert g["sent"] == COUNT and g["acked"] == COUNT, figures
    assert figures["status_after"], figures
    assert figures["rss_growth_kib"] < RSS_BOUND_KIB, figures


def test_probe_reason_is_one_line() -> None:
    reason = netem_unavailable()
    assert reason is None or "\n" not in reason
    if reason:
        print(f"netem: {reason}", file=sys.stderr)
