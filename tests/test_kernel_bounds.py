"""A process cannot hold unbounded state in the kernel: requests awaiting responses are bounded
(one more crashes that process alone, with the reason in its output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hnet import Address, ProcessId, SendError
from kernel import bridge
from kernel.api import OnExitRestart, ProcessContext
from tests.test_kernel_support import echo, kernels, py, req, until

ALICE = "alice.os"


def on(name: str) -> Address:
    return Address(ALICE, ProcessId(name, "test", "sys"))


def flooder(ctx: ProcessContext) -> None:
    ctx.receive()  # go
    for i in range(50):  # requests to a sink that never answers, each awaiting 1 hour
        ctx.send_request(on("sink"), req(b"x", expects=3600), bytes([i]), None)
    ctx.receive()


def sink(ctx: ProcessContext) -> None:
    while True:
        ctx.receive()


async def test_too_many_awaited_requests_crash_only_that_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge, "MAX_CONTEXTS", 10)
    async with kernels(tmp_path, ALICE, restart_unit=100.0) as (k,):  # stays down a while
        await k.spawn("sink:test:sys", runtime=py(sink), public=True)
        await k.spawn("echo:test:sys", runtime=py(echo), public=True)
        await k.spawn("flood:test:sys", runtime=py(flooder), public=True, on_exit=OnExitRestart())
        await k.send(on("flood"), b"go")

        def crashed() -> bool:
            return any(
                p.process == "flood:test:sys" and "awaiting their responses" in p.last_exit
                for p in k.ps()
            )

        await until(crashed, timeout=10, what="the flooder crashing")
        reply = await k.request(on("echo"), b"ok", timeout=5)
        assert not isinstance(reply, SendError)
