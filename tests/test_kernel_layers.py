"""The kernel uses hnet only through its public API: ``import hnet`` / ``from hnet import
...`` (the names hnet/__init__.py exports), never an ``hnet.`` submodule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def hnet_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("hnet.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("hnet."):
                bad.append(node.module)
            elif node.module == "hnet":
                import hnet

                bad += [f"hnet.{a.name}" for a in node.names if a.name not in hnet.__all__]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            args = node.args
            if args and isinstance(args[0], ast.Constant) and str(args[0].value).startswith("hnet"):
                bad.append(str(args[0].value))
    return bad


KERNEL_FILES = sorted((ROOT / "kernel").rglob("*.py"))


def test_there_are_kernel_modules() -> None:
    assert len(KERNEL_FILES) > 5


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_kernel_imports_only_hnets_public_api(path: Path) -> None:
    bad = hnet_imports(path)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: use `import hnet` only"


def test_the_check_catches_a_submodule_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import hnet\nfrom hnet.core.wire import Address\nfrom hnet import Node, limits\n")
    assert hnet_imports(f) == ["hnet.core.wire", "hnet.limits"]
