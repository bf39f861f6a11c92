"""Two hosts behind two NATs, in real Linux network namespaces, for hole-punching tests.

Topology (every namespace name starts with ``hnt-<pid>-<n>-``, so parallel and aborted runs
never collide; addresses are the same in every topology, which is fine since each one is
isolated)::

    host_a (192.168.1.2) ── eth0 ═ lan ── nat_a ── wan (10.200.0.2) ═ to_a ─┐
                                          MASQUERADE                      br0 (10.200.0.1)
    host_b (192.168.2.2) ── eth0 ═ lan ── nat_b ── wan (10.200.0.3) ═ to_b ─┘   public

* ``public`` is the "internet": a bridge ``br0`` holding the router's address
  :attr:`NatTopology.router_ip`. It has no default route and no link to the host's own
  network namespace, so nothing can leave the topology.
* ``nat_a``/``nat_b`` forward between their private side (``lan``) and their public side
  (``wan``), masquerade what leaves on ``wan``, and drop whatever arrives on ``wan`` that does
  not belong to a flow started from inside (a home router's firewall: ``ct state
  established,related`` only, both for forwarded packets and for the NAT box itself). Linux
  masquerading keeps a flow's source port when it is free, so a host's mapped port is
  usually its own port, the same for every destination ("cone"-like mapping) while filtering
  is per remote address and port: exactly what UDP hole punching needs.
  The drop for the NAT box itself matters: without it, the first punch datagram reaching a
  NAT before its host has sent anything is accepted locally and leaves a conntrack entry
  (peer:port -> nat:port); the host's own outgoing flow to that peer then clashes with it,
  masquerading gives the flow another port, and the punch fails (seen every time here).
  :meth:`NatTopology.set_symmetric` gives every new flow of one NAT a random port
  (``masquerade random``), a symmetric NAT, where punching fails.
* ``host_a``/``host_b`` have one interface each and a default route via their NAT.

Every veth is created directly inside its namespaces (never in the caller's), so deleting
the namespaces removes everything. Teardown (:meth:`NatTopology.close`, run by the context
managers, on a failed :meth:`NatTopology.up` and at interpreter exit) kills the processes
started by :meth:`NatTopology.popen`, then every other process still inside one of the
namespaces (``ip netns pids``), then deletes the namespaces, each step attempted even when an
earlier one failed or was interrupted (a KeyboardInterrupt is re-raised afterwards). A run
killed without teardown (SIGKILL) leaves its namespaces behind: :func:`cleanup_stale`
(called by every :meth:`NatTopology.up`) deletes the ones whose creating process is gone.

The NAT rules use nftables (``nft``) when it works, else ``iptables``; :func:`available`
says why the topology cannot be built here (not root, ``ip`` missing, the kernel refusing
``ip netns add``, no working nft/iptables), for ``pytest.skip``. Every subprocess call is
bounded by a timeout. Root is needed throughout.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Literal

#: the first part of every namespace name this module creates
PREFIX = "hnt-"
_NAME_RE = re.compile(r"^hnt-(\d+)-(\d+)-")
#: default bound of one subprocess call (``ip``, ``nft``, a command run in a namespace)
TIMEOUT = 10.0

Backend = Literal["nft", "iptables"]
Side = Literal["a", "b"]

#: one NAT box: masquerade on wan; from wan only replies; `block` for block_direct
_NFT_RULES = """
table ip hnet {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain block {
    type filter hook forward priority filter - 10; policy accept;
  }
}
"""

_counter = itertools.count()
_live: set[NatTopology] = set()
_live_lock = threading.Lock()


class NetnsError(RuntimeError):
    """A command building, changing or tearing down a topology failed."""


class NetnsUnavailable(NetnsError):
    """The topology cannot be built on this machine (the message says why, on one line)."""


_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@functools.cache
def find_tool(name: str) -> str | None:
    """The path of a tool, also looked for in the sbin directories (a root shell's PATH may
    lack them, e.g. under sudo or a minimal environment)."""
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def _resolve(argv: Sequence[str]) -> list[str]:
    cmd = list(argv)
    if cmd and "/" not in cmd[0]:
        cmd[0] = find_tool(cmd[0]) or cmd[0]
    return cmd


def _exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    return _resolve(["ip", "netns", "exec", ns]) + _resolve(argv)


def _run(
    argv: Sequence[str],
    *,
    timeout: float = TIMEOUT,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` bounded by ``timeout``; with ``check``, a non-zero exit raises
    :class:`NetnsError` carrying its stderr."""
    try:
        argv = _resolve(argv)
        proc = subprocess.run(
            argv,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"{shlex.join(argv)} timed out after {timeout:g} s") from e
    except OSError as e:
        raise NetnsError(f"{shlex.join(argv)}: {e}") from e
    if check and proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())[:300]
        raise NetnsError(f"{shlex.join(argv)} failed (exit {proc.returncode}): {detail}")
    return proc


def list_namespaces(timeout: float = TIMEOUT) -> list[str]:
    """The names of all network namespaces ``ip netns`` knows (``ip netns list``)."""
    out = _run(["ip", "netns", "list"], timeout=timeout).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids_in(ns: str, timeout: float = 3.0) -> None:
    """SIGKILL every process inside namespace ``ns`` and wait (bounded) until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        proc = _run(["ip", "netns", "pids", ns], check=False, timeout=timeout)
        pids = [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]
        if not pids or time.monotonic() >= deadline:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _delete_namespace(ns: str) -> None:
    _kill_pids_in(ns)
    _run(["ip", "netns", "del", ns], check=False, timeout=TIMEOUT)


def cleanup_stale() -> list[str]:
    """Delete namespaces with our prefix whose creating process is gone; returns their names.

    Best effort: a namespace of a live process (another test run, maybe in parallel) is never
    touched, and errors are ignored."""
    removed: list[str] = []
    try:
        names = list_namespaces()
    except NetnsError:
        return removed
    for ns in names:
        m = _NAME_RE.match(ns)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(NetnsError):
            _delete_namespace(ns)
            removed.append(ns)
    return removed


def _firewall_backend() -> Backend | None:
    if find_tool("nft"):
        return "nft"
    if find_tool("iptables"):
        return "iptables"
    return None


@functools.cache
def available() -> str | None:
    """None when a :class:`NatTopology` can be built here, else a one-line reason.

    Probes once per process: root, ``ip``, a real ``ip netns add`` and the NAT tool inside
    that namespace."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if find_tool("ip") is None:
        return "`ip` (iproute2) is not installed"
    backend = _firewall_backend()
    if backend is None:
        return "neither `nft` (nftables) nor `iptables` is installed"
    probe = f"{PREFIX}{os.getpid()}-{next(_counter)}-probe"
    try:
        _run(["ip", "netns", "add", probe])
    except NetnsError as e:
        return f"the kernel refuses `ip netns add`: {e}"
    try:
        if backend == "nft":
            _run(_exec_argv(probe, ["nft", "-f", "-"]), input=_NFT_RULES)
        else:
            _run(_exec_argv(probe, ["iptables", "-w", "5", "-t", "nat", "-S"]))
    except NetnsError as e:
        return f"{backend} does not work in a network namespace: {e}"
    finally:
        with contextlib.suppress(NetnsError):
            _delete_namespace(probe)
    return None


class NatTopology:
    """A public network with a router and two hosts each behind its own NAT (see the module
    doc). Use as a context manager (``with`` or ``async with``) or call :meth:`up` and
    :meth:`close`.

    ``delay_ms`` adds a netem delay in both directions of each NAT's public link (so
    host↔router one way gains ``delay_ms``, host_a↔host_b one way ``2 * delay_ms``); it needs
    the kernel's ``sch_netem`` (:class:`NetnsUnavailable` otherwise). ``backend`` forces
    ``"nft"`` or ``"iptables"``; the default takes nft when installed.
    """

    router_ip = "10.200.0.1"
    nat_a_public_ip = "10.200.0.2"
    nat_b_public_ip = "10.200.0.3"
    public_prefixlen = 24
    nat_a_private_ip = "192.168.1.1"
    nat_b_private_ip = "192.168.2.1"
    host_a_ip = "192.168.1.2"
    host_b_ip = "192.168.2.2"

    def __init__(
        self,
        *,
        delay_ms: float = 0.0,
        backend: Backend | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.delay_ms = delay_ms
        self.timeout = timeout
        self._backend: Backend | None = backend
        self.prefix = f"{PREFIX}{os.getpid()}-{next(_counter)}-"
        self.public = self.prefix + "public"
        self.nat_a = self.prefix + "nat_a"
        self.nat_b = self.prefix + "nat_b"
        self.host_a = self.prefix + "host_a"
        self.host_b = self.prefix + "host_b"
        self._created: list[str] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._blocked = False

    # -- names -----------------------------------------------------------------------------

    @property
    def namespaces(self) -> tuple[str, ...]:
        """All five namespace names (public, nat_a, nat_b, host_a, host_b)."""
        return (self.public, self.nat_a, self.nat_b, self.host_a, self.host_b)

    @property
    def backend(self) -> Backend:
        """The firewall tool the NAT rules are written with."""
        if self._backend is None:
            found = _firewall_backend()
            if found is None:
                raise NetnsUnavailable("neither `nft` nor `iptables` is installed")
            self._backend = found
        return self._backend

    def nat_of(self, side: Side) -> str:
        return self.nat_a if side == "a" else self.nat_b

    def nat_public_ip(self, side: Side) -> str:
        return self.nat_a_public_ip if side == "a" else self.nat_b_public_ip

    # -- life cycle ------------------------------------------------------------------------

    def up(self) -> NatTopology:
        """Build the topology; on any failure (or interrupt) whatever was built is removed
        before the exception propagates."""
        if self._created:
            raise NetnsError("topology is already up")
        reason = available()
        if reason is not None:
            raise NetnsUnavailable(reason)
        cleanup_stale()
        with _live_lock:
            _live.add(self)
        try:
            self._build()
        except BaseException:
            with contextlib.suppress(NetnsError):
                self.close()
            raise
        return self

    def _ip(self, command: str) -> None:
        """``ip`` with ``command`` split at whitespace (our names and addresses have none)."""
        _run(["ip", *command.split()], timeout=self.timeout)

    def _build(self) -> None:
        for ns in self.namespaces:
            self._created.append(ns)  # first: an interrupt may come after the kernel made it
            self._ip(f"netns add {ns}")
            self._ip(f"-n {ns} link set dev lo up")
        pub, plen = self.public, self.public_prefixlen
        self._ip(f"-n {pub} link add name br0 type bridge")
        self._ip(f"-n {pub} addr add {self.router_ip}/{plen} dev br0")
        self._ip(f"-n {pub} link set dev br0 up")
        sides: tuple[Side, Side] = ("a", "b")
        for side in sides:
            nat, host = self.nat_of(side), self.host_a if side == "a" else self.host_b
            public_ip = self.nat_public_ip(side)
            private_ip = self.nat_a_private_ip if side == "a" else self.nat_b_private_ip
            host_ip = self.host_a_ip if side == "a" else self.host_b_ip
            peer = f"to_{side}"
            # public link nat:wan <-> public:to_x, a port of br0; created in the namespaces
            self._ip(f"link add name wan netns {nat} type veth peer name {peer} netns {pub}")
            self._ip(f"-n {pub} link set dev {peer} master br0")
            self._ip(f"-n {pub} link set dev {peer} up")
            self._ip(f"-n {nat} addr add {public_ip}/{plen} dev wan")
            self._ip(f"-n {nat} link set dev wan up")
            # private link nat:lan <-> host:eth0
            self._ip(f"link add name lan netns {nat} type veth peer name eth0 netns {host}")
            self._ip(f"-n {nat} addr add {private_ip}/24 dev lan")
            self._ip(f"-n {nat} link set dev lan up")
            self._ip(f"-n {host} addr add {host_ip}/24 dev eth0")
            self._ip(f"-n {host} link set dev eth0 up")
            self._ip(f"-n {host} route add default via {private_ip}")
            self.run(nat, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            self._firewall_setup(nat)
            if self.delay_ms > 0:
                for ns, dev in ((nat, "wan"), (pub, peer)):
                    try:
                        tc = f"tc -n {ns} qdisc add dev {dev} root netem delay {self.delay_ms:g}ms"
                        _run(tc.split(), timeout=self.timeout)
                    except NetnsError as e:
                        raise NetnsUnavailable(f"netem delay does not work here: {e}") from e

    def close(self) -> None:
        """Kill what runs inside, delete every namespace; idempotent. Each step is tried even
        if an earlier one failed or was interrupted; raises :class:`NetnsError` if a namespace
        is still there afterwards (after re-raising a KeyboardInterrupt first, if one came)."""
        interrupted: BaseException | None = None
        procs, self._procs = self._procs, []
        for p in procs:
            try:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=2)
            except BaseException as e:  # keep tearing down; re-raised below
                if not isinstance(e, Exception) and interrupted is None:
                    interrupted = e
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
        created, self._created = self._created, []
        for ns in reversed(created):
            try:
                _delete_namespace(ns)
            except BaseException as e:
                if not isinstance(e, Exception) and interrupted is None:
                    interrupted = e
        with _live_lock:
            _live.discard(self)
        if interrupted is not None:
            raise interrupted
        if created:
            left = set(created) & set(list_namespaces())
            if left:
                self._created = sorted(left)  # a later close() tries again
                raise NetnsError(f"namespaces left after teardown: {sorted(left)}")

    def __enter__(self) -> NatTopology:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            with contextlib.suppress(NetnsError):  # keep the original exception
                self.close()

    async def __aenter__(self) -> NatTopology:
        # building takes a few hundred ms of short `ip` calls: done synchronously, so that a
        # cancellation cannot leave a half-built topology behind in a worker thread
        return self.up()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- running things inside -------------------------------------------------------------

    def _check_ns(self, ns: str) -> None:
        if ns not in self.namespaces:
            raise ValueError(f"{ns!r} is not a namespace of this topology")

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside ``ns`` (``ip netns exec``; it execs ``argv``, so
        the process's pid is the command's). For callers starting processes themselves, e.g.
        with :func:`asyncio.create_subprocess_exec`; :meth:`close` kills them too."""
        self._check_ns(ns)
        return _exec_argv(ns, argv)

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``ns`` to completion (text output captured), bounded by
        ``timeout`` (default: the topology's); raises :class:`NetnsError` on timeout and, with
        ``check``, on a non-zero exit."""
        return _run(
            self.exec_argv(ns, argv),
            timeout=self.timeout if timeout is None else timeout,
            check=check,
            input=input,
        )

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        stdin: int | IO[str] | None = subprocess.DEVNULL,
        stdout: int | IO[str] | None = subprocess.PIPE,
        stderr: int | IO[str] | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` inside ``ns`` (text mode); the process is killed by :meth:`close`
        if still running. Bound its wait yourself (``communicate(timeout=...)``)."""
        p = subprocess.Popen(
            self.exec_argv(ns, argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env, text=True
        )
        self._procs.append(p)
        return p

    # -- NAT behaviour ---------------------------------------------------------------------

    def _nft(self, nat: str, script: str) -> None:
        self.run(nat, ["nft", "-f", "-"], input=script)

    def _ipt(self, nat: str, rule: str) -> None:
        self.run(nat, ["iptables", "-w", "5", *rule.split()])

    def _firewall_setup(self, nat: str) -> None:
        if self.backend == "nft":
            self._nft(nat, _NFT_RULES)
            return
        established = "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        for rule in (
            "-t nat -A POSTROUTING -o wan -j MASQUERADE",
            f"-A INPUT -i wan {established}",
            "-A INPUT -i wan -j DROP",
            f"-A FORWARD -i wan {established}",
            "-A FORWARD -i wan -j DROP",
            "-N HNET_BLOCK",
            "-I FORWARD 1 -j HNET_BLOCK",
        ):
            self._ipt(nat, rule)

    def set_symmetric(self, side: Side, symmetric: bool = True) -> None:
        """Make one NAT symmetric (each new flow gets a random public port, so the port a
        rendezvous server sees is not the one the peer would have to use) or cone-like again
        (the default: the source port is kept when free). Existing flows keep their mapping."""
        nat = self.nat_of(side)
        if self.backend == "nft":
            masq = "masquerade random" if symmetric else "masquerade"
            rule = f'add rule ip hnet postrouting oifname "wan" {masq}'
            self._nft(nat, f"flush chain ip hnet postrouting\n{rule}\n")
        else:
            self._ipt(nat, "-t nat -F POSTROUTING")
            extra = " --random" if symmetric else ""
            self._ipt(nat, f"-t nat -A POSTROUTING -o wan -j MASQUERADE{extra}")

    @property
    def direct_blocked(self) -> bool:
        return self._blocked

    def block_direct(self) -> None:
        """Drop everything between the two NATs' public addresses (in both NATs' forward
        path), so a hole punch between host_a and host_b fails while both still reach the
        router. Idempotent."""
        for nat, other in ((self.nat_a, self.nat_b_public_ip), (self.nat_b, self.nat_a_public_ip)):
            self._set_block(nat, other, True)
        self._blocked = True

    def unblock_direct(self) -> None:
        """Undo :meth:`block_direct`. Idempotent."""
        for nat, other in ((self.nat_a, self.nat_b_public_ip), (self.nat_b, self.nat_a_public_ip)):
            self._set_block(nat, other, False)
        self._blocked = False

    def _set_block(self, nat: str, other_ip: str, block: bool) -> None:
        if self.backend == "nft":
            script = "flush chain ip hnet block\n"
            if block:
                script += (
                    f"add rule ip hnet block ip daddr {other_ip} drop\n"
                    f"add rule ip hnet block ip saddr {other_ip} drop\n"
                )
            self._nft(nat, script)
        else:
            self._ipt(nat, "-F HNET_BLOCK")
            if block:
                self._ipt(nat, f"-A HNET_BLOCK -d {other_ip} -j DROP")
                self._ipt(nat, f"-A HNET_BLOCK -s {other_ip} -j DROP")


@atexit.register
def _close_all() -> None:
    with _live_lock:
        live = list(_live)
    for topo in live:
        with contextlib.suppress(Exception):
            topo.close()
