"""The kernel: the process table, routing between local processes and through hnet's Node to
other nodes, the capability checks, on-exit, spawn and kill (docs/kernel.md).

Everything here runs on the node's asyncio loop; processes run on their own threads and reach
the kernel through their :class:`kernel.bridge.ProcessBridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import hnet
from hnet import (
    Address,
    Capability,
    KernelMessage,
    LazyLoadBlob,
    ProcessId,
    Request,
    ResponseMessage,
    SendError,
)
from kernel import caps as capmod
from kernel.api import (
    OnExit,
    OnExitNone,
    OnExitRequests,
    OnExitRestart,
    ProcessCrashed,
    ProcessRuntime,
    ProcessStopped,
    SpawnError,
)
from kernel.backoff import RestartBackoff
from kernel.bridge import ProcessBridge
from kernel.caps import CapabilityStore
from kernel.messages import MessageState
from kernel.modules import ModuleHost, RuntimeModule
from kernel.queue import INBOX_BYTES, INBOX_MESSAGES, Inbox, WrappedError
from kernel.state import SqliteStateStore, StateStore
from kernel.states import Event, State
from kernel.table import ProcessEntry, ProcessInfo, ProcessTable, on_exit_name

__all__ = ["EXEMPT", "RESERVED", "TERMINAL", "Kernel", "RuntimeFactory"]

log = structlog.get_logger(component="kernel")

#: ``runtime_factory(process_id, wasm_path)``: the process's runtime (raises OSError, e.g.
#: FileNotFoundError, when there is no such file)
RuntimeFactory = Callable[[ProcessId, str], ProcessRuntime]

#: Sources that may message any local process (the reference's kernel, state and vfs).
EXEMPT = frozenset(
    ProcessId.parse(p) for p in ("kernel:distro:sys", "state:distro:sys", "vfs:distro:sys")
)
#: Process ids no process may take (the exempt ones and the net module, which hnet serves).
RESERVED = EXEMPT | {ProcessId("net", "distro", "sys")}
#: Where ``Kernel.request`` sends from by default (like the reference terminal's ``m``).
TERMINAL = ProcessId("terminal", "terminal", "sys")
#: How long ``aclose`` waits for each process thread to end.
JOIN_TIMEOUT = 2.0


class _Endpoint:
    """A kernel-side sender (``Kernel.request``): trusted like the kernel itself (it may
    message any local process and the network; anyone may answer it)."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.waiting: dict[int, asyncio.Future[KernelMessage | SendError]] = {}
        self.registration: hnet.Registration | None = None

    def deliver(self, km: KernelMessage) -> bool:
        fut = self.waiting.get(km.id)
        if fut is None or fut.done() or not isinstance(km.message, ResponseMessage):
            return False
        fut.set_result(km)
        return True

    def fail(self, rid: int, error: SendError) -> None:
        fut = self.waiting.get(rid)
        if fut is not None and not fut.done():
            fut.set_result(error)


class Kernel(ModuleHost):
    """The kernel of one node. Create it and :meth:`start` it on the node's loop.

    ``runtime_factory`` makes a process's runtime from its wasm path (the Wasm host's job);
    ``state`` defaults to SQLite at ``home/kernel/state.sqlite``; ``restart_unit`` is the
    backoff unit of on-exit Restart (the reference's 1 s).
    """

    def __init__(
        self,
        node: hnet.Node,
        home: Path,
        *,
        runtime_factory: RuntimeFactory | None = None,
        state: StateStore | None = None,
        key: Ed25519PrivateKey | None = None,
        restart_unit: float = 1.0,
        inbox_messages: int = INBOX_MESSAGES,
        inbox_bytes: int = INBOX_BYTES,
    ) -> None:
        self.node = node
        self.home = home
        self.our_node: str = node.name
        self.runtime_factory = runtime_factory
        self._own_state = state is None
        self.state: StateStore = state or SqliteStateStore(home / "kernel" / "state.sqlite")
        self.caps = CapabilityStore(self.our_node, key if key is not None else node.config.key)
        self.table = ProcessTable()
        self.restart_unit = restart_unit
        self.inbox_messages = inbox_messages
        self.inbox_bytes = inbox_bytes
        self._endpoints: dict[ProcessId, _Endpoint] = {}
        self._modules: dict[ProcessId, RuntimeModule] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.network_cap = capmod.network(self.our_node)

    # --- public API ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("kernel not started")
        return self._loop

    async def spawn(
        self,
        process: ProcessId | str,
        *,
        runtime: Callable[[], ProcessRuntime] | None = None,
        wasm_path: str = "",
        on_exit: OnExit | None = None,
        capabilities: Iterable[Capability] = (),
        networking: bool = False,
        public: bool = False,
    ) -> ProcessId | SpawnError:
        """Install and start a process (package install, tests). Trusted: ``capabilities``
        are granted as given (signed by us), like the reference kernel's own
        InitializeProcess. The process also gets messaging to itself, and the network
        capability if ``networking``. ``runtime`` makes its runtime (called again on each
        restart); without it, ``runtime_factory(process, wasm_path)`` does."""
        pid = process if isinstance(process, ProcessId) else ProcessId.parse(process)
        if pid in self.table or pid in self._endpoints or pid in RESERVED:
            return SpawnError.NAME_TAKEN
        make = self._maker(pid, runtime, wasm_path)
        first = await self._first_runtime(make)
        if first is None:
            return SpawnError.NO_FILE_AT_PATH
        grant = list(capabilities)
        if networking:
            grant.append(self.network_cap)
        entry = self._install(pid, make, wasm_path, on_exit or OnExitNone(), public)
        if entry is None:
            return SpawnError.NAME_TAKEN
        self.caps.add(pid, grant)
        self._start(entry, first)
        return pid

    async def kill(self, process: ProcessId | str) -> bool:
        """Stop a process and remove it (taking back the caps it issued); False if there is
        no such process."""
        pid = process if isinstance(process, ProcessId) else ProcessId.parse(process)
        entry = self.table.get(pid)
        if entry is None:
            return False
        await self._remove(entry, revoke=True)
        log.info("process killed", process=str(pid))
        return True

    def ps(self) -> list[ProcessInfo]:
        """The processes, with their state and capabilities (``hnet ps``)."""
        return [
            ProcessInfo(
                process=str(e.pid),
                state=e.state.value,
                public=e.public,
                on_exit=on_exit_name(e.on_exit),
                wasm_path=e.wasm_path,
                capabilities=tuple(c for c, _ in self.caps.all(e.pid)),
                restarts=e.restarts,
                queued=len(e.inbox) if e.inbox is not None else 0,
                last_exit=e.last_exit,
            )
            for e in self.table
        ]

    def output(self, process: ProcessId | str) -> str:
        """A process's recent printouts and crash reports."""
        pid = process if isinstance(process, ProcessId) else ProcessId.parse(process)
        entry = self.table.get(pid)
        return "" if entry is None else entry.output.contents()

    def process_output(self, process: ProcessId, text: str) -> None:
        """Add ``text`` to a process's output ring (a runtime's stdout/stderr; any thread)."""
        entry = self.table.get(process)
        if entry is not None:
            entry.output.write(text)

    def grant_capabilities(self, process: ProcessId, caps: Iterable[Capability]) -> bool:
        """Give ``process`` these caps (signed by us): the installer's grant_capabilities."""
        if process not in self.table:
            return False
        self.caps.add(process, caps)
        return True

    def drop_capabilities(self, process: ProcessId, caps: Iterable[Capability]) -> None:
        self.caps.drop(process, caps)

    def has_capability(self, process: ProcessId, cap: Capability) -> bool:
        return self.caps.has(process, cap)

    async def request(
        self,
        target: Address,
        body: bytes,
        *,
        timeout: float,
        source: ProcessId = TERMINAL,
        metadata: str | None = None,
        blob: LazyLoadBlob | None = None,
    ) -> KernelMessage | SendError:
        """Send a request from the kernel-side ``source`` and wait for its response (the
        whole KernelMessage: ``message.response``, ``lazy_load_blob``), or the SendError
        (Offline from the network, Timeout). ``hnet send --await`` uses it."""
        ep = await self._endpoint(source)
        rid = secrets.randbits(64)
        while rid in ep.waiting:
            rid = secrets.randbits(64)
        req = Request(
            inherit=False,
            expects_response=max(1, int(timeout + 0.999)),
            body=body,
            metadata=metadata,
            capabilities=(),
        )
        km = KernelMessage(
            id=rid,
            source=ep.address,
            target=target,
            rsvp=ep.address,
            message=req,
            lazy_load_blob=blob,
        )
        fut: asyncio.Future[KernelMessage | SendError] = self.loop.create_future()
        ep.waiting[rid] = fut
        try:
            await self._route(km)
            try:
                async with asyncio.timeout(timeout):
                    return await fut
            except TimeoutError:
                return MessageState.timeout_error(km)
        finally:
            del ep.waiting[rid]

    async def send(
        self,
        target: Address,
        body: bytes,
        *,
        source: ProcessId = TERMINAL,
        metadata: str | None = None,
        blob: LazyLoadBlob | None = None,
    ) -> None:
        """Send a request that expects no response from the kernel-side ``source``."""
        ep = await self._endpoint(source)
        req = Request(
            inherit=False, expects_response=None, body=body, metadata=metadata, capabilities=()
        )
        km = KernelMessage(
            id=secrets.randbits(64),
            source=ep.address,
            target=target,
            rsvp=None,
            message=req,
            lazy_load_blob=blob,
        )
        await self._route(km)

    def add_module(self, module: RuntimeModule) -> None:
        """Serve ``module.pid`` with a runtime module (``timer``, ``state``, ``vfs``: see
        :mod:`kernel.modules`); local messages to it reach ``module.received``."""
        pid = module.pid
        if pid in self.table or pid in self._endpoints or pid in self._modules:
            raise ValueError(f"{pid} is taken")
        module.attach(self)
        self._modules[pid] = module

    def module_send(self, km: KernelMessage) -> None:
        self._spawn_task(self._route(km))

    def module_has_capability(self, process: ProcessId, cap: Capability) -> bool:
        return self.caps.has(process, cap)

    def module_state(self) -> StateStore:
        return self.state

    async def aclose(self) -> None:
        """Stop every process (without revoking caps), unregister them, close the state."""
        if self._closed:
            return
        self._closed = True
        for module in self._modules.values():
            module.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        threads: list[threading.Thread] = []
        for entry in self.table:
            if entry.thread is not None:
                threads.append(entry.thread)
            await self._remove(entry, revoke=False)
        for ep in list(self._endpoints.values()):
            if ep.registration is not None:
                await ep.registration.close()
        self._endpoints.clear()
        for t in threads:
            if t is not threading.current_thread():
                await asyncio.to_thread(t.join, JOIN_TIMEOUT)
        if self._own_state:
            self.state.close()

    # --- starting and stopping -------------------------------------------------------------

    def _maker(
        self, pid: ProcessId, runtime: Callable[[], ProcessRuntime] | None, wasm_path: str
    ) -> Callable[[], ProcessRuntime]:
        if runtime is not None:
            return runtime
        factory = self.runtime_factory
        if factory is None:
            raise ValueError("no runtime given and the kernel has no runtime_factory")
        return lambda: factory(pid, wasm_path)

    async def _first_runtime(self, make: Callable[[], ProcessRuntime]) -> ProcessRuntime | None:
        """Make a runtime (off the loop: loading wasm may take a while); None: no such file."""
        try:
            return await asyncio.to_thread(make)
        except OSError as e:
            log.warning("cannot load process", error=str(e))
            return None

    def _install(
        self,
        pid: ProcessId,
        make: Callable[[], ProcessRuntime],
        wasm_path: str,
        on_exit: OnExit,
        public: bool,
    ) -> ProcessEntry | None:
        """Add a process to the table and register it with the node (None: its id is taken,
        here or in the node)."""
        if pid in self.table:
            return None
        try:
            registration = self.node.register(str(pid), self._network_handler(pid))
        except ValueError:
            return None
        entry = ProcessEntry(
            pid=pid,
            address=Address(self.our_node, pid),
            make_runtime=make,
            wasm_path=wasm_path,
            on_exit=on_exit,
            public=public,
            backoff=RestartBackoff(self.restart_unit),
        )
        self.table.add(entry)
        self.caps.ensure(pid)
        self.caps.add(pid, [capmod.messaging(entry.address)])
        entry.registration = registration
        return entry

    def _start(self, entry: ProcessEntry, runtime: ProcessRuntime) -> None:
        entry.generation += 1
        inbox = Inbox(self.inbox_messages, self.inbox_bytes)
        bridge = ProcessBridge(self, entry, inbox, entry.generation, self.loop)
        entry.inbox, entry.bridge, entry.runtime = inbox, bridge, runtime
        thread = threading.Thread(
            target=self._thread_main,
            args=(entry, entry.generation, runtime, bridge),
            name=f"process {entry.pid}",
            daemon=True,
        )
        entry.thread = thread
        thread.start()
        entry.fire(Event.STARTED)

    def _thread_main(
        self, entry: ProcessEntry, generation: int, runtime: ProcessRuntime, bridge: ProcessBridge
    ) -> None:
        """The process's thread: run it, then tell the kernel how it ended."""
        try:
            runtime.run(bridge)
            outcome = "returned"
        except ProcessStopped:
            outcome = "stopped"
        except ProcessCrashed as e:
            outcome = f"crashed: {e}"
            entry.output.write(f"process {entry.pid} ended with error:\n{e}\n")
        except BaseException as e:  # any failure of the guest is contained to it
            outcome = f"crashed: {type(e).__name__}: {e}"
            tb = "".join(traceback.format_exception(e))
            entry.output.write(f"process {entry.pid} ended with error:\n{tb}")
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody to tell
            self.loop.call_soon_threadsafe(self._exited, entry, generation, outcome)

    def _exited(self, entry: ProcessEntry, generation: int, outcome: str) -> None:
        if entry.generation != generation or entry.state not in (State.STARTING, State.RUNNING):
            return  # killed, or an older start
        if self.table.get(entry.pid) is not entry:
            return
        entry.last_exit = outcome
        if entry.bridge is not None:
            entry.bridge.stop()
        self._cancel_timers(entry)
        entry.inbox = None
        entry.fire(Event.EXITED)
        report = log.warning if outcome.startswith("crashed") else log.info
        report(
            "process exited",
            process=str(entry.pid),
            outcome=outcome,
            on_exit=on_exit_name(entry.on_exit),
        )
        on_exit = entry.on_exit
        if isinstance(on_exit, OnExitRestart):
            delay = entry.backoff.delay(self.loop.time())
            gen = entry.generation
            if delay <= 0:
                self._spawn_task(self._restart(entry, gen))
            else:
                entry.fire(Event.RESTART_SCHEDULED)
                entry.restart_timer = self.loop.call_later(
                    delay, lambda: self._spawn_task(self._restart(entry, gen))
                )
            return
        self._spawn_task(self._finish(entry, on_exit))

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the kernel keeps (and cancels on shutdown)."""
        if self._closed:
            coro.close()
            return
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, entry: ProcessEntry, on_exit: OnExit) -> None:
        """On-exit None or Requests: send the requests (never expecting a response), then
        remove the process."""
        if isinstance(on_exit, OnExitRequests):
            for target, request, blob in on_exit.requests:
                km = KernelMessage(
                    id=secrets.randbits(64),
                    source=entry.address,
                    target=target,
                    rsvp=None,
                    message=replace(
                        request,
                        expects_response=None,
                        capabilities=self.caps.filter_outgoing(entry.pid, request.capabilities),
                    ),
                    lazy_load_blob=blob,
                )
                await self._route(km)
        if self.table.get(entry.pid) is entry:
            await self._remove(entry, revoke=True)

    async def _restart(self, entry: ProcessEntry, generation: int) -> None:
        entry.restart_timer = None
        if self.table.get(entry.pid) is not entry or entry.generation != generation:
            return
        if entry.state not in (State.EXITED, State.RESTARTING):
            return
        try:
            runtime = await asyncio.to_thread(entry.make_runtime)
        except Exception as e:  # counts as an exit (the backoff applies)
            if self.table.get(entry.pid) is not entry or entry.state not in (
                State.EXITED,
                State.RESTARTING,
            ):
                return
            entry.fire(Event.RESTART)
            entry.restarts += 1
            entry.generation += 1
            entry.output.write(f"kernel: cannot restart {entry.pid}: {e}\n")
            self._exited(entry, entry.generation, f"crashed: cannot restart: {e}")
            return
        if self.table.get(entry.pid) is not entry or entry.state not in (
            State.EXITED,
            State.RESTARTING,
        ):
            return
        entry.fire(Event.RESTART)
        entry.restarts += 1
        self._start(entry, runtime)

    async def _remove(self, entry: ProcessEntry, *, revoke: bool) -> None:
        if self.table.get(entry.pid) is not entry:
            return
        if entry.state is not State.KILLED:
            entry.fire(Event.KILL)
        if entry.restart_timer is not None:
            entry.restart_timer.cancel()
            entry.restart_timer = None
        if entry.bridge is not None:
            entry.bridge.stop()
        if entry.runtime is not None:
            try:
                entry.runtime.interrupt()
            except Exception:
                log.exception("interrupting a process failed", process=str(entry.pid))
        self._cancel_timers(entry)
        entry.inbox = None
        self.table.remove(entry.pid)
        if revoke:
            self.caps.revoke_issued_by(entry.pid)
        self.caps.remove(entry.pid)
        if entry.registration is not None:
            reg, entry.registration = entry.registration, None
            await reg.close()

    # --- calls from process threads (run on the loop) --------------------------------------

    async def _set_on_exit(self, entry: ProcessEntry, on_exit: OnExit) -> None:
        entry.on_exit = on_exit

    async def _our_capabilities(self, entry: ProcessEntry) -> list[Capability]:
        return [c for c, _ in self.caps.all(entry.pid)]

    async def _save_capabilities(
        self, entry: ProcessEntry, caps: list[Capability], received: dict[Capability, bytes]
    ) -> None:
        """Tighter than the reference (which saves anything asked): a process may save only
        caps it holds already, caps it issued itself, and trusted caps it received in a
        message (from a local process; issued on our node and verified; or issued on the node
        that sent it), kept with the signature they came with. The rest are refused with a
        log line."""
        for cap in caps:
            if self.caps.has(entry.pid, cap):
                continue
            if cap.issuer == entry.address:
                self.caps.add(entry.pid, [cap])
            elif cap in received:
                self.caps.add_signed(entry.pid, [(cap, received[cap])])
            else:
                log.warning(
                    "capability not saved: not held or issued by the process",
                    process=str(entry.pid),
                    issuer=str(cap.issuer),
                    params=cap.params,
                )
                entry.output.write(
                    f"kernel: refused to save capability {cap.issuer} {cap.params}\n"
                )

    async def _drop_capabilities(self, entry: ProcessEntry, caps: list[Capability]) -> None:
        self.caps.drop(entry.pid, caps)

    async def _spawn_child(
        self,
        parent: ProcessEntry,
        name: str | None,
        wasm_path: str,
        on_exit: OnExit,
        request_caps: list[Capability],
        grant_caps: list[tuple[ProcessId, str]],
        public: bool,
    ) -> ProcessId | SpawnError:
        """``spawn`` from a process: the child is ``name:package:publisher`` of the parent;
        it gets the requested caps the parent may attach, messaging to itself and to the
        parent (and the parent messaging to it); each ``grant_caps`` entry gives that process
        ``(our@child, params)``."""
        if name is None:
            name = str(secrets.randbits(64))
        pid = ProcessId(name, parent.pid.package_name, parent.pid.publisher_node)
        if not pid.is_hypermap_safe():
            raise ValueError(f"{pid} is not a valid process id")
        if pid in self.table or pid in self._endpoints or pid in RESERVED:
            return SpawnError.NAME_TAKEN
        if self.runtime_factory is None:
            return SpawnError.NO_FILE_AT_PATH
        make = self._maker(pid, None, wasm_path)
        first = await self._first_runtime(make)
        if first is None:
            return SpawnError.NO_FILE_AT_PATH
        if pid in self.table:  # taken while we loaded it
            return SpawnError.NAME_TAKEN
        given = self.caps.filter_outgoing(parent.pid, request_caps)
        entry = self._install(pid, make, wasm_path, on_exit, public)
        if entry is None:
            return SpawnError.NAME_TAKEN
        self.caps.add_signed(pid, given)
        self.caps.add(pid, [capmod.messaging(parent.address)])
        self.caps.add(parent.pid, [capmod.messaging(entry.address)])
        for grantee, params in grant_caps:
            if grantee in self.table:
                self.caps.add(grantee, [Capability(entry.address, params)])
        self._start(entry, first)
        return pid

    async def _send_from(
        self,
        entry: ProcessEntry,
        generation: int,
        km: KernelMessage,
        timeout: int | None,
        token: int,
    ) -> None:
        """A message from a process: attach only the caps it may, start the timer of a request
        that expects a response, route it."""
        if entry.generation != generation or self.table.get(entry.pid) is not entry:
            raise ProcessStopped("process stopped")
        m = km.message
        if isinstance(m, Request):
            if m.capabilities:
                m = replace(m, capabilities=self.caps.filter_outgoing(entry.pid, m.capabilities))
                km = replace(km, message=m)
        elif m.response.capabilities:
            r = replace(
                m.response,
                capabilities=self.caps.filter_outgoing(entry.pid, m.response.capabilities),
            )
            km = replace(km, message=ResponseMessage(r, None))
        if timeout is not None:
            entry.timers[token] = self.loop.call_later(
                timeout, self._timer_fired, entry, generation, km, token
            )
        await self._route(km)

    def _timer_fired(
        self, entry: ProcessEntry, generation: int, km: KernelMessage, token: int
    ) -> None:
        entry.timers.pop(token, None)
        if entry.generation == generation and entry.inbox is not None:
            entry.inbox.put_error(WrappedError(km.id, MessageState.timeout_error(km), token))

    def _cancel_timer(self, entry: ProcessEntry, token: int) -> None:
        handle = entry.timers.pop(token, None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self, entry: ProcessEntry) -> None:
        for handle in entry.timers.values():
            handle.cancel()
        entry.timers.clear()

    # --- routing ---------------------------------------------------------------------------

    async def _endpoint(self, pid: ProcessId) -> _Endpoint:
        ep = self._endpoints.get(pid)
        if ep is None:
            if pid in self.table:
                raise ValueError(f"{pid} is a process, not a kernel endpoint")
            ep = _Endpoint(Address(self.our_node, pid))
            ep.registration = self.node.register(str(pid), self._endpoint_handler(ep))
            self._endpoints[pid] = ep
        return ep

    def _refuse(self, km: KernelMessage, why: str) -> None:
        """A message that may not or cannot be delivered: logged; the sender of a request
        that expects a response gets Timeout at once (the reference's throw_timeout)."""
        log.warning("message dropped", why=why, source=str(km.source), target=str(km.target))
        if km.source.node != self.our_node:
            return
        m = km.message
        if not isinstance(m, Request) or m.expects_response is None:
            return
        err = MessageState.timeout_error(km)
        ep = self._endpoints.get(km.source.process)
        if ep is not None:
            ep.fail(km.id, err)
            return
        src = self.table.get(km.source.process)
        if src is not None:
            src.output.write(f"kernel: {why}\n")
            if src.inbox is not None:
                src.inbox.put_error(WrappedError(km.id, err))

    def _trusted(self, pid: ProcessId) -> bool:
        return pid in EXEMPT or pid in self._endpoints or pid in self._modules

    async def _route(self, km: KernelMessage) -> None:
        """Route a message from a local process or endpoint."""
        src = km.source.process
        if km.target.node != self.our_node:
            if not self._trusted(src) and not self.caps.has(src, self.network_cap):
                self._refuse(
                    km, f"process {src} doesn't have capability to send networked messages"
                )
                return
            try:
                await self.node.send(km)
            except Exception as e:
                log.exception("sending to the network failed (local error)")
                self._refuse(km, f"cannot send to the network: {e}")
            return
        self._route_local(km)

    def _route_local(self, km: KernelMessage) -> None:
        src, dst = km.source.process, km.target.process
        module = self._modules.get(dst)
        if module is not None:  # runtime modules are public to local senders
            if not self._trusted(src) and src not in self.table:
                self._refuse(km, f"message from unknown process {src}")
                return
            try:
                module.received(km)
            except Exception:  # a bug of ours in the module: the sender is not at fault
                log.exception("runtime module failed (local error)", module=str(dst))
            return
        ep = self._endpoints.get(dst)
        target = self.table.get(dst)
        if ep is None and target is None:
            self._refuse(km, f"process {src} sent a message to non-existing {dst}")
            return
        if not self._trusted(src):
            if src not in self.table:
                self._refuse(km, f"message from unknown process {src}")
                return
            if (
                target is not None
                and not target.public
                and not self.caps.has(src, capmod.messaging(target.address))
            ):
                self._refuse(km, f"process {src} doesn't have capability to message process {dst}")
                return
        if ep is not None:
            if not ep.deliver(km):
                log.info("unexpected message dropped", target=str(dst))
            return
        assert target is not None
        self._put(target, km, remote=False)

    def _put(self, target: ProcessEntry, km: KernelMessage, *, remote: bool) -> None:
        inbox = target.inbox
        if inbox is None:
            why = f"process {target.pid} is not running"
        elif inbox.put(km):
            return
        else:
            why = f"inbox of {target.pid} full"
            if inbox.refused & (inbox.refused - 1) == 0:  # 1st, 2nd, 4th...: no log flood
                target.output.write(f"kernel: inbox full, {inbox.refused} messages refused\n")
        if remote:
            log.warning("message dropped", why=why, source=str(km.source))
        else:
            self._refuse(km, why)

    # --- from the network ------------------------------------------------------------------

    def _network_handler(self, pid: ProcessId) -> hnet.Handler:
        async def handle(d: hnet.Delivery) -> None:
            if isinstance(d, hnet.Incoming):
                self._from_network(pid, d.message)
            else:
                self._failed(pid, d)

        return handle

    def _endpoint_handler(self, ep: _Endpoint) -> hnet.Handler:
        async def handle(d: hnet.Delivery) -> None:
            if isinstance(d, hnet.Incoming):
                km = d.message
                if km.source.node == self.our_node:
                    self._route_local(km)
                elif not ep.deliver(km):
                    log.info("unexpected message dropped", target=str(ep.address))
            else:
                ep.fail(d.id, d.error)

        return handle

    def _from_network(self, pid: ProcessId, km: KernelMessage) -> None:
        if km.source.node == self.our_node:  # sent to us through the node by a local sender
            self._route_local(km)
            return
        entry = self.table.get(pid)
        if entry is None:
            log.info(
                "message for a missing process dropped", source=str(km.source), process=str(pid)
            )
            return
        if not self.caps.has(pid, self.network_cap):
            log.warning(
                "remote message dropped: the process lacks the network capability",
                process=str(pid),
                source=str(km.source),
            )
            return
        m = km.message
        if isinstance(m, Request):
            if m.capabilities:
                checked = capmod.verify_incoming(
                    m.capabilities, self.our_node, self.caps.public_key
                )
                km = replace(km, message=replace(m, capabilities=checked))
        elif m.response.capabilities:
            checked = capmod.verify_incoming(
                m.response.capabilities, self.our_node, self.caps.public_key
            )
            km = replace(
                km, message=ResponseMessage(replace(m.response, capabilities=checked), m.context)
            )
        self._put(entry, km, remote=True)

    def _failed(self, pid: ProcessId, d: hnet.Failed) -> None:
        """The network could not deliver a message this process sent (Offline, Timeout)."""
        entry = self.table.get(pid)
        if entry is not None and entry.inbox is not None:
            entry.inbox.put_error(WrappedError(d.id, d.error))
