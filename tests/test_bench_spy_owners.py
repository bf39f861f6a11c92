"""bench/spy_owners.py: py-spy's raw stacks summed by owner, only inside asyncio's runner."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.spy_owners import INTERPRETER, owner, summarize

LOOP = "<module> (x.py:1);Runner.run (asyncio/runners.py:118);run_forever (loop.c:33192)"
RAW = "\n".join(
    [
        f"{LOOP};_Driver.datagram_received (hnet/transport/quic/transport.py:148) 6",
        f"{LOOP};open_whole (hnet/core/quic/streams.py:168);ChaCha20_avx512 "
        "(cryptography/hazmat/bindings/_rust.abi3.so) 3",
        f"{LOOP};QuicConnection._drain_core (qh3/quic/connection.py:700) 2",
        f"{LOOP};UdpSocket._send (hnet/transport/quic/udp.py:80);sendto (libc.so.6) 4",
        f"{LOOP};Outgoing.finished (hnet/core/sendqueue.py:94);gc_collect_main "
        "(libpython3.11.so.1.0) 1",
        f"{LOOP};MuxClient.submit (transports.py:660) 2",
        f"{LOOP};Py_DECREF (object.h:537) 2",
        # not inside the loop (an import at start-up): left out
        "<module> (x.py:1);_call_with_frames_removed (<frozen importlib._bootstrap>:241) 50",
        "not a stack line",
    ]
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("NoiseQuicConnection._process (hnet/core/quic/connection.py:568)", "hnet (ours)"),
        ("QuicConnection.send_stream_data (qh3/quic/connection.py:418)", "QUIC library"),
        ("QuicStream.add_frame (aioquic/quic/stream.py:70)", "QUIC library"),
        ("PyBlake2_blake2s_compress (blake2s-ref.c)", "crypto library"),
        ("sendto (libc.so.6)", "system calls"),
        ("epoll_pwait (libc.so.6)", "system calls"),
        ("malloc (libc.so.6)", INTERPRETER),
        ("Timeout.__aexit__ (asyncio/timeouts.py:103)", "event loop"),
        ("Loop__new_future (loop.c:22989)", "event loop"),
        ("gc_collect_main (libpython3.11.so.1.0)", "garbage collector"),
        ("MuxClient.submit (transports.py:660)", "benchmark harness"),
        ("Py_DECREF (object.h:537)", INTERPRETER),
    ],
)
def test_owner(frame: str, expected: str) -> None:
    assert owner(frame).startswith(expected)


def test_summarize_counts_only_the_loop_and_charges_the_innermost_frame(tmp_path: Path) -> None:
    path = tmp_path / "spy.txt"
    path.write_text(RAW + "\n")
    out = summarize(path, "Runner.run", top=3)
    lines = out.splitlines()
    assert lines[0] == "20 samples inside Runner.run(), own time by owner:"
    shares = {line.split("%  ", 1)[1]: float(line.split("%")[0]) for line in lines[1:8]}
    assert shares == {
        "hnet (ours)": 30.0,
        "system calls (sockets, epoll)": 20.0,
        "crypto library (cryptography, hashlib)": 15.0,
        "QUIC library (qh3, aioquic)": 10.0,
        "benchmark harness": 10.0,
        INTERPRETER: 10.0,
        "garbage collector": 5.0,
    }
    assert "30.0 %  [hnet (ours)]  _Driver.datagram_received" in out


def test_summarize_without_loop_samples_says_so(tmp_path: Path) -> None:
    path = tmp_path / "spy.txt"
    path.write_text("<module> (x.py:1);f (x.py:2) 5\n")
    with pytest.raises(SystemExit, match=re.escape("no sample inside a frame named 'Runner.run'")):
        summarize(path, "Runner.run", top=3)
