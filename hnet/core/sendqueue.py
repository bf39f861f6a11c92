"""Outgoing messages waiting to be written, bounded in bytes. Sans-I/O: no clock but the one
given, no tasks, no awaits (docs/architecture.md, "The send path").

Every message a node sends is an :class:`Outgoing`: its serialized bytes, a deadline and a
way to tell its sender it failed. It is *charged* to a node-wide :class:`ByteBudget` from the
moment it is queued until it has been written (or has failed, expired or been cancelled), so
the bytes a node holds for all its peers together never exceed one named limit
(``limits.NODE_SEND_BUDGET``), dialling queues included.

A :class:`SendQueue` is one peer's or one session's queue: FIFO, bounded in bytes by its own
limit as well as by the budget, in one lane (TCP, WebSocket: one ordered byte stream) or two
(QUIC: small messages never wait behind bulk ones, since QUIC keeps no order across
messages anyway). An item leaves a queue exactly once, through :meth:`SendQueue.pop` (to be
written), :meth:`SendQueue.take_all` (moved to another queue, still unwritten) or
:meth:`SendQueue.expire`; so no message is ever written twice.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hnet.core.wire import KernelMessage, SendErrorKind

__all__ = ["ByteBudget", "Outgoing", "OutgoingState", "SendQueue"]


class OutgoingState(enum.Enum):
    QUEUED = "queued"
    WRITING = "writing"
    WRITTEN = "written"
    FAILED = "failed"


#: The states an Outgoing ends in, as module constants: an Enum member's attribute lookup is
#: slow, and so is a set lookup (CPython 3.11's ``Enum.__hash__`` is a Python function).
_WRITTEN = OutgoingState.WRITTEN
_FAILED = OutgoingState.FAILED

#: (the message, why it failed) -> None; must not raise and must not block.
FailHook = Callable[["Outgoing", SendErrorKind, str], None]


class ByteBudget:
    """Bytes charged by every queued or in-flight message of one node.

    ``on_release`` (set by the asyncio layer) is called whenever bytes are given back, so
    senders waiting for room can try again.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.high_water = 0
        self.on_release: Callable[[], None] | None = None

    def fits(self, n: int, headroom: int = 0) -> bool:
        return self.used + n <= self.capacity + headroom

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.high_water:
            self.high_water = self.used

    def release(self, n: int) -> None:
        self.used -= n
        if self.used < 0:  # a bookkeeping bug of ours; never let it go negative
            self.used = 0
        if self.on_release is not None:
            self.on_release()


@dataclass(eq=False, slots=True)
class Outgoing:
    """One serialized message on its way out."""

    data: bytes
    #: monotonic time by which it must have been handed to the transport
    deadline: float
    #: the message, for SendError reports (None for messages nobody needs told about)
    km: KernelMessage | None
    on_fail: FailHook | None = None
    #: called once written (standalone senders wait for it; nodes leave it None)
    on_written: Callable[[Outgoing], None] | None = None
    state: OutgoingState = OutgoingState.QUEUED
    #: len(data), kept after the bytes are dropped
    size: int = field(init=False)
    _budget: ByteBudget | None = field(default=None, repr=False)
    #: the queue holding it while QUEUED (its bytes count there)
    _queue: SendQueue | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)

    @property
    def finished(self) -> bool:
        state = self.state
        return state is _WRITTEN or state is _FAILED

    def _uncharge(self) -> None:
        if self._queue is not None:
            self._queue.bytes -= self.size
            self._queue = None
        if self._budget is not None:
            budget, self._budget = self._budget, None
            budget.release(self.size)

    def written(self) -> None:
        """The transport took it (TCP/WS: written and drained; QUIC: handed over in credit)."""
        if self.finished:
            return
        self.state = OutgoingState.WRITTEN
        self._uncharge()
        self.data = b""
        if self.on_written is not None:
            hook, self.on_written = self.on_written, None
            hook(self)

    def fail(self, kind: SendErrorKind, reason: str) -> None:
        """It will never be written: give its bytes back and tell its sender (once)."""
        if self.finished:
            return
        self.state = OutgoingState.FAILED
        self._uncharge()
        self.data = b""
        if self.on_fail is not None:
            hook, self.on_fail = self.on_fail, None
            hook(self, kind, reason)


class SendQueue:
    """A FIFO of :class:`Outgoing`, bounded in bytes, in one or two lanes.

    With two lanes, messages of at most ``small_size`` bytes go to lane 0 and larger ones to
    lane 1; each lane is FIFO. :attr:`bytes` counts what is queued (not what is being
    written: that is still charged to the budget until written).
    """

    def __init__(
        self, max_bytes: int, budget: ByteBudget, *, lanes: int = 1, small_size: int = 0
    ) -> None:
        if lanes not in (1, 2):
            raise ValueError("a send queue has one or two lanes")
        self.max_bytes = max_bytes
        self.budget = budget
        self.small_size = small_size
        self._lanes: tuple[deque[Outgoing], ...] = tuple(deque() for _ in range(lanes))
        self.bytes = 0
        #: called when an item is pushed into an empty lane (wakes that lane's writer)
        self.on_ready: Callable[[int], None] | None = None

    def __len__(self) -> int:
        return sum(len(q) for q in self._lanes)

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def lane_of(self, item: Outgoing) -> int:
        if len(self._lanes) == 1 or item.size <= self.small_size:
            return 0
        return 1

    def lane_len(self, lane: int) -> int:
        return len(self._lanes[lane])

    def fits(self, n: int, headroom: int = 0) -> bool:
        """Would ``n`` more bytes fit this queue and the node's budget? ``headroom`` lets
        senders that cannot wait (replies made on a receive path) go a little over."""
        return self.bytes + n <= self.max_bytes + headroom and self.budget.fits(n, headroom)

    def push(self, item: Outgoing, *, headroom: int = 0) -> bool:
        """Queue ``item`` if it fits (charging the budget); False if it does not."""
        if not self.fits(item.size, headroom):
            return False
        self.budget.charge(item.size)
        item._budget = self.budget
        self._append(item)
        return True

    def _append(self, item: Outgoing) -> None:
        lane = self.lane_of(item)
        q = self._lanes[lane]
        q.append(item)
        item._queue = self
        self.bytes += item.size
        if len(q) == 1 and self.on_ready is not None:
            self.on_ready(lane)

    def adopt(self, items: list[Outgoing]) -> None:
        """Take unwritten items from another queue, in order, ahead of nothing: they are
        already charged to the budget, and may exceed :attr:`max_bytes` by what they hold."""
        for item in items:
            if not item.finished:
                self._append(item)

    def pop(self, lane: int = 0) -> Outgoing | None:
        """The next item of ``lane`` to write (it is then WRITING), or None."""
        q = self._lanes[lane]
        while q:
            item = q.popleft()
            if item.finished:  # failed (cancelled, expired) while queued: bytes already off
                continue
            self._detach(item)
            item.state = OutgoingState.WRITING
            return item
        return None

    def _detach(self, item: Outgoing) -> None:
        if item._queue is self:
            self.bytes -= item.size
            item._queue = None

    def take_all(self) -> list[Outgoing]:
        """Remove every unwritten item (oldest first), e.g. to move them to a new session or
        to fail them; they stay charged to the budget."""
        items: list[Outgoing] = []
        if len(self._lanes) == 1:
            items = [i for i in self._lanes[0] if not i.finished]
        else:
            # Merge back into one FIFO is impossible without sequence numbers and QUIC does
            # not order messages: small ones first, then bulk.
            for q in self._lanes:
                items.extend(i for i in q if not i.finished)
        for i in items:
            self._detach(i)
        for q in self._lanes:
            q.clear()
        return items

    def expire(self, now: float) -> list[Outgoing]:
        """Remove and return the queued items whose deadline has passed (not yet failed)."""
        out: list[Outgoing] = []
        for q in self._lanes:
            if not any(i.deadline <= now or i.finished for i in q):
                continue
            keep: deque[Outgoing] = deque()
            for i in q:
                if i.finished:
                    continue
                if i.deadline <= now:
                    self._detach(i)
                    out.append(i)
                else:
                    keep.append(i)
            q.clear()
            q.extend(keep)
        return out

    def earliest_deadline(self) -> float | None:
        """The head items' earliest deadline (a head may be a cancelled tombstone: then the
        caller's timer fires early and finds nothing, which is harmless)."""
        return min((q[0].deadline for q in self._lanes if q), default=None)
