"""A componentize-py process (examples/kv, the key-value example package) built during the
test run from its Python source against wit/, run by the kernel on one real in-process node
and used from another over the network."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hnet import Address, ProcessId, ResponseMessage, SendError
from kernel.api import OnExitNone, OnExitRestart
from kernel.kernel import Kernel
from kernel.wasm import CompiledComponent, WasmHost, WasmRuntime
from tests.test_kernel_support import kernels, until
from tools.build_c_component import wasm_tools
from tools.build_examples import EXAMPLES, package_id, read_manifest
from tools.build_py_component import build_py_component, componentize_py

KV = EXAMPLES / "kv"
ALICE, BOB = "alice.os", "bob.os"


@pytest.fixture(scope="session")
def kv_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/kv/kv/app.py built once per session (componentize-py: 10-20 s)."""
    if componentize_py() is None:
        pytest.skip("componentize-py is not installed (pip install componentize-py)")
    out = tmp_path_factory.mktemp("kv") / "kv.wasm"
    return build_py_component(KV / "kv" / "app.py", out)


@pytest.fixture(scope="module")
def kv_host(
    kv_wasm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WasmHost, CompiledComponent]]:
    """One host for this module, the kv component compiled once (about 15 s: 18 MB)."""
    host = WasmHost(cache_dir=tmp_path_factory.mktemp("wasm-cache"))
    try:
        yield host, host.load(kv_wasm.read_bytes())
    finally:
        host.close()


async def call(k: Kernel, target: Address, body: Any, timeout: float = 20) -> Any:
    reply = await k.request(target, json.dumps(body).encode(), timeout=timeout)
    assert not isinstance(reply, SendError), reply
    assert isinstance(reply.message, ResponseMessage)
    return json.loads(reply.message.response.body)


def test_kv_component_imports_wit(kv_wasm: Path) -> None:
    """The build really is a process-v1 component importing standard and WASI p2."""
    tool = wasm_tools()
    assert tool is not None
    wit = subprocess.run(
        [tool, "component", "wit", str(kv_wasm)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "import hyperware:process/standard@1.0.0;" in wit
    assert "export init: func(our: string);" in wit
    assert "import wasi:cli/stdout@0.2" in wit


async def test_kv_across_two_nodes(
    tmp_path: Path, kv_host: tuple[WasmHost, CompiledComponent]
) -> None:
    host, compiled = kv_host
    (entry,) = read_manifest(KV)
    package, publisher = package_id(KV)
    pid = ProcessId(entry["process_name"], package, publisher)
    target = Address(ALICE, pid)
    made: list[WasmRuntime] = []

    def make() -> WasmRuntime:
        rt = host.runtime(compiled)
        made.append(rt)
        return rt

    async def spawn(k: Kernel) -> None:
        got = await k.spawn(
            pid,
            runtime=make,
            wasm_path=entry["process_wasm_path"],
            on_exit=OnExitRestart() if entry["on_exit"] == "Restart" else OnExitNone(),
            networking=entry["request_networking"],
            public=entry["public"],
        )
        assert got == pid

    async with kernels(tmp_path, ALICE, BOB) as (ka, kb):
        await spawn(ka)
        assert await call(kb, target, {"Get": "colour"}) == {"Value": None}
        assert await call(kb, target, {"Set": ["colour", "blue"]}) == {"Ok": None}
        assert await call(kb, target, {"Set": ["n", [1, {"x": 2}]]}) == {"Ok": None}
        assert await call(kb, target, {"Get": "colour"}) == {"Value": "blue"}
        assert await call(kb, target, {"Get": "n"}) == {"Value": [1, {"x": 2}]}
        assert await call(kb, target, {"Delete": "n"}) == {"Ok": None}
        assert await call(kb, target, {"Keys": None}) == {"Keys": ["colour"]}
        assert "Err" in await call(kb, target, {"Frobnicate": 1})
        assert "Err" in await call(kb, target, "not an object")
        assert "up with 0 keys" in ka.output(pid)

        # the state outlives the process: kill it, start it again, the key is still there
        assert await ka.kill(pid)
        await until(lambda: all(rt.wait(0) for rt in made), what="the old runtime ended")
        await spawn(ka)
        assert len(made) == 2
        assert await call(kb, target, {"Get": "colour"}) == {"Value": "blue"}
        assert await call(kb, target, {"Keys": None}) == {"Keys": ["colour"]}
        assert "up with 1 keys" in ka.output(pid)
