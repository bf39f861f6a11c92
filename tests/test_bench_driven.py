"""bench/driven.py and ``--sessions driven``: sessions driven as a node's peer table drives
them answer echoes and bulk messages over TCP and QUIC, a large message waits until the
transport took it, and a send that cannot be queued is reported, not lost."""

from __future__ import annotations

import asyncio

import pytest

from bench import driven
from bench.common import Identities
from bench.run import DrivenTcpPair
from bench.transports import (
    DRIVEN,
    OP_ACK,
    OP_BULK,
    OP_ECHO,
    Endpoint,
    SessionMux,
    TransportServers,
    make_message,
)
from hnet.core.sendqueue import Outgoing
from hnet.core.wire import SendErrorKind


@pytest.mark.parametrize("kind", ["tcp", "quic-qh3", "quic-aioquic"])
async def test_driven_sessions_echo_and_acknowledge_bulk(kind: str) -> None:
    ids = Identities.generate()
    servers = TransportServers(ids, (kind,), DRIVEN)
    ep = Endpoint(ids, {}, DRIVEN)
    async with asyncio.timeout(60):
        ep.ports.update(await servers.start())
        client = await ep.dial(kind)
        try:
            assert isinstance(client, SessionMux) and client._sender is not None  # driven
            echoes = [make_message(OP_ECHO, client.new_id(), 64) for _ in range(20)]
            replies = await asyncio.gather(*(client.request(m) for m in echoes))
            assert replies == echoes  # matched by id, each the very bytes sent
            rid = client.new_id()
            bulk = make_message(OP_BULK, rid, 300_000)  # above SMALL_SUBMIT: waits for credit
            ack = await client.request(bulk)
            assert ack == make_message(OP_ACK, rid, 9)
            assert client.failure is None
        finally:
            await client.aclose()
            await servers.aclose()


async def test_driven_tcp_pair_round_trips_and_closes() -> None:
    pair = DrivenTcpPair()
    async with asyncio.timeout(30):
        await pair.start()
        try:
            for n in (1, 64, 70_000):
                message = bytes(range(256)) * (n // 256) + bytes(n % 256)
                assert await pair.request(message) == message
            pair.check_alive()
        finally:
            await pair.aclose()
    assert pair.client is not None and pair.client.closed


class _FullSession:
    """Stands in for a session whose queue has no room: ``submit`` refuses."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, _item: object, headroom: int = 0) -> bool:
        self.submitted += 1
        return False

    def describe(self) -> str:
        return "full session"


async def test_a_send_with_no_room_is_reported_once() -> None:
    failures: list[str] = []
    sender = driven.Sender(_FullSession(), failures.append)  # type: ignore[arg-type]
    sender.submit(b"x")
    async with asyncio.timeout(5):
        await sender.submit_and_wait(b"y" * 100_000)  # returns: it failed, nothing to wait for
    assert (
        failures
        == [f"send failed ({SendErrorKind.OFFLINE.name}): full session: no room in its queue"] * 2
    )


async def test_messages_left_unwritten_at_close_fail_their_sender() -> None:
    """A driven session that closes with messages still queued fails them (nothing is lost
    silently, and ``submit_and_wait`` returns instead of waiting for them)."""
    pair = DrivenTcpPair()
    failures: list[str] = []
    async with asyncio.timeout(30):
        await pair.start()
        try:
            client = pair.client
            assert client is not None and client.queue is not None
            client.queue.push(  # queued behind nothing, never written: the session closes first
                Outgoing(b"queued", 1e12, None, on_fail=lambda _i, _k, r: failures.append(r))
            )
            client.abort("closed by the test")
        finally:
            await pair.aclose()
    assert failures == ["closed by the test"]
