"""bench/floors.py: the in-memory floors measure what they say (a positive figure for real
work) and refuse a result the AEAD did not give back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.floors import AeadFloorBench, SmallAeadFloorBench
from bench.run import QUICK_PLAN
from hnet.core.noise.cipher import CipherState

PLAN = replace(QUICK_PLAN, pingpong_n=50, bulk_count=1, bulk_size=200_000)


async def test_the_ping_pong_aead_floor_times_four_calls_per_round_trip() -> None:
    floor = SmallAeadFloorBench("raw_tcp_pingpong", 64)
    us, _ = await floor.measure(PLAN)
    assert us > 0 and floor.metric.unit == "us/rt"
    # each of the four cipher states moved on by one nonce per round trip
    assert [c.nonce for c in floor._ciphers] == [PLAN.pingpong_n] * 4


async def test_the_ping_pong_aead_floor_refuses_a_wrong_result() -> None:
    floor = SmallAeadFloorBench("raw_tcp_pingpong", 64)
    a_seal, b_open, b_seal, _ = floor._ciphers
    floor._ciphers = (a_seal, b_open, b_seal, CipherState(None))  # hands back the ciphertext
    with pytest.raises(RuntimeError, match="did not give back"):
        await floor.measure(PLAN)


async def test_the_bulk_aead_floor_reports_mb_per_s() -> None:
    floor = AeadFloorBench("raw_tcp_bulk")
    mbps, _ = await floor.measure(PLAN)
    assert mbps > 0 and floor.metric.unit == "MB/s"
