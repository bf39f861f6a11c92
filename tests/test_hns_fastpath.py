"""The indexer's fast path and the checkpoint's orjson JSON against their general paths.

Differential tests: random valid logs and hostile variants of them (wrong-case hex, odd
lengths, whitespace, bad offsets and lengths, unknown topics, notes before their Mint,
duplicates, wrong addresses, odd types) fed to an indexer on its fast path and to one forced
through the general path must give the same records, skip counters, pending count, last block
and changed lists; the checkpoint's JSON through orjson must be json's, text and values.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from hns.events import (
    FACT_TOPIC,
    HYPERMAP_ADDRESS,
    LogMeta,
    abi_encode_bytes,
    mint_log,
    note_log,
    to_data,
)
from hns.indexer import Indexer
from hns.names import ROOT_HASH, namehash
from hns.records import encode_ip, encode_port, encode_routers

# --- the indexer -------------------------------------------------------------------------------

_ZONES = ["os", "hypr", "dev"]
_LABELS = ["alice", "bob", "carol", "dave", "eve", "r1", "r2", "x-y", "z9"]
_BAD_LABELS = ["Alice", "a_b", "a.b", "\u00e9", "a" * 64, "a" * 63, "", "~x", "a b", "-", "\x00"]
_NOTES = ["~net-key", "~ip", "~tcp-port", "~ws-port", "~quic-port", "~routers", "~other"]


def _value(rng: random.Random, note: str, names: list[str]) -> bytes:
    odd = rng.random() < 0.15  # a value of the wrong size
    if note == "~net-key":
        return rng.randbytes(31 if odd else 32)
    if note == "~ip":
        if odd:
            return rng.randbytes(rng.choice([0, 3, 5, 15]))
        ips = ["10.0.0.1", "1.2.3.4", "::1", "2001:db8::5", "::ffff:1.2.3.4"]
        return encode_ip(rng.choice(ips))
    if note.endswith("-port"):
        return rng.randbytes(3) if odd else encode_port(rng.choice([0, 1, 80, 9000, 65535]))
    if note == "~routers":
        if odd:
            return rng.randbytes(33)
        return encode_routers(rng.sample(names, rng.randint(0, 3)))
    return rng.randbytes(rng.randint(0, 40))


def _valid_logs(rng: random.Random, n: int, *, bad: float = 0.1) -> list[dict[str, object]]:
    logs: list[dict[str, object]] = []
    names = [f"{label}.{zone}" for zone in _ZONES for label in _LABELS]
    block = 100
    index = 0
    for _ in range(n):
        if rng.random() < 0.3:
            block += rng.randint(0, 3)
            index = 0
        meta = LogMeta(block, rng.randbytes(32), rng.randbytes(32), 0, index)
        index += 1
        r = rng.random()
        if r < 0.08:
            logs.append(mint_log(ROOT_HASH, rng.choice(_ZONES), meta))
        elif r < 0.3:
            zone = rng.choice([*_ZONES, "nowhere"])
            label = rng.choice(_BAD_LABELS) if rng.random() < bad else rng.choice(_LABELS)
            logs.append(mint_log(namehash(zone), label, meta))
        elif r < 0.33:
            raw = abi_encode_bytes(b"!fact", b"v")
            topics = [FACT_TOPIC, namehash(rng.choice(names)), rng.randbytes(32), rng.randbytes(32)]
            logs.append(
                {
                    "address": HYPERMAP_ADDRESS,
                    "topics": [to_data(t) for t in topics],
                    "data": to_data(raw),
                    "blockNumber": hex(block),
                    "logIndex": hex(index),
                    "removed": False,
                }
            )
        else:
            note = rng.choice(_NOTES)
            logs.append(note_log(namehash(rng.choice(names)), note, _value(rng, note, names), meta))
    return logs


def _flip_case(text: str, rng: random.Random) -> str:
    if len(text) <= 2:
        return text.upper()
    i = rng.randrange(2, len(text))
    return text[:i] + text[i:].upper() if rng.random() < 0.5 else text.upper()


def _mutate(log: dict[str, object], rng: random.Random) -> object:
    """A hostile variant of ``log`` (sometimes the log itself, or not a log at all)."""
    log = copy.deepcopy(log)
    topics = log.get("topics")
    data = log.get("data")
    choice = rng.randrange(30)
    if choice == 0:
        return rng.choice([None, 1, "log", [log], (1, 2)])
    if choice == 1 and isinstance(topics, list):
        i = rng.randrange(len(topics))
        topics[i] = _flip_case(str(topics[i]), rng)
    elif choice == 2 and isinstance(data, str):
        log["data"] = _flip_case(data, rng)
    elif choice == 3 and isinstance(data, str):
        log["data"] = data[: rng.randrange(len(data))]  # truncated, odd lengths too
    elif choice == 4 and isinstance(data, str):
        i = rng.randrange(2, len(data))
        log["data"] = data[:i] + rng.choice([" ", "\n", "g", "0", "00", "x"]) + data[i + 1 :]
    elif choice == 5 and isinstance(data, str) and len(data) > 66:
        word = rng.choice([0, 1, 31, 33, 64, 96, 128, 2**255]).to_bytes(32, "big").hex()
        start = rng.choice([2, 66, 130, 194]) if len(data) > 258 else rng.choice([2, 66])
        log["data"] = data[:start] + word + data[start + 64 :]  # an offset or a length
    elif choice == 6 and isinstance(data, str):
        log["data"] = data + rng.choice(["00" * 32, "01", "0" * 64, "ff" * 32])
    elif choice == 7 and isinstance(topics, list):
        topics[0] = to_data(rng.randbytes(32))  # an unknown event
    elif choice == 8 and isinstance(topics, list):
        topics[3] = to_data(rng.randbytes(32))  # an unknown note, or a labelhash mismatch
    elif choice == 9 and isinstance(topics, list):
        del topics[rng.randrange(len(topics))]
    elif choice == 10 and isinstance(topics, list):
        topics.append(topics[-1])
    elif choice == 11 and isinstance(topics, list):
        i = rng.randrange(len(topics))
        topics[i] = rng.choice([None, 5, ["0x00"], str(topics[i])[:-1], " " + str(topics[i])[1:]])
    elif choice == 12:
        log["removed"] = rng.choice([True, "no", None, 0, 1])
    elif choice == 13:
        log["address"] = rng.choice(
            [HYPERMAP_ADDRESS.lower(), HYPERMAP_ADDRESS.upper(), "0x" + "00" * 20, None, 5]
        )
    elif choice == 14:
        block = log.get("blockNumber")
        log["blockNumber"] = rng.choice(
            [None, "0X10", "0x", "0x" + "f" * 17, 16, str(block).upper(), " 0x1", "0x1_0"]
        )
    elif choice == 15:
        log.pop(rng.choice(["topics", "data", "address", "blockNumber", "removed"]), None)
    elif choice == 16 and isinstance(topics, list):
        log["topics"] = tuple(topics)
    elif choice == 17 and isinstance(data, str):
        log["data"] = data.encode()
    elif choice == 18 and isinstance(topics, list):
        topics[1] = _flip_case(str(topics[1]), rng)  # the parent in another case
    elif choice == 19 and isinstance(topics, list):
        topics[1] = "0X" + str(topics[1])[2:]
    elif choice == 20 and isinstance(data, str) and len(data) > 70:
        i = len(data) - 2 * rng.randrange(1, 34)  # whitespace bytes.fromhex would skip
        log["data"] = data[:i] + rng.choice(["  ", " \n", "\t0", "0 "]) + data[i + 2 :]
    return log


def _case_logs(seed: int) -> list[object]:
    rng = random.Random(seed)
    valid = _valid_logs(rng, rng.randint(50, 400))
    out: list[object] = []
    for log in valid:
        r = rng.random()
        if r < 0.2:
            out.append(_mutate(log, rng))
        elif r < 0.25 and out:
            out.append(copy.deepcopy(rng.choice(out)))  # a duplicate
        else:
            out.append(log)
    if seed % 3 == 0:
        rng.shuffle(out)  # notes before mints, blocks out of order
    return out


def _state(ix: Indexer) -> tuple[Any, ...]:
    return (ix.records(), ix.skipped, ix.pending, ix.last_block)


def _run(logs: list[object], fast: bool, chunks: list[int]) -> tuple[Any, ...]:
    ix = Indexer(max_pending=50)
    ix._fast = fast
    changed = []
    i = 0
    for size in chunks:
        part = logs[i : i + size]
        i += size
        if size == 1:
            changed.append(ix.feed(part[0]))  # type: ignore[arg-type]
        else:
            changed.append(ix.feed_all(part))  # type: ignore[arg-type]
    return (*_state(ix), changed)


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_matches_general_path(seed: int) -> None:
    logs = _case_logs(seed)
    rng = random.Random(seed + 1000)
    chunks: list[int] = []
    left = len(logs)
    while left > 0:
        size = min(left, rng.choice([1, 1, 3, 17, 100, left]))
        chunks.append(size)
        left -= size
    fast = _run(logs, True, chunks)
    general = _run(logs, False, chunks)
    assert fast == general
    assert fast[0]  # something was indexed


def test_fast_path_is_taken_and_agrees_on_clean_history() -> None:
    logs = _valid_logs(random.Random(7), 3000, bad=0)
    fast = Indexer()
    general = Indexer()
    general._fast = False
    calls = 0
    real = fast._checked

    def counting(log: Any) -> None:
        nonlocal calls
        calls += 1
        real(log)

    fast._checked = counting  # type: ignore[method-assign]
    assert fast.feed_all(logs) == general.feed_all(logs)
    assert _state(fast) == _state(general)
    assert calls == 0  # every canonical log stayed on the fast path


def test_extensions_off_matches() -> None:
    logs = _case_logs(5)
    a = Indexer(extensions=False)
    b = Indexer(extensions=False)
    b._fast = False
    assert a.feed_all(logs) == b.feed_all(logs)  # type: ignore[arg-type]
    assert _state(a) == _state(b)


def test_no_contract_matches() -> None:
    logs = _case_logs(4)
    a = Indexer(contract=None)
    b = Indexer(contract=None)
    b._fast = False
    assert a.feed_all(logs) == b.feed_all(logs)  # type: ignore[arg-type]
    assert _state(a) == _state(b)


# --- the checkpoint's JSON ---------------------------------------------------------------------


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _checkpoint_values() -> list[object]:
    logs: list[object] = list(_valid_logs(random.Random(11), 40))
    base = dict(_valid_logs(random.Random(12), 1)[0])
    odd: list[object] = [
        1.5,
        float("nan"),
        float("inf"),
        1e16,
        -0.0,
        2**64,
        -(2**63) - 1,
        2**63,
        True,
        None,
        "é",
        "\x7f",
        "a\\b",
        'a"b',
        "\n\t\x00",
        "\ud800",
        "\U0001f600",
        (1, "a"),
        [],
        {},
        {"k": [[[[1]]]]},
        _nested(40),
        _nested(300),
    ]
    for value in odd:
        logs.append({**base, "x": value})
    logs.append({**base, 1: "int key"})
    logs.append({1: "a", "1": "b"})
    return logs


@pytest.mark.parametrize("index", range(len(_checkpoint_values())))
def test_checkpoint_json_matches_json(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from hns import checkpoint

    value = _checkpoint_values()[index]
    expected = json.dumps(value, separators=(",", ":"))
    assert checkpoint._dumps(value) == expected
    assert repr(checkpoint._loads(expected)) == repr(json.loads(expected))
    monkeypatch.setattr(checkpoint, "_orjson_loads", None)
    monkeypatch.setattr(checkpoint, "_orjson_dumps", None)
    assert checkpoint._dumps(value) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a":18446744073709551616}',
        '{"a":NaN}',
        '{"a":-Infinity}',
        '{"a":1e400}',
        '{"a":"\\ud800"}',
        '{"a":"\\u00e9"}',
        '{"a":1.0}',
        '{"a":1e+16}',
        '{"a":-0}',
        '{"1":"a","1":"b"}',
        "[" * 300 + "]" * 300,
    ],
)
def test_checkpoint_loads_matches_json(text: str) -> None:
    from hns import checkpoint

    assert repr(checkpoint._loads(text)) == repr(json.loads(text))


def test_checkpoint_json_uses_orjson_for_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("orjson")
    from hns import checkpoint

    logs = _valid_logs(random.Random(13), 50)
    texts = [json.dumps(log, separators=(",", ":")) for log in logs]

    def no_json(*args: object, **kwargs: object) -> object:
        raise AssertionError("json called")

    monkeypatch.setattr(checkpoint.json, "dumps", no_json)
    monkeypatch.setattr(checkpoint.json, "loads", no_json)
    assert [checkpoint._dumps(log) for log in logs] == texts
    assert [checkpoint._loads(t) for t in texts] == logs
