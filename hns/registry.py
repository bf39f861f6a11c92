"""A local HNS registry: a directory of hypermap-cacher style files, written like a chain.

``register`` appends exactly the logs Hypermap would emit for a registration (Mints for every
ancestor not yet minted, top-level zone first under the zero root, then the notes) as one new
cache file covering one new block. ``load`` feeds every file, in chain order, to a fresh
:class:`~hns.indexer.Indexer`, so the registry is read by the same code as real chain data.

Files are named and shaped like the reference cacher's
(``{timeCreated}-chain{chainId}-from{N}-to{N}-protocol0.json``); each is written atomically
(temp file + rename), and registrations hold an exclusive ``fcntl`` lock on ``.lock`` in the
directory, so concurrent registering processes never clash. Readers need no lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from hns.cacher import (
    MAX_CACHE_FILE_BYTES,
    CacheFileError,
    LogCache,
    LogsMetadata,
    ordered_logs,
    read_log_cache,
    timestamp_str,
    write_log_cache,
)
from hns.events import (
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    LogMeta,
    gc_paused,
    mint_log,
    note_log,
)
from hns.indexer import Indexer
from hns.keccak import keccak256
from hns.names import ROOT_HASH, InvalidName, ancestors, namehash, split_name, validate_name
from hns.records import (
    NET_KEY_BYTES,
    NOTE_IP,
    NOTE_NET_KEY,
    NOTE_ROUTERS,
    PORT_NOTES,
    InvalidRecordValue,
    NodeRecord,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
)

LOCK_FILE = ".lock"
CREATED_BY_PROCESS = "hns-registry:hnet:sys"
"""``createdBy`` is ``{registered name}@`` this."""


class RegistryError(Exception):
    """A one-line, user-facing registry failure (bad input, missing name, unreadable file)."""


class Registry:
    """A local registry at directory ``path`` (created on first ``register``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chain_id: int = HYPERMAP_CHAIN_ID,
        contract: str = HYPERMAP_ADDRESS,
        clock: Callable[[], float] = time.time,
        max_file_bytes: int = MAX_CACHE_FILE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.chain_id = chain_id
        self.contract = contract
        self._clock = clock
        self._max_file_bytes = max_file_bytes

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    # --- reading --------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """The registry's cache files (``*.json`` other than manifests and dotfiles)."""
        if not self.path.is_dir():
            return []
        return sorted(
            p
            for p in self.path.iterdir()
            if p.suffix == ".json" and not p.name.startswith((".", "manifest")) and p.is_file()
        )

    def _read_all(self) -> list[LogCache]:
        caches: list[tuple[int, int, str, LogCache]] = []
        for p in self.files():
            try:
                cache = read_log_cache(p, max_bytes=self._max_file_bytes)
            except CacheFileError as e:
                raise RegistryError(f"registry {self.path}: {p.name}: {e}") from None
            if cache.metadata.chain_id != str(self.chain_id):
                raise RegistryError(
                    f"registry {self.path}: {p.name}: chain {cache.metadata.chain_id}, "
                    f"expected {self.chain_id}"
                )
            md = cache.metadata
            caches.append((md.from_block_number, md.to_block_number, p.name, cache))
        caches.sort(key=lambda t: t[:3])
        return [c for *_, c in caches]

    def _load(self) -> tuple[Indexer, int]:
        # One pause of the cyclic collector over the whole load (hns.events.gc_paused): the
        # files' logs, hundreds of thousands of containers, are all freed by reference counting
        # when this returns, so the collector never has to traverse them.
        with gc_paused():
            caches = self._read_all()
            indexer = Indexer(contract=self.contract)
            indexer.feed_all(ordered_logs(caches))
        last = max((c.metadata.to_block_number for c in caches), default=HYPERMAP_FIRST_BLOCK)
        return indexer, max(last, HYPERMAP_FIRST_BLOCK)

    def load(self) -> Indexer:
        """A fresh indexer fed every log in the registry, in chain order."""
        return self._load()[0]

    def lookup(self, name: str) -> NodeRecord | None:
        """The record of ``name``, or None if it is not registered."""
        return self.load().get(name)

    def resolve(self, name: str) -> NodeRecord:
        """The record of ``name``; raises ``RegistryError("alice.os: not in HNS (registry …)")``."""
        rec = self.lookup(name)
        if rec is None:
            raise RegistryError(f"{name}: not in HNS (registry {self.path})")
        return rec

    # --- writing --------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RegistryError(f"registry {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def register(
        self,
        name: str,
        net_key: bytes,
        ip: str | None = None,
        ports: Mapping[str, int] | None = None,
        routers: Sequence[str] | None = None,
    ) -> NodeRecord:
        """Register (or re-register) ``name`` as direct (``ip`` + ``ports``) or indirect
        (``routers``); returns the record as a reader now sees it.

        ``ports`` maps ``"tcp"``/``"ws"``/``"quic"`` to a port; 0 means "not offered" (a 0
        note is written, withdrawing the port). A direct node needs one port that is not 0.

        Writes one new file: a Mint for each of ``name``'s ancestors (and ``name``) not yet
        minted, then ``~net-key``, then either ``~ip`` and a note for each port (with 0 for a
        port offered before and not now) or ``~routers``. Raises :class:`RegistryError`.
        """
        ports = dict(ports or {})
        routers = list(routers or [])
        notes = self._check(name, net_key, ip, ports, routers)
        with self._locked():
            indexer, last_block = self._load()
            for router in routers:
                if not indexer.is_minted(router):
                    raise RegistryError(f"router {router}: not in HNS (registry {self.path})")
            old = indexer.get(name) if indexer.is_minted(name) else None
            if ip is not None and old is not None and old.is_direct:
                for proto in old.ports:
                    if proto not in ports and proto in PORT_NOTES:
                        notes.append((PORT_NOTES[proto], encode_port(0)))
            block = last_block + 1
            logs = self._logs(indexer, name, notes, block)
            now = self._clock()
            metadata = LogsMetadata(
                chain_id=str(self.chain_id),
                from_block=str(block),
                to_block=str(block),
                time_created=timestamp_str(now),
                created_by=f"{name}@{CREATED_BY_PROCESS}",
                signature="",
            )
            try:
                write_log_cache(self.path, LogCache(metadata=metadata, logs=logs))
            except OSError as e:
                raise RegistryError(f"registry {self.path}: {e.strerror or e}") from None
            for log in logs:
                indexer.feed(log)
        rec = indexer.get(name)
        if rec is None:  # pragma: no cover - we just minted it
            raise RegistryError(f"{name}: registration did not take (registry {self.path})")
        return rec

    def _check(
        self,
        name: str,
        net_key: bytes,
        ip: str | None,
        ports: dict[str, int],
        routers: list[str],
    ) -> list[tuple[str, bytes]]:
        """Validate the inputs; return the notes to write (label, value) in order."""
        try:
            validate_name(name)
        except InvalidName as e:
            raise RegistryError(f"invalid name: {e}") from None
        if not isinstance(net_key, bytes | bytearray) or len(net_key) != NET_KEY_BYTES:
            raise RegistryError(f"{name}: networking key must be exactly {NET_KEY_BYTES} bytes")
        notes: list[tuple[str, bytes]] = [(NOTE_NET_KEY, encode_net_key(bytes(net_key)))]
        if ip is not None and routers:
            raise RegistryError(f"{name}: give either an IP address (direct) or routers, not both")
        if ip is None and not routers:
            raise RegistryError(f"{name}: give an IP address and ports (direct) or routers")
        if ip is not None:
            try:
                notes.append((NOTE_IP, encode_ip(ip)))
            except InvalidRecordValue as e:
                raise RegistryError(f"{name}: {e}") from None
            for proto, port in ports.items():
                if proto not in PORT_NOTES:
                    known = ", ".join(PORT_NOTES)
                    raise RegistryError(f"{name}: unknown protocol {proto!r} (known: {known})")
                if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
                    raise RegistryError(f"{name}: {proto} port {port!r} is not in 0..65535")
            if not any(ports.values()):
                raise RegistryError(f"{name}: a direct node needs at least one port")
            for proto in PORT_NOTES:  # fixed order: tcp, ws, quic
                if proto in ports:
                    notes.append((PORT_NOTES[proto], encode_port(ports[proto])))
        else:
            if ports:
                raise RegistryError(f"{name}: ports are only for a direct node (with an IP)")
            for router in routers:
                try:
                    validate_name(router)
                except InvalidName as e:
                    raise RegistryError(f"{name}: invalid router name: {e}") from None
                if router == name:
                    raise RegistryError(f"{name}: a node cannot be its own router")
            if len(set(routers)) != len(routers):
                raise RegistryError(f"{name}: a router is listed twice")
            notes.append((NOTE_ROUTERS, encode_routers(routers)))
        return notes

    def _logs(
        self, indexer: Indexer, name: str, notes: list[tuple[str, bytes]], block: int
    ) -> list[dict[str, object]]:
        """The logs of one registration transaction in block ``block``."""
        block_hash = keccak256(b"hnet local registry block" + block.to_bytes(8, "big"))
        tx_hash = keccak256(b"hnet local registry tx" + block.to_bytes(8, "big") + namehash(name))
        logs: list[dict[str, object]] = []

        def meta() -> LogMeta:
            return LogMeta(block, block_hash, tx_hash, transaction_index=0, log_index=len(logs))

        for entry in ancestors(name):
            if indexer.is_minted(entry):
                continue
            label, parent = split_name(entry)
            parent_hash = ROOT_HASH if parent is None else namehash(parent)
            logs.append(mint_log(parent_hash, label, meta(), address=self.contract))
        node_hash = namehash(name)
        for label, value in notes:
            logs.append(note_log(node_hash, label, value, meta(), address=self.contract))
        return logs
