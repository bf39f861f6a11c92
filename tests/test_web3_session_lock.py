"""web3's HTTP providers share one class-wide session lock; a request cancelled while waiting
for it leaves it held, and every later request of every provider in the process hangs (the
cause of a CI run where every chain test after some point failed with "no answer"). Each of
our providers gets a lock of its own (``hns.sources.chain._own_session_lock``): a stuck lock
stays with one provider, which a timeout replaces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from hns.sources.chain import RetryPolicy, RpcEndpoint

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, call_timeout=2.0)


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x2105"})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_a_stuck_session_lock_stalls_only_its_own_provider(endpoint: str) -> None:
    import random

    from web3._utils.http_session_manager import HTTPSessionManager

    first = RpcEndpoint(endpoint, "first", FAST, random.Random(1))
    second = RpcEndpoint(endpoint, "second", FAST, random.Random(2))
    try:
        assert await first.call("eth_chainId", []) == "0x2105"
        assert await second.call("eth_chainId", []) == "0x2105"
        manager = first._w3.provider._request_session_manager  # type: ignore[union-attr]
        assert manager._lock is not HTTPSessionManager._lock
        manager._lock.acquire()  # as an abandoned request would leave it
        async with asyncio.timeout(10):
            assert await second.call("eth_chainId", []) == "0x2105"  # not stalled
            # The stuck provider times out once, is replaced, and answers again.
            assert await first.call("eth_chainId", []) == "0x2105"
        assert first.stats["retries"] >= 1
        assert not manager._lock.locked()  # let go, so no executor thread blocks on it
    finally:
        await first.aclose()
        await second.aclose()
