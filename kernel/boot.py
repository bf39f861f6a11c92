"""A node's kernel, composed: the kernel, its runtime modules, the Wasm host and the installed
packages (what ``hnet node`` starts beside the network; docs/kernel.md).

The Wasm host (and wasmtime with it) is loaded on the first process start, so a node without
packages does not pay for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import hnet
from kernel.api import ProcessRuntime
from kernel.control import Op, kernel_ops
from kernel.kernel import Kernel
from kernel.modules import StateModule, TimerModule, VfsModule
from kernel.packages import Packages

if TYPE_CHECKING:
    from kernel.wasm import WasmHost

__all__ = ["KernelStack", "start_kernel"]


class _LazyHost:
    """``WasmHost().runtime``, with the host made on first use (from any thread)."""

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir
        self._host: WasmHost | None = None
        self._lock = threading.Lock()

    def __call__(self, wasm: bytes, on_output: Callable[[str, bytes], None]) -> ProcessRuntime:
        with self._lock:
            if self._host is None:
                from kernel.wasm import WasmHost

                self._cache_dir.mkdir(parents=True, exist_ok=True)
                self._host = WasmHost(cache_dir=self._cache_dir)
            host = self._host
        return host.runtime(wasm, on_output=on_output)

    def close(self) -> None:
        with self._lock:
            host, self._host = self._host, None
        if host is not None:
            host.close()


class KernelStack:
    def __init__(self, kernel: Kernel, packages: Packages, host: _LazyHost) -> None:
        self.kernel = kernel
        self.packages = packages
        self._host = host

    def ops(self) -> dict[str, Op]:
        """The control-socket operations (``send``, ``ps``, ``kill``)."""
        return kernel_ops(self.kernel)

    async def aclose(self) -> None:
        await self.kernel.aclose()
        self._host.close()


async def start_kernel(node: hnet.Node, home: Path, packages: Iterable[Path] = ()) -> KernelStack:
    """Start the kernel of a started ``node``: the packages installed before, then
    ``packages`` (installed or reinstalled). Raises :class:`kernel.packages.PackageError`
    (after stopping what it started) for a package that cannot be installed."""
    host = _LazyHost(home / "kernel" / "wasm-cache")
    kernel = Kernel(node, home)
    installer = Packages(kernel, home, host)
    kernel.add_module(TimerModule())
    kernel.add_module(StateModule())
    kernel.add_module(VfsModule(installer.drives))
    await kernel.start()
    stack = KernelStack(kernel, installer, host)
    try:
        await installer.boot()
        for path in packages:
            await installer.install(path)
    except BaseException:
        await stack.aclose()
        raise
    return stack
