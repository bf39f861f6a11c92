"""The thread bridge: :class:`kernel.api.ProcessContext` for one process.

Its methods run on the process's own thread. The message rules run right here
(:class:`kernel.messages.MessageState`, owned by this thread); whatever touches the kernel's
tables (routing, capabilities, spawn) runs on the kernel's asyncio loop through
``asyncio.run_coroutine_threadsafe`` and the thread waits for it; ``receive`` waits on the
process's :class:`kernel.queue.Inbox`. :meth:`stop` (kill, shutdown) makes a blocked call
raise :class:`ProcessStopped`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from hnet import (
    Address,
    Capability,
    KernelMessage,
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
    ProcessCrashed,
    ProcessStopped,
    Received,
    ReceivedError,
    SpawnError,
)
from kernel.messages import MessageState
from kernel.queue import Inbox, InboxItem, WrappedError

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.table import ProcessEntry

__all__ = ["ProcessBridge"]

log = structlog.get_logger(component="kernel")

#: requests of one process awaiting responses at once (each holds its context until its
#: response or its timeout); one more crashes the process (a guest bug, contained)
MAX_CONTEXTS = 65_536
T = TypeVar("T")

#: trusted capabilities a process received in messages and may save (the newest kept)
RECEIVED_CAPS_MAX = 1024


class ProcessBridge:
    def __init__(
        self,
        kernel: Kernel,
        entry: ProcessEntry,
        inbox: Inbox,
        generation: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._kernel = kernel
        self._entry = entry
        self._inbox = inbox
        self.generation = generation
        self._loop = loop
        self._our = entry.address
        self.messages = MessageState(entry.address)
        #: items taken from the inbox during send-and-await, for later receives
        self._deferred: list[InboxItem] = []
        self._received_caps: OrderedDict[Capability, bytes] = OrderedDict()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._inflight: set[concurrent.futures.Future[Any]] = set()

    # --- plumbing --------------------------------------------------------------------------

    def stop(self) -> None:
        """From any thread: blocked and later calls raise :class:`ProcessStopped`."""
        self._stopped.set()
        self._inbox.close()
        with self._lock:
            pending = list(self._inflight)
        for fut in pending:
            fut.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the kernel's loop and wait for its result."""
        if self._stopped.is_set():
            coro.close()
            raise ProcessStopped("process stopped")
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the kernel is gone
            coro.close()
            raise ProcessStopped("kernel stopped") from None
        with self._lock:
            self._inflight.add(fut)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise ProcessStopped("process stopped") from None
        finally:
            with self._lock:
                self._inflight.discard(fut)

    def _next(self) -> InboxItem:
        item = self._inbox.get()
        if self._stopped.is_set():
            raise ProcessStopped("process stopped")
        return item

    def _take(self, item: InboxItem) -> Received:
        """Deliver an admitted item: note trusted caps, cancel its timer."""
        if isinstance(item, KernelMessage):
            m = item.message
            caps = m.capabilities if isinstance(m, Request) else m.response.capabilities
            for cap, sig in caps:
                # trusted: caps from a local sender (filtered by our kernel); caps claiming
                # our node (verified on arrival); caps issued on the very node that sent them
                # (it vouches for its own). Others are untrusted and cannot be saved.
                if (
                    item.source.node == self._our.node
                    or cap.issuer.node == self._our.node
                    or cap.issuer.node == item.source.node
                ):
                    self._received_caps[cap] = sig
                    self._received_caps.move_to_end(cap)
                    if len(self._received_caps) > RECEIVED_CAPS_MAX:
                        self._received_caps.popitem(last=False)
        rid = item.id
        ctx = self.messages.contexts.get(rid)
        is_request = isinstance(item, KernelMessage) and isinstance(item.message, Request)
        if ctx is not None and not is_request:
            self._loop.call_soon_threadsafe(self._kernel._cancel_timer, self._entry, ctx.token)
        return self.messages.deliver(item)

    def _send(self, km: KernelMessage, timeout: int | None, token: int) -> None:
        self._call(self._kernel._send_from(self._entry, self.generation, km, timeout, token))

    # --- ProcessContext: system ------------------------------------------------------------

    def print_to_terminal(self, verbosity: int, message: str) -> None:
        self._entry.output.write(message if message.endswith("\n") else message + "\n")
        report = log.info if verbosity == 0 else log.debug
        report("process printed", process=str(self._entry.pid), text=message.rstrip("\n"))

    def our(self) -> Address:
        return self._our

    def get_on_exit(self) -> OnExit:
        return self._entry.on_exit

    def set_on_exit(self, on_exit: OnExit) -> None:
        self._call(self._kernel._set_on_exit(self._entry, on_exit))

    def get_state(self) -> bytes | None:
        return self._kernel.state.get(self._entry.pid)

    def set_state(self, data: bytes) -> None:
        self._kernel.state.set(self._entry.pid, data)

    def clear_state(self) -> None:
        self._kernel.state.clear(self._entry.pid)

    def spawn(
        self,
        name: str | None,
        wasm_path: str,
        on_exit: OnExit,
        request_capabilities: list[Capability],
        grant_capabilities: list[tuple[ProcessId, str]],
        public: bool,
    ) -> ProcessId | SpawnError:
        try:
            return self._call(
                self._kernel._spawn_child(
                    self._entry,
                    name,
                    wasm_path,
                    on_exit,
                    list(request_capabilities),
                    list(grant_capabilities),
                    public,
                )
            )
        except ValueError as e:  # a name that makes no valid process id: the guest's bug
            raise ProcessCrashed(f"spawn: {e}") from None

    # --- capabilities ----------------------------------------------------------------------

    def save_capabilities(self, caps: list[Capability]) -> None:
        received = {c: self._received_caps[c] for c in caps if c in self._received_caps}
        self._call(self._kernel._save_capabilities(self._entry, list(caps), received))

    def drop_capabilities(self, caps: list[Capability]) -> None:
        self._call(self._kernel._drop_capabilities(self._entry, list(caps)))

    def our_capabilities(self) -> list[Capability]:
        return self._call(self._kernel._our_capabilities(self._entry))

    # --- messages --------------------------------------------------------------------------

    def receive(self) -> Received:
        while True:
            item = self._deferred.pop(0) if self._deferred else self._next()
            if self.messages.admit(item):
                return self._take(item)

    def has_blob(self) -> bool:
        return self.messages.last_message_blobbed

    def get_blob(self) -> LazyLoadBlob | None:
        return self.messages.last_blob if self.messages.last_message_blobbed else None

    def last_blob(self) -> LazyLoadBlob | None:
        return self.messages.last_blob

    def send_request(
        self,
        target: Address,
        request: Request,
        context: bytes | None,
        blob: LazyLoadBlob | None,
    ) -> None:
        if request.expects_response is not None and len(self.messages.contexts) >= MAX_CONTEXTS:
            # each awaits its timer, which a guest may set to years: a bound, not a leak
            raise ProcessCrashed(f"over {MAX_CONTEXTS} requests awaiting their responses")
        new = self.messages.new_request(target, request, context, blob)
        self._send(new.km, new.timeout, new.token)

    def send_requests(
        self,
        requests: list[tuple[Address, Request, bytes | None, LazyLoadBlob | None]],
    ) -> None:
        for target, request, context, blob in requests:
            self.send_request(target, request, context, blob)

    def send_response(self, response: Response, blob: LazyLoadBlob | None) -> None:
        km = self.messages.new_response(response, blob)
        if km is None:
            log.warning(
                "send_response with no prompting message: dropped", process=str(self._entry.pid)
            )
            self._entry.output.write("kernel: need a prompting message to send a response\n")
            return
        self._call(self._kernel._send_from(self._entry, self.generation, km, None, 0))

    def send_and_await_response(
        self, target: Address, request: Request, blob: LazyLoadBlob | None
    ) -> tuple[Address, GuestMessage] | SendError:
        if request.expects_response is None:
            raise ProcessCrashed("send_and_await_response: the request must expect a response")
        if target == self._our:
            raise ProcessCrashed("send_and_await_response to ourselves would deadlock")
        new = self.messages.new_request(target, request, None, blob)
        rid = new.km.id
        self._send(new.km, new.timeout, new.token)
        # the awaited response may already be among the deferred items
        for i, item in enumerate(self._deferred):
            if _answers(item, rid) and self.messages.admit(item):
                del self._deferred[i]
                return _awaited(self._take(item))
        while True:
            item = self._next()
            if not self.messages.admit(item):
                continue
            if _answers(item, rid):
                return _awaited(self._take(item))
            if len(self._deferred) >= self._inbox.max_messages:
                # still bounded while we wait: what does not fit is dropped, like a full inbox
                log.warning("inbox full while awaiting a response: dropped", process=str(self._our))
                continue
            self._deferred.append(item)  # for a later receive


def _answers(item: InboxItem, rid: int) -> bool:
    """A response or error for request ``rid`` (a request reusing the id does not count)."""
    if item.id != rid:
        return False
    return isinstance(item, WrappedError) or isinstance(item.message, ResponseMessage)


def _awaited(r: Received) -> tuple[Address, GuestMessage] | SendError:
    if isinstance(r, ReceivedError):
        return r.error
    return r
