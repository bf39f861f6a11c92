"""QUIC sessions end to end over loopback, with real aioquic / qh3 connections."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from hnet import keys, limits
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.sendqueue import Outgoing, OutgoingState
from hnet.transport.quic import QuicListener, QuicSession, connect
from hnet.transport.session import Session, SessionClosed, SessionError
from tests.test_quic_util import (
    BACKENDS,
    HOST,
    Book,
    Client,
    Identity,
    dial,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def book() -> Book:
    return Book()


async def echo(session: Session, data: bytes) -> None:
    await session.send(data)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_handshake_and_messages_both_ways(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            s = client.session
            assert s.transport == "quic" and s.backend == backend
            assert s.peer_name == "bob.os" and s.initiator
            async with asyncio.timeout(10):
                await server.new_session.wait()
            ss = server.sessions[0]
            assert ss.peer_name == "alice.os" and not ss.initiator
            for size in (1, 64, limits.NOISE_MAX_PLAINTEXT + 1, 150_064, 10_000_000):
                msg = os.urandom(size)
                await s.send(msg)
                assert await client.recv(timeout=30) == msg
            # the server also sends on its own (not only echoes)
            await ss.send(b"from bob")
            assert await client.recv() == b"from bob"
            assert s.messages_out == 5 and s.messages_in == 6
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("client_backend", "server_backend"), [("aioquic", "qh3"), ("qh3", "aioquic")]
)
async def test_backends_interoperate(book: Book, client_backend: str, server_backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, server_backend, on_message=echo) as (_, port):
        client = await dial(book, alice, "bob.os", port, client_backend)
        try:
            for size in (64, 150_064):
                msg = os.urandom(size)
                await client.session.send(msg)
                assert await client.recv() == msg
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wrong_peer_name_fails(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    book.add("carol.os")
    async with running_server(book, bob, backend) as (server, port):
        with pytest.raises(HandshakeError, match=r"carol\.os"):
            async with asyncio.timeout(10):
                await connect(HOST, port, book.initiator(alice, "carol.os"), backend=backend)
        await wait_until(lambda: server.listener.stats["handshake_failures"] == 1)
        assert server.sessions == [] and server.listener.connections == 0


async def refused(port: int, hs: PeerHandshake, backend: str) -> str:
    """Why the server refused us. The initiator completes XX when it *sends* its last message,
    so a refusal by the responder arrives as a close of the just-returned session (or, if it
    raced ahead, as the error of connect itself)."""
    try:
        async with asyncio.timeout(10):
            s = await connect(HOST, port, hs, backend=backend)
    except HandshakeError as e:
        return str(e)
    await wait_until(lambda: s.closed)
    assert "HANDSHAKE_FAILED" in s.close_reason
    with pytest.raises(SessionClosed):
        await s.send(b"x")
    return s.close_reason


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unknown_name_is_refused(book: Book, backend: str):
    bob = book.add("bob.os")
    stranger = Book()
    mallory = stranger.add("mallory.os")  # not in bob's book
    stranger.keys["bob.os"] = book.keys["bob.os"]
    async with running_server(book, bob, backend) as (server, port):
        why = await refused(port, stranger.initiator(mallory, "bob.os"), backend)
        assert "unknown HNS name" in why
        assert server.sessions == []
        await wait_until(lambda: server.listener.stats["handshake_failures"] == 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_bad_signature_is_refused(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    impostor = keys.generate()  # claims alice.os, signs with another key
    hs = PeerHandshake(
        initiator=True,
        our_name="alice.os",
        signing_key=impostor,
        lookup=book.lookup,
        expected_peer="bob.os",
    )
    async with running_server(book, bob, backend) as (server, port):
        assert "signature" in await refused(port, hs, backend)
        assert server.sessions == []
        # the real alice still gets in
        client = await dial(book, alice, "bob.os", port, backend)
        await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_server_with_forged_identity_is_refused(book: Book, backend: str):
    alice = book.add("alice.os")
    bob = book.add("bob.os")
    fake_bob = type(bob)("bob.os", keys.generate())
    async with running_server(book, fake_bob, backend) as (_, port):
        with pytest.raises(HandshakeError, match="signature"):
            async with asyncio.timeout(10):
                await connect(HOST, port, book.initiator(alice, "bob.os"), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_small_message_overtakes_a_10mb_one(book: Book, backend: str):
    """No head-of-line blocking: order of arrival, not timing."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            big = os.urandom(10_000_000)
            await client.session.send(big)
            await wait_until(lambda: bool(server.sessions))
            core = server.sessions[0]._drv.core
            # the big message is in flight: the server holds part of it
            await wait_until(lambda: core.inbound_open == 1)
            await client.session.send(b"small")
            await wait_until(lambda: len(server.received) == 2, timeout=30)
            assert server.received[0] == b"small"
            assert server.received[1] == big
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_keeps_the_session(book: Book, backend: str):
    """The client's UDP port changes mid-run; 20 request/response exchanges all complete."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    remotes: set[str] = set()

    async def echo(session: Session, data: bytes) -> None:
        remotes.add(session.remote)
        await session.send(b"re:" + data)

    async with running_server(book, bob, backend, on_message=echo) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            s = client.session
            first_local = s.local_address
            for i in range(20):
                if i == 10:
                    new_local = s.rebind()
                    assert new_local != first_local
                await s.send(b"%d" % i)
                assert await client.recv() == b"re:%d" % i
            await wait_until(lambda: server.sessions[0].remote.endswith(f":{new_local[1]}"))
            assert len(remotes) == 2  # the server saw both addresses
            assert server.sessions[0].peer_name == "alice.os" and not server.sessions[0].closed
            assert server.listener.stats["accepted"] == 1
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_retry_when_forced(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo, retry_threshold=0) as (
        server,
        port,
    ):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            await client.session.send(b"after retry")
            assert await client.recv() == b"after retry"
            assert server.listener.stats["retries_sent"] >= 1
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_backpressure_waits_for_delivery(book: Book, backend: str):
    """A receiver that stops delivering stops its sender: send() waits for credit."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    release = asyncio.Event()
    got: list[bytes] = []

    async def slow(session: Session, data: bytes) -> None:
        got.append(data)
        await release.wait()

    async with running_server(book, bob, backend, on_message=slow) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            s = client.session
            for i in range(limits.QUIC_MAX_STREAMS):
                async with asyncio.timeout(10):
                    await s.send(b"m%d" % i)  # within credit: returns at once
            blocked = asyncio.get_running_loop().create_task(s.send(b"one too many"))
            await wait_until(lambda: len(got) == 1)  # the receiver holds the first one
            core = server.sessions[0]._drv.core
            await wait_until(lambda: core.inbound_open == limits.QUIC_MAX_STREAMS)
            for _ in range(50):  # loop turns, not time: it stays blocked until credit returns
                await asyncio.sleep(0)
            assert not blocked.done()
            assert s._drv.core.outbound_open == limits.QUIC_MAX_STREAMS
            release.set()
            async with asyncio.timeout(10):
                await blocked
            await wait_until(lambda: len(got) == limits.QUIC_MAX_STREAMS + 1)
            assert sorted(got) == sorted([b"m%d" % i for i in range(64)] + [b"one too many"])
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_close_is_seen_by_the_peer(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        await wait_until(lambda: bool(server.sessions))
        await client.aclose()
        async with asyncio.timeout(10):
            await server.tasks[0]
        ss = server.sessions[0]
        assert ss.closed and "closed by peer" in ss.close_reason and "test done" in ss.close_reason
        assert server.errors == []
        with pytest.raises(SessionClosed):
            await ss.send(b"too late")
        with pytest.raises(SessionClosed):
            await client.session.send(b"too late")
        await wait_until(lambda: server.listener.connections == 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_idle_session_closes(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend) as (server, port):
        s = await _connect(book, alice, port, backend)

        async def deliver(session: Session, data: bytes) -> None:
            pass

        async with asyncio.timeout(10):
            await s.run(deliver, idle_timeout=0.2)
        assert s.closed and s.close_reason == "idle"
        await wait_until(lambda: bool(server.sessions) and server.sessions[0].closed)
        assert "idle" in server.sessions[0].close_reason


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connect_timeout_releases_everything(book: Book, backend: str):
    """Nobody answers: the caller's deadline ends connect(); no socket is left behind."""
    alice = book.add("alice.os")
    book.add("bob.os")
    import socket as socketmod

    silent = socketmod.socket(socketmod.AF_INET, socketmod.SOCK_DGRAM)
    silent.bind((HOST, 0))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await connect(
                    HOST, silent.getsockname()[1], book.initiator(alice, "bob.os"), backend=backend
                )
    finally:
        silent.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_many_concurrent_messages(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo) as (_, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            msgs = [b"%03d" % i + os.urandom(60) for i in range(300)]
            async with asyncio.timeout(30):
                await asyncio.gather(*(client.session.send(m) for m in msgs))
                back = [await client.recv() for _ in msgs]
            assert sorted(back) == sorted(msgs)
        finally:
            await client.aclose()


async def test_send_refuses_bad_sizes(book: Book):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, "qh3") as (_, port):
        client = await dial(book, alice, "bob.os", port, "qh3")
        try:
            with pytest.raises(ValueError):
                await client.session.send(b"")
            with pytest.raises(ValueError):
                await client.session.send(bytes(limits.MESSAGE_MAX_SIZE + 1))
        finally:
            await client.aclose()


async def test_rebind_is_for_clients_only(book: Book):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, "qh3") as (server, port):
        client = await dial(book, alice, "bob.os", port, "qh3")
        try:
            await wait_until(lambda: bool(server.sessions))
            with pytest.raises(RuntimeError):
                server.sessions[0].rebind()
        finally:
            await client.aclose()


async def test_listener_close_ends_sessions(book: Book):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    listener = QuicListener(backend="qh3")
    accepted: list[QuicSession] = []
    await listener.start(
        HOST, 0, make_responder=lambda: book.responder(bob), on_session=accepted.append
    )
    client = Client(
        await asyncio.wait_for(
            connect(HOST, listener.address[1], book.initiator(alice, "bob.os"), backend="qh3"), 10
        )
    )
    await wait_until(lambda: bool(accepted))
    listener.close()
    async with asyncio.timeout(10):
        await client.task
    assert client.error is None and "listener closed" in client.session.close_reason
    assert accepted[0].closed


def test_session_error_is_exported():
    assert issubclass(SessionError, Exception)


def _has_ipv6_loopback() -> bool:
    import socket as socketmod

    try:
        with socketmod.socket(socketmod.AF_INET6, socketmod.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("backend", BACKENDS)
async def test_ipv6_loopback(book: Book, backend: str):
    alice, bob = book.add("alice.os"), book.add("bob.os")
    listener = QuicListener(backend=backend)
    accepted: list[QuicSession] = []
    await listener.start(
        "::1", 0, make_responder=lambda: book.responder(bob), on_session=accepted.append
    )
    try:
        async with asyncio.timeout(10):
            s = await connect(
                "::1", listener.address[1], book.initiator(alice, "bob.os"), backend=backend
            )
        client = Client(s)
        await wait_until(lambda: bool(accepted))
        assert s.remote.startswith("[::1]:") and accepted[0].remote.startswith("[::1]:")
        got: list[bytes] = []

        async def deliver(session: Session, data: bytes) -> None:
            got.append(data)

        server_run = asyncio.get_running_loop().create_task(accepted[0].run(deliver, 60))
        await s.send(b"over v6")
        await wait_until(lambda: got == [b"over v6"])
        await client.aclose()
        async with asyncio.timeout(10):
            await server_run
    finally:
        listener.close()


def _started(session: QuicSession, deliver, closed: list[str]) -> None:
    """Start ``session`` as a peer table does: a synchronous ``deliver``, a byte-bounded queue."""
    session.start(
        queue=session.new_queue(),
        deliver=deliver,
        on_closed=lambda s, left: closed.append(s.close_reason or "?"),
        idle_timeout=60.0,
    )


async def _connect(book: Book, me: Identity, port: int, backend: str) -> QuicSession:
    """A session to bob.os, not started (the test starts it as a peer table would)."""
    async with asyncio.timeout(10):
        return await connect(HOST, port, book.initiator(me, "bob.os"), backend=backend)


def _submit(session: QuicSession, data: bytes) -> Outgoing:
    item = Outgoing(data, time.monotonic() + 10.0, None)
    assert session.submit(item)
    return item


@pytest.mark.parametrize("backend", BACKENDS)
async def test_started_session_delivers_from_the_transport_callback(book: Book, backend: str):
    """A session started by a peer table gets its messages straight from the driver's
    dispatch (no reader task in between), every one of them, and returns their credit."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo) as (_server, port):
        s = await _connect(book, alice, port, backend)
        got: list[tuple[bytes, bool]] = []
        closed: list[str] = []

        def deliver(_s: Session, data: bytes) -> None:
            got.append((data, asyncio.current_task() is None))

        _started(s, deliver, closed)
        try:
            await wait_until(lambda: s.deliver_now is not None)
            sent = [os.urandom(n) for n in (1, 64, 1000, limits.NOISE_MAX_PLAINTEXT + 1, 150_000)]
            sent += [os.urandom(64) for _ in range(200)]  # more than the streams kept open
            items = [_submit(s, m) for m in sent]
            await wait_until(lambda: len(got) == len(sent))
            assert sorted(d for d, _ in got) == sorted(sent)
            assert all(direct for _, direct in got), "delivered from a task, not the callback"
            assert all(i.state is OutgoingState.WRITTEN for i in items)
            assert s.messages_in == len(sent) and not s._drv.inbox and not closed
        finally:
            s.abort("test done")
            await s.wait_closed()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_failing_deliver_is_a_local_error(book: Book, backend: str):
    """Our own deliver raising (a bug of ours) closes that session as a local error, not as
    the peer's protocol violation, and the peer sees the close."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo) as (server, port):
        s = await _connect(book, alice, port, backend)
        closed: list[str] = []

        def deliver(_s: Session, data: bytes) -> None:
            raise RuntimeError("bug in deliver")

        _started(s, deliver, closed)
        await wait_until(lambda: s.deliver_now is not None)
        async with asyncio.timeout(10):
            await server.new_session.wait()
        _submit(s, b"boom")
        await wait_until(lambda: bool(closed))
        assert "local error" in closed[0] and "bug in deliver" in closed[0]
        assert s.violation is None
        await wait_until(lambda: server.sessions[0].closed)
        await s.wait_closed()


async def test_aioquic_window_stays_where_its_pacer_works(book: Book):
    """aioquic grows its congestion window while our bulk window limits the sender; past
    QUIC_MAX_PACING_RATE x RTT its pacer would send one datagram per wake-up (bulk on a
    long-lived connection fell to 1.3 MB/s). After 30 MB on one connection the window is
    capped and the pacer still sends bursts."""
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, "aioquic") as (server, port):
        client = await dial(book, alice, "bob.os", port, "aioquic")
        try:
            big = os.urandom(10_000_000)
            for i in range(3):
                await client.session.send(big)
                await wait_until(lambda i=i: len(server.received) == i + 1, timeout=40)
            loss = client.session._drv.core.quic._c._loss  # the aioquic connection's recovery
            srtt = loss._rtt_smoothed
            cap = max(limits.QUIC_MAX_PACING_RATE * srtt, 16 * limits.QUIC_MAX_DATAGRAM_SIZE)
            assert loss._cc.congestion_window <= cap + limits.QUIC_MAX_DATAGRAM_SIZE
            pacer = loss._pacer
            assert pacer.packet_time is not None
            assert pacer.bucket_max >= 2 * pacer.packet_time  # a burst per wake-up, not one
        finally:
            await client.aclose()
