"""A QUIC connection's flush scheduling: a write (flush_soon) is never held back by a pending
delayed flush (flush_later, up to QUIC_ACK_DELAY), under asyncio's loop and uvloop alike.

uvloop's handles are not ``asyncio.TimerHandle`` instances; telling the two kinds of pending
flush apart by type left every write that followed a delivered message waiting for the
delayed flush under uvloop (a 64 B round trip over aioquic took ~1.7 ms instead of ~0.7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from hnet import limits
from hnet.transport.quic.transport import _Driver


def _loops() -> list[tuple[str, Callable[[Coroutine[Any, Any, None]], None]]]:
    out: list[tuple[str, Callable[[Coroutine[Any, Any, None]], None]]] = [("asyncio", asyncio.run)]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return out
    out.append(("uvloop", uvloop.run))
    return out


@pytest.mark.parametrize("run", [r for _, r in _loops()], ids=[n for n, _ in _loops()])
def test_flush_soon_overrides_a_pending_flush_later(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        drv = _Driver(core=None, send=lambda data, addr: None)  # type: ignore[arg-type]
        flushes: list[float] = []

        def flush() -> None:  # what _Driver._flush does with the schedule, without a core
            drv._flush_handle = None
            flushes.append(loop.time())

        drv.flush = flush  # type: ignore[method-assign]
        start = loop.time()
        drv.flush_later()  # a message was delivered: its acknowledgement may wait
        drv.flush_soon()  # then a write: it must go now
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(flushes) == 1 and flushes[0] - start < limits.QUIC_ACK_DELAY / 2
        await asyncio.sleep(limits.QUIC_ACK_DELAY * 3)
        assert len(flushes) == 1  # the delayed flush was replaced, not run as well
        drv.flush_later()
        drv.flush_later()  # one delayed flush at a time
        await asyncio.sleep(limits.QUIC_ACK_DELAY * 3)
        assert len(flushes) == 2

    run(main())
