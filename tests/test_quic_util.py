"""Shared helpers for the QUIC tests: identities, a node pair, and a raw QUIC client for attacks.

(A ``test_`` module so that it stays within the QUIC test files; its own tests check the
helpers.)
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.framing import encode_handshake_frame as handshake_frame
from hnet.core.handshake import PeerHandshake
from hnet.core.quic import backend as qb
from hnet.core.quic.streams import DIR_I2R, DIR_R2I, DirectionKeys
from hnet.transport.quic import QuicListener, QuicSession, connect
from hnet.transport.quic.udp import UdpSocket, bind_udp
from hnet.transport.session import Session

BACKENDS = ("aioquic", "qh3")
HOST = "127.0.0.1"


@dataclass
class Identity:
    name: str
    key: Ed25519PrivateKey


@dataclass
class Book:
    """name -> Ed25519 public key, the lookup PeerHandshake needs."""

    keys: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str) -> Identity:
        ident = Identity(name, keys.generate())
        self.keys[name] = keys.public_bytes(ident.key)
        return ident

    def lookup(self, name: str) -> bytes | None:
        return self.keys.get(name)

    def initiator(self, me: Identity, peer: str, **kw: object) -> PeerHandshake:
        return PeerHandshake(
            initiator=True,
            our_name=me.name,
            signing_key=me.key,
            lookup=self.lookup,
            expected_peer=peer,
            **kw,  # type: ignore[arg-type]
        )

    def responder(self, me: Identity) -> PeerHandshake:
        return PeerHandshake(
            initiator=False, our_name=me.name, signing_key=me.key, lookup=self.lookup
        )


def test_book_lookup():
    book = Book()
    a = book.add("alice.os")
    assert book.lookup("alice.os") == keys.public_bytes(a.key)
    assert book.lookup("nobody.os") is None


class Server:
    """A listener whose sessions are run by tasks it owns; deliveries go to a callback."""

    def __init__(
        self,
        book: Book,
        me: Identity,
        backend: str,
        on_message: Callable[[Session, bytes], Awaitable[None]] | None = None,
        **listener_kw: int,
    ) -> None:
        self.book = book
        self.me = me
        self.listener = QuicListener(backend=backend, **listener_kw)
        self.sessions: list[QuicSession] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[BaseException] = []
        self.received: list[bytes] = []
        self.new_session = asyncio.Event()
        self.on_message = on_message or self._record

    async def _record(self, session: Session, data: bytes) -> None:
        self.received.append(data)

    async def _run(self, session: QuicSession) -> None:
        try:
            await session.run(self.on_message, 60.0)
        except Exception as e:
            self.errors.append(e)

    def _on_session(self, session: QuicSession) -> None:
        self.sessions.append(session)
        self.tasks.append(asyncio.get_running_loop().create_task(self._run(session)))
        self.new_session.set()

    async def start(self, handshake_timeout: float = 5.0) -> int:
        await self.listener.start(
            HOST,
            0,
            make_responder=lambda: self.book.responder(self.me),
            on_session=self._on_session,
            handshake_timeout=handshake_timeout,
        )
        return int(self.listener.address[1])

    async def aclose(self) -> None:
        self.listener.close()
        for t in self.tasks:
            t.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)


@contextlib.asynccontextmanager
async def running_server(
    book: Book,
    me: Identity,
    backend: str,
    on_message: Callable[[Session, bytes], Awaitable[None]] | None = None,
    handshake_timeout: float = 5.0,
    **listener_kw: int,
) -> AsyncIterator[tuple[Server, int]]:
    server = Server(book, me, backend, on_message, **listener_kw)
    port = await server.start(handshake_timeout)
    try:
        yield server, port
    finally:
        await server.aclose()


class Client:
    """A connected session plus a task running it into a queue."""

    def __init__(self, session: QuicSession) -> None:
        self.session = session
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async def deliver(s: Session, data: bytes) -> None:
            await self.inbox.put(data)

        try:
            await self.session.run(deliver, 60.0)
        except Exception as e:
            self.error = e

    async def recv(self, timeout: float = 20.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.inbox.get()

    async def aclose(self) -> None:
        self.session.abort("test done")
        async with asyncio.timeout(5):
            await self.task


async def dial(book: Book, me: Identity, peer: str, port: int, backend: str) -> Client:
    async with asyncio.timeout(10):
        session = await connect(HOST, port, book.initiator(me, peer), backend=backend)
    return Client(session)


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.005) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(step)


# --- a raw QUIC client for hostile tests -----------------------------------------------------

_U16 = struct.Struct(">H")


class RawQuicClient:
    """A QUIC client we drive by hand: optional Noise handshake, then whatever streams we like."""

    def __init__(self, backend: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.conn = qb.get_backend(backend).client()
        self.udp: UdpSocket | None = None
        self.quic_ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.streams: dict[int, bytearray] = {}
        self.fins: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.send_keys: DirectionKeys | None = None
        self.recv_keys: DirectionKeys | None = None

    async def open(self, port: int) -> None:
        self.udp = UdpSocket(bind_udp(HOST, 0), self._rx, self.flush)
        self.conn.connect((HOST, port), self.loop.time())
        self.flush()
        async with asyncio.timeout(10):
            await self.quic_ready.wait()

    def _rx(self, data: bytes, addr: qb.Addr) -> None:
        self.conn.receive_datagram(data, addr, self.loop.time())
        self._events()

    def _events(self) -> None:
        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, qb.HandshakeCompleted):
                self.quic_ready.set()
            elif isinstance(ev, qb.StreamData):
                self.streams.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                if ev.end_stream:
                    self.fins.add(ev.stream_id)
        self.changed.set()

    def flush(self) -> None:
        if self.udp is None or self.udp.closed:
            return
        for data, addr in self.conn.datagrams_to_send(self.loop.time()):
            self.udp.sendto(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.conn.get_timer()
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)
        self.changed.set()

    def _on_timer(self) -> None:
        self._timer = None
        self.conn.handle_timer(self.loop.time())
        self._events()
        self.flush()

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        self.conn.send_stream_data(stream_id, data, fin)
        self.flush()

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self.changed.clear()
                await self.changed.wait()

    async def _handshake_frame(self, index: int) -> bytes:
        """The ``index``-th handshake frame the server sent on stream 0."""

        def frames() -> list[bytes]:
            buf = bytes(self.streams.get(0, b""))
            out, pos = [], 0
            while len(buf) - pos >= 2:
                (n,) = _U16.unpack_from(buf, pos)
                if len(buf) - pos - 2 < n:
                    break
                out.append(buf[pos + 2 : pos + 2 + n])
                pos += 2 + n
            return out

        await self.wait_for(lambda: len(frames()) > index or self.terminated)
        got = frames()
        if len(got) <= index:
            raise ConnectionError(f"closed: {self.conn.termination()}")
        return got[index]

    async def noise_handshake(self, hs: PeerHandshake) -> None:
        """Run the initiator side on stream 0 as the real client does; keep the keys."""
        self.send(0, handshake_frame(hs.initial_message()))
        reply = hs.receive(await self._handshake_frame(0))
        assert reply is not None
        self.send(0, handshake_frame(reply), fin=True)
        send, recv = hs.split()
        self.send_keys = DirectionKeys(send.export_key(), hs.handshake_hash, DIR_I2R)
        self.recv_keys = DirectionKeys(recv.export_key(), hs.handshake_hash, DIR_R2I)

    @property
    def terminated(self) -> bool:
        return self.conn.termination() is not None

    async def wait_closed(self, timeout: float = 10.0) -> qb.Termination:
        await self.wait_for(lambda: self.terminated, timeout)
        t = self.conn.termination()
        assert t is not None
        return t

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()
