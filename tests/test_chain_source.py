"""ChainSource on a real local chain (anvil + HypermapTest at the Hypermap address).

The chain gives what only a real node can: the EVM's ABI encoding and Solidity's topic hashes,
real ``eth_getLogs`` filtering, block hashes and reorgs. Expectations are computed
independently: by the local registry for the same registrations, by hns' own encoders for bulk
histories, or from anvil's unfiltered logs. Needs anvil and solcjs (see
``hnet.testing.chain.INSTALL_HINT``): without them these tests fail, naming what is missing.
"""

from __future__ import annotations

import pytest

from hnet.testing.chain import (
    ChainEvent,
    TestChain,
    drain,
    expected_records,
    records_of,
    registration_events,
)
from hns import (
    HYPERMAP_FIRST_BLOCK,
    ChainIdMismatch,
    ChainSource,
    RangePolicy,
    RetryPolicy,
    SourceError,
)
from hns.checkpoint import log_position
from hns.names import namehash

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
KEY_C = bytes(range(2, 34))
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, call_timeout=5.0)


def source(chain: TestChain, **kw: object) -> ChainSource:
    kw.setdefault("confirmations", 0)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("poll_interval", 0.0)
    return ChainSource(chain.url, **kw)  # type: ignore[arg-type]


# --- the same records as the local registry ----------------------------------------------------


async def test_one_registration_gives_the_registry_s_record(chain: TestChain) -> None:
    rec = chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000, "ws": 9001})
    src = source(chain)
    try:
        logs = await drain(src)
    finally:
        await src.aclose()
    assert len(logs) == 6  # Mint os, Mint alice, ~net-key, ~ip, ~tcp-port, ~ws-port
    got = records_of(logs)
    assert got == chain.registry.load().records()
    assert got["alice.os"] == rec
    assert rec.ips == ("10.0.0.1",) and rec.ports == {"tcp": 9000, "ws": 9001}


async def test_many_registrations_match_the_registry_over_http_and_ws(chain: TestChain) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000, "ws": 9001})
    chain.register("bob.os", KEY_B, ip="::1", ports={"tcp": 9100, "quic": 9102})
    chain.register("carol.dev", KEY_C, routers=["alice.os", "bob.os"])
    chain.mine(5)
    chain.register("alice.os", KEY_A, ip="10.0.0.2", ports={"ws": 9001})  # tcp withdrawn (0)
    chain.register("bob.os", KEY_B, routers=["alice.os"])  # turns indirect
    chain.register("deep.sub.carol.dev", KEY_A, ip="192.0.2.7", ports={"tcp": 1})
    want = chain.registry.load().records()
    assert want["alice.os"].ports == {"ws": 9001}
    for url in (chain.url, chain.anvil.ws_url):
        src = ChainSource(url, confirmations=0, retry=FAST_RETRY, poll_interval=0.0)
        try:
            logs = await drain(src)
        finally:
            await src.aclose()
        assert records_of(logs) == want, url
        positions = [log_position(x) for x in logs]
        assert positions == sorted(set(positions))


async def test_only_hypermap_s_mints_and_networking_notes_are_read(chain: TestChain) -> None:
    decoy = "0x00000000000000000000000000000000dec0de00"
    chain.install(decoy)
    alice = registration_events("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    mallory = registration_events("mallory.os", KEY_B, ip="10.9.9.9", mint=["mallory.os"])
    noise = [
        ChainEvent("note", namehash("alice.os"), b"~other", b"\x01\x02"),
        ChainEvent("fact", namehash("alice.os"), b"!fact", b"\x03"),
    ]
    chain.emit(alice + noise + mallory)
    # The decoy emits the same topics (a later ~ip for alice, a Mint): all of it is ignored.
    chain.emit(
        [
            ChainEvent("note", namehash("alice.os"), b"~ip", b"\x7f\x00\x00\x09"),
            ChainEvent("mint", namehash("os"), b"fake"),
        ],
        address=decoy,
    )
    src = source(chain)
    try:
        logs = await drain(src)
    finally:
        await src.aclose()
    assert len(logs) == len(alice) + len(mallory)  # no ~other note, no Fact, nothing of decoy
    assert all(str(x["address"]).lower() == chain.address.lower() for x in logs)
    got = records_of(logs)
    assert got["alice.os"].ips == ("10.0.0.1",) and "fake.os" not in got
    assert got == expected_records(alice + mallory)


async def test_wrong_chain_id_is_a_clear_error(chain: TestChain) -> None:
    src = source(chain, chain_id=1)
    try:
        with pytest.raises(ChainIdMismatch) as e:
            await src.read_new()
        assert e.value.expected == 1 and e.value.got == 8453
        assert "serves chain 8453 (Base), expected 1 (Ethereum)" in str(e.value)
        with pytest.raises(ChainIdMismatch):  # every later call too, without asking again
            await src.read_new()
        assert isinstance(e.value, SourceError)
    finally:
        await src.aclose()


async def test_progress_and_bounded_sync(chain: TestChain) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    head = chain.mine(300)
    seen = []
    src = source(
        chain,
        to_block=head - 100,
        ranges=RangePolicy(initial=8, maximum=64, concurrency=2),
        progress=seen.append,
    )
    try:
        logs = await drain(src)
    finally:
        await src.aclose()
    assert records_of(logs)["alice.os"].ips == ("10.0.0.1",)
    assert src.cursor is not None and src.cursor.block == head - 100
    last = seen[-1]
    assert last.synced and last.done == last.total == head - 100 - HYPERMAP_FIRST_BLOCK + 1
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert len(seen) > 5  # ranges grew from 8 to 64: several commits
