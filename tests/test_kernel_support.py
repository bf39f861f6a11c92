"""Helpers for the kernel tests (no tests here): Python test processes, a kernel on a real
in-process node, a thread-safe log to await."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from hnet import Address, ProcessId, Request, Response
from hnet.testing.harness import Net
from kernel.api import ProcessContext, ProcessRuntime
from kernel.kernel import Kernel


class Py:
    """A ProcessRuntime in Python: ``fn(ctx)`` on the process thread. Blocking ctx calls raise
    ProcessStopped once the kernel stops the process, which ends ``fn``."""

    def __init__(self, fn: Callable[[ProcessContext], None]) -> None:
        self.fn = fn
        self.interrupted = threading.Event()

    def run(self, ctx: ProcessContext) -> None:
        self.fn(ctx)

    def interrupt(self) -> None:
        self.interrupted.set()


def py(fn: Callable[[ProcessContext], None]) -> Callable[[], ProcessRuntime]:
    return lambda: Py(fn)


def req(
    body: bytes = b"",
    expects: int | None = None,
    inherit: bool = False,
    caps: tuple[Any, ...] = (),
    metadata: str | None = None,
) -> Request:
    return Request(
        inherit=inherit, expects_response=expects, body=body, metadata=metadata, capabilities=caps
    )


def resp(body: bytes = b"", inherit: bool = False, caps: tuple[Any, ...] = ()) -> Response:
    return Response(inherit=inherit, body=body, metadata=None, capabilities=caps)


def pid(s: str) -> ProcessId:
    return ProcessId.parse(s)


def addr(s: str) -> Address:
    return Address.parse(s)


class Log:
    """Appended to from process threads; awaited from the test."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._changed.set)

    async def wait(
        self, pred: Callable[[list[Any]], bool] | None = None, *, n: int = 1, timeout: float = 5.0
    ) -> list[Any]:
        """Until ``pred(items)`` (default: at least ``n`` items); AssertionError on timeout."""
        check = pred or (lambda items: len(items) >= n)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with self._lock:
                        snapshot = list(self.items)
                    if check(snapshot):
                        return snapshot
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"log condition not reached in {timeout} s: {self.items}"
            ) from None


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Bounded wait for kernel-side state (checked each loop turn, at most ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None


@asynccontextmanager
async def kernels(tmp_path: Path, *names: str, **kw: Any) -> AsyncIterator[list[Kernel]]:
    """A kernel on a real in-process node for each name, all on one registry."""
    net = Net(tmp_path)
    made: list[Kernel] = []
    try:
        for name in names:
            net.register(name)
        for name in names:
            node = await net.node(name)
            k = Kernel(node, tmp_path / name, **kw)
            await k.start()
            made.append(k)
        yield made
    finally:
        for k in made:
            async with asyncio.timeout(10):
                await k.aclose()
        await net.close()


def echo(ctx: ProcessContext) -> None:
    """Answer each request that awaits a reply with ``echo:`` + its body."""
    while True:
        r = ctx.receive()
        if isinstance(r, tuple) and isinstance(r[1], Request):
            ctx.send_response(resp(b"echo:" + r[1].body), None)
