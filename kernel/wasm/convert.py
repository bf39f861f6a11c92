"""WIT values of ``hyperware:process/standard@1.0.0`` to and from hnet's message types.

wasmtime-py lifts a guest's values to Python as ``wasmtime.component.Record`` (attributes named
like the WIT fields, kebab-case, so read with ``getattr``), ``Variant`` (tag and payload) for a
*tagged* variant, or the bare payload for a variant whose cases have distinct Python classes
(``message``: a ``Record`` or a ``tuple``; ``option``: ``None`` or the value; a ``result`` whose
arms differ in class). Lowering takes the same shapes: inside an untagged variant a record must be
a real ``Record``, and ``option<u64>`` needs an ``int``.

Everything that comes from a guest is checked here (types, sizes, counts, name syntax), and a
violation raises :class:`GuestError`, which the host turns into a trap of that guest only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmtime.component import Record, Variant

from hnet import (
    Address,
    Capability,
    LazyLoadBlob,
    ProcessId,
    Request,
    Response,
    ResponseMessage,
    SendError,
)
from kernel.api import (
    GuestMessage,
    OnExit,
    OnExitNone,
    OnExitRequests,
    OnExitRestart,
    Received,
    ReceivedError,
    SpawnError,
)

__all__ = [
    "GuestError",
    "GuestLimits",
    "address_from_wit",
    "address_to_wit",
    "blob_from_wit",
    "blob_to_wit",
    "capabilities_to_wit",
    "capability_from_wit",
    "message_to_wit",
    "on_exit_from_wit",
    "on_exit_to_wit",
    "process_id_from_wit",
    "process_id_to_wit",
    "received_to_wit",
    "request_from_wit",
    "response_from_wit",
    "send_and_await_to_wit",
    "send_error_to_wit",
    "spawn_result_to_wit",
]


class GuestError(Exception):
    """A guest passed a value the host refuses (wrong shape, too large, a malformed name)."""


@dataclass(frozen=True, slots=True)
class GuestLimits:
    """Bounds on what one guest call may hand to the kernel."""

    #: a request's or response's body, a context
    max_body: int = 10 * 1024 * 1024
    #: a lazy-load blob, and the process state
    max_blob: int = 64 * 1024 * 1024
    #: metadata, capability params, names: any one string
    max_string: int = 1024 * 1024
    #: capabilities in one message or one capability call
    max_capabilities: int = 1024
    #: requests in one ``send-requests`` or one ``on-exit``
    max_requests: int = 1024
    #: a ``print-to-terminal`` message is cut (not refused) past this many characters
    max_print: int = 64 * 1024


DEFAULT_LIMITS = GuestLimits()


# --- small checks ---------------------------------------------------------------------------


def _field(rec: Any, name: str) -> Any:
    if not isinstance(rec, Record):
        raise GuestError(f"expected a record, got {type(rec).__name__}")
    try:
        return getattr(rec, name)
    except AttributeError:
        raise GuestError(f"record without field {name!r}") from None


def _str(v: Any, what: str, limits: GuestLimits) -> str:
    if not isinstance(v, str):
        raise GuestError(f"{what}: expected a string, got {type(v).__name__}")
    if len(v) > limits.max_string:
        raise GuestError(f"{what}: {len(v)} characters, more than {limits.max_string}")
    return v


def _bytes(v: Any, what: str, limit: int) -> bytes:
    if not isinstance(v, bytes):
        raise GuestError(f"{what}: expected bytes, got {type(v).__name__}")
    if len(v) > limit:
        raise GuestError(f"{what}: {len(v)} bytes, more than {limit}")
    return v


def _opt_str(v: Any, what: str, limits: GuestLimits) -> str | None:
    return None if v is None else _str(v, what, limits)


def _list(v: Any, what: str, limit: int) -> list[Any]:
    if not isinstance(v, list):
        raise GuestError(f"{what}: expected a list, got {type(v).__name__}")
    if len(v) > limit:
        raise GuestError(f"{what}: {len(v)} items, more than {limit}")
    return v


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise GuestError(f"{what}: expected a bool, got {type(v).__name__}")
    return v


def _tuple(v: Any, n: int, what: str) -> tuple[Any, ...]:
    if not isinstance(v, tuple) or len(v) != n:
        raise GuestError(f"{what}: expected a {n}-tuple")
    return v


def _opt_bytes(v: bytes | None) -> bytes | None:
    return None if v is None else bytes(v)


def _record(**fields: Any) -> Record:
    rec = Record()
    for name, value in fields.items():
        setattr(rec, name.replace("_", "-"), value)
    return rec


# --- names ----------------------------------------------------------------------------------


def process_id_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> ProcessId:
    try:
        return ProcessId(
            _str(_field(v, "process-name"), "process-name", limits),
            _str(_field(v, "package-name"), "package-name", limits),
            _str(_field(v, "publisher-node"), "publisher-node", limits),
        )
    except ValueError as e:  # hnet's CodecError is a ValueError
        raise GuestError(str(e)) from None


def process_id_to_wit(pid: ProcessId) -> Record:
    return _record(
        process_name=pid.process_name,
        package_name=pid.package_name,
        publisher_node=pid.publisher_node,
    )


def address_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> Address:
    node = _str(_field(v, "node"), "node", limits)
    process = process_id_from_wit(_field(v, "process"), limits)
    try:
        return Address(node, process)
    except ValueError as e:
        raise GuestError(str(e)) from None


def address_to_wit(addr: Address) -> Record:
    return _record(node=addr.node, process=process_id_to_wit(addr.process))


# --- capabilities and blobs -----------------------------------------------------------------


def capability_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> Capability:
    return Capability(
        address_from_wit(_field(v, "issuer"), limits),
        _str(_field(v, "params"), "capability params", limits),
    )


def capability_list_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> list[Capability]:
    return [
        capability_from_wit(c, limits) for c in _list(v, "capabilities", limits.max_capabilities)
    ]


def _cap_to_wit(cap: Capability) -> Record:
    return _record(issuer=address_to_wit(cap.issuer), params=cap.params)


def capabilities_to_wit(
    caps: tuple[tuple[Capability, bytes], ...] | list[Capability],
) -> list[Record]:
    """Guest-facing capabilities: signatures (the ``bytes`` of a pair) are never shown."""
    out = []
    for c in caps:
        cap = c[0] if isinstance(c, tuple) else c
        out.append(_cap_to_wit(cap))
    return out


def blob_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> LazyLoadBlob | None:
    if v is None:
        return None
    return LazyLoadBlob(
        _opt_str(_field(v, "mime"), "blob mime", limits),
        _bytes(_field(v, "bytes"), "blob", limits.max_blob),
    )


def blob_to_wit(blob: LazyLoadBlob | None) -> Record | None:
    if blob is None:
        return None
    return _record(mime=blob.mime, bytes=bytes(blob.bytes))


def context_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> bytes | None:
    return None if v is None else _bytes(v, "context", limits.max_body)


# --- requests and responses -----------------------------------------------------------------


def request_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> Request:
    expects = _field(v, "expects-response")
    if expects is not None and (
        not isinstance(expects, int) or isinstance(expects, bool) or expects < 0
    ):
        raise GuestError("expects-response: expected a u64")
    caps = capability_list_from_wit(_field(v, "capabilities"), limits)
    return Request(
        inherit=_bool(_field(v, "inherit"), "inherit"),
        expects_response=expects,
        body=_bytes(_field(v, "body"), "request body", limits.max_body),
        metadata=_opt_str(_field(v, "metadata"), "metadata", limits),
        capabilities=tuple((c, b"") for c in caps),
    )


def request_to_wit(req: Request) -> Record:
    return _record(
        inherit=req.inherit,
        expects_response=None if req.expects_response is None else int(req.expects_response),
        body=bytes(req.body),
        metadata=req.metadata,
        capabilities=capabilities_to_wit(req.capabilities),
    )


def response_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> Response:
    caps = capability_list_from_wit(_field(v, "capabilities"), limits)
    return Response(
        inherit=_bool(_field(v, "inherit"), "inherit"),
        body=_bytes(_field(v, "body"), "response body", limits.max_body),
        metadata=_opt_str(_field(v, "metadata"), "metadata", limits),
        capabilities=tuple((c, b"") for c in caps),
    )


def response_to_wit(resp: Response) -> Record:
    return _record(
        inherit=resp.inherit,
        body=bytes(resp.body),
        metadata=resp.metadata,
        capabilities=capabilities_to_wit(resp.capabilities),
    )


def message_to_wit(msg: GuestMessage) -> Record | tuple[Record, bytes | None]:
    """``message`` is an untagged variant: a request ``Record`` or a ``(response, context)``."""
    if isinstance(msg, Request):
        return request_to_wit(msg)
    return (response_to_wit(msg.response), _opt_bytes(msg.context))


def message_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> GuestMessage:
    if isinstance(v, Record):
        return request_from_wit(v, limits)
    resp, ctx = _tuple(v, 2, "message")
    return ResponseMessage(response_from_wit(resp, limits), context_from_wit(ctx, limits))


def send_error_to_wit(err: SendError) -> Record:
    return _record(
        kind=err.kind.value.lower(),  # SendErrorKind "Offline" -> enum case "offline"
        target=address_to_wit(err.target),
        message=message_to_wit(err.message),
        lazy_load_blob=blob_to_wit(err.lazy_load_blob),
    )


# --- results of host calls ------------------------------------------------------------------


def received_to_wit(r: Received) -> Variant:
    """``result<tuple<address, message>, tuple<send-error, option<context>>>``: both arms are
    tuples, so wasmtime-py wants a tagged ``Variant``."""
    if isinstance(r, ReceivedError):
        return Variant("err", (send_error_to_wit(r.error), _opt_bytes(r.context)))
    source, msg = r
    return Variant("ok", (address_to_wit(source), message_to_wit(msg)))


def send_and_await_to_wit(
    r: tuple[Address, GuestMessage] | SendError,
) -> tuple[Record, Any] | Record:
    """``result<tuple<address, message>, send-error>``: a tuple or a record, so untagged."""
    if isinstance(r, SendError):
        return send_error_to_wit(r)
    source, msg = r
    return (address_to_wit(source), message_to_wit(msg))


def spawn_result_to_wit(r: ProcessId | SpawnError) -> Record | str:
    """``result<process-id, spawn-error>``: a record or an enum string, so untagged."""
    if isinstance(r, SpawnError):
        return r.value
    return process_id_to_wit(r)


# --- on-exit --------------------------------------------------------------------------------


def on_exit_to_wit(on_exit: OnExit) -> Variant:
    if isinstance(on_exit, OnExitNone):
        return Variant("none")
    if isinstance(on_exit, OnExitRestart):
        return Variant("restart")
    return Variant(
        "requests",
        [
            (address_to_wit(target), request_to_wit(req), blob_to_wit(blob))
            for target, req, blob in on_exit.requests
        ],
    )


def on_exit_from_wit(v: Any, limits: GuestLimits = DEFAULT_LIMITS) -> OnExit:
    if not isinstance(v, Variant):
        raise GuestError("on-exit: expected a variant")
    if v.tag == "none":
        return OnExitNone()
    if v.tag == "restart":
        return OnExitRestart()
    if v.tag == "requests":
        items = _list(v.payload, "on-exit requests", limits.max_requests)
        reqs = []
        for item in items:
            target, req, blob = _tuple(item, 3, "on-exit request")
            reqs.append(
                (
                    address_from_wit(target, limits),
                    request_from_wit(req, limits),
                    blob_from_wit(blob, limits),
                )
            )
        return OnExitRequests(tuple(reqs))
    raise GuestError(f"on-exit: unknown case {v.tag!r}")
