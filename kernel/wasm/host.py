"""The Wasm host: a ``hyperware:process@1.0.0`` component as a :class:`ProcessRuntime`.

One :class:`WasmRuntime` is one run of one process. :meth:`WasmRuntime.run` (on the process's
own thread) makes a fresh Store, links WASI preview 2 (stdout and stderr captured into bounded
ring buffers) and the 19 functions of ``standard`` (each calling the :class:`ProcessContext`),
instantiates the component and calls ``init(our)``. It returns when ``init`` returns, raises
:class:`ProcessCrashed` on a trap (or a value from the guest the host refuses), and
:class:`ProcessStopped` after :meth:`interrupt`, when the watchdog stopped a guest that computed
too long without calling the host, or when a context call raised :class:`ProcessStopped`.

Stopping: the store's epoch deadline is one engine tick; on each tick that passes while the
guest runs Wasm code, a callback on the guest's thread checks the interrupt flag and the time
since the guest last left a host call, and either traps the guest or gives it one more tick.
A guest blocked in a host call (``receive``) is not in Wasm code: the kernel's context must
end that call (raise :class:`ProcessStopped`) when it stops the process; whatever the call
returns after :meth:`interrupt` is dropped and the guest is stopped on the way back.

Concurrency: wasmtime-py reports a Python exception raised in a host function through one
module-global slot, shared by all threads; so no exception ever leaves a host function here.
Each is kept on the runtime and a :class:`wasmtime.WasmtimeError` is raised instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime.component import Linker, Record

from kernel.api import ProcessContext, ProcessCrashed, ProcessStopped
from kernel.wasm import convert as cv
from kernel.wasm.cache import CompiledComponent, ComponentCache
from kernel.wasm.convert import GuestError, GuestLimits
from kernel.wasm.engine import WasmEngine
from kernel.wasm.signature import STANDARD

__all__ = ["OutputTail", "WasmHost", "WasmRuntime"]

#: wasmtime_update_deadline_kind_t: go on (0) rather than yield (1, async stores only)
_UPDATE_DEADLINE_CONTINUE = 0

_EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)


_no_finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _data: None)


class _Default(enum.Enum):
    DEFAULT = "default"


class OutputTail:
    """The last ``limit`` bytes written to a stream (a bounded ring), and the total count."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.total += len(data)
            if len(data) >= self.limit:
                self._buf = bytearray(data[-self.limit :])
            else:
                self._buf += data
                extra = len(self._buf) - self.limit
                if extra > 0:
                    del self._buf[:extra]

    def tail(self) -> bytes:
        with self._lock:
            return bytes(self._buf)


class _Stop(Exception):
    """Internal: unwind a host call because the process is being stopped."""


class WasmRuntime:
    """One run of a process's component (a new runtime for each start or restart)."""

    def __init__(
        self,
        component: CompiledComponent,
        *,
        watchdog: float | None = 30.0,
        memory_limit: int = 256 * 1024 * 1024,
        output_limit: int = 64 * 1024,
        limits: GuestLimits = cv.DEFAULT_LIMITS,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """``watchdog``: seconds a guest may compute without calling the host (None: no
        limit); ``memory_limit``: bytes of linear memory per process; ``output_limit``: bytes
        of stdout and of stderr kept; ``on_output(stream, data)`` also sees each write, on the
        guest's thread (it must not block)."""
        if watchdog is not None and watchdog <= 0:
            raise ValueError("watchdog must be positive or None")
        self.component = component
        self.watchdog = watchdog
        self.memory_limit = memory_limit
        self.limits = limits
        self.on_output = on_output
        self.stdout = OutputTail(output_limit)
        self.stderr = OutputTail(output_limit)
        self._interrupted = threading.Event()
        self._started = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._last_host_exit = time.monotonic()
        # why the guest is being unwound: set once, on the guest's thread
        self._stop_reason: str | None = None
        self._host_error: tuple[str, BaseException] | None = None
        self._guest_error: str | None = None
        self.host_calls = 0

    # --- what the kernel reads --------------------------------------------------------------

    def stderr_tail(self) -> bytes:
        return self.stderr.tail()

    def stdout_tail(self) -> bytes:
        return self.stdout.tail()

    @property
    def stop_reason(self) -> str | None:
        """After :class:`ProcessStopped`: "interrupted", "watchdog: ..." or "stopped"."""
        return self._stop_reason

    @property
    def stopped_by_watchdog(self) -> bool:
        return (self._stop_reason or "").startswith("watchdog")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`run` has ended (True) or ``timeout`` passed (False)."""
        return self._done.wait(timeout)

    # --- ProcessRuntime ---------------------------------------------------------------------

    def interrupt(self) -> None:
        self._interrupted.set()

    def run(self, ctx: ProcessContext) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("a WasmRuntime runs once; make a new one to restart")
            self._started = True
        engine = self.component.engine
        try:
            if self._interrupted.is_set():
                self._stop_reason = "interrupted"
                raise ProcessStopped("interrupted before start")
            engine.acquire()
            try:
                self._run(ctx, engine)
            finally:
                engine.release()
        finally:
            self._done.set()

    def _run(self, ctx: ProcessContext, engine: WasmEngine) -> None:
        our = str(ctx.our())
        store = wasmtime.Store(engine.engine)
        linker = Linker(engine.engine)
        callback = _EpochCallback(self._on_epoch)
        try:
            wasi = wasmtime.WasiConfig()
            wasi.stdout_custom = self._writer("stdout", self.stdout)
            wasi.stderr_custom = self._writer("stderr", self.stderr)
            store.set_wasi(wasi)
            store.set_limits(memory_size=self.memory_limit)
            ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, _no_finalizer)
            store.set_epoch_deadline(1)
            linker.add_wasip2()
            self._define_standard(linker, ctx)
            self._last_host_exit = time.monotonic()
            try:
                instance = linker.instantiate(store, self.component.component)
                self.component.instantiations[0] += 1
                init = instance.get_func(store, "init")
                if init is None:  # checked at load; a guard all the same
                    raise ProcessCrashed("component exports no init")
                init(store, our)
            except (ProcessCrashed, ProcessStopped):
                raise
            except wasmtime.ExitTrap as e:
                self._raise_for(e)
                if e.code != 0:
                    raise ProcessCrashed(f"guest exited with code {e.code}") from None
            except Exception as e:
                self._raise_for(e)
                raise ProcessCrashed(_short(f"guest trapped: {e}")) from None
            else:
                # init returned; a host error swallowed by the guest still ends it badly
                self._raise_for(None)
        finally:
            linker.close()
            store.close()

    def _raise_for(self, e: BaseException | None) -> None:
        """Turn what the host recorded while unwinding into the contract's exception."""
        if self._host_error is not None:
            name, err = self._host_error
            if isinstance(err, ProcessStopped):
                self._stop_reason = self._stop_reason or "stopped"
                raise ProcessStopped(str(err) or "stopped") from err
            raise ProcessCrashed(_short(f"host call {name} failed: {err!r}")) from err
        if self._stop_reason is not None:
            raise ProcessStopped(self._stop_reason) from None
        if self._guest_error is not None:
            raise ProcessCrashed(_short(self._guest_error)) from None
        if e is None and self._interrupted.is_set():
            return  # init returned before the interrupt was seen: a normal end

    # --- stopping ---------------------------------------------------------------------------

    def _on_epoch(self, _ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
        try:
            reason = None
            if self._interrupted.is_set():
                reason = "interrupted"
            elif self.watchdog is not None:
                busy = time.monotonic() - self._last_host_exit
                if busy > self.watchdog:
                    reason = (
                        f"watchdog: guest computed {busy:.1f} s without calling the host "
                        f"(limit {self.watchdog:g} s)"
                    )
            if reason is not None:
                self._stop_reason = reason
                err = wasmtime.WasmtimeError(reason)
                return ctypes.cast(err._consume(), ctypes.c_void_p).value or 0
            delta[0] = 1
            kind[0] = _UPDATE_DEADLINE_CONTINUE
            return 0
        except BaseException:  # never let an exception cross the C callback
            delta[0] = 1
            kind[0] = _UPDATE_DEADLINE_CONTINUE
            return 0

    def _writer(self, stream: str, tail: OutputTail) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            tail.write(data)
            if self.on_output is not None:
                with contextlib.suppress(Exception):
                    self.on_output(stream, data)

        return write

    # --- the 19 imports ---------------------------------------------------------------------

    def _define_standard(self, linker: Linker, ctx: ProcessContext) -> None:
        funcs = _standard_funcs(ctx, self.limits)
        with linker.root() as root, root.add_instance(STANDARD) as std:
            for name, fn in funcs.items():
                std.add_func(name, self._wrap(name, fn))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def host(_store: Any, *args: Any) -> Any:
            if self._host_error is not None or self._stop_reason is not None:
                raise wasmtime.WasmtimeError("process is stopping")
            if self._interrupted.is_set():
                self._stop_reason = "interrupted"
                raise wasmtime.WasmtimeError("interrupted")
            self.host_calls += 1
            try:
                result = fn(*args)
            except GuestError as e:
                self._guest_error = f"guest called {name} with a bad value: {e}"
                raise wasmtime.WasmtimeError(self._guest_error) from None
            except BaseException as e:
                self._host_error = (name, e)
                raise wasmtime.WasmtimeError(f"host call {name} failed") from None
            if self._interrupted.is_set():
                self._stop_reason = "interrupted"
                raise wasmtime.WasmtimeError("interrupted")
            self._last_host_exit = time.monotonic()
            return result

        return host


def _short(s: str, limit: int = 4096) -> str:
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _standard_funcs(ctx: ProcessContext, lim: GuestLimits) -> dict[str, Callable[..., Any]]:
    """The 19 functions: lifted WIT values in, ``ctx`` call, WIT values out."""

    def print_to_terminal(verbosity: int, message: str) -> None:
        ctx.print_to_terminal(int(verbosity), str(message)[: lim.max_print])

    def our() -> Record:
        return cv.address_to_wit(ctx.our())

    def get_on_exit() -> Any:
        return cv.on_exit_to_wit(ctx.get_on_exit())

    def set_on_exit(on_exit: Any) -> None:
        ctx.set_on_exit(cv.on_exit_from_wit(on_exit, lim))

    def get_state() -> bytes | None:
        state = ctx.get_state()
        return None if state is None else bytes(state)

    def set_state(data: Any) -> None:
        if not isinstance(data, bytes) or len(data) > lim.max_blob:
            raise GuestError(f"state must be bytes of at most {lim.max_blob}")
        ctx.set_state(data)

    def clear_state() -> None:
        ctx.clear_state()

    def spawn(
        name: Any,
        wasm_path: Any,
        on_exit: Any,
        request_caps: Any,
        grant_caps: Any,
        public: Any,
    ) -> Any:
        grants = []
        for item in cv._list(grant_caps, "grant-capabilities", lim.max_capabilities):
            pid, params = cv._tuple(item, 2, "grant-capability")
            grants.append((cv.process_id_from_wit(pid, lim), cv._str(params, "params", lim)))
        result = ctx.spawn(
            cv._opt_str(name, "name", lim),
            cv._str(wasm_path, "wasm-path", lim),
            cv.on_exit_from_wit(on_exit, lim),
            cv.capability_list_from_wit(request_caps, lim),
            grants,
            cv._bool(public, "public"),
        )
        return cv.spawn_result_to_wit(result)

    def save_capabilities(caps: Any) -> None:
        ctx.save_capabilities(cv.capability_list_from_wit(caps, lim))

    def drop_capabilities(caps: Any) -> None:
        ctx.drop_capabilities(cv.capability_list_from_wit(caps, lim))

    def our_capabilities() -> list[Record]:
        return cv.capabilities_to_wit(list(ctx.our_capabilities()))

    def receive() -> Any:
        return cv.received_to_wit(ctx.receive())

    def has_blob() -> bool:
        return bool(ctx.has_blob())

    def get_blob() -> Record | None:
        return cv.blob_to_wit(ctx.get_blob())

    def last_blob() -> Record | None:
        return cv.blob_to_wit(ctx.last_blob())

    def send_request(target: Any, request: Any, context: Any, blob: Any) -> None:
        ctx.send_request(
            cv.address_from_wit(target, lim),
            cv.request_from_wit(request, lim),
            cv.context_from_wit(context, lim),
            cv.blob_from_wit(blob, lim),
        )

    def send_requests(requests: Any) -> None:
        out = []
        for item in cv._list(requests, "requests", lim.max_requests):
            target, request, context, blob = cv._tuple(item, 4, "request")
            out.append(
                (
                    cv.address_from_wit(target, lim),
                    cv.request_from_wit(request, lim),
                    cv.context_from_wit(context, lim),
                    cv.blob_from_wit(blob, lim),
                )
            )
        ctx.send_requests(out)

    def send_response(response: Any, blob: Any) -> None:
        ctx.send_response(cv.response_from_wit(response, lim), cv.blob_from_wit(blob, lim))

    def send_and_await_response(target: Any, request: Any, blob: Any) -> Any:
        result = ctx.send_and_await_response(
            cv.address_from_wit(target, lim),
            cv.request_from_wit(request, lim),
            cv.blob_from_wit(blob, lim),
        )
        return cv.send_and_await_to_wit(result)

    return {
        "print-to-terminal": print_to_terminal,
        "our": our,
        "get-on-exit": get_on_exit,
        "set-on-exit": set_on_exit,
        "get-state": get_state,
        "set-state": set_state,
        "clear-state": clear_state,
        "spawn": spawn,
        "save-capabilities": save_capabilities,
        "drop-capabilities": drop_capabilities,
        "our-capabilities": our_capabilities,
        "receive": receive,
        "has-blob": has_blob,
        "get-blob": get_blob,
        "last-blob": last_blob,
        "send-request": send_request,
        "send-requests": send_requests,
        "send-response": send_response,
        "send-and-await-response": send_and_await_response,
    }


class WasmHost:
    """What a node keeps: one engine, one component cache, default limits for its processes.

    ``host.runtime(wasm_bytes)`` is the whole path from bytes to a :class:`ProcessRuntime`
    (compiled once per content hash); ``host.load(bytes)`` compiles and checks without running
    (raising :class:`~kernel.wasm.cache.ComponentError`), e.g. at package install.
    """

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        tick: float = 0.05,
        watchdog: float | None = 30.0,
        memory_limit: int = 256 * 1024 * 1024,
        output_limit: int = 64 * 1024,
        limits: GuestLimits = cv.DEFAULT_LIMITS,
    ) -> None:
        self.engine = WasmEngine(tick=tick)
        self.cache = ComponentCache(self.engine, cache_dir)
        self.watchdog = watchdog
        self.memory_limit = memory_limit
        self.output_limit = output_limit
        self.limits = limits

    def load(self, wasm: bytes) -> CompiledComponent:
        return self.cache.load(wasm)

    def runtime(
        self,
        wasm: bytes | CompiledComponent,
        *,
        on_output: Callable[[str, bytes], None] | None = None,
        watchdog: float | _Default | None = _Default.DEFAULT,
    ) -> WasmRuntime:
        compiled = wasm if isinstance(wasm, CompiledComponent) else self.cache.load(wasm)
        if compiled.engine is not self.engine:
            raise ValueError("component was compiled for another engine")
        return WasmRuntime(
            compiled,
            watchdog=self.watchdog if isinstance(watchdog, _Default) else watchdog,
            memory_limit=self.memory_limit,
            output_limit=self.output_limit,
            limits=self.limits,
            on_output=on_output,
        )

    def close(self) -> None:
        self.engine.close()
