"""The listener layer on real loopback sockets (hnet/transport/listener.py).

- One pending-handshake bound for TCP and WebSocket together, the WS upgrade included
  (docs/protocol.md §3): past the cap a connection is refused at once; a slot comes back when
  its handshake completes, fails or times out.
- WebSocket keepalive (§5): a peer that never answers pings is dropped within interval +
  timeout; one that answers stays.
- Routed connections (§7): the pipe end given to the router forwards what arrived behind the
  RoutingRequest first, untouched.
- WebSocket violations after the handshake: a text frame, a frame above one Noise message
  (refused from its header, before its payload).

Every wait is on a condition with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from hnet.core.framing import encode_handshake_frame
from hnet.core.passthroughs import PipeEnd
from hnet.core.relay import RoutingRefused
from hnet.transport import ws as ws_transport
from hnet.transport.gate import HandshakeGate
from hnet.transport.listener import ListenConfig, Listeners
from hnet.transport.session import Session

from .attacker import ws_handshake
from .test_handshake_sockets import (
    DEADLINE,
    HOST,
    Book,
    RawWsClient,
    Rest,
    Served,
    echo,
    good_session,
    until,
)


@pytest.fixture
def book() -> Book:
    return Book()


async def eof_within(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until ``reader`` sees the end of the stream (or a reset), at most ``timeout``."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
    return time.monotonic() - start


def test_public_surface() -> None:
    """hnet/node.py builds Listeners with these and reads these (keep them)."""
    params = set(Listeners.__init__.__code__.co_varnames)
    assert {"make_responder", "on_session", "route", "supervisor", "resolve_key", "gate"} <= params
    for attr in ("start", "close", "aclose"):
        assert callable(getattr(Listeners, attr))
    cfg = ListenConfig("127.0.0.1", {"tcp": 1})
    assert cfg.handshake_timeout == 5.0 and cfg.quic_backend is None


# --- the pending-handshake gate -------------------------------------------------------------


async def test_gate_caps_half_open_tcp_and_ws_together(book: Book) -> None:
    bob = book.add("bob.os")
    gate = HandshakeGate(limit=3)
    async with Served(book, bob, gate=gate, handshake_timeout=30.0) as served:
        # three half-open connections: two TCP, one WS that never sends its HTTP upgrade
        held = [
            await asyncio.open_connection(HOST, served.ports["tcp"]),
            await asyncio.open_connection(HOST, served.ports["tcp"]),
            await asyncio.open_connection(HOST, served.ports["ws"]),
        ]
        await until(lambda: gate.pending == 3, "three handshakes pending")
        # the next TCP connection is refused at once (not after the 30 s deadline)
        reader, writer = await asyncio.open_connection(HOST, served.ports["tcp"])
        assert await eof_within(reader, 2.0) < 2.0
        writer.close()
        assert gate.refused == 1
        # and so is the next WS upgrade
        started = time.monotonic()
        with pytest.raises((WebSocketException, OSError)):
            async with asyncio.timeout(2.0):
                await ws_connect(f"ws://{HOST}:{served.ports['ws']}", open_timeout=None)
        assert time.monotonic() - started < 2.0
        assert gate.refused == 2 and gate.pending == 3
        # a slot comes back when a handshake fails: here the peers leave
        for _, w in held:
            w.close()
        await until(lambda: gate.pending == 0, "slots released after the failures")
        assert served.failures == 3
        # ... and when one completes
        alice = book.add("alice.os")
        for kind in ("tcp", "ws"):
            session = await good_session(served, kind, alice)
            assert await echo(session) == b"ping"
        await until(lambda: len(served.sessions) == 2, "both sessions accepted")
        assert gate.pending == 0 and gate.refused == 2


async def test_gate_full_of_many_sources_evicts_the_oldest_for_a_newcomer(book: Book) -> None:
    """A slowloris spread over 8 source addresses, each within its share, fills the gate; a
    newcomer still completes its handshake: the oldest half-open connection is cut for it."""
    bob, alice = book.add("bob.os"), book.add("alice.os")
    gate = HandshakeGate(limit=8, per_source=4, evict_min_age=0.3)
    async with Served(book, bob, gate=gate, handshake_timeout=30.0) as served:
        held = []
        for i in range(8):
            held.append(
                await asyncio.open_connection(
                    HOST, served.ports["tcp"], local_addr=(f"127.0.0.{i + 2}", 0)
                )
            )
            await until(lambda: gate.pending == len(held), "the half-open one counted")
        assert gate.sources == 8
        await asyncio.sleep(0.35)  # all of them older than evict_min_age now
        session = await good_session(served, "tcp", alice)  # from 127.0.0.1: a ninth source
        assert await echo(session) == b"ping"
        assert gate.evicted == 1 and gate.refused == 0
        assert await eof_within(held[0][0], DEADLINE) < DEADLINE  # the oldest was cut
        for _, w in held:
            w.close()
        await until(lambda: gate.pending == 0, "slots released")


async def test_gate_slot_released_on_timeout(book: Book) -> None:
    """The handshake deadline runs from the TCP accept and covers the WS upgrade."""
    bob = book.add("bob.os")
    gate = HandshakeGate(limit=4)
    async with Served(book, bob, gate=gate, handshake_timeout=0.3) as served:
        tcp = await asyncio.open_connection(HOST, served.ports["tcp"])
        tcp[1].write(b"\x00\x20" + bytes(10))  # part of a first frame, then silence
        ws = await asyncio.open_connection(HOST, served.ports["ws"])
        ws[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # part of an upgrade request
        upgraded = await RawWsClient.connect(served.ports["ws"])  # upgraded, no Noise
        await until(lambda: gate.pending == 3, "three handshakes pending")
        for reader in (tcp[0], ws[0], upgraded.reader):
            assert await eof_within(reader, DEADLINE) < DEADLINE
        await until(lambda: gate.pending == 0, "slots released after the timeouts")
        assert served.failures == 3
        for _, w in (tcp, ws):
            w.close()
        upgraded.close()


async def test_gate_slot_released_after_refusal_of_a_routing_request(book: Book) -> None:
    bob = book.add("bob.os")
    gate = HandshakeGate(limit=1)
    async with Served(book, bob, gate=gate) as served:
        reader, writer = await asyncio.open_connection(HOST, served.ports["tcp"])
        writer.write(encode_handshake_frame(b"\x94\x01"))  # a (bad) RoutingRequest: refused
        assert await eof_within(reader, DEADLINE) < DEADLINE
        await until(lambda: gate.pending == 0, "slot released")
        assert served.failures == 0  # the router refused it: not a handshake failure
        writer.close()


# --- WebSocket keepalive --------------------------------------------------------------------


async def test_ws_peer_that_never_answers_pings_is_dropped(book: Book) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")
    interval, timeout = 0.2, 0.3
    async with Served(book, bob, ws_ping_interval=interval, ws_ping_timeout=timeout) as served:
        raw = await RawWsClient.connect(served.ports["ws"])
        conn = await raw.handshake(book.initiator(alice, "bob.os"))
        assert conn.is_open and conn.peer_name == "bob.os"
        await until(lambda: len(served.sessions) == 1, "session accepted")
        opened = time.monotonic()
        assert await raw.closed()  # reads (and drops our pongs) until the server closes
        elapsed = time.monotonic() - opened
        assert raw.pings >= 1
        assert elapsed < interval + timeout + 1.0, elapsed
        session = served.sessions[0]
        await until(lambda: session.closed, "the server session closed")
        assert session.close_reason == "no pong within 0.3 s"
        raw.close()


async def test_ws_peer_that_answers_pings_stays(book: Book) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")
    async with Served(book, bob, ws_ping_interval=0.05, ws_ping_timeout=0.2) as served:
        client = await good_session(served, "ws", alice)
        served.run_client(client)  # its reader answers the server's pings
        await until(lambda: len(served.sessions) == 1, "session accepted")
        server_ws = served.sessions[0]._ws  # type: ignore[attr-defined]
        assert isinstance(server_ws, ws_transport.WsStream)
        await until(lambda: server_ws.pongs_received >= 4, "four pongs")
        assert not served.sessions[0].closed and not client.closed
        client.abort("done")


# --- WebSocket violations after the handshake ------------------------------------------------


async def test_ws_text_frame_closes_the_session(book: Book) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")
    async with (
        Served(book, bob) as served,
        ws_connect(f"ws://{HOST}:{served.ports['ws']}") as ws,
    ):
        async with asyncio.timeout(DEADLINE):
            await ws_handshake(ws, book.initiator(alice, "bob.os"))
        await until(lambda: len(served.sessions) == 1, "session accepted")
        await ws.send("a text frame")
        session = served.sessions[0]
        await until(lambda: session.closed, "the server session closed")
        assert "text frame" in session.close_reason


async def test_ws_frame_above_one_noise_message_refused_from_its_header(book: Book) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")
    async with Served(book, bob) as served:
        raw = await RawWsClient.connect(served.ports["ws"])
        await raw.handshake(book.initiator(alice, "bob.os"))
        await until(lambda: len(served.sessions) == 1, "session accepted")
        # a masked binary frame claiming 1 GB: the header only, no payload ever sent
        raw.writer.write(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 10**9) + bytes(4))
        assert await raw.closed()
        session = served.sessions[0]
        await until(lambda: session.closed, "the server session closed")
        assert "1000000000" in session.close_reason and "65535" in session.close_reason
        raw.close()


# --- routed connections: the bytes behind the RoutingRequest go first -----------------------

ROUTING_REQUEST = b"\x94\x01\xa8alice.os\x90\xa6carol.os"


class Router:
    """A route() that records the request and reads what the pipe end delivers."""

    def __init__(self, want: int) -> None:
        self.first: bytes | None = None
        self.kind = ""
        self.got: list[bytes] = []
        self.want = want
        self.done = asyncio.Event()

    async def route(self, first: bytes, end: PipeEnd) -> Rest:
        self.first = first
        self.kind = end.kind

        async def rest() -> None:
            try:
                while len(b"".join(self.got)) < self.want:
                    data = await end.recv()
                    if data is None:
                        break
                    self.got.append(data)
            finally:
                end.close()
                self.done.set()

        return rest


async def test_tcp_routed_connection_forwards_what_was_behind_the_request(book: Book) -> None:
    bob = book.add("bob.os")
    behind = b"\x00\x20" + bytes(range(32))  # as an initiator's "-> e" would follow
    later = b"and what came later" * 1000
    router = Router(len(behind) + len(later))
    async with Served(book, bob, route=router.route) as served:
        _, writer = await asyncio.open_connection(HOST, served.ports["tcp"])
        writer.write(encode_handshake_frame(ROUTING_REQUEST) + behind)  # one segment
        await until(lambda: router.first is not None, "routed")
        writer.write(later)
        async with asyncio.timeout(DEADLINE):
            await router.done.wait()
        assert router.first == ROUTING_REQUEST and router.kind == "tcp"
        assert b"".join(router.got) == behind + later
        assert served.listeners.gate.pending == 0 and served.failures == 0
        writer.close()


async def test_ws_routed_connection_forwards_whole_messages_in_order(book: Book) -> None:
    bob = book.add("bob.os")
    messages = [bytes(range(32)), b"second" * 100, b"third"]
    router = Router(sum(map(len, messages)))
    async with Served(book, bob, route=router.route) as served:
        async with ws_connect(f"ws://{HOST}:{served.ports['ws']}") as ws:
            await ws.send(ROUTING_REQUEST)
            for m in messages:
                await ws.send(m)
            async with asyncio.timeout(DEADLINE):
                await router.done.wait()
        assert router.first == ROUTING_REQUEST and router.kind == "ws"
        assert router.got == messages


async def test_refused_routing_request_closes_the_socket_and_keeps_serving(book: Book) -> None:
    bob, alice = book.add("bob.os"), book.add("alice.os")

    async def refuse(first: bytes, end: PipeEnd) -> Rest:
        raise RoutingRefused("this node does not route")

    async with Served(book, bob, route=refuse) as served:
        for kind in ("tcp", "ws"):
            if kind == "tcp":
                reader, writer = await asyncio.open_connection(HOST, served.ports["tcp"])
                writer.write(encode_handshake_frame(ROUTING_REQUEST))
                assert await eof_within(reader, DEADLINE) < DEADLINE
                writer.close()
            else:
                raw = await RawWsClient.connect(served.ports["ws"])
                raw.send_binary(ROUTING_REQUEST)
                assert await raw.closed()
                raw.close()
            session: Session = await good_session(served, kind, alice)
            assert await echo(session) == b"ping"
        assert served.failures == 0
