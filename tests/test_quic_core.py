"""The connection core, sans-I/O: two NoiseQuicConnections wired through a fake QUIC layer.

No sockets, no QUIC library: stream bytes written by one side are handed to the other as
events, in whatever order a test chooses (which real QUIC may also produce under loss).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from hnet import limits
from hnet.core.quic import backend as qb
from hnet.core.quic.connection import (
    Closed,
    HandshakeDone,
    MessageReceived,
    NoiseQuicConnection,
    SendCredit,
)
from hnet.core.quic.errors import QuicAppError
from hnet.core.quic.streams import MessageSealer
from tests.test_quic_util import Book


class FakeQuic(qb.QuicConn):
    """Records stream writes; replays events the test feeds it."""

    backend = "fake"

    def __init__(self, is_client: bool) -> None:
        super().__init__(None)
        self.is_client = is_client
        self.writes: list[tuple[int, bytes, bool]] = []
        self.events: deque[qb.QuicEvent] = deque()
        self._next = 0 if is_client else 1
        self.closed_with: tuple[int, str] | None = None

    def connect(self, addr: qb.Addr, now: float) -> None:
        pass

    def receive_datagram(self, data: bytes, addr: qb.Addr, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, qb.Addr]]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
        self.writes.append((stream_id, bytes(data), end_stream))
        if stream_id >= self._next and (stream_id & 3) == (0 if self.is_client else 1):
            self._next = stream_id + 4

    def next_bidi_stream_id(self) -> int:
        return self._next

    def send_ping(self, uid: int) -> None:
        pass

    def change_connection_id(self) -> None:
        pass

    def close(self, error_code: int, reason: str) -> None:
        self.closed_with = (error_code, reason)

    def next_event(self) -> qb.QuicEvent | None:
        return self.events.popleft() if self.events else None

    def _translate(self, ev: Any) -> qb.QuicEvent | None:
        return ev  # type: ignore[no-any-return]

    def can_open_stream(self) -> bool:
        return True

    def unsent_bytes(self, stream_id: int) -> int:
        return 0

    def bytes_in_flight(self) -> int:
        return 0

    def min_rtt(self) -> float | None:
        return None

    def termination(self) -> qb.Termination | None:
        return None

    def take(self) -> list[tuple[int, bytes, bool]]:
        out, self.writes = self.writes, []
        return out


def deliver(to: NoiseQuicConnection, writes: list[tuple[int, bytes, bool]]) -> None:
    fake = to.quic
    assert isinstance(fake, FakeQuic)
    for sid, data, fin in writes:
        fake.events.append(qb.StreamData(sid, data, fin))
    to.receive_datagram(b"", ("127.0.0.1", 1), 0.0)


def events(c: NoiseQuicConnection) -> list[object]:
    out = []
    while (ev := c.next_event()) is not None:
        out.append(ev)
    return out


def make_pair() -> tuple[NoiseQuicConnection, NoiseQuicConnection, FakeQuic, FakeQuic]:
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    cq, sq = FakeQuic(True), FakeQuic(False)
    client = NoiseQuicConnection(cq, book.initiator(alice, "bob.os"))
    server = NoiseQuicConnection(sq, book.responder(bob))
    return client, server, cq, sq


def quic_ready(c: NoiseQuicConnection) -> None:
    fake = c.quic
    assert isinstance(fake, FakeQuic)
    fake.events.append(qb.HandshakeCompleted(qb.ALPN))
    c.receive_datagram(b"", ("127.0.0.1", 1), 0.0)


def handshake(client: NoiseQuicConnection, server: NoiseQuicConnection) -> None:
    cq, sq = client.quic, server.quic
    assert isinstance(cq, FakeQuic) and isinstance(sq, FakeQuic)
    quic_ready(client)
    quic_ready(server)
    deliver(server, cq.take())  # -> e
    deliver(client, sq.take())  # <- e, ee, s, es
    deliver(server, cq.take())  # -> s, se
    deliver(client, sq.take())  # FIN: confirmation


def test_handshake_and_message_exchange():
    client, server, cq, sq = make_pair()
    handshake(client, server)
    assert client.is_open and server.is_open and client.confirmed
    assert client.peer_name == "bob.os" and server.peer_name == "alice.os"
    sid = client.send_message(b"hello bob")
    assert sid == 4
    deliver(server, cq.take())
    evs = events(server)
    assert isinstance(evs[0], HandshakeDone)
    assert evs[1] == MessageReceived(4, b"hello bob")
    assert client.outbound_open == 1 and server.inbound_open == 1
    server.message_delivered(4)
    assert sq.take() == [(4, b"", True)]  # the acknowledgement: FIN on the return half
    deliver(client, [(4, b"", True)])
    assert any(isinstance(e, SendCredit) for e in events(client))
    assert client.outbound_open == 0 and client.inflight_bytes == 0
    assert server.inbound_open == 0


def test_app_data_overtaking_the_last_handshake_message_is_buffered():
    """Stream 4 arrives before "-> s, se" (loss, reordering): held, then delivered."""
    client, server, cq, sq = make_pair()
    quic_ready(client)
    quic_ready(server)
    deliver(server, cq.take())
    deliver(client, sq.take())
    client.send_message(b"eager")  # before any confirmation: within QUIC_EARLY_SEND
    msg3, app = cq.take()
    assert msg3[0] == 0 and app[0] == 4
    deliver(server, [app])
    assert not server.is_open and not server.is_closed
    deliver(server, [msg3])
    evs = events(server)
    assert isinstance(evs[0], HandshakeDone) and evs[1] == MessageReceived(4, b"eager")


def test_initiator_sends_little_before_confirmation():
    client, server, cq, sq = make_pair()
    quic_ready(client)
    quic_ready(server)
    deliver(server, cq.take())
    deliver(client, sq.take())
    assert client.is_open and not client.confirmed
    assert not client.can_send(limits.QUIC_EARLY_SEND)  # with framing, over the budget
    assert client.can_send(1000)
    deliver(server, cq.take())
    deliver(client, sq.take())  # the responder's FIN on stream 0
    assert client.confirmed and client.can_send(10_000_000)


def test_app_data_before_the_responder_could_finish_is_early_data():
    _client, server, _cq, sq = make_pair()
    quic_ready(server)
    deliver(server, [(4, b"\x00\x14" + bytes(20), False)])
    assert server.is_closed
    assert sq.closed_with is not None and sq.closed_with[0] == QuicAppError.EARLY_DATA


def test_early_data_is_bounded():
    client, server, cq, sq = make_pair()
    quic_ready(client)
    quic_ready(server)
    deliver(server, cq.take())
    deliver(client, sq.take())
    cq.take()  # msg3 "lost"
    deliver(server, [(4 * (i + 1), bytes(1000), False) for i in range(70)])
    assert server.is_closed and sq.closed_with is not None
    assert sq.closed_with[0] == QuicAppError.EARLY_DATA


def test_frame_moved_between_streams_closes_the_connection():
    client, server, cq, _sq = make_pair()
    handshake(client, server)
    events(server)
    client.send_message(b"first")
    client.send_message(b"second")
    (s1, _d1, _f1), (_s2, d2, f2) = cq.take()
    deliver(server, [(s1, d2, f2)])  # stream 8's bytes on stream 4
    evs = events(server)
    closed = [e for e in evs if isinstance(e, Closed)]
    assert closed and closed[0].violation and closed[0].code == QuicAppError.PROTOCOL_VIOLATION
    assert not any(isinstance(e, MessageReceived) for e in evs)


def test_stream_limit_and_window_are_enforced():
    client, server, cq, sq = make_pair()
    handshake(client, server)
    for _i in range(limits.QUIC_MAX_STREAMS):
        assert client.can_send(10)
        client.send_message(b"x" * 10)
    assert not client.can_send(10)  # our own rule first
    deliver(server, cq.take())
    assert server.inbound_open == limits.QUIC_MAX_STREAMS and not server.is_closed
    # a peer that ignores the rule: one more stream is a violation
    assert client._send_keys is not None
    extra = 4 * (limits.QUIC_MAX_STREAMS + 1)
    wire = MessageSealer(client._send_keys.cipher(extra), b"y").seal_all()
    deliver(server, [(extra, wire, True)])
    assert server.is_closed and sq.closed_with is not None
    assert sq.closed_with[0] == QuicAppError.LIMIT_EXCEEDED


def test_bulk_reserve_leaves_room_for_small_messages():
    client, server, _cq, _sq = make_pair()
    handshake(client, server)
    client.send_message(bytes(limits.MESSAGE_MAX_SIZE))
    assert not client.can_send(limits.MESSAGE_MAX_SIZE)  # the bulk share is used up
    assert client.can_send(1000)  # small messages still go


@pytest.mark.parametrize("alpn", [None, "h3"])
def test_wrong_alpn_is_refused(alpn: str | None):
    _client, server, _cq, sq = make_pair()
    sq.events.append(qb.HandshakeCompleted(alpn))
    server.receive_datagram(b"", ("127.0.0.1", 1), 0.0)
    assert server.is_closed and sq.closed_with is not None
    assert sq.closed_with[0] == QuicAppError.HANDSHAKE_FAILED
