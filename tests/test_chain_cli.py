"""``hnet hns sync`` and ``hnet hns status`` against a local anvil chain, as a user runs them:
in a subprocess, with plain progress lines (stderr is not a terminal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hnet.testing.chain import TestChain
from hns import HYPERMAP_FIRST_BLOCK, Registry

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def hnet(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HNET_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "hnet", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_sync_then_status_then_show(chain: TestChain, tmp_path: Path) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    chain.register("bob.os", KEY_B, routers=["alice.os"])
    head = chain.mine(3)
    home = tmp_path / "home"
    cache = tmp_path / "cache"
    r = hnet(
        "hns",
        "sync",
        "--rpc",
        chain.url,
        "--confirmations",
        "2",
        "--write-cache",
        str(cache),
        home=home,
    )
    assert r.returncode == 0, r.stderr
    assert f"blocks {HYPERMAP_FIRST_BLOCK}..{head - 2}, 8 logs, 3 names (2 usable)" in r.stdout
    assert "sync: block" in r.stderr  # plain progress lines off a terminal
    # The cache file is a hypermap-cacher file: a registry over it gives the same records.
    assert Registry(cache).load().records() == chain.registry.load().records()

    s = hnet("hns", "status", "--json", home=home)
    assert s.returncode == 0, s.stderr
    st = json.loads(s.stdout)
    assert st["kind"] == "chain" and st["source"].startswith("chain sync ")
    assert st["chain_id"] == 8453 and st["last_block"] == head - 2 and st["logs"] == 8
    assert st["head"] == head and st["lag"] == 2 and st["contract"] == chain.address.lower()
    assert st["records"] == 3 and st["usable"] == 2
    text = hnet("hns", "status", home=home)
    assert f"blocks      {HYPERMAP_FIRST_BLOCK}..{head - 2}" in text.stdout
    assert "lag 2 blocks" in text.stdout and "records     3 names (2 usable)" in text.stdout

    # show reads the synced store (the home has no registry at all).
    shown = hnet("hns", "show", "bob.os", "--json", home=home)
    assert shown.returncode == 0, shown.stderr
    bob = json.loads(shown.stdout)
    assert bob["routers"] == ["alice.os"] and bob["net_key"] == KEY_B.hex() and bob["usable"]
    assert set(bob) >= {"name", "namehash", "net_key", "ips", "ports", "routers", "usable"}
    missing = hnet("hns", "show", "nobody.os", home=home)
    assert missing.returncode == 2 and "nobody.os: not in HNS (chain sync" in missing.stderr

    # A second sync resumes: nothing new to fetch, the same totals.
    again = hnet("hns", "sync", "--rpc", chain.url, "--confirmations", "2", home=home)
    assert again.returncode == 0 and "8 logs, 3 names" in again.stdout

    # A new home bootstraps from the cache file, then catches up by RPC.
    carol = chain.register("carol.os", KEY_A, ip="10.0.0.3", ports={"ws": 1})
    fresh = tmp_path / "fresh"
    boot = hnet(
        "hns", "sync", "--rpc", chain.url, "--confirmations", "0", "--cache", str(cache), home=fresh
    )
    assert boot.returncode == 0, boot.stderr
    assert f"from the cache: blocks {HYPERMAP_FIRST_BLOCK}..{head - 2}, 8 logs" in boot.stdout
    assert "4 names (3 usable)" in boot.stdout
    shown = json.loads(hnet("hns", "show", "carol.os", "--json", home=fresh).stdout)
    assert shown["ports"] == {"ws": 1} and shown["namehash"] == carol.namehash


def test_wrong_chain_id_exits_2_with_one_line(chain: TestChain, tmp_path: Path) -> None:
    r = hnet("hns", "sync", "--rpc", chain.url, "--chain-id", "1", home=tmp_path)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "serves chain 8453 (Base), expected 1 (Ethereum)" in lines[0]


def test_status_without_a_sync_describes_the_registry(tmp_path: Path) -> None:
    Registry(tmp_path / "registry").register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 1})
    r = hnet("hns", "status", home=tmp_path)
    assert r.returncode == 0 and "chain       none (run: hnet hns sync --rpc URL)" in r.stdout
    st = json.loads(hnet("hns", "status", "--json", home=tmp_path).stdout)
    assert st["kind"] == "registry" and st["records"] == 2 and st["usable"] == 1  # os, alice.os
    assert st["last_block"] is None
    assert st["source"] == f"registry {tmp_path / 'registry'}"


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    r = hnet("hns", "sync", "--rpc", "ftp://x", home=tmp_path)
    assert r.returncode == 2 and "http(s)://" in r.stderr
    r = hnet("hns", "sync", "--rpc", "http://127.0.0.1:1", "--contract", "0x12", home=tmp_path)
    assert r.returncode == 2 and "not a 0x-prefixed address" in r.stderr
    r = hnet("hns", "sync", "--rpc", "http://127.0.0.1:1", "--cache", "/nonexistent", home=tmp_path)
    assert r.returncode == 2 and "--cache /nonexistent: not a directory" in r.stderr
    r = hnet(
        "node", "--name", "a.os", "--key", "/nonexistent", "--cache", str(tmp_path), home=tmp_path
    )
    assert r.returncode == 2 and "--cache needs --rpc" in r.stderr


def test_show_rpc_reads_a_name_live(chain: TestChain, tmp_path: Path) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000, "ws": 9001})
    chain.register("bob.os", KEY_B, routers=["alice.os"])
    home = tmp_path / "home"
    r = hnet("hns", "show", "alice.os", "--rpc", chain.url, "--json", home=home)
    assert r.returncode == 0, r.stderr
    alice = json.loads(r.stdout)
    assert alice["ips"] == ["10.0.0.1"] and alice["ports"] == {"tcp": 9000, "ws": 9001}
    assert alice["net_key"] == KEY_A.hex() and alice["usable"]
    # No store to name bob's router from: said on stderr, the record is not usable.
    r = hnet("hns", "show", "bob.os", "--rpc", chain.url, "--json", home=home)
    assert r.returncode == 0 and "routers not named" in r.stderr
    assert json.loads(r.stdout)["routers"] == []
    # After a sync the home's store names it.
    assert (
        hnet("hns", "sync", "--rpc", chain.url, "--confirmations", "0", home=home).returncode == 0
    )
    r = hnet("hns", "show", "bob.os", "--rpc", chain.url, "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout)["routers"] == ["alice.os"], r.stderr
    unknown = hnet("hns", "show", "nobody.os", "--rpc", chain.url, home=home)
    assert unknown.returncode == 2 and "nobody.os: not in HNS (chain http://" in unknown.stderr
    wrong = hnet("hns", "show", "alice.os", "--rpc", chain.url, "--chain-id", "1", home=home)
    assert wrong.returncode == 2 and "expected 1 (Ethereum)" in wrong.stderr
