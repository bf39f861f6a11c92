"""The library example in docs/architecture.md runs as written (paths and port swapped for a
temporary directory and a free port)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hnet.testing.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_library_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "no python example in docs/architecture.md"
    code = blocks[0].replace("/tmp/demo", str(tmp_path)).replace("9000", str(free_port()))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # bob.os is not registered: the request fails Offline, and says why
    assert "SendErrorKind.OFFLINE" in out.stdout and "not in HNS" in out.stdout, out.stdout
