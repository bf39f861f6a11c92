"""The library floors under the Noise-TCP lines, measured in the same rounds as the lines.

Two in-memory lines, no socket and no event loop, both ends in this process like the
in-process lines they explain:

* **Noise handshake, in memory**: both sides of our node handshake (``PeerHandshake``: Noise
  XX with a fresh X25519 static key per connection, the Ed25519 signature over it and its
  verification), messages handed across directly, then ``split``. It is what a Noise-TCP setup
  pays in cryptography before any I/O; beside raw TCP's connect + first echo it shows how much
  of the "handshake to first reply" budget the libraries take on their own.
* **ChaCha20-Poly1305, seal + open**: a 10 MB message sealed and opened chunk by chunk as the
  TCP framing does (65,519-byte plaintext chunks, the Noise nonce), with the same
  ``cryptography`` AEAD. Session bulk in one process does both on one CPU, so
  ``1 / (1 / raw + 1 / this)`` is the most a Noise session can reach next to raw TCP's copies.
* **ChaCha20-Poly1305, a ping-pong's messages**: per round trip, the two 64-byte messages of
  an in-process ping-pong each sealed and opened as a Noise-TCP session does (one AEAD call
  each way per message, through ``CipherState``). A Noise ping-pong in one process makes raw
  TCP's system calls and these four calls at least, so ``raw + this`` is its least.
"""

from __future__ import annotations

import os
import time
from statistics import median
from typing import Any

from bench.common import LATENCY, THROUGHPUT, Identities, Metric
from hnet.core.noise.cipher import CipherState
from hnet.limits import NOISE_MAX_PLAINTEXT

__all__ = ["AeadFloorBench", "HandshakeFloorBench", "SmallAeadFloorBench", "handshake"]


def handshake(ids: Identities) -> None:
    """One complete node handshake in memory, both sides, verified and split."""
    init = ids.initiator()
    resp = ids.responder()
    m2 = resp.receive(init.initial_message())
    if m2 is None:
        raise RuntimeError("the responder sent no second message")
    m3 = init.receive(m2)
    if m3 is None or resp.receive(m3) is not None:
        raise RuntimeError("the handshake is out of step")
    if not (init.complete and resp.complete):
        raise RuntimeError("the handshake did not complete")
    init.split()
    resp.split()


class HandshakeFloorBench:
    """Both sides of a node handshake in memory, per handshake (ms, median of the round)."""

    def __init__(self, yardstick: str) -> None:
        self.ids = Identities.generate()
        self.metric = Metric(
            "setup_noise_memory",
            "Noise handshake alone, both sides in memory (no socket)",
            LATENCY,
            yardstick,
            unit="ms",
            params={"transport": "tcp", "value": "median of the round", "floor_of": "setup_tcp"},
        )

    async def setup(self) -> None:
        handshake(self.ids)

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        n = max(20, plan.transport.of("setup")("tcp") * 4)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            handshake(self.ids)
            samples.append((time.perf_counter() - t0) * 1e3)
        return median(samples), {"min_ms": min(samples), "max_ms": max(samples)}

    async def aclose(self) -> None:
        return None


class AeadFloorBench:
    """Seal and open ``bulk_size`` bytes in framing-sized chunks (MB/s of message bytes)."""

    def __init__(self, yardstick: str) -> None:
        self.metric = Metric(
            "aead_seal_open",
            "ChaCha20-Poly1305 alone, seal + open (one CPU)",
            THROUGHPUT,
            yardstick,
            params={"chunk": NOISE_MAX_PLAINTEXT, "floor_of": "noise_tcp_bulk"},
        )
        self._key = os.urandom(32)
        self._chunk = os.urandom(NOISE_MAX_PLAINTEXT)

    async def setup(self) -> None:
        return None

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        seal = CipherState(self._key)
        open_ = CipherState(self._key)
        chunks = max(1, plan.bulk_size // NOISE_MAX_PLAINTEXT)
        chunk = self._chunk
        plain = b""
        t0 = time.perf_counter()
        for _ in range(plan.bulk_count):
            for _ in range(chunks):
                plain = open_.decrypt(seal.encrypt(chunk))
        elapsed = time.perf_counter() - t0
        if plain != chunk:
            raise RuntimeError("the AEAD did not give back what it sealed")
        moved = plan.bulk_count * chunks * NOISE_MAX_PLAINTEXT
        return moved / elapsed / 1e6, {}

    async def aclose(self) -> None:
        return None


class SmallAeadFloorBench:
    """A ping-pong's cryptography alone: per round trip two ``size``-byte messages, each sealed
    by its sender and opened by its receiver (µs per round trip, median of the round)."""

    def __init__(self, yardstick: str, size: int) -> None:
        self.metric = Metric(
            "aead_pingpong",
            f"ChaCha20-Poly1305 alone, a ping-pong's two {size} B messages sealed + opened",
            LATENCY,
            yardstick,
            params={"message_bytes": size, "floor_of": "noise_tcp_pingpong_driven"},
        )
        key_a, key_b = os.urandom(32), os.urandom(32)
        # a -> b and b -> a, as a session pair's four cipher states
        self._ciphers = (
            CipherState(key_a),
            CipherState(key_a),
            CipherState(key_b),
            CipherState(key_b),
        )
        self._message = os.urandom(size)

    async def setup(self) -> None:
        return None

    async def measure(self, plan: Any) -> tuple[float, dict[str, float]]:
        a_seal, b_open, b_seal, a_open = self._ciphers
        message = reply = self._message
        n = plan.pingpong_n
        t0 = time.perf_counter()
        for _ in range(n):
            reply = a_open.decrypt(b_seal.encrypt(b_open.decrypt(a_seal.encrypt(message))))
        elapsed = time.perf_counter() - t0
        if reply != message:
            raise RuntimeError("the AEAD did not give back what it sealed")
        return elapsed / n * 1e6, {}

    async def aclose(self) -> None:
        return None
