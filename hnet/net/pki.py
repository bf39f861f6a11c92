"""The node's PKI: HNS records by name, read from a record source and kept fresh.

The embedded source is a local registry directory (:class:`hns.Registry`). It is re-read when
it changes (every registration renames a new file into it, moving its mtime and file count):
checked every ``REFRESH_INTERVAL`` seconds on hits and at once on every miss, so names
registered after the node started are found. ``HnsUpdate`` NetActions from local callers
overlay the source.
"""

from __future__ import annotations

import os
import time

from hnet.core.wire import Direct, HnsUpdate, Identity, NodeRouting, Routers
from hnet.log import get_logger
from hns import NodeRecord, Registry, RegistryError, namehash_hex

log = get_logger("pki")

REFRESH_INTERVAL = 0.5


class Pki:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.source = f"registry {registry.path}"
        self._records: dict[str, NodeRecord] = {}
        self._overlay: dict[str, NodeRecord] = {}
        self._seen: tuple[int, int] | None = None
        self._checked = 0.0
        self.refresh(force=True)

    def __len__(self) -> int:
        return len(self._records.keys() | self._overlay.keys())

    def _signature(self) -> tuple[int, int] | None:
        """Changes whenever a registration lands (a new file renamed into the directory)."""
        try:
            st = os.stat(self._registry.path)
            return (st.st_mtime_ns, len(os.listdir(self._registry.path)))
        except OSError:
            return None

    def refresh(self, force: bool = False) -> None:
        """Re-read the source if it changed (errors are logged, the old view kept)."""
        self._checked = time.monotonic()
        signature = self._signature()
        if signature == self._seen and not force:
            return
        try:
            self._records = self._registry.load().records()
            self._seen = signature
        except RegistryError as e:
            log.warning("registry unreadable; keeping the previous view", error=str(e))

    def record(self, name: str) -> NodeRecord | None:
        """``name``'s record; a miss re-checks the source at once, a hit every 0.5 s."""
        if time.monotonic() - self._checked >= REFRESH_INTERVAL:
            self.refresh()
        rec = self._overlay.get(name) or self._records.get(name)
        if rec is None:
            self.refresh()
            rec = self._overlay.get(name) or self._records.get(name)
        return rec

    def networking_key(self, name: str) -> bytes | None:
        rec = self.record(name)
        return rec.net_key_bytes if rec is not None else None

    def identity(self, name: str) -> Identity | None:
        rec = self.record(name)
        return identity_of(rec) if rec is not None else None

    def ingest(self, update: HnsUpdate) -> None:
        """Take an HnsUpdate from a local caller (reference semantics: IP wins over routers)."""
        key = update.public_key.removeprefix("0x").lower()
        try:
            bytes.fromhex(key)
            nh = namehash_hex(update.name)
        except ValueError as e:
            log.warning("HnsUpdate ignored", name=update.name, error=str(e))
            return
        self._overlay[update.name] = NodeRecord(
            name=update.name,
            namehash=nh,
            net_key=key,
            ips=tuple(update.ips[:1]),
            ports=dict(update.ports) if update.ips else {},
            routers=() if update.ips else tuple(update.routers),
        )


def identity_of(rec: NodeRecord) -> Identity:
    routing: NodeRouting
    if rec.ips:
        routing = Direct(ip=rec.ips[0], ports=dict(rec.ports))
    else:
        routing = Routers(routers=tuple(rec.routers))
    return Identity(name=rec.name, networking_key=rec.net_key or "", routing=routing)
