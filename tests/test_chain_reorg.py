"""Reorgs on a real chain: deliveries wait for confirmations, a reorg that replaces delivered
blocks makes the source raise SourceReset and replay the canonical history, a shallower one is
invisible, and the PKI rebuilds its records (and tells its subscribers) after a reset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from hnet.net.pki import Pki, PkiChange
from hnet.testing.chain import (
    TestChain,
    drain,
    hypermap_filter,
    records_of,
    registration_events,
)
from hns import (
    HYPERMAP_FIRST_BLOCK,
    ChainSource,
    Registry,
    RegistrySource,
    RetryPolicy,
    SourceReset,
)

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
KEY_C = bytes(range(2, 34))
RETRY = RetryPolicy(attempts=6, base_delay=0.005, max_delay=0.05, call_timeout=5.0)
CONFIRMATIONS = 3


def source(chain: TestChain, tmp_path: Path, **kw: object) -> ChainSource:
    return ChainSource(
        chain.url,
        confirmations=CONFIRMATIONS,
        checkpoint=tmp_path / "ckpt.sqlite",
        retry=RETRY,
        poll_interval=0.0,
        **kw,  # type: ignore[arg-type]
    )


def canonical(chain: TestChain) -> dict[str, object]:
    """Records of what the chain holds now, up to the confirmed head."""
    head = chain.head() - CONFIRMATIONS
    return dict(records_of(hypermap_filter(chain.logs(HYPERMAP_FIRST_BLOCK, head))))


async def until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "it") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None


async def test_logs_wait_for_confirmations(chain: TestChain, tmp_path: Path) -> None:
    chain.emit(registration_events("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1}))
    src = source(chain, tmp_path)
    try:
        assert await drain(src) == []  # the registration's block is the head: not confirmed
        chain.mine(CONFIRMATIONS - 1)
        assert await drain(src) == []
        chain.mine(1)
        assert records_of(await drain(src))["alice.os"].ips == ("10.0.0.1",)
    finally:
        await src.aclose()


async def test_a_deep_reorg_resets_and_replays_the_canonical_history(
    chain: TestChain, tmp_path: Path
) -> None:
    chain.emit(registration_events("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1}))
    chain.mine(CONFIRMATIONS)
    snap = chain.snapshot()
    chain.emit(registration_events("bob.os", KEY_B, ip="10.0.0.2", ports={"tcp": 2}, mint=None))
    chain.emit(registration_events("alice.os", KEY_A, ip="10.6.6.6", ports={"tcp": 6}, mint=[]))
    chain.mine(CONFIRMATIONS + 2)
    src = source(chain, tmp_path)
    try:
        seen = records_of(await drain(src))
        assert seen["alice.os"].ips == ("10.6.6.6",) and "bob.os" in seen
        # The fork: bob and alice's move never happened; carol did, and the chain is longer.
        chain.revert(snap)
        chain.emit(
            registration_events("carol.os", KEY_C, ip="10.0.0.3", ports={"ws": 3}, mint=None)
        )
        chain.mine(2 * CONFIRMATIONS + 4)
        with pytest.raises(SourceReset) as e:
            await src.read_new()
        assert e.value.from_block <= HYPERMAP_FIRST_BLOCK + 1 + CONFIRMATIONS + 1
        replay = await drain(src)
        got = records_of(replay)
        assert got == canonical(chain)
        assert "bob.os" not in got and "carol.os" in got
        assert got["alice.os"].ips == ("10.0.0.1",)
        assert src.counters()["resets"] == 1
    finally:
        await src.aclose()
    # A restart after the reset resumes from the rolled-back checkpoint: the same records.
    again = source(chain, tmp_path)
    try:
        assert records_of(await drain(again)) == canonical(chain)
    finally:
        await again.aclose()


async def test_a_reorg_within_confirmations_is_invisible(chain: TestChain, tmp_path: Path) -> None:
    chain.emit(registration_events("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1}))
    chain.mine(CONFIRMATIONS)
    src = source(chain, tmp_path)
    try:
        assert "alice.os" in records_of(await drain(src))
        chain.emit(
            registration_events("dave.os", KEY_B, ip="10.0.0.4", ports={"tcp": 4}, mint=None)
        )
        chain.reorg(CONFIRMATIONS)  # dave's block (unconfirmed) is replaced by an empty one
        chain.mine(CONFIRMATIONS + 1)
        more = await drain(src)  # no SourceReset: nothing delivered changed
        assert more == []
        assert src.counters().get("resets", 0) == 0
    finally:
        await src.aclose()


async def test_the_pki_rebuilds_after_a_reset(chain: TestChain, tmp_path: Path) -> None:
    """Records follow the canonical chain, subscribers hear of each change (a name that
    vanished included), and a registry source's records survive the rebuild."""
    registry = Registry(tmp_path / "local", contract=chain.address)
    registry.register("local.dev", KEY_C, ip="127.0.0.1", ports={"tcp": 7})
    chain.emit(registration_events("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1}))
    chain.mine(CONFIRMATIONS)
    snap = chain.snapshot()
    chain.emit(
        registration_events("bob.os", KEY_B, ip="10.0.0.2", ports={"tcp": 2}, mint=["bob.os"])
    )
    chain.emit(registration_events("alice.os", KEY_A, ip="10.6.6.6", ports={"tcp": 6}, mint=[]))
    chain.mine(CONFIRMATIONS + 2)
    pki = Pki(
        [source(chain, tmp_path), RegistrySource(registry)],
        poll_interval=0.02,
        miss_interval=0.01,
        contract=chain.address,
    )
    changes: list[PkiChange] = []
    pki.subscribe(changes.append)
    try:
        await pki.start()
        await until(lambda: pki.record("bob.os") is not None, what="bob.os")
        assert pki.record("alice.os").ips == ("10.6.6.6",)  # type: ignore[union-attr]
        chain.revert(snap)
        chain.mine(2 * CONFIRMATIONS + 4)

        def rebuilt() -> bool:
            rec = pki.record("alice.os")
            return rec is not None and rec.ips == ("10.0.0.1",)

        await until(rebuilt, what="alice.os back on 10.0.0.1")
        assert pki.record("bob.os") is None
        assert pki.record("local.dev") is not None  # kept across the rebuild
        assert pki.stats["resets"] == 1
        assert any(c.name == "bob.os" and c.new is None for c in changes)
        assert any(
            c.name == "alice.os" and c.new is not None and c.new.ips == ("10.0.0.1",)
            for c in changes
        )
    finally:
        await pki.aclose()
