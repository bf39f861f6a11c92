from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from hns.cacher import log_cache_filename, ordered_logs, read_log_cache
from hns.events import (
    HYPERMAP_ADDRESS,
    HYPERMAP_FIRST_BLOCK,
    MINT_TOPIC,
    NOTE_TOPIC,
    decode_mint,
    decode_note,
)
from hns.indexer import Indexer
from hns.names import ROOT_HASH, namehash
from hns.registry import Registry, RegistryError

KEY = bytes(range(32))
KEY2 = bytes(range(1, 33))


def clock() -> float:
    return 1_700_000_000.0


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry", clock=clock)


def all_logs(reg: Registry) -> list[dict]:
    return ordered_logs(read_log_cache(p) for p in reg.files())


def test_register_direct_round_trip(reg):
    rec = reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "ws": 9001, "quic": 9002})
    assert rec.name == "alice.os"
    assert rec.namehash == "0x" + namehash("alice.os").hex()
    assert rec.net_key == KEY.hex()
    assert rec.ips == ("1.2.3.4",)
    assert rec.ports == {"tcp": 9000, "ws": 9001, "quic": 9002}
    assert rec.is_usable and rec.is_direct
    assert reg.lookup("alice.os") == rec
    assert reg.resolve("alice.os") == rec
    assert reg.lookup("bob.os") is None
    assert reg.load().get("alice.os") == rec


def test_registry_logs_are_what_the_chain_emits(reg):
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000})
    logs = all_logs(reg)
    assert [log["topics"][0] for log in logs] == ["0x" + MINT_TOPIC.hex()] * 2 + [
        "0x" + NOTE_TOPIC.hex()
    ] * 3
    os_mint, alice_mint = decode_mint(logs[0]), decode_mint(logs[1])
    assert (os_mint.parenthash, os_mint.label, os_mint.childhash) == (
        ROOT_HASH,
        b"os",
        namehash("os"),
    )
    assert (alice_mint.parenthash, alice_mint.label) == (namehash("os"), b"alice")
    notes = [decode_note(log) for log in logs[2:]]
    assert [n.label for n in notes] == [b"~net-key", b"~ip", b"~tcp-port"]
    assert [n.data for n in notes] == [KEY, bytes([1, 2, 3, 4]), (9000).to_bytes(2, "big")]
    assert all(n.parenthash == namehash("alice.os") for n in notes)
    assert notes[0].notehash == namehash("~net-key.alice.os")
    block = HYPERMAP_FIRST_BLOCK + 1
    for i, log in enumerate(logs):
        assert log["address"] == HYPERMAP_ADDRESS
        assert log["blockNumber"] == hex(block)
        assert log["logIndex"] == hex(i)
        assert log["transactionIndex"] == "0x0"
        assert log["removed"] is False
        assert len(log["blockHash"]) == len(log["transactionHash"]) == 66
    # one tx per registration
    assert len({log["transactionHash"] for log in logs}) == 1


def test_files_are_cacher_format_and_replay_identically(reg):
    reg.register("bob.os", KEY2, "5.6.7.8", {"tcp": 1})
    reg.register("alice.os", KEY, routers=["bob.os"])
    reg.register("carol.dev", KEY, "2001:db8::1", {"ws": 443})
    files = reg.files()
    assert len(files) == 3
    blocks = []
    for p in files:
        obj = json.loads(p.read_bytes())
        md = obj["metadata"]
        assert list(md) == [
            "chainId",
            "fromBlock",
            "toBlock",
            "timeCreated",
            "createdBy",
            "signature",
        ]
        assert md["chainId"] == "8453"
        assert md["timeCreated"] == "20231114T221320Z"
        assert md["fromBlock"] == md["toBlock"]
        assert md["createdBy"].endswith("@hns-registry:hnet:sys")
        cache = read_log_cache(p)
        assert p.name == log_cache_filename(cache.metadata)
        blocks.append(int(md["fromBlock"]))
    assert sorted(blocks) == [HYPERMAP_FIRST_BLOCK + i for i in (1, 2, 3)]
    fresh = Indexer()
    fresh.feed_all(all_logs(reg))
    assert fresh.records() == reg.load().records()
    assert fresh.skipped == {}
    alice = fresh.get("alice.os")
    assert alice is not None and alice.routers == ("bob.os",) and alice.is_usable


def test_reregister_writes_only_notes_and_switches_kind(reg):
    reg.register("bob.os", KEY2, "5.6.7.8", {"tcp": 1})
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "ws": 9001})
    before = len(all_logs(reg))
    rec = reg.register("alice.os", KEY2, routers=["bob.os"])
    new_logs = all_logs(reg)[before:]
    assert all(log["topics"][0] == "0x" + NOTE_TOPIC.hex() for log in new_logs)
    assert [decode_note(log).label for log in new_logs] == [b"~net-key", b"~routers"]
    assert rec.net_key == KEY2.hex() and rec.routers == ("bob.os",)
    assert rec.ips == () and rec.ports == {}
    rec = reg.register("alice.os", KEY2, "9.9.9.9", {"quic": 7})
    assert rec.routers == () and rec.ips == ("9.9.9.9",) and rec.ports == {"quic": 7}


def test_reregister_withdraws_ports_no_longer_offered(reg):
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "ws": 9001})
    rec = reg.register("alice.os", KEY, "1.2.3.5", {"ws": 9002})
    assert rec.ports == {"ws": 9002} and rec.ips == ("1.2.3.5",)
    last = [decode_note(log) for log in all_logs(reg)[-4:]]
    assert [(n.label, n.data) for n in last] == [
        (b"~net-key", KEY),
        (b"~ip", bytes([1, 2, 3, 5])),
        (b"~ws-port", (9002).to_bytes(2, "big")),
        (b"~tcp-port", b"\x00\x00"),
    ]


def test_port_zero_means_not_offered(reg):
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "ws": 9001})
    rec = reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "ws": 0})
    assert rec.ports == {"tcp": 9000}
    last = [decode_note(log) for log in all_logs(reg)[-2:]]
    assert [(n.label, n.data) for n in last] == [
        (b"~tcp-port", (9000).to_bytes(2, "big")),
        (b"~ws-port", b"\x00\x00"),
    ]


def test_deeper_names_mint_every_missing_ancestor(reg):
    reg.register("a.b.os", KEY, "1.2.3.4", {"tcp": 1})
    reg.register("c.b.os", KEY, "1.2.3.4", {"tcp": 1})
    mints = [
        decode_mint(log).label
        for log in all_logs(reg)
        if log["topics"][0] == "0x" + MINT_TOPIC.hex()
    ]
    assert mints == [b"os", b"b", b"a", b"c"]
    assert reg.lookup("b.os") is not None and not reg.lookup("b.os").is_usable


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Alice.os"}, "invalid name"),
        ({"name": "alice..os"}, "invalid name"),
        ({"net_key": b"\x00" * 31}, "32 bytes"),
        ({"net_key": "00" * 32}, "32 bytes"),
        ({"ip": "1.2.3.999"}, "invalid IP"),
        ({"ip": "fe80::1%eth0"}, "scope id"),
        ({"ports": {"tcp": 0}}, "at least one port"),
        ({"ports": {"tcp": -1}}, "not in 0..65535"),
        ({"ports": {"tcp": 70000}}, "not in 0..65535"),
        ({"ports": {"tcp": True}}, "not in 0..65535"),
        ({"ports": {"udp": 1}}, "unknown protocol 'udp'"),
        ({"ports": {}}, "at least one port"),
        ({"routers": ["bob.os"]}, "not both"),
        ({"ip": None, "ports": {}}, "or routers"),
        ({"ip": None, "ports": {}, "routers": ["nobody.os"]}, "router nobody.os: not in HNS"),
        ({"ip": None, "ports": {}, "routers": ["Bob.os"]}, "invalid router name"),
        ({"ip": None, "ports": {}, "routers": ["alice.os"]}, "its own router"),
        ({"ip": None, "ports": {}, "routers": ["bob.os", "bob.os"]}, "twice"),
        ({"ip": None, "ports": {"tcp": 1}, "routers": ["bob.os"]}, "only for a direct node"),
    ],
)
def test_register_validation(reg, kwargs, message):
    reg.register("bob.os", KEY2, "5.6.7.8", {"tcp": 1})
    args = {
        "name": "alice.os",
        "net_key": KEY,
        "ip": "1.2.3.4",
        "ports": {"tcp": 1},
        "routers": None,
    }
    args.update(kwargs)
    files = reg.files()
    with pytest.raises(RegistryError, match=message) as e:
        reg.register(**args)
    assert "\n" not in str(e.value)
    assert reg.files() == files  # nothing written


def test_resolve_message(reg):
    with pytest.raises(RegistryError) as e:
        reg.resolve("alice.os")
    assert str(e.value) == f"alice.os: not in HNS (registry {reg.path})"
    assert reg.load().records() == {}  # a missing directory is an empty registry


def test_corrupt_or_foreign_files_are_reported(reg):
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 1})
    bad = reg.path / "junk.json"
    bad.write_text("{")
    with pytest.raises(RegistryError, match=r"junk\.json"):
        reg.load()
    bad.unlink()
    (reg.path / ".hidden.json").write_text("{")  # dotfiles (temp files) are ignored
    (reg.path / "manifest-chain8453-protocol0.json").write_text("{}")
    assert reg.lookup("alice.os") is not None
    other = Registry(reg.path, chain_id=31337)
    with pytest.raises(RegistryError, match="chain 8453"):
        other.load()


def test_reference_style_reader_ignores_quic(reg):
    reg.register("alice.os", KEY, "1.2.3.4", {"tcp": 9000, "quic": 9443})
    reference = Indexer(extensions=False)
    reference.feed_all(all_logs(reg))
    rec = reference.get("alice.os")
    assert rec is not None and rec.is_usable
    assert rec.ports == {"tcp": 9000}
    assert reference.skipped == {"unknown_note": 1}


def _register_worker(args: tuple[str, int]) -> str:
    path, i = args
    name = f"node{i}.os"
    Registry(path).register(name, bytes([i]) * 32, f"10.0.0.{i}", {"tcp": 9000 + i})
    return name


def test_concurrent_registers_all_land(tmp_path):
    path = str(tmp_path / "shared")
    n = 12
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        names = pool.map(_register_worker, [(path, i) for i in range(1, n + 1)])
    reg = Registry(path)
    files = reg.files()
    assert len(files) == n
    blocks = sorted(read_log_cache(p).metadata.from_block_number for p in files)
    assert blocks == list(range(HYPERMAP_FIRST_BLOCK + 1, HYPERMAP_FIRST_BLOCK + n + 1))
    ix = reg.load()
    assert ix.skipped == {}
    for i, name in enumerate(names, start=1):
        rec = ix.get(name)
        assert rec is not None and rec.is_usable
        assert rec.net_key == (bytes([i]) * 32).hex()
    # "os" was minted exactly once
    os_mints = [
        log
        for log in all_logs(reg)
        if log["topics"][0] == "0x" + MINT_TOPIC.hex() and decode_mint(log).label == b"os"
    ]
    assert len(os_mints) == 1
