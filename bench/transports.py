"""Transport comparison: raw TCP (the yardstick) vs Noise-TCP vs QUIC (qh3 and aioquic).

The pieces :mod:`bench.run` builds its "transports" section from (see bench/README.md):

* one wire convention for every kind: a message is ``[op u8][id u64 BE][padding]``; the server
  echoes ``E`` messages whole and answers a ``B`` (bulk) message with the 9-byte ``A`` + id once
  it has the whole message; a client matches replies to requests by id, so requests can be
  concurrent (:class:`MuxClient`);
* :class:`TransportServers`: one server per kind (raw TCP with a u32 length prefix, Noise-TCP
  sessions, QUIC listeners on each backend, and the bare QUIC libraries' own ``serve``), in this
  process or, with ``--serve``, in a child process of its own;
* the benchmarks: connection setup to the first verified reply, 64-byte round trips one at a
  time, 64-byte round trips over 100 concurrent requests, 10 MB messages, and head-of-line
  latency (1 KiB round trips idle and while a 10 MB message is in flight on the connection);
* the floor of our QUIC lines: the same measurements on qh3 and aioquic alone (their asyncio
  API, TLS only, no Noise, no hnet code; kinds ``lib-qh3`` and ``lib-aioquic``), plus 64-byte
  echoes on one long-lived stream.

Every benchmark follows the ``Bench`` protocol of :mod:`bench.run` (``setup`` / ``measure`` /
``aclose``), so it takes part in the same interleaved rounds as the rest of the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

if __package__ in (None, ""):  # run as a script (server mode): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench import driven, pattern
from bench.common import (
    LATENCY,
    LOOPBACK,
    MB,
    THROUGHPUT,
    Identities,
    Metric,
    median,
    percentile,
)
from hnet import keys, limits, runtime
from hnet.core.quic.backend import certificate
from hnet.transport import tcp as tcp_transport
from hnet.transport.quic import QuicListener
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session

#: The kinds, in table order; "raw" is the yardstick.
KINDS = ("raw", "tcp", "quic-qh3", "quic-aioquic")
LABELS = {
    "raw": "raw TCP",
    "tcp": "Noise-TCP",
    "quic-qh3": "QUIC qh3",
    "quic-aioquic": "QUIC aioquic",
}
#: The bare QUIC libraries (their own asyncio API, TLS only, no Noise, no hnet code): the floor
#: of our QUIC kind of the same backend.
LIB_KINDS = ("lib-qh3", "lib-aioquic")
LABELS.update({"lib-qh3": "qh3 library", "lib-aioquic": "aioquic library"})
#: The bare QUIC libraries carrying hnet-noise/1's message pattern (bench/pattern.py: a stream
#: per message, FIN acknowledgements, per-stream keys and AEAD; no hnet session code): the floor
#: of the protocol itself on each backend.
PATTERN_KINDS = ("pat-qh3", "pat-aioquic")
LABELS.update(
    {
        "pat-qh3": "qh3 library, hnet-noise/1 pattern",
        "pat-aioquic": "aioquic library, hnet-noise/1 pattern",
    }
)
#: Our QUIC kind -> the bare library it runs on, and back; and -> the pattern floor.
FLOOR = {"quic-qh3": "lib-qh3", "quic-aioquic": "lib-aioquic"}
PATTERN = {"quic-qh3": "pat-qh3", "quic-aioquic": "pat-aioquic"}
BASE = {lib: ours for ours, lib in (*FLOOR.items(), *PATTERN.items())}
#: ``--only`` tag of each kind.
TAGS = {
    "raw": "raw",
    "tcp": "tcp",
    "quic-qh3": "quic",
    "quic-aioquic": "quic",
    "lib-qh3": "quic",
    "lib-aioquic": "quic",
    "pat-qh3": "quic",
    "pat-aioquic": "quic",
}

OP_ECHO = ord("E")
OP_BULK = ord("B")
OP_ACK = ord("A")
HEAD = struct.Struct(">BQ")
U32 = struct.Struct(">I")
READ_SIZE = tcp_transport.READ_SIZE
IDLE = 3600.0
TIMEOUT = 30.0
SMALL = 64
PROBE = 1024
BULK = 10_000_000
#: Unrecorded probes before a round's idle ones.
WARM_PROBES = 5
#: How our sessions are driven (``--sessions``): standalone (``Session.run`` + ``send``: a
#: reader task per session, a wait per send) or as a node's peer table drives them
#: (:mod:`bench.driven`: ``start`` + ``submit``, delivered from the transport's callback).
STANDALONE = "standalone"
DRIVEN = "driven"
DRIVES = (STANDALONE, DRIVEN)
#: Driven clients submit messages up to this size without waiting (as a node sends); a larger
#: one waits until the transport took it, as ``send`` does, so the bounded queue never fills.
SMALL_SUBMIT = 65_536


class TransportBenchError(Exception):
    """A wrong reply, a dead connection, a server that did not start."""


def make_message(op: int, rid: int, size: int) -> bytes:
    return HEAD.pack(op, rid) + bytes(max(0, size - HEAD.size))


# --- servers -------------------------------------------------------------------------------------


async def session_deliver(session: Session, data: bytes) -> None:
    op, rid = HEAD.unpack_from(data)
    if op == OP_ECHO:
        await session.send(data)
    elif op == OP_BULK:
        await session.send(HEAD.pack(OP_ACK, rid))
    else:
        raise TransportBenchError(f"unknown op {op}")


async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``[u32 len][message]`` in, the same replies as :func:`session_deliver` out.

    Reads ``READ_SIZE`` chunks and joins each message into one ``bytes``, as a session does (a
    receiver has to hand on whole messages), so raw bulk does the same copying as ours.
    """
    tcp_transport.tune_socket(writer)
    read = reader.read
    unpack_from = U32.unpack_from
    need = 0
    parts: list[bytes | memoryview] = []
    tail = b""
    try:
        while True:
            data = await read(READ_SIZE)
            if not data:
                return
            if tail:
                data, tail = tail + data, b""
            pos, end = 0, len(data)
            while pos < end:
                if need == 0:
                    if end - pos < 4:
                        tail = data[pos:]
                        break
                    (need,) = unpack_from(data, pos)
                    pos += 4
                    if need < HEAD.size:
                        raise TransportBenchError(f"raw message of {need} bytes")
                take = min(need, end - pos)
                parts.append(data if take == end else memoryview(data)[pos : pos + take])
                pos += take
                need -= take
                if need == 0:
                    message = b"".join(parts)
                    parts = []
                    op, rid = HEAD.unpack_from(message)
                    if op == OP_ECHO:
                        writer.write(U32.pack(len(message)) + message)
                    else:
                        writer.write(U32.pack(HEAD.size) + HEAD.pack(OP_ACK, rid))
                    await writer.drain()
    except (ConnectionError, TransportBenchError):
        pass
    finally:
        writer.close()


# --- the bare QUIC libraries ---------------------------------------------------------------------
#
# The floor under our QUIC lines: qh3 and aioquic through their own asyncio API
# (``serve`` / ``connect`` with a ``QuicConnectionProtocol`` subclass), TLS 1.3 only, no Noise and
# no hnet code. Every stream carries ``[u32 len][message]`` frames (the messages of the wire
# convention above); the server answers each frame on the stream it came on, and ends its side
# of the stream when the client has ended its own. Same transport parameters as our QUIC (datagram
# size, connection and stream windows, idle timeout), so a ratio shows what our layer costs.

#: ALPN of the library-only connections (any fixed string: both ends are ours).
LIB_ALPN = "hnet-bench-floor"
CLOSE_TIMEOUT = 5.0


class Frames:
    """Reassembles the ``[u32 len][message]`` frames of one stream, each into one ``bytes``."""

    def __init__(self) -> None:
        self._need = 0  # bytes still missing from the message in progress (0: between messages)
        self._parts: list[bytes | memoryview] = []
        self._tail = b""  # an incomplete length prefix

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._tail:
            data, self._tail = self._tail + data, b""
        pos, end = 0, len(data)
        while pos < end:
            if self._need == 0:
                if end - pos < 4:
                    self._tail = data[pos:]
                    break
                (self._need,) = U32.unpack_from(data, pos)
                pos += 4
                if self._need < HEAD.size:
                    raise TransportBenchError(f"library frame of {self._need} bytes")
            take = min(self._need, end - pos)
            self._parts.append(data if take == end else memoryview(data)[pos : pos + take])
            pos += take
            self._need -= take
            if self._need == 0:
                out.append(b"".join(self._parts))
                self._parts = []
        return out


def lib_reply(message: bytes) -> bytes:
    """The server's framed answer to one message (an echo, or the ack of a bulk message)."""
    op, rid = HEAD.unpack_from(message)
    if op == OP_ECHO:
        return U32.pack(len(message)) + message
    if op == OP_BULK:
        return U32.pack(HEAD.size) + HEAD.pack(OP_ACK, rid)
    raise TransportBenchError(f"unknown op {op}")


class QuicLibrary:
    """One library's asyncio API, configurations and protocol classes (made once per backend)."""

    _cache: ClassVar[dict[str, QuicLibrary]] = {}  # one per backend, per process

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._asyncio: Any = importlib.import_module(f"{backend}.asyncio")
        events: Any = importlib.import_module(f"{backend}.quic.events")
        self._config_cls: Any = importlib.import_module(
            f"{backend}.quic.configuration"
        ).QuicConfiguration
        self.client_protocol, self.server_protocol = _lib_protocols(
            self._asyncio.QuicConnectionProtocol,
            events.StreamDataReceived,
            events.ConnectionTerminated,
            CAN_OPEN[backend],
        )

    @classmethod
    def get(cls, backend: str) -> QuicLibrary:
        if backend not in cls._cache:
            cls._cache[backend] = cls(backend)
        return cls._cache[backend]

    def configuration(self, is_client: bool) -> Any:
        cfg = self._config_cls(
            is_client=is_client,
            alpn_protocols=[LIB_ALPN],
            idle_timeout=limits.QUIC_IDLE_TIMEOUT,
            max_datagram_size=limits.QUIC_MAX_DATAGRAM_SIZE,
            max_data=limits.QUIC_MAX_DATA,
            max_stream_data=limits.QUIC_MAX_STREAM_DATA,
        )
        if self.backend == "qh3":
            cfg.probe_datagram_size = False  # as our qh3 backend: no path-MTU probing
        if is_client:
            cfg.verify_mode = ssl.CERT_NONE  # loopback, self-signed
            if self.backend == "qh3":
                cfg.verify_hostname = False
        else:
            cert_pem, key_pem = certificate()  # hnet's own self-signed P-256 certificate
            if self.backend == "qh3":
                cfg.load_cert_chain(cert_pem, key_pem)
            else:
                cfg.certificate = x509.load_pem_x509_certificate(cert_pem)
                cfg.private_key = serialization.load_pem_private_key(key_pem, password=None)
        return cfg

    async def serve(self) -> Any:
        return await self._asyncio.serve(
            LOOPBACK,
            0,
            configuration=self.configuration(False),
            create_protocol=self.server_protocol,
        )

    def connect(self, port: int) -> contextlib.AbstractAsyncContextManager[Any]:
        cm: contextlib.AbstractAsyncContextManager[Any] = self._asyncio.connect(
            LOOPBACK,
            port,
            configuration=self.configuration(True),
            create_protocol=self.client_protocol,
        )
        return cm


def _can_open_qh3(quic: Any) -> bool:
    core = quic._core
    if core is None:
        return False
    peer_max, _, opened, _ = core.stream_limits  # (peer max bidi, peer max uni, opened bidi, uni)
    return int(opened) < int(peer_max)


def _can_open_aioquic(quic: Any) -> bool:
    return int(quic._local_next_stream_id_bidi) // 4 < int(quic._remote_max_streams_bidi)


#: backend -> whether the peer's stream credit allows one more bidirectional stream
CAN_OPEN: dict[str, Callable[[Any], bool]] = {"qh3": _can_open_qh3, "aioquic": _can_open_aioquic}


def _lib_protocols(
    base: Any, stream_data: Any, terminated: Any, can_open: Callable[[Any], bool]
) -> tuple[type, type]:
    """The client and server ``QuicConnectionProtocol`` subclasses of one library.

    Both handle stream data themselves (the base class would feed a ``StreamReader`` per stream,
    one more layer than the floor needs). ``can_open(quic)``: whether the peer's stream credit
    allows one more bidirectional stream (the libraries have no public call for it; the same
    test as hnet's backends).
    """

    class LibServerProtocol(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._frames: dict[int, Frames] = {}

        def quic_event_received(self, event: Any) -> None:
            if not isinstance(event, stream_data):
                return
            sid = event.stream_id
            frames = self._frames.get(sid)
            if frames is None:
                frames = self._frames[sid] = Frames()
            out = b"".join(lib_reply(m) for m in frames.feed(event.data))
            if event.end_stream:
                del self._frames[sid]
            if out or event.end_stream:
                # sent with the next transmit(), which the base class does after every datagram
                self._quic.send_stream_data(sid, out, event.end_stream)

    class LibClientProtocol(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._credit = asyncio.Event()
            self._credit_wait = False
            super().__init__(*args, **kwargs)
            self._frames: dict[int, Frames] = {}
            self._waiters: dict[int, deque[asyncio.Future[bytes]]] = {}
            self.failure: str | None = None

        def new_stream(self) -> int:
            sid: int = self._quic.get_next_available_stream_id()
            return sid

        async def open_stream(self) -> int:
            """A new stream's id, once the peer's stream credit allows it (the caller bounds
            the wait)."""
            while not can_open(self._quic):
                if self.failure is not None:
                    raise TransportBenchError(self.failure)
                self._credit.clear()
                self._credit_wait = True
                await self._credit.wait()
            return self.new_stream()

        def transmit(self) -> None:
            # called after every datagram the connection takes in: the moment credit may grow
            super().transmit()
            if self._credit_wait and (self.failure is not None or can_open(self._quic)):
                self._credit_wait = False
                self._credit.set()

        def request(self, sid: int, message: bytes, end: bool) -> asyncio.Future[bytes]:
            """Send ``message`` on stream ``sid`` (ending it if ``end``); the reply's future."""
            if self.failure is not None:
                raise TransportBenchError(self.failure)
            self._quic.send_stream_data(sid, U32.pack(len(message)), False)  # may raise first
            self._quic.send_stream_data(sid, message, end)
            fut: asyncio.Future[bytes] = self._loop.create_future()
            self._waiters.setdefault(sid, deque()).append(fut)
            self.transmit()
            return fut

        def _fail(self, reason: str) -> None:
            self.failure = self.failure or reason
            self._credit.set()
            for waiters in self._waiters.values():
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(TransportBenchError(self.failure))
            self._waiters.clear()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, terminated):
                self._fail(f"connection closed ({event.error_code}: {event.reason_phrase})")
                return
            if not isinstance(event, stream_data):
                return
            sid = event.stream_id
            frames = self._frames.get(sid)
            if frames is None:
                frames = self._frames[sid] = Frames()
            waiters = self._waiters.get(sid)
            for message in frames.feed(event.data):
                if not waiters:
                    self.failure = self.failure or f"unexpected reply on stream {sid}"
                    continue
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(message)
            if event.end_stream:
                del self._frames[sid]
                left = self._waiters.pop(sid, None)
                if left:
                    self._fail(f"stream {sid} ended with {len(left)} requests unanswered")

    return LibClientProtocol, LibServerProtocol


class LibClient:
    """One bare-library client connection (handshake done when :meth:`dial` returns)."""

    def __init__(self, kind: str, stack: contextlib.AsyncExitStack, proto: Any) -> None:
        self.kind = kind
        self._stack = stack
        self.proto = proto
        self._stream: int | None = None  # the long-lived stream, opened on first use
        #: request streams open at once, at most as many as our QUIC sender keeps
        self._slots = asyncio.Semaphore(limits.QUIC_MAX_STREAMS)

    @classmethod
    async def dial(cls, kind: str, port: int) -> LibClient:
        lib = QuicLibrary.get(kind.split("-", 1)[1])
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(TIMEOUT):
                proto = await stack.enter_async_context(lib.connect(port))
        except BaseException:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await stack.aclose()
            raise
        return cls(kind, stack, proto)

    @property
    def failure(self) -> str | None:
        failure: str | None = self.proto.failure
        return failure

    async def request(self, message: bytes) -> bytes:
        """``message`` on a new stream (ended with it); its reply.

        At most ``QUIC_MAX_STREAMS`` such streams are open at once (our QUIC sender's bound),
        and a new one waits for the peer's stream credit as ours does (qh3 raises past it).
        """
        proto = self.proto
        async with self._slots:
            sid = await proto.open_stream()
            reply: bytes = await proto.request(sid, message, True)
        return reply

    async def request_on_stream(self, message: bytes) -> bytes:
        """``message`` on this connection's one long-lived stream; its reply."""
        proto = self.proto
        if self._stream is None:
            self._stream = int(proto.new_stream())
        reply: bytes = await proto.request(self._stream, message, False)
        return reply

    async def echo(self, size: int, on_stream: bool = False) -> None:
        message = make_message(OP_ECHO, 0, size)
        send = self.request_on_stream if on_stream else self.request
        if await send(message) != message:
            raise TransportBenchError(f"{LABELS[self.kind]}: echo differs from what was sent")

    async def aclose(self) -> None:
        """Close the connection (the library waits out its draining period; bounded)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._stack.aclose()
        transport = getattr(self.proto, "_transport", None)
        if transport is not None:
            transport.close()  # after a timeout the library has not closed its socket


class TransportServers:
    """A server for each kind, on loopback; :attr:`ports` maps kind -> port."""

    def __init__(
        self,
        ids: Identities,
        kinds: tuple[str, ...] = KINDS + LIB_KINDS + PATTERN_KINDS,
        drive: str = STANDALONE,
    ) -> None:
        self.ids = ids
        self.kinds = kinds
        self.drive = drive
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._listeners: list[QuicListener] = []
        self._lib_servers: list[Any] = []  # the libraries' QuicServer (a DatagramProtocol)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: set[Session] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: Session) -> None:
        self._sessions.add(session)
        try:
            if self.drive == DRIVEN:
                self._start_driven(session)
                await session.wait_closed()
            else:
                with contextlib.suppress(Exception):
                    await session.run(session_deliver, IDLE)
        finally:
            self._sessions.discard(session)

    @staticmethod
    def _start_driven(session: Session) -> None:
        """:func:`session_deliver`'s replies from a session driven as a peer table drives it;
        a reply that cannot be sent closes the session (its client then reports it)."""
        sender = driven.Sender(session, session.abort)

        def deliver(_s: Session, data: bytes) -> None:
            op, rid = HEAD.unpack_from(data)
            if op == OP_ECHO:
                sender.submit(data)
            elif op == OP_BULK:
                sender.submit(HEAD.pack(OP_ACK, rid))
            else:
                session.abort(f"unknown op {op}")

        driven.start(session, deliver, lambda _s: None)

    async def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                session = await tcp_transport.accept(reader, writer, self.ids.responder())
        except Exception:
            writer.close()
            return
        await self._serve(session)

    async def start(self) -> dict[str, int]:
        for kind in self.kinds:
            if kind == "raw":
                server = await asyncio.start_server(
                    lambda r, w: self._spawn(raw_server(r, w)), LOOPBACK, 0, limit=READ_SIZE
                )
            elif kind == "tcp":
                server = await asyncio.start_server(
                    lambda r, w: self._spawn(self._accept_tcp(r, w)), LOOPBACK, 0, limit=READ_SIZE
                )
            elif kind in LIB_KINDS or kind in PATTERN_KINDS:
                backend = kind.split("-", 1)[1]
                lib = QuicLibrary.get(backend)
                if kind in LIB_KINDS:
                    lib_server = await lib.serve()
                else:
                    cfg = lib.configuration(False)
                    lib_server = await pattern.serve(backend, cfg, CAN_OPEN[backend])
                self._lib_servers.append(lib_server)
                self.ports[kind] = int(lib_server._transport.get_extra_info("sockname")[1])
                continue
            else:
                listener = QuicListener(backend=kind.split("-", 1)[1])
                await listener.start(
                    LOOPBACK,
                    0,
                    make_responder=self.ids.responder,
                    on_session=lambda s: self._spawn(self._serve(s)),
                )
                self._listeners.append(listener)
                self.ports[kind] = int(listener.address[1])
                continue
            self._servers.append(server)
            self.ports[kind] = int(server.sockets[0].getsockname()[1])
        return self.ports

    async def aclose(self) -> None:
        for listener in self._listeners:
            listener.close()
        for lib_server in self._lib_servers:
            lib_server.close()  # closes its connections (CONNECTION_CLOSE) and its socket
        for session in list(self._sessions):
            session.abort("benchmark done")
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


class ServerProcess:
    """:class:`TransportServers` in a child process (``python bench/transports.py --serve``).

    The child gets the two identities' seeds on its command line, prints its ports as one JSON
    line, and exits when its stdin closes (so it never outlives the benchmark).
    """

    def __init__(self, ids: Identities, kinds: tuple[str, ...], drive: str = STANDALONE) -> None:
        self.ids = ids
        self.kinds = kinds
        self.drive = drive
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}

    async def start(self) -> dict[str, int]:
        seeds = ",".join(
            keys.seed_bytes(k).hex() for k in (self.ids.client_key, self.ids.server_key)
        )
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            ",".join(self.kinds),
            "--seeds",
            seeds,
            "--drive",
            self.drive,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # stopped by us (stdin EOF, then kill), not by Ctrl-C
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        try:
            self.ports = {k: int(v) for k, v in json.loads(line).items()}
        except ValueError:
            raise TransportBenchError(f"transport server did not start (said {line!r})") from None
        return self.ports

    async def aclose(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()


# --- clients -------------------------------------------------------------------------------------


class MuxClient:
    """One connection; requests carry an id, replies are matched to them by id."""

    kind = "?"

    def __init__(self) -> None:
        self._next_id = 1
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.failure: str | None = None

    def new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def _reply(self, data: bytes) -> None:
        _, rid = HEAD.unpack_from(data)
        fut = self._waiters.pop(rid, None)
        if fut is None:
            self.failure = f"{LABELS[self.kind]}: reply to unknown request {rid}"
        elif not fut.done():
            fut.set_result(data)

    def _ended(self, reason: str) -> None:
        self.failure = self.failure or reason
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(TransportBenchError(f"{LABELS[self.kind]}: {self.failure}"))
        self._waiters.clear()

    async def _send(self, message: bytes) -> None:
        raise NotImplementedError

    async def submit(self, message: bytes) -> asyncio.Future[bytes]:
        """Send ``message`` (its id is bytes 1..8); the future gets the reply with that id."""
        if self.failure is not None:
            raise TransportBenchError(self.failure)
        _, rid = HEAD.unpack_from(message)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        await self._send(message)
        return fut

    async def request(self, message: bytes) -> bytes:
        """Send ``message`` and wait for its reply."""
        return await (await self.submit(message))

    async def echo(self, size: int) -> None:
        message = make_message(OP_ECHO, self.new_id(), size)
        if await self.request(message) != message:
            raise TransportBenchError(f"{LABELS[self.kind]}: echo differs from what was sent")

    async def aclose(self) -> None:
        raise NotImplementedError


class RawMux(MuxClient):
    kind = "raw"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.r = reader
        self.w = writer
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def dial(cls, port: int) -> RawMux:
        reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=READ_SIZE)
        tcp_transport.tune_socket(writer)
        return cls(reader, writer)

    async def _read(self) -> None:
        readexactly = self.r.readexactly
        unpack = U32.unpack
        try:
            while True:
                self._reply(await readexactly(unpack(await readexactly(4))[0]))
        except (asyncio.IncompleteReadError, ConnectionError):
            self._ended("connection closed")

    async def _send(self, message: bytes) -> None:
        self.w.write(U32.pack(len(message)))
        self.w.write(message)
        await self.w.drain()

    async def aclose(self) -> None:
        self.w.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.w.wait_closed()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


class SessionMux(MuxClient):
    """A client over one of our sessions, standalone (``run`` + ``send``) or driven as a node's
    peer table drives it (:mod:`bench.driven`: ``start`` + ``submit``)."""

    def __init__(self, kind: str, session: Session, drive: str = STANDALONE) -> None:
        super().__init__()
        self.kind = kind
        self.session = session
        self._sender: driven.Sender | None = None
        loop = asyncio.get_running_loop()
        if drive == DRIVEN:
            self._closed: asyncio.Future[None] = loop.create_future()
            self._sender = driven.Sender(session, self._ended)
            driven.start(session, lambda _s, data: self._reply(data), self._on_closed)
            self._reader = loop.create_task(self._wait_closed())
        else:
            self._reader = loop.create_task(self._run())

    @classmethod
    async def dial(
        cls, kind: str, port: int, ids: Identities, drive: str = STANDALONE
    ) -> SessionMux:
        session: Session
        if kind == "tcp":
            session = await tcp_transport.connect(LOOPBACK, port, ids.initiator())
        else:
            session = await quic_connect(
                LOOPBACK, port, ids.initiator(), backend=kind.split("-", 1)[1]
            )
        return cls(kind, session, drive)

    async def _run(self) -> None:
        async def deliver(session: Session, data: bytes) -> None:
            self._reply(data)

        try:
            await self.session.run(deliver, IDLE)
            self._ended(self.session.close_reason or "session closed")
        except Exception as e:
            self._ended(f"session failed: {e}")

    def _on_closed(self, session: Session) -> None:
        self._ended(session.close_reason or "session closed")
        if not self._closed.done():
            self._closed.set_result(None)

    async def _wait_closed(self) -> None:
        await self._closed

    async def _send(self, message: bytes) -> None:
        sender = self._sender
        if sender is None:
            await self.session.send(message)
        elif len(message) <= SMALL_SUBMIT:
            sender.submit(message)  # as a node sends: written now or queued, never waited for
        else:  # large messages back to back need the backpressure ``send`` has
            await sender.submit_and_wait(message)

    async def aclose(self) -> None:
        self.session.abort("benchmark done")
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(5):
                    await self._reader


async def dial(kind: str, port: int, ids: Identities, drive: str = STANDALONE) -> MuxClient:
    if kind == "raw":
        return await RawMux.dial(port)
    return await SessionMux.dial(kind, port, ids, drive)


# --- sizes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransportPlan:
    """Per-round sizes of the transports section; per-kind counts are (raw, tcp, qh3, aioquic).

    A bare library's lines (``lib-qh3``, ``lib-aioquic``) take the counts of our QUIC kind on the
    same backend, so floor and ours do the same work each round.

    QUIC runs at a few thousand round trips and tens of MB/s here, raw TCP and Noise-TCP at tens
    of thousands and hundreds of MB/s, so each kind gets a count that takes a comparable time.
    """

    setup: int  # fresh connections per round, every kind
    rt: tuple[int, int, int, int]  # sequential 64 B round trips
    streams: int  # concurrent request loops
    conc: tuple[int, int, int, int]  # round trips per loop
    bulk: tuple[int, int, int, int]  # 10 MB messages
    hol_idle: int  # idle 1 KiB probes, every kind
    hol_bulk: tuple[int, int, int, int]  # 10 MB messages during which probes run
    #: mean pause between head-of-line probes, s (0: back to back; else uniform in [0, 2x])
    hol_gap: float = 0.0

    def of(self, field_name: str) -> Callable[[str], int]:
        counts = getattr(self, field_name)
        if isinstance(counts, int):
            return lambda kind: int(counts)
        return lambda kind: int(counts[KINDS.index(BASE.get(kind, kind))])

    def warmup(self) -> TransportPlan:
        """The warm-up round's sizes: no 10 MB message over QUIC (seconds each, for nothing)."""
        return TransportPlan(
            setup=1,
            rt=(100, 100, 30, 30),
            streams=self.streams,
            conc=(2, 2, 1, 1),
            bulk=(1, 1, 0, 0),
            hol_idle=20,
            hol_bulk=(1, 1, 0, 0),
            hol_gap=self.hol_gap,
        )


DEFAULT_TPLAN = TransportPlan(
    setup=5,
    rt=(1500, 1000, 250, 150),
    streams=100,
    conc=(30, 20, 6, 4),
    bulk=(10, 5, 2, 1),
    hol_idle=150,
    hol_bulk=(10, 5, 1, 1),
)
QUICK_TPLAN = TransportPlan(
    setup=3,
    rt=(1000, 600, 150, 80),
    streams=100,
    conc=(20, 10, 4, 2),
    bulk=(5, 3, 1, 1),
    hol_idle=100,
    hol_bulk=(5, 3, 1, 1),
)


# --- the benchmarks ------------------------------------------------------------------------------


class Endpoint:
    """Where a kind's server is and who the client is: shared by every benchmark of a run."""

    def __init__(self, ids: Identities, ports: dict[str, int], drive: str = STANDALONE) -> None:
        self.ids = ids
        self.ports = ports
        self.drive = drive

    async def dial(self, kind: str) -> MuxClient:
        return await dial(kind, self.ports[kind], self.ids, self.drive)

    async def dial_lib(self, kind: str) -> LibClient | pattern.PatternClient:
        """A bare library's client: its echo (``lib-*``) or hnet-noise/1's pattern (``pat-*``)."""
        if kind in PATTERN_KINDS:
            backend = kind.split("-", 1)[1]
            cfg = QuicLibrary.get(backend).configuration(True)
            return await pattern.PatternClient.dial(
                backend, self.ports[kind], cfg, CAN_OPEN[backend], TIMEOUT
            )
        return await LibClient.dial(kind, self.ports[kind])


# --- the timed loops, shared by our lines and the bare libraries' ------------------------------


async def _setup_samples(connect: Callable[[], Any], n: int) -> tuple[float, dict[str, float]]:
    """``n`` fresh connections, each timed to its first verified 64-byte echo (ms); each is
    closed afterwards, untimed."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client = await connect()
        try:
            await client.echo(SMALL)
            samples.append((time.perf_counter() - t0) * 1e3)
        finally:
            await client.aclose()
    return median(samples), {"min_ms": min(samples), "max_ms": max(samples)}


async def _echoes_one_at_a_time(request: Callable[[bytes], Any], n: int, label: str) -> float:
    """``n`` 64-byte echoes one after another; µs per round trip."""
    message = make_message(OP_ECHO, 0, SMALL)
    reply = b""
    t0 = time.perf_counter()
    for _ in range(n):
        reply = await request(message)
    elapsed = time.perf_counter() - t0
    if reply != message:
        raise TransportBenchError(f"{label}: echo differs from what was sent")
    return elapsed / n * 1e6


async def _echoes_concurrently(
    request: Callable[[bytes], Any], messages: list[bytes], per: int, label: str
) -> float:
    """One loop per message, each echoing it ``per`` times; the elapsed seconds."""

    async def loop(message: bytes) -> None:
        for _ in range(per):
            if await request(message) != message:
                raise TransportBenchError(f"{label}: wrong echo")

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(m) for m in messages))
    return time.perf_counter() - t0


class _Client(Protocol):
    """What a benchmark on one connection uses of its client: ours or a bare library's."""

    @property
    def failure(self) -> str | None: ...

    async def echo(self, size: int) -> None: ...

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=_Client)


class _OneConnection(Generic[C]):
    """A benchmark on one long-lived connection of one kind (dialled by ``_dial``)."""

    def __init__(self, ep: Endpoint, kind: str, metric: Metric) -> None:
        self.ep = ep
        self.kind = kind
        self.metric = metric
        self.metric.params.setdefault("transport", kind)
        self.client: C | None = None

    async def _dial(self) -> C:
        raise NotImplementedError

    async def setup(self) -> None:
        self.client = await self._dial()
        await self.client.echo(SMALL)

    def check(self) -> C:
        assert self.client is not None
        if self.client.failure is not None:
            raise TransportBenchError(f"{self.metric.label}: {self.client.failure}")
        return self.client

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class _Base(_OneConnection["MuxClient"]):
    """A benchmark on one long-lived connection of one of our kinds (or raw TCP)."""

    async def _dial(self) -> MuxClient:
        return await self.ep.dial(self.kind)


def _key(kind: str) -> str:
    return kind.replace("-", "_")


def _floor(prefix: str, kind: str) -> str | None:
    """Key of the bare-library line under ``prefix``'s line of our QUIC ``kind`` or of a
    pattern floor (the library's echo of the same backend), else None."""
    if kind in PATTERN_KINDS:
        return f"{prefix}_{_key(FLOOR[BASE[kind]])}"
    return f"{prefix}_{_key(FLOOR[kind])}" if kind in FLOOR else None


def _pattern(prefix: str, kind: str) -> str | None:
    """Key of the pattern floor's line under ``prefix``'s line of our QUIC ``kind``."""
    return f"{prefix}_{_key(PATTERN[kind])}" if kind in PATTERN else None


class SetupBench:
    """Dial, handshake, one 64-byte request to its verified reply; a fresh connection each."""

    def __init__(self, ep: Endpoint, kind: str) -> None:
        self.ep = ep
        self.kind = kind
        what = "connect + first echo" if kind == "raw" else "connect + handshake + first reply"
        self.metric = Metric(
            f"setup_{_key(kind)}",
            f"{LABELS[kind]} setup ({what})",
            LATENCY,
            None if kind == "raw" else "setup_raw",
            unit="ms",
            params={"transport": kind, "request_bytes": SMALL, "value": "median of the round"},
            floor=_floor("setup", kind),
        )

    async def setup(self) -> None:
        return None

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        n = plan.transport.of("setup")(self.kind)
        return await _setup_samples(lambda: self.ep.dial(self.kind), n)

    async def aclose(self) -> None:
        return None


class RoundTripBench(_Base):
    """64-byte requests one at a time on one connection (QUIC: a new stream each)."""

    def __init__(self, ep: Endpoint, kind: str) -> None:
        super().__init__(
            ep,
            kind,
            Metric(
                f"rt64_{_key(kind)}",
                f"{LABELS[kind]} 64 B round trip",
                LATENCY,
                None if kind == "raw" else "rt64_raw",
                params={"message_bytes": SMALL},
                floor=_floor("rt64", kind),
                pattern=_pattern("rt64", kind),
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        n = plan.transport.of("rt")(self.kind)
        us = await _echoes_one_at_a_time(client.request, n, self.metric.label)
        self.check()
        return us, {}


class ConcurrentBench(_Base):
    """``streams`` request loops at once on one connection; µs per round trip in aggregate."""

    def __init__(self, ep: Endpoint, kind: str, streams: int) -> None:
        self.streams = streams
        super().__init__(
            ep,
            kind,
            Metric(
                f"conc64_{_key(kind)}",
                f"{LABELS[kind]} 64 B round trips, {streams} concurrent",
                LATENCY,
                None if kind == "raw" else "conc64_raw",
                params={"message_bytes": SMALL, "concurrent": streams, "value": "elapsed / count"},
                floor=_floor("conc64", kind),
                pattern=_pattern("conc64", kind),
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        per = plan.transport.of("conc")(self.kind)
        messages = [make_message(OP_ECHO, client.new_id(), SMALL) for _ in range(self.streams)]
        elapsed = await _echoes_concurrently(client.request, messages, per, self.metric.label)
        self.check()
        total = self.streams * per
        self.metric.params["round_trips_per_round"] = total
        return elapsed / total * 1e6, {}


class BulkBench(_Base):
    """``count`` messages of 10 MB one way, each acknowledged by a short reply once the server
    has all of it. They are sent one after another as fast as ``send`` returns (each transport's
    own backpressure: TCP's drain, QUIC's credit), then the acknowledgements are awaited."""

    def __init__(self, ep: Endpoint, kind: str) -> None:
        self._messages: list[bytes] = []
        super().__init__(
            ep,
            kind,
            Metric(
                f"bulk_{_key(kind)}",
                f"{LABELS[kind]} 10 MB messages",
                THROUGHPUT,
                None if kind == "raw" else "bulk_raw",
                params={
                    "message_bytes": BULK,
                    "sent": "back to back, as send() returns",
                    "acknowledged": "each, by a 9-byte reply",
                },
                floor=_floor("bulk", kind),
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        n = plan.transport.of("bulk")(self.kind)
        while len(self._messages) < n:  # built once: the benchmark times sending, not building
            self._messages.append(make_message(OP_BULK, client.new_id(), BULK))
        if n == 0:
            return float("nan"), {}
        self.metric.params["messages_per_round"] = n
        t0 = time.perf_counter()
        acks = [await client.submit(m) for m in self._messages[:n]]
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - t0
        self.check()
        return n * BULK / elapsed / MB, {"seconds": elapsed}


class HolBench(_Base):
    """Head-of-line latency: 1 KiB round trips idle, then while 10 MB messages are in flight.

    Each round: ``idle`` probes (sequential 1 KiB echoes, after WARM_PROBES unrecorded ones) on
    the quiet connection, half of them before and half after the loaded part, in which a bulk
    task sends ``bulk`` messages of 10 MB one after another (each waits for the previous one's
    acknowledgement) while probes run back to back (or, with ``hol_gap``, with random pauses
    between them, idle ones too). A probe is *loaded* if a 10 MB
    message had been sent and not yet acknowledged when the probe was sent. Samples are pooled
    over the rounds for the percentiles (:meth:`summary`); the per-round value is the round's
    loaded p99.
    """

    def __init__(self, ep: Endpoint, kind: str) -> None:
        self.idle: list[float] = []
        self.loaded: list[float] = []
        self.bulk_rates: list[float] = []
        self._messages: list[bytes] = []
        self._random = random.Random(1)
        super().__init__(
            ep,
            kind,
            Metric(
                f"hol_{_key(kind)}",
                f"{LABELS[kind]} 1 KiB round trip during 10 MB, p99",
                LATENCY,
                None,
                params={"probe_bytes": PROBE, "bulk_bytes": BULK},
            ),
        )
        self.metric.in_table = False

    async def _probe(self, client: MuxClient, message: bytes, gap: float = 0.0) -> float:
        """One 1 KiB round trip (µs), then a random pause if ``gap``."""
        t0 = time.perf_counter()
        reply = await client.request(message)
        dt = (time.perf_counter() - t0) * 1e6
        if reply != message:
            raise TransportBenchError(f"{self.metric.label}: wrong echo")
        if gap:
            await asyncio.sleep(self._random.uniform(0, 2 * gap))
        return dt

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        n_bulk = plan.transport.of("hol_bulk")(self.kind)
        while len(self._messages) < n_bulk:
            self._messages.append(make_message(OP_BULK, client.new_id(), BULK))
        probe = make_message(OP_ECHO, client.new_id(), PROBE)
        for _ in range(WARM_PROBES):  # the first probes after another benchmark run cold
            await self._probe(client, probe)
        gap = plan.transport.hol_gap
        n_idle = plan.transport.of("hol_idle")(self.kind)
        # idle probes: half before the transfer, half after it (the round's drift hits both)
        idle = [await self._probe(client, probe, gap) for _ in range(n_idle // 2)]
        if n_bulk == 0:
            return float("nan"), {}

        in_flight = False

        async def bulk() -> float:
            nonlocal in_flight
            t0 = time.perf_counter()
            for m in self._messages[:n_bulk]:
                in_flight = True
                try:
                    await client.request(m)
                finally:
                    in_flight = False
            return time.perf_counter() - t0

        loaded: list[float] = []
        task = asyncio.get_running_loop().create_task(bulk())
        try:
            while not in_flight and not task.done():
                await asyncio.sleep(0)
            while not task.done():
                was_loaded = in_flight
                dt = await self._probe(client, probe, gap)
                if was_loaded:
                    loaded.append(dt)
            seconds = await task
        finally:
            if not task.done():
                task.cancel()
        idle += [await self._probe(client, probe, gap) for _ in range(n_idle - n_idle // 2)]
        self.check()
        if not loaded:
            raise TransportBenchError(f"{self.metric.label}: no probe ran during the transfer")
        self._round = (idle, loaded, n_bulk * BULK / seconds / MB)
        detail = {
            "idle_p50_us": percentile(idle, 50),
            "idle_p99_us": percentile(idle, 99),
            "loaded_p50_us": percentile(loaded, 50),
            "loaded_p99_us": percentile(loaded, 99),
            "loaded_samples": float(len(loaded)),
            "bulk_MB_per_s": n_bulk * BULK / seconds / MB,
        }
        return percentile(loaded, 99), detail

    def record(self) -> None:
        """Keep the last round's samples (called for recorded rounds only)."""
        idle, loaded, rate = self._round
        self.idle += idle
        self.loaded += loaded
        self.bulk_rates.append(rate)

    def summary(self) -> dict[str, float]:
        idle_p99 = percentile(self.idle, 99)
        loaded_p99 = percentile(self.loaded, 99)
        return {
            "idle_p50_us": percentile(self.idle, 50),
            "idle_p99_us": idle_p99,
            "loaded_p50_us": percentile(self.loaded, 50),
            "loaded_p99_us": loaded_p99,
            "loaded_max_us": max(self.loaded) if self.loaded else float("nan"),
            "p99_loaded_over_idle": loaded_p99 / idle_p99 if idle_p99 else float("nan"),
            "idle_samples": float(len(self.idle)),
            "loaded_samples": float(len(self.loaded)),
            "bulk_MB_per_s_median": median(self.bulk_rates),
        }


# --- the bare libraries' benchmarks (the floor of our QUIC lines) -------------------------------


class _LibBase(_OneConnection["LibClient | pattern.PatternClient"]):
    """A benchmark on one long-lived bare-library connection: the library's echo (``lib-qh3``,
    ``lib-aioquic``) or hnet-noise/1's pattern on it (``pat-qh3``, ``pat-aioquic``)."""

    def __init__(self, ep: Endpoint, kind: str, metric: Metric) -> None:
        super().__init__(ep, kind, metric)
        self.metric.params.setdefault("api", f"{kind.split('-', 1)[1]}.asyncio serve/connect")
        if kind in PATTERN_KINDS:
            self.metric.params.setdefault("pattern", "bench/pattern.py")

    async def _dial(self) -> LibClient | pattern.PatternClient:
        return await self.ep.dial_lib(self.kind)


def _lib_streams(kind: str, one_stream: bool) -> str:
    """How a bare-library line uses streams, for its label."""
    if kind in PATTERN_KINDS:
        return "a stream per message each way"
    return "one long-lived stream" if one_stream else "a new stream each"


class LibSetupBench:
    """Bare library: new connection (TLS handshake) to its first 64-byte echo; closed after."""

    def __init__(self, ep: Endpoint, kind: str) -> None:
        self.ep = ep
        self.kind = kind
        self.metric = Metric(
            f"setup_{_key(kind)}",
            f"{LABELS[kind]} setup (connect + TLS handshake + first echo)",
            LATENCY,
            "setup_raw",
            unit="ms",
            params={"transport": kind, "request_bytes": SMALL, "value": "median of the round"},
        )

    async def setup(self) -> None:
        return None

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        # closing is not timed: the library drains the connection first
        n = plan.transport.of("setup")(self.kind)
        return await _setup_samples(lambda: self.ep.dial_lib(self.kind), n)

    async def aclose(self) -> None:
        return None


class LibRoundTripBench(_LibBase):
    """Bare library: 64-byte echoes one at a time, each on a new stream or all on one stream."""

    def __init__(self, ep: Endpoint, kind: str, one_stream: bool) -> None:
        if one_stream and kind in PATTERN_KINDS:
            raise ValueError("the pattern floor has a stream per message")
        self.one_stream = one_stream
        how = _lib_streams(kind, one_stream)
        super().__init__(
            ep,
            kind,
            Metric(
                f"rt64_{_key(kind)}{'_stream' if one_stream else ''}",
                f"{LABELS[kind]} 64 B echo, {how}",
                LATENCY,
                "rt64_raw",
                params={"message_bytes": SMALL, "streams": how},
                floor=_floor("rt64", kind),
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        n = plan.transport.of("rt")(self.kind)
        if self.one_stream:
            assert isinstance(client, LibClient)
            request = client.request_on_stream
        else:
            request = client.request
        us = await _echoes_one_at_a_time(request, n, self.metric.label)
        self.check()
        return us, {}


class LibConcurrentBench(_LibBase):
    """Bare library: ``streams`` echo loops at once, every request on a new stream."""

    def __init__(self, ep: Endpoint, kind: str, streams: int) -> None:
        self.streams = streams
        super().__init__(
            ep,
            kind,
            Metric(
                f"conc64_{_key(kind)}",
                f"{LABELS[kind]} 64 B echoes, {streams} concurrent, "
                + ("streams per message" if kind in PATTERN_KINDS else "new streams"),
                LATENCY,
                "conc64_raw",
                params={"message_bytes": SMALL, "concurrent": streams, "value": "elapsed / count"},
                floor=_floor("conc64", kind),
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        per = plan.transport.of("conc")(self.kind)
        messages = [make_message(OP_ECHO, i, SMALL) for i in range(self.streams)]
        elapsed = await _echoes_concurrently(client.request, messages, per, self.metric.label)
        self.check()
        total = self.streams * per
        self.metric.params["round_trips_per_round"] = total
        return elapsed / total * 1e6, {}


class LibBulkBench(_LibBase):
    """Bare library: ``count`` messages of 10 MB, each on its own stream, sent back to back
    (queued with the library, which sends under its flow control); each acknowledged by a short
    reply once the server has all of it. The shape of :class:`BulkBench`."""

    def __init__(self, ep: Endpoint, kind: str) -> None:
        self._messages: list[bytes] = []
        super().__init__(
            ep,
            kind,
            Metric(
                f"bulk_{_key(kind)}",
                f"{LABELS[kind]} 10 MB messages",
                THROUGHPUT,
                "bulk_raw",
                params={
                    "message_bytes": BULK,
                    "sent": "back to back, a stream each",
                    "acknowledged": "each, by a 9-byte reply",
                },
            ),
        )

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        client = self.check()
        n = plan.transport.of("bulk")(self.kind)
        while len(self._messages) < n:  # built once: the benchmark times sending, not building
            self._messages.append(make_message(OP_BULK, len(self._messages) + 1, BULK))
        if n == 0:
            return float("nan"), {}
        self.metric.params["messages_per_round"] = n
        t0 = time.perf_counter()
        acks = await asyncio.gather(*(client.request(m) for m in self._messages[:n]))
        elapsed = time.perf_counter() - t0
        for m, ack in zip(self._messages[:n], acks, strict=True):
            if ack != HEAD.pack(OP_ACK, HEAD.unpack_from(m)[1]):
                raise TransportBenchError(f"{self.metric.label}: wrong acknowledgement")
        self.check()
        return n * BULK / elapsed / MB, {"seconds": elapsed}


# --- server process ------------------------------------------------------------------------------


async def _serve_forever(kinds: tuple[str, ...], seeds: str, drive: str) -> None:
    client_seed, server_seed = (bytes.fromhex(x) for x in seeds.split(","))
    ids = Identities(
        "bench-client.os",
        keys.from_seed(client_seed),
        "bench-server.os",
        keys.from_seed(server_seed),
    )
    servers = TransportServers(ids, kinds, drive)
    ports = await servers.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps(ports), flush=True)
    await done.wait()
    await servers.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description="transport benchmark servers (used by bench/run.py)")
    p.add_argument("--serve", required=True, help="comma-separated kinds")
    p.add_argument("--seeds", required=True)
    p.add_argument("--drive", choices=DRIVES, default=STANDALONE)
    args = p.parse_args()
    kinds = tuple(k for k in args.serve.split(",") if k)
    with contextlib.suppress(KeyboardInterrupt):
        runtime.run(_serve_forever(kinds, args.seeds, args.drive))


if __name__ == "__main__":
    main()
