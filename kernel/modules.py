"""Runtime modules: kernel-side services addressed like processes (docs/kernel.md, "Runtime
modules").

A module receives the local messages routed to its process id and answers through the kernel,
as a trusted sender. None of them serves other nodes (as in the reference: a remote request to
a module never reaches it, since modules are not registered with the network).

- ``timer:distro:sys``: ``{"SetTimer": MS}`` (JSON) answers with an empty Response after MS
  milliseconds (at once for 0); ``"Debug"`` logs the active timers. A request that expects no
  response sets no timer (the reference's rule).
- ``state:distro:sys``: ``{"GetState": PID}``, ``{"SetState": PID}`` (bytes in the blob),
  ``{"DeleteState": PID}``; here only for the sender's own process id (the reference never
  exposes this module to userspace; we expose a process's own state and nothing else).
- ``vfs:distro:sys``: read-only package drives, ``{"path": ..., "action": ...}`` with
  ``Read``/``ReadToEnd``, ``ReadToString``, ``ReadDir``, ``Metadata``, ``Len``, ``Hash``;
  a read capability on the drive is required; anything that writes is refused (NoWriteCap).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

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
)

__all__ = [
    "STATE",
    "TIMER",
    "VFS",
    "Drives",
    "ModuleHost",
    "RuntimeModule",
    "StateModule",
    "TimerModule",
    "VfsModule",
    "vfs_read_cap",
]

log = structlog.get_logger(component="kernel")

TIMER = ProcessId("timer", "distro", "sys")
STATE = ProcessId("state", "distro", "sys")
VFS = ProcessId("vfs", "distro", "sys")
#: at most this many timers are pending at once (a request beyond it is answered at once)
MAX_TIMERS = 100_000
#: longest timer accepted (a week); longer ones are clamped
MAX_TIMER_MS = 7 * 24 * 3600 * 1000
#: largest file the read-only vfs hands out in one blob
VFS_MAX_READ = 64 * 1024 * 1024


def params_json(value: object) -> str:
    """JSON text as serde_json's ``Value::to_string`` writes it: compact, keys sorted (its
    default map is ordered by key), non-ASCII unescaped."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def vfs_read_cap(our_node: str, drive: str) -> Capability:
    return Capability(Address(our_node, VFS), params_json({"kind": "read", "drive": drive}))


def vfs_write_cap(our_node: str, drive: str) -> Capability:
    return Capability(Address(our_node, VFS), params_json({"kind": "write", "drive": drive}))


class ModuleHost(ABC):
    """What a module may ask of the kernel."""

    our_node: str

    @abstractmethod
    def module_send(self, km: KernelMessage) -> None:
        """Route ``km`` (from the module) like any local message."""

    @abstractmethod
    def module_has_capability(self, process: ProcessId, cap: Capability) -> bool: ...

    @abstractmethod
    def module_state(self) -> Any:
        """The kernel's state store (``get``/``set``/``clear`` by process id)."""


class RuntimeModule(ABC):
    pid: ProcessId

    def __init__(self) -> None:
        self._host: ModuleHost | None = None

    def attach(self, host: ModuleHost) -> None:
        self._host = host

    @property
    def host(self) -> ModuleHost:
        if self._host is None:
            raise RuntimeError(f"module {self.pid} is not attached to a kernel")
        return self._host

    @property
    def address(self) -> Address:
        return Address(self.host.our_node, self.pid)

    @abstractmethod
    def received(self, km: KernelMessage) -> None:
        """A local message for this module (called on the loop; must not block)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most modules hold nothing)
        """The kernel is closing."""

    def respond(self, km: KernelMessage, body: bytes, blob: LazyLoadBlob | None = None) -> None:
        """Answer request ``km`` (to its rsvp, else its source, with its id)."""
        target = km.rsvp if km.rsvp is not None else km.source
        reply = ResponseMessage(Response(False, body, None, ()), None)
        self.host.module_send(KernelMessage(km.id, self.address, target, None, reply, blob))


def _request(km: KernelMessage) -> Request | None:
    return km.message if isinstance(km.message, Request) else None


class TimerModule(RuntimeModule):
    pid = TIMER

    def __init__(self) -> None:
        super().__init__()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._next = 0

    def received(self, km: KernelMessage) -> None:
        req = _request(km)
        if req is None:
            return
        try:
            action = json.loads(req.body)
        except ValueError:
            log.info("timer: request with an invalid body", source=str(km.source))
            return
        if action == "Debug":
            log.info("timer: active timers", count=len(self._timers))
            return
        ms = action.get("SetTimer") if isinstance(action, dict) and len(action) == 1 else None
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
            log.info("timer: request with an invalid body", source=str(km.source))
            return
        if req.expects_response is None:
            return  # the reference sets no timer for a request nobody waits on
        if ms == 0 or len(self._timers) >= MAX_TIMERS:
            self.respond(km, b"")
            return
        self._next += 1
        key = self._next
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(min(ms, MAX_TIMER_MS) / 1000, self._pop, key, km)

    def _pop(self, key: int, km: KernelMessage) -> None:
        self._timers.pop(key, None)
        self.respond(km, b"")

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    @property
    def pending(self) -> int:
        return len(self._timers)


class StateModule(RuntimeModule):
    pid = STATE

    def received(self, km: KernelMessage) -> None:
        req = _request(km)
        if req is None:
            return
        try:
            action = json.loads(req.body)
            ((verb, target),) = action.items()
        except (ValueError, AttributeError, TypeError):
            self._err(km, req, "BadRequest", "not a StateAction")
            return
        own = str(km.source.process)
        if verb not in ("GetState", "SetState", "DeleteState"):
            self._err(km, req, "BadRequest", f"unsupported action {verb!r}")
            return
        if target != own:
            self._err(km, req, "BadRequest", "a process may only reach its own state")
            return
        store = self.host.module_state()
        pid = km.source.process
        if verb == "GetState":
            data = store.get(pid)
            if data is None:
                if req.expects_response is not None:
                    err = {"Err": {"NotFound": {"process_id": own}}}
                    self.respond(km, json.dumps(err).encode())
                return
            if req.expects_response is not None:
                self.respond(km, b'"GetState"', LazyLoadBlob(None, data))
        elif verb == "SetState":
            if km.lazy_load_blob is None:
                self._err(km, req, "BadBytes", verb)
                return
            store.set(pid, km.lazy_load_blob.bytes)
            if req.expects_response is not None:
                self.respond(km, b'"SetState"')
        else:
            store.clear(pid)
            if req.expects_response is not None:
                self.respond(km, b'"DeleteState"')

    def _err(self, km: KernelMessage, req: Request, kind: str, what: str) -> None:
        if req.expects_response is None:
            return
        field = "action" if kind == "BadBytes" else "error"
        self.respond(km, json.dumps({"Err": {kind: {field: what}}}).encode())


class Drives:
    """Read-only package drives: ``/package:publisher/pkg`` -> a directory on disk."""

    def __init__(self) -> None:
        self._roots: dict[str, Path] = {}

    def add(self, drive: str, root: Path) -> None:
        self._roots[drive] = root.resolve()

    def remove(self, drive: str) -> None:
        self._roots.pop(drive, None)

    def split(self, path: str) -> tuple[str, Path] | None:
        """``(drive, file)`` for a vfs path under a known drive (never outside its root)."""
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != "":
            return None
        drive = "/" + "/".join(parts[1:3])
        root = self._roots.get(drive)
        if root is None:
            return None
        rest = [p for p in parts[3:] if p]
        if any(p in (".", "..") or "\\" in p for p in rest):
            return None
        file = root.joinpath(*rest).resolve()
        if file != root and root not in file.parents:
            return None
        return drive, file

    def resolve(self, path: str) -> Path:
        """The file of a vfs path; FileNotFoundError if none (what spawn reports)."""
        got = self.split(path)
        if got is None:
            raise FileNotFoundError(f"no file at {path}")
        return got[1]


class VfsModule(RuntimeModule):
    pid = VFS

    def __init__(self, drives: Drives) -> None:
        super().__init__()
        self.drives = drives

    def received(self, km: KernelMessage) -> None:
        req = _request(km)
        if req is None or req.expects_response is None:
            return
        try:
            obj = json.loads(req.body)
            path, action = obj["path"], obj["action"]
            if not isinstance(path, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.respond(km, b'{"Err":"MalformedRequest"}')
            return
        name = action if isinstance(action, str) else ""
        if isinstance(action, dict) and len(action) == 1:
            name = next(iter(action))
        got = self.drives.split(path)
        if got is None:
            self._err(km, {"ParseError": {"error": "no such drive or bad path", "path": path}})
            return
        drive, file = got
        if name not in ("Read", "ReadToEnd", "ReadToString", "ReadDir", "Metadata", "Len", "Hash"):
            self._err(km, "NoWriteCap")
            return
        cap = vfs_read_cap(self.host.our_node, drive)
        if not self.host.module_has_capability(km.source.process, cap):
            self._err(km, "NoReadCap")
            return
        try:
            self._serve(km, name, drive, file)
        except OSError as e:
            self._err(km, {"IOError": f"{path}: {e.strerror or e}"})

    def _serve(self, km: KernelMessage, name: str, drive: str, file: Path) -> None:
        if name == "ReadDir":
            entries = [
                {
                    "path": drive + "/" + str(p.relative_to(self.drives.resolve(drive))),
                    "file_type": "Directory" if p.is_dir() else "File",
                }
                for p in sorted(file.iterdir())
            ]
            self.respond(km, json.dumps({"ReadDir": entries}).encode())
            return
        size = file.stat().st_size
        if name == "Len":
            self.respond(km, json.dumps({"Len": size}).encode())
            return
        if name == "Metadata":
            kind = "Directory" if file.is_dir() else "File"
            meta = {"Metadata": {"file_type": kind, "len": size}}
            self.respond(km, json.dumps(meta).encode())
            return
        if size > VFS_MAX_READ:
            self._err(km, {"IOError": f"file of {size} bytes (at most {VFS_MAX_READ})"})
            return
        data = file.read_bytes()
        if name == "Hash":
            self.respond(km, json.dumps({"Hash": list(hashlib.sha256(data).digest())}).encode())
        elif name == "ReadToString":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self._err(km, {"IOError": "not UTF-8"})
                return
            self.respond(km, json.dumps({"ReadToString": text}).encode())
        else:
            self.respond(km, b'"Read"', LazyLoadBlob(None, data))

    def _err(self, km: KernelMessage, err: object) -> None:
        self.respond(km, json.dumps({"Err": err}).encode())
