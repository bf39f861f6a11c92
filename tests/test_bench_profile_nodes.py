"""bench/profile_nodes.py: two in-process nodes answer hellos over each transport, and the
figure printed is a positive time per hello/ack."""

from __future__ import annotations

import re

import pytest

from bench.profile_nodes import hellos

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("via", ["tcp", "ws", "quic"])
async def test_in_process_nodes_answer_hellos(via: str) -> None:
    line = await hellos(via, run_for=0.0, burst=20)
    m = re.search(rf"{via.upper()}: 1 bursts of 20, median ([0-9.]+) us/rt", line)
    assert m is not None, line
    assert float(m.group(1)) > 0
