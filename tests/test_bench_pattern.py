"""bench/pattern.py, the bare QUIC library carrying hnet-noise/1's message pattern: it echoes
under the protocol's credit (never more than QUIC_MAX_STREAMS messages unacknowledged, every
one acknowledged in the end), and a peer that breaks the pattern fails the request instead of
leaving it waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bench import pattern
from bench.common import Identities
from bench.transports import PATTERN_KINDS, Endpoint, TransportServers
from hnet.limits import QUIC_MAX_STREAMS

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def _served(kind: str) -> AsyncIterator[Endpoint]:
    """A pattern server of ``kind`` running, and an endpoint that dials it."""
    ids = Identities.generate()
    servers = TransportServers(ids, (kind,))
    try:
        ep = Endpoint(ids, {})
        ep.ports.update(await servers.start())
        yield ep
    finally:
        await servers.aclose()


@pytest.mark.parametrize("kind", PATTERN_KINDS)
async def test_pattern_echoes_within_credit_and_acknowledges_all(kind: str) -> None:
    async with asyncio.timeout(60), _served(kind) as ep:
        client = await ep.dial_lib(kind)
        assert isinstance(client, pattern.PatternClient)
        try:
            messages = [i.to_bytes(2, "big") * 32 for i in range(100)]  # 64 B, all different

            async def loop(m: bytes) -> None:
                for _ in range(3):
                    assert await client.request(m) == m

            await asyncio.gather(*(loop(m) for m in messages))
            proto = client.proto
            assert QUIC_MAX_STREAMS // 2 < proto.peak_unacked <= QUIC_MAX_STREAMS
            for _ in range(500):  # the last acknowledgements are on their way
                if not proto.unacked:
                    break
                await asyncio.sleep(0.01)
            assert not proto.unacked and not proto.queued and client.failure is None
        finally:
            await client.aclose()


@pytest.mark.parametrize("kind", PATTERN_KINDS)
async def test_a_peer_with_other_keys_fails_the_request(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with asyncio.timeout(60), _served(kind) as ep:
        real = pattern.session_keys
        # the client seals with the server's sending keys: nothing it sends opens
        monkeypatch.setattr(pattern, "session_keys", lambda is_client: real(False))
        client = await ep.dial_lib(kind)
        try:
            with pytest.raises(pattern.PatternError):
                async with asyncio.timeout(20):
                    await client.request(b"x" * 64)
            assert client.failure is not None
        finally:
            await client.aclose()


@pytest.mark.parametrize("kind", PATTERN_KINDS)
async def test_a_stream_longer_than_one_message_is_refused(kind: str) -> None:
    async with asyncio.timeout(60), _served(kind) as ep:
        client = await ep.dial_lib(kind)
        assert isinstance(client, pattern.PatternClient)
        try:
            assert await client.request(b"y" * 64) == b"y" * 64
            proto = client.proto
            # a message stream that never ends, past what one sealed message can take
            sid = proto._quic.get_next_available_stream_id()
            proto._quic.send_stream_data(sid, bytes(70_000), False)
            proto.transmit()
            with pytest.raises(pattern.PatternError):  # once the server has read past it
                async with asyncio.timeout(20):
                    for _ in range(2000):
                        await client.request(b"z" * 64)
                        await asyncio.sleep(0.01)
            assert client.failure is not None and "closed" in client.failure
        finally:
            await client.aclose()
