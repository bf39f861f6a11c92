"""One wasmtime Engine for all processes, with epoch interruption and its ticker thread.

A compiled component belongs to the Engine it was compiled with, so a node keeps one
:class:`WasmEngine` and compiles every component with it. The ticker increments the engine's
epoch every ``tick`` seconds, and only while at least one guest runs (:meth:`acquire` /
:meth:`release`, called by each :class:`~kernel.wasm.host.WasmRuntime` around its run), so an
idle node has no ticking thread. A store's epoch deadline of one tick calls that store's
callback on the guest's own thread, which decides to stop the guest or let it go on.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from importlib import metadata

import wasmtime

from kernel.wasm import fastbytes

__all__ = ["WasmEngine"]

_LIVE: weakref.WeakSet[WasmEngine] = weakref.WeakSet()


def _close_all() -> None:
    for eng in list(_LIVE):
        eng.close()


atexit.register(_close_all)


class WasmEngine:
    """The shared Engine (epoch interruption on) and its bounded, stoppable ticker."""

    def __init__(self, *, tick: float = 0.05) -> None:
        if not 0.001 <= tick <= 10.0:
            raise ValueError(f"tick must be in [0.001, 10] seconds, not {tick}")
        #: byte lists converted by slicing, not byte by byte (see fastbytes)
        self.fast_bytes = fastbytes.install()
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.wasm_component_model = True
        self.engine = wasmtime.Engine(cfg)
        self.tick = tick
        self._lock = threading.Lock()
        self._users = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.ticks = 0
        _LIVE.add(self)

    @property
    def fingerprint(self) -> str:
        """What a serialized component depends on: the wasmtime version and our config."""
        try:
            version = metadata.version("wasmtime")
        except metadata.PackageNotFoundError:  # pragma: no cover - an unusual install
            version = "unknown"
        return f"wasmtime-{version}-epoch"

    def acquire(self) -> None:
        """A guest starts running: make sure the ticker runs."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the Wasm engine is closed")
            self._users += 1
            if self._thread is None:
                stop = threading.Event()
                t = threading.Thread(
                    target=self._tick_loop, args=(stop,), name="wasm-epoch", daemon=True
                )
                self._stop, self._thread = stop, t
                t.start()

    def release(self) -> None:
        """A guest stopped: the last one stops the ticker."""
        thread = None
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._thread is not None:
                assert self._stop is not None
                self._stop.set()
                thread, self._thread, self._stop = self._thread, None, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5 * self.tick + 1.0)

    @property
    def ticking(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _tick_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            self.engine.increment_epoch()
            self.ticks += 1

    def close(self) -> None:
        """Stop the ticker for good (running guests are not stopped by this)."""
        with self._lock:
            self._closed = True
            thread, stop = self._thread, self._stop
            self._thread = self._stop = None
            self._users = 0
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5 * self.tick + 1.0)
