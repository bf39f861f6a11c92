#!/usr/bin/env python3
"""Mutation fuzzer for the Noise responder over the TCP and WebSocket framings.

Takes the fixed-key reference session (``interop-tests/vectors/i2r.bin``, the initiator's side),
mutates it, and feeds it, split at random points, into a sans-I/O responder built from
``hnet.core.noise`` and ``hnet.core.framing`` with bob's keys. The WebSocket half does the same
with the equivalent session as a list of WS messages. Only ``NoiseError`` and ``FramingError``
may escape; anything else, or a buffer above its bound, is a bug and exits 1 with a reproducer.

    python fuzz/fuzz_framing.py [--iterations N] [--seed S] [--mode tcp|ws|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet.core.framing import (
    FirstFrame,
    FramingError,
    HandshakeFrameReader,
    TcpTransport,
    WsTransport,
    check_handshake_message,
    classify_first_frame,
    encode_handshake_frame,
)
from hnet.core.noise import NoiseError, XXHandshake
from hnet.limits import (
    HANDSHAKE_MAX_MESSAGE,
    MESSAGE_MAX_SIZE,
    NOISE_MAX_MESSAGE,
    ROUTING_REQUEST_MAX,
)

INTEROP = Path(__file__).resolve().parent.parent / "interop-tests" / "vectors"
ALICE_STATIC = bytes(range(0x00, 0x20))
BOB_STATIC = bytes(range(0x01, 0x21))
ALICE_EPHEMERAL = bytes(range(0x20, 0x40))
BOB_EPHEMERAL = bytes(range(0x41, 0x61))
EXPECTED = (NoiseError, FramingError)


def _bob_payload() -> bytes:
    """Bob's HandshakePayload as in the reference session (needed to reproduce its hash)."""
    static_public = XXHandshake(False, BOB_STATIC).static_public
    sig = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32).sign(static_public)
    return msgpack.packb([1, "bob.os", list(sig), False], use_bin_type=True)


BOB_PAYLOAD = _bob_payload()

#: Bound on what the responder may hold at any time: one partial chunk plus the plaintext
#: of one message in progress (plus small headers).
MAX_HELD = NOISE_MAX_MESSAGE + 8 + MESSAGE_MAX_SIZE


class TcpResponder:
    def __init__(self) -> None:
        self.hs = XXHandshake(False, BOB_STATIC, ephemeral_private=BOB_EPHEMERAL)
        self.reader = HandshakeFrameReader(max_len=ROUTING_REQUEST_MAX, max_frames=1)
        self.transport: TcpTransport | None = None
        self.routed = False
        self.messages: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self.routed:  # a router would now pipe bytes; nothing to parse
            return
        if self.transport is not None:
            self.messages += self.transport.feed(data)
            assert self.transport.buffered <= MAX_HELD, "transport over its bound"
            return
        frames = self.reader.feed(data)
        while frames:
            self._frame(frames.pop(0))
            if not frames and self.transport is None and not self.routed:
                frames = self.reader.feed(b"")
        if self.transport is None:
            assert self.reader.done or self.reader.buffered <= 2 + self.reader.max_len

    def _frame(self, frame: bytes) -> None:
        if self.reader.max_frames == 1:
            if classify_first_frame(frame) is FirstFrame.ROUTING_REQUEST:
                self.routed = True
                self.reader.take_remaining()
                return
            self.hs.read_message(frame)
            encode_handshake_frame(self.hs.write_message(BOB_PAYLOAD))
            self.reader.max_len = HANDSHAKE_MAX_MESSAGE
            self.reader.max_frames = 2
            return
        self.hs.read_message(frame)
        self.transport = TcpTransport(*self.hs.split())
        self.messages += self.transport.feed(self.reader.take_remaining())


class WsResponder:
    def __init__(self) -> None:
        self.hs = XXHandshake(False, BOB_STATIC, ephemeral_private=BOB_EPHEMERAL)
        self.transport: WsTransport | None = None
        self.routed = False
        self.received = 0
        self.messages: list[bytes] = []

    def feed(self, ws_message: bytes) -> None:
        if self.routed:
            return
        if self.transport is not None:
            self.messages += self.transport.feed_ws_message(ws_message)
            assert self.transport.buffered <= MESSAGE_MAX_SIZE
            return
        self.received += 1
        if self.received == 1:
            msg = check_handshake_message(ws_message, ROUTING_REQUEST_MAX)
            if classify_first_frame(msg) is FirstFrame.ROUTING_REQUEST:
                self.routed = True
                return
            self.hs.read_message(msg)
            self.hs.write_message(BOB_PAYLOAD)
            return
        self.hs.read_message(check_handshake_message(ws_message))
        self.transport = WsTransport(*self.hs.split())


def ws_session() -> list[bytes]:
    """Alice's side of the equivalent WS session: msg1, msg3, then two transport messages."""
    vectors = {}
    for line in (INTEROP / "hyperware-msgpack-vectors.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, hexdata = line.split("\t")
            vectors[name] = bytes.fromhex(hexdata)
    alice = XXHandshake(True, ALICE_STATIC, ephemeral_private=ALICE_EPHEMERAL)
    bob = XXHandshake(False, BOB_STATIC, ephemeral_private=BOB_EPHEMERAL)
    msg1 = alice.write_message()
    bob.read_message(msg1)
    alice.read_message(bob.write_message(BOB_PAYLOAD))
    msg3 = alice.write_message(b"alice payload")
    transport = WsTransport(*alice.split())
    out = [msg1, msg3]
    out += transport.encrypt_message(vectors["km_request_hello"])
    out += transport.encrypt_message(vectors["km_big_blob"])
    return out


INTERESTING = [0, 1, 16, 17, 31, 32, 33, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFEF, 0x1000]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 64))
            continue
        op = rng.randrange(9)
        i = rng.randrange(len(buf))
        if op == 0:  # flip a bit
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # random byte
            buf[i] = rng.randrange(256)
        elif op == 2:  # interesting u16 (a length field, often)
            buf[i : i + 2] = rng.choice(INTERESTING).to_bytes(2, "big")
        elif op == 3:  # interesting u32
            v = rng.choice([0, 1, MESSAGE_MAX_SIZE, MESSAGE_MAX_SIZE + 1, 0xFFFF_FFFF, 84])
            buf[i : i + 4] = v.to_bytes(4, "big")
        elif op == 4:  # insert random bytes
            buf[i:i] = rng.randbytes(rng.randint(1, 32))
        elif op == 5:  # delete a range
            del buf[i : i + rng.randint(1, 64)]
        elif op == 6:  # duplicate a range
            j = min(len(buf), i + rng.randint(1, 300))
            buf[j:j] = buf[i:j]
        elif op == 7:  # truncate
            del buf[i:]
        else:  # splice in a range from elsewhere
            j = rng.randrange(len(buf))
            n = rng.randint(1, 200)
            buf[i : i + n] = buf[j : j + n]
    return bytes(buf)


def run_tcp(rng: random.Random, stream: bytes) -> None:
    data = mutate(rng, stream)
    resp = TcpResponder()
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 7, 34, 100, 4096, 65_536, len(data)])
        resp.feed(data[pos : pos + n])
        pos += n


def run_ws(rng: random.Random, session: list[bytes]) -> None:
    msgs = list(session)
    op = rng.randrange(4)
    if op == 0:
        i = rng.randrange(len(msgs))
        msgs[i] = mutate(rng, msgs[i])
    elif op == 1:
        del msgs[rng.randrange(len(msgs))]
    elif op == 2:
        i = rng.randrange(len(msgs))
        msgs.insert(i, msgs[i])
    else:
        i, j = rng.randrange(len(msgs)), rng.randrange(len(msgs))
        msgs[i], msgs[j] = msgs[j], msgs[i]
    resp = WsResponder()
    for m in msgs:
        resp.feed(m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", "-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mode", choices=["tcp", "ws", "both"], default="both")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    stream = (INTEROP / "i2r.bin").read_bytes()
    session = ws_session()

    # Sanity: the unmutated inputs must decode fully.
    clean = TcpResponder()
    clean.feed(stream)
    assert len(clean.messages) == 2, "unmutated TCP stream did not decode"
    clean_ws = WsResponder()
    for m in session:
        clean_ws.feed(m)
    assert len(clean_ws.messages) == 2, "unmutated WS session did not decode"

    modes = ["tcp", "ws"] if args.mode == "both" else [args.mode]
    counts = dict.fromkeys(["ok", "NoiseError", "FramingError"], 0)
    start = time.monotonic()
    for it in range(args.iterations):
        mode = modes[it % len(modes)]
        rng = random.Random(f"{seed}:{it}")
        try:
            if mode == "tcp":
                run_tcp(rng, stream)
            else:
                run_ws(rng, session)
            counts["ok"] += 1
        except EXPECTED as exc:
            counts[type(exc).__name__] += 1
        except BaseException:
            traceback.print_exc()
            print(f"BUG: mode={mode} seed={seed} iteration={it}", file=sys.stderr)
            return 1
    elapsed = time.monotonic() - start
    print(f"seed={seed} iterations={args.iterations} {counts} in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
