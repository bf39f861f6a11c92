"""The node's local control socket: JSON lines over a Unix socket only its owner can open.

Requests are one JSON object per line (``{"op": ...}``), answered by one JSON object per line.
Operations: ``status``, ``ping`` (one hello to ``NAME@net:distro:sys``), ``burst`` (many
hellos, for benchmarks), ``peers``, ``diag``, ``stop``. Lines are capped at
``CONTROL_MAX_LINE``; clients at ``CONTROL_MAX_CLIENTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hnet import limits
from hnet.core.wire import Address, ResponseMessage
from hnet.log import get_logger
from hnet.net.requests import SendFailed
from hnet.node import Node

log = get_logger("control")

SOCKET_NAME = "control.sock"
JsonObj = dict[str, Any]


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


class ControlServer:
    def __init__(self, node: Node, path: Path, on_stop: Callable[[], None]) -> None:
        self.node = node
        self.path = path
        self._on_stop = on_stop
        self._server: asyncio.Server | None = None
        self._clients = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)  # the socket is created 0600: owner only
        try:
            self._server = await asyncio.start_unix_server(
                self._on_client, path=str(self.path), limit=limits.CONTROL_MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= limits.CONTROL_MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _write(writer, {"ok": False, "kind": "usage", "error": "line too long"})
                    return
                if not line:
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    await _write(
                        writer, {"ok": False, "kind": "usage", "error": f"bad request: {e}"}
                    )
                    return
                await _write(writer, await self.handle(req))
        except (ConnectionError, OSError):
            return
        finally:
            self._clients -= 1
            writer.close()

    async def handle(self, req: JsonObj) -> JsonObj:
        op = req.get("op")
        handler = self._ops().get(str(op))
        if handler is None:
            return {"ok": False, "kind": "usage", "error": f"unknown op {op!r}"}
        try:
            return await handler(req)
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "kind": "usage", "error": f"bad {op} request: {e}"}

    def _ops(self) -> dict[str, Callable[[JsonObj], Awaitable[JsonObj]]]:
        return {
            "status": self._status,
            "ping": self._ping,
            "burst": self._burst,
            "peers": self._peers,
            "diag": self._diag,
            "stop": self._stop,
        }

    async def _status(self, req: JsonObj) -> JsonObj:
        return {
            "ok": True,
            "name": self.node.name,
            "listening": {t: list(hp) for t, hp in self.node.listening.items()},
            "pid": os.getpid(),
        }

    async def _ping(self, req: JsonObj) -> JsonObj:
        target = str(req["target"])
        via = req.get("via")
        if via is not None and via not in self.node.config.transports:
            return {"ok": False, "kind": "usage", "error": f"unknown transport {via!r}"}
        timeout = float(req.get("timeout", limits.DEFAULT_REQUEST_TIMEOUT))
        if not 0 < timeout <= 600:
            return {"ok": False, "kind": "usage", "error": "timeout must be in (0, 600] s"}
        if target == self.node.name:
            return {"ok": False, "kind": "usage", "error": f"{target}: that is this node"}
        rec = self.node.pki.record(target)
        if rec is None:
            return {
                "ok": False,
                "kind": "lookup",
                "error": f"{target}: not in HNS ({self.node.pki.source})",
            }
        try:
            address = Address.net(target)
        except ValueError as e:
            return {"ok": False, "kind": "usage", "error": f"{target}: {e}"}
        text = str(req.get("text", "ping"))
        try:
            reply = await self.node.request(address, text.encode(), timeout=timeout, via=via)
        except SendFailed as e:
            return {"ok": False, "kind": e.kind.value.lower(), "error": e.reason}
        msg = reply.message.message
        body = msg.response.body if isinstance(msg, ResponseMessage) else b""
        return {
            "ok": True,
            "from": reply.message.source.node,
            "via": reply.via,
            "rtt_ms": reply.rtt * 1000,
            "body": body.decode("utf-8", "replace"),
        }

    async def _burst(self, req: JsonObj) -> JsonObj:
        """``count`` sequential hellos of ``size`` bytes; their round-trip times (benchmarks)."""
        target = str(req["target"])
        count = int(req.get("count", 100))
        size = int(req.get("size", 64))
        via = req.get("via")
        if not 1 <= count <= 100_000 or not 0 <= size <= 1_000_000:
            return {"ok": False, "kind": "usage", "error": "count in 1..100000, size in 0..1e6"}
        if self.node.pki.record(target) is None:
            return {"ok": False, "kind": "lookup", "error": f"{target}: not in HNS"}
        address = Address.net(target)
        body = b"x" * size
        rtts: list[float] = []
        failures: list[str] = []
        for _ in range(count):
            try:
                reply = await self.node.request(address, body, via=via)
                rtts.append(reply.rtt * 1000)
            except SendFailed as e:
                failures.append(str(e))
        return {"ok": True, "rtts_ms": rtts, "failures": failures[:10], "failed": len(failures)}

    async def _peers(self, req: JsonObj) -> JsonObj:
        return {"ok": True, "peers": [asdict(i) for i in self.node.peers.infos()]}

    async def _diag(self, req: JsonObj) -> JsonObj:
        return {"ok": True, "text": self.node.diagnostics()}

    async def _stop(self, req: JsonObj) -> JsonObj:
        self._on_stop()
        return {"ok": True}


async def _write(writer: asyncio.StreamWriter, obj: JsonObj) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


class ControlError(Exception):
    """No node answers on the control socket; one line for the user."""


class ControlClient:
    """A blocking-free client for the CLI (asyncio)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, home: Path) -> ControlClient:
        path = socket_path(home)
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(path), limit=limits.CONTROL_MAX_LINE
            )
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no node running (no control socket at {path})") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (another user's node?)") from None
        return cls(reader, writer)

    async def call(self, req: JsonObj, timeout: float = 30.0) -> JsonObj:
        self._writer.write(json.dumps(req).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            raise ControlError("the node closed the control connection")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ControlError("bad reply from the node")
        return reply

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
