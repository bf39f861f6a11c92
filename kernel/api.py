"""The contract between the kernel and a process runtime (the Wasm host, or a Python test process).

A process runs on its own thread (wasmtime has no async API, so a guest blocks in ``receive``).
What the guest may call is :class:`ProcessContext`: one method per import of the WIT interface
``hyperware:process/standard@1.0.0`` (``wit/``; docs/kernel.md), with hnet's own message types.
The kernel implements it, bridging each call to its asyncio loop; every method may be called
only from the process's own thread and may block that thread (never the loop).

A runtime is a :class:`ProcessRuntime`: the kernel calls :meth:`ProcessRuntime.run` on the
process's thread; it returns when the guest returns from ``init``, raises
:class:`ProcessCrashed` on a trap (or any failure of the guest), and ends promptly with
:class:`ProcessStopped` once :meth:`ProcessRuntime.interrupt` was called from another thread
(kill, shutdown, the runaway watchdog).

Capabilities in guest-facing requests and responses are ``(Capability, b"")`` pairs: a guest
never sees or makes signatures; the kernel signs what it attaches and verifies what it receives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeAlias

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

__all__ = [
    "GuestMessage",
    "OnExit",
    "OnExitNone",
    "OnExitRequests",
    "OnExitRestart",
    "ProcessContext",
    "ProcessCrashed",
    "ProcessRuntime",
    "ProcessStopped",
    "Received",
    "ReceivedError",
    "SpawnError",
]

#: ``message``: a request, or a response with the context its request was sent with.
GuestMessage: TypeAlias = Request | ResponseMessage


@dataclass(frozen=True, slots=True)
class ReceivedError:
    """``receive``'s error arm: a message this process sent was not delivered."""

    error: SendError
    context: bytes | None


#: ``receive() -> result<tuple<address, message>, tuple<send-error, option<context>>>``
Received: TypeAlias = tuple[Address, GuestMessage] | ReceivedError


@dataclass(frozen=True, slots=True)
class OnExitNone:
    pass


@dataclass(frozen=True, slots=True)
class OnExitRestart:
    pass


@dataclass(frozen=True, slots=True)
class OnExitRequests:
    requests: tuple[tuple[Address, Request, LazyLoadBlob | None], ...]


OnExit: TypeAlias = OnExitNone | OnExitRestart | OnExitRequests


class SpawnError(enum.Enum):
    NAME_TAKEN = "name-taken"
    NO_FILE_AT_PATH = "no-file-at-path"


class ProcessCrashed(Exception):
    """The guest trapped, panicked or could not be instantiated (the message says which)."""


class ProcessStopped(Exception):
    """The process was interrupted (killed, shut down, or stopped by the watchdog).

    Raised out of a blocking :class:`ProcessContext` call once the process is stopped, so the
    guest's thread unwinds (in a Wasm guest, as a trap)."""


class ProcessContext(Protocol):
    """The 19 imports of ``standard``, as the kernel offers them to one process."""

    def print_to_terminal(self, verbosity: int, message: str) -> None: ...

    def our(self) -> Address: ...

    def get_on_exit(self) -> OnExit: ...

    def set_on_exit(self, on_exit: OnExit) -> None: ...

    def get_state(self) -> bytes | None: ...

    def set_state(self, data: bytes) -> None: ...

    def clear_state(self) -> None: ...

    def spawn(
        self,
        name: str | None,
        wasm_path: str,
        on_exit: OnExit,
        request_capabilities: list[Capability],
        grant_capabilities: list[tuple[ProcessId, str]],
        public: bool,
    ) -> ProcessId | SpawnError: ...

    def save_capabilities(self, caps: list[Capability]) -> None: ...

    def drop_capabilities(self, caps: list[Capability]) -> None: ...

    def our_capabilities(self) -> list[Capability]: ...

    def receive(self) -> Received:
        """Block until the next message (or failure report) for this process."""
        ...

    def has_blob(self) -> bool: ...

    def get_blob(self) -> LazyLoadBlob | None: ...

    def last_blob(self) -> LazyLoadBlob | None: ...

    def send_request(
        self,
        target: Address,
        request: Request,
        context: bytes | None,
        blob: LazyLoadBlob | None,
    ) -> None: ...

    def send_requests(
        self,
        requests: list[tuple[Address, Request, bytes | None, LazyLoadBlob | None]],
    ) -> None: ...

    def send_response(self, response: Response, blob: LazyLoadBlob | None) -> None: ...

    def send_and_await_response(
        self, target: Address, request: Request, blob: LazyLoadBlob | None
    ) -> tuple[Address, GuestMessage] | SendError: ...


class ProcessRuntime(Protocol):
    """One process's code: a Wasm component, or Python code in the tests."""

    def run(self, ctx: ProcessContext) -> None:
        """Run the process on the calling thread until it returns from ``init``."""
        ...

    def interrupt(self) -> None:
        """From any thread: make :meth:`run` end soon with :class:`ProcessStopped`."""
        ...
