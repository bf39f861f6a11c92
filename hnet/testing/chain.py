"""A real local chain for tests: ``anvil`` with our Hypermap stand-in at the Hypermap address.

Why a real chain: the chain source must be right about what real nodes and providers do
(ABI encoding by the EVM, topics hashed by Solidity, ``eth_getLogs`` filters, block hashes,
reorgs), and only a real node shows that. ``anvil`` (npm ``@foundry-rs/anvil-linux-amd64``)
is fast and scriptable; ``solcjs`` (npm ``solc``) compiles
``hnet/testing/contracts/HypermapTest.sol`` at test time (cached in a directory the test
gives, never committed), and its runtime code is put at the real Hypermap address with
``anvil_setCode``, on a chain with Base's chain id whose genesis is Hypermap's first block, so
:class:`hns.ChainSource`'s defaults apply unchanged. HypermapTest also answers Hypermap's
``get(bytes32)`` (what :class:`hns.lookup.LiveLookup` reads), and our own minimal
``Multicall.sol`` (Multicall3's ``aggregate`` ABI) is installed at Multicall3's canonical
address unless a test asks for a chain without it.

Mining is manual (``--no-mining``): each transaction is mined in its own block by
``evm_mine``, so a test knows exactly which block holds what, and :meth:`TestChain.mine`
adds empty blocks cheaply. Reorgs: :meth:`TestChain.snapshot`/:meth:`TestChain.revert`
(then write another history) or :meth:`TestChain.reorg` (replace the last blocks).

:meth:`TestChain.register` writes a registration exactly as :class:`hns.Registry` writes it
to files: it registers in a twin registry, takes the logs of the file just written and has
the contract emit them, one transaction. If anvil, solcjs or node is missing,
:class:`ToolMissing` says what to install.

Every wait is bounded and the anvil process is always killed (context manager, ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_abi.abi import encode as abi_encode

from hns import (
    HNS_NOTES,
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    ChainSource,
    Indexer,
    LogMeta,
    NodeRecord,
    Registry,
    decode_mint,
    decode_note,
    keccak256,
    mint_log,
    note_log,
    read_log_cache,
)
from hns.events import FACT_TOPIC, MINT_TOPIC, NOTE_TOPIC, log_topics
from hns.lookup import MULTICALL3_ADDRESS
from hns.names import ROOT_HASH, ancestors, labelhash, namehash, split_name
from hns.records import (
    NOTE_IP,
    NOTE_NET_KEY,
    NOTE_ROUTERS,
    PORT_NOTES,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
)

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_SOURCE = Path(__file__).resolve().parent / "contracts" / "HypermapTest.sol"
MULTICALL_SOURCE = Path(__file__).resolve().parent / "contracts" / "Multicall.sol"
ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
SOLC_PACKAGE = "solc"
NPM_PREFIX = ROOT / ".cache" / "npm"
INSTALL_HINT = f"npm install --prefix .cache/npm {ANVIL_PACKAGE} {SOLC_PACKAGE}"

START_TIMEOUT = 20.0
"""Longest wait for anvil to listen."""
RPC_TIMEOUT = 60.0
"""Deadline of one JSON-RPC call to anvil (mining a block of thousands of logs included)."""
COMPILE_TIMEOUT = 120.0
TX_GAS = 29_000_000
"""Gas of each transaction (anvil's block gas limit is 30 M): about 1,200 events of typical
registrations, each Mint and Note also stored for ``get`` (an event alone is ~7 k gas)."""
PER_TX = 1_000
"""Events per transaction by default."""

_LISTEN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")
_BATCH_SIG = b"batch(uint8[],bytes32[],bytes[],bytes[])"
_KIND = {"mint": 0, "note": 1, "fact": 2}


class ToolMissing(RuntimeError):
    """anvil, solcjs or node is not installed; the message says how to install it."""


class ChainRpcError(RuntimeError):
    """anvil answered a JSON-RPC call with an error."""


# --- tools --------------------------------------------------------------------------------------


def find_tool(name: str, env: str, package: str) -> Path:
    """``$env``, else the project's npm prefix (``.cache/npm``), else ``PATH``."""
    override = os.environ.get(env)
    candidates = [Path(override)] if override else []
    candidates.append(NPM_PREFIX / "node_modules" / ".bin" / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ToolMissing(
        f"{name} (npm package {package}) is not installed: run `{INSTALL_HINT}` "
        f"in {ROOT}, or put {name} on PATH, or set {env}"
    )


def find_anvil() -> Path:
    return find_tool("anvil", "HNET_ANVIL", ANVIL_PACKAGE)


def find_solcjs() -> Path:
    solcjs = find_tool("solcjs", "HNET_SOLCJS", SOLC_PACKAGE)
    if shutil.which("node") is None:
        raise ToolMissing("node (Node.js) is not installed; solcjs needs it")
    return solcjs


# --- the contract -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compiled:
    """HypermapTest's runtime code (what ``anvil_setCode`` installs) and ABI."""

    runtime: bytes
    abi: list[dict[str, Any]]


def compile_hypermap_test(cache_dir: Path) -> Compiled:
    """Compile HypermapTest.sol with solcjs, or reuse a build cached in ``cache_dir`` (keyed
    by the source and the compiler, so an edit recompiles)."""
    return compile_contract(CONTRACT_SOURCE, "HypermapTest", cache_dir)


def compile_multicall(cache_dir: Path) -> Compiled:
    """Compile Multicall.sol (our Multicall3 ``aggregate`` stand-in), cached like
    :func:`compile_hypermap_test`."""
    return compile_contract(MULTICALL_SOURCE, "Multicall", cache_dir)


def compile_contract(path: Path, contract_name: str, cache_dir: Path) -> Compiled:
    """Compile contract ``contract_name`` of the Solidity file ``path`` with solcjs, or reuse
    a build cached in ``cache_dir`` (keyed by the source and the compiler)."""
    solcjs = find_solcjs()
    source = path.read_text()
    st = solcjs.resolve().stat()
    key = hashlib.sha256(f"{source}\0{solcjs.resolve()}\0{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir / f"{contract_name}-{key[:16]}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        return Compiled(runtime=bytes.fromhex(data["runtime"]), abi=data["abi"])
    request = {
        "language": "Solidity",
        "sources": {path.name: {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.deployedBytecode.object"]}},
        },
    }
    try:
        proc = subprocess.run(
            [str(solcjs), "--standard-json"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"solcjs did not finish within {COMPILE_TIMEOUT:g} s") from None
    start = proc.stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise RuntimeError(f"solcjs failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    out = json.loads(proc.stdout[start:])
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError(f"{path.name}: " + "; ".join(e["message"] for e in errors))
    contract = out["contracts"][path.name][contract_name]
    compiled = Compiled(
        runtime=bytes.fromhex(contract["evm"]["deployedBytecode"]["object"]),
        abi=contract["abi"],
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".build", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"runtime": compiled.runtime.hex(), "abi": compiled.abi}, f)
    os.replace(tmp, cached)
    return compiled


# --- JSON-RPC to anvil --------------------------------------------------------------------------


class Rpc:
    """A small synchronous JSON-RPC client (keep-alive), for driving anvil from tests."""

    def __init__(self, host: str, port: int, timeout: float = RPC_TIMEOUT) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._id = 0

    def call(self, method: str, *params: Any) -> Any:
        """The result, or :class:`ChainRpcError`."""
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        for attempt in range(2):  # one reconnect: a kept-alive connection may have been closed
            conn = self._conn or http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
            self._conn = conn
            try:
                conn.request("POST", "/", body, {"Content-Type": "application/json"})
                raw = conn.getresponse().read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._conn = None
                if attempt:
                    raise
        reply = json.loads(raw)
        if "error" in reply:
            raise ChainRpcError(f"{method}: {reply['error']}")
        return reply.get("result")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- anvil --------------------------------------------------------------------------------------


class Anvil:
    """An anvil process on a free loopback port (``--port 0``; the port is read from its
    output), manual mining, Base's chain id, genesis at Hypermap's first block."""

    def __init__(
        self,
        *,
        chain_id: int = HYPERMAP_CHAIN_ID,
        genesis_block: int = HYPERMAP_FIRST_BLOCK,
        log_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_block = genesis_block
        self._log_dir = log_dir
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None
        self.port = 0
        self.rpc: Rpc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Anvil:
        anvil = find_anvil()
        directory = self._log_dir or Path(tempfile.mkdtemp(prefix="hnet-anvil-"))
        directory.mkdir(parents=True, exist_ok=True)
        self._log_file = directory / f"anvil-{os.getpid()}-{time.monotonic_ns()}.log"
        with open(self._log_file, "wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(anvil),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--chain-id",
                    str(self.chain_id),
                    "--number",
                    str(self.genesis_block),
                    "--no-mining",
                    "--accounts",
                    "2",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.port = self._wait_listening()
            self.rpc = Rpc("127.0.0.1", self.port)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_listening(self) -> int:
        assert self._proc is not None and self._log_file is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            m = _LISTEN_RE.search(self._log_file.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self._proc.poll() is not None:
                raise RuntimeError(f"anvil exited ({self._proc.returncode}): {self.output()}")
            time.sleep(0.02)
        raise RuntimeError(f"anvil not listening within {self._start_timeout:g} s: {self.output()}")

    def output(self, limit: int = 2000) -> str:
        """The end of anvil's output (for failure messages)."""
        if self._log_file is None or not self._log_file.exists():
            return ""
        return self._log_file.read_text(errors="replace")[-limit:]

    def close(self) -> None:
        """Stop anvil (terminate, then kill); idempotent."""
        if self.rpc is not None:
            self.rpc.close()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> Anvil:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- events -------------------------------------------------------------------------------------

EventKind = Literal["mint", "note", "fact"]


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One event for the contract to emit: a Mint of ``label`` under ``parent``, or a Note or
    Fact ``label`` = ``data`` on the entry ``parent``."""

    kind: EventKind
    parent: bytes
    label: bytes
    data: bytes = b""

    def expected_log(self, meta: LogMeta, address: str = HYPERMAP_ADDRESS) -> dict[str, object]:
        """The log Hypermap would emit, built by hns' own encoders (for expectations)."""
        if self.kind == "mint":
            return mint_log(self.parent, self.label, meta, address=address)
        if self.kind == "note":
            return note_log(self.parent, self.label, self.data, meta, address=address)
        raise ValueError("hns has no encoder for Facts; the indexer ignores them")


def events_from_logs(logs: Iterable[Mapping[str, object]]) -> list[ChainEvent]:
    """Mint and Note logs (e.g. a registry file's) as the events that emit exactly them."""
    out: list[ChainEvent] = []
    for log in logs:
        topic0 = log_topics(log)[0]
        if topic0 == MINT_TOPIC:
            m = decode_mint(log)
            out.append(ChainEvent("mint", m.parenthash, m.label))
        elif topic0 == NOTE_TOPIC:
            n = decode_note(log)
            out.append(ChainEvent("note", n.parenthash, n.label, n.data))
        elif topic0 == FACT_TOPIC:
            raise ValueError("registries write no Facts")
    return out


def registration_events(
    name: str,
    net_key: bytes,
    *,
    ip: str | None = None,
    ports: Mapping[str, int] | None = None,
    routers: Sequence[str] = (),
    mint: Iterable[str] | None = None,
) -> list[ChainEvent]:
    """The events of one registration in :class:`hns.Registry`'s order: Mints of ``mint``
    (default: ``name`` and all its ancestors, zone first), ``~net-key``, then ``~ip`` and the
    ports (tcp, ws, quic) or ``~routers``. With hns' encoders; for bulk histories where a
    twin registry would be too slow."""
    to_mint = list(ancestors(name)) if mint is None else list(mint)
    events: list[ChainEvent] = []
    for entry in to_mint:
        label, parent = split_name(entry)
        parent_hash = ROOT_HASH if parent is None else namehash(parent)
        events.append(ChainEvent("mint", parent_hash, label.encode()))
    node = namehash(name)
    events.append(ChainEvent("note", node, NOTE_NET_KEY.encode(), encode_net_key(net_key)))
    if ip is not None:
        events.append(ChainEvent("note", node, NOTE_IP.encode(), encode_ip(ip)))
        for proto, note in PORT_NOTES.items():
            if ports and proto in ports:
                events.append(ChainEvent("note", node, note.encode(), encode_port(ports[proto])))
    else:
        events.append(ChainEvent("note", node, NOTE_ROUTERS.encode(), encode_routers(routers)))
    return events


# --- the chain ----------------------------------------------------------------------------------


class TestChain:
    """anvil with HypermapTest at ``address`` (the Hypermap address by default), and the
    helpers tests write history with. ``registry``: the twin registry :meth:`register`
    writes to as well (None: a fresh one in a temporary directory). ``multicall``: our
    Multicall build (:func:`compile_multicall`), installed at Multicall3's canonical address
    (None: no contract there, as on a chain without Multicall3)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        anvil: Anvil,
        compiled: Compiled,
        *,
        address: str = HYPERMAP_ADDRESS,
        registry: Registry | None = None,
        multicall: Compiled | None = None,
    ) -> None:
        if anvil.rpc is None:
            raise RuntimeError("start anvil first")
        self.anvil = anvil
        self.rpc = anvil.rpc
        self.compiled = compiled
        self.address = address
        #: a temporary directory made for the twin registry, removed by :meth:`close`
        self._own_dir: Path | None = None
        if registry is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="hnet-twin-"))
            registry = Registry(
                self._own_dir / "registry", chain_id=anvil.chain_id, contract=address
            )
        self.registry = registry
        self.sender: str = self.rpc.call("eth_accounts")[0]
        self._selector = keccak256(_BATCH_SIG)[:4]
        self.multicall = multicall
        self.install(address)
        if multicall is not None:
            self.install_multicall()

    @property
    def url(self) -> str:
        return self.anvil.url

    def close(self) -> None:
        """Remove the twin registry's temporary directory, if this chain made one (anvil is
        its owner's to stop); idempotent."""
        own, self._own_dir = self._own_dir, None
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)

    def install(self, address: str) -> None:
        """Put HypermapTest's runtime code at ``address`` (a decoy emitting the same topics
        from another address, or Hypermap itself)."""
        self.rpc.call("anvil_setCode", address, "0x" + self.compiled.runtime.hex())

    def install_multicall(self, address: str = MULTICALL3_ADDRESS) -> None:
        """Put our Multicall's runtime code at ``address`` (Multicall3's by default)."""
        if self.multicall is None:
            raise RuntimeError("this chain was made without a Multicall build")
        self.rpc.call("anvil_setCode", address, "0x" + self.multicall.runtime.hex())

    def remove_code(self, address: str = MULTICALL3_ADDRESS) -> None:
        """Leave no code at ``address`` (by default: no Multicall3 on this chain)."""
        self.rpc.call("anvil_setCode", address, "0x")

    # --- chain state ----------------------------------------------------------------------

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def block_hash(self, number: int) -> str | None:
        header = self.rpc.call("eth_getBlockByNumber", hex(number), False)
        return None if header is None else str(header["hash"])

    def mine(self, blocks: int = 1) -> int:
        """Mine ``blocks`` empty blocks; returns the new head."""
        if blocks > 0:
            self.rpc.call("anvil_mine", hex(blocks))
        return self.head()

    def snapshot(self) -> str:
        return str(self.rpc.call("evm_snapshot"))

    def revert(self, snapshot: str) -> int:
        """Back to ``snapshot`` (its later blocks are gone); returns the head."""
        if self.rpc.call("evm_revert", snapshot) is not True:
            raise ChainRpcError(f"evm_revert {snapshot}: refused")
        return self.head()

    def reorg(self, depth: int) -> int:
        """Replace the last ``depth`` blocks with empty ones (same height, new hashes)."""
        self.rpc.call("anvil_reorg", depth, [])
        return self.head()

    def logs(self, from_block: int, to_block: int, address: str | None = None) -> list[Any]:
        """Every log of ``address`` (the contract by default) in the range, straight from
        anvil, unfiltered by topic: the ground truth tests compare with."""
        return list(
            self.rpc.call(
                "eth_getLogs",
                {
                    "address": address or self.address,
                    "fromBlock": hex(from_block),
                    "toBlock": hex(to_block),
                },
            )
        )

    # --- writing --------------------------------------------------------------------------

    def emit(
        self, events: Sequence[ChainEvent], *, address: str | None = None, per_tx: int = PER_TX
    ) -> list[int]:
        """Emit ``events`` in order, ``per_tx`` to a transaction, each transaction mined in its
        own block; returns the block numbers."""
        blocks: list[int] = []
        for start in range(0, len(events), max(1, per_tx)):
            blocks.append(self._send(events[start : start + per_tx], address or self.address))
        return blocks

    def _send(self, events: Sequence[ChainEvent], to: str) -> int:
        data = self._selector + abi_encode(
            ["uint8[]", "bytes32[]", "bytes[]", "bytes[]"],
            [
                [_KIND[e.kind] for e in events],
                [e.parent for e in events],
                [e.label for e in events],
                [e.data for e in events],
            ],
        )
        tx = self.rpc.call(
            "eth_sendTransaction",
            {"from": self.sender, "to": to, "data": "0x" + data.hex(), "gas": hex(TX_GAS)},
        )
        self.rpc.call("evm_mine")
        receipt = self.rpc.call("eth_getTransactionReceipt", tx)
        if receipt is None or receipt.get("status") != "0x1":
            raise ChainRpcError(f"transaction {tx} failed: {receipt}")
        if len(receipt.get("logs", ())) != len(events):
            raise ChainRpcError(f"transaction {tx}: {len(receipt['logs'])} logs, not {len(events)}")
        return int(receipt["blockNumber"], 16)

    def register(
        self,
        name: str,
        net_key: bytes,
        ip: str | None = None,
        ports: Mapping[str, int] | None = None,
        routers: Sequence[str] | None = None,
    ) -> NodeRecord:
        """Register ``name`` in the twin registry and write the very logs it wrote to the chain
        (one transaction, one block). Returns the registry's record."""
        before = set(self.registry.files())
        record = self.registry.register(name, net_key, ip=ip, ports=ports, routers=routers)
        (new,) = set(self.registry.files()) - before
        self.emit(events_from_logs(read_log_cache(new).logs))
        return record


@contextlib.contextmanager
def running_chain(
    cache_dir: Path, *, registry: Registry | None = None, multicall: bool = True
) -> Iterator[TestChain]:
    """anvil + HypermapTest (+ our Multicall at Multicall3's address, unless ``multicall`` is
    False), compiled into (or reused from) ``cache_dir``; always stopped."""
    compiled = compile_hypermap_test(cache_dir)
    batcher = compile_multicall(cache_dir) if multicall else None
    with Anvil(log_dir=cache_dir / "anvil") as anvil:
        chain = TestChain(anvil, compiled, registry=registry, multicall=batcher)
        try:
            yield chain
        finally:
            chain.close()


# --- expectations and histories -----------------------------------------------------------------


async def drain(src: ChainSource, limit: float = 60.0) -> list[dict[str, object]]:
    """``read_new`` until ``src`` is synced (bounded); everything it returned, in order."""
    out: list[dict[str, object]] = []
    async with asyncio.timeout(limit):
        while True:
            out += await src.read_new()
            if src.synced:
                return out


def records_of(logs: Iterable[Mapping[str, object]]) -> dict[str, NodeRecord]:
    """The records a fresh indexer makes of ``logs``."""
    ix = Indexer()
    ix.feed_all(logs)
    return ix.records()


def expected_records(events: Iterable[ChainEvent]) -> dict[str, NodeRecord]:
    """Records for ``events`` emitted in order, from hns' own encoders (independent of the
    chain: no EVM, no provider). Facts are left out (the indexer ignores them)."""
    logs = [
        ev.expected_log(LogMeta(1, bytes(32), bytes(32), log_index=i))
        for i, ev in enumerate(events)
        if ev.kind != "fact"
    ]
    return records_of(logs)


def hypermap_filter(logs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What the chain source must deliver from a contract's unfiltered logs: every Mint and
    the Notes with a networking label (``~quic-port`` included)."""
    notes = {"0x" + labelhash(n).hex() for n in HNS_NOTES}
    mint, note = "0x" + MINT_TOPIC.hex(), "0x" + NOTE_TOPIC.hex()
    return [
        log
        for log in logs
        if log["topics"][0] == mint or (log["topics"][0] == note and log["topics"][3] in notes)
    ]


@dataclass(frozen=True, slots=True)
class History:
    """Transactions (event lists) to emit in order, each followed by ``gaps[i]`` empty blocks."""

    txs: list[list[ChainEvent]]
    gaps: list[int]

    @property
    def events(self) -> list[ChainEvent]:
        return [e for tx in self.txs for e in tx]

    @property
    def blocks(self) -> int:
        return len(self.txs) + sum(self.gaps)

    def write(self, chain: TestChain) -> int:
        """Emit it on ``chain``; returns the head."""
        for tx, gap in zip(self.txs, self.gaps, strict=True):
            chain.emit(tx)
            chain.mine(gap)
        return chain.head()


def bulk_history(
    seed: int, *, nodes: int = 2_300, max_per_tx: int = 80, max_gap: int = 6
) -> History:
    """A Hypermap-like history: ``nodes`` registrations (direct on tcp/ws/quic, one in ten
    indirect through earlier nodes) under two zones, re-registrations, notes arriving before
    their Mint, notes the source must not read (``~other``, Facts), in transactions of random
    sizes separated by random runs of empty blocks. About five networking logs a node."""
    rng = random.Random(seed)
    events: list[ChainEvent] = [
        ChainEvent("mint", ROOT_HASH, b"os"),
        ChainEvent("mint", ROOT_HASH, b"dev"),
    ]
    direct: list[str] = []
    late: list[tuple[int, ChainEvent]] = []
    for i in range(nodes):
        name = f"n{i}.{'os' if i % 3 else 'dev'}"
        key = keccak256(b"node key %d" % i)
        if i % 10 == 9 and len(direct) >= 2:
            evs = registration_events(name, key, routers=rng.sample(direct, 2), mint=[name])
        else:
            ports = {"tcp": rng.randrange(1, 65536)}
            if rng.random() < 0.5:
                ports["ws"] = rng.randrange(1, 65536)
            if rng.random() < 0.2:
                ports["quic"] = rng.randrange(1, 65536)
            ip = f"10.{(i >> 8) & 255}.{i & 255}.{rng.randrange(1, 255)}"
            evs = registration_events(name, key, ip=ip, ports=ports, mint=[name])
            direct.append(name)
        if i % 97 == 5:  # its notes first, its Mint some transactions later
            late.append((len(events) + rng.randrange(20, 200), evs[0]))
            evs = evs[1:]
        events += evs
        if i % 7 == 3:
            node = namehash(name)
            events.append(ChainEvent("note", node, b"~other", b"not networking"))
            events.append(ChainEvent("fact", node, b"!fact", b"ignored"))
        if i % 50 == 10 and direct:  # a re-registration of an earlier direct node
            again = rng.choice(direct)
            events += registration_events(
                again, keccak256(again.encode()), ip="192.0.2.1", ports={"ws": 1234}, mint=[]
            )
    for at, mint in sorted(late, key=lambda t: t[0], reverse=True):
        events.insert(min(at, len(events)), mint)
    txs: list[list[ChainEvent]] = []
    gaps: list[int] = []
    while events:
        n = rng.randrange(1, max_per_tx + 1)
        txs.append(events[:n])
        events = events[n:]
        gaps.append(rng.randrange(0, max_gap + 1))
    return History(txs, gaps)
