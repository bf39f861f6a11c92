"""Outstanding requests of local callers: ids, deadlines and their outcome.

A request either gets its response (matched by id and by the node it was sent to) or its
sender is told why not: ``SendFailed`` with Offline or Timeout.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass

from hnet.core.wire import KernelMessage, SendErrorKind


class SendFailed(Exception):
    def __init__(self, kind: SendErrorKind, reason: str) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reply:
    message: KernelMessage
    via: str | None
    rtt: float


@dataclass(slots=True)
class _Pending:
    target_node: str
    sent_at: float
    future: asyncio.Future[Reply]


class RequestTracker:
    def __init__(self, max_pending: int = 65_536) -> None:
        self._pending: dict[int, _Pending] = {}
        self._max = max_pending
        self._high_water = 0
        # Ids only need to be unique among our outstanding requests and not guessable in
        # advance by a peer; a PRNG seeded from the OS is enough and far cheaper per call.
        self._ids = random.Random(secrets.randbits(128))

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def high_water(self) -> int:
        """The most requests that were outstanding at once since the tracker was made."""
        return self._high_water

    def open(
        self, target_node: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[int, asyncio.Future[Reply]]:
        """A new request id and the future its outcome goes to; ``loop``: the running loop,
        when the caller has it (CPython 3.11's ``get_running_loop`` costs a system call)."""
        if len(self._pending) >= self._max:
            raise SendFailed(SendErrorKind.OFFLINE, "too many outstanding requests")
        while True:
            rid = self._ids.getrandbits(64)
            if rid not in self._pending:
                break
        fut: asyncio.Future[Reply] = (loop or asyncio.get_running_loop()).create_future()
        self._pending[rid] = _Pending(target_node, time.perf_counter(), fut)
        self._high_water = max(self._high_water, len(self._pending))
        return rid, fut

    def close(self, rid: int) -> None:
        self._pending.pop(rid, None)

    def resolve(self, km: KernelMessage, via: str | None) -> bool:
        """Deliver a response; False if nothing waits for it."""
        p = self._pending.get(km.id)
        if p is None or p.target_node != km.source.node or p.future.done():
            return False
        p.future.set_result(Reply(km, via, time.perf_counter() - p.sent_at))
        return True

    def fail(self, rid: int, kind: SendErrorKind, reason: str) -> bool:
        p = self._pending.get(rid)
        if p is None or p.future.done():
            return False
        p.future.set_exception(SendFailed(kind, reason))
        return True

    def expire(self, rid: int, timeout: float) -> None:
        """The request's deadline passed (a timer calls this): Timeout, if still waiting."""
        self.fail(rid, SendErrorKind.TIMEOUT, f"no response within {timeout:g} s")

    def fail_all(self, reason: str) -> None:
        for rid in list(self._pending):
            self.fail(rid, SendErrorKind.OFFLINE, reason)
