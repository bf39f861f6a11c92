"""hypermap-cacher bootstrap planning (``hns.bootstrap``), without a chain: which files count,
how far they cover without a gap, de-duplication, manifests, and a cacher's HTTP API."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hns import LogCache, LogsMetadata, write_log_cache
from hns.bootstrap import BootstrapError, load_bootstrap, manifest_files, plan_bootstrap
from hns.events import to_quantity

FIRST = 100


def log(block: int, index: int, tag: str = "") -> dict[str, object]:
    return {
        "address": "0x000000000044c6b8cb4d8f0f889a3e47664eaeda",
        "topics": [],
        "data": "0x" + tag.encode().hex(),
        "blockNumber": to_quantity(block),
        "logIndex": to_quantity(index),
        "blockHash": "0x" + f"{block:064x}",
        "transactionHash": "0x" + "11" * 32,
    }


def cache(lo: int, hi: int, logs: list[dict[str, object]], chain: str = "8453") -> LogCache:
    md = LogsMetadata(
        chain_id=chain,
        from_block=str(lo),
        to_block=str(hi),
        time_created="20261201T000000Z",
        created_by="test:hnet:sys",
    )
    return LogCache(metadata=md, logs=logs)


def positions(logs: list[dict[str, object]]) -> list[tuple[int, int]]:
    return [(int(str(x["blockNumber"]), 16), int(str(x["logIndex"]), 16)) for x in logs]


def test_contiguous_files_cover_their_union_in_chain_order() -> None:
    a = cache(FIRST, 149, [log(120, 1), log(120, 0), log(101, 3)])
    b = cache(150, 199, [log(150, 0), log(199, 5)])
    plan = plan_bootstrap([("b", b), ("a", a)], chain_id=8453, first_block=FIRST)
    assert plan.covers and plan.last_block == 199 and plan.files_used == 2
    assert positions(plan.logs) == [(101, 3), (120, 0), (120, 1), (150, 0), (199, 5)]
    assert plan.problems == []


def test_a_gap_ends_the_coverage_and_later_logs_are_left_to_rpc() -> None:
    a = cache(FIRST, 149, [log(120, 0)])
    c = cache(152, 199, [log(160, 0)])
    plan = plan_bootstrap([("a", a), ("c", c)], chain_id=8453, first_block=FIRST)
    assert plan.last_block == 149 and positions(plan.logs) == [(120, 0)]
    assert any("starts at block 152" in p for p in plan.problems)


def test_coverage_must_start_at_the_first_block() -> None:
    late = cache(FIRST + 1, 200, [log(150, 0)])
    plan = plan_bootstrap([("late", late)], chain_id=8453, first_block=FIRST)
    assert not plan.covers and plan.logs == [] and plan.last_block == FIRST - 1


def test_files_before_the_first_block_count_only_from_it() -> None:
    early = cache(0, 130, [log(5, 0), log(FIRST, 0), log(130, 2)])
    plan = plan_bootstrap([("early", early)], chain_id=8453, first_block=FIRST)
    assert plan.last_block == 130 and positions(plan.logs) == [(FIRST, 0), (130, 2)]


def test_other_chains_are_skipped_overlaps_deduplicated_conflicts_reported() -> None:
    a = cache(FIRST, 150, [log(110, 0), log(140, 0, "x")])
    b = cache(140, 180, [log(140, 0, "y"), log(110, 0), log(170, 1)])  # overlaps a
    other = cache(FIRST, 999, [log(500, 0)], chain="1")
    plan = plan_bootstrap([("a", a), ("b", b), ("o", other)], chain_id=8453, first_block=FIRST)
    assert plan.last_block == 180 and plan.files_seen == 3 and plan.files_used == 2
    assert positions(plan.logs) == [(110, 0), (140, 0), (170, 1)]
    assert plan.logs[1]["data"] == "0x" + b"x".hex()  # the first file's, in file order
    assert any("chain 1, not 8453" in p for p in plan.problems)
    assert any("1 logs conflict" in p for p in plan.problems)


def test_logs_without_a_position_are_skipped_and_counted() -> None:
    bad = {"address": "0x00", "topics": []}
    plan = plan_bootstrap(
        [("a", cache(FIRST, 110, [bad, log(105, 0)]))], chain_id=8453, first_block=FIRST
    )
    assert positions(plan.logs) == [(105, 0)]
    assert any("1 logs without a valid block number" in p for p in plan.problems)


def test_directory_loading_skips_bad_files_and_the_manifest(tmp_path: Path) -> None:
    write_log_cache(tmp_path, cache(FIRST, 150, [log(120, 0)]))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "manifest.json").write_text(json.dumps({"items": {}}))
    plan = load_bootstrap(str(tmp_path), chain_id=8453, first_block=FIRST)
    assert plan.last_block == 150 and positions(plan.logs) == [(120, 0)]
    assert plan.files_seen == 1 and any("broken.json" in p for p in plan.problems)


def test_a_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match="no such directory"):
        load_bootstrap(str(tmp_path / "nope"), chain_id=8453, first_block=FIRST)


def test_manifest_files_skip_empty_ranges_and_unsafe_names() -> None:
    manifest = {
        "items": {
            "a": {"fileName": "a.json", "isEmpty": False},
            "b": {"fileName": "", "isEmpty": True},
            "c": {"fileName": "../etc/passwd", "isEmpty": False},
            "d": {"fileName": "x/y.json"},
            "e": "not an object",
        }
    }
    assert manifest_files(manifest) == ["a.json"]
    assert manifest_files({"no": "items"}) is None
    assert manifest_files([1, 2]) is None


class _Cacher(http.server.BaseHTTPRequestHandler):
    """The reference cacher's HTTP API over a directory: /manifest and /log-cache/NAME."""

    root: Path

    def do_GET(self) -> None:
        if self.path == "/cacher/manifest":
            items = {
                p.name: {"fileName": p.name, "isEmpty": False, "fileHash": "", "metadata": {}}
                for p in sorted(self.root.glob("*.json"))
            }
            items["ghost"] = {"fileName": "ghost.json", "isEmpty": False, "metadata": {}}
            body = json.dumps({"items": items, "chain_id": "8453"}).encode()
        elif self.path.startswith("/cacher/log-cache/"):
            path = self.root / self.path.rsplit("/", 1)[1]
            if not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cacher(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (_Cacher,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cacher", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_bootstrap_reads_the_manifest_then_each_file(cacher: tuple[str, Path]) -> None:
    url, root = cacher
    write_log_cache(root, cache(FIRST, 150, [log(120, 0)]))
    write_log_cache(root, cache(151, 160, [log(155, 2)]))
    plan = load_bootstrap(url, chain_id=8453, first_block=FIRST)
    assert plan.last_block == 160 and positions(plan.logs) == [(120, 0), (155, 2)]
    # A file the manifest lists but the server lacks is a problem, not a failure.
    assert any(p.startswith("ghost.json: HTTP 404") for p in plan.problems)
    assert load_bootstrap(url + "/", chain_id=8453, first_block=FIRST).last_block == 160


def test_http_errors_are_one_line(cacher: tuple[str, Path]) -> None:
    url, _ = cacher
    with pytest.raises(BootstrapError, match="manifest: HTTP 404"):
        load_bootstrap(url + "/wrong", chain_id=8453, first_block=FIRST)
    with pytest.raises(BootstrapError, match="manifest"):
        load_bootstrap("http://127.0.0.1:1", chain_id=8453, first_block=FIRST, timeout=2)
