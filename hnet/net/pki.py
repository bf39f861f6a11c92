"""The node's PKI: HNS records by name (``docs/protocol.md`` §9), followed from record sources.

Lookups happen inside handshakes and dials, so they must never block: :meth:`Pki.record`,
:meth:`Pki.networking_key` and :meth:`Pki.identity` read a dict and nothing else. Keeping that
dict fresh is the job of one background *follower* task, which asks every
:class:`hns.LogSource` for new logs every ``poll_interval`` seconds and feeds them, in order,
to one long-lived :class:`hns.Indexer` (a pure state machine; the sources do their I/O in
threads). A lookup miss wakes the follower early, at most once per ``miss_interval`` however
many misses there are, so a flood of handshakes naming unknown names costs only dict lookups.
:meth:`Pki.resolve` is the waiting form: on a miss it waits (bounded) for a read that started
after the call.

``HnsUpdate`` NetActions from local callers (:meth:`Pki.ingest`) overlay the sources, as in
the reference. Subscribers hear of every change to what a lookup returns, from either side.

A source whose history can change (a chain: ``resettable = True``) may raise
:class:`hns.SourceReset`; the PKI then reads the source's replay of its corrected history and
rebuilds its records in a fresh indexer (the old view stays visible until the new one is
complete), and subscribers hear of every record that changed or vanished. Logs of the other
sources are fed again from memory: the PKI keeps a source's logs only when some other source
is resettable, so a lone chain or registry source costs nothing extra. After a rebuild the
sources' logs are applied source by source rather than in their original interleaving.

Lifecycle: nothing is read until :meth:`Pki.start` (so until then every lookup misses);
:meth:`Pki.aclose` cancels and awaits the follower and closes the sources, which the PKI owns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from hnet import limits
from hnet.core.wire import Direct, HnsUpdate, Identity, NodeRouting, Routers
from hnet.log import get_logger
from hns import (
    HYPERMAP_ADDRESS,
    Indexer,
    LogSource,
    NodeRecord,
    Registry,
    RegistrySource,
    SourceError,
    SourceReset,
    namehash_hex,
)

log = get_logger("pki")


@dataclass(frozen=True, slots=True)
class PkiChange:
    """What a lookup of ``name`` returns changed from ``old`` to ``new`` (None: no record).

    HNS has no burn, so ``new`` is None only when a chain reorganisation removed the Mint.
    """

    name: str
    old: NodeRecord | None
    new: NodeRecord | None


Subscriber = Callable[[PkiChange], None]
LiveLookup = Callable[[str], Awaitable[NodeRecord | None]]
"""A live read of one name (``hns.lookup.LiveLookup.lookup``): None if it does not exist.
Raises :class:`hns.SourceError` when the chain cannot be asked."""


class PkiStartError(Exception):
    """A record source failed before it delivered its history (the endpoint is down, or
    serves another chain): ``error`` is the source's :class:`hns.SourceError`."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


class Pki:
    """HNS records from ``sources`` (read by one follower task) plus a local overlay.

    ``poll_interval``: seconds between reads of every source. ``miss_interval``: least time
    between two reads forced by lookup misses. ``contract``: the Hypermap address whose logs
    count (None: any). ``feed_chunk``: logs applied per event-loop turn. ``live``: asked
    by :meth:`resolve` for a name the sources do not know (yet), e.g. registered on chain
    after the last confirmed block; what it finds is kept (at most ``limits.PKI_LIVE_MAX``
    names) until the sources deliver the name.
    """

    def __init__(
        self,
        sources: Sequence[LogSource],
        *,
        poll_interval: float = limits.PKI_POLL_INTERVAL,
        miss_interval: float = limits.PKI_MISS_INTERVAL,
        contract: str | None = HYPERMAP_ADDRESS,
        feed_chunk: int = limits.PKI_FEED_CHUNK,
        live: LiveLookup | None = None,
    ) -> None:
        self._sources = tuple(sources)
        self._live = live
        self._live_records: OrderedDict[str, NodeRecord] = OrderedDict()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        #: What the records come from, for messages: ``"registry /path"`` for one registry.
        self.source = ", ".join(s.name for s in self._sources) or "no record sources"
        self._poll_interval = poll_interval
        self._miss_interval = miss_interval
        self._feed_chunk = max(1, feed_chunk)
        self._contract = contract
        self._indexer = Indexer(contract=contract)
        # For rebuilds after a SourceReset: source i's logs are kept iff another is resettable.
        resettable = [bool(getattr(s, "resettable", False)) for s in self._sources]
        self._keep = [
            any(r for j, r in enumerate(resettable) if j != i) for i in range(len(resettable))
        ]
        self._kept: list[list[dict[str, object]]] = [[] for _ in self._sources]
        self._rebuilding: set[int] = set()
        self._records: dict[str, NodeRecord] = {}
        self._overlay: dict[str, NodeRecord] = {}
        self._subscribers: dict[int, Subscriber] = {}
        self._next_token = 0
        # Set by a miss (or resolve) to make the follower read early; cleared as it starts.
        self._wake = asyncio.Event()
        # Pulsed (set, then replaced) each time a read of the sources ends.
        self._read_done = asyncio.Event()
        self._reads_started = 0
        self._reads_finished = 0
        self._last_forced = float("-inf")
        self._failing: dict[str, str] = {}
        self._start_lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        #: Counters: reads of the sources (``refreshes``, of which ``forced_refreshes`` were
        #: brought forward by misses), lookup ``misses``, ``logs`` fed, ``source_errors``,
        #: ``resets`` (records rebuilt after a source's history changed).
        self.stats: dict[str, int] = {
            "refreshes": 0,
            "forced_refreshes": 0,
            "misses": 0,
            "logs": 0,
            "source_errors": 0,
            "resets": 0,
            "live_lookups": 0,
        }

    @classmethod
    def from_registry(
        cls,
        registry: Registry,
        *,
        poll_interval: float = limits.PKI_POLL_INTERVAL,
        miss_interval: float = limits.PKI_MISS_INTERVAL,
    ) -> Pki:
        """A PKI on one local registry directory (``source`` is ``"registry PATH"``)."""
        return cls(
            [RegistrySource(registry)],
            poll_interval=poll_interval,
            miss_interval=miss_interval,
            contract=registry.contract,
        )

    def __len__(self) -> int:
        return len(self._records) + sum(1 for n in self._overlay if n not in self._records)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`aclose`."""
        return self._started and not self._closed

    @property
    def skipped(self) -> dict[str, int]:
        """Logs and notes the indexer skipped, by reason."""
        return self._indexer.skipped

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Read every source until each has delivered its history (a source with a
        ``synced`` attribute, a chain, may take many reads; others take one), then follow them
        in the background. Idempotent. Raises :class:`PkiStartError` if a source fails before
        it is synced (a registry that cannot be read is logged and retried instead)."""
        async with self._start_lock:
            if self._closed:
                raise RuntimeError("PKI is closed")
            if self._started:
                return
            while True:
                await self._read_sources(strict=True)
                if self._closed:  # aclose() ran during the initial read
                    return
                if all(getattr(s, "synced", True) for s in self._sources):
                    break
            self._follower = asyncio.get_running_loop().create_task(
                self._follow(), name="pki follower"
            )
            self._started = True

    async def aclose(self) -> None:
        """Stop following: cancel and await the follower, close the sources. Idempotent."""
        if self._closed:
            return
        self._closed = True
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            await asyncio.wait([follower])
        self._pulse_read_done()  # resolve() callers stop waiting
        for src in self._sources:
            try:
                await src.aclose()
            except Exception as e:
                log.error("record source failed to close", source=src.name, error=repr(e))
        for closer in self._closers:
            try:
                await closer()
            except Exception as e:
                log.error("PKI helper failed to close", error=repr(e))

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Await ``closer()`` in :meth:`aclose`, after the sources (e.g. the live lookup's
        connection, which the PKI does not own otherwise)."""
        self._closers.append(closer)

    # --- lookups (memory only: called from handshakes) -------------------------------------

    def record(self, name: str) -> NodeRecord | None:
        """``name``'s record, or None. Never does I/O; a miss asks for an early read."""
        rec = self._lookup(name)
        if rec is None:
            self.stats["misses"] += 1
            if not self._wake.is_set():
                self._wake.set()
        return rec

    def networking_key(self, name: str) -> bytes | None:
        rec = self.record(name)
        return rec.net_key_bytes if rec is not None else None

    def identity(self, name: str) -> Identity | None:
        rec = self.record(name)
        return identity_of(rec) if rec is not None else None

    async def resolve(
        self, name: str, timeout: float = limits.PKI_RESOLVE_TIMEOUT
    ) -> NodeRecord | None:
        """``name``'s record; on a miss, wait up to ``timeout`` s for a read of the sources
        that starts after this call (forced, rate-limited) and return what is known then.

        Returns at once when the PKI is not running (nothing would read the sources).
        """
        rec = self.record(name)  # a miss wakes the follower
        if rec is not None or not self.running:
            return rec
        wanted = self._reads_started + 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while self._reads_finished < wanted and self.running:
                    await self._read_done.wait()
                    rec = self._lookup(name)
                    if rec is not None:
                        return rec
        rec = self._lookup(name)
        if rec is None and self._live is not None and self.running:
            rec = await self._ask_live(name, deadline - loop.time())
        return rec

    async def _ask_live(self, name: str, timeout: float) -> NodeRecord | None:
        if timeout <= 0:
            return None
        assert self._live is not None
        self.stats["live_lookups"] += 1
        try:
            async with asyncio.timeout(timeout):
                rec = await self._live(name)
        except TimeoutError:
            return None
        except SourceError as e:
            log.info("live HNS lookup failed", name=name, error=str(e))
            return None
        if rec is None or rec.name != name or self._lookup(name) is not None:
            return self._lookup(name)
        self._live_records[name] = rec
        while len(self._live_records) > limits.PKI_LIVE_MAX:
            self._live_records.popitem(last=False)
        log.info("name found by a live chain read, before the index", name=name)
        self._notify(PkiChange(name, None, rec))
        return rec

    def name_of(self, namehash: str) -> str | None:
        """The name minted with ``namehash`` (``0x`` + hex) as far as the sources told, for
        naming the routers of a live read."""
        try:
            return self._indexer.name_of(bytes.fromhex(namehash.removeprefix("0x")))
        except ValueError:
            return None

    def _lookup(self, name: str) -> NodeRecord | None:
        return self._overlay.get(name) or self._records.get(name) or self._live_records.get(name)

    # --- local updates and subscribers -----------------------------------------------------

    def ingest(self, update: HnsUpdate) -> None:
        """Take an HnsUpdate from a local caller (reference semantics: IP wins over routers)."""
        key = update.public_key.removeprefix("0x").lower()
        try:
            bytes.fromhex(key)
            nh = namehash_hex(update.name)
        except ValueError as e:
            log.warning("HnsUpdate ignored", name=update.name, error=str(e))
            return
        old = self._lookup(update.name)
        new = NodeRecord(
            name=update.name,
            namehash=nh,
            net_key=key,
            ips=tuple(update.ips[:1]),
            ports=dict(update.ports) if update.ips else {},
            routers=() if update.ips else tuple(update.routers),
        )
        self._overlay[update.name] = new
        if new != old:
            self._notify(PkiChange(update.name, old, new))

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(PkiChange)`` on every change to what a lookup returns (from the
        sources or from :meth:`ingest`), on the event loop. Returns the unsubscriber.

        A callback that raises is logged and kept; it never stops the follower.
        """
        token = self._next_token
        self._next_token += 1
        self._subscribers[token] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(token, None)

        return unsubscribe

    def _notify(self, change: PkiChange) -> None:
        for callback in list(self._subscribers.values()):
            try:
                callback(change)
            except Exception as e:
                log.error(
                    "PKI subscriber raised (a bug in the subscriber)",
                    name=change.name,
                    callback=getattr(callback, "__qualname__", repr(callback)),
                    error=repr(e),
                )

    # --- following the sources ------------------------------------------------------------

    async def _follow(self) -> None:
        """Read the sources every poll interval, or earlier (rate-limited) when woken."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            if self._wake.is_set():
                delay = self._last_forced + self._miss_interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._last_forced = loop.time()
                self.stats["forced_refreshes"] += 1
                self._wake.clear()
            try:
                await self._read_sources()
            except Exception as e:  # a bug here must not end the following
                log.error("PKI read failed (a bug)", error=repr(e))

    async def _read_sources(self, *, strict: bool = False) -> None:
        """One read of every source, in turn; its logs applied to the indexer. ``strict``:
        a source that fails before it is synced raises :class:`PkiStartError`."""
        self._reads_started += 1
        this_read = self._reads_started
        self.stats["refreshes"] += 1
        try:
            for i, src in enumerate(self._sources):
                logs = await self._read_new(i, src, strict=strict)
                if logs is None and i in self._rebuilding:
                    logs = await self._read_new(i, src)  # the replay, at once
                if logs is None:
                    continue
                if i in self._rebuilding:
                    await self._rebuild(i, logs)
                elif logs:
                    if self._keep[i]:
                        self._kept[i].extend(logs)
                    await self._apply(logs)
        finally:
            self._reads_finished = this_read
            self._pulse_read_done()

    async def _read_new(
        self, i: int, src: LogSource, *, strict: bool = False
    ) -> list[dict[str, object]] | None:
        """``src``'s new logs, or None if it could not be read or reset (then ``i`` is in
        ``_rebuilding``); failures are logged (once while they persist), never raised."""
        try:
            logs = await src.read_new()
        except SourceReset as e:
            self.stats["resets"] += 1
            self._rebuilding.add(i)
            log.warning(
                "record source history changed; rebuilding the records",
                source=src.name,
                from_block=e.from_block,
                reason=e.reason,
            )
            return None
        except SourceError as e:
            if strict and getattr(src, "synced", True) is False:
                raise PkiStartError(e) from None
            self._failed(src, str(e))
            return None
        except Exception as e:  # a bug in the source, not a property of its data
            self._failed(src, f"bug: {e!r}")
            return None
        finally:
            for problem in src.take_problems():
                log.warning("record source data skipped", source=src.name, problem=problem)
        if self._failing.pop(src.name, None) is not None:
            log.info("record source readable again", source=src.name)
        return logs

    def _failed(self, src: LogSource, error: str) -> None:
        self.stats["source_errors"] += 1
        if self._failing.get(src.name) != error:
            self._failing[src.name] = error
            log.warning(
                "record source unreadable; keeping the previous view, retrying",
                source=src.name,
                error=error,
            )

    async def _apply(self, logs: list[dict[str, object]]) -> None:
        """Feed ``logs`` (in order) in chunks, yielding the loop between them."""
        for start in range(0, len(logs), self._feed_chunk):
            if start:
                await asyncio.sleep(0)
            chunk = logs[start : start + self._feed_chunk]
            self.stats["logs"] += len(chunk)
            for rec in self._indexer.feed_all(chunk):
                old = self._records.get(rec.name) or self._live_records.pop(rec.name, None)
                self._records[rec.name] = rec
                if rec != old and rec.name not in self._overlay:
                    self._notify(PkiChange(rec.name, old, rec))

    async def _rebuild(self, i: int, replay: list[dict[str, object]]) -> None:
        """Records from scratch: source ``i``'s replay plus the kept logs of the others, in a
        fresh indexer (chunked, yielding the loop); then swap and notify what changed."""
        self._rebuilding.discard(i)
        if self._keep[i]:
            self._kept[i] = list(replay)
        fresh = Indexer(contract=self._contract)
        for j in range(len(self._sources)):
            logs = replay if j == i else self._kept[j]
            for start in range(0, len(logs), self._feed_chunk):
                await asyncio.sleep(0)
                fresh.feed_all(logs[start : start + self._feed_chunk])
        self.stats["logs"] += len(replay)
        old, self._records = self._records, fresh.records()
        self._indexer = fresh
        for name in [*self._records, *(n for n in old if n not in self._records)]:
            before, after = old.get(name), self._records.get(name)
            if before != after and name not in self._overlay:
                self._notify(PkiChange(name, before, after))

    def _pulse_read_done(self) -> None:
        done, self._read_done = self._read_done, asyncio.Event()
        done.set()


def identity_of(rec: NodeRecord) -> Identity:
    routing: NodeRouting
    if rec.ips:
        routing = Direct(ip=rec.ips[0], ports=dict(rec.ports))
    else:
        routing = Routers(routers=tuple(rec.routers))
    return Identity(name=rec.name, networking_key=rec.net_key or "", routing=routing)
