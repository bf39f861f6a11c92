"""The one interface every HNS record source implements: Hypermap logs, new ones only, in order.

A source is anything that yields Hypermap ``eth_getLogs`` objects (``docs/protocol.md`` §9):
the local registry directory (:class:`hns.sources.registry.RegistrySource`) and a chain JSON-RPC
endpoint (:class:`hns.sources.chain.ChainSource`, which can start from hypermap-cacher files:
:mod:`hns.bootstrap`).
The consumer feeds what it gets to one long-lived :class:`hns.Indexer`, so a source only has
to deliver logs, never records.

Why pull (``read_new``) and not push: the indexer needs logs strictly in order and exactly once,
and a consumer that asks for "whatever is new" when it is ready gets both without queues
between the two. Change detection is the consumer's business: it polls ``read_new`` (the PKI
does so every ``PKI_POLL_INTERVAL`` and early on a lookup miss), so ``read_new`` must be cheap
when nothing changed. A source that can learn of changes by push (a chain subscription) can
add an optional ``wait_changed`` later without changing this protocol.

Why a reset. A chain can reorganise: blocks a source has already delivered are replaced, and
the logs in them with them. An indexer cannot undo a log, so the only correct answer is to
rebuild. A source that can find this out raises :class:`SourceReset` from ``read_new``; it has
already rewound itself, so its next ``read_new`` returns its whole corrected history again
from the beginning, exactly like a first call (a chain source replays it from its local
checkpoint, without asking the chain again). The consumer throws away what it derived from
that source and feeds the replay to a fresh indexer. Sources that can never reset (a registry
directory) need not do anything: a consumer learns whether to expect resets from the optional
class attribute ``resettable`` (absent means False), so it keeps the logs of non-resettable
sources for a rebuild only when one of its sources is resettable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class SourceReset(Exception):
    """Raised by ``read_new``: what this source returned before is void from ``from_block`` on.

    The source has rewound: its next ``read_new`` returns its whole history again, from the
    beginning, in order, as a first call would (nothing is returned by the raising call). The
    consumer must drop every log it got from this source and rebuild from that replay.
    ``from_block`` is the lowest block whose logs changed (for messages and for consumers that
    keep logs by block); ``reason`` is one line.
    """

    def __init__(self, source: str, from_block: int, reason: str) -> None:
        super().__init__(f"{source}: history changed from block {from_block}: {reason}")
        self.source = source
        self.from_block = from_block
        self.reason = reason


class SourceError(Exception):
    """The source cannot be read right now (its directory is unreadable, its endpoint is down).

    Nothing was consumed: the same logs are offered again by a later ``read_new``. The message
    is one line, naming the source.
    """


@runtime_checkable
class LogSource(Protocol):
    """An incremental, ordered, at-most-once supply of Hypermap logs.

    The contract, for every implementation:

    * **Incremental.** ``read_new`` returns only logs it has not returned before; the first call
      returns everything the source holds.
    * **At most once per log.** No log is ever returned twice, by one call or across calls
      (exact duplicates, e.g. overlapping cache files, are dropped).
    * **Ordered.** One call's logs are in chain order (block number, then log index). Across
      calls a source delivers in chain order as far as it can know it; a log it discovers late
      (older than one it already returned) is still returned, once, and the implementation
      documents when that can happen.
    * **All-or-nothing per call.** If ``read_new`` raises :class:`SourceError` or is cancelled,
      nothing counts as returned. Items the source cannot use (a corrupt file) are skipped and
      described by :meth:`take_problems` instead of failing the whole call.
    * **Reset.** A source whose history can change (a chain) sets the class attribute
      ``resettable = True`` and may raise :class:`SourceReset` from ``read_new``; see there.
      It may also deliver a long history over several calls (a prefix, in order, each time):
      then it is "behind" until a call returns everything it holds, and says so with an
      optional ``synced`` attribute (absent means every call returns everything), which a
      consumer starting up (the PKI) reads to know when it has the whole history.
    * **Off the event loop.** Any blocking I/O runs in a thread (``asyncio.to_thread``), so a
      consumer on the event loop is never blocked. Calls are not made concurrently by a
      well-behaved consumer; implementations serialise them anyway.
    """

    #: What the source reads, for messages: ``"registry /path/to/registry"``.
    name: str

    async def read_new(self) -> list[dict[str, object]]:
        """The logs not returned before, in chain order. Raises :class:`SourceError`, or
        :class:`SourceReset` if the source is resettable."""
        ...

    def take_problems(self) -> list[str]:
        """One-line descriptions of what was skipped since the last call (for the consumer
        to log); each problem is reported once, not on every poll."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (connections, threads); idempotent."""
        ...
