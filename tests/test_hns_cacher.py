import json

import pytest

from hns.cacher import (
    CacheFileError,
    LogCache,
    LogsMetadata,
    dump_log_cache,
    log_cache_filename,
    ordered_logs,
    parse_log_cache,
    read_log_cache,
    timestamp_str,
    write_log_cache,
)
from hns.events import LogMeta, mint_log
from hns.names import ROOT_HASH

META = LogsMetadata(
    chain_id="8453",
    from_block="27270412",
    to_block="27270421",
    time_created="20250102T030405Z",
    created_by="us-cacher-1.hypr@hypermap-cacher:hypermap-cacher:sys",
    signature="0x" + "ab" * 64,
)


def log_at(block: int, index: int, label: str = "os") -> dict:
    return mint_log(ROOT_HASH, label, LogMeta(block, b"\x01" * 32, b"\x02" * 32, 0, index))


def test_filename_matches_reference_pattern():
    assert (
        log_cache_filename(META)
        == "20250102T030405Z-chain8453-from27270412-to27270421-protocol0.json"
    )
    assert timestamp_str(0) == "19700101T000000Z"


def test_round_trip_and_exact_shape(tmp_path):
    cache = LogCache(metadata=META, logs=[log_at(27270412, 0)])
    path = write_log_cache(tmp_path, cache)
    assert path.name == log_cache_filename(META)
    raw = path.read_bytes()
    assert raw == dump_log_cache(cache)
    obj = json.loads(raw)
    assert list(obj) == ["metadata", "logs"]
    assert list(obj["metadata"]) == [
        "chainId",
        "fromBlock",
        "toBlock",
        "timeCreated",
        "createdBy",
        "signature",
    ]
    assert all(isinstance(v, str) for v in obj["metadata"].values())
    assert b" " not in raw  # compact, like serde_json::to_vec
    assert read_log_cache(path) == cache
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def good() -> dict:
    return {"metadata": META.to_json(), "logs": [log_at(27270412, 0)]}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("metadata"),
        lambda o: o.pop("logs"),
        lambda o: o.update(logs={}),
        lambda o: o["logs"].append("x"),
        lambda o: o["metadata"].pop("signature"),
        lambda o: o["metadata"].update(chainId=8453),
        lambda o: o["metadata"].update(fromBlock=27270412),
        lambda o: o["metadata"].update(fromBlock="0x10"),
        lambda o: o["metadata"].update(fromBlock="-1"),
        lambda o: o["metadata"].update(toBlock="27270411"),
        lambda o: o["metadata"].update(toBlock="9" * 30),
    ],
)
def test_bad_shapes_rejected(mutate):
    obj = good()
    mutate(obj)
    with pytest.raises(CacheFileError):
        parse_log_cache(json.dumps(obj))


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b"[" * 100_000, b"\xff\xfe\x00"])
def test_not_json_rejected(data):
    with pytest.raises(CacheFileError):
        parse_log_cache(data)


def test_size_cap(tmp_path):
    data = json.dumps(good()).encode()
    parse_log_cache(data, max_bytes=len(data))
    with pytest.raises(CacheFileError, match="larger"):
        parse_log_cache(data, max_bytes=len(data) - 1)
    p = tmp_path / "big.json"
    p.write_bytes(data + b" " * 1000)
    with pytest.raises(CacheFileError, match="larger"):
        read_log_cache(p, max_bytes=len(data) + 10)
    with pytest.raises(CacheFileError, match="cannot read"):
        read_log_cache(tmp_path / "missing.json")


def test_ordered_logs_sorts_and_dedups():
    a = LogCache(META, [log_at(5, 1, "b"), log_at(5, 0, "a")])
    b = LogCache(META, [log_at(3, 0, "z"), log_at(5, 1, "b")])
    pending = dict(log_at(1, 0, "p"))
    del pending["blockNumber"]
    c = LogCache(META, [{"blockNumber": "junk"}, pending])
    out = ordered_logs([a, b, c])
    assert len(out) == 5
    assert out[2:] == [log_at(3, 0, "z"), log_at(5, 0, "a"), log_at(5, 1, "b")]
