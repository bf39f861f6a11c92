"""ChainSource bootstrapped from hypermap-cacher files, then caught up by RPC, on a real local
chain: the covered blocks come from the files (never fetched again), the rest from the chain,
and the records end as the chain's."""

from __future__ import annotations

from pathlib import Path

import pytest

from hnet.testing.chain import TestChain, drain, records_of
from hns import (
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    NOTE_TCP_PORT,
    ChainSource,
    LogCache,
    LogsMetadata,
    RetryPolicy,
    SourceError,
    labelhash,
    write_log_cache,
)
from hns.events import parse_word

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
KEY_C = bytes(range(2, 34))
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.005, max_delay=0.05, call_timeout=5.0)


def write_cache(directory: Path, logs: list[dict[str, object]], lo: int, hi: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    md = LogsMetadata(
        chain_id=str(HYPERMAP_CHAIN_ID),
        from_block=str(lo),
        to_block=str(hi),
        time_created="20261201T000000Z",
        created_by="test:hnet:sys",
    )
    return write_log_cache(directory, LogCache(metadata=md, logs=logs))


def source(chain: TestChain, bootstrap: str, checkpoint: Path | None = None) -> ChainSource:
    return ChainSource(
        chain.url,
        confirmations=0,
        retry=FAST_RETRY,
        poll_interval=0.0,
        bootstrap=bootstrap,
        checkpoint=checkpoint,
    )


def is_tcp_port_note(log: dict[str, object]) -> bool:
    topics = log["topics"]
    assert isinstance(topics, list)
    return len(topics) == 4 and parse_word(topics[3]) == labelhash(NOTE_TCP_PORT)


async def test_covered_blocks_come_from_the_files_the_rest_from_rpc(
    chain: TestChain, tmp_path: Path
) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    mid = chain.register("bob.os", KEY_B, ip="10.0.0.2", ports={"tcp": 9100, "ws": 9101})
    assert mid.ports["tcp"] == 9100
    split = chain.mine(2)
    chain.register("carol.os", KEY_C, routers=["alice.os"])
    truth = chain.logs(HYPERMAP_FIRST_BLOCK, chain.head())
    covered = [x for x in truth if int(str(x["blockNumber"]), 16) <= split]
    # Two files, and bob's ~tcp-port note left out of them: if the source fetched the covered
    # blocks again, bob would get his tcp port back.
    first_half = [x for x in covered if int(str(x["blockNumber"]), 16) <= HYPERMAP_FIRST_BLOCK + 1]
    second_half = [x for x in covered if x not in first_half and not is_tcp_port_note(x)]
    cache = tmp_path / "cache"
    write_cache(cache, first_half, HYPERMAP_FIRST_BLOCK, HYPERMAP_FIRST_BLOCK + 1)
    write_cache(cache, second_half, HYPERMAP_FIRST_BLOCK + 2, split)
    src = source(chain, str(cache))
    try:
        logs = await drain(src)
        problems = src.take_problems()
    finally:
        await src.aclose()
    assert src.bootstrap is not None and src.bootstrap.last_block == split, problems
    assert src.bootstrap.files_used == 2
    got = records_of(logs)
    assert got["bob.os"].ports == {"ws": 9101}  # from the files, not refetched
    assert got["alice.os"] == chain.registry.load().records()["alice.os"]
    assert got["carol.os"].routers == ("alice.os",)  # caught up by RPC
    assert len(logs) == len(truth) - 1


async def test_a_gap_in_the_files_is_filled_by_rpc_and_a_resume_skips_the_files(
    chain: TestChain, tmp_path: Path
) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    chain.register("bob.os", KEY_B, ip="10.0.0.2", ports={"tcp": 9100})
    chain.register("carol.os", KEY_C, routers=["alice.os", "bob.os"])
    head = chain.mine(1)
    truth = chain.logs(HYPERMAP_FIRST_BLOCK, head)
    alice_block = HYPERMAP_FIRST_BLOCK + 1
    cache = tmp_path / "cache"
    early = [x for x in truth if int(str(x["blockNumber"]), 16) <= alice_block]
    write_cache(cache, early, HYPERMAP_FIRST_BLOCK, alice_block)
    write_cache(cache, truth, alice_block + 2, head)  # a gap of one block: not used
    ckpt = tmp_path / "ckpt.sqlite"
    src = source(chain, str(cache), ckpt)
    try:
        logs = await drain(src)
        problems = src.take_problems()
    finally:
        await src.aclose()
    assert src.bootstrap is not None and src.bootstrap.last_block == alice_block
    assert any("left to RPC" in p for p in problems)
    assert records_of(logs) == chain.registry.load().records()
    assert logs == truth  # every log once, in order

    # A restart with a checkpoint does not read the files again.
    again = source(chain, str(cache), ckpt)
    try:
        assert await drain(again) == truth
        assert any("cache not read" in p for p in again.take_problems())
    finally:
        await again.aclose()


async def test_an_unusable_cache_location_is_a_source_error(
    chain: TestChain, tmp_path: Path
) -> None:
    src = source(chain, str(tmp_path / "missing"))
    try:
        with pytest.raises(SourceError, match="no such directory"):
            await src.read_new()
    finally:
        await src.aclose()
