"""bench/circuits.py (routed QUIC against direct, router CPU and memory) runs end to end in
its ``--quick`` mode: a router process, a source, direct and indirect targets, a few dozen
circuits; the JSON it writes holds every section. ~10 s; the figures are not checked (too few
samples to mean anything), only that each was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def test_circuits_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "circuits.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "circuits.py"), "--quick", "--no-pin",
         "--circuits", "24", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "routed QUIC (circuits)" in res.stdout and "HOL routed" in res.stdout
    data = json.loads(out.read_text())
    rt = data["round_trips"]
    assert rt["hello_ratio"] > 0 and rt["bulk_ratio"] > 0
    assert len(rt["hello_routed_us"]) == data["plan"]["rounds"]
    assert data["router_cpu"]["router_cpu_us_per_rt"] > 0
    for path in ("routed", "direct"):
        assert data["head_of_line"][path]["loaded"]["n"] >= 1
    many = data["many_circuits"]
    assert (many["asked"], many["live"], many["errors"]) == (24, 24, 0)
    assert (many["sources"], many["targets"]) == (2, 16)
    assert many["router_rss_kib"] > 0
