#!/usr/bin/env python3
"""Mutation fuzzer for the TCP and WebSocket stream connection (the production code).

Takes the fixed-key reference session (``interop-tests/vectors/i2r.bin``, the initiator's side;
``r2i.bin``, the responder's), mutates it, and feeds it, split at random points, into
:class:`hnet.core.stream.StreamConnection` with a real
:class:`hnet.core.handshake.PeerHandshake` and the reference keys: bob's responder for i2r,
alice's initiator for r2i, sometimes with bob deferring alice's key (``defer_unknown``). The
WebSocket half does the same with the equivalent session as a list of WS messages.

Input from the peer must never raise: every violation is a ``ProtocolError`` event and the
connection is closed. Anything raised, a buffer above its bound, or an event in the wrong
order is a bug and exits 1 with a reproducer (mode, seed, iteration).

    python fuzz/fuzz_framing.py [--iterations N] [--seed S] [--mode tcp|ws|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.handshake import PeerHandshake
from hnet.core.stream import (
    EARLY_DATA_MAX,
    ConnectionClosed,
    HandshakeComplete,
    KeyNeeded,
    MessageReceived,
    ProtocolError,
    RoutingRequestReceived,
    State,
    StreamConnection,
)
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
ALICE_KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
BOB_KEY = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
BOOK = {"alice.os": keys.public_bytes(ALICE_KEY), "bob.os": keys.public_bytes(BOB_KEY)}

#: What a connection may hold at any time before it is open: a partial handshake frame (or a
#: partial first frame) plus one feed, or the early data bound; after: one partial chunk plus
#: the plaintext of one message in progress (plus small headers).
MAX_FEED = 65_536
MAX_PRE_OPEN = 2 + max(HANDSHAKE_MAX_MESSAGE, ROUTING_REQUEST_MAX) + MAX_FEED + EARLY_DATA_MAX
MAX_OPEN = NOISE_MAX_MESSAGE + 8 + MESSAGE_MAX_SIZE


def bob(defer: bool) -> PeerHandshake:
    book = {"bob.os": BOOK["bob.os"]} if defer else BOOK
    return PeerHandshake(
        initiator=False,
        our_name="bob.os",
        signing_key=BOB_KEY,
        lookup=book.get,
        defer_unknown=defer,
        static_private=BOB_STATIC,
        ephemeral_private=BOB_EPHEMERAL,
    )


def alice() -> PeerHandshake:
    return PeerHandshake(
        initiator=True,
        our_name="alice.os",
        signing_key=ALICE_KEY,
        lookup=BOOK.get,
        expected_peer="bob.os",
        proxy_request=True,
        static_private=ALICE_STATIC,
        ephemeral_private=ALICE_EPHEMERAL,
    )


class Checker:
    """Drives one connection and checks every event and bound as it goes."""

    def __init__(self, conn: StreamConnection, rng: random.Random) -> None:
        self.conn = conn
        self.rng = rng
        self.messages: list[bytes] = []
        self.complete = False
        self.ended = False

    def feed(self, push: Callable[[], None]) -> None:
        conn = self.conn
        if self.ended or conn.state is State.ROUTED:
            return  # the router (or nobody) reads the rest
        push()
        conn.data_to_send()
        while (ev := conn.next_event()) is not None:
            assert not self.ended, f"{ev} after the end"
            if isinstance(ev, HandshakeComplete):
                assert not self.complete, "two HandshakeComplete"
                self.complete = True
            elif isinstance(ev, MessageReceived):
                assert self.complete, "a message before HandshakeComplete"
                assert 0 < len(ev.data) <= MESSAGE_MAX_SIZE
                self.messages.append(ev.data)
            elif isinstance(ev, KeyNeeded):
                assert ev.name and not self.complete
                # the key is found, or not, or comes after more input (then it is asked again
                # only once: provide_key now or at the next feed)
                choice = self.rng.randrange(3)
                conn.provide_key(BOOK.get(ev.name) if choice else None)
            elif isinstance(ev, RoutingRequestReceived):
                assert not conn.hs.initiator and 0 < len(ev.first_frame) <= ROUTING_REQUEST_MAX
                conn.take_buffered()
                self.ended = True
            elif isinstance(ev, ProtocolError | ConnectionClosed):
                assert conn.state is State.CLOSED
                self.ended = True
        bound = MAX_OPEN if conn.is_open else MAX_PRE_OPEN
        assert conn.buffered <= bound, f"{conn.buffered} bytes held in {conn.state}"


def vectors() -> dict[str, bytes]:
    out = {}
    for line in (INTEROP / "hyperware-msgpack-vectors.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, hexdata = line.split("\t")
            out[name] = bytes.fromhex(hexdata)
    return out


def ws_sessions() -> tuple[list[bytes], list[bytes]]:
    """Both sides of the equivalent WS session: alice's (msg1, msg3, two messages) and bob's
    (msg2, one message)."""
    v = vectors()
    a = StreamConnection(alice(), "ws")
    b = StreamConnection(bob(False), "ws")
    i2r = a.data_to_send()
    b.receive_message(i2r[0])
    r2i = b.data_to_send()
    a.receive_message(r2i[0])
    i2r += a.data_to_send()
    a.send_message(v["km_request_hello"])
    a.send_message(v["km_big_blob"])
    i2r += a.data_to_send()
    for m in i2r[1:]:
        b.receive_message(m)
    b.send_message(v["km_response_context"])
    r2i += b.data_to_send()
    return i2r, r2i


INTERESTING = [0, 1, 16, 17, 31, 32, 33, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFEF, 0x1000, 0x1001]


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


def run_tcp(rng: random.Random, i2r: bytes, r2i: bytes) -> Checker:
    if rng.randrange(3):
        conn, data = StreamConnection(bob(defer=rng.randrange(2) == 0), "tcp"), i2r
    else:
        conn, data = StreamConnection(alice(), "tcp"), r2i
    data = mutate(rng, data)
    check = Checker(conn, rng)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 7, 34, 100, 4096, MAX_FEED])
        piece = data[pos : pos + n]
        check.feed(lambda piece=piece: conn.receive_data(piece))  # type: ignore[misc]
        pos += n
    if rng.randrange(2):
        check.feed(conn.receive_eof)
    return check


def run_ws(rng: random.Random, i2r: list[bytes], r2i: list[bytes]) -> Checker:
    if rng.randrange(3):
        conn, msgs = StreamConnection(bob(defer=rng.randrange(2) == 0), "ws"), list(i2r)
    else:
        conn, msgs = StreamConnection(alice(), "ws"), list(r2i)
    op = rng.randrange(5)
    i = rng.randrange(len(msgs))
    if op == 0:
        msgs[i] = mutate(rng, msgs[i])
    elif op == 1:
        del msgs[i]
    elif op == 2:
        msgs.insert(i, msgs[i])
    elif op == 3:
        j = rng.randrange(len(msgs))
        msgs[i], msgs[j] = msgs[j], msgs[i]
    else:
        msgs.insert(i, rng.randbytes(rng.choice([0, 1, 32, 100, NOISE_MAX_MESSAGE + 1])))
    texts = {rng.randrange(len(msgs))} if rng.randrange(8) == 0 else set()
    check = Checker(conn, rng)
    for k, m in enumerate(msgs):
        check.feed(lambda m=m, k=k: conn.receive_message(m, text=k in texts))  # type: ignore[misc]
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", "-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mode", choices=["tcp", "ws", "both"], default="both")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    i2r = (INTEROP / "i2r.bin").read_bytes()
    r2i = (INTEROP / "r2i.bin").read_bytes()
    ws_i2r, ws_r2i = ws_sessions()

    # Sanity: the unmutated sessions must decode fully, both roles, both framings.
    for kind, mine, theirs in (("tcp", i2r, r2i), ("ws", ws_i2r, ws_r2i)):
        for conn, stream, want in (
            (StreamConnection(bob(False), kind), mine, 2),  # type: ignore[arg-type]
            (StreamConnection(alice(), kind), theirs, 1),  # type: ignore[arg-type]
        ):
            check = Checker(conn, random.Random(0))
            pieces = [stream] if isinstance(stream, bytes) else stream
            for p in pieces:
                if kind == "tcp":
                    check.feed(lambda p=p, c=conn: c.receive_data(p))  # type: ignore[misc]
                else:
                    check.feed(lambda p=p, c=conn: c.receive_message(p))  # type: ignore[misc]
            assert len(check.messages) == want, f"unmutated {kind} session did not decode"

    modes = ["tcp", "ws"] if args.mode == "both" else [args.mode]
    counts = dict.fromkeys(["open", "refused", "routed", "incomplete"], 0)
    start = time.monotonic()
    for it in range(args.iterations):
        mode = modes[it % len(modes)]
        rng = random.Random(f"{seed}:{it}")
        try:
            check = run_tcp(rng, i2r, r2i) if mode == "tcp" else run_ws(rng, ws_i2r, ws_r2i)
        except BaseException:
            traceback.print_exc()
            print(f"BUG: mode={mode} seed={seed} iteration={it}", file=sys.stderr)
            return 1
        state = check.conn.state
        if state is State.ROUTED:
            counts["routed"] += 1
        elif state is State.OPEN:
            counts["open"] += 1
        elif state is State.CLOSED:
            counts["refused"] += 1
        else:
            counts["incomplete"] += 1
    elapsed = time.monotonic() - start
    print(f"seed={seed} iterations={args.iterations} {counts} in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
