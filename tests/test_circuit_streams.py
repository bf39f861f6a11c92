"""Stream openings on a plain QUIC session (docs/quic.md §11.2): message streams as before,
circuit streams handed to the circuit layer, and a session that takes no circuits refusing
them without harm, or closing the connection for what can never be valid."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

import pytest

from hnet.core.circuit.control import ControlRole
from hnet.core.circuit.errors import CircuitCode
from hnet.core.circuit.frames import ControlFrame, RefuseFrame, RequestFrame
from hnet.core.circuit.request import new_request
from hnet.core.quic import backend as qb
from hnet.core.quic.connection import CircuitData
from hnet.core.quic.errors import QuicAppError, QuicProtocolError
from hnet.transport.quic import QuicSession
from hnet.transport.quic.circuit import ControlHalf, VirtualQuic
from tests.test_quic_hostile import run_attack
from tests.test_quic_util import BACKENDS, Book, RawQuicClient, Server, dial, running_server

pytestmark = pytest.mark.timeout(60)


async def echo(session: object, data: bytes) -> None:
    await session.send(data)  # type: ignore[attr-defined]


class Collect:
    """A circuit handler that reads the answers on our own control stream."""

    def __init__(self) -> None:
        self.half: ControlHalf | None = None
        self.frames: list[ControlFrame] = []
        self.fin = False

    def circuit_data(self, session: QuicSession, ev: CircuitData) -> None:
        assert self.half is not None and ev.ours and ev.stream_id == self.half.sid
        self.frames += self.half.feed(ev.data, ev.fin)
        self.fin = self.fin or ev.fin


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_session_without_circuits_refuses_a_request_and_keeps_going(backend: str):
    book = Book()
    alice, bob = book.add("alice.os"), book.add("bob.os")
    async with running_server(book, bob, backend, on_message=echo) as (server, port):
        client = await dial(book, alice, "bob.os", port, backend)
        try:
            s = client.session
            await s.send(b"before")
            assert await client.recv() == b"before"
            collect = Collect()
            s.set_circuits(collect)
            req = new_request("alice.os", alice.key, target="carol.os", router="bob.os",
                              now=time.time())  # fmt: skip
            collect.half = ControlHalf.open(s, RequestFrame(0, req), ControlRole.ROUTER_TO_SOURCE)
            async with asyncio.timeout(10):
                while not collect.fin:
                    await asyncio.sleep(0.01)
            assert len(collect.frames) == 1
            refuse = collect.frames[0]
            assert isinstance(refuse, RefuseFrame) and refuse.code is CircuitCode.NOT_ROUTING
            collect.half.finish()
            # messages, small and large, still flow on the same connection
            big = os.urandom(200_000)
            await s.send(big)
            assert await client.recv() == big
            assert not s.closed and not server.errors
        finally:
            await client.aclose()


async def _after_noise(raw: RawQuicClient, data: bytes) -> None:
    raw.send(4, data, fin=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "opening",
    [b"\x00\x00\x03" + b"x" * 40, b"\x00\x00\x02" + b"\x00\x20" + b"y" * 32, b"\x00"],
    ids=["reserved-opening", "relayed-stream-for-no-circuit", "ends-in-opening"],
)
async def test_invalid_circuit_streams_close_the_connection(backend: str, opening: bytes):
    async def attack(raw: RawQuicClient, server: Server) -> None:
        await _after_noise(raw, opening)

    await run_attack(backend, attack, QuicAppError.PROTOCOL_VIOLATION, noise=True)


class _End:
    """Enough of a CircuitEnd for a VirtualQuic on its own."""

    def __init__(self) -> None:
        self.opened: deque[tuple[int, bytes, bool]] = deque()

    def open_relay(self, number: int, data: bytes, fin: bool) -> int:
        self.opened.append((number, data, fin))
        return 100 + number

    def write(self, sid: int, data: bytes, fin: bool) -> None:
        pass


def test_a_replayed_relayed_stream_is_refused_by_the_receiving_end() -> None:
    """A router replaying a whole relayed stream (same number: same key and nonces, so it
    would authenticate) is caught by the end's stream number record (§11.7)."""
    vq = VirtualQuic(_End(), is_client=False)  # type: ignore[arg-type]
    assert isinstance(vq.next_event(), qb.HandshakeCompleted)
    vq.stream_opened(0, 7)
    vq.stream_opened(4, 8)
    vq.stream_data(4, b"x", True)
    assert isinstance(vq.next_event(), qb.StreamData)
    vq.stream_opened(4, 9)  # again
    with pytest.raises(QuicProtocolError) as e:
        vq.next_event()
    assert e.value.code == QuicAppError.PROTOCOL_VIOLATION and "twice" in e.value.reason
    vq2 = VirtualQuic(_End(), is_client=False)  # type: ignore[arg-type]
    vq2.next_event()
    vq2.stream_opened(5, 1)  # the source numbers 0 mod 4: 5 is the target's kind
    with pytest.raises(QuicProtocolError):
        vq2.next_event()


def test_virtual_streams_are_numbered_like_quic_ids() -> None:
    end = _End()
    vq = VirtualQuic(end, is_client=True)  # type: ignore[arg-type]
    assert vq.next_bidi_stream_id() == 0
    vq.send_stream_data(0, b"e", False)
    assert vq.next_bidi_stream_id() == 4 and vq.hop_sid[0] == 100
    vq.send_stream_data(0, b"more", True)  # same stream: no new relayed stream
    vq.send_stream_data(4, b"m", True)
    assert [n for n, _d, _f in end.opened] == [0, 4]
    with pytest.raises(RuntimeError):
        vq.send_stream_data(12, b"skipped", True)
