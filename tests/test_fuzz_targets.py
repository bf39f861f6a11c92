"""The fuzz targets (fuzz/targets.py) as regression tests, without atheris.

Every target's seeds and every saved crash in ``fuzz/regressions/TARGET/`` must pass its
check; a seeded mutation run per target (a few hundred inputs, deterministic) must too; and the
targets cover every parser the fuzzing README lists. The coverage-guided runs themselves are
``fuzz/run.py`` (a short budget in .ci/run; the long runs' figures in fuzz/README.md).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_codec  # noqa: E402
import targets  # noqa: E402

PARSERS = {
    "codec",
    "stream_tcp",
    "stream_ws",
    "handshake_frames",
    "quic_stream",
    "circuit_request",
    "circuit_control",
    "circuit_opening",
    "hypermap_logs",
    "cacher_file",
    "control_line",
    "wit_glue",
}


def test_every_parser_has_a_target() -> None:
    assert set(targets.TARGETS) >= PARSERS, PARSERS - set(targets.TARGETS)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_and_regressions(name: str) -> None:
    target = targets.TARGETS[name]
    seeds = target.seeds()
    assert seeds, f"{name} has no seeds"
    for seed in seeds:
        target.check(seed)
    saved = FUZZ / "regressions" / name
    for f in sorted(saved.iterdir()) if saved.is_dir() else []:
        target.check(f.read_bytes())


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeded_mutations(name: str) -> None:
    target = targets.TARGETS[name]
    seeds = target.seeds()
    rng = random.Random(name)
    for _ in range(150):
        data = fuzz_codec.mutate(rng, rng.choice(seeds), seeds)
        try:
            target.check(data)
        except Exception as e:
            raise AssertionError(f"{name}: {type(e).__name__}: {e}; input {data.hex()}") from e


def test_checks_can_fail() -> None:
    """The harness reports a decoder that lets a wrong value through (not a check that
    cannot fail): a circuit request whose re-encoding differs is caught."""
    seed = targets.TARGETS["circuit_request"].seeds()[0]
    original = targets.circuit_request.encode
    try:
        targets.circuit_request.encode = lambda req: b"\x00"  # type: ignore[assignment]
        with pytest.raises(AssertionError):
            targets.check_circuit_request(seed)
    finally:
        targets.circuit_request.encode = original  # type: ignore[assignment]
