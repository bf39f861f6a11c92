"""hnet benchmarks: raw asyncio TCP (the yardstick) against our sessions and real nodes.

    python bench/run.py [--rounds R] [--quick] [--json PATH] [--loop uvloop|asyncio]

Every round runs each benchmark once, in turn (the starting point rotates each round so no
benchmark always follows the same one); the report gives, per benchmark, the median across
rounds and the ratio to its raw yardstick measured in the same rounds (median of the per-round
ratios). See bench/README.md for what each line measures.

Benchmarks (all on loopback):

* raw TCP ping-pong, in-process: 64-byte messages with a u32 length prefix, asyncio streams,
  echo server and client on one event loop. Yardstick for the in-process sessions.
* Noise-TCP / Noise-WS session ping-pong: a :class:`TcpSession` / :class:`WsSession` pair in
  this process (real Noise XX handshake, then ``send`` + ``run(deliver)``), 64-byte payloads.
* raw TCP ping-pong, 2 processes: the same raw client against an echo server in its own
  process (``bench/echo_server.py``). Yardstick for the node processes.
* node hello/ack over TCP / WS: two ``hnet node`` processes per transport; the ``burst``
  control op times each hello (64-byte body) inside the sending node, request to ack.
* raw TCP bulk and Noise-TCP session bulk: 10 MB messages one way, an ack at the end; MB/s.
* the transports section (bench/transports.py): raw TCP, Noise-TCP and our QUIC on qh3 and on
  aioquic, each QUIC line also compared with the bare QUIC library of its backend (the floor,
  measured in the same rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``hnet`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench import driven
from bench.common import (
    BENCH_DIR,
    DEFAULT_JSON,
    LATENCY,
    LOOPBACK,
    MB,
    THROUGHPUT,
    Identities,
    Metric,
    compare,
    format_table,
    machine_info,
    median,
    percentile,
    pin,
    pin_choice,
)
from bench.common import run_round as common_run_round
from bench.floors import AeadFloorBench, HandshakeFloorBench, SmallAeadFloorBench
from bench.transports import (
    DEFAULT_TPLAN,
    DRIVES,
    KINDS,
    LABELS,
    LIB_KINDS,
    PATTERN_KINDS,
    QUICK_TPLAN,
    STANDALONE,
    TAGS,
    BulkBench,
    ConcurrentBench,
    Endpoint,
    HolBench,
    LibBulkBench,
    LibConcurrentBench,
    LibRoundTripBench,
    LibSetupBench,
    RoundTripBench,
    ServerProcess,
    SetupBench,
    TransportBenchError,
    TransportPlan,
    TransportServers,
)
from hnet import runtime
from hnet.core.handshake import PeerHandshake
from hnet.core.wire import (
    Address,
    KernelMessage,
    Request,
    encode_kernel_message,
)
from hnet.testing.cluster import Cluster
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.session import Session

U32 = struct.Struct(">I")
#: Same stream buffer limit as our TCP transport, so raw and ours read alike.
READ_SIZE = tcp_transport.READ_SIZE
PING_SIZE = 64
HELLO_SIZE = 64
#: Idle timeout of the benchmark sessions: they are never idle, it only has to be long.
IDLE = 3600.0
SETUP_TIMEOUT = 30.0
#: Upper bound on any one measurement (a stuck benchmark fails the run instead of hanging it).
MEASURE_TIMEOUT = 120.0
CLOSE_TIMEOUT = 5.0


class BenchError(Exception):
    """A benchmark could not run or produced a wrong result; one line for the user."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    pingpong_n: int  # round trips per round, in-process and 2-process raw
    node_n: int  # hellos per round, per transport
    bulk_count: int  # 10 MB messages per round, per bulk benchmark
    bulk_size: int
    #: the transports section (setup, round trips, concurrency, bulk, head-of-line)
    transport: TransportPlan = DEFAULT_TPLAN

    def warmup(self) -> Plan:
        return Plan(
            rounds=1,
            pingpong_n=max(50, self.pingpong_n // 10),
            node_n=max(20, self.node_n // 10),
            bulk_count=1,
            bulk_size=self.bulk_size,
            transport=self.transport.warmup(),
        )


#: About 3-3.5 minutes on a 2-core machine: ~11 s a round (a third of it QUIC aioquic) plus ~3-4 s
#: for the bare QUIC libraries' floor lines (estimated from --quick runs), plus ~5 s to start the
#: processes.
DEFAULT_PLAN = Plan(
    rounds=14,
    pingpong_n=2000,
    node_n=400,
    bulk_count=10,
    bulk_size=10_000_000,
    transport=DEFAULT_TPLAN,
)
#: About 45 s.
QUICK_PLAN = Plan(
    rounds=3,
    pingpong_n=1000,
    node_n=200,
    bulk_count=5,
    bulk_size=10_000_000,
    transport=QUICK_TPLAN,
)


class Bench(Protocol):
    metric: Metric

    async def setup(self) -> None: ...

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        """One round: (value in the metric's unit, per-round detail)."""
        ...

    async def aclose(self) -> None: ...


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()


async def close_server(server: asyncio.Server | None) -> None:
    if server is None:
        return
    server.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await server.wait_closed()


# --- raw asyncio TCP (the yardsticks) ---------------------------------------------------------


async def raw_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo ``[u32 len][bytes]`` messages until the peer closes."""
    nodelay(writer)
    readexactly = reader.readexactly
    unpack = U32.unpack
    try:
        while True:
            header = await readexactly(4)
            body = await readexactly(unpack(header)[0])
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def raw_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Take ``[u32 len][bytes]`` messages; a zero length asks for the count so far (u32).

    Reads ``READ_SIZE`` chunks, as :class:`TcpSession` does, and joins each message into one
    ``bytes`` (what a receiver must hand on). ``readexactly(10 MB)`` would be the obvious code
    but is 2-3x slower (the stream buffer pauses and resumes reading for every chunk), which
    would flatter everything compared with it.
    """
    nodelay(writer)
    read = reader.read
    unpack_from = U32.unpack_from
    count = 0
    need = 0  # bytes still missing from the message in progress (0: between messages)
    parts: list[bytes | memoryview] = []
    tail = b""  # an incomplete length prefix
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
                    if need == 0:
                        writer.write(U32.pack(count))
                        await writer.drain()
                        count = 0
                        continue
                take = min(need, end - pos)
                parts.append(data if take == end else memoryview(data)[pos : pos + take])
                pos += take
                need -= take
                if need == 0:
                    message = b"".join(parts)
                    parts = []
                    count += bool(message)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def raw_pingpong(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, size: int
) -> float:
    """``n`` sequential round trips of a ``size``-byte message; seconds elapsed."""
    message = U32.pack(size) + os.urandom(size)
    write = writer.write
    drain = writer.drain
    readexactly = reader.readexactly
    unpack = U32.unpack
    t0 = time.perf_counter()
    for _ in range(n):
        write(message)
        await drain()
        body = await readexactly(unpack(await readexactly(4))[0])
    elapsed = time.perf_counter() - t0
    if len(body) != size:
        raise BenchError(f"raw echo returned {len(body)} bytes, not {size}")
    return elapsed


class RawPingPong:
    """Raw streams ping-pong against an echo server in this process."""

    def __init__(self) -> None:
        self.metric = Metric(
            "raw_tcp_pingpong",
            "raw TCP ping-pong (in-process)",
            LATENCY,
            None,
            params={"message_bytes": PING_SIZE, "framing": "u32 length prefix", "io": "streams"},
        )
        self._server: asyncio.Server | None = None
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def setup(self) -> None:
        self._server = await asyncio.start_server(raw_echo, LOOPBACK, 0, limit=READ_SIZE)
        port = self._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=READ_SIZE)
        nodelay(writer)
        self._conn = (reader, writer)

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        assert self._conn is not None
        elapsed = await raw_pingpong(*self._conn, plan.pingpong_n, PING_SIZE)
        return elapsed / plan.pingpong_n * 1e6, {}

    async def aclose(self) -> None:
        if self._conn is not None:
            await close_writer(self._conn[1])
        await close_server(self._server)


class RawPingPongRemote:
    """Raw streams ping-pong against ``bench/echo_server.py`` in its own process."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.metric = Metric(
            "raw_tcp_pingpong_2proc",
            "raw TCP ping-pong (2 processes)",
            LATENCY,
            None,
            params={"message_bytes": PING_SIZE, "framing": "u32 length prefix", "io": "streams"},
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def setup(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH_DIR / "echo_server.py"),
            "--host",
            LOOPBACK,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # stopped by us (stdin EOF, then kill), not by Ctrl-C
        )
        pin(self._proc.pid, self.cpu)
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()  # the caller bounds setup in time
        if not line.startswith(b"PORT "):
            raise BenchError(f"echo server did not start (said {line!r})")
        port = int(line.split()[1])
        reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=READ_SIZE)
        nodelay(writer)
        self._conn = (reader, writer)

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        assert self._conn is not None
        elapsed = await raw_pingpong(*self._conn, plan.pingpong_n, PING_SIZE)
        return elapsed / plan.pingpong_n * 1e6, {}

    async def aclose(self) -> None:
        if self._conn is not None:
            await close_writer(self._conn[1])
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server exits on stdin EOF
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await proc.wait()


class RawBulk:
    """Raw streams, ``bulk_count`` messages of ``bulk_size`` bytes one way, then an ack."""

    def __init__(self) -> None:
        self.metric = Metric(
            "raw_tcp_bulk",
            "raw TCP bulk (in-process)",
            THROUGHPUT,
            None,
            params={"framing": "u32 length prefix", "io": "streams"},
        )
        self._server: asyncio.Server | None = None
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._payload = b""

    async def setup(self) -> None:
        self._server = await asyncio.start_server(raw_sink, LOOPBACK, 0, limit=READ_SIZE)
        port = self._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=READ_SIZE)
        nodelay(writer)
        self._conn = (reader, writer)

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        assert self._conn is not None
        reader, writer = self._conn
        if len(self._payload) != plan.bulk_size:
            self._payload = os.urandom(plan.bulk_size)
        self.metric.params.update(message_bytes=plan.bulk_size, messages=plan.bulk_count)
        payload = self._payload
        header = U32.pack(len(payload))
        t0 = time.perf_counter()
        for _ in range(plan.bulk_count):
            writer.write(header)
            writer.write(payload)
            await writer.drain()
        writer.write(U32.pack(0))
        await writer.drain()
        (got,) = U32.unpack(await reader.readexactly(4))
        elapsed = time.perf_counter() - t0
        if got != plan.bulk_count:
            raise BenchError(f"raw bulk: the sink counted {got} of {plan.bulk_count} messages")
        return plan.bulk_count * plan.bulk_size / elapsed / MB, {"seconds": elapsed}

    async def aclose(self) -> None:
        if self._conn is not None:
            await close_writer(self._conn[1])
        await close_server(self._server)


# --- our sessions, in-process -----------------------------------------------------------------


async def echo_deliver(session: Session, message: bytes) -> None:
    await session.send(message)


class SinkDeliver:
    """Counts messages; a 1-byte message asks for the count so far (a u32 reply)."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, session: Session, message: bytes) -> None:
        if len(message) == 1:
            n, self.count = self.count, 0
            await session.send(U32.pack(n))
        else:
            self.count += 1


class Replies:
    """The client side's ``deliver``: hands each incoming message to whoever waits for it."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[bytes] | None = None

    def expect(self) -> asyncio.Future[bytes]:
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    async def __call__(self, session: Session, message: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            raise BenchError(f"unexpected message of {len(message)} bytes")
        waiter.set_result(message)


SessionDeliver = Callable[[Session, bytes], Awaitable[None]]


class SessionPair:
    """A client session in this process connected to a server session in this process."""

    transport = "?"

    def __init__(self, server_deliver: SessionDeliver) -> None:
        self.ids = Identities.generate()
        self.server_deliver = server_deliver
        self.replies = Replies()
        self.client: Session | None = None
        self._client_task: asyncio.Task[None] | None = None
        self._server_sessions: list[Session] = []

    async def listen(self) -> int:
        raise NotImplementedError

    async def dial(self, port: int) -> Session:
        raise NotImplementedError

    async def stop_listening(self) -> None:
        raise NotImplementedError

    async def serve(self, accept: Awaitable[Session]) -> None:
        """Server side of one connection: handshake (bounded), then run until it closes."""
        async with asyncio.timeout(SETUP_TIMEOUT):
            session = await accept
        self._server_sessions.append(session)
        await session.run(self.server_deliver, IDLE)

    async def start(self) -> None:
        port = await self.listen()
        async with asyncio.timeout(SETUP_TIMEOUT):
            self.client = await self.dial(port)
        self._client_task = asyncio.create_task(self.client.run(self.replies, IDLE))

    async def request(self, message: bytes) -> bytes:
        assert self.client is not None
        reply = self.replies.expect()
        await self.client.send(message)
        return await reply

    def check_alive(self) -> None:
        task = self._client_task
        if task is not None and task.done():
            exc = task.exception()
            raise BenchError(f"{self.transport} client session ended: {exc or 'closed'}")

    async def aclose(self) -> None:
        if self.client is not None:
            self.client.abort("benchmark done")
        if self._client_task is not None:
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._client_task
        for s in self._server_sessions:
            s.abort("benchmark done")
        await self.stop_listening()


class StreamPair(SessionPair):
    """A session pair over a listening socket of this process: TCP or WebSocket (``_connect``
    and ``_accept`` are the transport module's)."""

    _connect: ClassVar[Callable[[str, int, PeerHandshake], Awaitable[Session]]]
    _accept: ClassVar[
        Callable[[asyncio.StreamReader, asyncio.StreamWriter, PeerHandshake], Awaitable[Session]]
    ]

    def __init__(self, server_deliver: SessionDeliver) -> None:
        super().__init__(server_deliver)
        self._server: asyncio.Server | None = None

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.serve(type(self)._accept(reader, writer, self.ids.responder()))
        finally:
            writer.close()

    async def listen(self) -> int:
        self._server = await asyncio.start_server(self._on_conn, LOOPBACK, 0, limit=READ_SIZE)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def dial(self, port: int) -> Session:
        return await type(self)._connect(LOOPBACK, port, self.ids.initiator())

    async def stop_listening(self) -> None:
        await close_server(self._server)


class TcpPair(StreamPair):
    transport = "tcp"
    _connect = tcp_transport.connect
    _accept = tcp_transport.accept


class DrivenTcpPair(TcpPair):
    """A TCP session pair driven as a node's peer table drives its sessions
    (:mod:`bench.driven`: messages delivered from the transport's callback, with no
    reader-task wake-up, and sent with :meth:`Session.submit`). The server echoes."""

    def __init__(self) -> None:
        super().__init__(echo_deliver)  # not used: serve() below starts the session instead
        self._waiter: asyncio.Future[bytes] | None = None
        self.failure: str | None = None
        self._client_sender: driven.Sender | None = None

    def _fail(self, reason: str) -> None:
        self.failure = self.failure or reason
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(BenchError(f"driven TCP pair: {self.failure}"))

    def _closed(self, session: Session) -> None:
        self._fail(f"{session.describe()} closed: {session.close_reason}")

    def _reply(self, _session: Session, message: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            self._fail(f"unexpected message of {len(message)} bytes")
        else:
            waiter.set_result(message)

    async def serve(self, accept: Awaitable[Session]) -> None:
        async with asyncio.timeout(SETUP_TIMEOUT):
            session = await accept
        self._server_sessions.append(session)
        echo = driven.Sender(session, self._fail)
        driven.start(session, lambda _s, message: echo.submit(message), self._closed)
        await session.wait_closed()

    async def start(self) -> None:
        port = await self.listen()
        async with asyncio.timeout(SETUP_TIMEOUT):
            self.client = await self.dial(port)
        self._client_sender = driven.Sender(self.client, self._fail)
        driven.start(self.client, self._reply, self._closed)

    async def request(self, message: bytes) -> bytes:
        assert self._client_sender is not None
        if self.failure is not None:
            raise BenchError(f"driven TCP pair: {self.failure}")
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiter = reply
        self._client_sender.submit(message)
        return await reply

    def check_alive(self) -> None:
        if self.failure is not None:
            raise BenchError(f"driven TCP pair: {self.failure}")

    async def aclose(self) -> None:
        self.failure = self.failure or "benchmark done"
        sessions = [s for s in (self.client, *self._server_sessions) if s is not None]
        for s in sessions:
            s.abort("benchmark done")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for s in sessions:
                    await s.wait_closed()
        await self.stop_listening()


class WsPair(StreamPair):
    transport = "ws"
    _connect = ws_transport.connect
    _accept = ws_transport.accept


class SessionPingPong:
    """``send`` + wait for the echo through a session pair, 64-byte payloads."""

    def __init__(self, pair: SessionPair, key: str, label: str) -> None:
        self.pair = pair
        self.metric = Metric(
            key,
            label,
            LATENCY,
            "raw_tcp_pingpong",
            params={"payload_bytes": PING_SIZE, "transport": pair.transport},
        )

    async def setup(self) -> None:
        await self.pair.start()

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        payload = os.urandom(PING_SIZE)
        request = self.pair.request
        n = plan.pingpong_n
        t0 = time.perf_counter()
        for _ in range(n):
            reply = await request(payload)
        elapsed = time.perf_counter() - t0
        if reply != payload:
            raise BenchError(f"{self.metric.label}: echo differs from what was sent")
        self.pair.check_alive()
        return elapsed / n * 1e6, {}

    async def aclose(self) -> None:
        await self.pair.aclose()


class SessionBulk:
    """``bulk_count`` messages of ``bulk_size`` bytes through a session, then a count reply."""

    def __init__(self, pair: SessionPair, key: str, label: str) -> None:
        self.pair = pair
        self.metric = Metric(
            key, label, THROUGHPUT, "raw_tcp_bulk", params={"transport": pair.transport}
        )
        self._payload = b""

    async def setup(self) -> None:
        await self.pair.start()

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        assert self.pair.client is not None
        if len(self._payload) != plan.bulk_size:
            self._payload = os.urandom(plan.bulk_size)
        self.metric.params.update(message_bytes=plan.bulk_size, messages=plan.bulk_count)
        payload = self._payload
        send = self.pair.client.send
        t0 = time.perf_counter()
        for _ in range(plan.bulk_count):
            await send(payload)
        reply = await self.pair.request(b"?")
        elapsed = time.perf_counter() - t0
        (got,) = U32.unpack(reply)
        if got != plan.bulk_count:
            raise BenchError(f"{self.metric.label}: {got} of {plan.bulk_count} messages arrived")
        self.pair.check_alive()
        return plan.bulk_count * plan.bulk_size / elapsed / MB, {"seconds": elapsed}

    async def aclose(self) -> None:
        await self.pair.aclose()


# --- node processes ---------------------------------------------------------------------------


def hello_wire_bytes(src: str, dst: str, size: int) -> int:
    """Serialized size of a hello like the ``burst`` op's (what crosses the session)."""
    km = KernelMessage(
        id=2**63,
        source=Address.parse(f"{src}@ping:hnet:sys"),
        target=Address.net(dst),
        rsvp=None,
        message=Request(
            inherit=False, expects_response=5, body=b"x" * size, metadata=None, capabilities=()
        ),
        lazy_load_blob=None,
    )
    return len(encode_kernel_message(km))


class NodeCluster:
    """Three pairs of ``hnet node`` processes: one pair offers only TCP, one only WS, one only
    QUIC, so a burst never switches a pair's session from one transport to another."""

    PAIRS: ClassVar[dict[str, tuple[str, str]]] = {
        "tcp": ("bench-tcp-a.os", "bench-tcp-b.os"),
        "ws": ("bench-ws-a.os", "bench-ws-b.os"),
        "quic": ("bench-quic-a.os", "bench-quic-b.os"),
    }

    def __init__(self, root: Path, cpu: int | None = None) -> None:
        self.cluster = Cluster(root)
        self.cpu = cpu
        self.started = False

    async def start(self) -> None:
        for via, names in self.PAIRS.items():
            for name in names:
                self.cluster.add(name, transports=(via,))
        self.started = True
        for names in self.PAIRS.values():
            for name in names:
                self.cluster.start(name)
        async with asyncio.timeout(SETUP_TIMEOUT):
            await asyncio.gather(
                *(self.cluster.wait_ready(n) for names in self.PAIRS.values() for n in names)
            )
        for node in self.cluster.nodes.values():
            if node.process is not None:
                pin(node.process.pid, self.cpu)  # every thread, now that they are up

    def stop(self) -> None:
        """Blocking: SIGTERM every node, SIGKILL after a bound (safe to call twice)."""
        if self.started:
            self.cluster.stop_all()


class NodeHello:
    """``burst`` of sequential hellos from node A to node B over one transport."""

    def __init__(self, nodes: NodeCluster, via: str) -> None:
        self.nodes = nodes
        self.via = via
        self.src, self.dst = NodeCluster.PAIRS[via]
        self.metric = Metric(
            f"node_hello_{via}",
            f"node hello/ack, {via.upper()} (2 processes)",
            LATENCY,
            "raw_tcp_pingpong_2proc",
            params={
                "transport": via,
                "hello_body_bytes": HELLO_SIZE,
                "kernel_message_bytes": hello_wire_bytes(self.src, self.dst, HELLO_SIZE),
                "timed_in": "the sending node: request sent -> ack received",
            },
        )

    async def _burst(self, count: int) -> list[float]:
        req: dict[str, Any] = {
            "op": "burst",
            "target": self.dst,
            "count": count,
            "size": HELLO_SIZE,
            "via": self.via,
        }
        reply = await self.nodes.cluster.call(self.src, req, timeout=MEASURE_TIMEOUT)
        if not reply.get("ok"):
            raise BenchError(f"{self.src} burst failed: {reply.get('error', reply)}")
        if reply.get("failed"):
            raise BenchError(
                f"{self.src} -> {self.dst} via {self.via}: {reply['failed']} of {count} hellos "
                f"failed (first: {(reply.get('failures') or ['?'])[0]})"
            )
        rtts: list[float] = reply["rtts_ms"]
        if len(rtts) != count:
            raise BenchError(f"{self.src} burst: {len(rtts)} RTTs for {count} hellos")
        return rtts

    async def setup(self) -> None:
        await self._burst(5)  # dial and handshake now, not inside a timed round
        reply = await self.nodes.cluster.call(self.src, {"op": "peers"}, timeout=SETUP_TIMEOUT)
        transports = {p["name"]: p["transport"] for p in reply.get("peers", [])}
        if transports.get(self.dst) != self.via:
            raise BenchError(f"{self.src}: session to {self.dst} is {transports}, not {self.via}")

    async def measure(self, plan: Plan) -> tuple[float, dict[str, float]]:
        rtts_us = [r * 1000 for r in await self._burst(plan.node_n)]
        detail = {
            "p50_us": percentile(rtts_us, 50),
            "p90_us": percentile(rtts_us, 90),
            "p99_us": percentile(rtts_us, 99),
            "min_us": min(rtts_us),
            "max_us": max(rtts_us),
        }
        return sum(rtts_us) / len(rtts_us), detail

    async def aclose(self) -> None:
        return None


# --- driver -----------------------------------------------------------------------------------


SESSIONS = "Noise sessions and nodes (64 B ping-pong, hello/ack, 10 MB bulk)"
T_SETUP = "transports: connection setup to the first verified 64 B reply"
T_RT = "transports: 64 B round trips, one at a time"
T_CONC = "transports: 64 B round trips, 100 concurrent on one connection"
T_BULK = "transports: 10 MB messages, each acknowledged"
#: ``--only`` tags of the sessions-section lines (transport lines: bench.transports.TAGS).
SESSION_TAGS = {
    "raw_tcp_pingpong": {"raw"},
    "noise_tcp_pingpong": {"tcp"},
    "noise_tcp_pingpong_driven": {"tcp"},
    "noise_ws_pingpong": {"ws"},
    "raw_tcp_pingpong_2proc": {"raw"},
    "node_hello_tcp": {"tcp", "nodes"},
    "node_hello_ws": {"ws", "nodes"},
    "node_hello_quic": {"quic", "nodes"},
    "raw_tcp_bulk": {"raw"},
    "noise_tcp_bulk": {"tcp"},
    "aead_seal_open": {"tcp"},
    "aead_pingpong": {"tcp"},
    "setup_noise_memory": {"tcp"},
}
ONLY_TAGS = ("raw", "tcp", "ws", "nodes", "quic", "kernel")
#: ``--only`` tags that name a section of its own module instead of lines here (opt-in: a
#: default run leaves them out): ``kernel`` is bench/kernel_bench.py.
OWN_SECTIONS = {"kernel"}


def build(nodes: NodeCluster, ep: Endpoint | None = None) -> list[Bench]:
    """The benchmarks in their base order (a round starts at a rotating offset).

    Without ``ep`` (where the transport servers are) the transports section is left out.
    """
    benches: list[Bench] = [
        RawPingPong(),
        SessionPingPong(TcpPair(echo_deliver), "noise_tcp_pingpong", "Noise-TCP session ping-pong"),
        SessionPingPong(
            DrivenTcpPair(),
            "noise_tcp_pingpong_driven",
            "Noise-TCP session ping-pong, as a peer table drives it",
        ),
        SmallAeadFloorBench("raw_tcp_pingpong", PING_SIZE),
        SessionPingPong(WsPair(echo_deliver), "noise_ws_pingpong", "Noise-WS session ping-pong"),
        RawPingPongRemote(nodes.cpu),
        NodeHello(nodes, "tcp"),
        NodeHello(nodes, "ws"),
        NodeHello(nodes, "quic"),
        RawBulk(),
        SessionBulk(TcpPair(SinkDeliver()), "noise_tcp_bulk", "Noise-TCP session bulk"),
        AeadFloorBench("raw_tcp_bulk"),
    ]
    for b in benches:
        b.metric.section = SESSIONS
    if ep is None:
        return benches
    transport: list[Bench] = []
    #: per section: our lines (one per kind), then the bare QUIC libraries' (their floors)
    sections: list[tuple[str, Callable[[str], Bench], list[Callable[[str], Bench]]]] = [
        (T_SETUP, lambda k: SetupBench(ep, k), [lambda k: LibSetupBench(ep, k)]),
        (
            T_RT,
            lambda k: RoundTripBench(ep, k),
            [lambda k: LibRoundTripBench(ep, k, False), lambda k: LibRoundTripBench(ep, k, True)],
        ),
        (
            T_CONC,
            lambda k: ConcurrentBench(ep, k, 100),
            [lambda k: LibConcurrentBench(ep, k, 100)],
        ),
        (T_BULK, lambda k: BulkBench(ep, k), [lambda k: LibBulkBench(ep, k)]),
        ("", lambda k: HolBench(ep, k), []),
    ]
    for section, make, lib_makes in sections:
        lines = [make(kind) for kind in KINDS]
        lines += [lib(kind) for lib in lib_makes for kind in LIB_KINDS]
        if section == T_RT:  # the libraries carrying hnet-noise/1's pattern (bench/pattern.py)
            lines += [LibRoundTripBench(ep, kind, False) for kind in PATTERN_KINDS]
        if section == T_CONC:
            lines += [LibConcurrentBench(ep, kind, 100) for kind in PATTERN_KINDS]
        if section == T_SETUP:  # what the cryptography of a Noise-TCP setup costs alone
            lines.append(HandshakeFloorBench("setup_raw"))
        for b in lines:
            b.metric.section = section
        transport += lines
    return benches + transport


def tags(b: Bench) -> set[str]:
    kind = b.metric.params.get("transport")
    if b.metric.key in SESSION_TAGS:
        return SESSION_TAGS[b.metric.key]
    return {TAGS[str(kind)]}


def select(benches: list[Bench], only: set[str] | None) -> list[Bench]:
    """The benchmarks tagged with one of ``only`` (None: all), plus the yardsticks (raw, and
    the bare-library floors) they need."""
    if only is None:
        return benches
    keep = {b.metric.key for b in benches if tags(b) & only}
    by_key = {b.metric.key: b for b in benches}
    for k in list(keep):  # the floors under a kept line, and the library echo under those
        pat = by_key[k].metric.pattern
        if pat is not None and pat in by_key:
            keep.add(pat)
    keep |= {f for k in keep if (f := by_key[k].metric.floor) is not None and f in by_key}
    for key in list(keep):
        yard = by_key[key].metric.yardstick
        if yard is not None:
            keep.add(yard)
        if isinstance(by_key[key], HolBench):
            keep.add("hol_raw")  # the head-of-line table's yardstick
    return [b for b in benches if b.metric.key in keep]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_round(benches: list[Bench], plan: Plan, offset: int, record: bool) -> list[str]:
    order = await common_run_round(
        benches, plan, offset, record=record, timeout=MEASURE_TIMEOUT, error=BenchError
    )
    if record:
        for b in order:
            if isinstance(b, HolBench):
                b.record()
    return [b.metric.key for b in order]


class Interrupted(Exception):
    """SIGTERM arrived; everything started was stopped."""


@dataclass(frozen=True)
class Options:
    only: set[str] | None  # --only tags (None: everything)
    servers: str  # where the transports section's servers run: "inproc" or "process"
    server_cpu: int | None  # CPU of the server process (None: not pinned)
    drive: str = STANDALONE  # how the transports section drives our sessions (--sessions)


class TransportSide:
    """The transports section's servers: in this process, or in a child process."""

    def __init__(self, opts: Options, cpu: int | None) -> None:
        self.opts = opts
        self.cpu = cpu
        self.ids = Identities.generate()
        self.ep = Endpoint(self.ids, {}, opts.drive)
        self._inproc: TransportServers | None = None
        self._proc: ServerProcess | None = None

    async def start(self, kinds: tuple[str, ...]) -> None:
        if self.opts.servers == "process":
            self._proc = ServerProcess(self.ids, kinds, self.opts.drive)
            try:
                self.ep.ports.update(await self._proc.start())
            finally:
                if self._proc.proc is not None:
                    pin(self._proc.proc.pid, self.opts.server_cpu)
        else:
            self._inproc = TransportServers(self.ids, kinds, self.opts.drive)
            self.ep.ports.update(await self._inproc.start())

    async def aclose(self) -> None:
        if self._inproc is not None:
            await self._inproc.aclose()
        if self._proc is not None:
            await self._proc.aclose()


async def bench_main(
    plan: Plan, nodes: NodeCluster, opts: Options
) -> tuple[list[Bench], list[list[str]]]:
    """Set up, warm up, run the rounds; every benchmark is closed however this ends.

    SIGINT is handled by the runner (it cancels this task, then raises KeyboardInterrupt);
    SIGTERM cancels it too and ends as :class:`Interrupted`.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        me.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    pin(0, nodes.cpu)
    side = TransportSide(opts, nodes.cpu)
    benches = select(build(nodes, side.ep), opts.only)
    try:
        if any(isinstance(b, NodeHello) for b in benches):
            log("starting 4 node processes ...")
            await nodes.start()
        kinds = tuple(
            k
            for k in KINDS + LIB_KINDS + PATTERN_KINDS
            if any(b.metric.params.get("transport") == k for b in benches)
        )
        t_benches = [b for b in benches if b.metric.section != SESSIONS]
        if t_benches:
            where = "in this process" if opts.servers == "inproc" else "in a child process"
            log(f"starting transport servers ({', '.join(kinds)}) {where} ...")
            async with asyncio.timeout(SETUP_TIMEOUT):
                await side.start(kinds)
        for b in benches:
            try:
                async with asyncio.timeout(SETUP_TIMEOUT):
                    await b.setup()
            except TimeoutError:
                raise BenchError(f"{b.metric.label}: setup took over {SETUP_TIMEOUT:g} s") from None
        log(f"{len(benches)} benchmarks; warm-up round ...")
        await run_round(benches, plan.warmup(), 0, record=False)
        orders = []
        for r in range(plan.rounds):
            t0 = time.monotonic()
            orders.append(await run_round(benches, plan, r % len(benches), record=True))
            log(f"round {r + 1}/{plan.rounds} done in {time.monotonic() - t0:.1f} s")
        return benches, orders
    except TransportBenchError as e:
        raise BenchError(str(e)) from None
    except asyncio.CancelledError:
        if terminated:
            raise Interrupted("terminated") from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        for b in benches:
            with contextlib.suppress(Exception):
                await b.aclose()
        with contextlib.suppress(Exception):
            await side.aclose()


def hol_table(hols: list[HolBench]) -> tuple[str, dict[str, Any]]:
    """The head-of-line table (pooled samples) and its JSON."""
    raw = next((h for h in hols if h.kind == "raw"), None)
    raw_idle_p99 = raw.summary()["idle_p99_us"] if raw is not None else float("nan")
    header = (
        "transport",
        "idle p50",
        "idle p99",
        "loaded p50",
        "loaded p99",
        "p99 loaded/idle",
        "(rounds)",
        "vs raw idle p99",
        "samples idle/loaded",
        "bulk MB/s",
    )
    rows = []
    out: dict[str, Any] = {}
    for h in hols:
        s = h.summary()
        vs_raw = s["loaded_p99_us"] / raw_idle_p99 if raw_idle_p99 else float("nan")
        per_round = [
            d["loaded_p99_us"] / d["idle_p99_us"] for d in h.metric.details if d["idle_p99_us"]
        ]
        out[h.kind] = {
            **s,
            "loaded_p99_vs_raw_idle_p99": vs_raw,
            "per_round_p99_ratio": per_round,
            "median_of_per_round_p99_ratios": median(per_round),
            "idle_us": [round(v, 1) for v in h.idle],
            "loaded_us": [round(v, 1) for v in h.loaded],
        }
        rows.append(
            (
                LABELS[h.kind],
                f"{s['idle_p50_us']:,.0f}",
                f"{s['idle_p99_us']:,.0f}",
                f"{s['loaded_p50_us']:,.0f}",
                f"{s['loaded_p99_us']:,.0f}",
                f"{s['p99_loaded_over_idle']:.2f}x",
                f"{median(per_round):.2f}x",
                f"{vs_raw:.1f}x",
                f"{s['idle_samples']:.0f}/{s['loaded_samples']:.0f}",
                f"{s['bulk_MB_per_s_median']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), out


def _comparison(ours: Metric, under: Metric) -> dict[str, Any]:
    """The JSON of ``ours`` against another line: per-round ratios, their median, the ratio
    of the medians."""
    c = compare(ours, under)
    return {
        "median_of_per_round_ratios": c.median_of_ratios,
        "ratio_of_medians": c.ratio_of_medians,
        "per_round": c.per_round,
    }


def report(
    metrics: list[Metric],
    orders: list[list[str]],
    plan: Plan,
    info: dict[str, object],
    elapsed: float,
    hol: dict[str, Any] | None = None,
) -> dict[str, object]:
    by_key = {m.key: m for m in metrics}
    out: dict[str, Any] = {}
    for m in metrics:
        entry: dict[str, Any] = {
            "label": m.label,
            "kind": m.kind,
            "unit": m.unit,
            "median": m.median,
            "per_round": m.per_round,
            "params": m.params,
            "yardstick": m.yardstick,
            "section": m.section,
        }
        if m.unit == "us/rt":
            entry["round_trips_per_s_median"] = median(m.round_trips_per_s())
            entry["round_trips_per_s_per_round"] = m.round_trips_per_s()
        if any(m.details):
            entry["details_per_round"] = m.details
        if m.yardstick is not None:
            entry["vs_raw"] = _comparison(m, by_key[m.yardstick])
        for name, under in (("vs_library", m.floor), ("vs_pattern", m.pattern)):
            if under is not None and under in by_key:
                entry[name] = {"floor": under, **_comparison(m, by_key[under])}
        if m.key.startswith("node_hello_") and "raw_tcp_pingpong" in by_key:
            c = compare(m, by_key["raw_tcp_pingpong"])
            entry["vs_raw_in_process"] = c.median_of_ratios
        out[m.key] = entry
    return {
        "schema": 2,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "rounds_order": orders,
        "elapsed_s": elapsed,
        "metrics": out,
        "head_of_line": hol or {},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="hnet benchmarks: raw asyncio TCP vs Noise sessions vs node processes.",
    )
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~45 s)")
    p.add_argument(
        "--rounds",
        type=int,
        help=f"rounds (default {DEFAULT_PLAN.rounds}, with --quick {QUICK_PLAN.rounds})",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"where to write the results (default {DEFAULT_JSON.relative_to(BENCH_DIR.parent)})",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin this process, the echo server and the nodes to one CPU (see README)",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        help="event loop for this process and the nodes (default: hnet's choice, uvloop on Linux)",
    )
    p.add_argument(
        "--only",
        metavar="TAGS",
        help=f"comma-separated, from {', '.join(ONLY_TAGS)}: run only the lines of those "
        "transports (plus the raw yardsticks they are compared with; quic: with the bare QUIC "
        "libraries' floors and their hnet-noise/1 pattern lines); e.g. --only quic. "
        "kernel (only when asked for): bench/kernel_bench.py, its JSON kernel.json beside --json",
    )
    p.add_argument(
        "--hol-gap",
        type=float,
        default=0.0,
        metavar="MS",
        help="head-of-line probes with random pauses of MS on average (uniform in [0, 2 MS]) "
        "between them instead of back to back: sporadic small messages",
    )
    p.add_argument(
        "--servers",
        choices=["inproc", "process"],
        default="inproc",
        help="transports section: run its servers in this process and event loop (default) or "
        "in a child process",
    )
    p.add_argument(
        "--server-cpu",
        type=int,
        metavar="CPU",
        help="with --servers process: pin the server process to this CPU (default: the CPU "
        "everything else is pinned to; unpinned with --no-pin)",
    )
    p.add_argument(
        "--sessions",
        choices=DRIVES,
        default=STANDALONE,
        help="transports section: drive our sessions standalone (Session.run + send; default) or "
        "as a node's peer table does (Session.start + submit, delivered from the transport's "
        "callback)",
    )
    args = p.parse_args(argv)
    if args.rounds is not None and not 1 <= args.rounds <= 1000:
        p.error("--rounds must be 1..1000")
    if not 0 <= args.hol_gap <= 1000:
        p.error("--hol-gap must be 0..1000 ms")
    if args.only is not None:
        only = {t.strip() for t in args.only.split(",") if t.strip()}
        if not only or only - set(ONLY_TAGS):
            p.error(f"--only takes tags from {', '.join(ONLY_TAGS)}")
        args.only = only
    return args


def kernel_section(args: argparse.Namespace) -> int:
    """``--only kernel``: bench/kernel_bench.py with this run's --quick, --rounds, --no-pin."""
    from bench import kernel_bench

    argv = ["--json", str(args.json.with_name("kernel.json"))]
    argv += ["--quick"] if args.quick else []
    argv += ["--rounds", str(args.rounds)] if args.rounds else []
    argv += ["--no-pin"] if args.no_pin else []
    return kernel_bench.main(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own = OWN_SECTIONS & (args.only or set())
    if own:
        args.only -= own
        rc = main_sessions(args) if args.only else 0
        return rc or kernel_section(args)
    return main_sessions(args)


def main_sessions(args: argparse.Namespace) -> int:
    if args.loop == "asyncio":
        os.environ["HNET_LOOP"] = "asyncio"  # inherited by the node processes
    elif args.loop == "uvloop":
        os.environ.pop("HNET_LOOP", None)
    base = QUICK_PLAN if args.quick else DEFAULT_PLAN
    plan = dataclasses.replace(
        base,
        rounds=args.rounds or base.rounds,
        transport=dataclasses.replace(base.transport, hol_gap=args.hol_gap / 1000),
    )
    loop_kind = runtime.loop_name()
    cpu = None if args.no_pin else pin_choice()
    info = machine_info(loop_kind)
    info["pinned_to_cpu"] = cpu
    pinning = "unpinned" if cpu is None else f"all processes on CPU {cpu}"
    log(
        f"hnet bench: {plan.rounds} rounds, {loop_kind} loop (this process and the nodes), "
        f"{pinning}, {info['cpu_count']} CPUs, Python {info['python']}"
    )
    server_cpu = args.server_cpu if args.server_cpu is not None else cpu
    opts = Options(only=args.only, servers=args.servers, server_cpu=server_cpu, drive=args.sessions)
    info["transport_servers"] = (
        "in-process (one event loop with the clients)"
        if args.servers == "inproc"
        else f"child process, {'CPU ' + str(server_cpu) if server_cpu is not None else 'unpinned'}"
    )
    info["transport_sessions"] = args.sessions
    info["only"] = sorted(args.only) if args.only else None
    root = Path(tempfile.mkdtemp(prefix="hnet-bench-"))
    nodes = NodeCluster(root, cpu)
    t0 = time.monotonic()
    try:
        benches, orders = runtime.run(bench_main(plan, nodes, opts))
    except BenchError as e:
        log(f"bench failed: {e}")
        return 1
    except Interrupted:
        log("terminated; processes stopped, nothing written")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        log("interrupted; processes stopped, nothing written")
        return 128 + signal.SIGINT
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t0
    metrics = [b.metric for b in benches]
    labels = {m.key: m.label for m in metrics}
    print()
    print(
        f"hnet benchmarks, {info['date']}: {plan.rounds} rounds, medians across rounds; "
        f"loop {loop_kind}; {pinning}"
    )
    print(
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"{info['platform']}"
    )
    print(
        f"transport servers: {info['transport_servers']}; "
        f"our sessions there: {info.get('transport_sessions', STANDALONE)}"
    )
    print(format_table(metrics, labels))
    print(
        "vs raw: median of per-round ratios ours/raw (latency: above 1 is slower; "
        "throughput: below 1 is slower). spread: (max-min)/median across rounds."
    )
    if any(m.floor in labels for m in metrics if m.floor is not None):
        print(
            "vs lib: the same for our QUIC lines against the bare QUIC library of the same "
            "backend (its own asyncio API, TLS only, no Noise), same rounds: setup vs the "
            "library's connect to first echo; 64 B round trips (one at a time, 100 concurrent) "
            "vs the library's echoes on a new stream each; 10 MB messages vs the library's."
        )
    if any(m.pattern in labels for m in metrics if m.pattern is not None):
        print(
            "vs pat: our QUIC 64 B lines against the same library carrying hnet-noise/1's "
            "message pattern and nothing of hnet's session code (bench/pattern.py: a stream "
            "per message each way, sealed and opened with per-stream keys, FIN "
            "acknowledgements, the same credit): what hnet's own code adds. The pattern "
            "lines' vs lib is what the protocol's shape costs on that library."
        )
    hols = [b for b in benches if isinstance(b, HolBench)]
    hol_json: dict[str, Any] = {}
    if hols:
        table, hol_json = hol_table(hols)
        print()
        pace = (
            "back to back"
            if not args.hol_gap
            else f"{args.hol_gap:g} ms apart on average (random pauses)"
        )
        print(
            "head-of-line: 1 KiB round trips (us) on one connection, idle and while a 10 MB "
            f"message is in flight on it; probes {pace}; all rounds pooled"
        )
        print(table)
        print(
            "loaded: the probe was sent while a 10 MB message was unacknowledged. p99 loaded/idle: "
            "of the pooled samples; (rounds): median of the per-round ratios. vs raw idle p99: "
            "loaded p99 / raw TCP's idle p99. bulk MB/s: the 10 MB messages' rate while probed "
            "(median of rounds)."
        )
    result = report(metrics, orders, plan, info, elapsed, hol_json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
