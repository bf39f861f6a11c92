"""Sum a py-spy profile by owner: our code, the libraries under it, the event loop, the
interpreter, the kernel's system calls.

    py-spy record --native --rate 100 --format raw -o spy.txt -- \\
        python bench/profile_bench.py KEY --run-for 20
    python bench/spy_owners.py spy.txt [--within measure] [--top 15]

A sampling profiler does not slow Python code down the way cProfile does (cProfile's own cost
falls on every Python call, so it inflates code made of many small calls, such as ours), so its
shares are the ones to quote. Each sample is charged to its innermost frame ("own time"): a
Python frame of ``hnet/`` is our code (the interpreter running it included), a native frame is
charged to the library it is in. Only samples whose stack holds a frame named ``--within``
count (default ``Runner.run``, asyncio's runner, under uvloop too: the imports before it do
not; the benchmark's set-up does, and is short beside ``--run-for``). The event loop's own
native frames are not a good mark: py-spy's merge of native and Python frames leaves them
out of some stacks.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from collections.abc import Iterable
from pathlib import Path

#: (owner, patterns on the frame's "function (file:line)" text); the first match wins
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hnet (ours)", (r"\(hnet/",)),
    ("QUIC library (qh3, aioquic)", (r"\(qh3/", r"\(aioquic/", r"_hazmat", r"pylsqpack")),
    (
        "crypto library (cryptography, hashlib)",
        (r"\(cryptography/", r"blake2", r"\(hashlib", r"\(hmac", r"libcrypto"),
    ),
    (
        "system calls (sockets, epoll)",
        (
            r"^(sendto|recvfrom|sendmsg|recvmsg|send|recv|read|write|writev|epoll_p?wait|getpid)"
            r" \(libc",
        ),
    ),
    ("event loop (asyncio, uvloop)", (r"\(asyncio/", r"uvloop", r"\(loop\.c", r"\(libuv", r"uv_")),
    ("garbage collector", (r"^gc_", r"gc\.c")),
    ("benchmark harness", (r"\([a-z_]+\.py(:\d+)?\)$",)),
)
INTERPRETER = "interpreter (CPython, malloc)"
_COMPILED = [(label, [re.compile(p) for p in pats]) for label, pats in OWNERS]


def owner(frame: str) -> str:
    for label, patterns in _COMPILED:
        if any(p.search(frame) for p in patterns):
            return label
    return INTERPRETER


def samples(lines: Iterable[str], within: str) -> Iterable[tuple[list[str], int]]:
    """(frames outermost first, count) of each stack of py-spy's raw format that holds a
    frame whose function is ``within``."""
    mark = re.compile(rf"(^|[.;]){re.escape(within)} \(")
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit() and mark.search(stack):
            yield stack.split(";"), int(count)


def summarize(path: Path, within: str, top: int) -> str:
    by_owner: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    with path.open(encoding="utf-8", errors="replace") as f:
        for frames, n in samples(f, within):
            leaf = frames[-1]
            by_owner[owner(leaf)] += n
            by_leaf[re.sub(r":\d+\)$", ")", leaf)] += n
    total = sum(by_owner.values())
    if total == 0:
        raise SystemExit(f"{path}: no sample inside a frame named {within!r}")
    out = [f"{total} samples inside {within}(), own time by owner:"]
    for label, n in by_owner.most_common():
        out.append(f"  {100 * n / total:5.1f} %  {label}")
    out.append(f"largest functions (own time, lines merged), top {top}:")
    for leaf, n in by_leaf.most_common(top):
        out.append(f"  {100 * n / total:5.1f} %  [{owner(leaf)}]  {leaf}")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("path", type=Path, help="py-spy record --format raw output")
    p.add_argument(
        "--within",
        default="Runner.run",
        help="count only stacks through this function (default: asyncio's runner, so not the"
        " imports before it)",
    )
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    try:
        print(summarize(args.path, args.within, args.top))
    except OSError as e:
        sys.exit(f"{args.path}: {e.strerror}")


if __name__ == "__main__":
    main()
