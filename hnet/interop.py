"""Check the codec against a msgpack vector file produced by the reference serializer.

The file has one vector a line, ``name<TAB>type<TAB>hex``; blank lines and lines starting with
``#`` are ignored. For each vector the bytes are decoded with the decoder for ``type``
(:data:`hnet.core.wire.DECODERS`), re-encoded, and compared with the original bytes. A row that
cannot be checked (wrong number of fields, unknown type, malformed hex) is a failure with a
reason, never an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hnet.core.wire import DECODERS, ENCODERS, CodecError

__all__ = [
    "REPO_VECTORS",
    "VECTOR_FILE_NAME",
    "VectorReport",
    "check_vector_file",
    "check_vector_lines",
    "find_vector_file",
    "format_report",
]

VECTOR_FILE_NAME = "hyperware-msgpack-vectors.tsv"
#: ``interop-tests/vectors/`` of the repository this module belongs to
REPO_VECTORS = Path(__file__).resolve().parent.parent / "interop-tests" / "vectors"


@dataclass(slots=True)
class VectorReport:
    """Outcome of a vector check: how many vectors passed, and each failure's name and reason."""

    passed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        return not self.failures and self.passed > 0


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _check_row(name: str, type_name: str, hex_text: str) -> str | None:
    """The reason this vector fails, or None if it passes."""
    decode = DECODERS.get(type_name)
    encode = ENCODERS.get(type_name)
    if decode is None or encode is None:
        return f"unknown type {type_name!r}"
    try:
        data = bytes.fromhex(hex_text)
    except ValueError as e:
        return f"malformed hex: {e}"
    if not data:
        return "empty hex"
    try:
        value = decode(data)
    except CodecError as e:
        return f"decode failed: {e}"
    except Exception as e:  # a codec bug; report it rather than crash the whole check
        return f"decode raised {type(e).__name__}: {e}"
    try:
        again = encode(value)
    except CodecError as e:
        return f"re-encode failed: {e}"
    except Exception as e:
        return f"re-encode raised {type(e).__name__}: {e}"
    if again != data:
        at = _first_difference(again, data)
        want = data[at : at + 8].hex() or "<end>"
        got = again[at : at + 8].hex() or "<end>"
        return (
            f"re-encoded bytes differ at offset {at} (expected {len(data)} bytes, "
            f"got {len(again)}; expected {want}, got {got})"
        )
    return None


def check_vector_lines(lines: list[str]) -> VectorReport:
    """Check vectors given as the lines of a vector file."""
    report = VectorReport()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            name = fields[0].strip() or f"line {number}"
            report.failures.append(
                (name, f"line {number}: expected 3 tab-separated fields, got {len(fields)}")
            )
            continue
        name, type_name, hex_text = (f.strip() for f in fields)
        reason = _check_row(name or f"line {number}", type_name, hex_text)
        if reason is None:
            report.passed += 1
        else:
            report.failures.append((name or f"line {number}", reason))
    return report


def check_vector_file(path: str | os.PathLike[str]) -> VectorReport:
    """Decode, re-encode and compare every vector in ``path``.

    Raises ``OSError`` if the file cannot be read; every problem inside it is a failure entry.
    Bytes that are not UTF-8 are replaced, so such a line fails on its own.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    return check_vector_lines(text.splitlines())


def format_report(report: VectorReport) -> list[str]:
    """One line per failure, then ``N passed, M failed``."""
    lines = [f"FAIL {name}: {reason}" for name, reason in report.failures]
    lines.append(f"{report.passed} passed, {report.failed} failed")
    return lines


def find_vector_file(directory: str | os.PathLike[str] | None = None) -> Path:
    """The reference vector file, ``hyperware-msgpack-vectors.tsv``, in ``directory`` if given,
    else in ``$HNET_INTEROP_DIR`` if set, else in the repository's ``interop-tests/vectors/``.

    There is no fallback from one to the next. Raises ``FileNotFoundError``, naming where it
    looked, when the file is not there: a missing vector file is an error, never a reason to
    skip a check.
    """
    if directory is None:
        env = os.environ.get("HNET_INTEROP_DIR")
        directory = Path(env) if env else REPO_VECTORS
    candidate = Path(directory) / VECTOR_FILE_NAME
    if not candidate.is_file():
        raise FileNotFoundError(
            f"reference vector file not found: {candidate} (the vectors ship with the repository "
            f"in interop-tests/vectors/; HNET_INTEROP_DIR overrides the directory)"
        )
    return candidate
