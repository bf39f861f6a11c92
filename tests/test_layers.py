"""The tree shows the layers (docs/architecture.md): these tests fail when code lands in the
wrong one.

- ``hnet/core`` is sans-I/O: no asyncio, sockets, selectors, threads or websockets, and no
  import of the layers above it (transport, net, node, cli).
- ``hnet/net`` (node logic) touches no socket itself: socket code lives in ``hnet/transport``.
- ``hns`` imports nothing of ``hnet``.
- ``import hnet`` is cheap (the public API resolves lazily), and exports what the docs list.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: (``threading`` and ``ssl`` are allowed: a per-thread packer, TLS settings for QUIC.)
IO_MODULES = {"asyncio", "socket", "selectors", "websockets", "uvloop"}
ABOVE_CORE = ("hnet.transport", "hnet.net", "hnet.node", "hnet.cli", "hnet.control", "hnet.testing")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def files(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no files under {package}"
    return found


@pytest.mark.parametrize("path", files("hnet/core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_is_sans_io(path: Path) -> None:
    imported = imports_of(path)
    io = {m for m in imported if m.split(".")[0] in IO_MODULES}
    assert not io, f"{path.relative_to(ROOT)} imports {sorted(io)}: sans-I/O code may not"
    up = {m for m in imported if m.startswith(ABOVE_CORE) or m == "hnet.log"}
    assert not up, f"{path.relative_to(ROOT)} imports the layers above it: {sorted(up)}"


@pytest.mark.parametrize("path", files("hnet/net"), ids=lambda p: str(p.relative_to(ROOT)))
def test_net_layer_has_no_socket_code(path: Path) -> None:
    imported = imports_of(path)
    bad = {m for m in imported if m.split(".")[0] in {"socket", "selectors", "websockets"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: sockets belong in transport"


@pytest.mark.parametrize("path", files("hns"), ids=lambda p: str(p.relative_to(ROOT)))
def test_hns_imports_nothing_of_hnet(path: Path) -> None:
    bad = {m for m in imports_of(path) if m == "hnet" or m.startswith("hnet.")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_the_core_pulls_in_no_event_loop() -> None:
    """At run time too (transitively), except through the QUIC libraries, which import
    ``socket`` for address helpers."""
    code = (
        "import sys\n"
        "import hnet.core.wire, hnet.core.noise, hnet.core.framing, hnet.core.handshake\n"
        "import hnet.core.relay, hnet.core.sendqueue, hnet.core.passthroughs\n"
        "bad = [m for m in ('asyncio', 'socket', 'selectors') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imports pulled in {out.stdout.strip()}"


def test_public_api_is_exported_and_lazy() -> None:
    code = (
        "import sys, hnet\n"
        "assert 'hnet.node' not in sys.modules, 'import hnet loaded the node eagerly'\n"
        "for name in hnet.__all__:\n"
        "    getattr(hnet, name)\n"
        "print(' '.join(hnet.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    exported = set(out.stdout.split())
    for name in (
        "Node",
        "NodeConfig",
        "SendFailed",
        "SendError",
        "SendErrorKind",
        "Incoming",
        "Failed",
        "Registration",
        "PkiChange",
        "Address",
        "KernelMessage",
    ):
        assert name in exported
