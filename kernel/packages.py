"""Packages in the reference layout: reading, installing, persisting (docs/kernel.md,
"Packages").

A package directory holds ``metadata.json`` (the package id is ``properties.package_name`` and
``properties.publisher``) beside ``pkg/``: ``pkg/manifest.json`` (a list of entries, each with
all seven fields ``process_name``, ``process_wasm_path``, ``on_exit``, ``request_networking``,
``request_capabilities``, ``grant_capabilities``, ``public``) and the ``.wasm`` files.

Installing copies the directory under the node's home (``kernel/packages/NAME:PUBLISHER/``), so
a restarted node starts it again from there (:meth:`Packages.boot`), serves ``pkg/`` as the
read-only drive ``/NAME:PUBLISHER/pkg``, and spawns each entry with the reference's install
capabilities: messaging itself, every requested capability (a process id string is messaging
that process; ``{"process", "params"}`` that process's capability with those params), the
network capability if ``request_networking``, and read and write on its drive. Then each
entry's ``grant_capabilities`` give the named processes a capability issued by it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from hnet import Address, Capability, LazyLoadBlob, ProcessId, Request
from kernel.api import OnExit, OnExitNone, OnExitRequests, OnExitRestart, ProcessRuntime
from kernel.kernel import Kernel
from kernel.modules import Drives, params_json, vfs_read_cap, vfs_write_cap

__all__ = ["CapSpec", "ManifestEntry", "Package", "PackageError", "Packages", "load_package"]

log = structlog.get_logger(component="kernel")

#: a manifest or metadata file larger than this is refused (they are a few kB)
MAX_MANIFEST_BYTES = 1024 * 1024
#: a package's processes
MAX_ENTRIES = 256
#: a process's wasm file
MAX_WASM_BYTES = 128 * 1024 * 1024

MESSAGING = '"messaging"'

#: ``(wasm bytes, on_output(stream, data))`` -> the process's runtime
MakeRuntime = Callable[[bytes, Callable[[str, bytes], None]], ProcessRuntime]


class PackageError(Exception):
    """A package that cannot be read or installed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class CapSpec:
    """A capability named in a manifest: ``process`` with ``params`` (JSON text)."""

    process: ProcessId
    params: str


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    process_name: str
    #: the wasm file inside ``pkg/`` (a leading ``/`` stripped)
    wasm_file: str
    on_exit: OnExit
    request_networking: bool
    request_capabilities: tuple[CapSpec, ...]
    grant_capabilities: tuple[CapSpec, ...]
    public: bool


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    publisher: str
    root: Path
    entries: tuple[ManifestEntry, ...]

    @property
    def id(self) -> str:
        return f"{self.name}:{self.publisher}"

    @property
    def drive(self) -> str:
        return f"/{self.id}/pkg"

    def process_id(self, entry: ManifestEntry) -> ProcessId:
        return ProcessId(entry.process_name, self.name, self.publisher)


def _json_file(path: Path, label: str) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise PackageError(f"{label}: {size} bytes (at most {MAX_MANIFEST_BYTES})")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise PackageError(f"{label}: missing") from None
    except OSError as e:
        raise PackageError(f"{label}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:
        raise PackageError(f"{label}: not JSON ({e})") from None


def _field(obj: dict[str, Any], name: str, kind: type, label: str) -> Any:
    if name not in obj:
        raise PackageError(f"{label}: no {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise PackageError(f"{label}: {name!r} must be a {kind.__name__}")
    return value


def _process_id(text: object, label: str) -> ProcessId:
    if not isinstance(text, str):
        raise PackageError(f"{label}: a process id must be a string")
    try:
        return ProcessId.parse(text)
    except ValueError as e:
        raise PackageError(f"{label}: {text!r}: {e}") from None


def _caps(values: object, label: str) -> tuple[CapSpec, ...]:
    """A manifest's capability list, as the reference reads it: a process id string is
    messaging; ``{"process": ..., "params": ...}`` those params (serde_json's text);
    other JSON values are skipped."""
    if not isinstance(values, list):
        raise PackageError(f"{label}: must be a list")
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(CapSpec(_process_id(v, label), MESSAGING))
        elif isinstance(v, dict):
            if "process" not in v or "params" not in v:
                continue  # the reference skips these silently
            out.append(CapSpec(_process_id(v["process"], label), params_json(v["params"])))
    return tuple(out)


def _bytes(value: object, label: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise PackageError(f"{label}: bytes must be a list of 0..255 or a string")


def _on_exit(value: object, label: str) -> OnExit:
    if value == "None":
        return OnExitNone()
    if value == "Restart":
        return OnExitRestart()
    if (
        isinstance(value, dict)
        and set(value) == {"Requests"}
        and isinstance(value["Requests"], list)
    ):
        requests = []
        for item in value["Requests"]:
            if not isinstance(item, list) or len(item) != 3 or not isinstance(item[1], dict):
                raise PackageError(f"{label}: each on-exit request is [address, request, blob]")
            try:
                address = Address.parse(item[0])
            except (ValueError, TypeError) as e:
                raise PackageError(f"{label}: on-exit address {item[0]!r}: {e}") from None
            req = item[1]
            expects = req.get("expects_response")
            if expects is not None and (not isinstance(expects, int) or expects < 0):
                raise PackageError(f"{label}: expects_response must be a whole number or null")
            metadata = req.get("metadata")
            request = Request(
                inherit=bool(req.get("inherit", False)),
                expects_response=expects,
                body=_bytes(req.get("body", []), label),
                metadata=metadata if isinstance(metadata, str) else None,
                capabilities=(),
            )
            blob_obj = item[2]
            blob = None
            if isinstance(blob_obj, dict):
                mime = blob_obj.get("mime")
                blob = LazyLoadBlob(
                    mime if isinstance(mime, str) else None,
                    _bytes(blob_obj.get("bytes", []), label),
                )
            requests.append((address, request, blob))
        return OnExitRequests(tuple(requests))
    raise PackageError(f'{label}: on_exit must be "None", "Restart" or {{"Requests": [...]}}')


def load_package(root: Path) -> Package:
    """Read and check a package directory. Raises :class:`PackageError`."""
    root = Path(root)
    if not root.is_dir():
        raise PackageError(f"{root}: not a directory")
    meta = _json_file(root / "metadata.json", f"{root}/metadata.json")
    props = meta.get("properties") if isinstance(meta, dict) else None
    if not isinstance(props, dict):
        raise PackageError(f"{root}/metadata.json: no 'properties' object")
    label = f"{root}/metadata.json"
    name = _field(props, "package_name", str, label)
    publisher = _field(props, "publisher", str, label)
    manifest_label = f"{root}/pkg/manifest.json"
    manifest = _json_file(root / "pkg" / "manifest.json", manifest_label)
    if not isinstance(manifest, list) or not manifest:
        raise PackageError(f"{manifest_label}: must be a non-empty list of processes")
    if len(manifest) > MAX_ENTRIES:
        raise PackageError(f"{manifest_label}: {len(manifest)} processes (at most {MAX_ENTRIES})")
    entries = []
    for i, e in enumerate(manifest):
        where = f"{manifest_label} entry {i}"
        if not isinstance(e, dict):
            raise PackageError(f"{where}: not an object")
        wasm = _field(e, "process_wasm_path", str, where).lstrip("/")
        entry = ManifestEntry(
            process_name=_field(e, "process_name", str, where),
            wasm_file=wasm,
            on_exit=_on_exit(_field(e, "on_exit", object, where), where),
            request_networking=_field(e, "request_networking", bool, where),
            request_capabilities=_caps(_field(e, "request_capabilities", list, where), where),
            grant_capabilities=_caps(_field(e, "grant_capabilities", list, where), where),
            public=_field(e, "public", bool, where),
        )
        try:
            ProcessId(entry.process_name, name, publisher)
        except ValueError as err:
            raise PackageError(f"{where}: {err}") from None
        if not (root / "pkg" / wasm).is_file() or ".." in Path(wasm).parts:
            raise PackageError(f"{where}: no file pkg/{wasm}")
        entries.append(entry)
    return Package(name, publisher, root, tuple(entries))


class Packages:
    """A node's installed packages: its drives, its persisted copies, the runtime factory.

    ``make_runtime(wasm_bytes, on_output)`` is the Wasm host's (``WasmHost().runtime``, whose
    ``on_output(stream, data)`` sees the guest's stdout and stderr: they go to the process's
    output ring, like the reference's printouts); ``runtime_factory`` is given to
    the kernel as its ``runtime_factory`` (wasm paths are drive paths, as the reference's
    ``spawn`` takes them).
    """

    def __init__(self, kernel: Kernel, home: Path, make_runtime: MakeRuntime) -> None:
        self.kernel = kernel
        self.dir = home / "kernel" / "packages"
        self.drives = Drives()
        self.installed: dict[str, Package] = {}
        self._make_runtime = make_runtime
        kernel.runtime_factory = self.runtime_factory

    def runtime_factory(self, pid: ProcessId, wasm_path: str) -> ProcessRuntime:
        """A process's runtime from its drive path (called off the loop, on each start)."""
        file = self.drives.resolve(wasm_path)
        size = file.stat().st_size
        if size > MAX_WASM_BYTES:
            raise FileNotFoundError(f"{wasm_path}: {size} bytes (at most {MAX_WASM_BYTES})")
        kernel = self.kernel

        def output(stream: str, data: bytes) -> None:
            kernel.process_output(pid, data.decode(errors="replace"))

        return self._make_runtime(file.read_bytes(), output)

    async def boot(self) -> list[ProcessId]:
        """Start every package installed before (after a restart of the node)."""
        started: list[ProcessId] = []
        if not self.dir.is_dir():
            return started
        for root in sorted(
            p for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            try:
                started += await self._start(load_package(root))
            except PackageError as e:
                log.error("installed package not started", package=root.name, error=str(e))
        return started

    async def install(self, src: Path) -> list[ProcessId]:
        """Install (or reinstall) the package at ``src`` and start its processes."""
        package = load_package(src)
        self.dir.mkdir(parents=True, exist_ok=True)
        dest = self.dir / package.id
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=self.dir))
        try:
            shutil.copytree(package.root, tmp / "copy", symlinks=False)
            if package.id in self.installed:
                await self._stop(self.installed[package.id])
            if dest.exists():
                shutil.rmtree(dest)
            (tmp / "copy").rename(dest)
        except OSError as e:
            raise PackageError(f"{src}: cannot install under {self.dir}: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return await self._start(load_package(dest))

    async def _stop(self, package: Package) -> None:
        for entry in package.entries:
            await self.kernel.kill(package.process_id(entry))
        self.drives.remove(package.drive)
        self.installed.pop(package.id, None)

    async def _start(self, package: Package) -> list[ProcessId]:
        our = self.kernel.our_node
        self.drives.add(package.drive, package.root / "pkg")
        self.installed[package.id] = package
        started: list[ProcessId] = []
        for entry in package.entries:
            pid = package.process_id(entry)
            caps = [
                Capability(Address(our, c.process), c.params) for c in entry.request_capabilities
            ]
            caps += [vfs_read_cap(our, package.drive), vfs_write_cap(our, package.drive)]
            try:
                got = await self.kernel.spawn(
                    pid,
                    wasm_path=f"{package.drive}/{entry.wasm_file}",
                    on_exit=entry.on_exit,
                    capabilities=caps,
                    networking=entry.request_networking,
                    public=entry.public,
                )
            except Exception as e:  # a component the Wasm host refuses (ComponentError, ...)
                raise PackageError(f"{package.id}: cannot start {pid}: {e}") from None
            if not isinstance(got, ProcessId):
                raise PackageError(f"{package.id}: cannot start {pid}: {got.value}")
            started.append(pid)
        for entry in package.entries:
            issuer = Address(our, package.process_id(entry))
            for grant in entry.grant_capabilities:
                self.kernel.grant_capabilities(grant.process, [Capability(issuer, grant.params)])
        log.info("package started", package=package.id, processes=[str(p) for p in started])
        return started
