"""The process table: one :class:`ProcessEntry` per local process, keyed by process id."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hnet import Address, Capability, ProcessId
from kernel.api import OnExit, OnExitNone, OnExitRequests, OnExitRestart, ProcessRuntime
from kernel.backoff import RestartBackoff
from kernel.output import OutputRing
from kernel.queue import Inbox
from kernel.states import Event, State, transition

if TYPE_CHECKING:
    import hnet
    from kernel.bridge import ProcessBridge

__all__ = ["ProcessEntry", "ProcessInfo", "ProcessTable", "on_exit_name"]


def on_exit_name(on_exit: OnExit) -> str:
    if isinstance(on_exit, OnExitRestart):
        return "Restart"
    if isinstance(on_exit, OnExitRequests):
        return "Requests"
    assert isinstance(on_exit, OnExitNone)
    return "None"


@dataclass
class ProcessEntry:
    pid: ProcessId
    address: Address
    make_runtime: Callable[[], ProcessRuntime]
    wasm_path: str
    on_exit: OnExit
    public: bool
    backoff: RestartBackoff
    state: State = State.STARTING
    #: one per start; reports from an older start's thread are ignored
    generation: int = 0
    inbox: Inbox | None = None
    bridge: ProcessBridge | None = None
    runtime: ProcessRuntime | None = None
    thread: threading.Thread | None = None
    registration: hnet.Registration | None = None
    restart_timer: asyncio.TimerHandle | None = None
    #: token -> timer of an outstanding request
    timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    output: OutputRing = field(default_factory=OutputRing)
    restarts: int = 0
    last_exit: str = ""

    def fire(self, event: Event) -> State:
        self.state = transition(self.state, event)
        return self.state


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One row of ``hnet ps``."""

    process: str
    state: str
    public: bool
    on_exit: str
    wasm_path: str
    capabilities: tuple[Capability, ...]
    restarts: int
    queued: int
    last_exit: str

    def to_json(self) -> dict[str, object]:
        return {
            "process": self.process,
            "state": self.state,
            "public": self.public,
            "on_exit": self.on_exit,
            "wasm_path": self.wasm_path,
            "capabilities": [
                {"issuer": str(c.issuer), "params": c.params} for c in self.capabilities
            ],
            "restarts": self.restarts,
            "queued": self.queued,
            "last_exit": self.last_exit,
        }


class ProcessTable:
    def __init__(self) -> None:
        self._by_id: dict[ProcessId, ProcessEntry] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, pid: object) -> bool:
        return pid in self._by_id

    def __iter__(self) -> Iterator[ProcessEntry]:
        return iter(list(self._by_id.values()))

    def get(self, pid: ProcessId) -> ProcessEntry | None:
        return self._by_id.get(pid)

    def add(self, entry: ProcessEntry) -> None:
        if entry.pid in self._by_id:
            raise ValueError(f"process {entry.pid} exists")
        self._by_id[entry.pid] = entry

    def remove(self, pid: ProcessId) -> ProcessEntry | None:
        return self._by_id.pop(pid, None)
