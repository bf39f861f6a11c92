"""A fast path for ``list<u8>`` in wasmtime-py's component values.

wasmtime-py 50 converts a ``list<u8>`` between Python ``bytes`` and the C API's value array one
element at a time in Python (a few microseconds a byte: a 100 kB body costs about 0.3 s each
way). In the C API a list is an array of 32-byte ``wasmtime_component_val_t`` (kind byte at 0,
payload at 8), so for bytes the array can be built and read with slicing, a chunk at a time.

:func:`install` patches ``ListType.convert_to_c`` / ``convert_from_c`` for byte lists only,
after checking on a sample that the fast path gives exactly what the original gives; if the
layout is not the expected one (another wasmtime-py), nothing is patched.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime.component import Component, FuncType, ListType

__all__ = ["install", "installed"]

_VAL_SIZE = 32
_KIND_U8 = 2
_PAYLOAD = 8
_CHUNK = 64 * 1024  # elements per slice pass (2 MiB of C values)

_lock = threading.Lock()
_state: dict[str, bool] = {}
_orig_to_c: Any = ListType.convert_to_c
_orig_from_c: Any = ListType.convert_from_c


def _fast_to_c(self: ListType, store: Any, val: Any, ptr: Any) -> None:
    if not self._is_bytes():
        _orig_to_c(self, store, val, ptr)
        return
    if not isinstance(val, bytes):
        raise TypeError("expected bytes value")
    n = len(val)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, n)
    if n:
        base = ctypes.cast(raw.data, ctypes.c_void_p).value
        assert base is not None
        kinds = bytes([_KIND_U8]) * min(n, _CHUNK)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            buf = bytearray(m * _VAL_SIZE)
            buf[0::_VAL_SIZE] = kinds[:m]
            buf[_PAYLOAD::_VAL_SIZE] = val[start : start + m]
            ctypes.memmove(base + start * _VAL_SIZE, bytes(buf), m * _VAL_SIZE)
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


def _fast_from_c(self: ListType, c: Any) -> Any:
    if not self._is_bytes():
        return _orig_from_c(self, c)
    assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
    try:
        n = c.of.list.size
        out = bytearray()
        if n:
            base = ctypes.cast(c.of.list.data, ctypes.c_void_p).value
            assert base is not None
            kinds = bytes([_KIND_U8]) * min(n, _CHUNK)
            for start in range(0, n, _CHUNK):
                m = min(_CHUNK, n - start)
                chunk = ctypes.string_at(base + start * _VAL_SIZE, m * _VAL_SIZE)
                if chunk[0::_VAL_SIZE] != kinds[:m]:
                    raise TypeError("list<u8> holds a value that is not a u8")
                out += chunk[_PAYLOAD::_VAL_SIZE]
        return bytes(out)
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))


def _sample_list_type() -> tuple[ListType, wasmtime.Store]:
    engine = wasmtime.Engine()
    comp = Component(engine, '(component (import "f" (func (param "x" (list u8)))))')
    fty = comp.type.imports(engine)["f"].ty
    assert isinstance(fty, FuncType)
    lt = fty.params[0][1]
    assert isinstance(lt, ListType) and lt._is_bytes()
    return lt, wasmtime.Store(engine)


def _self_check() -> bool:
    lt, store = _sample_list_type()
    try:
        sample = bytes(range(256)) * 3 + b"\x00\xff"
        for value in (b"", b"\x07", sample):
            a = ffi.wasmtime_component_val_t()
            b = ffi.wasmtime_component_val_t()
            _orig_to_c(lt, store, value, ctypes.pointer(a))
            _fast_to_c(lt, store, value, ctypes.pointer(b))
            n = a.of.list.size
            if n != b.of.list.size or n != len(value):
                return False
            if n:
                pa = ctypes.cast(a.of.list.data, ctypes.c_void_p).value
                pb = ctypes.cast(b.of.list.data, ctypes.c_void_p).value
                assert pa is not None and pb is not None
                # compare what is defined: each element's kind and u8 payload
                ea = ctypes.string_at(pa, n * _VAL_SIZE)
                eb = ctypes.string_at(pb, n * _VAL_SIZE)
                for off in (0, _PAYLOAD):
                    if ea[off::_VAL_SIZE] != eb[off::_VAL_SIZE]:
                        return False
            if _fast_from_c(lt, a) != value or _orig_from_c(lt, b) != value:
                return False
        return True
    except Exception:
        return False
    finally:
        store.close()


def install() -> bool:
    """Patch byte lists to the fast path (once); False if the self-check refused it."""
    with _lock:
        if "ok" not in _state:
            ok = _self_check()
            if ok:
                ListType.convert_to_c = _fast_to_c  # type: ignore[method-assign]
                ListType.convert_from_c = _fast_from_c  # type: ignore[method-assign]
            _state["ok"] = ok
        return _state["ok"]


def installed() -> bool:
    return _state.get("ok", False)
