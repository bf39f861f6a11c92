"""Constructors for the message types built on every message (the hot path's).

A frozen dataclass's ``__init__`` stores each field with ``object.__setattr__``; calling the
slot descriptor's ``__set__`` directly is the same store at about half the cost, and a plain
function saves the ``__init__`` frame. These types have no ``__post_init__`` (no validation
is skipped; checked at import), so a value built here equals, hashes and behaves exactly as
one built by its class. The decoder's fast path and the node's request and reply paths use
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hnet.core.wire.types import (
    Address,
    Capability,
    KernelMessage,
    LazyLoadBlob,
    Message,
    Request,
    Response,
    ResponseMessage,
)

__all__ = ["kernel_message", "request"]

SlotSetter = Callable[[object, object], None]
new_object = object.__new__


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[SlotSetter, ...]:
    """The slot descriptors' ``__set__`` for ``cls``'s fields, in order; raises if ``names``
    are not exactly its fields or it validates in ``__post_init__``."""
    fields = tuple(f.name for f in dataclasses.fields(cls))
    if fields != names or hasattr(cls, "__post_init__"):  # pragma: no cover - a types change
        raise RuntimeError(f"hnet.core.wire.build does not match {cls.__name__}")
    return tuple(cls.__dict__[name].__set__ for name in names)


RQ_INHERIT, RQ_EXPECTS, RQ_BODY, RQ_META, RQ_CAPS = _slot_setters(
    Request, ("inherit", "expects_response", "body", "metadata", "capabilities")
)
RS_INHERIT, RS_BODY, RS_META, RS_CAPS = _slot_setters(
    Response, ("inherit", "body", "metadata", "capabilities")
)
RM_RESPONSE, RM_CONTEXT = _slot_setters(ResponseMessage, ("response", "context"))
KM_ID, KM_SOURCE, KM_TARGET, KM_RSVP, KM_MESSAGE, KM_BLOB = _slot_setters(
    KernelMessage, ("id", "source", "target", "rsvp", "message", "lazy_load_blob")
)


def request(
    inherit: bool,
    expects_response: int | None,
    body: bytes,
    metadata: str | None,
    capabilities: tuple[tuple[Capability, bytes], ...],
) -> Request:
    """``Request(inherit, expects_response, body, metadata, capabilities)``."""
    r = new_object(Request)
    RQ_INHERIT(r, inherit)
    RQ_EXPECTS(r, expects_response)
    RQ_BODY(r, body)
    RQ_META(r, metadata)
    RQ_CAPS(r, capabilities)
    return r


def kernel_message(
    kid: int,
    source: Address,
    target: Address,
    rsvp: Address | None,
    message: Message,
    lazy_load_blob: LazyLoadBlob | None,
) -> KernelMessage:
    """``KernelMessage(kid, source, target, rsvp, message, lazy_load_blob)``."""
    km = new_object(KernelMessage)
    KM_ID(km, kid)
    KM_SOURCE(km, source)
    KM_TARGET(km, target)
    KM_RSVP(km, rsvp)
    KM_MESSAGE(km, message)
    KM_BLOB(km, lazy_load_blob)
    return km
