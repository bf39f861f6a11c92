"""``hns.cacher``'s msgspec decoding against ``json.loads``.

Differential tests: cache files (valid ones, then mutated as text and as bytes: other value
types, unknown keys, duplicate keys, escapes, surrogates, invalid UTF-8, BOMs, deep nesting,
truncation) must parse to exactly ``json.loads``' values (types and key order included) or be
refused exactly when ``json.loads`` refuses them, and ``parse_log_cache`` must then give the
same cache or the same error. And ``ordered_logs`` against a plain reference (exact JSON
duplicates dropped, a stable sort by position) on overlapping, shuffled, odd caches.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from hns import cacher
from hns.cacher import LogCache, LogsMetadata, dump_log_cache, parse_log_cache
from hns.events import LogMeta, mint_log, note_log
from hns.names import ROOT_HASH

META = LogsMetadata("8453", "100", "200", "20250102T030405Z", "a@b:c:d", "0x" + "ab" * 65)

needs_msgspec = pytest.mark.skipif(cacher._decode_typed is None, reason="msgspec not installed")


def _file(rng: random.Random, n: int) -> bytes:
    logs: list[dict[str, object]] = []
    for i in range(n):
        meta = LogMeta(100 + i // 3, rng.randbytes(32), rng.randbytes(32), i % 3, i)
        if rng.random() < 0.3:
            logs.append(mint_log(ROOT_HASH, f"n{i}", meta))
        else:
            logs.append(note_log(rng.randbytes(32), "~ip", rng.randbytes(4), meta))
    return dump_log_cache(LogCache(META, logs))


def _same(a: object, b: object) -> bool:
    """Equal values of exactly the same types, dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b  # NaN
    return a == b


def _outcome(fn: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        return ("ok", fn(data))
    except RecursionError:
        return ("error", "RecursionError")
    except ValueError as e:  # json's errors, UnicodeDecodeError, CacheFileError
        return ("error", type(e).__name__)


def _check(data: bytes | str) -> bool:
    """msgspec's decoding gives json's metadata and logs, or leaves the file to json; and
    ``parse_log_cache`` gives the same cache or error as with json alone."""
    assert cacher._decode_typed is not None
    typed = cacher._decode_typed(data)
    if typed is not None:
        meta, logs, dicts = typed
        obj = json.loads(data)  # must not raise
        assert type(obj) is dict and set(obj) == {"metadata", "logs"}, data[:200]
        assert _same(obj["metadata"], meta), data[:200]
        assert _same(obj["logs"], logs), data[:200]
        assert dicts and all(type(log) is dict for log in logs)
    want = _outcome(_parse_with_json, data)
    got = _outcome(parse_log_cache, data)
    assert want[0] == got[0], (data[:200], want, got)
    if want[0] == "ok":
        assert _same(want[1].logs, got[1].logs), data[:200]
        assert want[1].metadata == got[1].metadata
    else:
        assert want == got, data[:200]
    return typed is not None


def _parse_with_json(data: bytes | str) -> LogCache:
    saved = cacher._decode_typed
    cacher._decode_typed = None
    try:
        return parse_log_cache(data)
    finally:
        cacher._decode_typed = saved


_SNIPPETS = [
    "1",
    "-0",
    "1.5",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "123456789012345678901234567890",
    "true",
    "false",
    "null",
    '"x"',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\/\\b\\f\\n\\r\\t"',
    '"\\x"',
    '"\x01"',
    '"\x7f"',
    '"\u00e9\u4e2d\U0001f600"',
    "[]",
    "{}",
    '["a",1]',
    '["a",null]',
    '[["a"]]',
    '{"a":"b"}',
    "[" * 50 + "]" * 50,
    "01",
    "[1,]",
    "1.",
    ".5",
    "+1",
]
_BYTES = [
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x00",
    b"\xef\xbb\xbf",
]


def _mutate_text(rng: random.Random, text: str) -> str:
    """One change at a random JSON value or key of ``text``."""
    choice = rng.randrange(9)
    starts = [i for i, c in enumerate(text) if c in ':,[{"']
    at = rng.choice(starts) if starts else 0
    if choice == 0:  # a value replaced by a snippet
        i = text.find(":", at)
        if i < 0:
            return text + " "
        j = i + 1
        if text[j : j + 1] == '"':
            j = text.find('"', j + 1) + 1 or len(text)
        elif text[j : j + 1] in ("[", "{"):
            j = text.find("]" if text[j] == "[" else "}", j) + 1 or len(text)
        else:
            while j < len(text) and text[j] not in ",}]":
                j += 1
        return text[: i + 1] + rng.choice(_SNIPPETS) + text[j:]
    if choice == 1:  # an extra key in an object
        i = text.find("{", at)
        if i < 0:
            return text
        return (
            text[: i + 1]
            + f'"{rng.choice(["extra", "logs", "metadata", "data"])}":'
            + (rng.choice(_SNIPPETS) + "," + text[i + 1 :])
        )
    if choice == 2:  # a topic or list element replaced
        i = text.find("[", at)
        if i < 0:
            return text
        return text[: i + 1] + rng.choice(_SNIPPETS) + "," + text[i + 1 :]
    if choice == 3:  # truncated
        return text[: rng.randrange(len(text))]
    if choice == 4:  # an escape inside a string
        i = max(text.find('"', at), 0)
        return (
            text[: i + 1] + rng.choice(["\\u0041", "\\ud800", "\\n", "\\\\", "\\q"]) + text[i + 1 :]
        )
    if choice == 5:  # whitespace around, or trailing data
        return rng.choice([" ", "\n", "\t", "\r"]) + text + rng.choice([" ", "x", "{}", ""])
    if choice == 6:  # the top level replaced
        return rng.choice(['{"logs":[],"metadata":{}}', "[]", '"x"', "null", '{"metadata":1}'])
    if choice == 7:  # a duplicate key
        i = text.find('{"', at)
        if i < 0:
            return text
        end = text.find('"', i + 2)
        if end < 0:
            return text
        key = text[i + 1 : end + 1]
        return text[: i + 1] + key + ':"dup",' + text[i + 1 :]
    return text.replace('"removed":false', '"removed":' + rng.choice(_SNIPPETS), 1)


@needs_msgspec
def test_valid_files_match_json() -> None:
    rng = random.Random(1)
    for n in (0, 1, 5, 40):
        data = _file(rng, n)
        assert _check(data)
        assert _check(data.decode())


@needs_msgspec
@pytest.mark.parametrize("seed", range(4))
def test_mutated_files_match_json(seed: int) -> None:
    rng = random.Random(seed)
    base = _file(rng, 6).decode()
    typed = 0
    for _ in range(400):
        text = base
        for _ in range(rng.randint(1, 3)):
            text = _mutate_text(rng, text)
        typed += _check(text)
        raw = text.encode("utf-8", "surrogatepass")
        _check(raw)
        if rng.random() < 0.3:  # raw bytes spliced in
            i = rng.randrange(len(raw) + 1)
            _check(raw[:i] + rng.choice(_BYTES) + raw[i:])
        if rng.random() < 0.1:
            _check(text.encode("utf-16"))
            _check(b"\xef\xbb\xbf" + raw)
    assert 40 < typed < 360  # both paths taken


@needs_msgspec
def test_odd_inputs_match_json() -> None:
    good = _file(random.Random(2), 2)
    for data in [
        b"",
        b"{",
        b"[]",
        b"null",
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"metadata":' * 5000 + b"{}" + b"}" * 5000,
        b"\xff\xfe\x00",
        good.replace(b'"logs":[', b'"logs":[' + b"[" * 3000 + b"]" * 3000 + b",", 1),
        good.replace(b'"metadata":{', b'"metadata":{"x":"\\ud800",', 1),
        good.replace(b'"metadata":{', b'"metadata":{"x":1e999,', 1),
        good.replace(b'"data":"', b'"data":"\xed\xa0\x80', 1),
        good.replace(b'"removed":false', b'"removed":"\\udfff"', 1),
        good + b" ",
        b" " + good,
        good.decode()
        .replace('"removed":false', '"removed":"\ud800"')
        .encode("utf-8", "surrogatepass"),
    ]:
        _check(data)
    _check(good.decode().replace('"removed":false', '"removed":"\ud800"'))


# --- ordered_logs against a plain reference ----------------------------------------------------


def _reference_order(caches: list[LogCache]) -> list[dict[str, object]]:
    """Exact duplicates (same JSON, keys sorted) dropped, the rest stably sorted by position."""
    seen: set[str] = set()
    kept: list[dict[str, object]] = []
    for cache in caches:
        for log in cache.logs:
            key = json.dumps(log, sort_keys=True, separators=(",", ":"))
            if key not in seen:
                seen.add(key)
                kept.append(log)
    return sorted(kept, key=cacher._position)


class _Str(str):
    pass


@pytest.mark.parametrize("seed", range(6))
def test_ordered_logs_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    pool: list[dict[str, object]] = []
    for i in range(60):
        meta = LogMeta(100 + i // 4, bytes([i // 4]) * 32, rng.randbytes(32), 0, i % 4)
        pool.append(mint_log(ROOT_HASH, f"n{i}", meta))
    odd_values: list[object] = [None, 5, "0x", "0xZZ", "0x" + "f" * 17, "7", [], _Str("0x1"), True]
    for _ in range(30):
        caches: list[LogCache] = []
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(len(pool))
            logs = [dict(log) for log in pool[start : start + rng.randint(0, 30)]]
            for log in logs:
                r = rng.random()
                if r < 0.05:
                    log[rng.choice(["blockNumber", "logIndex", "blockHash", "transactionHash"])] = (
                        rng.choice(odd_values)
                    )
                elif r < 0.08:
                    log.pop(rng.choice(["blockNumber", "logIndex", "blockHash"]))
                elif r < 0.12:
                    log["data"] = "0x"  # a different log at the same place
                elif r < 0.15:
                    log["blockHash"] = _Str(log["blockHash"])  # same JSON as a plain str
            if rng.random() < 0.3:
                rng.shuffle(logs)
            if rng.random() < 0.2 and logs:
                logs.append(dict(rng.choice(logs)))  # a duplicate in the same file
            caches.append(LogCache(META, logs))
        got = cacher.ordered_logs(caches)
        want = _reference_order(caches)
        assert [id(x) for x in got] == [id(x) for x in want]
