"""An in-process harness: several real :class:`~hnet.node.Node` objects in one event loop,
on real loopback sockets, sharing one local registry. For tests and benchmarks; the
multi-process twin (real ``hnet node`` processes) is :mod:`hnet.testing.cluster`.

Every wait here is bounded (:func:`until`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.wire import Address
from hnet.net.pki import Pki
from hnet.net.requests import Reply
from hnet.node import Node, NodeConfig
from hnet.testing.cluster import LOOPBACK, free_port
from hns import Registry

__all__ = ["Net", "hello", "until"]


class Net:
    """Registers names in one registry and builds Nodes on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = Registry(root / "registry")
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.nodes: list[Node] = []

    def register(self, name: str, transports: tuple[str, ...] = ("tcp", "ws")) -> Ed25519PrivateKey:
        """A direct node on loopback offering ``transports`` on free ports."""
        key = keys.generate()
        self.keys[name] = key
        ports = {t: free_port() for t in transports}  # free for TCP and UDP alike
        self.registry.register(name, keys.public_bytes(key), ip=LOOPBACK, ports=ports)
        return key

    direct = register

    def indirect(self, name: str, routers: list[str]) -> Ed25519PrivateKey:
        """An indirect node: routers, no address."""
        key = keys.generate()
        self.keys[name] = key
        self.registry.register(name, keys.public_bytes(key), routers=routers)
        return key

    async def node(self, name: str, **kw: Any) -> Node:
        """Start ``name`` (registered first with TCP and WS if it is not yet); the running
        nodes learn of it before this returns."""
        key = self.keys.get(name) or self.register(name)
        kw.setdefault("router_reconnect_interval", 0.1)
        cfg = NodeConfig(name=name, key=key, home=self.root / name, **kw)
        n = Node(cfg, Pki.from_registry(self.registry))
        try:
            await n.start()
        except BaseException:
            await n.aclose()
            raise
        for other in self.nodes:  # running nodes hear of a registration within a poll interval
            await other.pki.resolve(name)
        self.nodes.append(n)
        return n

    async def stop(self, node: Node) -> None:
        await node.aclose()
        self.nodes.remove(node)

    async def close(self) -> None:
        for n in list(self.nodes):
            await n.aclose()
        self.nodes.clear()


async def hello(
    node: Node, target: str, via: str | None = None, timeout: float = 5.0, body: bytes = b"hi"
) -> Reply:
    """One hello from ``node`` to ``target``'s net module; its ack."""
    return await node.request(Address.net(target), body, via=via, timeout=timeout)


async def until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` holds, at most ``timeout`` seconds (then AssertionError)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None
