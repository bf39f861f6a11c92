"""Local processes registered with a node: where messages for ``process:package:publisher`` go.

A registration has a handler (an async callable) and a bounded mailbox drained by one task
that calls the handler once per delivery, in order. Deliveries come from receive paths, which
never wait: a full mailbox (``limits.INBOX_SIZE`` messages or ``limits.INBOX_BYTES``) drops the
delivery and logs it — the remote sender of a request then times out, as with the reference's
kernel, which drops what a process cannot take. A handler that raises is logged (a bug of that
process) and the mailbox goes on.

What a handler receives is a :data:`Delivery`: an :class:`Incoming` message, or a
:class:`Failed` report that a message this process sent was not delivered (SendError Offline
or Timeout, docs/protocol.md §5).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hnet import limits
from hnet.core.wire import KernelMessage, ProcessId, Request, SendError
from hnet.log import get_logger

log = get_logger("processes")

__all__ = ["Delivery", "Failed", "Handler", "Incoming", "ProcessTable", "Registration"]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message for the process, from the network (``via`` its transport) or from us."""

    message: KernelMessage
    via: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    """A message the process sent was not delivered."""

    error: SendError
    #: the id of the message that failed (a request's id: match it to the request)
    id: int
    reason: str


Delivery = Incoming | Failed
Handler = Callable[[Delivery], Awaitable[None]]


#: What one delivery costs besides its bodies (objects, addresses): a rough, fixed charge.
_OVERHEAD = 256


def _size(d: Delivery) -> int:
    """Bytes a delivery is charged in a mailbox: its body and blob, plus overhead."""
    km = d.message if isinstance(d, Incoming) else None
    if km is None:
        return _OVERHEAD
    m = km.message
    n = len(m.body) if isinstance(m, Request) else len(m.response.body)
    if km.lazy_load_blob is not None:
        n += len(km.lazy_load_blob.bytes)
    return n + _OVERHEAD


class Registration:
    """One registered process. :meth:`close` unregisters it."""

    def __init__(self, table: ProcessTable, process: ProcessId, handler: Handler) -> None:
        self.process = process
        self._table = table
        self._handler = handler
        self._box: deque[tuple[Delivery, int]] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.dropped = 0
        self.delivered = 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"process {process}")

    def put(self, d: Delivery) -> bool:
        """Queue ``d`` for the handler without waiting; False (and logged) if full."""
        n = _size(d)
        if len(self._box) >= limits.INBOX_SIZE or self._bytes + n > limits.INBOX_BYTES:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th...: a flood
                # of drops must not become a flood of log lines
                log.warning(
                    "process mailbox full; deliveries dropped",
                    process=str(self.process),
                    dropped=self.dropped,
                )
            return False
        self._box.append((d, n))
        self._bytes += n
        self._wake.set()
        return True

    async def _run(self) -> None:
        while True:
            if not self._box:
                self._wake.clear()
                await self._wake.wait()
                continue
            d, n = self._box.popleft()
            self._bytes -= n
            try:
                await self._handler(d)
                self.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("process handler failed", process=str(self.process))

    async def close(self) -> None:
        """Unregister; what is still in the mailbox is dropped."""
        self._table._remove(self)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class ProcessTable:
    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def register(self, process: str | ProcessId, handler: Handler) -> Registration:
        pid = process if isinstance(process, ProcessId) else ProcessId.parse(process)
        key = str(pid)
        if key in self._by_id:
            raise ValueError(f"process {key} is already registered")
        reg = Registration(self, pid, handler)
        self._by_id[key] = reg
        return reg

    def get(self, process: str) -> Registration | None:
        return self._by_id.get(process)

    def _remove(self, reg: Registration) -> None:
        if self._by_id.get(str(reg.process)) is reg:
            del self._by_id[str(reg.process)]

    async def aclose(self) -> None:
        for reg in list(self._by_id.values()):
            await reg.close()
