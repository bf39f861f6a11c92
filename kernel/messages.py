"""The reference's message rules for one process, sans-I/O: ids, rsvp, inherit, contexts,
prompting message and blobs (docs/kernel.md). Used on the process's thread only; the kernel
does the routing and runs the timers.

- A new request's id is a random u64 not in use by an outstanding context; with ``inherit``
  and a prompting message, it is the prompting message's id instead.
- rsvp: our own address if the request expects a response; else, with ``inherit`` and a
  prompting message, that message's rsvp; else none.
- blob: the one given; else, with ``inherit``, the last blob received; else none.
- A request that expects a response records a context (the caller's bytes and the prompting
  message of the moment) under its id, and the kernel starts its timer.
- A response or error is taken in only while a context exists for its id (so a request sent
  without ``expects_response`` never gets its response); taking it in removes the context and
  restores the prompting message the request was sent under.
- A request taken in becomes the prompting message if someone awaits the reply (it expects a
  response or has an rsvp). A response goes to ``prompting.rsvp`` or ``prompting.source``
  with the prompting request's id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from hnet import (
    Address,
    KernelMessage,
    LazyLoadBlob,
    Request,
    Response,
    ResponseMessage,
    SendError,
    SendErrorKind,
)
from kernel.api import Received, ReceivedError
from kernel.queue import InboxItem, WrappedError

__all__ = ["Context", "MessageState", "NewRequest"]

_U64 = 1 << 64


def _random_u64() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True, slots=True)
class Context:
    """An outstanding request's context: what ``receive`` hands back with its response."""

    context: bytes | None
    prompting: KernelMessage | None
    #: names the timer set for this context (a stale timer for a reused id is ignored)
    token: int


@dataclass(frozen=True, slots=True)
class NewRequest:
    km: KernelMessage
    #: seconds until a Timeout, if the request expects a response
    timeout: int | None
    token: int


class MessageState:
    def __init__(self, our: Address, rng: Callable[[], int] = _random_u64) -> None:
        self.our = our
        self._rng = rng
        self.prompting: KernelMessage | None = None
        self.last_blob: LazyLoadBlob | None = None
        self.last_message_blobbed = False
        self.contexts: dict[int, Context] = {}
        self._tokens = 0

    # --- sending ---------------------------------------------------------------------------

    def new_request(
        self,
        target: Address,
        request: Request,
        context: bytes | None,
        blob: LazyLoadBlob | None,
    ) -> NewRequest:
        prompt = self.prompting
        if request.inherit and prompt is not None:
            rid = prompt.id
        else:
            while True:
                rid = self._rng() % _U64
                if rid not in self.contexts:
                    break
        if blob is None and request.inherit:
            blob = self.last_blob
        if request.expects_response is not None:
            rsvp: Address | None = self.our
        elif request.inherit and prompt is not None:
            rsvp = prompt.rsvp
        else:
            rsvp = None
        self._tokens += 1
        token = self._tokens
        if request.expects_response is not None:
            self.contexts[rid] = Context(context, prompt, token)
        km = KernelMessage(
            id=rid, source=self.our, target=target, rsvp=rsvp, message=request, lazy_load_blob=blob
        )
        return NewRequest(km, request.expects_response, token)

    def new_response(self, response: Response, blob: LazyLoadBlob | None) -> KernelMessage | None:
        """The response to the prompting message; None if there is none to answer."""
        prompt = self.prompting
        if prompt is None:
            return None
        if response.inherit:
            blob = self.last_blob
        return KernelMessage(
            id=prompt.id,
            source=self.our,
            target=prompt.rsvp if prompt.rsvp is not None else prompt.source,
            rsvp=None,
            message=ResponseMessage(response, None),
            lazy_load_blob=blob,
        )

    def forget(self, rid: int, token: int) -> None:
        """Drop the context of a request that could not be sent at all."""
        ctx = self.contexts.get(rid)
        if ctx is not None and ctx.token == token:
            del self.contexts[rid]

    # --- receiving -------------------------------------------------------------------------

    def admit(self, item: InboxItem) -> bool:
        """Whether ``item`` reaches the process at all: requests always; responses and errors
        only while a context is outstanding for their id (for a timer's error: the very
        context that timer was set for)."""
        if isinstance(item, WrappedError):
            ctx = self.contexts.get(item.id)
            return ctx is not None and (item.token is None or item.token == ctx.token)
        if isinstance(item.message, ResponseMessage):
            return item.id in self.contexts
        return True

    def deliver(self, item: InboxItem) -> Received:
        """Take in an admitted item: update the prompting message and blobs, hand back what
        ``receive`` returns (capability signatures removed: a guest never sees them)."""
        if isinstance(item, WrappedError):
            self.last_message_blobbed = False
            ctx = self.contexts.pop(item.id, None)
            if ctx is None:
                return ReceivedError(item.error, None)
            self.prompting = ctx.prompting
            return ReceivedError(item.error, ctx.context)
        km = item
        if km.lazy_load_blob is not None:
            self.last_blob = km.lazy_load_blob
            self.last_message_blobbed = True
            km = replace(km, lazy_load_blob=None)
        else:
            self.last_message_blobbed = False
        m = km.message
        if isinstance(m, Request):
            if m.expects_response is not None or km.rsvp is not None:
                self.prompting = km
            req = replace(m, capabilities=tuple((c, b"") for c, _ in m.capabilities))
            return (km.source, req)
        ctx = self.contexts.pop(km.id, None)
        if ctx is None:  # not admitted: the reference makes it the prompting message
            self.prompting = km
            context = None
        else:
            self.prompting = ctx.prompting
            context = ctx.context
        resp = replace(m.response, capabilities=tuple((c, b"") for c, _ in m.response.capabilities))
        return (km.source, ResponseMessage(resp, context))

    @staticmethod
    def timeout_error(km: KernelMessage) -> SendError:
        """What the sender of ``km`` gets when its timer runs out (or it cannot be routed)."""
        return SendError(
            kind=SendErrorKind.TIMEOUT,
            target=km.target,
            message=km.message,
            lazy_load_blob=km.lazy_load_blob,
        )
