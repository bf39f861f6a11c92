"""A router's byte pipes over a transport-neutral stream interface (docs/protocol.md §7).

A router pairs two connections and copies what arrives on one to the other, both ways. It
never sees plaintext; the Noise session runs end to end through the pipe. When either side
closes, errs or the pipe goes idle, both ends are closed. :class:`PipeEnd` is all a pipe needs
of a connection, so a new transport (routing over QUIC) adds an implementation of it, not a
copy of the router; the socket implementations live in :mod:`hnet.transport.pipes`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hnet.core.passthroughs import PipeEnd, PipeError

__all__ = ["OpenEnd", "PipeEnd", "PipeError", "pipe"]


#: (kind, host, port) -> a raw connection of that kind for a pipe (the caller bounds the time)
OpenEnd = Callable[[str, str, int], Awaitable[PipeEnd]]


async def pipe(a: PipeEnd, b: PipeEnd, idle_timeout: float) -> str:
    """Copy ``a`` <-> ``b`` until one side closes or fails, or nothing moves for
    ``idle_timeout`` seconds; close both and return why it ended."""
    last = time.monotonic()

    async def copy(src: PipeEnd, dst: PipeEnd) -> str:
        nonlocal last
        try:
            while True:
                data = await src.recv()
                if data is None:
                    return f"{src.remote} closed"
                await dst.send(data)
                last = time.monotonic()
        except PipeError as e:
            return str(e)

    tasks = {asyncio.create_task(copy(a, b)), asyncio.create_task(copy(b, a))}
    try:
        while True:
            remaining = last + idle_timeout - time.monotonic()
            if remaining <= 0:
                return "idle"
            done, _ = await asyncio.wait(
                tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                exc = t.exception()
                return t.result() if exc is None else f"pipe failed: {exc!r}"
    finally:
        a.close()
        b.close()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
