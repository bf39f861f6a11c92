#!/usr/bin/env python3
"""Run the fuzz targets of fuzz/targets.py under atheris (coverage-guided, libFuzzer).

    python fuzz/run.py TARGET [--runs N | --seconds S]      one target, in this process
    python fuzz/run.py --all [--runs N | --seconds S] [--json FILE] [--only a,b]

``--all`` runs each target in its own process (libFuzzer runs one target per process) and
prints a table: runs, seconds, runs/s, corpus size, and crashes. A crash's input is saved in
``fuzz/crashes/TARGET/`` (move it to ``fuzz/regressions/TARGET/`` once fixed: the regression
test replays every file there). Exit 1 if any target crashed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def _one(name: str, runs: int | None, seconds: int | None) -> int:
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(
        include=["hnet", "hns", "fuzz_codec", "fuzz_framing", "targets"]
    ):
        import targets
    target = targets.TARGETS.get(name)
    if target is None:
        print(f"unknown target {name!r}; known: {', '.join(targets.TARGETS)}", file=sys.stderr)
        return 2
    corpus = Path(tempfile.mkdtemp(prefix=f"hnet-fuzz-{name}-"))
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    regressions = FUZZ / "regressions" / name
    if regressions.is_dir():
        for f in regressions.iterdir():
            (corpus / f"reg-{f.name}").write_bytes(f.read_bytes())
    crashes = FUZZ / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], "-max_len=300000", "-rss_limit_mb=4096", f"-artifact_prefix={crashes}/"]
    if runs is not None:
        argv.append(f"-runs={runs}")
    if seconds is not None:
        argv.append(f"-max_total_time={seconds}")
    argv.append(str(corpus))
    atheris.Setup(argv, target.check)
    atheris.Fuzz()
    return 0


def _all(runs: int | None, seconds: int | None, only: list[str] | None, out: Path | None) -> int:
    sys.path.insert(0, str(FUZZ))
    import targets

    names = only or list(targets.TARGETS)
    rows = []
    failed = False
    for name in names:
        cmd = [sys.executable, str(Path(__file__).resolve()), name]
        if runs is not None:
            cmd += ["--runs", str(runs)]
        if seconds is not None:
            cmd += ["--seconds", str(seconds)]
        start = time.monotonic()
        budget = (seconds or 0) + 600 if runs is not None else (seconds or 60) + 120
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False)
            err, code = proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            err, code = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else "", -1
        elapsed = time.monotonic() - start
        done = _DONE.search(err)
        stats = _STAT.findall(err)
        n = int(done.group(1)) if done else (int(stats[-1][0]) if stats else 0)
        row = {
            "target": name,
            "runs": n,
            "seconds": round(elapsed, 1),
            "runs_per_s": round(n / elapsed) if elapsed else 0,
            "coverage": int(stats[-1][1]) if stats else 0,
            "corpus": int(stats[-1][3]) if stats else 0,
            "crashed": code != 0,
        }
        if code != 0:
            failed = True
            tail = "\n".join(err.strip().splitlines()[-25:])
            print(f"== {name}: exit {code}\n{tail}", file=sys.stderr)
        rows.append(row)
        print(
            f"{name:18} {row['runs']:>10,} runs {row['seconds']:>7.1f} s "
            f"{row['runs_per_s']:>8,}/s  cov {row['coverage']:>5}  corpus {row['corpus']:>5}  "
            f"{'CRASH' if row['crashed'] else 'ok'}",
            flush=True,
        )
    if out is not None:
        out.write_text(json.dumps({"targets": rows}, indent=2) + "\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", nargs="?")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--only", type=lambda s: [x for x in s.split(",") if x])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.runs is None and args.seconds is None:
        args.seconds = 60
    if args.all == (args.target is not None):
        parser.error("give one TARGET or --all")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install atheris)", file=sys.stderr)
        return 2
    if args.all:
        return _all(args.runs, args.seconds, args.only, args.json)
    os.environ.setdefault("HNET_LOG_LEVEL", "critical")
    return _one(args.target, args.runs, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
