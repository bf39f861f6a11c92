"""LiveLookup: one name read live from Hypermap with ``eth_call`` (Multicall3-batched ``get``).

On a real local chain (anvil + HypermapTest, which answers ``get``, + our Multicall at
Multicall3's address): the record a live lookup gives must be the one the indexer builds from
the same chain's logs. Plus pure tests of the notes -> record rules and of the ABI coding,
and a scripted endpoint for answers no real node gives (garbage, wrong counts).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from eth_abi.abi import encode as abi_encode

from hnet.testing.chain import (
    ChainEvent,
    TestChain,
    ToolMissing,
    expected_records,
    registration_events,
    running_chain,
)
from hnet.testing.provider import Faults, RpcProxy
from hns import (
    ChainIdMismatch,
    Indexer,
    NodeRecord,
    RetryPolicy,
    SourceError,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
)
from hns.lookup import (
    AGGREGATE_SELECTOR,
    GET_SELECTOR,
    MULTICALL3_ADDRESS,
    LiveLookup,
    MalformedAnswer,
    decode_aggregate,
    decode_get,
    encode_aggregate,
    encode_get,
    read_notes,
    record_from_notes,
)
from hns.names import namehash, namehash_hex
from hns.records import NOTE_IP, NOTE_NET_KEY, NOTE_QUIC_PORT, NOTE_ROUTERS, PORT_NOTES

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
KEY_C = bytes(range(2, 34))
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, call_timeout=5.0)


def live(url: str, **kw: object) -> LiveLookup:
    kw.setdefault("retry", FAST_RETRY)
    return LiveLookup(url, **kw)  # type: ignore[arg-type]


def indexed(chain: TestChain) -> tuple[dict[str, NodeRecord], Indexer]:
    """What the indexer makes of the chain's logs (the expectation), and the indexer itself
    (to name routers)."""
    ix = Indexer()
    ix.feed_all(chain.logs(0, chain.head()))
    return ix.records(), ix


def names_of(ix: Indexer):
    return lambda h: ix.name_of(bytes.fromhex(h[2:]))


async def assert_matches_indexer(chain: TestChain, **kw: object) -> LiveLookup:
    want, ix = indexed(chain)
    lk = live(chain.url, names=names_of(ix), **kw)
    try:
        for name, rec in want.items():
            assert await lk.lookup(name) == rec, name
    finally:
        await lk.aclose()
    return lk


def register_mixed(chain: TestChain) -> None:
    """Direct and indirect nodes, then re-registrations the live read sees as the indexer."""
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000, "ws": 9001})
    chain.register("bob.os", KEY_B, ip="::1", ports={"tcp": 9100, "quic": 9102})
    chain.register("carol.dev", KEY_C, routers=["alice.os", "bob.os"])
    chain.register("dave.os", KEY_A, routers=["carol.dev"])
    chain.mine(3)
    chain.register("alice.os", KEY_A, ip="10.0.0.2", ports={"ws": 9001})  # tcp withdrawn (0)
    chain.register("dave.os", KEY_B, ip="192.0.2.7", ports={"tcp": 1})  # indirect -> direct
    chain.register("deep.sub.carol.dev", KEY_C, ip="::ffff:10.1.2.3", ports={"quic": 5})


# --- on the chain --------------------------------------------------------------------------


async def test_direct_and_indirect_records_equal_the_indexer_s(chain: TestChain) -> None:
    register_mixed(chain)
    want, _ = indexed(chain)
    assert want["alice.os"].ports == {"ws": 9001} and want["dave.os"].is_direct
    assert want["carol.dev"].routers == ("alice.os", "bob.os")
    lk = await assert_matches_indexer(chain)
    assert lk.batching is True
    c = lk.counters()
    assert c["multicalls"] == c["reads"] == len(want) and not c.get("single_calls")


async def test_one_lookup_is_one_eth_call_and_a_cache_hit_none(chain: TestChain) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    now = [0.0]
    async with RpcProxy(chain.url) as proxy:
        lk = live(proxy.url, clock=lambda: now[0], cache_ttl=60, negative_ttl=5)
        try:
            rec = await lk.lookup("alice.os")
            assert rec is not None and rec.ips == ("10.0.0.1",)
            assert proxy.stats["requests"] == 2  # eth_chainId once, then one eth_call
            again = await lk.resolve("alice.os")
            assert again.cached and again.record == rec
            assert proxy.stats["requests"] == 2  # the cache answered: no call at all
            assert await lk.lookup("nobody.os") is None
            assert proxy.stats["requests"] == 3
            now[0] = 4.0
            assert await lk.lookup("nobody.os") is None  # negative answer still cached
            assert proxy.stats["requests"] == 3
            now[0] = 6.0
            assert await lk.lookup("nobody.os") is None  # negative answer expired
            assert proxy.stats["requests"] == 4
            assert await lk.lookup("alice.os") == rec  # 60 s for a usable record
            assert proxy.stats["requests"] == 4
            now[0] = 61.0
            chain.register("alice.os", KEY_A, ip="10.0.0.9", ports={"tcp": 9000})
            rec2 = await lk.lookup("alice.os")
            assert rec2 is not None and rec2.ips == ("10.0.0.9",)
            assert proxy.stats["requests"] == 5
            assert lk.counters()["cache_hits"] == 3
        finally:
            await lk.aclose()


async def test_concurrent_lookups_of_one_name_share_one_read(chain: TestChain) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    async with RpcProxy(chain.url, Faults(delay=0.1)) as proxy, live(proxy.url) as lk:
        got = await asyncio.gather(*(lk.lookup("alice.os") for _ in range(20)))
        assert len({r.ips if r else None for r in got}) == 1 and got[0] is not None
        assert proxy.stats["requests"] == 2
        assert lk.counters()["shared"] == 19
        # A caller giving up does not cancel the read the others wait for.
        lk.invalidate()
        first = asyncio.ensure_future(lk.lookup("alice.os"))
        second = asyncio.ensure_future(lk.lookup("alice.os"))
        await asyncio.sleep(0.02)
        first.cancel()
        assert await second == got[0]
        assert proxy.stats["requests"] == 3


async def test_unknown_and_invalid_names_are_none(chain: TestChain) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    async with RpcProxy(chain.url) as proxy, live(proxy.url) as lk:
        assert await lk.lookup("nobody.os") is None
        assert await lk.lookup("alice.nope") is None
        before = proxy.stats["requests"]
        for bad in ("Alice.os", "", "alice..os", "a" * 64 + ".os", "~net-key.alice.os"):
            assert await lk.lookup(bad) is None
        assert proxy.stats["requests"] == before  # no call for a name that cannot exist
        assert lk.counters()["invalid"] == 5


async def test_without_multicall3_each_get_is_its_own_call_with_the_same_result(
    chain: TestChain,
) -> None:
    register_mixed(chain)
    chain.remove_code(MULTICALL3_ADDRESS)
    lk = await assert_matches_indexer(chain)
    c = lk.counters()
    assert lk.batching is False
    assert c["multicall_absent"] == 1 and c["multicalls"] == 1  # tried once, remembered
    assert c["single_calls"] == c["reads"] * 7  # the name and its six notes


async def test_a_reverting_multicall_falls_back_too(chain: TestChain) -> None:
    register_mixed(chain)
    chain.install(MULTICALL3_ADDRESS)  # HypermapTest has no aggregate(): every call reverts
    lk = await assert_matches_indexer(chain)
    assert lk.batching is False and lk.counters()["multicall_absent"] == 1


async def test_no_multicall_configured_never_batches(chain: TestChain) -> None:
    register_mixed(chain)
    lk = await assert_matches_indexer(chain, multicall=None)
    assert lk.batching is False and not lk.counters().get("multicalls")


async def test_a_chain_without_multicall_from_the_start(build_dir: Path) -> None:
    try:
        with running_chain(build_dir, multicall=False) as c:
            c.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
            c.register("bob.os", KEY_B, routers=["alice.os"])
            lk = await assert_matches_indexer(c)
            assert lk.batching is False
    except ToolMissing as e:
        pytest.fail(str(e))


async def test_wrong_chain_id_is_a_clear_error(chain: TestChain) -> None:
    async with RpcProxy(chain.url) as proxy, live(proxy.url, chain_id=1) as lk:
        with pytest.raises(ChainIdMismatch) as e:
            await lk.lookup("alice.os")
        assert e.value.expected == 1 and e.value.got == 8453
        assert "serves chain 8453 (Base), expected 1 (Ethereum)" in str(e.value)
        assert isinstance(e.value, SourceError)
        with pytest.raises(ChainIdMismatch):  # every later lookup too, without asking
            await lk.lookup("bob.os")
        assert proxy.stats["requests"] == 1


async def test_malformed_note_values_read_as_the_indexer_reads_them(chain: TestChain) -> None:
    def notes(name: str, *pairs: tuple[str, bytes]) -> list[ChainEvent]:
        node = namehash(name)
        return [ChainEvent("note", node, label.encode(), data) for label, data in pairs]

    def mint(name: str) -> list[ChainEvent]:
        label, _, parent = name.partition(".")
        return [ChainEvent("mint", namehash(parent), label.encode())]

    ghost = namehash("ghost.os")  # never minted
    events = [ChainEvent("mint", bytes(32), b"os"), *mint("alice.os")]
    events += notes("alice.os", ("~net-key", KEY_A), ("~ip", encode_ip("10.0.0.1")))
    events += notes("alice.os", ("~tcp-port", encode_port(1)))
    for name, pairs in {
        "m1.os": [
            ("~net-key", KEY_A[:31]),
            ("~ip", b"\n\x00\x00\x01\x05"),
            ("~tcp-port", b"\x00\x01\x02"),
            ("~ws-port", encode_port(9)),
        ],
        "m2.os": [("~net-key", KEY_A + b"\x00"), ("~routers", namehash("alice.os") + b"\x01")],
        "m3.os": [
            ("~net-key", KEY_B),
            ("~ip", encode_ip("2001:db8::1")),
            ("~tcp-port", encode_port(0)),
            ("~ws-port", encode_port(7)),
            ("~quic-port", b"\x01"),
        ],
        "m4.os": [("~net-key", KEY_C), ("~routers", namehash("alice.os") + ghost)],
        "m5.os": [("~net-key", KEY_C), ("~ip", b""), ("~tcp-port", encode_port(3))],
        "m6.os": [
            ("~net-key", KEY_C),
            ("~ip", encode_ip("10.0.0.6")),
            ("~quic-port", encode_port(6)),
            ("~other", b"\x01\x02"),
        ],
    }.items():
        events += mint(name) + notes(name, *pairs)
    events += notes("ghost.os", ("~net-key", KEY_A), ("~ip", encode_ip("10.6.6.6")))
    events.append(ChainEvent("fact", namehash("m6.os"), b"!ip", encode_ip("10.9.9.9")))
    chain.emit(events)
    want, ix = indexed(chain)
    assert want == expected_records(events)
    assert want["m1.os"].net_key is None and want["m1.os"].ports == {"ws": 9}
    assert want["m2.os"].routers == () and want["m4.os"].routers == ()
    assert "ghost.os" not in want
    await assert_matches_indexer(chain)
    async with live(chain.url, names=names_of(ix)) as lk:
        assert await lk.lookup("ghost.os") is None  # its notes exist, its Mint does not
        m4 = await lk.resolve("m4.os")
        assert m4.router_hashes == (namehash_hex("alice.os"), "0x" + ghost.hex())
        assert m4.unresolved_routers == ("0x" + ghost.hex(),)


async def test_routers_unnamed_without_an_index_then_named_from_the_cache(
    chain: TestChain,
) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    chain.register("bob.os", KEY_B, routers=["alice.os"])
    want, ix = indexed(chain)
    async with RpcProxy(chain.url) as proxy, live(proxy.url) as lk:
        got = await lk.resolve("bob.os")
        assert got.record is not None and got.record.routers == ()
        assert not got.record.is_usable and not got.record.is_direct
        assert got.unresolved_routers == (namehash_hex("alice.os"),)
        lk.names = names_of(ix)
        calls = proxy.stats["requests"]
        again = await lk.resolve("bob.os")
        assert again.cached and again.record == want["bob.os"]
        assert not again.unresolved_routers
        assert proxy.stats["requests"] == calls


async def test_direct_to_indirect_without_a_new_ip_reads_as_direct(chain: TestChain) -> None:
    """The documented divergence: only the order of the notes tells, and eth_call cannot."""
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    chain.register("bob.os", KEY_B, ip="10.0.0.2", ports={"tcp": 9100})
    chain.register("bob.os", KEY_B, routers=["alice.os"])  # writes ~routers only
    want, ix = indexed(chain)
    assert want["bob.os"].routers == ("alice.os",) and not want["bob.os"].is_direct
    async with live(chain.url, names=names_of(ix)) as lk:
        got = await lk.resolve("bob.os")
    assert got.record is not None
    assert got.record.ips == ("10.0.0.2",) and got.record.ports == {"tcp": 9100}
    assert got.record.routers == () and got.router_hashes == ()


async def test_lookups_retry_through_a_flaky_provider(chain: TestChain) -> None:
    register_mixed(chain)
    want, ix = indexed(chain)
    faults = Faults(seed=3, failure_rate=0.3, kinds={"429": 1, "503": 1, "drop": 1, "rate": 1})
    async with (
        RpcProxy(chain.url, faults) as proxy,
        live(proxy.url, names=names_of(ix), cache_size=0) as lk,
    ):
        for _ in range(3):
            for name, rec in want.items():
                assert await lk.lookup(name) == rec
        assert lk.counters()["retries"] > 0


async def test_a_missing_hypermap_is_a_clear_error(chain: TestChain) -> None:
    nowhere = "0x00000000000000000000000000000000000b0b00"
    for multicall in (MULTICALL3_ADDRESS, None):
        async with live(chain.url, contract=nowhere, multicall=multicall) as lk:
            with pytest.raises(MalformedAnswer, match="no contract at that address"):
                await lk.lookup("alice.os")


async def test_websocket_endpoint(chain: TestChain) -> None:
    register_mixed(chain)
    want, ix = indexed(chain)
    async with live(chain.anvil.ws_url, names=names_of(ix)) as lk:
        for name, rec in want.items():
            assert await lk.lookup(name) == rec


async def test_closed_lookup_refuses(chain: TestChain) -> None:
    lk = live(chain.url)
    await lk.aclose()
    await lk.aclose()
    with pytest.raises(SourceError, match="closed"):
        await lk.lookup("alice.os")


# --- notes -> record, pure ------------------------------------------------------------------


def _latest(events: list[ChainEvent], name: str) -> dict[str, bytes]:
    node = namehash(name)
    out: dict[str, bytes] = {}
    for ev in events:
        if ev.kind == "note" and ev.parent == node:
            out[ev.label.decode()] = ev.data
    return out


def test_random_registrations_give_the_indexer_s_record() -> None:
    """Histories of registrations where the live rule and the chain order agree (a node goes
    indirect only before it was ever direct): the record from the latest values equals the
    indexer's from the whole history."""
    rng = random.Random(5)
    for trial in range(200):
        nodes = [f"n{i}.os" for i in range(4)]
        events = registration_events("r.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1})
        minted: set[str] = set()
        was_direct: set[str] = set()
        for _ in range(rng.randrange(1, 12)):
            name = rng.choice(nodes)
            mint = [] if name in minted else [name]
            minted.add(name)
            key = rng.choice([KEY_A, KEY_B, KEY_C])
            if name not in was_direct and rng.random() < 0.4:
                events += registration_events(name, key, routers=["r.os"], mint=mint)
                continue
            ports = {
                p: rng.choice([0, rng.randrange(1, 65536)])
                for p in PORT_NOTES
                if rng.random() < 0.6
            }
            ip = rng.choice([f"10.0.0.{rng.randrange(256)}", "::1", "2001:db8::5"])
            events += registration_events(name, key, ip=ip, ports=ports, mint=mint)
            was_direct.add(name)
        want = expected_records(events)
        named = {namehash_hex("r.os"): "r.os"}.get
        for name in minted:
            got = record_from_notes(name, _latest(events, name), names=named)
            assert got == want[name], (trial, name)


def test_routing_rules_when_both_notes_are_set() -> None:
    ip, tcp = encode_ip("10.0.0.1"), encode_port(9000)
    routers = encode_routers(["r.os"])
    named = {namehash_hex("r.os"): "r.os"}.get
    both = read_notes("a.os", {"~ip": ip, "~tcp-port": tcp, "~routers": routers}, names=named)
    assert both.record is not None
    assert both.record.ips == ("10.0.0.1",) and both.record.routers == ()
    assert both.record.ports == {"tcp": 9000} and both.router_hashes == ()
    # A malformed ip does not make it direct: the routers decide (ports cleared).
    bad_ip = read_notes(
        "a.os", {"~ip": b"\x01", "~tcp-port": tcp, "~routers": routers}, names=named
    )
    assert bad_ip.record is not None
    assert bad_ip.record.routers == ("r.os",) and bad_ip.record.ports == {}
    # Neither: the ports as noted, no ip, no routers.
    ports_only = record_from_notes("a.os", {"~tcp-port": tcp, "~routers": b""})
    assert ports_only == NodeRecord("a.os", namehash_hex("a.os"), ports={"tcp": 9000})


def test_router_names_are_checked_against_their_hash() -> None:
    notes = {NOTE_NET_KEY: KEY_A, NOTE_ROUTERS: encode_routers(["r.os", "s.os"])}
    good = {namehash_hex("r.os"): "r.os", namehash_hex("s.os"): "s.os"}
    assert record_from_notes("a.os", notes, names=good.get).routers == ("r.os", "s.os")
    lying = {namehash_hex("r.os"): "r.os", namehash_hex("s.os"): "t.os"}
    got = read_notes("a.os", notes, names=lying.get)
    assert got.record is not None and got.record.routers == ()  # all or nothing
    assert got.unresolved_routers == (namehash_hex("s.os"),)
    invalid = {namehash_hex("r.os"): "R.os"}
    assert read_notes("a.os", notes, names=invalid.get).unresolved_routers == (
        namehash_hex("r.os"),
        namehash_hex("s.os"),
    )
    unnamed = read_notes("a.os", notes)
    assert unnamed.record is not None and unnamed.record.net_key == KEY_A.hex()
    assert len(unnamed.unresolved_routers) == 2 and not unnamed.usable


def test_value_lengths_follow_the_indexer() -> None:
    rec = record_from_notes(
        "a.os",
        {
            NOTE_NET_KEY: KEY_A[:31],
            NOTE_IP: bytes(16),
            "~tcp-port": b"\x00\x01\x02",
            "~ws-port": encode_port(0),
            NOTE_QUIC_PORT: encode_port(443),
            "~unknown": b"ignored",
        },
    )
    assert rec.net_key is None and rec.ips == ("::",) and rec.ports == {"quic": 443}
    ref = record_from_notes("a.os", {NOTE_QUIC_PORT: encode_port(443)}, extensions=False)
    assert ref.ports == {}
    mapped = record_from_notes("a.os", {NOTE_IP: encode_ip("::ffff:1.2.3.4")})
    assert mapped.ips == ("::ffff:1.2.3.4",)
    assert record_from_notes("a.os", {NOTE_NET_KEY: encode_net_key(KEY_B)}).net_key == KEY_B.hex()
    with pytest.raises(TypeError):
        record_from_notes("a.os", {NOTE_IP: "10.0.0.1"})  # type: ignore[dict-item]


# --- ABI -------------------------------------------------------------------------------------


def test_abi_coding() -> None:
    assert AGGREGATE_SELECTOR.hex() == "252dba42"  # Multicall3's aggregate((address,bytes)[])
    h = namehash("alice.os")
    assert encode_get(h) == GET_SELECTOR + h
    with pytest.raises(ValueError):
        encode_get(h[:31])
    tba, owner = "0x" + "11" * 20, "0x" + "22" * 20
    entry = decode_get(abi_encode(["address", "address", "bytes"], [tba, owner, b"\x01\x02"]))
    assert (entry.tba, entry.owner, entry.data, entry.minted) == (tba, owner, b"\x01\x02", True)
    note = decode_get(abi_encode(["address", "address", "bytes"], ["0x" + "00" * 20] * 2 + [b""]))
    assert not note.minted and note.data == b""
    with pytest.raises(MalformedAnswer, match="no contract"):
        decode_get(b"")
    with pytest.raises(MalformedAnswer):
        decode_get(bytes(95))
    bad_offset = bytearray(abi_encode(["address", "address", "bytes"], [tba, owner, b"x"]))
    bad_offset[64:96] = (2**200).to_bytes(32, "big")
    with pytest.raises(MalformedAnswer, match="undecodable"):
        decode_get(bytes(bad_offset))
    calls = [(MULTICALL3_ADDRESS, b"\x01"), ("0x" + "ab" * 20, b"")]
    data = encode_aggregate(calls)
    assert data[:4] == AGGREGATE_SELECTOR
    with pytest.raises(ValueError):
        encode_aggregate([("0x1234", b"")])
    answer = abi_encode(["uint256", "bytes[]"], [7, [b"a", b"bc"]])
    assert decode_aggregate(answer, 2) == (7, (b"a", b"bc"))
    with pytest.raises(MalformedAnswer, match="1 results for 2 calls"):
        decode_aggregate(abi_encode(["uint256", "bytes[]"], [7, [b"a"]]), 2)
    huge = bytearray(answer)
    huge[64:96] = (2**64).to_bytes(32, "big")  # an array length far beyond the data
    with pytest.raises(MalformedAnswer):
        decode_aggregate(bytes(huge), 2)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="contract"):
        LiveLookup("http://127.0.0.1:1", contract="0x1234")
    with pytest.raises(ValueError, match="multicall"):
        LiveLookup("http://127.0.0.1:1", multicall="nope")
    with pytest.raises(ValueError):
        LiveLookup("http://127.0.0.1:1", cache_ttl=-1)


# --- a scripted endpoint: answers no honest node gives ---------------------------------------


class Scripted:
    """Replaces the endpoint: answers ``eth_chainId`` with Base and ``eth_call`` from a script."""

    def __init__(self, lk: LiveLookup, answers: list[object]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        lk._rpc.call = self.call  # type: ignore[method-assign]

    async def call(self, method: str, params: list[object]) -> object:
        self.calls.append(method)
        if method == "eth_chainId":
            return hex(8453)
        return self.answers.pop(0)


def _get_answer(minted: bool, data: bytes = b"") -> bytes:
    who = "0x" + ("11" if minted else "00") * 20
    return abi_encode(["address", "address", "bytes"], [who, who, data])


async def test_garbage_answers_are_malformed_errors_never_crashes() -> None:
    seven = [_get_answer(True)] + [_get_answer(False)] * 6
    good = "0x" + abi_encode(["uint256", "bytes[]"], [1, seven]).hex()
    short = "0x" + abi_encode(["uint256", "bytes[]"], [1, seven[:3]]).hex()
    for answer, match in (
        ("0x123", "not 0x-prefixed even-length hex"),
        (None, "not a string"),
        ({"x": 1}, "not a string"),
        ("0x" + "00" * 40, r"aggregate\(\) answered 40 bytes"),
        (short, "3 results for 7 calls"),
        ("0x" + "ff" * 200, "undecodable"),
    ):
        lk = LiveLookup("http://127.0.0.1:1", cache_size=0)
        Scripted(lk, [answer])
        with pytest.raises(MalformedAnswer, match=match):
            await lk.lookup("alice.os")
        await lk.aclose()
    lk = LiveLookup("http://127.0.0.1:1", cache_size=0)
    script = Scripted(lk, [good])
    rec = await lk.lookup("alice.os")
    assert rec == NodeRecord("alice.os", namehash_hex("alice.os"))
    assert script.calls == ["eth_chainId", "eth_call"]
    await lk.aclose()


async def test_bad_chain_id_answer() -> None:
    lk = LiveLookup("http://127.0.0.1:1")

    async def call(method: str, params: list[object]) -> object:
        return "8453"

    lk._rpc.call = call  # type: ignore[method-assign]
    with pytest.raises(MalformedAnswer, match="chain id"):
        await lk.lookup("alice.os")
    await lk.aclose()


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    lk = LiveLookup("http://127.0.0.1:1", cache_size=2, multicall=None)
    script = Scripted(lk, ["0x" + _get_answer(False).hex()] * 1000)
    for name in ("a.os", "b.os", "a.os", "c.os"):  # c evicts b (a was used after b)
        await lk.lookup(name)
    reads = lk.counters()["reads"]
    await lk.lookup("a.os")
    await lk.lookup("c.os")
    assert lk.counters()["reads"] == reads
    await lk.lookup("b.os")
    assert lk.counters()["reads"] == reads + 1
    assert script.calls.count("eth_chainId") == 1
    await lk.aclose()


async def test_errors_are_not_cached_and_reach_every_waiter() -> None:
    lk = LiveLookup("http://127.0.0.1:1", multicall=None)
    gate = asyncio.Event()
    calls = 0

    async def call(method: str, params: list[object]) -> object:
        nonlocal calls
        if method == "eth_chainId":
            return hex(8453)
        calls += 1
        n = calls
        await gate.wait()
        if n <= 7:
            raise SourceError("endpoint down")
        return "0x" + _get_answer(n == 8).hex()  # the 8th call is the name's get()

    lk._rpc.call = call  # type: ignore[method-assign]
    waiters = [asyncio.ensure_future(lk.lookup("alice.os")) for _ in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, SourceError) for r in results)
    assert calls <= 7  # one shared read; its first failure cancelled the rest
    calls = 7
    rec = await lk.lookup("alice.os")  # not cached: read again
    assert rec is not None and rec.net_key is None
    await lk.aclose()
