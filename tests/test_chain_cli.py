"""``hnet hns sync`` and ``hnet hns status`` against a local anvil chain, as a user runs them:
in a subprocess, with plain progress lines (stderr is not a terminal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet.testing.chain import TestChain, ToolMissing, running_chain
from hns import HYPERMAP_FIRST_BLOCK, Registry

pytestmark = pytest.mark.chain

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@pytest.fixture
def chain(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[TestChain]:
    try:
        with running_chain(
            tmp_path_factory.getbasetemp() / "hypermap-build", registry=Registry(tmp_path / "twin")
        ) as c:
            yield c
    except ToolMissing as e:
        pytest.fail(str(e))


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


def test_sync_then_status(chain: TestChain, tmp_path: Path) -> None:
    chain.register("alice.os", KEY_A, ip="10.0.0.1", ports={"tcp": 9000})
    chain.register("bob.os", KEY_B, routers=["alice.os"])
    head = chain.mine(3)
    home = tmp_path / "home"
    cache = tmp_path / "cache"
    r = hnet(
        "hns", "sync", "--rpc", chain.url, "--confirmations", "2", "--cache", str(cache), home=home
    )
    assert r.returncode == 0, r.stderr
    assert f"blocks {HYPERMAP_FIRST_BLOCK}..{head - 2}, 8 logs, 3 names (2 usable)" in r.stdout
    assert "sync: block" in r.stderr  # plain progress lines off a terminal
    # The cache file is a hypermap-cacher file: a registry over it gives the same records.
    assert Registry(cache).load().records() == chain.registry.load().records()

    s = hnet("hns", "status", "--json", home=home)
    assert s.returncode == 0, s.stderr
    (st,) = json.loads(s.stdout)
    assert st["chain_id"] == 8453 and st["last_block"] == head - 2 and st["logs"] == 8
    assert st["behind"] == 2 and st["contract"] == chain.address.lower()
    text = hnet("hns", "status", home=home)
    assert f"blocks      {HYPERMAP_FIRST_BLOCK}..{head - 2}" in text.stdout

    # A second sync resumes: nothing new to fetch, the same totals.
    again = hnet("hns", "sync", "--rpc", chain.url, "--confirmations", "2", home=home)
    assert again.returncode == 0 and "8 logs, 3 names" in again.stdout


def test_wrong_chain_id_exits_2_with_one_line(chain: TestChain, tmp_path: Path) -> None:
    r = hnet("hns", "sync", "--rpc", chain.url, "--chain-id", "1", home=tmp_path)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "serves chain 8453 (Base), expected 1 (Ethereum)" in lines[0]


def test_status_without_a_sync(tmp_path: Path) -> None:
    r = hnet("hns", "status", home=tmp_path)
    assert r.returncode == 0 and "no chain sync under" in r.stdout
    assert json.loads(hnet("hns", "status", "--json", home=tmp_path).stdout) == []


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    r = hnet("hns", "sync", "--rpc", "ftp://x", home=tmp_path)
    assert r.returncode == 2 and "http(s)://" in r.stderr
    r = hnet("hns", "sync", "--rpc", "http://127.0.0.1:1", "--contract", "0x12", home=tmp_path)
    assert r.returncode == 2 and "not a 0x-prefixed address" in r.stderr
