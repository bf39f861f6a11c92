"""``hnet ping -s SIZE`` and ``-l PRELOAD`` against real node processes; their usage errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from hnet.testing.cluster import Cluster

from .conftest import run_cli

PING_LINE = re.compile(r"^ack from (\S+) via (quic|tcp|ws): seq=(\d+) time=([0-9.]+) ms$", re.M)


def _status(cluster: Cluster, name: str) -> dict[str, object]:
    async def call() -> dict[str, object]:
        async with asyncio.timeout(10):
            return await cluster.call(name, {"op": "status"}, timeout=5)

    return asyncio.run(call())


def _seqs(stdout: str) -> list[int]:
    return [int(seq) for _, _, seq, _ in PING_LINE.findall(stdout)]


def test_size_gets_acks(cluster: Cluster) -> None:
    home = cluster.nodes["alice.os"].home
    res = run_cli("ping", "bob.os", "-s", "100000", "-c", "3", "-i", "0.05", home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == (
        "PING bob.os: hello to bob.os@net:distro:sys, 100000 bytes"
    )
    assert sorted(_seqs(res.stdout)) == [1, 2, 3]
    assert "3 sent, 3 received, 0% loss" in res.stdout


@pytest.mark.parametrize("via", ["quic", "tcp", "ws"])
@pytest.mark.parametrize("size", ["0", "5000000", "10000000"])
def test_size_bounds_get_acks(cluster: Cluster, size: str, via: str) -> None:
    res = run_cli(
        "ping", "carol.os", "-s", size, "-c", "1", "-W", "30", "--via", via,
        home=cluster.nodes["bob.os"].home,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert _seqs(res.stdout) == [1]


def test_preload_keeps_requests_outstanding_at_once(cluster: Cluster) -> None:
    # carol's node sends nothing else in this module before this test, and at most one
    # hello at a time outside it.
    res = run_cli(
        "ping", "alice.os", "-l", "4", "-c", "8", "-i", "0.2", home=cluster.nodes["carol.os"].home
    )
    assert res.returncode == 0, res.stdout + res.stderr
    seqs = _seqs(res.stdout)
    assert len(seqs) == 8 and sorted(seqs) == list(range(1, 9)), res.stdout
    assert "8 sent, 8 received, 0% loss" in res.stdout
    status = _status(cluster, "carol.os")
    assert status["outstanding"] == 0
    assert status["max_outstanding"] == 4, status


def test_preload_larger_than_count_sends_count(cluster: Cluster) -> None:
    res = run_cli("ping", "bob.os", "-l", "8", "-c", "3", home=cluster.nodes["alice.os"].home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(_seqs(res.stdout)) == [1, 2, 3]
    assert "3 sent, 3 received, 0% loss" in res.stdout


def test_preload_lookup_error_is_one_line(cluster: Cluster) -> None:
    res = run_cli("ping", "nobody.os", "-l", "4", "-c", "8", home=cluster.nodes["alice.os"].home)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().startswith("nobody.os: not in HNS (registry ")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "-1"], "ping: -s must be in 0..10000000"),
        (["-s", "20000000"], "ping: -s must be in 0..10000000"),
        (["-s", "10000001"], "ping: -s must be in 0..10000000"),
        (["-l", "0"], "ping: -l must be in 1..64"),
        (["-l", "65"], "ping: -l must be in 1..64"),
        (["-s", "10", "--text", ""], "ping: -s above 0 needs a non-empty --text"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("ping", "bob.os", "-c", "1", *args, home=tmp_path)  # no node needed
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip() == message
    assert res.stdout == ""


def test_preload_without_local_node(tmp_path: Path) -> None:
    res = run_cli("ping", "bob.os", "-l", "4", "-c", "4", home=tmp_path)
    assert res.returncode == 2
    assert "no node running" in res.stderr and len(res.stderr.strip().splitlines()) == 1
