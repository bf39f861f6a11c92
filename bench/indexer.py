"""Indexer throughput: Hypermap logs per second, from hypermap-cacher files and from a local chain.

    python bench/indexer.py [--quick] [--logs N] [--rounds R] [--chain-nodes N] [--no-chain]
                            [--json PATH]

Two parts (see bench/README.md, "Indexer throughput"):

* **From cacher files.** A synthetic Hypermap history (Mints of many names under three zones,
  their networking notes in :class:`hns.Registry`'s order, re-registrations, routed nodes,
  non-networking notes), each log exactly the ``eth_getLogs`` object :func:`hns.mint_log` /
  :func:`hns.note_log` make (built with remembered hashes for speed; the first 2,000 logs and
  one in a thousand after are compared with those encoders), is written as several
  hypermap-cacher files (:func:`hns.write_log_cache`) in a temporary directory. Timed per
  round: reading the files, parsing them (:func:`hns.parse_log_cache`), putting the logs in
  chain order (:func:`hns.ordered_logs`) and feeding one :class:`hns.Indexer` to its final
  records, what a bootstrap from cacher files does, all under one pause of the cyclic collector
  as :class:`hns.Registry` and :func:`hns.load_bootstrap` hold it; then, not counted, one full
  collection with the logs still alive. Floors of the same round: reading the same files and
  ``json.loads`` alone (the ratio's base), and the same with the cyclic garbage collector
  paused (what JSON parsing alone costs).
* **From the local chain.** anvil with the Hypermap stand-in (:mod:`hnet.testing.chain`), a bulk
  history written to it, then per round a fresh :class:`hns.ChainSource` (SQLite checkpoint in
  the temporary directory, as a node has) drained until synced, and an indexer fed what it
  returned. The floor: one ``eth_getLogs`` over the whole range (HTTP + ``json.loads``).

Every round's records are checked against what the history should give. The tables go to
stdout, progress to stderr, the JSON to ``bench/results/indexer.json`` (git-ignored). Every
wait is bounded; the temporary directory and anvil are removed on every exit, Ctrl-C and
SIGTERM included. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import math
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``hnet`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hns.indexer
from bench.common import BENCH_DIR, REPO_ROOT, machine_info, median, spread
from hnet import runtime
from hns import (
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    ChainSource,
    Indexer,
    LogCache,
    LogMeta,
    LogsMetadata,
    NodeRecord,
    Registry,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
    mint_log,
    note_log,
    ordered_logs,
    parse_log_cache,
    write_log_cache,
)
from hns.cacher import MAX_CACHE_FILE_BYTES
from hns.events import (
    MINT_TOPIC,
    NOTE_TOPIC,
    abi_encode_bytes,
    gc_paused,
    to_data,
    to_quantity,
)
from hns.keccak import keccak256
from hns.names import ROOT_HASH
from hns.records import NOTE_IP, NOTE_NET_KEY, NOTE_ROUTERS, PORT_NOTES

#: One log to write: (parent's namehash, label, note data; None for a Mint).
_Event = tuple[bytes, bytes, bytes | None]

DEFAULT_JSON = BENCH_DIR / "results" / "indexer.json"
#: Where the compiled Hypermap stand-in is cached between runs (git-ignored, like the npm tools).
BUILD_CACHE = REPO_ROOT / ".cache" / "bench-indexer"
#: Zones the synthetic names live under, with their share of the names.
ZONES: tuple[tuple[str, float], ...] = (("os", 0.80), ("hypr", 0.15), ("dev", 0.05))
#: A note the indexer does not read (it is skipped by its topic3, before any decoding).
OTHER_NOTE = b"~metadata-uri"
CREATED_BY = "bench.os@hypermap-cacher:hypermap-cacher:sys"
#: Longest sync of one chain round (``drain``'s bound) and longest write of the history.
SYNC_LIMIT = 120.0
WRITE_LIMIT = 300.0
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHECKED_LOGS = 2_000
"""The generator's first logs (and one in a thousand after) are compared with hns' encoders."""


class BenchError(Exception):
    """The benchmark produced a wrong result; one line for the user."""


class Terminated(BaseException):
    """SIGTERM arrived (raised from the handler, so every ``finally`` runs)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    logs: int  # target size of the cacher-file history (a whole block more at most)
    per_file: int  # logs per cacher file (the last one may hold fewer)
    rounds: int  # cacher rounds
    chain_nodes: int  # registrations in the chain's bulk history (about 5 logs each); 0: none
    chain_rounds: int
    seed: int = 1


DEFAULT_PLAN = Plan(logs=200_000, per_file=10_000, rounds=5, chain_nodes=2_300, chain_rounds=3)
QUICK_PLAN = Plan(logs=50_000, per_file=5_000, rounds=3, chain_nodes=600, chain_rounds=2)


# --- the synthetic history ----------------------------------------------------------------------


@dataclass
class Synthetic:
    """The cacher files written, and what an indexer must make of them."""

    files: list[Path]
    logs: int
    blocks: int
    file_bytes: int
    kinds: Counter[str]
    expected: dict[str, NodeRecord]
    unknown_notes: int


@dataclass
class _Model:
    """The final records, kept by the generator independently of the indexer."""

    records: dict[str, NodeRecord] = field(default_factory=dict)
    direct: list[str] = field(default_factory=list)

    def set(self, rec: NodeRecord) -> None:
        self.records[rec.name] = rec


def _unique_label(rng: random.Random, i: int) -> str:
    word = "".join(rng.choices(LETTERS, k=rng.randint(3, 10)))
    return f"{word}{i:x}"  # the hex index keeps labels unique; [a-z0-9] only


def _ip(rng: random.Random, i: int) -> tuple[str, str]:
    """(the text to encode, the indexer's text form of it)."""
    if rng.random() < 0.05:
        text = f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::{rng.randrange(1, 0xFFFF):x}"
        return text, str(ipaddress.IPv6Address(text))
    text = f"{rng.randrange(1, 224)}.{(i >> 8) & 255}.{i & 255}.{rng.randrange(1, 255)}"
    return text, text


def _ports(rng: random.Random) -> dict[str, int]:
    ports: dict[str, int] = {}
    if rng.random() < 0.6:
        ports["tcp"] = rng.randrange(1024, 65536)
    if rng.random() < 0.7 or not ports:
        ports["ws"] = rng.randrange(1024, 65536)
    if rng.random() < 0.2:
        ports["quic"] = rng.randrange(1024, 65536)
    return ports


class _Hashes:
    """namehash and labelhash with every result remembered (a history hashes the same parents
    and note labels over and over), with the indexer's faster keccak when it has one."""

    def __init__(self) -> None:
        self._keccak: Callable[[bytes], bytes] = getattr(hns.indexer, "_labelhash", keccak256)
        self._labels: dict[bytes, bytes] = {}
        self._names: dict[str, bytes] = {"": ROOT_HASH}

    def label(self, raw: bytes) -> bytes:
        h = self._labels.get(raw)
        if h is None:
            h = self._labels[raw] = self._keccak(raw)
        return h

    def child(self, parent: bytes, raw: bytes) -> bytes:
        return self._keccak(parent + self.label(raw))

    def name(self, name: str) -> bytes:
        h = self._names.get(name)
        if h is None:
            label, _, parent = name.partition(".")
            h = self._names[name] = self.child(self.name(parent), label.encode())
        return h


def _log_of(
    hashes: _Hashes, parent: bytes, label: bytes, data: bytes | None, meta: LogMeta
) -> dict[str, object]:
    """What :func:`hns.mint_log` (``data`` None) or :func:`hns.note_log` returns, from
    remembered hashes (:func:`check_encoding` compares the two)."""
    topic0 = MINT_TOPIC if data is None else NOTE_TOPIC
    topics = [topic0, parent, hashes.child(parent, label), hashes.label(label)]
    encoded = abi_encode_bytes(label) if data is None else abi_encode_bytes(label, data)
    return {
        "address": HYPERMAP_ADDRESS,
        "topics": [to_data(t) for t in topics],
        "data": to_data(encoded),
        "blockHash": to_data(meta.block_hash),
        "blockNumber": to_quantity(meta.block_number),
        "transactionHash": to_data(meta.transaction_hash),
        "transactionIndex": to_quantity(meta.transaction_index),
        "logIndex": to_quantity(meta.log_index),
        "removed": meta.removed,
    }


def check_encoding(
    hashes: _Hashes, parent: bytes, label: bytes, data: bytes | None, meta: LogMeta
) -> None:
    """The generator's log is exactly hns' own encoder's."""
    want = mint_log(parent, label, meta) if data is None else note_log(parent, label, data, meta)
    got = _log_of(hashes, parent, label, data, meta)
    if got != want or list(got) != list(want):
        raise BenchError(f"the generator's log differs from hns': {got} != {want}")


def _registration(
    hashes: _Hashes,
    name: str,
    key: bytes,
    *,
    ip: str | None = None,
    ports: dict[str, int] | None = None,
    routers: Sequence[str] = (),
    mint: bool = True,
) -> list[_Event]:
    """A registration's logs in :class:`hns.Registry`'s order (Mint, ``~net-key``, then
    ``~ip`` and the ports in tcp/ws/quic order, or ``~routers``), as (parent, label, data)."""
    label, _, parent = name.partition(".")
    node = hashes.name(name)
    events: list[_Event] = []
    if mint:
        events.append((hashes.name(parent), label.encode(), None))
    events.append((node, NOTE_NET_KEY.encode(), encode_net_key(key)))
    if ip is not None:
        events.append((node, NOTE_IP.encode(), encode_ip(ip)))
        for proto, note in PORT_NOTES.items():
            if ports and proto in ports:
                events.append((node, note.encode(), encode_port(ports[proto])))
    else:
        events.append((node, NOTE_ROUTERS.encode(), encode_routers(routers)))
    return events


def _transactions(rng: random.Random, model: _Model, hashes: _Hashes) -> Iterator[list[_Event]]:
    """Registrations as Hypermap sees them, one transaction each, forever."""
    zone_events: list[_Event] = []
    for zone, _ in ZONES:
        zone_events.append((ROOT_HASH, zone.encode(), None))
        model.set(NodeRecord(name=zone, namehash=to_data(hashes.name(zone))))
    yield zone_events
    zones = [z for z, _ in ZONES]
    weights = [w for _, w in ZONES]
    i = 0
    while True:
        key = rng.randbytes(32)
        if rng.random() < 0.04 and len(model.direct) > 10:
            # A node moves: new key, address and TCP port (its other ports stay).
            name = rng.choice(model.direct)
            text, ip = _ip(rng, rng.randrange(1 << 20))
            port = rng.randrange(1024, 65536)
            old = model.records[name]
            model.set(
                NodeRecord(
                    name=name,
                    namehash=old.namehash,
                    net_key=key.hex(),
                    ips=(ip,),
                    ports={**old.ports, "tcp": port},
                )
            )
            yield _registration(hashes, name, key, ip=text, ports={"tcp": port}, mint=False)
            continue
        i += 1
        name = f"{_unique_label(rng, i)}.{rng.choices(zones, weights)[0]}"
        if i % 10 == 0 and len(model.direct) >= 3:
            routers = rng.sample(model.direct, rng.randint(1, 3))
            events = _registration(hashes, name, key, routers=routers)
            rec = NodeRecord(
                name=name,
                namehash=to_data(hashes.name(name)),
                net_key=key.hex(),
                routers=tuple(routers),
            )
        else:
            text, ip = _ip(rng, i)
            ports = _ports(rng)
            events = _registration(hashes, name, key, ip=text, ports=ports)
            rec = NodeRecord(
                name=name,
                namehash=to_data(hashes.name(name)),
                net_key=key.hex(),
                ips=(ip,),
                ports=ports,
            )
            model.direct.append(name)
        if rng.random() < 0.1:
            events.append((hashes.name(name), OTHER_NOTE, b"https://example.com/m"))
        model.set(rec)
        yield events


def synthesize(directory: Path, plan: Plan) -> Synthetic:
    """Write the cacher files of a history of about ``plan.logs`` logs into ``directory``."""
    rng = random.Random(plan.seed)
    model = _Model()
    hashes = _Hashes()
    txs = _transactions(rng, model, hashes)
    checked = 0
    files: list[Path] = []
    kinds: Counter[str] = Counter()
    pending: list[dict[str, object]] = []
    total = 0
    blocks = 0
    unknown = 0
    block = HYPERMAP_FIRST_BLOCK + 1
    file_from = block
    created = time.time()

    def flush(to_block: int) -> None:
        md = LogsMetadata(
            chain_id=str(HYPERMAP_CHAIN_ID),
            from_block=str(file_from),
            to_block=str(to_block),
            time_created=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created + len(files))),
            created_by=CREATED_BY,
        )
        files.append(write_log_cache(directory, LogCache(md, list(pending))))
        pending.clear()

    while total < plan.logs:
        block_hash = rng.randbytes(32)
        index = 0
        for tx_index in range(rng.randint(1, 3)):
            tx_hash = rng.randbytes(32)
            for parent, label, data in next(txs):
                meta = LogMeta(block, block_hash, tx_hash, tx_index, index)
                if checked < CHECKED_LOGS or rng.random() < 0.001:
                    check_encoding(hashes, parent, label, data, meta)
                    checked += 1
                pending.append(_log_of(hashes, parent, label, data, meta))
                if data is None:
                    kinds["mint"] += 1
                else:
                    kinds["note" if label != OTHER_NOTE else "other_note"] += 1
                    unknown += label == OTHER_NOTE
                index += 1
        total += index
        blocks += 1
        if len(pending) >= plan.per_file:
            flush(block)
            file_from = block + 1
        block += rng.randint(1, 40)
    if pending:
        flush(block - 1)
    size = sum(p.stat().st_size for p in files)
    return Synthetic(files, total, blocks, size, kinds, model.records, unknown)


# --- the cacher-file rounds ---------------------------------------------------------------------

PHASES = ("read", "parse", "order", "index")
PHASE_LABELS = {
    "read": "read the files",
    "parse": "parse (parse_log_cache)",
    "order": "order + dedup (ordered_logs)",
    "index": "index (Indexer.feed_all + records)",
}


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_CACHE_FILE_BYTES + 1)


def cacher_round(files: Sequence[Path]) -> tuple[dict[str, float], Indexer, dict[str, NodeRecord]]:
    """One bootstrap from the files, phase by phase (seconds), as :class:`hns.Registry` loads:
    the cyclic collector paused over the whole of it (``gc_paused``, as ``Registry`` and
    :func:`hns.load_bootstrap` from a directory do). Also ``catchup``, not part of the end to
    end: one full collection right after, the logs still alive (what a bootstrap's caller
    holding them pays once the collector is back; ``Registry`` frees them first)."""
    gc.collect()
    with gc_paused():
        t0 = time.perf_counter()
        raw = [_read(p) for p in files]
        t1 = time.perf_counter()
        caches = [parse_log_cache(b) for b in raw]
        del raw
        caches.sort(key=lambda c: (c.metadata.from_block_number, c.metadata.to_block_number))
        t2 = time.perf_counter()
        logs = ordered_logs(caches)
        t3 = time.perf_counter()
        ix = Indexer()
        ix.feed_all(logs)
        records = ix.records()
        t4 = time.perf_counter()
    gc.collect()
    t5 = time.perf_counter()
    del logs, caches
    phases = {"read": t1 - t0, "parse": t2 - t1, "order": t3 - t2, "index": t4 - t3}
    return phases | {"catchup": t5 - t4}, ix, records


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def floor_round(files: Sequence[Path], *, paused: bool = False) -> tuple[float, int]:
    """Read the same files and ``json.loads`` them, nothing else: (seconds, logs seen). With
    ``paused``, the cyclic garbage collector is off meanwhile (and what it does once back on
    is not timed): what parsing the JSON alone costs."""
    gc.collect()
    t0 = time.perf_counter()
    with _collector_paused() if paused else contextlib.nullcontext():
        loaded = [json.loads(_read(p)) for p in files]  # all kept, as the bootstrap keeps them
    elapsed = time.perf_counter() - t0
    n = sum(len(obj["logs"]) for obj in loaded)
    return elapsed, n


def check_cacher(syn: Synthetic, ix: Indexer, records: dict[str, NodeRecord]) -> None:
    if records != syn.expected:
        missing = syn.expected.keys() - records.keys()
        wrong = [n for n in syn.expected if n in records and records[n] != syn.expected[n]]
        raise BenchError(
            f"cacher records differ from the history's: {len(missing)} missing, "
            f"{len(wrong)} wrong (e.g. {(sorted(missing) + wrong)[:1]})"
        )
    if ix.skipped != ({"unknown_note": syn.unknown_notes} if syn.unknown_notes else {}):
        raise BenchError(f"unexpected skips: {ix.skipped}")
    if ix.pending:
        raise BenchError(f"{ix.pending} notes still pending")


def run_cacher(plan: Plan, tmp: Path) -> dict[str, Any]:
    directory = tmp / "cacher"
    directory.mkdir()
    t = time.perf_counter()
    syn = synthesize(directory, plan)
    log(
        f"cacher: wrote {syn.logs:,} logs ({dict(syn.kinds)}) in {len(syn.files)} files, "
        f"{syn.file_bytes / 1e6:.1f} MB, {syn.blocks:,} blocks, {len(syn.expected):,} names, "
        f"in {time.perf_counter() - t:.1f} s"
    )
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    totals: list[float] = []
    catchups: list[float] = []
    floors: list[float] = []
    paused_floors: list[float] = []
    for r in range(plan.rounds):
        # The three measurements in turn, starting one later each round, so none always runs
        # right after the same other one.
        result: dict[str, Any] = {}
        for k in range(3):
            which = (r + k) % 3
            if which == 0:
                result["times"], ix, records = cacher_round(syn.files)
                check_cacher(syn, ix, records)
                del ix, records
            else:
                seconds, n = floor_round(syn.files, paused=which == 2)
                if n != syn.logs:
                    raise BenchError(f"the floor read {n} logs, not {syn.logs}")
                result["paused" if which == 2 else "floor"] = seconds
        times = result["times"]
        total = sum(times[p] for p in PHASES)
        for p in PHASES:
            phases[p].append(times[p])
        catchups.append(times["catchup"])
        totals.append(total)
        floors.append(result["floor"])
        paused_floors.append(result["paused"])
        log(
            f"  round {r + 1}/{plan.rounds}: {syn.logs / total:,.0f} logs/s end to end "
            f"({', '.join(f'{p} {times[p] * 1e3:.0f} ms' for p in PHASES)}; "
            f"collector afterwards {times['catchup'] * 1e3:.0f} ms); "
            f"floor {syn.logs / result['floor']:,.0f} logs/s, "
            f"collector paused {syn.logs / result['paused']:,.0f}"
        )
    return {
        "logs": syn.logs,
        "files": len(syn.files),
        "file_bytes": syn.file_bytes,
        "blocks": syn.blocks,
        "names": len(syn.expected),
        "kinds": dict(syn.kinds),
        "rounds": plan.rounds,
        "phases_s": phases,
        "total_s": totals,
        "catchup_s": catchups,
        "floor_s": floors,
        "floor_paused_s": paused_floors,
    }


# --- the chain rounds ---------------------------------------------------------------------------


async def _sync(src: ChainSource, limit: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                out += await src.read_new()
                if src.synced:
                    return out
    finally:
        await src.aclose()


def run_chain(plan: Plan, tmp: Path) -> dict[str, Any]:
    # Imported here: the cacher part needs nothing of hnet.testing.
    from hnet.testing import chain as testchain
    from hnet.testing.chain import (
        Anvil,
        TestChain,
        ToolMissing,
        bulk_history,
        expected_records,
        hypermap_filter,
    )

    try:
        testchain.find_anvil()
        compiled = testchain.compile_hypermap_test(BUILD_CACHE)
    except ToolMissing as e:
        return {"skipped": str(e)}
    with Anvil(log_dir=tmp / "anvil") as anvil:
        chain = TestChain(anvil, compiled, registry=Registry(tmp / "twin"))
        history = bulk_history(plan.seed, nodes=plan.chain_nodes)
        log(
            f"chain: writing {len(history.events):,} events in {len(history.txs)} "
            f"transactions over {history.blocks:,} blocks to anvil ..."
        )
        t = time.perf_counter()
        head = chain.head()
        for tx, gap in zip(history.txs, history.gaps, strict=True):
            chain.emit(tx)
            chain.mine(gap)
            if time.perf_counter() - t > WRITE_LIMIT:
                raise BenchError(f"writing the chain history took over {WRITE_LIMIT:g} s")
        head = chain.head()
        write_s = time.perf_counter() - t
        truth = [dict(x) for x in hypermap_filter(chain.logs(HYPERMAP_FIRST_BLOCK, head))]
        expected = expected_records(history.events)
        log(f"chain: {len(truth):,} networking logs up to block {head} ({write_s:.1f} s)")
        # Warm-up, not timed: the first sync imports web3 and opens the connection pool; the
        # first eth_getLogs over the range is slower than the next ones.
        chain.logs(HYPERMAP_FIRST_BLOCK, head)
        warm = ChainSource(
            chain.url,
            confirmations=0,
            to_block=HYPERMAP_FIRST_BLOCK + 1,
            checkpoint=tmp / "checkpoint-warm-up.sqlite",
            poll_interval=0.0,
        )
        runtime.run(_sync(warm, SYNC_LIMIT))
        syncs: list[float] = []
        indexes: list[float] = []
        floors: list[float] = []
        floor_logs = 0
        counters: dict[str, int] = {}
        for r in range(plan.chain_rounds):
            gc.collect()
            t0 = time.perf_counter()
            raw = chain.logs(HYPERMAP_FIRST_BLOCK, head)
            floor_s = time.perf_counter() - t0
            floor_logs = len(raw)
            del raw
            src = ChainSource(
                chain.url,
                confirmations=0,
                to_block=head,
                checkpoint=tmp / f"checkpoint-{r}.sqlite",
                poll_interval=0.0,
                seed=r,
            )
            gc.collect()
            t0 = time.perf_counter()
            logs = runtime.run(_sync(src, SYNC_LIMIT))
            t1 = time.perf_counter()
            ix = Indexer()
            ix.feed_all(logs)
            records = ix.records()
            t2 = time.perf_counter()
            counters = src.counters()
            if logs != truth:
                raise BenchError(
                    f"the sync returned {len(logs)} logs, not the chain's {len(truth)}"
                )
            if records != expected:
                raise BenchError("the chain's records differ from the history's")
            syncs.append(t1 - t0)
            indexes.append(t2 - t1)
            floors.append(floor_s)
            log(
                f"  round {r + 1}/{plan.chain_rounds}: sync {len(logs) / (t1 - t0):,.0f} logs/s, "
                f"index {len(logs) / (t2 - t1):,.0f} logs/s, end to end "
                f"{len(logs) / (t2 - t0):,.0f} logs/s; floor {floor_logs / floor_s:,.0f} logs/s"
            )
            del logs, ix, records
        return {
            "logs": len(truth),
            "floor_logs": floor_logs,
            "events": len(history.events),
            "blocks": head - HYPERMAP_FIRST_BLOCK,
            "write_s": write_s,
            "rounds": plan.chain_rounds,
            "sync_s": syncs,
            "index_s": indexes,
            "floor_s": floors,
            "source_counters": counters,
        }


# --- report -------------------------------------------------------------------------------------


def _rate(n: int, seconds: Sequence[float]) -> list[float]:
    return [n / s for s in seconds if s > 0]


def _fmt(v: float) -> str:
    if v != v:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _table(rows: list[tuple[str, ...] | str]) -> str:
    header = ("line", "logs/s", "ms", "share", "vs floor", "spread")
    cells = [r for r in rows if isinstance(r, tuple)]
    widths = [max(len(r[i]) for r in (header, *cells)) for i in range(len(header))]

    def line(row: tuple[str, ...] | str) -> str:
        if isinstance(row, str):
            return f"[{row}]"
        out = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def summarise(cacher: dict[str, Any] | None, chain: dict[str, Any] | None) -> dict[str, Any]:
    """Medians, per-round rates and ratios (the JSON's ``summary``)."""
    out: dict[str, Any] = {}
    if cacher:
        n = cacher["logs"]
        totals = cacher["total_s"]
        floors = cacher["floor_s"]
        out["cacher"] = {
            "logs_per_s": median(_rate(n, totals)),
            "logs_per_s_per_round": _rate(n, totals),
            "floor_logs_per_s": median(_rate(n, floors)),
            "floor_paused_logs_per_s": median(_rate(n, cacher["floor_paused_s"])),
            "vs_floor": median([f / t for t, f in zip(totals, floors, strict=True)]),
            "vs_floor_paused": median(
                [f / t for t, f in zip(totals, cacher["floor_paused_s"], strict=True)]
            ),
            "floor_paused_vs_floor": median(
                [f / p for f, p in zip(floors, cacher["floor_paused_s"], strict=True)]
            ),
            "spread": spread(_rate(n, totals)),
            "phases": {
                p: {
                    "ms": median(cacher["phases_s"][p]) * 1e3,
                    "logs_per_s": median(_rate(n, cacher["phases_s"][p])),
                    "share": median(
                        [s / t for s, t in zip(cacher["phases_s"][p], totals, strict=True)]
                    ),
                }
                for p in PHASES
            },
        }
    if chain and "skipped" not in chain:
        n = chain["logs"]
        ends = [s + i for s, i in zip(chain["sync_s"], chain["index_s"], strict=True)]
        floor_rates = _rate(chain["floor_logs"], chain["floor_s"])
        out["chain"] = {
            "logs_per_s": median(_rate(n, ends)),
            "logs_per_s_per_round": _rate(n, ends),
            "sync_logs_per_s": median(_rate(n, chain["sync_s"])),
            "index_logs_per_s": median(_rate(n, chain["index_s"])),
            "floor_logs_per_s": median(floor_rates),
            "vs_floor": median([(n / e) / fr for e, fr in zip(ends, floor_rates, strict=True)]),
            "spread": spread(_rate(n, ends)),
        }
    return out


def print_report(
    info: dict[str, Any],
    cacher: dict[str, Any] | None,
    chain: dict[str, Any] | None,
    summary: dict[str, Any],
) -> None:
    print()
    print(f"hns indexer throughput, {info['date']}: medians across rounds")
    print(
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"{info['platform']}; load average at start {info.get('loadavg_at_start', '?')}"
    )
    rows: list[tuple[str, ...] | str] = []
    if cacher:
        s = summary["cacher"]
        rows.append(
            f"from cacher files: {cacher['logs']:,} logs, {cacher['names']:,} names, "
            f"{cacher['files']} files, {cacher['file_bytes'] / 1e6:.0f} MB, "
            f"{cacher['rounds']} rounds"
        )
        for p in PHASES:
            ph = s["phases"][p]
            rows.append(
                (
                    f"  {PHASE_LABELS[p]}",
                    _fmt(ph["logs_per_s"]),
                    _fmt(ph["ms"]),
                    f"{ph['share']:.0%}",
                    "",
                    f"{spread(cacher['phases_s'][p]):.0%}",
                )
            )
        rows.append(
            (
                "end to end",
                _fmt(s["logs_per_s"]),
                _fmt(median(cacher["total_s"]) * 1e3),
                "100%",
                f"{s['vs_floor']:.2f}x",
                f"{s['spread']:.0%}",
            )
        )
        rows.append(
            (
                "  collector afterwards (not above)",
                "",
                _fmt(median(cacher["catchup_s"]) * 1e3),
                "",
                "",
                f"{spread(cacher['catchup_s']):.0%}",
            )
        )
        rows.append(
            (
                "floor: read + json.loads",
                _fmt(s["floor_logs_per_s"]),
                _fmt(median(cacher["floor_s"]) * 1e3),
                "",
                "1 (floor)",
                f"{spread(cacher['floor_s']):.0%}",
            )
        )
        rows.append(
            (
                "  the same, collector paused",
                _fmt(s["floor_paused_logs_per_s"]),
                _fmt(median(cacher["floor_paused_s"]) * 1e3),
                "",
                f"{s['floor_paused_vs_floor']:.2f}x",
                f"{spread(cacher['floor_paused_s']):.0%}",
            )
        )
    if chain and "skipped" in chain:
        rows.append(f"from the local chain: skipped ({chain['skipped']})")
    elif chain:
        s = summary["chain"]
        n = chain["logs"]
        ends = [a + b for a, b in zip(chain["sync_s"], chain["index_s"], strict=True)]
        rows.append(
            f"from the local chain: {n:,} logs over {chain['blocks']:,} blocks, "
            f"{chain['rounds']} rounds, {chain['source_counters'].get('ranges', 0)} ranges"
        )
        rows.append(
            (
                "  ChainSource sync (drain to synced)",
                _fmt(s["sync_logs_per_s"]),
                _fmt(median(chain["sync_s"]) * 1e3),
                f"{median([a / e for a, e in zip(chain['sync_s'], ends, strict=True)]):.0%}",
                "",
                f"{spread(chain['sync_s']):.0%}",
            )
        )
        rows.append(
            (
                "  index (Indexer.feed_all + records)",
                _fmt(s["index_logs_per_s"]),
                _fmt(median(chain["index_s"]) * 1e3),
                f"{median([b / e for b, e in zip(chain['index_s'], ends, strict=True)]):.0%}",
                "",
                f"{spread(chain['index_s']):.0%}",
            )
        )
        rows.append(
            (
                "end to end",
                _fmt(s["logs_per_s"]),
                _fmt(median(ends) * 1e3),
                "100%",
                f"{s['vs_floor']:.2f}x",
                f"{s['spread']:.0%}",
            )
        )
        rows.append(
            (
                f"floor: one eth_getLogs ({chain['floor_logs']:,} logs)",
                _fmt(s["floor_logs_per_s"]),
                _fmt(median(chain["floor_s"]) * 1e3),
                "",
                "1 (floor)",
                f"{spread(chain['floor_s']):.0%}",
            )
        )
    print(_table(rows))
    print(
        "share: median of the per-round shares of the end-to-end time. vs floor: logs/s over the "
        "floor's logs/s, median of per-round ratios. spread: (max-min)/median across rounds."
    )


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a shorter run (~30 s)")
    p.add_argument("--logs", type=int, metavar="N", help="size of the cacher-file history")
    p.add_argument("--rounds", type=int, metavar="R", help="rounds of the cacher part")
    p.add_argument(
        "--chain-nodes",
        type=int,
        metavar="N",
        help="registrations in the chain's history (about 5 logs each; 0 skips the chain part)",
    )
    p.add_argument("--no-chain", action="store_true", help="skip the chain part")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    args = p.parse_args(argv)
    if args.logs is not None and not 1_000 <= args.logs <= 5_000_000:
        p.error("--logs must be 1000..5000000")
    if args.rounds is not None and not 1 <= args.rounds <= 100:
        p.error("--rounds must be 1..100")
    if args.chain_nodes is not None and not 0 <= args.chain_nodes <= 50_000:
        p.error("--chain-nodes must be 0..50000")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    base = QUICK_PLAN if args.quick else DEFAULT_PLAN
    logs = args.logs or base.logs
    per_file = base.per_file if args.logs is None else max(1_000, math.ceil(logs / 20))
    chain_nodes = 0 if args.no_chain else base.chain_nodes
    if args.chain_nodes is not None and not args.no_chain:
        chain_nodes = args.chain_nodes
    return Plan(
        logs=logs,
        per_file=per_file,
        rounds=args.rounds or base.rounds,
        chain_nodes=chain_nodes,
        chain_rounds=base.chain_rounds,
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    info = machine_info(runtime.loop_name())
    log(
        f"indexer bench: {plan.logs:,} logs from cacher files x {plan.rounds} rounds; chain: "
        + (
            f"{plan.chain_nodes:,} registrations x {plan.chain_rounds}"
            if plan.chain_nodes
            else "no"
        )
        + f"; {info['cpu_count']} CPUs, Python {info['python']}"
    )
    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(
        signal.SIGTERM, _on_sigterm
    )
    tmp = Path(tempfile.mkdtemp(prefix="hnet-bench-indexer-"))
    t0 = time.monotonic()
    cacher: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    try:
        cacher = run_cacher(plan, tmp)
        shutil.rmtree(tmp / "cacher", ignore_errors=True)
        if plan.chain_nodes:
            chain = run_chain(plan, tmp)
            if "skipped" in chain:
                log(f"chain part skipped: {chain['skipped']}")
    except BenchError as e:
        log(f"bench failed: {e}")
        return 1
    except Terminated:
        log("terminated; anvil stopped, temporary files removed, nothing written")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        log("interrupted; anvil stopped, temporary files removed, nothing written")
        return 128 + signal.SIGINT
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    elapsed = time.monotonic() - t0
    summary = summarise(cacher, chain)
    print_report(info, cacher, chain, summary)
    result = {
        "schema": 1,
        "machine": info,
        "plan": plan.__dict__,
        "elapsed_s": elapsed,
        "summary": summary,
        "cacher": cacher,
        "chain": chain,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
