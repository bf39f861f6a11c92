#!/usr/bin/env python3
"""Fuzz every wire decoder with mutated reference vectors.

    python fuzz/fuzz_codec.py [ITERATIONS] [--seed N] [--vectors PATH] [--plain]

Each input goes to every decoder in ``hnet.core.wire.DECODERS``. A decoder may return a value or
raise ``CodecError``; anything else escaping, a CodecError that reports an internal decoder
error, or a decoded value that does not survive a canonical re-encode/decode round trip is a
failure: the input is printed as hex and the script exits 1.

If ``atheris`` is importable (and ``--plain`` is not given) the same check runs as an atheris
target (``TestOneInput``) with the vectors as seeds and ``-runs=ITERATIONS``; otherwise a plain
seeded random mutator runs ITERATIONS inputs (default 10,000).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hnet.core.wire import (
    DECODERS,
    ENCODERS,
    Address,
    CodecError,
    Direct,
    HnsUpdate,
    Identity,
    LazyLoadBlob,
    Request,
    SendError,
    SendErrorKind,
    encode_hns_update,
    encode_identity,
    encode_send_error,
)
from hnet.interop import find_vector_file

INTERESTING = [
    0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC6, 0xC7,
    0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD4, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE,
    0xDF, 0xE0, 0xFF,
]  # fmt: skip
SPLICES = [
    b"\xdd\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff",
    b"\xc6\x7f\xff\xff\xff",
    b"\xdf\x00\x01\x00\x00",
    b"\x91" * 64,
    b"\xcf" + b"\xff" * 8,
    b"\xd3" + b"\x80" + b"\x00" * 7,
    b"\xa3\xed\xa0\x80",
    b"\xd6\xff\x00\x00\x00\x00",
    b"\x81\xa7Request",
    b"\xa8GetPeers",
]


class Failure(Exception):
    pass


def load_vectors(path: Path) -> list[bytes]:
    """The vectors' bytes, plus seeds for the types the vector file does not cover."""
    seeds = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            seeds.append(bytes.fromhex(line.split("\t")[2]))
    bob = Address.parse("bob.os@chat:chat:template.os")
    request = Request(False, 5, bytes(range(40)), '{"a":1}', ())
    seeds.append(
        encode_send_error(
            SendError(SendErrorKind.TIMEOUT, bob, request, LazyLoadBlob("a/b", b"\xc2\xc3"))
        )
    )
    seeds.append(encode_identity(Identity("a.os", "0x00", Direct("1.2.3.4", {"tcp": 1}))))
    seeds.append(encode_hns_update(HnsUpdate("a.os", "ab", ("::1",), {"ws": 80}, ("r.os",))))
    return seeds


def check_one(data: bytes) -> None:
    """Feed ``data`` to every decoder; raise Failure on any contract violation."""
    for type_name, decode in DECODERS.items():
        try:
            value = decode(data)
        except CodecError as e:
            if "internal decoder error" in str(e):
                raise Failure(f"{type_name}: {e}") from e
            continue
        except Exception as e:
            raise Failure(f"{type_name}: {type(e).__name__} escaped: {e}") from e
        try:
            canonical = ENCODERS[type_name](value)
            again = decode(canonical)
        except Exception as e:
            raise Failure(f"{type_name}: decoded value does not re-encode: {e!r}") from e
        if again != value or ENCODERS[type_name](again) != canonical:
            raise Failure(f"{type_name}: canonical round trip changed the value")


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        op = rng.randrange(9)
        i = rng.randrange(len(out) + 1)
        j = min(i, len(out) - 1)
        if op == 0 and out:
            out[j] = rng.randrange(256)
        elif op == 1 and out:
            out[j] = rng.choice(INTERESTING)
        elif op == 2 and out:
            out[j] ^= 1 << rng.randrange(8)
        elif op == 3:
            out.insert(i, rng.choice(INTERESTING))
        elif op == 4 and out:
            del out[j : j + rng.randint(1, 4)]
        elif op == 5:
            out[i:i] = rng.choice(SPLICES)
        elif op == 6:
            out = out[: rng.randrange(len(out) + 1)]
        elif op == 7:
            other = rng.choice(seeds)
            k = rng.randrange(len(other) + 1)
            out = out[:i] + other[k:]
        elif op == 8 and len(out) > 2:
            # duplicate a random slice (repeats fields / elements)
            a = rng.randrange(len(out))
            b = min(len(out), a + rng.randint(1, 16))
            out[a:a] = out[a:b]
    return bytes(out)


def run_plain(seeds: list[bytes], iterations: int, seed: int) -> int:
    rng = random.Random(seed)
    small = [s for s in seeds if len(s) <= 4096] or seeds
    start = time.perf_counter()
    for n in range(iterations):
        # Mostly small vectors (fast), now and then a big one.
        base = rng.choice(seeds) if rng.random() < 0.02 else rng.choice(small)
        data = mutate(rng, base, seeds)
        try:
            check_one(data)
        except Failure as e:
            print(f"FAILURE after {n} inputs: {e}", file=sys.stderr)
            print(f"input ({len(data)} bytes): {data.hex()}", file=sys.stderr)
            return 1
    elapsed = time.perf_counter() - start
    print(f"{iterations} inputs x {len(DECODERS)} decoders, no failures ({elapsed:.1f} s)")
    return 0


def run_atheris(atheris: object, seeds: list[bytes], iterations: int) -> int:
    import tempfile

    corpus = Path(tempfile.mkdtemp(prefix="hnet-codec-corpus-"))
    for i, s in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(s)
    argv = [sys.argv[0], f"-runs={iterations}", "-max_len=200000", str(corpus)]
    atheris.Setup(argv, TestOneInput)  # type: ignore[attr-defined]
    atheris.Fuzz()  # type: ignore[attr-defined]
    return 0


def TestOneInput(data: bytes) -> None:
    """Entry point for atheris/libFuzzer drivers that import this module."""
    try:
        check_one(data)
    except Failure as e:
        raise RuntimeError(str(e)) from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("iterations", nargs="?", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", type=Path, default=None)
    parser.add_argument("--plain", action="store_true", help="never use atheris")
    args = parser.parse_args(argv)
    try:
        path = args.vectors or find_vector_file()
    except FileNotFoundError as e:
        print(f"{e} (set HNET_INTEROP_DIR or pass --vectors)", file=sys.stderr)
        return 2
    seeds = load_vectors(path)
    if not args.plain:
        try:
            import atheris  # type: ignore[import-untyped]
        except ImportError:
            pass
        else:
            return run_atheris(atheris, seeds, args.iterations)
    return run_plain(seeds, args.iterations, args.seed)


if __name__ == "__main__":
    sys.exit(main())
