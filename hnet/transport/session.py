"""The one session abstraction every transport yields, with its send path.

A Session is an authenticated, encrypted channel to one named peer that moves serialized
KernelMessages. Transports implement three small things: ``_read_loop`` (read, decrypt,
hand each message to ``deliver``, which never blocks), ``_write`` (one message to the socket,
waiting only through :meth:`Session._wait_progress`) and ``_close_transport``.

The base class owns the send path (docs/architecture.md, "The send path"; wireguard-go's
split of sending from receiving): a bounded :class:`~hnet.core.sendqueue.SendQueue` drained by
the session's own writer task(s), so a receive loop never waits on a network write, a peer
that stops reading stalls only its own writer, and every blocked write has a deadline
(:data:`~hnet.limits.WRITE_STALL_TIMEOUT`; queued messages past their own deadline are failed
while the writer waits).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from hnet import limits
from hnet.core.sendqueue import ByteBudget, Outgoing, OutgoingState, SendQueue
from hnet.core.wire import SendErrorKind
from hnet.log import get_logger

log = get_logger("session")

#: (session, plaintext message) -> None. Called on the receive path: must not block. (A
#: standalone user of :meth:`Session.run` may return an awaitable instead: reading then waits
#: for it, which is backpressure on the peer; a node never does this.)
Deliver = Callable[["Session", bytes], "Awaitable[None] | None"]
#: Called once when the session has closed, with what was still queued (unwritten).
OnClosed = Callable[["Session", list[Outgoing]], None]


class SessionClosed(Exception):
    """The session is closed; the message was not sent."""


class SessionError(Exception):
    """The peer broke the protocol; the session is closed (a remote fault)."""


#: name -> its networking key, looked up however long it takes (the caller's deadline bounds it)
ResolveKey = Callable[[str], Awaitable["bytes | None"]]


class Session(abc.ABC):
    """An established session with one peer."""

    transport: str = "?"
    #: writer lanes: 1 keeps every message in order; QUIC uses 2 (small never behind bulk)
    lanes: int = 1
    #: with 2 lanes, the largest message of the small lane
    small_size: int = 0

    def __init__(
        self, *, peer_name: str, initiator: bool, proxy_request: bool, remote: str
    ) -> None:
        self.peer_name = peer_name
        self.initiator = initiator
        #: the peer asked us to route for it (only meaningful when it initiated)
        self.proxy_request = proxy_request
        self.remote = remote
        self.created = time.monotonic()
        self.last_activity = self.created
        self.messages_in = 0
        self.messages_out = 0
        self.closed = False
        #: replaced by a newer session: no more sends, still read until the grace period ends
        self.retired = False
        self._retire_timer: asyncio.TimerHandle | None = None
        self.close_reason = ""
        #: the router this session runs through (routed connections), else None
        self.router: str | None = None
        self.queue: SendQueue | None = None
        self._on_closed: OnClosed | None = None
        self._wake: list[asyncio.Event] = []
        #: per lane: its writer holds a message (so a new one must queue behind it)
        self._busy: list[bool] = [False] * self.lanes
        self._tasks: list[asyncio.Task[None]] = []
        #: per lane: its writer task, created when the lane first queues a message
        self._writers: list[asyncio.Task[None] | None] = [None] * self.lanes
        self._closed_reported = False
        #: standalone use: set when queued bytes are given back
        self._room = asyncio.Event()
        #: started by a peer table (:meth:`start`), whose ``deliver`` never returns an
        #: awaitable: a transport may then deliver from its own callback instead of the reader
        #: task (TCP's _DirectReader, QUIC's _deliver_now)
        self._direct = False

    # --- life cycle ------------------------------------------------------------------------

    def start(
        self,
        *,
        queue: SendQueue,
        deliver: Deliver,
        on_closed: OnClosed,
        idle_timeout: float,
    ) -> None:
        """Start reading and writing. ``queue`` must have :attr:`lanes` lanes."""
        self._direct = True
        if self.queue is not None:
            raise RuntimeError("session already started")
        if queue.lanes != self.lanes:
            raise ValueError(f"{self.transport} sessions write {self.lanes} lane(s)")
        self.queue = queue
        self._on_closed = on_closed
        self._wake = [asyncio.Event() for _ in range(self.lanes)]
        queue.on_ready = self._ready
        loop = asyncio.get_running_loop()
        reader = loop.create_task(
            self._read_task(deliver, idle_timeout), name=f"read {self.describe()}"
        )
        self._tasks = [reader]
        if self.closed:  # closed between the handshake and now
            self._report_closed()
            return
        for lane in range(self.lanes):  # a queue handed over with messages in it
            if queue.lane_len(lane):
                self._ready(lane)

    def submit(self, item: Outgoing, headroom: int = 0) -> bool:
        """Queue ``item`` for the writer, or write it at once when its lane is idle and the
        transport takes it without waiting (the common case: no task switch, same order).
        False: no room in the queue (the caller waits or fails it)."""
        queue = self.queue
        assert queue is not None, "session not started"
        lane = queue.lane_of(item)
        if (
            not self._busy[lane]
            and not queue.lane_len(lane)
            and not self.closed
            and self._write_nowait(item.data)
        ):
            self.messages_out += 1
            self.touch()
            self._written(item)
            return True
        return queue.push(item, headroom=headroom)

    def _written(self, item: Outgoing) -> None:
        """``item`` was just written (by :meth:`_write` or :meth:`_write_nowait`). A transport
        that can still tell its sender it was lost (a circuit, when its hop dies) overrides it."""
        item.written()

    def _write_nowait(self, data: bytes) -> bool:
        """Write one message if the transport takes it now without blocking; False if not
        (then it is queued for the writer). Transports override this; default: never."""
        return False

    def new_queue(
        self, max_bytes: int = limits.SEND_QUEUE_BYTES, budget: ByteBudget | None = None
    ) -> SendQueue:
        """A send queue shaped for this session (its lanes, its small-message size), bounded
        to ``max_bytes`` and charging ``budget`` (default: a budget of its own, a node's
        size), for :meth:`start`."""
        if budget is None:
            budget = ByteBudget(limits.NODE_SEND_BUDGET)
        return SendQueue(max_bytes, budget, lanes=self.lanes, small_size=self.small_size)

    # --- standalone use (tests, benchmarks, tools): no node, no peer table ------------------

    def _ensure_writers(self) -> SendQueue:
        if self.queue is None:
            budget = ByteBudget(limits.NODE_SEND_BUDGET)
            budget.on_release = self._room.set
            queue = self.new_queue(budget=budget)
            self.queue = queue
            self._wake = [asyncio.Event() for _ in range(self.lanes)]
            queue.on_ready = self._ready
        return self.queue

    async def send(self, data: bytes, timeout: float = limits.DEFAULT_SEND_TIMEOUT) -> None:
        """Standalone use: send one message, waiting until the transport has taken it.
        Raises SessionClosed if it cannot be sent, ValueError for a bad size."""
        if not 0 < len(data) <= limits.MESSAGE_MAX_SIZE:
            raise ValueError(f"message of {len(data)} bytes (must be 1..{limits.MESSAGE_MAX_SIZE})")
        if self.closed:
            raise SessionClosed(self.close_reason or "closed")
        queue = self.queue if self.queue is not None else self._ensure_writers()
        lane = 0 if self.lanes == 1 or len(data) <= self.small_size else 1
        if not self._busy[lane] and not queue.lane_len(lane) and self._write_nowait(data):
            self.messages_out += 1  # written at once: the common case, nothing to track
            self.last_activity = time.monotonic()
            return
        item = Outgoing(data, time.monotonic() + timeout, None)
        if self.submit(item) and item.finished:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def failed(_item: Outgoing, _kind: SendErrorKind, reason: str) -> None:
            if not done.done():
                done.set_exception(SessionClosed(reason))

        def written(_item: Outgoing) -> None:
            if not done.done():
                done.set_result(None)

        item.on_fail, item.on_written = failed, written
        try:
            async with asyncio.timeout(timeout):
                while item.state is OutgoingState.QUEUED and item._queue is None:
                    # not queued yet: no room; wait for some
                    if self.closed:
                        raise SessionClosed(self.close_reason or "closed")
                    self._room.clear()
                    await self._room.wait()
                    self.submit(item)
                await done
        finally:
            if not item.finished:
                item.fail(SendErrorKind.TIMEOUT, "cancelled")

    async def run(self, deliver: Deliver, idle_timeout: float) -> None:
        """Standalone use: read and deliver until the peer closes (return), breaks the
        protocol (SessionError, raised after closing) or goes idle."""
        self._ensure_writers()
        watchdog = IdleWatchdog(self, idle_timeout)
        try:
            await self._read_loop(deliver)
        except SessionError as e:
            self.abort(f"protocol error: {e}")
            raise
        except (ConnectionError, OSError) as e:
            self.abort(f"read failed: {e}")
        finally:
            watchdog.cancel()
            self.abort(self.close_reason or "closed")

    def _ready(self, lane: int) -> None:
        """A lane's queue has a message: wake its writer, starting it on first use (most
        sessions write everything at once through :meth:`_write_nowait`, so most never
        need a writer task at all)."""
        if not self._wake or self.closed:
            return
        if self._writers[lane] is None:
            task = asyncio.get_running_loop().create_task(
                self._write_task(lane), name=f"write {self.describe()} lane {lane}"
            )
            self._writers[lane] = task
            self._tasks.append(task)
        self._wake[lane].set()

    async def wait_closed(self) -> None:
        """Until the reader and writers have ended (after :meth:`abort`, bounded by it)."""
        if self._tasks:
            await asyncio.wait(self._tasks)

    def abort(self, reason: str) -> None:
        """Close now, without waiting (idempotent). Unwritten messages go to ``on_closed``."""
        self._mark_closed(reason)
        self._close_transport()
        self._finish()

    def _closed_by_transport(self, reason: str) -> None:
        """The transport itself has closed (QUIC reports it): the same as :meth:`abort`
        without closing the transport again."""
        self._mark_closed(reason)
        self._finish()

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        if self._retire_timer is not None:
            self._retire_timer.cancel()
            self._retire_timer = None

    def _finish(self) -> None:
        for w in self._wake:
            w.set()
        current = asyncio.current_task() if _in_loop() else None
        for t in self._tasks:
            if t is not current and not t.done():
                t.cancel()
        self._report_closed()

    def _report_closed(self) -> None:
        if self._closed_reported or self.queue is None:
            return
        self._closed_reported = True
        left = self.queue.take_all()
        hook, self._on_closed = self._on_closed, None
        if hook is None:  # standalone use: nobody to hand them to
            for item in left:
                item.fail(SendErrorKind.OFFLINE, self.close_reason or "closed")
            return
        try:
            hook(self, left)
        except Exception as e:  # a bug of ours: do not let it escape into a transport callback
            log.exception("on_closed failed", session=self.describe(), error=repr(e))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def retire(self, grace: float) -> None:
        """Stop using this session for sends but keep reading what is already in flight;
        close it after ``grace`` seconds (or sooner, when the peer closes it)."""
        if self.closed or self.retired:
            return
        self.retired = True
        self._retire_timer = asyncio.get_running_loop().call_later(
            grace, self.abort, "replaced by a new session"
        )

    def unretire(self) -> None:
        """Make a retired session usable again (the peer chose it, see the peer table)."""
        if self._retire_timer is not None:
            self._retire_timer.cancel()
            self._retire_timer = None
        self.retired = False

    def describe(self) -> str:
        return f"{self.peer_name} via {self.transport} ({self.remote})"

    # --- the reader ------------------------------------------------------------------------

    async def _read_task(self, deliver: Deliver, idle_timeout: float) -> None:
        watchdog = IdleWatchdog(self, idle_timeout)
        try:
            await self._read_loop(deliver)
        except SessionError as e:
            log.warning("session closed: protocol error", peer=self.peer_name, reason=str(e))
            self.abort(f"protocol error: {e}")
        except (ConnectionError, OSError) as e:
            self.abort(f"read failed: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug of ours, not the peer's fault: say so
            log.exception("session reader failed (local error)", peer=self.peer_name)
            self.abort(f"local error: {e!r}")
        finally:
            watchdog.cancel()
            self.abort(self.close_reason or "closed")

    @abc.abstractmethod
    async def _read_loop(self, deliver: Deliver) -> None:
        """Read until the peer closes (return) or breaks the protocol (SessionError)."""

    # --- the writer ------------------------------------------------------------------------

    async def _write_task(self, lane: int) -> None:
        assert self.queue is not None
        queue = self.queue
        wake = self._wake[lane]
        busy = self._busy
        item: Outgoing | None = None
        try:
            while not self.closed:
                item = queue.pop(lane)
                if item is None:
                    wake.clear()
                    await wake.wait()
                    continue
                if item.deadline <= time.monotonic():
                    item.fail(SendErrorKind.TIMEOUT, "not sent within its deadline")
                    item = None
                    continue
                busy[lane] = True
                await self._write(item.data)
                busy[lane] = False
                self.messages_out += 1
                self.touch()
                self._written(item)
                item = None
        except SessionClosed as e:
            self.abort(self.close_reason or f"closed: {e}")
        except (ConnectionError, OSError) as e:
            self.abort(f"write failed: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug of ours (e.g. a framing error on our own message)
            log.exception("session writer failed (local error)", peer=self.peer_name)
            self.abort(f"local error: {e!r}")
        finally:
            if item is not None:
                item.fail(SendErrorKind.OFFLINE, f"session lost: {self.close_reason or 'closed'}")

    @abc.abstractmethod
    async def _write(self, data: bytes) -> None:
        """Write one message. Block only through :meth:`_wait_progress`. Raise SessionClosed
        if the session is closed."""

    @abc.abstractmethod
    def _close_transport(self) -> None:
        """Close the underlying connection now (idempotent, no waiting)."""

    async def _wait_progress(
        self, wait: Callable[[], Awaitable[None]], progress: Callable[[], int]
    ) -> None:
        """Await ``wait()`` (a drain, credit) while the writer is blocked, with deadlines.

        Every :data:`~hnet.limits.SEND_SWEEP_INTERVAL` the queue's expired messages are failed
        (Timeout). ``progress()`` is a number that changes whenever the transport moves data
        (bytes still buffered, credit used); with no change for
        :data:`~hnet.limits.WRITE_STALL_TIMEOUT` the peer is taken to have stopped reading and
        the session is closed.
        """
        last = progress()
        last_change = time.monotonic()
        while True:
            if self.closed:
                raise SessionClosed(self.close_reason or "closed")
            try:
                async with asyncio.timeout(limits.SEND_SWEEP_INTERVAL):
                    await wait()
                return
            except TimeoutError:
                pass
            now = time.monotonic()
            self._sweep(now)
            p = progress()
            if p != last:
                last, last_change = p, now
            elif now - last_change >= limits.WRITE_STALL_TIMEOUT:
                self.abort(f"write stalled for {limits.WRITE_STALL_TIMEOUT:g} s")
                raise SessionClosed(self.close_reason)

    def _sweep(self, now: float) -> None:
        if self.queue is None:
            return
        for item in self.queue.expire(now):
            item.fail(SendErrorKind.TIMEOUT, "not sent within its deadline (peer not reading)")


def _in_loop() -> bool:
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return True
    return False


class IdleWatchdog:
    """Aborts a session once it has had no traffic either way for ``idle_timeout`` seconds.

    One timer per session, re-armed only when it fires: the per-message cost is the
    ``touch()`` timestamp, not a timer per read.
    """

    def __init__(self, session: Session, idle_timeout: float) -> None:
        self._session = session
        self._timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm(idle_timeout)

    def _arm(self, delay: float) -> None:
        self._handle = self._loop.call_later(max(delay, 0.001), self._fire)

    def _fire(self) -> None:
        s = self._session
        if s.closed:
            return
        remaining = s.last_activity + self._timeout - time.monotonic()
        if remaining <= 0:
            s.abort("idle")
        else:
            self._arm(remaining)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
