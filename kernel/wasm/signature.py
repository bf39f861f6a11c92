"""The host's expected types of ``hyperware:process/standard@1.0.0``, to check a component's
imports against before it runs.

wasmtime-py's host functions are untyped: a linked function is called with whatever types the
component declared for its import. So before a component is accepted, each function it imports
from ``standard`` is rendered structurally (records with their field names, variants with their
cases) and compared with :data:`STANDARD_FUNCS`, written from ``wit/hyperware-process.wit``; a
component whose imports differ is refused at load, never trapped half-way through a call.
"""

from __future__ import annotations

from typing import Any

from wasmtime.component import (
    U8,
    U64,
    Bool,
    EnumType,
    FuncType,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    String,
    TupleType,
    ValType,
    VariantType,
)

__all__ = ["STANDARD", "STANDARD_FUNCS", "render_func", "render_type"]

STANDARD = "hyperware:process/standard@1.0.0"


def render_type(t: ValType) -> str:
    """A structural, WIT-like rendering of a component value type."""
    if isinstance(t, Bool):
        return "bool"
    if isinstance(t, U8):
        return "u8"
    if isinstance(t, U64):
        return "u64"
    if isinstance(t, String):
        return "string"
    if isinstance(t, ListType):
        return f"list<{render_type(t.element)}>"
    if isinstance(t, OptionType):
        return f"option<{render_type(t.payload)}>"
    if isinstance(t, TupleType):
        return "tuple<" + ", ".join(render_type(e) for e in t.elements) + ">"
    if isinstance(t, RecordType):
        return "record{" + ", ".join(f"{n}: {render_type(v)}" for n, v in t.fields) + "}"
    if isinstance(t, EnumType):
        return "enum{" + ", ".join(t.names) + "}"
    if isinstance(t, VariantType):
        return (
            "variant{"
            + ", ".join(n if v is None else f"{n}({render_type(v)})" for n, v in t.cases)
            + "}"
        )
    if isinstance(t, ResultType):
        ok = "_" if t.ok is None else render_type(t.ok)
        err = "_" if t.err is None else render_type(t.err)
        return f"result<{ok}, {err}>"
    return type(t).__name__.lower()  # a type ``standard`` never uses: never matches


def render_func(f: FuncType) -> str:
    params = ", ".join(f"{n}: {render_type(t)}" for n, t in f.params)
    res = f.result
    return f"func({params})" + ("" if res is None else f" -> {render_type(res)}")


# --- the expected types, from wit/hyperware-process.wit ---------------------------------------

_PID = "record{process-name: string, package-name: string, publisher-node: string}"
_ADDR = f"record{{node: string, process: {_PID}}}"
_CAP = f"record{{issuer: {_ADDR}, params: string}}"
_BLOB = "record{mime: option<string>, bytes: list<u8>}"
_REQ = (
    "record{inherit: bool, expects-response: option<u64>, body: list<u8>, "
    f"metadata: option<string>, capabilities: list<{_CAP}>}}"
)
_RESP = (
    f"record{{inherit: bool, body: list<u8>, metadata: option<string>, capabilities: list<{_CAP}>}}"
)
_MSG = f"variant{{request({_REQ}), response(tuple<{_RESP}, option<list<u8>>>)}}"
_ON_EXIT = f"variant{{none, restart, requests(list<tuple<{_ADDR}, {_REQ}, option<{_BLOB}>>>)}}"
_SEND_ERR = (
    f"record{{kind: enum{{offline, timeout}}, target: {_ADDR}, message: {_MSG}, "
    f"lazy-load-blob: option<{_BLOB}>}}"
)

#: function name -> rendered type, the 19 imports of ``standard``
STANDARD_FUNCS: dict[str, str] = {
    "print-to-terminal": "func(verbosity: u8, message: string)",
    "our": f"func() -> {_ADDR}",
    "get-on-exit": f"func() -> {_ON_EXIT}",
    "set-on-exit": f"func(on-exit: {_ON_EXIT})",
    "get-state": "func() -> option<list<u8>>",
    "set-state": "func(bytes: list<u8>)",
    "clear-state": "func()",
    "spawn": (
        f"func(name: option<string>, wasm-path: string, on-exit: {_ON_EXIT}, "
        f"request-capabilities: list<{_CAP}>, "
        f"grant-capabilities: list<tuple<{_PID}, string>>, public: bool) "
        f"-> result<{_PID}, enum{{name-taken, no-file-at-path}}>"
    ),
    "save-capabilities": f"func(caps: list<{_CAP}>)",
    "drop-capabilities": f"func(caps: list<{_CAP}>)",
    "our-capabilities": f"func() -> list<{_CAP}>",
    "receive": (f"func() -> result<tuple<{_ADDR}, {_MSG}>, tuple<{_SEND_ERR}, option<list<u8>>>>"),
    "has-blob": "func() -> bool",
    "get-blob": f"func() -> option<{_BLOB}>",
    "last-blob": f"func() -> option<{_BLOB}>",
    "send-request": (
        f"func(target: {_ADDR}, request: {_REQ}, context: option<list<u8>>, "
        f"lazy-load-blob: option<{_BLOB}>)"
    ),
    "send-requests": (
        f"func(requests: list<tuple<{_ADDR}, {_REQ}, option<list<u8>>, option<{_BLOB}>>>)"
    ),
    "send-response": f"func(response: {_RESP}, lazy-load-blob: option<{_BLOB}>)",
    "send-and-await-response": (
        f"func(target: {_ADDR}, request: {_REQ}, lazy-load-blob: option<{_BLOB}>) "
        f"-> result<tuple<{_ADDR}, {_MSG}>, {_SEND_ERR}>"
    ),
}


def imported_funcs(instance_type: Any, engine: Any) -> dict[str, str]:
    """The functions an imported instance type declares, rendered (type exports skipped)."""
    out = {}
    for name, ext in instance_type.exports(engine).items():
        ty = ext.ty
        if isinstance(ty, FuncType):
            out[name] = render_func(ty)
    return out
