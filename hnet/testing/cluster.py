"""A local cluster: several ``hnet node`` processes on loopback sharing one registry.

Used by ``hnet demo``, the multi-process tests and the benchmarks. Each node gets its own
home directory, key file and free loopback ports; the processes are real ``hnet node``
processes, stopped with SIGTERM (then SIGKILL after a bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hnet import keys
from hnet.control import ControlClient, ControlError
from hns import Registry

LOOPBACK = "127.0.0.1"


#: ports this process has handed out: the kernel may offer a port again once its probe socket
#: is closed, and two nodes registered before either binds must not get the same one
_HANDED_OUT: set[int] = set()


def free_port(host: str = LOOPBACK, kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP right now, never one handed out before in this
    process (the kernel picks; a race with another process stays possible, if unlikely)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port in _HANDED_OUT:
            continue
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    raise OSError("no free port found")


@dataclass
class ClusterNode:
    name: str
    home: Path
    keyfile: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    #: routers of an indirect node (its record lists them instead of an address and ports)
    routers: tuple[str, ...] = ()
    #: extra ``hnet node`` arguments, e.g. ``["--max-passthroughs", "8"]``
    args: list[str] = field(default_factory=list)

    def command(self, registry: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hnet",
            "node",
            "--name",
            self.name,
            "--key",
            str(self.keyfile),
            "--registry",
            str(registry),
            "--home",
            str(self.home),
            *self.args,
        ]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "registry"
        self.nodes: dict[str, ClusterNode] = {}

    def add(
        self,
        name: str,
        transports: tuple[str, ...] = ("quic", "tcp", "ws"),
        *,
        routers: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
    ) -> ClusterNode:
        """Register ``name`` (direct on free loopback ports, or indirect behind ``routers``,
        which must be registered already) and prepare its home; ``args`` go to ``hnet node``."""
        home = self.root / name
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
        keyfile = home / "key"
        key = keys.generate()
        keys.write_keyfile(keyfile, key)
        ports = {} if routers else {t: free_port() for t in transports}
        if routers:
            Registry(self.registry).register(name, keys.public_bytes(key), routers=routers)
        else:
            Registry(self.registry).register(name, keys.public_bytes(key), ip=LOOPBACK, ports=ports)
        node = ClusterNode(
            name,
            home,
            keyfile,
            ports,
            log_path=home / "node.log",
            routers=tuple(routers),
            args=list(args),
        )
        self.nodes[name] = node
        return node

    def start(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        node = self.nodes[name]
        env = dict(os.environ, **(extra_env or {}))
        with open(node.log_path, "ab") as logf:
            node.process = subprocess.Popen(
                node.command(self.registry),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    async def wait_ready(self, name: str, timeout: float = 15.0) -> None:
        """Until the node answers ``status`` on its control socket (bounded)."""
        node = self.nodes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {node.log_text()[-2000:]}")
            with contextlib.suppress(ControlError, OSError):
                client = await ControlClient.connect(node.home)
                try:
                    reply = await client.call({"op": "status"}, timeout=2)
                finally:
                    await client.aclose()
                if reply.get("ok"):
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{name} did not come up within {timeout:g} s")

    async def call(self, name: str, req: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        client = await ControlClient.connect(self.nodes[name].home)
        try:
            return await client.call(req, timeout=timeout)
        finally:
            await client.aclose()

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        node = self.nodes[name]
        proc = node.process
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for name in self.nodes:
            self.stop(name)
