from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hns.events import (
    FACT_TOPIC,
    HYPERMAP_ADDRESS,
    NOTE_TOPIC,
    LogMeta,
    abi_encode_bytes,
    mint_log,
    note_log,
    to_data,
)
from hns.indexer import Indexer
from hns.keccak import keccak256
from hns.names import ROOT_HASH, labelhash, namehash, split_name
from hns.records import encode_ip, encode_port, encode_routers

KEY_A = b"\xaa" * 32
KEY_B = b"\xbb" * 32


class Chain:
    """Builds logs as Hypermap would emit them, one block per log."""

    def __init__(self, start: int = 27_270_412) -> None:
        self.block = start - 1

    def meta(self) -> LogMeta:
        self.block += 1
        b = self.block.to_bytes(8, "big")
        return LogMeta(self.block, keccak256(b"block" + b), keccak256(b"tx" + b))

    def mint(self, name: str) -> dict:
        label, parent = split_name(name)
        parent_hash = ROOT_HASH if parent is None else namehash(parent)
        return mint_log(parent_hash, label, self.meta())

    def note(self, name: str, label: str, data: bytes) -> dict:
        return note_log(namehash(name), label, data, self.meta())

    def key(self, name: str, key: bytes = KEY_A) -> dict:
        return self.note(name, "~net-key", key)

    def ip(self, name: str, ip: str = "1.2.3.4") -> dict:
        return self.note(name, "~ip", encode_ip(ip))

    def port(self, name: str, proto: str, port: int) -> dict:
        return self.note(name, f"~{proto}-port", encode_port(port))

    def routers(self, name: str, routers: list[str]) -> dict:
        return self.note(name, "~routers", encode_routers(routers))


def fed(*logs: dict, **kw: object) -> Indexer:
    ix = Indexer(**kw)  # type: ignore[arg-type]
    for log in logs:
        ix.feed(log)
    return ix


@pytest.fixture
def chain() -> Chain:
    return Chain()


def direct(c: Chain, name: str = "alice.os") -> list[dict]:
    return [c.key(name), c.ip(name), c.port(name, "tcp", 9000), c.port(name, "ws", 9001)]


def test_mint_names_and_direct_record(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    rec = ix.get("alice.os")
    assert rec is not None
    assert rec.namehash == "0x" + namehash("alice.os").hex()
    assert rec.net_key == KEY_A.hex()
    assert rec.ips == ("1.2.3.4",)
    assert rec.ports == {"tcp": 9000, "ws": 9001}
    assert rec.routers == ()
    assert rec.is_direct and rec.is_usable
    assert ix.get("os") is not None and not ix.get("os").is_usable  # type: ignore[union-attr]
    assert ix.is_minted("alice.os") and not ix.is_minted("bob.os")
    assert ix.name_of(namehash("alice.os")) == "alice.os"
    assert set(ix.records()) == {"os", "alice.os"}
    assert ix.last_block == chain.block
    assert ix.skipped == {}
    assert ix.pending == 0


def test_mint_with_unknown_parent_gives_bare_label(chain):
    ix = fed(chain.mint("alice.os"))
    assert ix.get("alice") is not None
    assert ix.get("alice.os") is None
    assert not ix.is_minted("alice.os")


def test_feed_returns_changed_records(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"))
    assert [r.name for r in ix.feed(chain.key("alice.os"))] == ["alice.os"]
    assert ix.feed(chain.ip("alice.os"))[0].ips == ("1.2.3.4",)
    (rec,) = ix.feed(chain.port("alice.os", "tcp", 1))
    assert rec.is_usable
    assert ix.feed({"garbage": True}) == []


def test_direct_to_indirect_clears_ip_and_ports(chain):
    ix = fed(chain.mint("os"), chain.mint("bob.os"), chain.mint("alice.os"), *direct(chain))
    ix.feed(chain.routers("alice.os", ["bob.os"]))
    rec = ix.get("alice.os")
    assert rec is not None
    assert rec.ips == () and rec.ports == {}
    assert rec.routers == ("bob.os",)
    assert not rec.is_direct and rec.is_usable
    assert rec.net_key == KEY_A.hex()


def test_indirect_to_direct_clears_routers(chain):
    ix = fed(
        chain.mint("os"),
        chain.mint("bob.os"),
        chain.mint("alice.os"),
        chain.key("alice.os"),
        chain.routers("alice.os", ["bob.os"]),
    )
    assert ix.get("alice.os").routers == ("bob.os",)  # type: ignore[union-attr]
    ix.feed(chain.ip("alice.os", "2001:db8::7"))
    rec = ix.get("alice.os")
    assert rec.routers == () and rec.ips == ("2001:db8::7",)  # type: ignore[union-attr]
    assert not rec.is_usable  # type: ignore[union-attr]  # no port yet
    ix.feed(chain.port("alice.os", "ws", 8080))
    assert ix.get("alice.os").is_usable  # type: ignore[union-attr]


def test_port_note_alone_clears_routers(chain):
    ix = fed(
        chain.mint("os"),
        chain.mint("bob.os"),
        chain.mint("alice.os"),
        chain.routers("alice.os", ["bob.os"]),
        chain.port("alice.os", "tcp", 9000),
    )
    rec = ix.get("alice.os")
    assert rec.routers == () and rec.ports == {"tcp": 9000}  # type: ignore[union-attr]


def test_wrong_length_values_keep_old(chain):
    ix = fed(chain.mint("os"), chain.mint("bob.os"), chain.mint("alice.os"), *direct(chain))
    before = ix.get("alice.os")
    ix.feed(chain.note("alice.os", "~net-key", KEY_B[:31]))
    ix.feed(chain.note("alice.os", "~ip", b"\x01\x02\x03"))
    ix.feed(chain.note("alice.os", "~tcp-port", b"\x01"))
    assert ix.get("alice.os") == before
    assert ix.skipped == {"bad_net_key": 1, "bad_ip": 1, "bad_port": 1}
    # a rejected ip/port note does not clear routers either
    ix.feed(chain.routers("alice.os", ["bob.os"]))
    ix.feed(chain.note("alice.os", "~ip", b""))
    ix.feed(chain.note("alice.os", "~ws-port", b"\x00\x00\x00"))
    assert ix.get("alice.os").routers == ("bob.os",)  # type: ignore[union-attr]
    # a valid new key replaces the old one
    ix.feed(chain.key("alice.os", KEY_B))
    assert ix.get("alice.os").net_key == KEY_B.hex()  # type: ignore[union-attr]


def test_routers_not_multiple_of_32_means_no_routers(chain):
    ix = fed(chain.mint("os"), chain.mint("bob.os"), chain.mint("alice.os"), *direct(chain))
    ix.feed(chain.note("alice.os", "~routers", namehash("bob.os") + b"\x00"))
    rec = ix.get("alice.os")
    assert rec.routers == () and rec.ips == () and rec.ports == {}  # type: ignore[union-attr]
    assert not rec.is_usable  # type: ignore[union-attr]
    assert ix.skipped == {"bad_routers": 1}


def test_empty_routers_note(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    ix.feed(chain.note("alice.os", "~routers", b""))
    rec = ix.get("alice.os")
    assert rec.routers == () and rec.ips == () and not rec.is_usable  # type: ignore[union-attr]


def test_port_zero_withdraws(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    ix.feed(chain.port("alice.os", "ws", 0))
    rec = ix.get("alice.os")
    assert rec.ports == {"tcp": 9000} and rec.port("ws") is None  # type: ignore[union-attr]
    ix.feed(chain.port("alice.os", "tcp", 0))
    assert not ix.get("alice.os").is_usable  # type: ignore[union-attr]


def test_quic_port_extension(chain):
    logs = [
        chain.mint("os"),
        chain.mint("alice.os"),
        chain.key("alice.os"),
        chain.ip("alice.os"),
        chain.port("alice.os", "quic", 9443),
    ]
    ours = fed(*logs)
    assert ours.get("alice.os").port("quic") == 9443  # type: ignore[union-attr]
    assert ours.get("alice.os").is_usable  # type: ignore[union-attr]
    reference_style = fed(*logs, extensions=False)
    assert reference_style.get("alice.os").ports == {}  # type: ignore[union-attr]
    assert reference_style.skipped == {"unknown_note": 1}


def test_note_before_its_mint_is_applied_after_the_mint(chain):
    early = [*direct(chain), chain.routers("alice.os", []), *direct(chain)[1:]]
    ix = fed(chain.mint("os"), *early)
    assert ix.get("alice.os") is None
    assert ix.pending == len(early)
    updates = ix.feed(chain.mint("alice.os"))
    assert [r.name for r in updates] == ["alice.os"]
    rec = ix.get("alice.os")
    assert rec.is_usable and rec.ports == {"tcp": 9000, "ws": 9001}  # type: ignore[union-attr]
    assert ix.pending == 0


def test_router_named_before_minted_is_resolved_later(chain):
    ix = fed(
        chain.mint("os"),
        chain.mint("alice.os"),
        chain.key("alice.os"),
        chain.ip("alice.os"),
        chain.port("alice.os", "tcp", 1),
        chain.routers("alice.os", ["bob.os", "carol.os"]),
    )
    rec = ix.get("alice.os")
    # the routers note took effect (indirect), its list is not known yet
    assert rec.ips == () and rec.routers == () and not rec.is_usable  # type: ignore[union-attr]
    assert ix.pending == 1
    assert ix.feed(chain.mint("bob.os"))[0].name == "bob.os"  # carol still missing
    assert ix.get("alice.os").routers == ()  # type: ignore[union-attr]
    names = [r.name for r in ix.feed(chain.mint("carol.os"))]
    assert names == ["carol.os", "alice.os"]
    assert ix.get("alice.os").routers == ("bob.os", "carol.os")  # type: ignore[union-attr]
    assert ix.get("alice.os").is_usable  # type: ignore[union-attr]
    assert ix.pending == 0


def test_pending_routers_superseded_by_later_note(chain):
    ix = fed(
        chain.mint("os"),
        chain.mint("alice.os"),
        chain.key("alice.os"),
        chain.routers("alice.os", ["bob.os"]),
        chain.ip("alice.os"),
        chain.port("alice.os", "tcp", 1),
    )
    assert ix.pending == 0
    ix.feed(chain.mint("bob.os"))
    rec = ix.get("alice.os")
    assert rec.is_direct and rec.routers == () and rec.is_usable  # type: ignore[union-attr]
    # a later routers note replaces a pending one
    ix.feed(chain.routers("alice.os", ["zed.os"]))
    ix.feed(chain.routers("alice.os", ["bob.os"]))
    assert ix.get("alice.os").routers == ("bob.os",)  # type: ignore[union-attr]
    assert ix.pending == 0
    ix.feed(chain.mint("zed.os"))
    assert ix.get("alice.os").routers == ("bob.os",)  # type: ignore[union-attr]


def test_unknown_and_invalid_notes_ignored(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    before = ix.get("alice.os")
    ix.feed(chain.note("alice.os", "~hello", b"world"))
    ix.feed(chain.note("alice.os", "~hello", b"x" * 100_000))  # too big, but never decoded
    assert ix.get("alice.os") == before
    assert ix.skipped == {"unknown_note": 2}


def test_mint_resets_record(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    ix.feed(chain.mint("alice.os"))
    rec = ix.get("alice.os")
    assert rec.net_key is None and rec.ips == () and rec.ports == {}  # type: ignore[union-attr]


def good_log(chain: Chain) -> dict:
    return chain.ip("alice.os")


def garbage_logs(chain: Chain) -> list[tuple[object, str]]:
    out: list[tuple[object, str]] = [
        ("not a dict", "not_an_object"),
        ([], "not_an_object"),
        ({}, "wrong_address"),
        ({"address": HYPERMAP_ADDRESS}, "bad_topics"),
    ]

    def mutated(reason: str, **changes: object) -> None:
        log = good_log(chain)
        log.update(changes)
        out.append((log, reason))

    topics = good_log(chain)["topics"]
    assert isinstance(topics, list)
    mutated("wrong_address", address="0x" + "11" * 20)
    mutated("wrong_address", address=None)
    mutated("removed", removed=True)
    mutated("bad_removed", removed="no")
    mutated("bad_block_number", blockNumber="12")
    mutated("bad_topics", topics=topics[:3])
    mutated("bad_topics", topics=[*topics, topics[0]])
    mutated("bad_topic", topics=[topics[0], "0x00", *topics[2:]])
    mutated("unknown_event", topics=["0x" + "ee" * 32, *topics[1:]])
    mutated("fact", topics=["0x" + FACT_TOPIC.hex(), *topics[1:]])
    mutated("bad_data", data="0x123")
    mutated("bad_data", data=12)
    mutated("bad_abi", data="0x" + "ff" * 64)
    mutated("invalid_label", data=to_data(abi_encode_bytes(b"~IP", b"\x01\x02\x03\x04")))
    mutated("labelhash_mismatch", data=to_data(abi_encode_bytes(b"~ws-port", b"\x01\x02")))
    bad_mint = chain.mint("Bad.os")
    out.append((bad_mint, "invalid_label"))
    bad_mint2 = chain.mint("x.os")
    bad_mint2["topics"] = [*bad_mint2["topics"][:3], "0x" + labelhash("y").hex()]  # type: ignore[index]
    out.append((bad_mint2, "labelhash_mismatch"))
    not_utf8 = chain.mint("x.os")
    not_utf8["data"] = to_data(abi_encode_bytes(b"\xff\xfe"))
    out.append((not_utf8, "invalid_label"))
    return out


def test_garbage_logs_are_skipped_and_counted(chain):
    ix = fed(chain.mint("os"), chain.mint("alice.os"), *direct(chain))
    before = ix.records()
    last = ix.last_block
    for log, reason in garbage_logs(chain):
        counts = dict(ix.skipped)
        assert ix.feed(log) == []  # type: ignore[arg-type]
        counts[reason] = counts.get(reason, 0) + 1
        assert ix.skipped == counts, reason
    assert ix.records() == before
    assert ix.pending == 0
    # the good log still works afterwards; Fact/unknown blocks don't count as applied
    ix.feed(good_log(chain))
    assert ix.last_block is not None and ix.last_block > (last or 0)


def test_contract_none_reads_any_address(chain):
    log = chain.mint("os")
    log["address"] = "0x" + "12" * 20
    assert fed(log).get("os") is None
    assert fed(log, contract=None).get("os") is not None


def test_pending_is_bounded(chain):
    ix = fed(chain.mint("os"), max_pending=2)
    for name in ("a.os", "b.os", "c.os"):
        ix.feed(chain.key(name))
    assert ix.pending == 2
    assert ix.skipped == {"pending_full": 1}
    ix.feed(chain.mint("a.os"))
    assert ix.pending == 1
    assert ix.get("a.os").net_key == KEY_A.hex()  # type: ignore[union-attr]


def test_feed_all(chain):
    ix = Indexer()
    recs = ix.feed_all([chain.mint("os"), chain.mint("alice.os"), *direct(chain)])
    assert [r.name for r in recs] == ["os", "alice.os"]
    assert recs[1].is_usable


# --- properties -----------------------------------------------------------------------------

NAMES = ["a.os", "b.os", "c.os"]
ROUTER_CHOICES = [*NAMES, "never.os"]

note_strategy = st.one_of(
    st.tuples(st.just("~net-key"), st.sampled_from(NAMES), st.binary(min_size=31, max_size=33)),
    st.tuples(
        st.just("~ip"),
        st.sampled_from(NAMES),
        st.sampled_from([b"\x01\x02\x03\x04", bytes(15) + b"\x01", b"\x01\x02\x03", b""]),
    ),
    st.tuples(
        st.sampled_from(["~tcp-port", "~ws-port", "~quic-port"]),
        st.sampled_from(NAMES),
        st.sampled_from([b"\x23\x28", b"\x00\x01", b"\x00\x00", b"\x01", b""]),
    ),
    st.tuples(
        st.just("~routers"),
        st.sampled_from(NAMES),
        st.one_of(
            st.lists(st.sampled_from(ROUTER_CHOICES), max_size=3).map(encode_routers),
            st.lists(st.sampled_from(ROUTER_CHOICES), min_size=1, max_size=3).map(encode_routers),
            st.binary(max_size=70),
        ),
    ),
    st.tuples(st.just("~other"), st.sampled_from(NAMES), st.binary(max_size=8)),
)

op_strategy = st.one_of(st.tuples(st.just("mint"), st.sampled_from(NAMES)), note_strategy)


def model(ops: list[tuple]) -> dict[str, dict]:
    """Every note applied in chain order to its (single) Mint's record, names as at the end."""
    minted = {op[1] for op in ops if op[0] == "mint"}
    by_hash = {namehash(n): n for n in minted}
    recs = {n: {"key": None, "ips": (), "ports": {}, "routers": ()} for n in minted}
    for op in ops:
        label, name = op[0], op[1]
        if label == "mint" or name not in minted:
            continue
        data: bytes = op[2]
        r = recs[name]
        if label == "~net-key" and len(data) == 32:
            r["key"] = data.hex()
        elif label == "~ip" and len(data) in (4, 16):
            r["ips"], r["routers"] = (data,), ()
        elif label.endswith("-port") and len(data) == 2:
            proto = label[1:-5]
            port = int.from_bytes(data, "big")
            if port:
                r["ports"][proto] = port
            else:
                r["ports"].pop(proto, None)
            r["routers"] = ()
        elif label == "~routers":
            r["ips"], r["ports"], r["routers"] = (), {}, ()
            if len(data) % 32 == 0:
                hashes = [data[i : i + 32] for i in range(0, len(data), 32)]
                if all(h in by_hash for h in hashes):
                    r["routers"] = tuple(by_hash[h] for h in hashes)
    return recs


@settings(max_examples=500, deadline=None)
@given(st.lists(op_strategy, max_size=50))
def test_property_valid_notes_never_crash_and_match_chain_order_model(ops):
    chain = Chain()
    ix = Indexer()
    ix.feed(chain.mint("os"))
    minted: set[str] = set()
    applied: list[tuple] = []
    for op in ops:
        if op[0] == "mint":
            if op[1] in minted:
                continue  # Hypermap mints a name once
            minted.add(op[1])
            updates = ix.feed(chain.mint(op[1]))
        else:
            updates = ix.feed(chain.note(op[1], op[0], op[2]))
        applied.append(op)
        for rec in updates:
            assert ix.get(rec.name) == rec
        for rec in ix.records().values():
            assert not (rec.routers and (rec.ips or rec.ports))
            assert rec.net_key is None or len(bytes.fromhex(rec.net_key)) == 32
            assert all(p > 0 for p in rec.ports.values())
            assert len(rec.ips) <= 1
    expected = model(applied)
    for name, want in expected.items():
        rec = ix.get(name)
        assert rec is not None
        assert rec.net_key == want["key"]
        assert rec.ips == tuple(encode_ip_text(ip) for ip in want["ips"])
        assert rec.ports == want["ports"]
        assert rec.routers == want["routers"]
    for name in NAMES:
        if name not in expected:
            assert ix.get(name) is None


def encode_ip_text(raw: bytes) -> str:
    from hns.records import decode_ip

    text = decode_ip(raw)
    assert text is not None
    return text


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
hexish = st.one_of(
    st.binary(max_size=200).map(lambda b: "0x" + b.hex()),
    st.sampled_from(["0x", "0x0", "", "0xzz"]),
    json_value,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "address": st.sampled_from([HYPERMAP_ADDRESS, "0x00", None, 3]),
            "topics": st.one_of(
                st.lists(
                    st.one_of(
                        st.sampled_from(
                            [
                                "0x" + NOTE_TOPIC.hex(),
                                "0x" + labelhash("~ip").hex(),
                                "0x" + "00" * 32,
                            ]
                        ),
                        hexish,
                    ),
                    max_size=5,
                ),
                json_value,
            ),
            "data": hexish,
            "blockNumber": hexish,
            "logIndex": hexish,
            "removed": st.one_of(st.booleans(), json_value),
        },
    )
)
def test_property_junk_logs_never_crash(log):
    ix = Indexer()
    ix.feed(Chain().mint("os"))
    ix.feed(log)
    ix.feed(log)
