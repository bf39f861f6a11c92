"""Record sources and the PKI that follows them: incremental registry reads, a follower that
finds later registrations, change events, rate-limited refreshes on misses, lookups without
I/O, corrupt files and clean shutdown. Real files in tmp_path; waits are on conditions with
deadlines, never fixed sleeps."""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog

from hnet.core.wire import HnsUpdate
from hnet.net.pki import Pki, PkiChange
from hns import LogSource, NodeRecord, Registry, RegistrySource, SourceError, read_log_cache
from hns.events import log_block_number, log_index

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
KEY_C = bytes(range(2, 34))
#: Long enough that only forced reads happen during a test that wants to count them.
NEVER = 3600.0


def register(reg: Registry, name: str, key: bytes = KEY_A, port: int = 9000) -> NodeRecord:
    return reg.register(name, key, ip="127.0.0.1", ports={"tcp": port})


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "it") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None


def positions(logs: list[dict[str, object]]) -> list[tuple[int, int]]:
    out = []
    for log in logs:
        block, index = log_block_number(log), log_index(log)
        assert block is not None and index is not None
        out.append((block, index))
    return out


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
async def pki(reg: Registry) -> AsyncIterator[Pki]:
    p = Pki.from_registry(reg, poll_interval=0.02, miss_interval=0.01)
    try:
        yield p
    finally:
        await p.aclose()


# --- RegistrySource ---------------------------------------------------------------------------


async def test_registry_source_is_a_log_source(reg: Registry) -> None:
    src = RegistrySource(reg)
    assert isinstance(src, LogSource)
    assert src.name == f"registry {reg.path}"


async def test_missing_directory_is_an_empty_registry(reg: Registry) -> None:
    src = RegistrySource(reg)
    assert await src.read_new() == []
    register(reg, "a.os")
    assert len(await src.read_new()) == 5  # the directory, created later, is read


async def test_read_new_is_incremental_and_never_repeats(reg: Registry) -> None:
    register(reg, "a.os")
    src = RegistrySource(reg)
    first = await src.read_new()
    # Mint os, Mint a.os, ~net-key, ~ip, ~tcp-port: the registry's block + 1 of its own
    assert len(first) == 5
    assert await src.read_new() == []
    register(reg, "b.os", KEY_B)
    second = await src.read_new()
    # Mint b.os (os is minted already) and its three notes, all in one later block
    assert len(second) == 4
    assert {b for b, _ in positions(second)} == {positions(first)[-1][0] + 1}
    assert await src.read_new() == []
    assert src.files_read == 2
    assert src.take_problems() == []


async def test_new_files_come_out_in_chain_order(reg: Registry) -> None:
    src = RegistrySource(reg)
    for i, name in enumerate(("c.os", "a.os", "b.os")):
        register(reg, name, port=9000 + i)
    logs = await src.read_new()
    assert positions(logs) == sorted(positions(logs))
    assert len({b for b, _ in positions(logs)}) == 3


async def test_late_older_file_is_returned_once_and_copies_are_dropped(
    reg: Registry, tmp_path: Path
) -> None:
    """A file that shows up late with an older block is fed anyway; an exact copy of a file
    already read under another name adds nothing."""
    staging = Registry(tmp_path / "staging")
    register(staging, "a.os")
    register(staging, "b.os", KEY_B)
    older, newer = sorted(
        staging.files(), key=lambda f: read_log_cache(f).metadata.from_block_number
    )
    reg.path.mkdir()
    src = RegistrySource(reg)
    shutil.copy(newer, reg.path / newer.name)
    got_newer = await src.read_new()
    shutil.copy(older, reg.path / older.name)
    got_older = await src.read_new()
    assert got_older and positions(got_older)[0] < positions(got_newer)[0]
    shutil.copy(older, reg.path / ("copy-" + older.name))
    assert await src.read_new() == []
    assert src.files_read == 3  # the copy was read, its logs dropped as duplicates


async def test_unlistable_registry_raises_source_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SourceError, match="cannot list"):
        await RegistrySource(Registry(not_a_dir)).read_new()


async def test_corrupt_file_is_skipped_reported_once_and_reread_when_fixed(
    reg: Registry, tmp_path: Path
) -> None:
    register(reg, "a.os")
    src = RegistrySource(reg)
    assert await src.read_new()
    bad = reg.path / "20240101T000000Z-chain8453-from1-to1-protocol0.json"
    bad.write_text("{not json")
    assert await src.read_new() == []
    problems = src.take_problems()
    assert len(problems) == 1 and bad.name in problems[0] and "not JSON" in problems[0]
    assert await src.read_new() == []
    assert src.take_problems() == []  # reported once, not on every poll
    # fixed (a new version of the file): read
    staging = Registry(tmp_path / "staging")
    register(staging, "z.os", KEY_C)
    bad.write_bytes(staging.files()[0].read_bytes())
    fixed = await src.read_new()
    assert fixed and src.take_problems() == []


async def test_file_of_another_chain_is_skipped(reg: Registry, tmp_path: Path) -> None:
    other = Registry(tmp_path / "other", chain_id=1)
    register(other, "a.os")
    reg.path.mkdir()
    shutil.copy(other.files()[0], reg.path / other.files()[0].name)
    src = RegistrySource(reg)
    assert await src.read_new() == []
    assert "chain 1, expected 8453" in src.take_problems()[0]


async def test_reads_are_bounded_by_the_file_size_cap(reg: Registry) -> None:
    register(reg, "a.os")
    src = RegistrySource(reg, max_file_bytes=100)
    assert await src.read_new() == []
    assert "larger than 100 bytes" in src.take_problems()[0]


# --- Pki on sources ---------------------------------------------------------------------------


async def test_nothing_is_known_before_start(reg: Registry) -> None:
    register(reg, "a.os")
    p = Pki.from_registry(reg)
    assert p.record("a.os") is None and len(p) == 0
    assert await p.resolve("a.os", timeout=5) is None  # not running: returns at once
    await p.start()
    try:
        assert p.record("a.os") == reg.resolve("a.os")
        assert p.networking_key("a.os") == KEY_A
        assert p.source == f"registry {reg.path}"
        assert len(p) == 2  # os and a.os: every minted name has a record
    finally:
        await p.aclose()


async def test_start_twice_makes_one_follower_and_aclose_leaves_no_task(reg: Registry) -> None:
    register(reg, "a.os")
    p = Pki.from_registry(reg, poll_interval=0.01)
    await asyncio.gather(p.start(), p.start())
    await p.start()

    def followers() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "pki follower"]

    assert len(followers()) == 1
    assert p.stats["refreshes"] == 1  # one initial read
    task = followers()[0]
    await until(lambda: p.stats["refreshes"] >= 3, what="follower polling")
    await p.aclose()
    assert task.done() and followers() == []
    await p.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        await p.start()


async def test_later_registration_found_by_resolve_and_by_record(reg: Registry) -> None:
    register(reg, "a.os")
    p = Pki.from_registry(reg, poll_interval=NEVER, miss_interval=0.01)
    await p.start()
    try:
        register(reg, "b.os", KEY_B)
        t0 = time.monotonic()
        rec = await p.resolve("b.os", timeout=5.0)
        assert rec is not None and rec.net_key == KEY_B.hex()
        assert time.monotonic() - t0 < 1.0  # the forced read, not the timeout
        assert p.record("b.os") == rec
        # an unknown name: resolve returns None after one read, well before its timeout
        t0 = time.monotonic()
        assert await p.resolve("nobody.os", timeout=5.0) is None
        assert time.monotonic() - t0 < 1.0
    finally:
        await p.aclose()


async def test_follower_poll_finds_later_registration_without_a_miss(
    pki: Pki, reg: Registry
) -> None:
    register(reg, "a.os")
    await pki.start()
    register(reg, "c.os", KEY_C)
    # no lookup of c.os until it is there: only the periodic poll can bring it
    await until(lambda: "c.os" in pki._records, what="poll reading c.os")
    assert pki.record("c.os") is not None
    assert pki.stats["misses"] == 0


async def test_subscribers_see_adds_and_changes_and_a_raising_one_is_logged(
    pki: Pki, reg: Registry
) -> None:
    register(reg, "a.os")
    await pki.start()
    seen: list[PkiChange] = []

    def broken(change: PkiChange) -> None:
        raise ValueError("subscriber bug")

    pki.subscribe(broken)
    unsubscribe = pki.subscribe(seen.append)
    with structlog.testing.capture_logs() as logs:
        register(reg, "b.os", KEY_B, port=9001)
        await until(lambda: any(c.name == "b.os" for c in seen), what="b.os added")
        add = next(c for c in seen if c.name == "b.os")
        assert add.old is None and add.new is not None and add.new.ports == {"tcp": 9001}
        # re-registration (the registry allows it): a new key and port
        register(reg, "b.os", KEY_C, port=9002)
        await until(lambda: len([c for c in seen if c.name == "b.os"]) >= 2, what="change")
    change = [c for c in seen if c.name == "b.os"][-1]
    assert change.old == add.new
    assert change.new is not None and change.new.net_key == KEY_C.hex()
    assert change.new.ports == {"tcp": 9002}
    assert any(e["event"].startswith("PKI subscriber raised") for e in logs)
    # the raising subscriber did not stop the follower, and ingest() is reported too
    seen.clear()
    pki.ingest(HnsUpdate("b.os", KEY_A.hex(), ("10.0.0.1",), {"ws": 7}, ()))
    assert len(seen) == 1 and seen[0].old == change.new
    assert seen[0].new is not None and seen[0].new.ports == {"ws": 7}
    assert pki.record("b.os") == seen[0].new
    # an overlaid name's source changes do not change what lookups see: no event
    register(reg, "b.os", KEY_B, port=9003)
    register(reg, "d.os", KEY_B)
    await until(lambda: any(c.name == "d.os" for c in seen), what="d.os added")
    assert [c.name for c in seen[1:]] == ["d.os"]
    unsubscribe()
    pki.ingest(HnsUpdate("e.os", KEY_A.hex(), (), {}, ("b.os",)))
    assert [c.name for c in seen[1:]] == ["d.os"]


async def test_a_flood_of_misses_costs_a_handful_of_reads(reg: Registry) -> None:
    register(reg, "a.os")
    miss_interval = 0.05
    p = Pki.from_registry(reg, poll_interval=NEVER, miss_interval=miss_interval)
    await p.start()
    try:
        base = p.stats["refreshes"]
        t0 = time.monotonic()
        for i in range(10_000):
            assert p.record(f"unknown{i}.os") is None
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the follower run between bursts
        elapsed = time.monotonic() - t0
        await until(lambda: p.stats["refreshes"] > base, what="a forced read")
        reads = p.stats["refreshes"] - base
        assert p.stats["misses"] == 10_000
        assert reads == p.stats["forced_refreshes"]
        # one read per miss interval at most (plus the one in progress): a handful
        assert 1 <= reads <= 2 + elapsed / miss_interval, (reads, elapsed)
    finally:
        await p.aclose()


async def test_lookups_do_no_file_io(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    register(reg, "a.os")
    p = Pki.from_registry(reg, poll_interval=NEVER)
    await p.start()
    try:

        def no_io(*args: object, **kwargs: object) -> object:
            raise AssertionError("file I/O during a lookup")

        for target, attr in (
            (os, "listdir"),
            (os, "scandir"),
            (os, "stat"),
            (os, "open"),
            (builtins, "open"),
            (Path, "read_bytes"),
            (Path, "stat"),
        ):
            monkeypatch.setattr(target, attr, no_io)
        assert p.record("a.os") is not None
        assert p.networking_key("a.os") == KEY_A
        identity = p.identity("a.os")
        assert identity is not None and identity.name == "a.os"
        assert p.record("missing.os") is None  # a miss only flags a read
        assert p.networking_key("missing.os") is None and p.identity("missing.os") is None
        monkeypatch.undo()
    finally:
        await p.aclose()


async def test_corrupt_file_is_logged_and_later_registrations_still_load(
    reg: Registry, tmp_path: Path
) -> None:
    # Registry.register itself refuses to write next to a corrupt file, so later
    # registrations are made in a staging registry and renamed in, as register does.
    staging = Registry(tmp_path / "staging")
    register(staging, "a.os")
    reg.path.mkdir()
    for f in staging.files():
        shutil.copy(f, reg.path / f.name)
    p = Pki.from_registry(reg, poll_interval=0.01, miss_interval=0.01)
    await p.start()
    try:
        with structlog.testing.capture_logs() as logs:
            (reg.path / "20200101T000000Z-chain8453-from9-to9-protocol0.json").write_text("[]")
            before = set(staging.files())
            register(staging, "b.os", KEY_B)
            (new,) = set(staging.files()) - before
            tmp = reg.path / ".incoming.tmp"
            shutil.copy(new, tmp)
            os.replace(tmp, reg.path / new.name)
            assert await p.resolve("b.os", timeout=5.0) is not None
        skipped = [e for e in logs if e["event"] == "record source data skipped"]
        assert len(skipped) == 1 and "not a JSON object" in str(skipped[0]["problem"])
        assert p.record("a.os") is not None
    finally:
        await p.aclose()


class FlakySource:
    """A LogSource serving canned logs, failing while ``down`` is set (any source will do)."""

    def __init__(self, logs: list[dict[str, object]]) -> None:
        self.name = "flaky test source"
        self.logs = logs
        self.down = False
        self.closed = False

    async def read_new(self) -> list[dict[str, object]]:
        if self.down:
            raise SourceError("flaky: down")
        out, self.logs = self.logs, []
        return out

    def take_problems(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        self.closed = True


async def test_source_errors_keep_the_old_view_and_are_retried(
    reg: Registry, tmp_path: Path
) -> None:
    register(reg, "a.os")
    flaky = FlakySource(await RegistrySource(reg).read_new())
    assert isinstance(flaky, LogSource)
    p = Pki([flaky, RegistrySource(Registry(tmp_path / "empty"))], poll_interval=0.01)
    assert p.source == f"flaky test source, registry {tmp_path / 'empty'}"
    await p.start()
    try:
        assert p.record("a.os") is not None
        with structlog.testing.capture_logs() as logs:
            flaky.down = True
            await until(lambda: p.stats["source_errors"] >= 3, what="failed reads")
            assert p.record("a.os") is not None  # the old view is kept
            flaky.down = False
            await until(lambda: "flaky test source" not in p._failing, what="recovery")
        events = [e["event"] for e in logs]
        assert events.count("record source unreadable; keeping the previous view, retrying") == 1
        assert "record source readable again" in events
    finally:
        await p.aclose()
    assert flaky.closed


async def test_ingest_overlays_the_sources_as_before(pki: Pki, reg: Registry) -> None:
    register(reg, "a.os")
    await pki.start()
    pki.ingest(HnsUpdate("a.os", "0x" + KEY_B.hex().upper(), ("1.2.3.4",), {"tcp": 1}, ("r.os",)))
    rec = pki.record("a.os")
    assert rec is not None and rec.net_key == KEY_B.hex()
    assert rec.ips == ("1.2.3.4",) and rec.ports == {"tcp": 1} and rec.routers == ()
    pki.ingest(HnsUpdate("x.os", KEY_A.hex(), (), {"tcp": 1}, ("r.os",)))
    x = pki.record("x.os")
    assert x is not None and x.ports == {} and x.routers == ("r.os",)
    pki.ingest(HnsUpdate("y.os", "not hex", (), {}, ()))
    assert pki.record("y.os") is None
    assert len(pki) == 3  # os, a.os (overlaid) and x.os
