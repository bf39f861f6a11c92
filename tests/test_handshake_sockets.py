"""The handshake's identity checks (docs/protocol.md §3) through the production path, on real
loopback sockets: a :class:`~hnet.transport.listener.Listeners` (TCP, WebSocket, QUIC) as a
user meets it, against hand-driven initiators that say what they like.

Each refusal gives a clear reason (logged by the listener, or raised at the initiator) and a
closed connection, and the listener keeps serving others; an initiator the listener does not
know yet is looked up with ``resolve_key`` and gets in. No fixed sleeps: every wait is on a
condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from hnet import keys
from hnet.core.framing import HandshakeFrameReader, encode_handshake_frame
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.noise import XXHandshake
from hnet.core.passthroughs import PipeEnd
from hnet.core.relay import RoutingRefused
from hnet.core.stream import (
    StreamConnection,
)
from hnet.core.wire import HandshakePayload, encode_handshake_payload
from hnet.supervisor import Supervisor
from hnet.testing.cluster import free_port
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.gate import HandshakeGate
from hnet.transport.listener import ListenConfig, Listeners
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session, SessionClosed
from hnet.transport.tcp import drive_handshake

from .test_quic_util import Book, Identity

HOST = "127.0.0.1"
STREAM_KINDS = ("tcp", "ws")
DEADLINE = 10.0

Rest = Callable[[], Awaitable[None]]


async def until(pred: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


# --- the listener under test -----------------------------------------------------------------


class Served:
    """A Listeners instance for ``me`` on free loopback ports; its sessions are run by tasks
    of its own and what they receive is kept."""

    def __init__(
        self,
        book: Book,
        me: Identity,
        *,
        resolve: Callable[[str], Awaitable[bytes | None]] | None = None,
        route: Callable[[bytes, PipeEnd], Awaitable[Rest]] | None = None,
        gate: HandshakeGate | None = None,
        kinds: tuple[str, ...] = STREAM_KINDS,
        **config: Any,
    ) -> None:
        self.book = book
        self.me = me
        self.kinds = kinds
        self.config = config
        self.sup = Supervisor("test listener")
        self.sessions: list[Session] = []
        self.received: list[tuple[str, bytes]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.listeners = Listeners(
            make_responder=self._responder,
            on_session=self._on_session,
            route=route or self._refuse,
            supervisor=self.sup,
            resolve_key=resolve,
            gate=gate,
        )
        self.ports: dict[str, int] = {}

    def _responder(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=False,
            our_name=self.me.name,
            signing_key=self.me.key,
            lookup=self.book.lookup,
            defer_unknown=True,
        )

    async def _refuse(self, first: bytes, end: PipeEnd) -> Rest:
        raise RoutingRefused("not a router")

    def _on_session(self, session: Session) -> None:
        self.sessions.append(session)

        async def deliver(s: Session, data: bytes) -> None:
            self.received.append((s.peer_name, data))
            if data.startswith(b"echo "):
                await s.send(data[5:])

        async def run() -> None:
            with contextlib.suppress(Exception):
                await session.run(deliver, 60.0)

        self._tasks.append(asyncio.get_running_loop().create_task(run()))

    async def __aenter__(self) -> Served:
        ports = {k: free_port() for k in self.kinds}
        await self.listeners.start(ListenConfig(HOST, ports, **self.config))
        self.ports = ports
        assert set(self.listeners.listening) == set(self.kinds)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.listeners.close()
        for s in self.sessions:
            s.abort("test over")
        await self.sup.aclose()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.listeners.aclose()

    def run_client(self, session: Session) -> None:
        """Run one of our initiators' sessions in a task this fixture owns."""

        async def run() -> None:
            with contextlib.suppress(Exception):
                await session.run(lambda s, d: None, 60.0)

        self._tasks.append(asyncio.get_running_loop().create_task(run()))

    @property
    def failures(self) -> int:
        return self.listeners.stats["handshake_failures"]


# --- initiators --------------------------------------------------------------------------------


async def good_session(served: Served, kind: str, me: Identity) -> Session:
    """The production initiator (tcp/ws/quic ``connect``) to ``served``."""
    hs = served.book.initiator(me, served.me.name)
    port = served.ports[kind]
    async with asyncio.timeout(DEADLINE):
        if kind == "tcp":
            return await tcp_transport.connect(HOST, port, hs)
        if kind == "ws":
            return await ws_transport.connect(HOST, port, hs)
        return await quic_connect(HOST, port, hs)


async def echo(session: Session, text: bytes = b"ping") -> bytes:
    """Send ``echo <text>`` and return what comes back (the session runs meanwhile)."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def deliver(s: Session, data: bytes) -> None:
        if not got.done():
            got.set_result(data)

    runner = asyncio.get_running_loop().create_task(session.run(deliver, 60.0))
    try:
        await session.send(b"echo " + text)
        async with asyncio.timeout(DEADLINE):
            return await got
    finally:
        session.abort("done")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def still_serving(served: Served, kind: str) -> None:
    """Another, honest peer still gets in and is answered."""
    friend = served.book.add(f"friend{len(served.book.keys)}.os")
    session = await good_session(served, kind, friend)
    assert await echo(session, b"still there") == b"still there"


class RawWsClient:
    """A WebSocket client driven by hand over a raw socket (websockets' sans-I/O parser for
    what arrives); it writes only the frames we ask for, so it never answers a ping."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.p = ClientProtocol(parse_uri(f"ws://{HOST}"), max_size=None)
        self.pings = 0
        self._messages: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> RawWsClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        self = cls(reader, writer)
        self.p.send_request(self.p.connect())
        writer.write(b"".join(self.p.data_to_send()))
        async with asyncio.timeout(DEADLINE):
            while True:
                data = await reader.read(65536)
                assert data, "closed during the upgrade"
                self.p.receive_data(data)
                events = self.p.events_received()
                if any(isinstance(e, Response) for e in events):
                    break
        self.p.data_to_send()  # never written: we answer nothing
        self._take(events)
        return self

    def _take(self, events: list[object]) -> None:
        for e in events:
            if isinstance(e, Frame):
                if e.opcode is Opcode.BINARY:
                    self._messages.append(bytes(e.data))
                elif e.opcode is Opcode.PING:
                    self.pings += 1

    def send_binary(self, data: bytes) -> None:
        self.writer.write(Frame(Opcode.BINARY, data).serialize(mask=True))

    async def recv(self) -> bytes | None:
        """The next binary message; None at end of stream."""
        while not self._messages:
            try:
                data = await self.reader.read(65536)
            except ConnectionError:
                return None
            if not data:
                return None
            self.p.receive_data(data)
            self._take(self.p.events_received())
            self.p.data_to_send()  # pongs and close echoes: dropped on purpose
        return self._messages.pop(0)

    async def handshake(self, hs: PeerHandshake) -> StreamConnection:
        """The production initiator core over this hand-driven WebSocket."""
        conn = StreamConnection(hs, "ws")

        async def feed() -> None:
            m = await self.recv()
            if m is None:
                conn.receive_eof()
            else:
                conn.receive_message(m)

        def flush() -> None:
            for m in conn.data_to_send():
                self.send_binary(m)

        async with asyncio.timeout(DEADLINE):
            await drive_handshake(conn, feed, flush, None)
        return conn

    async def closed(self, timeout: float = DEADLINE) -> bool:
        async with asyncio.timeout(timeout):
            while await self.recv() is not None:
                pass
        return True

    def close(self) -> None:
        self.writer.close()


class RawInitiator:
    """A hand-built Noise initiator over TCP or WS: any payload it likes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.noise = XXHandshake(True, bytes(range(32)))
        self._tcp: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._ws: RawWsClient | None = None
        self._frames = HandshakeFrameReader(max_frames=1)

    async def open(self, port: int) -> None:
        if self.kind == "tcp":
            self._tcp = await asyncio.open_connection(HOST, port)
        else:
            self._ws = await RawWsClient.connect(port)

    def send(self, message: bytes) -> None:
        if self._tcp is not None:
            self._tcp[1].write(encode_handshake_frame(message))
        else:
            assert self._ws is not None
            self._ws.send_binary(message)

    async def recv(self) -> bytes:
        async with asyncio.timeout(DEADLINE):
            if self._tcp is not None:
                while True:
                    data = await self._tcp[0].read(4096)
                    assert data, "closed before the responder answered"
                    frames = self._frames.feed(data)
                    if frames:
                        return frames[0]
            assert self._ws is not None
            m = await self._ws.recv()
            assert m is not None, "closed before the responder answered"
            return m

    async def run(
        self, port: int, *, name: str, signer: Ed25519PrivateKey, version: int = 1
    ) -> None:
        """All three messages, the last one with our chosen payload."""
        await self.open(port)
        self.send(self.noise.write_message())
        self.noise.read_message(await self.recv())
        sig = signer.sign(self.noise.static_public)
        payload = HandshakePayload(version, name, sig, False)
        self.send(self.noise.write_message(encode_handshake_payload(payload)))

    async def closed_by_peer(self) -> bool:
        """True once the responder has closed the connection (bounded)."""
        async with asyncio.timeout(DEADLINE):
            if self._ws is not None:
                return await self._ws.closed()
            assert self._tcp is not None
            reader = self._tcp[0]
            try:
                while await reader.read(4096):
                    pass
            except ConnectionError:
                pass
            return True

    def close(self) -> None:
        if self._tcp is not None:
            self._tcp[1].close()
        if self._ws is not None:
            self._ws.close()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def book() -> Book:
    return Book()


@contextlib.asynccontextmanager
async def refusal(served: Served, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Expect one handshake failure logged by the listener; yields its log entries."""
    before = served.failures
    with capture_logs() as logs:
        yield logs
        await until(lambda: served.failures == before + 1, "the listener counted the failure")
    assert served.listeners.gate.pending == 0
    assert not served.sessions


def reason(logs: list[dict[str, Any]], kind: str) -> str:
    [entry] = [e for e in logs if e["event"] == f"inbound {kind} handshake failed"]
    return str(entry["reason"])


# --- the checks of §3, each over TCP and WebSocket -------------------------------------------


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_protocol_version_other_than_1(book: Book, kind: str) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")
    async with Served(book, bob) as served:
        raw = RawInitiator(kind)
        async with refusal(served, kind) as logs:
            await raw.run(served.ports[kind], name="alice.os", signer=alice.key, version=2)
            assert await raw.closed_by_peer()
        assert "protocol version 2 != 1" in reason(logs, kind)
        raw.close()
        await still_serving(served, kind)


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_peer_claiming_our_own_name(book: Book, kind: str) -> None:
    bob = book.add("bob.os")
    async with Served(book, bob) as served:
        raw = RawInitiator(kind)
        async with refusal(served, kind) as logs:
            await raw.run(served.ports[kind], name="bob.os", signer=bob.key)
            assert await raw.closed_by_peer()
        assert "peer claims our own name" in reason(logs, kind)
        raw.close()
        await still_serving(served, kind)


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_bad_signature(book: Book, kind: str) -> None:
    bob, _alice = book.add("bob.os"), book.add("alice.os")
    async with Served(book, bob) as served:
        raw = RawInitiator(kind)
        async with refusal(served, kind) as logs:
            await raw.run(served.ports[kind], name="alice.os", signer=keys.generate())
            assert await raw.closed_by_peer()
        assert "alice.os: handshake signature does not verify" in reason(logs, kind)
        raw.close()
        await still_serving(served, kind)


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_wrong_name_dialled_x_reached_y(book: Book, kind: str) -> None:
    """The initiator checks it reached the name it dialled: it refuses and closes; the
    listener sees the initiator leave mid-handshake."""
    bob, alice = book.add("bob.os"), book.add("alice.os")
    book.add("carol.os")
    async with Served(book, bob) as served:
        hs = book.initiator(alice, "carol.os")
        connect = tcp_transport.connect if kind == "tcp" else ws_transport.connect
        async with refusal(served, kind) as logs:
            with pytest.raises(HandshakeError, match=r"dialled carol\.os but reached 'bob\.os'"):
                async with asyncio.timeout(DEADLINE):
                    await connect(HOST, served.ports[kind], hs)
        assert "closed by peer during the handshake" in reason(logs, kind)
        await still_serving(served, kind)


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_unknown_name_is_refused(book: Book, kind: str) -> None:
    bob = book.add("bob.os")
    stranger = Book()
    mallory = stranger.add("mallory.os")  # in no book the listener can see
    stranger.keys["bob.os"] = book.keys["bob.os"]
    asked: list[str] = []

    async def resolve(name: str) -> bytes | None:
        asked.append(name)
        return None

    async with Served(book, bob, resolve=resolve) as served:
        async with refusal(served, kind) as logs:
            session = await good_session_from(stranger, mallory, served, kind)
            await until(lambda: session.closed, "the refused initiator's session closed")
        assert "unknown HNS name 'mallory.os'" in reason(logs, kind)
        assert asked == ["mallory.os"]
        with pytest.raises(SessionClosed):
            await session.send(b"x")
        await still_serving(served, kind)


async def good_session_from(book: Book, me: Identity, served: Served, kind: str) -> Session:
    hs = book.initiator(me, served.me.name)
    port = served.ports[kind]
    async with asyncio.timeout(DEADLINE):
        if kind == "tcp":
            session: Session = await tcp_transport.connect(HOST, port, hs)
        elif kind == "ws":
            session = await ws_transport.connect(HOST, port, hs)
        else:
            session = await quic_connect(HOST, port, hs)
    served.run_client(session)  # so that the responder's close is seen
    return session


@pytest.mark.parametrize("kind", ("tcp", "ws", "quic"))
async def test_unknown_at_first_then_found_via_resolve_key(book: Book, kind: str) -> None:
    """A name registered a moment ago: the responder defers the check, looks the key up
    asynchronously (the initiator's first message waits meanwhile), then lets it in."""
    bob = book.add("bob.os")
    newcomer_book = Book()
    carol = newcomer_book.add("carol.os")
    newcomer_book.keys["bob.os"] = book.keys["bob.os"]
    asked: list[str] = []
    found = asyncio.Event()

    async def resolve(name: str) -> bytes | None:
        asked.append(name)
        await found.wait()  # the PKI catches up...
        book.keys[name] = newcomer_book.keys[name]
        return book.keys[name]

    async with Served(book, bob, resolve=resolve, kinds=(kind,)) as served:
        session = await good_session_from(newcomer_book, carol, served, kind)
        await session.send(b"sent before bob knew carol")
        await until(lambda: asked == ["carol.os"], "the listener asked for carol's key")
        assert not served.sessions and served.listeners.gate.pending == 1
        found.set()
        await until(lambda: bool(served.received), "carol's message delivered")
        assert served.received == [("carol.os", b"sent before bob knew carol")]
        assert [s.peer_name for s in served.sessions] == ["carol.os"]
        assert served.failures == 0 and served.listeners.gate.pending == 0
        session.abort("done")


@pytest.mark.parametrize("kind", ("tcp", "ws"))
async def test_key_lookup_is_bounded_by_the_handshake_deadline(book: Book, kind: str) -> None:
    bob = book.add("bob.os")
    stranger = Book()
    dave = stranger.add("dave.os")
    stranger.keys["bob.os"] = book.keys["bob.os"]
    never = asyncio.Event()

    async def resolve(name: str) -> bytes | None:
        await never.wait()
        return None

    async with Served(book, bob, resolve=resolve, handshake_timeout=0.5) as served:
        async with refusal(served, kind) as logs:
            session = await good_session_from(stranger, dave, served, kind)
            await until(lambda: session.closed, "the stalled handshake was closed")
        assert reason(logs, kind) == "timed out"
