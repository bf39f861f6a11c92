"""Checkpoint and resume: a sync killed with SIGKILL (in a subprocess, at several points)
resumes from its checkpoint and ends with exactly the chain's logs and the expected records;
a bounded sync continued by a new source in the same process does too."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
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
    running_chain,
)
from hnet.testing.provider import Faults, RpcProxy
from hns import HYPERMAP_FIRST_BLOCK, ChainSource, CheckpointError, RetryPolicy
from hns.checkpoint import read_status

pytestmark = pytest.mark.chain

RETRY = RetryPolicy(attempts=10, base_delay=0.005, max_delay=0.05, call_timeout=2.0)

SYNC_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from hns import ChainSource, RangePolicy, RetryPolicy

    async def main(url, checkpoint, to_block):
        src = ChainSource(
            url,
            confirmations=0,
            checkpoint=checkpoint,
            to_block=int(to_block),
            retry=RetryPolicy(attempts=10, base_delay=0.005, max_delay=0.05, call_timeout=2.0),
            ranges=RangePolicy(initial=8, maximum=16, concurrency=2),
            poll_interval=0.0,
            batch_seconds=0.5,
        )
        n = 0
        while True:
            n += len(await src.read_new())
            if src.synced:
                break
        await src.aclose()
        print("SYNCED", n, flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def history_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestChain, int]]:
    build = tmp_path_factory.getbasetemp() / "hypermap-build"
    try:
        with running_chain(build) as chain:
            history = bulk_history(21, nodes=600)
            head = history.write(chain)
            chain.history = history  # type: ignore[attr-defined]
            yield chain, head
    except ToolMissing as e:
        pytest.fail(str(e))


def truth(chain: TestChain, head: int) -> list[dict[str, object]]:
    return [dict(x) for x in hypermap_filter(chain.logs(HYPERMAP_FIRST_BLOCK, head))]


def cursor_of(path: Path) -> int | None:
    try:
        cursor = read_status(path).cursor
    except CheckpointError:
        return None  # not created yet, or created but empty of a schema
    return cursor.block if cursor else None


async def run_sync(
    url: str, checkpoint: Path, head: int, kill_at: int | None
) -> tuple[int | None, str]:
    """Run the sync script; SIGKILL it once its checkpoint passes block ``kill_at``.
    Returns (the returncode, its stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SYNC_SCRIPT,
        url,
        str(checkpoint),
        str(head),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            while kill_at is not None and proc.returncode is None:
                block = cursor_of(checkpoint)
                if block is not None and block >= kill_at:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                await asyncio.sleep(0.005)
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode() + err.decode()


async def test_sigkill_midway_then_resume(
    history_chain: tuple[TestChain, int], tmp_path: Path
) -> None:
    chain, head = history_chain
    checkpoint = tmp_path / "home" / "hns" / "ckpt.sqlite"
    span = head - HYPERMAP_FIRST_BLOCK
    faults = Faults(seed=2, failure_rate=0.05, delay=0.003, max_block_range=24)
    async with RpcProxy(chain.url, faults) as proxy:
        # First a kill very early (before or during the first commits), then at set points.
        code, output = await run_sync(proxy.url, checkpoint, head, HYPERMAP_FIRST_BLOCK)
        assert code == -signal.SIGKILL, output
        kills = []
        for fraction in (0.15, 0.45, 0.8):
            kill_at = HYPERMAP_FIRST_BLOCK + int(span * fraction)
            code, output = await run_sync(proxy.url, checkpoint, head, kill_at)
            assert code == -signal.SIGKILL, output
            kills.append(cursor_of(checkpoint))
        code, output = await run_sync(proxy.url, checkpoint, head, None)
        assert code == 0, output
        assert "SYNCED" in output
    # Every kill left a checkpoint somewhere inside the history, further each time.
    assert all(k is not None and HYPERMAP_FIRST_BLOCK <= k < head for k in kills), kills
    assert kills == sorted(kills)
    # Reopened here (straight on anvil): exactly the chain's logs, the expected records.
    src = ChainSource(chain.url, confirmations=0, checkpoint=checkpoint, to_block=head, retry=RETRY)
    try:
        logs = await drain(src)
    finally:
        await src.aclose()
    assert logs == truth(chain, head)
    assert records_of(logs) == expected_records(chain.history.events)  # type: ignore[attr-defined]


async def test_a_bounded_sync_continued_by_another_source(
    history_chain: tuple[TestChain, int], tmp_path: Path
) -> None:
    chain, head = history_chain
    checkpoint = tmp_path / "ckpt.sqlite"
    middle = (HYPERMAP_FIRST_BLOCK + head) // 2
    first = ChainSource(chain.url, confirmations=0, checkpoint=checkpoint, to_block=middle)
    try:
        part = await drain(first)
    finally:
        await first.aclose()
    assert part == truth(chain, middle)
    second = ChainSource(chain.url, confirmations=0, checkpoint=checkpoint, to_block=head)
    try:
        whole = await drain(second)  # the stored part first, then the rest
    finally:
        await second.aclose()
    assert whole == truth(chain, head)
    status = read_status(checkpoint)
    assert status.cursor is not None and status.cursor.block == head
    assert status.logs == len(whole) and status.chain_id == 8453


async def test_a_checkpoint_of_another_start_block_is_refused(
    history_chain: tuple[TestChain, int], tmp_path: Path
) -> None:
    chain, head = history_chain
    checkpoint = tmp_path / "ckpt.sqlite"
    src = ChainSource(chain.url, confirmations=0, checkpoint=checkpoint, to_block=head - 50)
    try:
        await drain(src)
    finally:
        await src.aclose()
    other = ChainSource(chain.url, checkpoint=checkpoint, first_block=HYPERMAP_FIRST_BLOCK + 5)
    try:
        with pytest.raises(Exception, match=r"made for first_block 27270411, not 27270416"):
            await other.read_new()
    finally:
        await other.aclose()
