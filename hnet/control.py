"""The node's local control socket: JSON lines over a Unix socket only its owner can open.

Requests are one JSON object per line (``{"op": ...}``), answered by one JSON object per line.
Operations: ``status``, ``ping`` (one hello to ``NAME@net:distro:sys``; its body is ``text``,
or, with ``size``, ``text`` repeated and cut to ``size`` bytes, built here so that a large body
never crosses the socket), ``burst`` (many hellos, for benchmarks), ``peers``, ``diag``,
``stop``.

Concurrency (pipelining): a request without an ``id`` is answered before the next line of its
connection is read, so such replies come back in order. A request with an ``id`` (an integer or
a string, unique among that connection's requests in flight) is answered concurrently: its reply
carries the same ``id`` and replies may come back in any order. One connection may have
``CONTROL_MAX_IN_FLIGHT`` requests with ids in flight; past that the server reads no further
line from it until one is answered. ``hnet ping -l N`` keeps N pings in flight this way, on one
connection (:class:`ControlPipeline`), rather than opening N connections.

Bounds: lines are capped at ``CONTROL_MAX_LINE`` (a longer one is answered ``line too long``
and the connection closed), clients at ``CONTROL_MAX_CLIENTS`` (one more is closed at once).
A line that is not a JSON object, or a bad or duplicate ``id``, is answered with a usage error
(without an id) and the connection closed. Each reply must be taken by the client within
``CONTROL_WRITE_TIMEOUT``, or the client is disconnected. The bodies of pings in flight are
bounded together by ``CONTROL_PING_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
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
RequestId = int | str

#: bytes 0x80..0xff: msgpack encodes each byte of a body below 0x80 in 1 byte, these in 2
_HIGH_BYTES = bytes(range(0x80, 0x100))


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


def ping_body(text: bytes, size: int) -> bytes:
    """``text`` repeated and cut to exactly ``size`` bytes (``text`` non-empty if ``size``)."""
    if size == 0:
        return b""
    if not text:
        raise ValueError("text must not be empty for a non-empty body")
    return (text * (size // len(text) + 1))[:size]


def encoded_body_size(body: bytes) -> int:
    """Bytes the integers of ``body`` take in msgpack (the array header aside)."""
    return 2 * len(body) - len(body.translate(None, _HIGH_BYTES))


def _usage(error: str) -> JsonObj:
    return {"ok": False, "kind": "usage", "error": error}


class _ByteBudget:
    """Bytes held by operations in flight; ``acquire`` waits while the sum would pass ``limit``.

    Waiters that find room go first (no FIFO): bodies here are at most a sixth of the limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self.used and self.used + n > self.limit:  # alone, any size goes
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


class _Connection:
    """The write side of one control client: one reply line at a time, each with a deadline."""

    def __init__(self, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        self._writer = writer
        self._timeout = write_timeout
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, obj: JsonObj) -> None:
        """Write one line; on a dead client or past the deadline, close it (never raises)."""
        data = json.dumps(obj).encode() + b"\n"
        async with self._lock:  # one reply in the buffer beyond the high-water mark, at most
            if self.closed:
                return
            try:
                async with asyncio.timeout(self._timeout):
                    self._writer.write(data)
                    await self._writer.drain()
            except TimeoutError:
                log.warning("control client does not read its replies; closed")
                self.abort()
            except (ConnectionError, OSError):
                self.abort()

    def abort(self) -> None:
        """Close at once, dropping unsent replies (``close()`` would wait to flush them)."""
        self.closed = True
        self._writer.transport.abort()


class ControlServer:
    def __init__(
        self,
        node: Node,
        path: Path,
        on_stop: Callable[[], None],
        *,
        write_timeout: float = limits.CONTROL_WRITE_TIMEOUT,
        extra_ops: Mapping[str, Callable[[JsonObj], Awaitable[JsonObj]]] | None = None,
    ) -> None:
        """``extra_ops``: more operations by name (the kernel's ``send``, ``ps``, ``kill``),
        served like the node's own (they may not replace one)."""
        self.node = node
        self.path = path
        self._on_stop = on_stop
        self._extra = dict(extra_ops or {})
        self._write_timeout = write_timeout
        self._server: asyncio.Server | None = None
        self._clients = 0
        self._ping_bytes = _ByteBudget(limits.CONTROL_PING_BYTES)

    @property
    def clients(self) -> int:
        """Control connections being served now."""
        return self._clients

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
        conn = _Connection(writer, self._write_timeout)
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._serve(reader, conn, tasks)
            if tasks:  # end of input: what is in flight is still answered (each op is bounded)
                await asyncio.wait(tasks)
        except (ConnectionError, OSError):
            return
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._clients -= 1
            if not conn.closed:
                writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, conn: _Connection, tasks: set[asyncio.Task[None]]
    ) -> None:
        """Read and dispatch requests until end of input or a protocol error."""
        slots = asyncio.Semaphore(limits.CONTROL_MAX_IN_FLIGHT)
        in_flight: set[RequestId] = set()
        while not conn.closed:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                await conn.send(_usage("line too long"))
                return
            if not line:
                return
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                await conn.send(_usage(f"bad request: {e}"))
                return
            if "id" not in req:
                await conn.send(await self.handle(req))
                continue
            rid = req["id"]
            if not isinstance(rid, int | str) or isinstance(rid, bool):
                await conn.send(_usage(f"bad request: id must be an integer or a string: {rid!r}"))
                return
            if rid in in_flight:
                await conn.send(_usage(f"bad request: id {rid!r} is already in flight"))
                return
            await slots.acquire()
            in_flight.add(rid)
            task = asyncio.create_task(self._answer(conn, req, rid, slots, in_flight))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _answer(
        self,
        conn: _Connection,
        req: JsonObj,
        rid: RequestId,
        slots: asyncio.Semaphore,
        in_flight: set[RequestId],
    ) -> None:
        try:
            try:
                reply = await self.handle(req)
            except Exception as e:  # a bug of ours: answer it rather than leave the id hanging
                log.exception("control request failed", op=str(req.get("op")))
                reply = {"ok": False, "kind": "error", "error": f"internal error: {e}"}
            await conn.send({**reply, "id": rid})
        finally:
            in_flight.discard(rid)
            slots.release()

    async def handle(self, req: JsonObj) -> JsonObj:
        op = req.get("op")
        handler = self._ops().get(str(op))
        if handler is None:
            return _usage(f"unknown op {op!r}")
        try:
            return await handler(req)
        except (KeyError, TypeError, ValueError) as e:
            return _usage(f"bad {op} request: {e}")

    def _ops(self) -> dict[str, Callable[[JsonObj], Awaitable[JsonObj]]]:
        return self._extra | {
            "status": self._status,
            "ping": self._ping,
            "burst": self._burst,
            "peers": self._peers,
            "lookup": self._lookup,
            "diag": self._diag,
            "stop": self._stop,
        }

    async def _status(self, req: JsonObj) -> JsonObj:
        tracker = self.node.requests
        return {
            "ok": True,
            "name": self.node.name,
            "listening": {t: list(hp) for t, hp in self.node.listening.items()},
            "pid": os.getpid(),
            "outstanding": len(tracker),
            "max_outstanding": tracker.high_water,
        }

    async def _ping(self, req: JsonObj) -> JsonObj:
        target = str(req["target"])
        via = req.get("via")
        if via is not None and via not in self.node.config.transports:
            return _usage(f"unknown transport {via!r}")
        timeout = float(req.get("timeout", limits.DEFAULT_REQUEST_TIMEOUT))
        if not 0 < timeout <= 600:
            return _usage("timeout must be in (0, 600] s")
        text = req.get("text", "ping")
        if not isinstance(text, str):
            return _usage("text must be a string")
        size = req.get("size")
        max_body = limits.CONTROL_PING_MAX_BODY
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= max_body
        ):
            return _usage(f"size must be an integer in 0..{max_body}")
        if size and not text:
            return _usage("text must not be empty when size is above 0")
        if target == self.node.name:
            return _usage(f"{target}: that is this node")
        rec = await self.node.pki.resolve(target, min(timeout, limits.PKI_RESOLVE_TIMEOUT))
        if rec is None:
            return {
                "ok": False,
                "kind": "lookup",
                "error": f"{target}: not in HNS ({self.node.pki.source})",
            }
        try:
            address = Address.net(target)
        except ValueError as e:
            return _usage(f"{target}: {e}")
        body = text.encode() if size is None else ping_body(text.encode(), size)
        encoded = encoded_body_size(body)
        if encoded > max_body:
            return _usage(
                f"a {len(body)}-byte body of this text encodes to {encoded} bytes "
                f"(bytes from 0x80 take 2), over {max_body}"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._ping_bytes.acquire(len(body))
        except TimeoutError:
            return {
                "ok": False,
                "kind": "timeout",
                "error": f"hello bodies in flight stayed over {limits.CONTROL_PING_BYTES} bytes "
                f"for {timeout:g} s",
            }
        try:
            remaining = max(deadline - loop.time(), 0.001)
            reply = await self.node.request(address, body, timeout=remaining, via=via)
        except SendFailed as e:
            return {"ok": False, "kind": e.kind.value.lower(), "error": e.reason}
        finally:
            self._ping_bytes.release(len(body))
        msg = reply.message.message
        answer = msg.response.body if isinstance(msg, ResponseMessage) else b""
        return {
            "ok": True,
            "from": reply.message.source.node,
            "via": reply.via,
            "rtt_ms": reply.rtt * 1000,
            "body": answer.decode("utf-8", "replace"),
        }

    async def _burst(self, req: JsonObj) -> JsonObj:
        """``count`` sequential hellos of ``size`` bytes; their round-trip times (benchmarks)."""
        target = str(req["target"])
        count = int(req.get("count", 100))
        size = int(req.get("size", 64))
        via = req.get("via")
        if not 1 <= count <= 100_000 or not 0 <= size <= 1_000_000:
            return _usage("count in 1..100000, size in 0..1e6")
        if await self.node.pki.resolve(target) is None:
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

    async def _lookup(self, req: JsonObj) -> JsonObj:
        """The node's current HNS record for ``name`` (what its dials use), or a lookup error."""
        name = str(req["name"])
        rec = self.node.pki.record(name)
        if rec is None:
            return {"ok": False, "kind": "lookup", "error": f"{name}: not in HNS"}
        return {
            "ok": True,
            "name": rec.name,
            "net_key": rec.net_key,
            "ips": list(rec.ips),
            "ports": dict(rec.ports),
            "routers": list(rec.routers),
        }

    async def _diag(self, req: JsonObj) -> JsonObj:
        return {"ok": True, "text": self.node.diagnostics()}

    async def _stop(self, req: JsonObj) -> JsonObj:
        self._on_stop()
        return {"ok": True}


class ControlError(Exception):
    """No node answers on the control socket; one line for the user."""


async def _open(home: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = socket_path(home)
    try:
        return await asyncio.open_unix_connection(str(path), limit=limits.CONTROL_MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"no node running (no control socket at {path})") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (another user's node?)") from None


def _parse_reply(line: bytes) -> JsonObj:
    if not line:
        raise ControlError("the node closed the control connection")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError("bad reply from the node") from None
    if not isinstance(reply, dict):
        raise ControlError("bad reply from the node")
    return reply


class ControlClient:
    """A blocking-free client for the CLI (asyncio): one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, home: Path) -> ControlClient:
        return cls(*await _open(home))

    async def call(self, req: JsonObj, timeout: float = 30.0) -> JsonObj:
        self._writer.write(json.dumps(req).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await self._writer.drain()
            line = await self._reader.readline()
        return _parse_reply(line)

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class ControlPipeline:
    """Many requests in flight on one control connection, matched to their replies by ``id``.

    ``call`` may be awaited concurrently (at most ``CONTROL_MAX_IN_FLIGHT`` at once; more wait
    here). Requests made in the same event-loop turn go out in one write, so the node sees a
    burst of them together.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[JsonObj]] = {}
        self._slots = asyncio.Semaphore(limits.CONTROL_MAX_IN_FLIGHT)
        self._outgoing: list[bytes] = []
        self._error: ControlError | None = None
        self._reading = asyncio.create_task(self._read_replies())

    @classmethod
    async def connect(cls, home: Path) -> ControlPipeline:
        return cls(*await _open(home))

    async def call(self, req: JsonObj, timeout: float = 30.0) -> JsonObj:
        """Send ``req`` (its ``id`` is ours to set) and wait up to ``timeout`` for its reply."""
        async with asyncio.timeout(timeout), self._slots:
            if self._error is not None:
                raise self._error
            rid = self._next_id
            self._next_id += 1
            fut: asyncio.Future[JsonObj] = asyncio.get_running_loop().create_future()
            self._waiting[rid] = fut
            if not self._outgoing:
                asyncio.get_running_loop().call_soon(self._flush)
            self._outgoing.append(json.dumps({**req, "id": rid}).encode() + b"\n")
            try:
                return await fut
            finally:
                self._waiting.pop(rid, None)

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self._error is None and not self._writer.is_closing():
            # No drain: what is buffered is bounded by CONTROL_MAX_IN_FLIGHT short lines.
            self._writer.write(data)

    async def _read_replies(self) -> None:
        try:
            while True:
                reply = _parse_reply(await self._reader.readline())
                rid = reply.get("id")
                if not isinstance(rid, int) or isinstance(rid, bool) or not 0 < rid < self._next_id:
                    # no id of ours: the node refused the connection (and closes it)
                    raise ControlError(f"the node refused the request: {reply.get('error')}")
                fut = self._waiting.get(rid)
                if fut is not None and not fut.done():  # else its caller gave up on it
                    fut.set_result(reply)
        except (ControlError, ValueError, ConnectionError, OSError) as e:
            error = e if isinstance(e, ControlError) else ControlError(f"control socket: {e}")
            self._error = error
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(error)

    async def aclose(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
