"""The user-space impairment's scheduler (hnet.testing.impair.Bridge), on pipes."""

from __future__ import annotations

import os
import random

import pytest

from hnet.testing.impair import Bridge, Impairment


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65_536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_delay_loss_and_reordering_are_applied() -> None:
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    try:
        imp = Impairment(delay=0.1, jitter=0.01, loss=0.1, reorder=0.2)
        bridge = Bridge((w0, w1), imp, random.Random(3))
        n = 2000
        for i in range(n):  # direction 0 arrives: goes out on fds[1]
            bridge.arrived(0, i.to_bytes(2, "big"), now=0.0)
        c = bridge.counters
        at_once = _drain(r1)
        assert len(at_once) == 2 * c.reordered  # sent at once, nothing else yet
        assert bridge.release_due(0.089) is not None and _drain(r1) == b""  # none before 90 ms
        assert bridge.release_due(0.111) is None  # all due by 110 ms
        delayed = _drain(r1)
        assert c.lost + c.reordered + len(delayed) // 2 == n
        assert 0.07 < c.lost / n < 0.13 and 0.15 < c.reordered / n < 0.25
        later = [int.from_bytes(delayed[i : i + 2], "big") for i in range(0, len(delayed), 2)]
        assert later != sorted(later)  # the jitter reorders the delayed ones too
        assert _drain(r0) == b""  # nothing went back the way it came
    finally:
        for fd in (r0, w0, r1, w1):
            os.close(fd)


def test_bounded_and_validated() -> None:
    with pytest.raises(ValueError):
        Impairment(delay=0.01, jitter=0.02)
    with pytest.raises(ValueError):
        Impairment(loss=1.5)
