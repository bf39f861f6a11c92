"""Compile each component once per content hash: an in-memory table, and an optional cache dir.

A component is keyed by the SHA-256 of its bytes. The first :meth:`ComponentCache.load` of some
bytes compiles them (or deserializes an earlier compilation from ``cache_dir``), checks the
component against ``hyperware:process/standard@1.0.0`` (what it imports, and that it exports
``init: func(our: string)``), and keeps the result; later loads of the same bytes return the
same :class:`CompiledComponent`. Concurrent loads of the same bytes compile once.

The on-disk cache holds wasmtime's serialized native code, which wasmtime loads without
re-validation: ``cache_dir`` must be as trusted as the node's home (it lives there). Each file
carries a SHA-256 of its payload so a truncated or corrupt file is recompiled, not loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime
from wasmtime.component import Component, ComponentInstanceType, FuncType, String

from kernel.wasm.engine import WasmEngine
from kernel.wasm.signature import STANDARD, STANDARD_FUNCS, imported_funcs

__all__ = ["CompiledComponent", "ComponentCache", "ComponentError"]

_MAGIC = b"hnet-cwasm-1\n"


class ComponentError(Exception):
    """The bytes are not a component this host can run (the message says why)."""


@dataclass(frozen=True, eq=False)
class CompiledComponent:
    """A component compiled for one :class:`WasmEngine`, checked against ``process-v1``."""

    engine: WasmEngine
    component: Component
    #: hex SHA-256 of the component's bytes
    digest: str
    #: functions of ``standard`` it imports
    imports: frozenset[str]
    #: WASI interfaces it imports (``wasi:cli/stdout@0.2.0`` ...)
    wasi_imports: frozenset[str]
    #: seconds spent compiling or deserializing
    load_seconds: float
    #: "compiled" or "disk" (deserialized from the cache dir)
    origin: str
    instantiations: list[int] = field(default_factory=lambda: [0], repr=False)


def _check(engine: WasmEngine, comp: Component) -> tuple[frozenset[str], frozenset[str]]:
    eng = engine.engine
    ctype = comp.type
    std: set[str] = set()
    wasi: set[str] = set()
    for name, ext in ctype.imports(eng).items():
        if name == STANDARD:
            ity = ext.ty
            if not isinstance(ity, ComponentInstanceType):
                raise ComponentError(f"import {name} is not an instance")
            for fname, rendered in imported_funcs(ity, eng).items():
                expected = STANDARD_FUNCS.get(fname)
                if expected is None:
                    raise ComponentError(f"imports {name}#{fname}, which the host does not have")
                if rendered != expected:
                    raise ComponentError(
                        f"imports {name}#{fname} with type {rendered}, expected {expected}"
                    )
                std.add(fname)
        elif name.startswith("wasi:"):
            wasi.add(name)
        else:
            raise ComponentError(f"imports {name!r}, which the host does not provide")
    exports = ctype.exports(eng)
    init = exports.get("init")
    if init is None:
        raise ComponentError("exports no init function (world process-v1)")
    ity = init.ty
    if (
        not isinstance(ity, FuncType)
        or len(ity.params) != 1
        or not isinstance(ity.params[0][1], String)
        or ity.result is not None
    ):
        raise ComponentError("export init is not func(our: string)")
    return frozenset(std), frozenset(wasi)


class ComponentCache:
    """Compiled components by content hash (``max_entries`` kept in memory, least recent out)."""

    def __init__(
        self,
        engine: WasmEngine,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        max_entries: int = 128,
        max_component_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.engine = engine
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_entries = max_entries
        self.max_component_bytes = max_component_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, CompiledComponent] = OrderedDict()
        self._inflight: dict[str, threading.Lock] = {}
        self.compiles = 0
        self.disk_hits = 0
        self.hits = 0

    def load(self, wasm: bytes) -> CompiledComponent:
        """The compiled component for these bytes (binary, or component text for tests)."""
        if not isinstance(wasm, bytes | bytearray):
            raise TypeError("wasm must be bytes")
        if len(wasm) > self.max_component_bytes:
            raise ComponentError(
                f"component is {len(wasm)} bytes, more than {self.max_component_bytes}"
            )
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            hit = self._entries.get(digest)
            if hit is not None:
                self._entries.move_to_end(digest)
                self.hits += 1
                return hit
            key_lock = self._inflight.setdefault(digest, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._entries.get(digest)
                if hit is not None:
                    self.hits += 1
                    return hit
            try:
                compiled = self._load_uncached(bytes(wasm), digest)
            finally:
                with self._lock:
                    self._inflight.pop(digest, None)
            with self._lock:
                self._entries[digest] = compiled
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return compiled

    def _disk_path(self, digest: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{digest}.{self.engine.fingerprint}.cwasm"

    def _load_uncached(self, wasm: bytes, digest: str) -> CompiledComponent:
        start = time.perf_counter()
        path = self._disk_path(digest)
        comp = self._read_disk(path) if path is not None else None
        origin = "disk"
        if comp is None:
            origin = "compiled"
            try:
                comp = Component(self.engine.engine, wasm)
            except wasmtime.WasmtimeError as e:
                raise ComponentError(f"not a valid component: {e}") from None
        std, wasi = _check(self.engine, comp)
        if origin == "compiled":
            with self._lock:
                self.compiles += 1
            if path is not None:
                self._write_disk(path, comp)
        else:
            with self._lock:
                self.disk_hits += 1
        return CompiledComponent(
            engine=self.engine,
            component=comp,
            digest=digest,
            imports=std,
            wasi_imports=wasi,
            load_seconds=time.perf_counter() - start,
            origin=origin,
        )

    def _read_disk(self, path: Path) -> Component | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        head = len(_MAGIC) + 32
        if len(data) < head or not data.startswith(_MAGIC):
            return None
        payload = data[head:]
        if hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]:
            return None
        try:
            return Component.deserialize(self.engine.engine, payload)
        except wasmtime.WasmtimeError:
            return None

    def _write_disk(self, path: Path, comp: Component) -> None:
        try:
            payload = bytes(comp.serialize())
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, wasmtime.WasmtimeError):
            pass  # the cache is an optimisation: a write failure only costs a recompile
