"""Driving a session as a node's peer table drives it, for the benchmarks.

A node never uses a session's standalone API (``Session.run`` + ``Session.send``, a reader task
per session and a wait per send). Its peer table starts each session with
:meth:`Session.start` (a send queue and a plain ``deliver``, which TCP and QUIC call from the
transport's own callback) and sends with :meth:`Session.submit`, which writes a message at once
when the transport takes it and queues it otherwise. :func:`start` and :class:`Sender` do the
same for a benchmark's sessions, so a line can measure the path every node message takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hnet.core.sendqueue import Outgoing
from hnet.core.wire import SendErrorKind
from hnet.transport.session import Session

#: Idle timeout of a driven benchmark session: it is never idle, it only has to be long.
IDLE = 3600.0
#: A message must be handed to the transport within this many seconds, or it fails.
SEND_DEADLINE = 120.0


def start(
    session: Session,
    deliver: Callable[[Session, bytes], None],
    on_closed: Callable[[Session], None],
) -> None:
    """Start ``session`` with its own send queue and budget (a peer table's sizes). When it
    closes, the messages it had not written fail (a peer table would move them to another
    session; here there is none), so no sender waits for a message that is gone."""

    def closed(s: Session, left: list[Outgoing]) -> None:
        for item in left:
            item.fail(SendErrorKind.OFFLINE, s.close_reason or "session closed")
        on_closed(s)

    session.start(
        queue=session.new_queue(),
        deliver=deliver,
        on_closed=closed,
        idle_timeout=IDLE,
    )


class Sender:
    """Submits messages to one started session; a message that fails is reported to
    ``on_fail`` (with the reason), as a node reports a SendError."""

    def __init__(self, session: Session, on_fail: Callable[[str], None]) -> None:
        self.session = session
        self.on_fail = on_fail

    def _submit(self, data: bytes, done: asyncio.Future[None] | None) -> None:
        def failed(_item: Outgoing, kind: SendErrorKind, reason: str) -> None:
            if done is not None and not done.done():
                done.set_result(None)
            self.on_fail(f"send failed ({kind.name}): {reason}")

        def written(_item: Outgoing) -> None:
            if done is not None and not done.done():
                done.set_result(None)

        item = Outgoing(
            data,
            time.monotonic() + SEND_DEADLINE,
            None,
            on_fail=failed,
            on_written=written if done is not None else None,
        )
        if not self.session.submit(item):
            item.fail(SendErrorKind.OFFLINE, f"{self.session.describe()}: no room in its queue")

    def submit(self, data: bytes) -> None:
        """Submit ``data`` now: written at once, or queued for the session's writer."""
        self._submit(data, None)

    async def submit_and_wait(self, data: bytes) -> None:
        """:meth:`submit`, then wait until the transport has taken the message or it failed
        (a sender of large messages back to back needs this backpressure: the queue is
        bounded in bytes), at most :data:`SEND_DEADLINE` seconds."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(data, done)
        try:
            async with asyncio.timeout(SEND_DEADLINE):
                await done
        except TimeoutError:
            self.on_fail(f"not taken by the transport within {SEND_DEADLINE:g} s")
