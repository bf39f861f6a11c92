"""A C process (examples/echo: wasi-libc + the WASI preview1 adapter, so it imports WASI
preview 2 like reference-built processes), built during the test run and run by the kernel:
a 100 kB body round-trips intact across two real in-process nodes, its printf reaches the
captured stdout. Also: the example packages' layout."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet import Address, ProcessId, ResponseMessage, SendError, SendErrorKind
from kernel.wasm import CompiledComponent, WasmHost, WasmRuntime
from tests.test_kernel_support import kernels
from tools.build_c_component import build_c_echo, missing, wasm_tools
from tools.build_examples import EXAMPLES, build_package, package_id, read_manifest

ALICE, BOB = "alice.os", "bob.os"
FIELDS = {
    "process_name",
    "process_wasm_path",
    "on_exit",
    "request_networking",
    "request_capabilities",
    "grant_capabilities",
    "public",
}


@pytest.fixture(scope="session")
def c_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = missing()
    if why is not None:
        pytest.skip(f"cannot build C components: missing {why}")
    return build_c_echo(tmp_path_factory.mktemp("c-echo"))


@pytest.fixture(scope="module")
def c_host(c_echo: Path) -> Iterator[tuple[WasmHost, CompiledComponent]]:
    host = WasmHost()
    try:
        yield host, host.load(c_echo.read_bytes())
    finally:
        host.close()


def test_c_echo_imports_wasi_p2(c_echo: Path) -> None:
    tool = wasm_tools()
    assert tool is not None
    wit = subprocess.run(
        [tool, "component", "wit", str(c_echo)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "import hyperware:process/standard@1.0.0;" in wit
    assert "export init: func(our: string);" in wit
    # through the preview1 adapter: wasi:*@0.2.x, no preview1 import left
    assert "import wasi:cli/stdout@0.2." in wit
    assert "wasi_snapshot_preview1" not in wit


async def test_c_echo_remote_100kb(
    tmp_path: Path, c_host: tuple[WasmHost, CompiledComponent]
) -> None:
    host, compiled = c_host
    pid = ProcessId("echo", "echo", "example.os")
    made: list[WasmRuntime] = []

    def make() -> WasmRuntime:
        rt = host.runtime(compiled)
        made.append(rt)
        return rt

    async with kernels(tmp_path, ALICE, BOB) as (ka, kb):
        assert await ka.spawn(pid, runtime=make, networking=True, public=True) == pid
        await ka.spawn("closed:echo:example.os", runtime=make, public=True)
        target = Address(ALICE, pid)
        for body in (os.urandom(100_000), b"", b"small"):
            reply = await kb.request(target, body, timeout=20)
            assert not isinstance(reply, SendError), reply
            assert isinstance(reply.message, ResponseMessage)
            assert reply.source == target
            assert reply.message.response.body == body
        # locally too
        local = await ka.request(target, b"x" * 100_000, timeout=20)
        assert not isinstance(local, SendError)
        assert isinstance(local.message, ResponseMessage)
        assert local.message.response.body == b"x" * 100_000
        # without the network capability: dropped, the sender times out
        closed = await kb.request(
            Address(ALICE, ProcessId.parse("closed:echo:example.os")), b"?", timeout=1
        )
        assert isinstance(closed, SendError) and closed.kind is SendErrorKind.TIMEOUT

        assert "c echo: ready" in ka.output(pid)
        assert made[0].stdout_tail() == f"c echo: up as {ALICE}@{pid}\n".encode()
        assert made[0].stderr_tail() == b""


def test_example_packages_layout() -> None:
    pkgs = sorted(p.parent.parent for p in EXAMPLES.glob("*/pkg/manifest.json"))
    assert {p.name for p in pkgs} >= {"kv", "echo"}
    for pkg in pkgs:
        name, publisher = package_id(pkg)
        assert name == pkg.name and publisher
        entries = read_manifest(pkg)
        assert entries
        for e in entries:
            assert set(e) == FIELDS, (pkg, e)
            assert e["process_wasm_path"].startswith("/") and e["process_wasm_path"].endswith(
                ".wasm"
            )
            assert (pkg / e["process_name"]).is_dir()


def test_build_package_echo(tmp_path: Path, c_echo: Path) -> None:
    out = build_package(EXAMPLES / "echo", tmp_path / "echo")
    assert out == tmp_path / "echo"
    assert json.loads((out / "metadata.json").read_text())["properties"]["package_name"] == "echo"
    (entry,) = json.loads((out / "pkg" / "manifest.json").read_text())
    wasm = out / "pkg" / entry["process_wasm_path"].lstrip("/")
    assert wasm.read_bytes() == c_echo.read_bytes()  # the build is reproducible


def test_missing_names_the_adapter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tools.build_c_component as bc

    if bc.clang() is None:
        assert "clang" in (missing() or "")
        return
    monkeypatch.setattr(bc, "NPM_ADAPTER", tmp_path)
    monkeypatch.setenv("HNET_WASI_ADAPTER", str(tmp_path / "nope.wasm"))
    why = missing()
    assert why is not None
    assert "wasi_snapshot_preview1.reactor.wasm" in why or "wasi-libc" in why or "lld" in why


def test_build_process_wat(tmp_path: Path) -> None:
    """A WAT test process through the same entry point (for mixed WAT/C/Python packages)."""
    from tools.build_examples import build_process

    if wasm_tools() is None:
        pytest.skip("wasm-tools is not installed")
    out = build_process(Path(__file__).parent / "wasm" / "echo.wat", tmp_path / "pkg" / "e.wasm")
    host = WasmHost()
    try:
        host.load(out.read_bytes())  # a valid process-v1 component
    finally:
        host.close()


async def test_mixed_package_wat_and_c(tmp_path: Path, c_echo: Path) -> None:
    """write_package: a package of a WAT and a C process, run from its directory."""
    from tools.build_examples import manifest_entry, write_package

    wat = Path(__file__).parent / "wasm" / "echo.wat"
    pkg = write_package(
        tmp_path / "mixed",
        "mixed",
        "example.os",
        [
            (wat, manifest_entry("watecho")),
            (EXAMPLES / "echo" / "echo", manifest_entry("cecho", public=False)),
        ],
    )
    entries = read_manifest(pkg)
    assert [e["process_name"] for e in entries] == ["watecho", "cecho"]
    assert all(set(e) == FIELDS for e in entries)
    assert package_id(pkg) == ("mixed", "example.os")
    host = WasmHost()
    try:
        async with kernels(tmp_path, ALICE) as (ka,):
            for e in entries:
                wasm = (pkg / "pkg" / e["process_wasm_path"].lstrip("/")).read_bytes()
                compiled = host.load(wasm)
                p = ProcessId(e["process_name"], "mixed", "example.os")
                spawned = await ka.spawn(
                    p,
                    runtime=lambda c=compiled: host.runtime(c),
                    networking=e["request_networking"],
                    public=e["public"],
                )
                assert spawned == p
                reply = await ka.request(
                    Address(ALICE, p), b"hi " + p.process_name.encode(), timeout=20
                )
                assert not isinstance(reply, SendError), reply
                assert isinstance(reply.message, ResponseMessage)
                assert reply.message.response.body == b"hi " + p.process_name.encode()
    finally:
        host.close()
