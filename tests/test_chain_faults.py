"""ChainSource against a misbehaving provider: a bulk history (more than 10,000 logs over more
than 1,000 blocks) synced through :class:`hnet.testing.provider.RpcProxy` with range and size
limits, 10 % failed requests of every kind and stale heads, must give exactly the logs anvil
holds (none twice, none missing, in order) and exactly the expected records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet.testing.chain import (
    TestChain,
    ToolMissing,
    bulk_history,
    drain,
    expected_records,
    hypermap_filter,
    records_of,
    registration_events,
    running_chain,
)
from hnet.testing.provider import FAULT_KINDS, Faults, RpcProxy
from hns import HYPERMAP_FIRST_BLOCK, ChainSource, RangePolicy, RetryPolicy, SourceError
from hns.checkpoint import log_position

pytestmark = pytest.mark.chain

RETRY = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.1, call_timeout=1.0)


@pytest.fixture(scope="module")
def bulk_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestChain, int]]:
    """One chain with the bulk history for the whole module (writing it takes seconds)."""
    build = tmp_path_factory.getbasetemp() / "hypermap-build"
    try:
        with running_chain(build) as chain:
            history = bulk_history(7)
            head = history.write(chain)
            chain.history = history  # type: ignore[attr-defined]
            yield chain, head
    except ToolMissing as e:
        pytest.fail(str(e))


def truth(chain: TestChain, head: int) -> list[dict[str, object]]:
    return [dict(x) for x in hypermap_filter(chain.logs(HYPERMAP_FIRST_BLOCK, head))]


async def test_bulk_sync_through_a_hostile_provider(
    bulk_chain: tuple[TestChain, int], tmp_path: Path
) -> None:
    chain, head = bulk_chain
    want_logs = truth(chain, head)
    assert len(want_logs) >= 10_000
    assert head - HYPERMAP_FIRST_BLOCK >= 1_000
    faults = Faults(
        seed=11,
        failure_rate=0.10,
        kinds={k: 1.0 for k in FAULT_KINDS},
        max_block_range=100,
        max_results=400,
        stale_head_rate=0.3,
        removed_rate=0.05,
        stall_seconds=5.0,
    )
    async with RpcProxy(chain.url, faults) as proxy:
        src = ChainSource(
            proxy.url,
            confirmations=0,
            checkpoint=tmp_path / "ckpt.sqlite",
            to_block=head,
            retry=RETRY,
            ranges=RangePolicy(initial=500, maximum=4_000, concurrency=4),
            poll_interval=0.0,
            seed=3,
        )
        try:
            logs = await drain(src, limit=120)
        finally:
            await src.aclose()
    assert [log_position(x) for x in logs] == [log_position(x) for x in want_logs]
    assert logs == want_logs  # exactly anvil's objects: nothing altered, doubled or lost
    assert records_of(logs) == expected_records(chain.history.events)  # type: ignore[attr-defined]
    kinds = ("429", "503", "stall", "drop", "garbage", "rate", "range_errors", "size_errors")
    for kind in (*kinds, "removed"):
        assert proxy.stats[kind] > 0, (kind, proxy.stats)
    counters = src.counters()
    assert counters["retries"] > 0 and counters["range_errors"] > 0


async def test_a_provider_that_always_fails_gives_a_source_error(
    bulk_chain: tuple[TestChain, int],
) -> None:
    chain, _head = bulk_chain
    async with RpcProxy(chain.url, Faults(failure_rate=1.0, kinds={"503": 1.0})) as proxy:
        src = ChainSource(
            proxy.url,
            retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01, call_timeout=1.0),
        )
        try:
            with pytest.raises(SourceError, match=r"eth_chainId failed 3 times; last: HTTP 503"):
                await src.read_new()
        finally:
            await src.aclose()
    assert proxy.stats["503"] == 3


async def test_removed_logs_are_never_delivered(bulk_chain: tuple[TestChain, int]) -> None:
    """A node that keeps answering with ``removed: true`` logs (mid-reorg) is asked again,
    a bounded number of times, and nothing of its answers is delivered."""
    chain, _head = bulk_chain
    async with RpcProxy(chain.url, Faults(removed_rate=1.0)) as proxy:
        src = ChainSource(
            proxy.url,
            confirmations=0,
            retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01, call_timeout=2.0),
        )
        try:
            with pytest.raises(SourceError, match=r"inconsistent answers; last: a removed log"):
                await src.read_new()
            assert src.counters()["inconsistent"] >= 3
            assert src.cursor is None  # nothing committed
        finally:
            await src.aclose()
    assert proxy.stats["removed"] >= 3


async def test_a_block_range_cap_of_one_still_syncs(bulk_chain: tuple[TestChain, int]) -> None:
    """The worst provider: one block per query. A short stretch, to bound the time."""
    chain, _head = bulk_chain
    to_block = HYPERMAP_FIRST_BLOCK + 60
    async with RpcProxy(chain.url, Faults(max_block_range=1)) as proxy:
        src = ChainSource(
            proxy.url, confirmations=0, to_block=to_block, retry=RETRY, poll_interval=0.0
        )
        try:
            logs = await drain(src)
        finally:
            await src.aclose()
    assert logs == truth(chain, to_block)


async def test_many_stalls_do_not_wedge_the_client(bulk_chain: tuple[TestChain, int]) -> None:
    """Deadlines abandon requests, never cancel them inside web3 (whose session cache would
    keep a thread lock forever): after a burst of stalls every later request still works."""
    chain, _head = bulk_chain
    to_block = HYPERMAP_FIRST_BLOCK + 200
    faults = Faults(seed=5, failure_rate=0.5, kinds={"stall": 1.0}, stall_seconds=3.0)
    async with RpcProxy(chain.url, faults) as proxy:
        src = ChainSource(
            proxy.url,
            confirmations=0,
            to_block=to_block,
            retry=RetryPolicy(attempts=12, base_delay=0.001, max_delay=0.01, call_timeout=0.3),
            ranges=RangePolicy(initial=50, maximum=50, concurrency=4),
            poll_interval=0.0,
        )
        try:
            logs = await drain(src)
        finally:
            await src.aclose()
    assert proxy.stats["stall"] >= 5
    assert logs == truth(chain, to_block)


async def test_following_a_growing_chain_with_out_of_order_heads(
    bulk_chain: tuple[TestChain, int], tmp_path: Path
) -> None:
    """Follow mode: blocks keep coming while half the head answers are stale (a lagging
    backend). The cursor never goes back, nothing is delivered twice, and the result is the
    chain's logs up to the confirmed head."""
    chain, _head = bulk_chain
    confirmations = 2
    faults = Faults(seed=9, stale_head_rate=0.5, stale_head_lag=12, max_block_range=200)
    async with RpcProxy(chain.url, faults) as proxy:
        src = ChainSource(
            proxy.url,
            confirmations=confirmations,
            checkpoint=tmp_path / "ckpt.sqlite",
            retry=RETRY,
            poll_interval=0.0,
        )
        try:
            logs = await drain(src, limit=60)
            cursors = [src.cursor]
            for i in range(40):
                node = f"late{i}.os"
                key = bytes([i]) * 32
                chain.emit(registration_events(node, key, ip="10.1.1.1", ports={"tcp": i + 1}))
                chain.mine(i % 3)
                logs += await src.read_new()
                cursors.append(src.cursor)
            chain.mine(confirmations)
            for _ in range(20):  # a few more polls: some see a stale head, some the real one
                logs += await src.read_new()
        finally:
            await src.aclose()
    assert proxy.stats["stale_heads"] > 10
    blocks = [c.block for c in cursors if c is not None]
    assert blocks == sorted(blocks)
    assert logs == truth(chain, chain.head() - confirmations)
