"""The chain source's pure parts, without a chain: how providers' errors are read, URL
redaction, backoff, progress figures, and the SQLite checkpoint."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hns import (
    HYPERMAP_ADDRESS,
    LogMeta,
    RetryPolicy,
    SyncProgress,
    mint_log,
    note_log,
)
from hns.checkpoint import (
    HASH_WINDOW,
    ChainIdentity,
    Checkpoint,
    CheckpointError,
    Cursor,
    checkpoint_path,
    find_checkpoints,
    read_status,
)
from hns.names import ROOT_HASH, namehash
from hns.sources.chain import chain_name, classify_rpc_error, range_hint, redact_url

# --- provider errors ---------------------------------------------------------------------------

RANGE_MESSAGES = [
    (-32005, "query returned more than 10000 results"),
    (-32602, "Query returned more than 10000 results. Try with this block range [0x1, 0x2]."),
    (-32000, "block range is too wide"),
    (-32602, "exceed maximum block range: 5000"),
    (-32600, "eth_getLogs block range too large, range: 3000, max: 2000"),
    (
        -32602,
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K "
        "block range and no limit on the response size, or you can request any block range with "
        "a cap of 10K logs in the response. Based on your parameters, this block range should "
        "work: [0x1a01d0b, 0x1a0250a]",
    ),
    (-32005, "eth_getLogs is limited to a 10,000 blocks range"),
    (-32000, "response size should not greater than 10000000 bytes"),
    (-32600, "requested too many blocks from 0 to 20000, maximum is set to 10000"),
    (-32000, "query timeout exceeded"),
]
TRANSIENT_MESSAGES = [
    (429, "Too Many Requests"),
    (-32005, "daily request count exceeded, request rate limited"),
    (-32000, "header not found"),
    (-32602, "BlockOutOfRangeError: block height is 27270412 but requested was 27270413"),
    (-32603, "internal error"),
    (-32000, "Your app has exceeded its compute units per second capacity"),
    (-32001, "Resource not found"),
]
FATAL_MESSAGES = [
    (-32601, "the method eth_getLogs does not exist/is not available"),
    (-32602, "invalid argument 0: hex string without 0x prefix"),
    (None, "something else"),
]


@pytest.mark.parametrize(("code", "message"), RANGE_MESSAGES)
def test_range_and_size_errors_ask_for_less(code: int, message: str) -> None:
    assert classify_rpc_error(code, message) == "range"


@pytest.mark.parametrize(("code", "message"), TRANSIENT_MESSAGES)
def test_busy_and_lagging_providers_are_retried(code: int, message: str) -> None:
    assert classify_rpc_error(code, message) == "transient"


@pytest.mark.parametrize(("code", "message"), FATAL_MESSAGES)
def test_other_errors_are_fatal(code: int | None, message: str) -> None:
    assert classify_rpc_error(code, message) == "fatal"


def test_range_hints() -> None:
    assert range_hint(RANGE_MESSAGES[5][1]) == 0x1A0250A - 0x1A01D0B + 1  # the suggestion wins
    assert range_hint("exceed maximum block range: 5000") == 5000
    assert range_hint("eth_getLogs is limited to a 10,000 blocks range") == 10_000
    assert range_hint("you can make requests with up to a 2K block range") == 2000
    assert range_hint("eth_getLogs block range too large, range: 3000, max: 2000") == 2000
    assert range_hint("query returned more than 10000 results") is None
    assert range_hint("block range is too wide") is None


def test_urls_are_redacted_for_messages() -> None:
    assert redact_url("https://base-mainnet.g.alchemy.com/v2/SECRETKEY") == (
        "https://base-mainnet.g.alchemy.com/…"
    )
    assert redact_url("wss://user:pw@example.org:8546/?key=1") == "wss://example.org:8546/…"
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("http://[::1]:8545/") == "http://[::1]:8545"
    assert chain_name(8453) == "8453 (Base)" and chain_name(777) == "777"


def test_backoff_is_bounded_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    delays = [policy.delay(a, rng) for a in range(10) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100  # jittered
    assert max(policy.delay(0, rng) for _ in range(200)) <= 0.5
    assert policy.delay(0, rng, retry_after=3.0) >= 3.0
    assert policy.delay(0, rng, retry_after=60.0) <= 4.0


def test_progress_figures() -> None:
    p = SyncProgress(100, 149, 199, 211, 7, 1.0, 1.0, 1.0)
    assert (p.done, p.total, p.synced) == (50, 100, False)
    assert SyncProgress(100, 199, 199, 211, 7, 1.0, 1.0, 1.0).synced
    assert SyncProgress(100, None, None, None, 0, 0, 0, 1).done == 0


# --- the checkpoint ----------------------------------------------------------------------------

IDENTITY = ChainIdentity(8453, HYPERMAP_ADDRESS.lower(), 1000)


def logs_in(block: int, n: int) -> list[dict[str, object]]:
    meta = [LogMeta(block, bytes([block % 256]) * 32, bytes(32), log_index=i) for i in range(n)]
    out = [mint_log(ROOT_HASH, f"z{block}", meta[0])]
    out += [note_log(namehash(f"z{block}"), "~ip", b"\x01\x02\x03\x04", m) for m in meta[1:]]
    return out


def test_commit_read_resume(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, 8453, HYPERMAP_ADDRESS)
    assert path == tmp_path / "hns" / f"chain8453-{HYPERMAP_ADDRESS.lower()}.sqlite"
    ck = Checkpoint(path, IDENTITY)
    assert ck.cursor() is None and ck.count() == 0
    a, b = logs_in(1001, 3), logs_in(1005, 2)
    ck.commit(a, Cursor(1003, "0xaa"), {1001: "0x01"})
    ck.commit(b, Cursor(1010, "0xbb"), {1005: "0x05"}, head=1020)
    assert ck.logs_after((-1, -1)) == a + b
    assert ck.logs_after((1001, 2)) == b
    assert ck.logs_after((1005, 1)) == []
    ck.close()
    again = Checkpoint(path, IDENTITY)  # a restart sees every commit
    assert again.cursor() == Cursor(1010, "0xbb")
    assert again.recent_hashes() == [(1001, "0x01"), (1003, "0xaa"), (1005, "0x05"), (1010, "0xbb")]
    status = again.status()
    assert (status.logs, status.head, status.first_block) == (5, 1020, 1000)
    assert read_status(path) == status
    assert find_checkpoints(tmp_path) == [path]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_a_range_is_never_stored_twice(tmp_path: Path) -> None:
    ck = Checkpoint(None, IDENTITY)
    ck.commit(logs_in(1001, 2), Cursor(1002, "0x02"), {})
    with pytest.raises(CheckpointError, match="overlaps"):
        ck.commit(logs_in(1002, 1), Cursor(1004, "0x04"), {})
    with pytest.raises(CheckpointError, match="overlaps"):
        ck.commit(logs_in(1009, 1), Cursor(1004, "0x04"), {})  # a log beyond the new cursor
    with pytest.raises(CheckpointError, match="overlaps"):
        ck.commit([], Cursor(1001, "0x01"), {})  # the cursor going back
    assert ck.count() == 2 and ck.cursor() == Cursor(1002, "0x02")


def test_rollback_keeps_the_canonical_prefix() -> None:
    ck = Checkpoint(None, IDENTITY)
    ck.commit(logs_in(1001, 2), Cursor(1001, "0x01"), {})
    ck.commit(logs_in(1002, 2), Cursor(1002, "0x02"), {})
    ck.commit(logs_in(1003, 2), Cursor(1003, "0x03"), {})
    assert ck.rollback(1001) == Cursor(1001, "0x01")
    assert ck.logs_after((-1, -1)) == logs_in(1001, 2)
    assert ck.recent_hashes() == [(1001, "0x01")]
    ck.commit(logs_in(1002, 1), Cursor(1002, "0x22"), {})  # the new branch
    assert ck.count() == 3
    assert ck.rollback(999) is None  # below everything: empty
    assert ck.count() == 0 and ck.cursor() is None


def test_the_hash_window_is_bounded() -> None:
    ck = Checkpoint(None, IDENTITY)
    for i in range(HASH_WINDOW + 50):
        ck.commit([], Cursor(1000 + i, f"0x{i:x}"), {})
    hashes = ck.recent_hashes()
    assert len(hashes) == HASH_WINDOW and hashes[-1][0] == 1000 + HASH_WINDOW + 49


def test_another_identity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Checkpoint(path, IDENTITY).close()
    with pytest.raises(CheckpointError, match="made for chain_id 8453, not 1"):
        Checkpoint(path, ChainIdentity(1, IDENTITY.contract, 1000))
    with pytest.raises(CheckpointError, match="made for first_block 1000, not 5"):
        Checkpoint(path, ChainIdentity(8453, IDENTITY.contract, 5))
    path.with_name("junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CheckpointError):
        Checkpoint(path.with_name("junk.sqlite"), IDENTITY)


def test_using_the_chain_source_leaves_the_recursion_limit_alone() -> None:
    """web3 pulls in py_ecc, which raises the recursion limit to 100,000 on import; then a
    hostile ``[[[[…`` cache file would segfault the node instead of being rejected."""
    code = (
        "import asyncio, sys\n"
        "from hns import ChainSource, RetryPolicy, SourceError\n"
        "before = sys.getrecursionlimit()\n"
        "src = ChainSource('http://127.0.0.1:9', retry=RetryPolicy(attempts=1))\n"
        "async def main():\n"
        "    try:\n"
        "        await src.read_new()\n"
        "    except SourceError:\n"
        "        pass\n"
        "    await src.aclose()\n"
        "asyncio.run(main())\n"
        "assert 'web3' in sys.modules\n"
        "print(before, sys.getrecursionlimit())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert before == after


def test_a_chain_source_is_a_resettable_log_source() -> None:
    from hns import ChainSource, LogSource

    src = ChainSource("https://example.invalid/v2/KEY")
    assert isinstance(src, LogSource) and src.resettable
    assert src.name == "chain https://example.invalid/…"
    assert src.confirmations == 12 and src.identity.chain_id == 8453


# --- the PKI and SourceReset (a scripted source, no chain) -----------------------------------


class ScriptedSource:
    """A resettable source answering ``read_new`` from a script of log lists and exceptions."""

    resettable = True

    def __init__(self, name: str, script: list[object]) -> None:
        self.name = name
        self.script = script

    async def read_new(self) -> list[dict[str, object]]:
        step = self.script.pop(0) if self.script else []
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, list)
        return step

    def take_problems(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


def registration(name: str, ip: str, block: int) -> list[dict[str, object]]:
    from hns import encode_ip, encode_net_key

    meta = [LogMeta(block, bytes(32), bytes(32), log_index=i) for i in range(3)]
    label, _, zone = name.partition(".")
    return [
        mint_log(namehash(zone), label, meta[0]),
        note_log(namehash(name), "~net-key", encode_net_key(bytes(32)), meta[1]),
        note_log(namehash(name), "~ip", encode_ip(ip), meta[2]),
    ]


async def test_pki_keeps_its_view_until_the_replay_arrives() -> None:
    from hnet.net.pki import Pki, PkiChange
    from hns import SourceError, SourceReset

    zone = [mint_log(ROOT_HASH, "os", LogMeta(1, bytes(32), bytes(32)))]
    a = ScriptedSource(
        "chain a",
        [
            zone + registration("alice.os", "10.0.0.1", 2),
            SourceReset("chain a", 2, "test"),
            SourceError("chain a: down"),  # the replay cannot be read at once ...
            zone + registration("alice.os", "10.0.0.9", 2),  # ... but on the next poll
        ],
    )
    b = ScriptedSource("chain b", [registration("bob.os", "10.0.0.2", 5)])  # kept for a's reset
    pki = Pki([a, b], poll_interval=3600, contract=None)
    changes: list[PkiChange] = []
    pki.subscribe(changes.append)
    await pki._read_sources()
    assert pki.record("alice.os").ips == ("10.0.0.1",)  # type: ignore[union-attr]
    await pki._read_sources()  # the reset, then a failed replay: the old view stays
    assert pki.record("alice.os").ips == ("10.0.0.1",)  # type: ignore[union-attr]
    await pki._read_sources()  # the replay: rebuilt, bob (from the other source) kept
    assert pki.record("alice.os").ips == ("10.0.0.9",)  # type: ignore[union-attr]
    assert pki.record("bob.os") is not None
    assert pki.stats["resets"] == 1
    assert [c.new.ips for c in changes if c.name == "alice.os" and c.new] == [
        ("10.0.0.1",),
        ("10.0.0.9",),
    ]
    await pki.aclose()


def test_missing_tools_are_named_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import hnet.testing.chain as tc

    monkeypatch.setattr(tc, "NPM_PREFIX", tmp_path / "nothing")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("HNET_ANVIL", raising=False)
    monkeypatch.delenv("HNET_SOLCJS", raising=False)
    with pytest.raises(tc.ToolMissing, match=r"anvil \(npm package @foundry-rs/anvil-linux-amd64"):
        tc.find_anvil()
    with pytest.raises(tc.ToolMissing, match=r"npm install --prefix .cache/npm"):
        tc.compile_hypermap_test(tmp_path / "build")
