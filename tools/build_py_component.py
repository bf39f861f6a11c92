#!/usr/bin/env python3
"""Build a Hyperware process component from a Python module with componentize-py.

    python tools/build_py_component.py SRC.py OUT.wasm

``SRC.py`` defines ``class WitWorld(wit_world.WitWorld)`` with ``init(self, our: str)``; it
calls the imports of ``hyperware:process/standard@1.0.0`` through the bindings componentize-py
generates from ``wit/`` (``from wit_world.imports import standard``; see
examples/kv/kv/app.py). Other modules in SRC's directory may be imported. The result is a
component of world ``process-v1`` that imports WASI preview 2 (CPython's runtime needs it).

componentize-py is PyPI ``componentize-py`` (a dev dependency); a build takes 10-20 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIT = ROOT / "wit"
WORLD = "process-v1"


def componentize_py() -> str | None:
    """The componentize-py binary: next to this interpreter (the venv), else on PATH."""
    cand = Path(sys.executable).parent / "componentize-py"
    if cand.exists():
        return str(cand)
    return shutil.which("componentize-py")


def build_py_component(src: Path, out: Path, *, timeout: float = 300.0) -> Path:
    """Componentize the module ``src`` (a ``.py`` file) into ``out``; returns ``out``.

    Raises FileNotFoundError if componentize-py is missing, RuntimeError if the build fails
    (with componentize-py's output)."""
    tool = componentize_py()
    if tool is None:
        raise FileNotFoundError("componentize-py not found (pip install componentize-py)")
    src = Path(src).resolve()
    out = Path(out).resolve()
    if src.suffix != ".py" or not src.is_file():
        raise FileNotFoundError(f"no Python module at {src}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    cmd = [
        tool,
        "-d",
        str(WIT),
        "-w",
        WORLD,
        "componentize",
        "-p",
        str(src.parent),
        src.stem,
        "-o",
        str(tmp),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=src.parent)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"componentize-py failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="the Python module (SRC.py)")
    ap.add_argument("out", type=Path, help="the component to write (OUT.wasm)")
    args = ap.parse_args(argv)
    try:
        build_py_component(args.src, args.out)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"build_py_component: {e}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
