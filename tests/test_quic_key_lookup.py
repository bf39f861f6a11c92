"""A QUIC responder that does not know the initiator's name yet (docs/protocol.md §3).

The sans-I/O core emits ``KeyNeeded`` and waits for ``provide_key``, holding the initiator's
early application data (bounded) and withholding its confirmation (the FIN on stream 0);
the listener resolves the key through ``resolve_key`` within the handshake timeout.
"""

from __future__ import annotations

import asyncio

import pytest

from hnet.core.handshake import PeerHandshake
from hnet.core.quic.connection import (
    Closed,
    HandshakeDone,
    KeyNeeded,
    MessageReceived,
    NoiseQuicConnection,
)
from hnet.core.quic.errors import QuicAppError
from hnet.transport.gate import HandshakeGate
from hnet.transport.quic import QuicListener, QuicSession, connect
from hnet.transport.session import Session

from .test_quic_core import FakeQuic, deliver, events, quic_ready
from .test_quic_util import BACKENDS, HOST, Book, Identity, wait_until


def deferring_responder(me: Identity, book: Book) -> PeerHandshake:
    return PeerHandshake(
        initiator=False,
        our_name=me.name,
        signing_key=me.key,
        lookup=book.lookup,
        defer_unknown=True,
    )


def pair_with_unknown_initiator() -> tuple[
    NoiseQuicConnection, NoiseQuicConnection, FakeQuic, FakeQuic, Book
]:
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    knows_only_bob = Book(keys={"bob.os": book.keys["bob.os"]})
    cq, sq = FakeQuic(True), FakeQuic(False)
    client = NoiseQuicConnection(cq, book.initiator(alice, "bob.os"))
    server = NoiseQuicConnection(sq, deferring_responder(bob, knows_only_bob))
    quic_ready(client)
    quic_ready(server)
    deliver(server, cq.take())  # -> e
    deliver(client, sq.take())  # <- e, ee, s, es
    deliver(server, cq.take())  # -> s, se
    return client, server, cq, sq, book


def test_key_needed_then_provided() -> None:
    client, server, cq, sq, book = pair_with_unknown_initiator()
    assert events(server) == [KeyNeeded("alice.os")]
    assert server.awaiting_key and not server.is_open and not server.is_closed
    assert sq.take() == []  # no confirmation yet
    assert [type(e) for e in events(client)] == [HandshakeDone]
    sid = client.send_message(b"sent right behind the handshake")
    deliver(server, cq.take())
    assert events(server) == []  # held until the key comes
    server.provide_key(book.keys["alice.os"])
    assert events(server) == [
        HandshakeDone("alice.os"),
        MessageReceived(sid, b"sent right behind the handshake"),
    ]
    assert (0, b"", True) in sq.take()  # the FIN on stream 0: the initiator is confirmed
    assert server.is_open and server.confirmed and not server.awaiting_key
    with pytest.raises(RuntimeError):
        server.provide_key(book.keys["alice.os"])


def test_key_not_found_fails_the_handshake() -> None:
    _, server, _, sq, _ = pair_with_unknown_initiator()
    assert events(server) == [KeyNeeded("alice.os")]
    server.provide_key(None)
    [closed] = events(server)
    assert isinstance(closed, Closed)
    assert closed.code == QuicAppError.HANDSHAKE_FAILED and closed.violation
    assert "unknown HNS name 'alice.os'" in closed.reason
    assert sq.closed_with is not None and sq.closed_with[0] == QuicAppError.HANDSHAKE_FAILED


def test_key_arriving_after_the_connection_closed_is_ignored() -> None:
    _, server, _, _, book = pair_with_unknown_initiator()
    events(server)
    server.close(QuicAppError.HANDSHAKE_TIMEOUT, "handshake timed out")
    server.provide_key(book.keys["alice.os"])
    assert [type(e) for e in events(server)] == [Closed]
    assert not server.is_open


def test_early_data_while_waiting_is_bounded() -> None:
    client, server, cq, _, _ = pair_with_unknown_initiator()
    events(server)
    events(client)
    client.send_message(bytes(20_000))  # within QUIC_EARLY_SEND: the client may send it
    deliver(server, cq.take())
    assert events(server) == []
    # a hostile initiator ignoring its early-send budget: raw stream data past the bound
    sq = server.quic
    assert isinstance(sq, FakeQuic)
    for sid in range(8, 8 + 4 * 8, 4):
        deliver(server, [(sid, bytes(10_000), True)])
    [closed] = events(server)
    assert isinstance(closed, Closed) and closed.code == QuicAppError.EARLY_DATA


# --- the listener: resolve_key within the handshake timeout ---------------------------------


class Listening:
    def __init__(self, backend: str, book: Book, me: Identity, **start_kw: object) -> None:
        self.gate = HandshakeGate()
        self.listener = QuicListener(backend=backend, gate=self.gate)
        self.book = book
        self.me = me
        self.start_kw = start_kw
        self.sessions: list[QuicSession] = []
        self.received: list[bytes] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _on_session(self, session: QuicSession) -> None:
        self.sessions.append(session)

        async def deliver_(s: Session, data: bytes) -> None:
            self.received.append(data)

        self._tasks.append(asyncio.get_running_loop().create_task(session.run(deliver_, 60)))

    async def __aenter__(self) -> int:
        await self.listener.start(
            HOST,
            0,
            make_responder=lambda: deferring_responder(self.me, self.book),
            on_session=self._on_session,
            **self.start_kw,  # type: ignore[arg-type]
        )
        return int(self.listener.address[1])

    async def __aexit__(self, *exc: object) -> None:
        self.listener.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_listener_resolves_an_unknown_initiator(backend: str) -> None:
    book = Book()
    bob = book.add("bob.os")
    newcomer = Book(keys={"bob.os": book.keys["bob.os"]})
    carol = newcomer.add("carol.os")
    asked: list[str] = []
    found = asyncio.Event()

    async def resolve(name: str) -> bytes | None:
        asked.append(name)
        await found.wait()
        return newcomer.keys.get(name)

    srv = Listening(backend, book, bob, resolve_key=resolve)
    async with srv as port:
        async with asyncio.timeout(10):
            client = await connect(HOST, port, newcomer.initiator(carol, "bob.os"), backend=backend)
        try:
            await client.send(b"before bob knew carol")
            await wait_until(lambda: asked == ["carol.os"])
            assert srv.sessions == [] and srv.listener.pending == 1 and srv.gate.pending == 1
            found.set()
            await wait_until(lambda: srv.received == [b"before bob knew carol"])
            assert [s.peer_name for s in srv.sessions] == ["carol.os"]
            assert srv.listener.pending == 0 and srv.gate.pending == 0
            assert srv.listener.stats["handshake_failures"] == 0
        finally:
            client.abort("done")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_listener_key_lookup_bounded_by_the_handshake_timeout(backend: str) -> None:
    book = Book()
    bob = book.add("bob.os")
    stranger = Book(keys={"bob.os": book.keys["bob.os"]})
    dave = stranger.add("dave.os")
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def resolve(name: str) -> bytes | None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    srv = Listening(backend, book, bob, resolve_key=resolve, handshake_timeout=0.5)
    async with srv as port:
        async with asyncio.timeout(10):
            client = await connect(HOST, port, stranger.initiator(dave, "bob.os"), backend=backend)
        await wait_until(lambda: client.closed)
        assert srv.listener.stats["handshake_timeouts"] == 1
        async with asyncio.timeout(10):
            await cancelled.wait()  # the lookup did not outlive its connection
        assert srv.sessions == [] and srv.gate.pending == 0 and srv.listener.pending == 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_listener_lookup_that_finds_nothing_refuses(backend: str) -> None:
    book = Book()
    bob = book.add("bob.os")
    stranger = Book(keys={"bob.os": book.keys["bob.os"]})
    eve = stranger.add("eve.os")

    async def resolve(name: str) -> bytes | None:
        return None

    srv = Listening(backend, book, bob, resolve_key=resolve)
    async with srv as port:
        async with asyncio.timeout(10):
            client = await connect(HOST, port, stranger.initiator(eve, "bob.os"), backend=backend)
        await wait_until(lambda: client.closed)
        assert "HANDSHAKE_FAILED" in client.close_reason
        await wait_until(lambda: srv.listener.stats["handshake_failures"] == 1)
        assert srv.sessions == [] and srv.gate.pending == 0
