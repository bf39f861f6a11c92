"""Hypermap logs from any Ethereum JSON-RPC endpoint (http(s) or ws(s)), as a :class:`LogSource`.

What is read (``docs/protocol.md`` §9, the reference indexer's filters): from the Hypermap
contract only, every ``Mint`` log (address + topic0) and the ``Note`` logs whose topic3 is one
of the networking labels (``~net-key``, ``~ip``, ``~tcp-port``, ``~ws-port``, ``~routers`` and
our ``~quic-port``). Contract, chain id and first block default to Base's Hypermap.

How (and why):

* **Chain id first.** ``eth_chainId`` is checked before anything else; on a mismatch every
  call raises :class:`ChainIdMismatch` (expected vs got): records from the wrong chain are
  worse than none.
* **Ranges, adaptive.** History is fetched in block ranges that double after each success and
  halve on a provider's range or size error ("query returned more than 10000 results",
  "block range is too wide", ...; a size the provider suggests is used). A range error's size
  becomes a ceiling for a while, so a provider's fixed cap costs few failed calls. Up to
  ``concurrency`` ranges are in flight; they are committed strictly in order.
* **Retries, bounded.** Every call has a deadline; 429, 5xx, timeouts, dropped connections,
  garbage and a node that does not have a block yet are retried with exponential backoff and
  full jitter (``Retry-After`` honoured), a bounded number of times, then :class:`SourceError`.
* **Exactly once, in order.** A range counts only when both of its queries and the header of
  its last block came back consistent (positions inside the range, no ``removed`` logs, one
  hash per block, no conflicting duplicates); then it is committed to the
  :class:`~hns.checkpoint.Checkpoint` in one transaction with the new cursor. ``read_new``
  returns what was committed and not yet returned, in (block, log index) order.
* **Confirmations.** Logs are fetched only up to ``head - confirmations``. Default
  :data:`DEFAULT_CONFIRMATIONS` = 12 blocks, 24 s on Base (2 s blocks): a record is usable
  within half a minute of its transaction, while Base's sequencer reorgs (rare, a few unsafe
  blocks) almost never reach delivered blocks. Waiting for L1 finality ("finalized", ~15 min)
  would make fresh registrations invisible for far too long, and reorgs are handled anyway:
* **Reorgs.** The hashes of recently delivered blocks are kept. Each poll compares the cursor
  block's hash with the chain's (one call: a changed block changes every later hash); on a
  change, a binary search over the kept hashes finds the last block still canonical, the
  checkpoint is rolled back to it, and if logs after it had been returned, ``read_new`` raises
  :class:`~hns.sources.base.SourceReset`: the next call replays the corrected history from the
  checkpoint. ``removed: true`` logs make the range be fetched again.
* **Polite following.** Once caught up, the head is polled at most every ``poll_interval``
  seconds, however often ``read_new`` is called (the PKI calls it 4 times a second).
* **Resumable.** With a checkpoint file (:func:`hns.checkpoint.checkpoint_path` under the
  node's home), a restart, even after SIGKILL, returns the stored logs at once and goes on
  after the last committed range. Without one the checkpoint lives in memory.

web3.py (``AsyncWeb3`` with ``AsyncHTTPProvider`` or ``WebSocketProvider``, no middleware) is
imported on first use, so ``import hns`` stays light; results are used raw, exactly as the
JSON-RPC returns them (the same ``eth_getLogs`` objects a hypermap-cacher file holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from hns.bootstrap import Bootstrap, BootstrapError, load_bootstrap
from hns.checkpoint import ChainIdentity, Checkpoint, CheckpointError, Cursor, log_position
from hns.events import (
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    MINT_TOPIC,
    NOTE_TOPIC,
    MalformedLog,
    parse_quantity,
    parse_word,
    same_address,
    to_data,
    to_quantity,
)
from hns.names import labelhash
from hns.records import HNS_NOTES, REFERENCE_NOTES
from hns.sources.base import SourceError, SourceReset

if TYPE_CHECKING:
    from web3 import AsyncWeb3

DEFAULT_CONFIRMATIONS = 12
"""Blocks between the head and what is delivered (see the module doc for the choice)."""
DEFAULT_POLL_INTERVAL = 2.0
"""Seconds between head polls once caught up: Base's block time."""
DEFAULT_BATCH_SECONDS = 5.0
"""How long one ``read_new`` keeps syncing before returning what it has (so a consumer gets
records while a long history is still being fetched)."""
REORG_HORIZON = 256
"""Ranges ending this close to the head also have their last block's header read before the
logs, so a reorg between the queries is seen; deeper history cannot reorganise."""

CHAIN_NAMES: Mapping[int, str] = {
    1: "Ethereum",
    10: "OP Mainnet",
    8453: "Base",
    84532: "Base Sepolia",
    11155111: "Sepolia",
    31337: "a local dev chain",
}

T = TypeVar("T")


def chain_name(chain_id: int) -> str:
    """``8453 (Base)``, for messages."""
    known = CHAIN_NAMES.get(chain_id)
    return f"{chain_id} ({known})" if known else str(chain_id)


def redact_url(url: str) -> str:
    """Scheme, host and port only: provider URLs carry API keys in their paths and queries."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    tail = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{tail}"


# --- errors ------------------------------------------------------------------------------------


class ChainIdMismatch(SourceError):
    """The endpoint serves another chain. Permanent: fix the URL or ``--chain-id``."""

    def __init__(self, source: str, expected: int, got: int) -> None:
        super().__init__(
            f"{source}: wrong chain: the endpoint serves chain {chain_name(got)}, "
            f"expected {chain_name(expected)}"
        )
        self.expected = expected
        self.got = got


class _RangeTooLarge(Exception):
    """The provider refused a block range as too wide or its answer as too big."""

    def __init__(self, message: str, hint: int | None) -> None:
        super().__init__(message)
        self.hint = hint


class _Retry(Exception):
    """A failure worth retrying (the provider is busy, lagging, or answered inconsistently)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _NotYet(Exception):
    """The provider does not have a block we asked about yet: stop this pass, poll again."""


ErrorKind = Literal["range", "transient", "fatal"]

_RATE_RE = re.compile(
    r"rate.?limit|too many requests|request limit|capacity|quota|throughput|compute units"
    r"|try again|temporarily|overloaded|busy|unavailable",
    re.I,
)
_RANGE_RE = re.compile(
    r"block range|range (is )?too (large|wide|big)|range limit|exceed(s|ed)? .*range"
    r"|more than [\d,]+ (results|logs)|query returned more than|too many (results|logs|blocks)"
    r"|(response|result) (size|is too)|max(imum)? (number of )?(results|logs|block range|range)"
    r"|limited to|query timeout|logs? .*exceed|result window",
    re.I,
)
_LAG_RE = re.compile(
    r"header not found|unknown block|block not found|blockoutofrange|not yet (available|synced)"
    r"|not synced|beyond (the )?(current )?head|greater than (the )?(latest|current|head)"
    r"|missing trie node"
    r"|after last accepted",
    re.I,
)
_SUGGEST_RE = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]", re.I)
_CAP_RE = re.compile(
    r"(?:max(?:imum)?(?: allowed)?(?: block)?(?: range)?(?: is| of)?|limited to(?: a)?"
    r"|up to(?: a)?)[:\s]*(\d[\d,]*)\s*(k\b)?",
    re.I,
)


def classify_rpc_error(code: object, message: str) -> ErrorKind:
    """What a JSON-RPC error object means for us.

    Providers word the same conditions differently, so the message decides first: rate limits
    and lagging nodes are transient, range/size complaints mean "ask for less". Failing that,
    the server-error codes (-32000..-32099, including Infura's -32005 "limit exceeded") and
    -32603 are transient; anything else (method not found, invalid params) is fatal.
    """
    if code == -32601:
        return "fatal"  # method not found: the endpoint does not serve eth_getLogs at all
    if _RATE_RE.search(message):
        return "transient"
    if _RANGE_RE.search(message):
        return "range"
    if _LAG_RE.search(message):
        return "transient"
    server_error = isinstance(code, int) and (code in (429, -32603) or -32099 <= code <= -32000)
    return "transient" if server_error and not isinstance(code, bool) else "fatal"


def range_hint(message: str) -> int | None:
    """A block count the provider says would work: Alchemy's ``[0x.., 0x..]`` suggestion, or a
    stated maximum range ("max: 2000", "limited to a 10,000 range", "up to a 2K block range").
    A count of *results* ("more than 10000 results") is not a range and gives None."""
    m = _SUGGEST_RE.search(message)
    if m:
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        return hi - lo + 1 if hi >= lo else None
    for m in _CAP_RE.finditer(message):
        tail = message[m.end() : m.end() + 12].lower()
        if "result" in tail or "log" in tail:
            continue
        n = int(m.group(1).replace(",", ""))
        if m.group(2):
            n *= 1000
        if n > 0:
            return n
    return None


# --- policies and progress --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Deadlines and retries of single JSON-RPC calls (and of inconsistent ranges)."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 10.0
    call_timeout: float = 30.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]; at least a Retry-After
        (capped at ``max_delay``) when the provider gave one."""
        d = rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))
        if retry_after is not None and retry_after > 0:
            d = max(d, min(retry_after, self.max_delay))
        return d


@dataclass(frozen=True, slots=True)
class RangePolicy:
    """Block range sizes of the sync and how many ranges are fetched at once."""

    initial: int = 2_000
    maximum: int = 100_000
    concurrency: int = 4
    forget_ceiling_after: int = 64
    """Successful ranges after which a range error's ceiling is forgotten (dense history
    passes; a provider's fixed cap is found again with a single failure)."""


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Where a sync is, for a progress bar. Blocks are counted from ``first_block``."""

    first_block: int
    cursor: int | None
    target: int | None
    head: int | None
    logs: int
    blocks_per_s: float
    logs_per_s: float
    elapsed: float

    @property
    def done(self) -> int:
        return 0 if self.cursor is None else self.cursor - self.first_block + 1

    @property
    def total(self) -> int:
        return 0 if self.target is None else max(0, self.target - self.first_block + 1)

    @property
    def synced(self) -> bool:
        return self.target is not None and self.done >= self.total


ProgressCallback = Callable[[SyncProgress], None]


# --- one endpoint ------------------------------------------------------------------------------


class RpcEndpoint:
    """One JSON-RPC endpoint through web3.py, raw results, with deadlines and retries."""

    def __init__(self, url: str, label: str, policy: RetryPolicy, rng: random.Random) -> None:
        self._url = url
        self._label = label
        self._policy = policy
        self._rng = rng
        self._ws = url.startswith(("ws://", "wss://"))
        self._w3: AsyncWeb3[Any] | None = None
        self.stats: Counter[str] = Counter()

    def _clean(self, text: str) -> str:
        return text.replace(self._url, self._label)[:300]

    async def _connect(self) -> AsyncWeb3[Any]:
        _import_web3()
        from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider

        if self._ws:
            ws = WebSocketProvider(
                self._url, max_connection_retries=1, request_timeout=self._policy.call_timeout
            )
            await ws.connect()
            w3: AsyncWeb3[Any] = AsyncWeb3(ws, middleware=[])
        else:
            import aiohttp

            http = AsyncHTTPProvider(
                self._url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=self._policy.call_timeout)},
                exception_retry_configuration=None,
            )
            _own_session_lock(http)
            w3 = AsyncWeb3(http, middleware=[])
        self._w3 = w3
        return w3

    async def _once(self, method: str, params: list[Any]) -> Any:
        """One request. It runs in a task of its own that our deadline never cancels: web3's
        HTTP session cache takes a ``threading.Lock`` from an executor thread, and a request
        cancelled while waiting for it leaves the lock held forever (every later request, and
        interpreter exit, then hang). The provider's own timeout (``call_timeout``) ends an
        abandoned request soon after."""
        from web3.types import RPCEndpoint

        w3 = self._w3 if self._w3 is not None else await self._connect()
        endpoint = RPCEndpoint(method)
        request = (
            w3.manager.socket_request(endpoint, params)
            if self._ws
            else w3.manager.coro_request(endpoint, params)
        )
        task = asyncio.ensure_future(request)
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def call(self, method: str, params: list[Any]) -> Any:
        """The call's result. Raises :class:`_RangeTooLarge` at once (the caller splits),
        :class:`SourceError` on a fatal error or when attempts run out."""
        _import_web3()
        from aiohttp import ClientResponseError
        from web3.exceptions import Web3RPCError

        last = "no attempt made"
        for attempt in range(self._policy.attempts):
            retry_after: float | None = None
            self.stats["calls"] += 1
            try:
                async with asyncio.timeout(self._policy.call_timeout):
                    return await self._once(method, params)
            except Web3RPCError as e:
                code, message = rpc_error_of(e.rpc_response, e.message)
                kind = classify_rpc_error(code, message)
                if kind == "range" and method != "eth_getLogs":
                    kind = "transient"  # only a log query can be made smaller
                if kind == "range":
                    self.stats["range_errors"] += 1
                    raise _RangeTooLarge(self._clean(message), range_hint(message)) from None
                if kind == "fatal":
                    raise SourceError(
                        f"{self._label}: {method}: {self._clean(message)} (code {code})"
                    ) from None
                last = f"{self._clean(message)} (code {code})"
            except ClientResponseError as e:
                if e.status == 413 and method == "eth_getLogs":
                    self.stats["range_errors"] += 1
                    raise _RangeTooLarge(f"HTTP 413 {e.message}", None) from None
                if e.status not in (408, 425, 429) and e.status < 500:
                    raise SourceError(
                        f"{self._label}: {method}: HTTP {e.status} {self._clean(e.message)}"
                    ) from None
                last = f"HTTP {e.status} {self._clean(e.message)}"
                retry_after = _retry_after(e.headers)
            except TimeoutError:
                last = f"no answer within {self._policy.call_timeout:g} s"
                await self._drop_connection(timed_out=True)
            except Exception as e:  # connection errors, garbage bodies, closed sockets
                last = f"{type(e).__name__}: {self._clean(str(e))}"
                await self._drop_connection()
            self.stats["retries"] += 1
            if attempt + 1 < self._policy.attempts:
                await asyncio.sleep(self._policy.delay(attempt, self._rng, retry_after))
        raise SourceError(
            f"{self._label}: {method} failed {self._policy.attempts} times; last: {last}"
        )

    async def _drop_connection(self, *, timed_out: bool = False) -> None:
        """Forget a websocket connection after a transport failure (the next call reconnects).
        HTTP keeps its pooled session (aiohttp replaces broken connections itself) unless a
        call timed out: then the provider is replaced too, so a session lock left held by an
        abandoned request (see :func:`_own_session_lock`) cannot stall the calls after it."""
        if not self._ws and timed_out and self._w3 is not None:
            w3, self._w3 = self._w3, None
            _release_session_lock(w3.provider)
            return
        if self._ws and self._w3 is not None:
            w3, self._w3 = self._w3, None
            with contextlib.suppress(Exception):  # the connection is broken already
                await w3.provider.disconnect()

    async def aclose(self) -> None:
        w3, self._w3 = self._w3, None
        if w3 is not None:
            with contextlib.suppress(Exception):  # nothing useful to do when closing
                await w3.provider.disconnect()
            if not self._ws:
                _release_session_lock(w3.provider)


def _own_session_lock(provider: object) -> None:
    """Give ``provider``'s HTTP session manager a lock of its own. web3 (7 and 8) takes one
    class-wide ``threading.Lock`` for every HTTP request of every provider in the process,
    from an executor thread; a request cancelled while it waits for that lock (an event loop
    shutting down with the request pending is enough) leaves it held for good, and every
    later request of every provider hangs. With a lock per provider, the damage stays with a
    provider we replace after a timeout (:meth:`RpcEndpoint._drop_connection`)."""
    manager = getattr(provider, "_request_session_manager", None)
    if manager is not None and hasattr(manager, "_lock"):
        manager._lock = threading.Lock()


def _release_session_lock(provider: object) -> None:
    """Let go of a replaced provider's session lock if it is held, and stop its executor: a
    thread of it blocked on the lock would otherwise block forever, and interpreter exit
    (which joins executor threads) with it. Requests still running on the provider end on
    their own deadlines."""
    manager = getattr(provider, "_request_session_manager", None)
    lock = getattr(manager, "_lock", None)
    if lock is None or lock is getattr(type(manager), "_lock", None):
        return  # never ours to release: the class-wide lock
    with contextlib.suppress(RuntimeError):
        if lock.locked():
            lock.release()
    pool = getattr(manager, "session_pool", None)
    if pool is not None:
        pool.shutdown(wait=False)


def _import_web3() -> None:
    """Import web3 without its side effect on the interpreter: py_ecc (imported through
    eth_account) raises the recursion limit to 100,000 at import, which turns any deep
    recursion (a hostile cache file's ``[[[[…``, parsed by ``json``) from a RecursionError
    into a segfault of the whole node. Nothing we call from web3 recurses deeply."""
    if "web3" in sys.modules:
        return
    limit = sys.getrecursionlimit()
    try:
        import web3  # noqa: F401
    finally:
        sys.setrecursionlimit(limit)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned request's outcome as seen (asyncio would warn about it)."""
    if not task.cancelled():
        task.exception()


def rpc_error_of(response: object, fallback: str) -> tuple[object, str]:
    if isinstance(response, Mapping):
        err = response.get("error")
        if isinstance(err, Mapping):
            message = err.get("message")
            data = err.get("data")
            text = str(message) if message is not None else fallback
            if isinstance(data, str) and data:
                text = f"{text} ({data})"
            return err.get("code"), text
    return None, fallback


def _retry_after(headers: object) -> float | None:
    if not isinstance(headers, Mapping):
        return None
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# --- the source --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Range:
    lo: int
    hi: int
    task: asyncio.Task[_Fetched]


@dataclass(slots=True)
class _Fetched:
    logs: list[dict[str, object]]
    end_hash: str
    hashes: dict[int, str] = field(default_factory=dict)


class ChainSource:
    """A :class:`~hns.sources.base.LogSource` reading Hypermap from JSON-RPC endpoint ``url``.

    ``checkpoint``: the SQLite file to keep delivered logs in (None: memory only).
    ``to_block``: stop there (a bounded sync); None follows the head forever.
    ``extensions``: also read ``~quic-port`` notes (False: exactly the reference's five).
    ``progress``: called after every committed range (for the CLI's bar).
    ``bootstrap``: a directory or http(s) URL of hypermap-cacher files (:mod:`hns.bootstrap`)
    read into an empty checkpoint before the first RPC sync, which then starts after the last
    block the files cover; ignored when the checkpoint already holds history.
    ``seed``: seeds the backoff jitter (tests).
    """

    resettable = True
    """A reorg can change what this source delivered (see :class:`SourceReset`)."""

    def __init__(
        self,
        url: str,
        *,
        chain_id: int = HYPERMAP_CHAIN_ID,
        contract: str = HYPERMAP_ADDRESS,
        first_block: int = HYPERMAP_FIRST_BLOCK,
        to_block: int | None = None,
        confirmations: int = DEFAULT_CONFIRMATIONS,
        checkpoint: str | os.PathLike[str] | None = None,
        extensions: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        retry: RetryPolicy | None = None,
        ranges: RangePolicy | None = None,
        progress: ProgressCallback | None = None,
        bootstrap: str | None = None,
        seed: int | None = None,
    ) -> None:
        if confirmations < 0 or first_block < 0:
            raise ValueError("confirmations and first_block are non-negative")
        self.url = url
        self.name = f"chain {redact_url(url)}"
        self.identity = ChainIdentity(chain_id, contract.lower(), first_block)
        self.to_block = to_block
        self.confirmations = confirmations
        self._checkpoint_path = checkpoint
        labels = HNS_NOTES if extensions else REFERENCE_NOTES
        self._note_topics = sorted(to_data(labelhash(n)) for n in labels)
        self._note_hashes = {labelhash(n) for n in labels}
        self._poll_interval = poll_interval
        self._batch_seconds = batch_seconds
        self._retry = retry or RetryPolicy()
        self._ranges = ranges or RangePolicy()
        self._progress = progress
        self._bootstrap_from = bootstrap
        #: What the bootstrap files gave (None: no bootstrap ran).
        self.bootstrap: Bootstrap | None = None
        self._rng = random.Random(seed)
        self._rpc = RpcEndpoint(url, self.name, self._retry, self._rng)
        self._ckpt: Checkpoint | None = None
        self._fatal: SourceError | None = None
        self._chain_checked = False
        self._busy = asyncio.Lock()
        self._closed = False
        self._problems: list[str] = []
        # Sync state.
        self._cursor: Cursor | None = None
        self._head: int | None = None
        self._target: int | None = None
        self._last_poll = float("-inf")
        self._caught_up = False
        self._size = max(1, self._ranges.initial)
        self._ceiling: int | None = None
        self._since_ceiling = 0
        # Delivery state: the position of the last log returned; anything committed after it
        # is returned by the next call ("dirty" avoids a database read when nothing is new).
        self._returned: tuple[int, int] = (-1, -1)
        self._dirty = True
        self._stored = 0
        self._started = time.monotonic()
        self._fetched_blocks = 0
        self._fetched_logs = 0
        #: Counters: ``ranges`` committed, ``reorgs`` seen, ``resets`` raised, ``inconsistent``
        #: answers retried, ``foreign`` logs dropped (another address or event), plus the
        #: endpoint's ``calls``, ``retries`` and ``range_errors``.
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"ChainSource({self.name!r})"

    # --- state for callers -----------------------------------------------------------------

    @property
    def cursor(self) -> Cursor | None:
        """The last block fully fetched and committed."""
        return self._cursor

    @property
    def head(self) -> int | None:
        """The chain head as last reported by the endpoint."""
        return self._head

    @property
    def synced(self) -> bool:
        """True once everything up to ``head - confirmations`` (or ``to_block``) is fetched
        and returned."""
        return self._caught_up and not self._dirty

    def counters(self) -> dict[str, int]:
        return dict(self.stats + self._rpc.stats)

    def progress(self) -> SyncProgress:
        elapsed = max(1e-9, time.monotonic() - self._started)
        return SyncProgress(
            first_block=self.identity.first_block,
            cursor=self._cursor.block if self._cursor else None,
            target=self._target,
            head=self._head,
            logs=self._stored,
            blocks_per_s=self._fetched_blocks / elapsed,
            logs_per_s=self._fetched_logs / elapsed,
            elapsed=elapsed,
        )

    # --- the LogSource protocol ------------------------------------------------------------

    async def read_new(self) -> list[dict[str, object]]:
        """Logs committed and not yet returned, in chain order, after at most
        ``batch_seconds`` of syncing. Raises :class:`SourceError` (nothing returned; what
        was committed is returned by a later call) or :class:`SourceReset`."""
        async with self._busy:
            if self._closed:
                return []
            ckpt = await self._open()
            now = asyncio.get_running_loop().time()
            if not self._caught_up or now - self._last_poll >= self._poll_interval:
                self._last_poll = now
                # The file is the truth: a commit cancelled here may have landed in its thread.
                self._cursor = await asyncio.to_thread(ckpt.cursor)
                await self._poll_head(ckpt)
                await self._check_reorg(ckpt)
                await self._sync(ckpt, now + self._batch_seconds)
            return await self._take(ckpt)

    def take_problems(self) -> list[str]:
        problems, self._problems = self._problems, []
        return problems

    async def aclose(self) -> None:
        """Close the endpoint connection and the checkpoint; idempotent."""
        self._closed = True
        async with self._busy:
            await self._rpc.aclose()
            ckpt, self._ckpt = self._ckpt, None
            if ckpt is not None:
                await asyncio.to_thread(ckpt.close)

    # --- opening ---------------------------------------------------------------------------

    async def _open(self) -> Checkpoint:
        if self._fatal is not None:
            raise self._fatal
        if not self._chain_checked:
            got = self._quantity(await self._rpc.call("eth_chainId", []), "chain id")
            if got != self.identity.chain_id:
                self._fatal = ChainIdMismatch(self.name, self.identity.chain_id, got)
                raise self._fatal
            self._chain_checked = True
        if self._ckpt is None:
            try:
                ckpt = await asyncio.to_thread(Checkpoint, self._checkpoint_path, self.identity)
            except CheckpointError as e:
                self._fatal = SourceError(f"{self.name}: {e}")
                raise self._fatal from None
            self._stored = await asyncio.to_thread(ckpt.count)
            self._ckpt = ckpt
        if self._bootstrap_from is not None:
            await self._apply_bootstrap(self._ckpt, self._bootstrap_from)
            self._bootstrap_from = None
        return self._ckpt

    async def _apply_bootstrap(self, ckpt: Checkpoint, location: str) -> None:
        """Commit the cacher files' coverage as the first range (``hns.bootstrap``). An
        unusable location raises SourceError and is tried again by the next call."""
        if await asyncio.to_thread(ckpt.cursor) is not None:
            self._problems.append(
                f"{self.name}: the checkpoint already holds history; cache not read"
            )
            return
        first = self.identity.first_block
        try:
            plan = await asyncio.to_thread(
                load_bootstrap, location, chain_id=self.identity.chain_id, first_block=first
            )
        except BootstrapError as e:
            raise SourceError(str(e)) from None
        self._problems.extend(plan.problems)
        self.bootstrap = plan
        if not plan.covers:
            self._problems.append(f"cache: no file covers block {first}; syncing by RPC only")
            return
        end_hash = await self._block_hash(plan.last_block)
        if end_hash is None:
            self._problems.append(
                f"cache: it reaches block {plan.last_block}, which the endpoint does not have "
                "yet; not used"
            )
            plan.last_block = first - 1
            return
        logs: list[dict[str, object]] = []
        for log in plan.logs:
            try:
                wanted = self._wanted(log)
            except (MalformedLog, ValueError):
                wanted = True  # the indexer counts and skips what is malformed
            if wanted:
                logs.append(log)
            else:
                self.stats["foreign"] += 1
        plan.logs = logs
        cursor = Cursor(plan.last_block, end_hash)
        self._dirty = True
        await asyncio.to_thread(ckpt.commit, logs, cursor, {}, head=None)
        self._cursor = cursor
        self._stored = await asyncio.to_thread(ckpt.count)
        self.stats["bootstrap_logs"] += len(logs)
        self._report()

    def _quantity(self, value: object, what: str) -> int:
        try:
            return parse_quantity(value, what.replace(" ", "_"))
        except MalformedLog:
            raise SourceError(
                f"{self.name}: the endpoint's {what} {value!r:.40} is not a quantity"
            ) from None

    # --- following the head and reorgs -----------------------------------------------------

    async def _poll_head(self, ckpt: Checkpoint) -> None:
        self._head = self._quantity(await self._rpc.call("eth_blockNumber", []), "block number")
        target = self._head - self.confirmations
        if self.to_block is not None:
            target = min(target, self.to_block)
        self._target = target
        await asyncio.to_thread(ckpt.note_head, self._head)

    async def _block_hash(self, number: int) -> str | None:
        """The canonical hash of block ``number``, None if the endpoint has no such block."""
        header = await self._rpc.call("eth_getBlockByNumber", [to_quantity(number), False])
        if header is None:
            return None
        if not isinstance(header, Mapping):
            raise SourceError(f"{self.name}: block {number}: the header is not an object")
        try:
            return to_data(parse_word(header.get("hash"), "block_hash"))
        except MalformedLog:
            raise SourceError(
                f"{self.name}: block {number}: the header has no valid hash"
            ) from None

    async def _check_reorg(self, ckpt: Checkpoint) -> None:
        """Compare the cursor block's hash with the chain's; roll back on a change."""
        cur = self._cursor
        if cur is None:
            return
        now = await self._block_hash(cur.block)
        if now is None or now == cur.hash:
            return  # same block, or a lagging endpoint: look again next poll
        again = await self._block_hash(cur.block)
        if again != now:
            return  # the endpoint disagrees with itself; look again next poll
        self.stats["reorgs"] += 1
        fork = await self._fork_point(await asyncio.to_thread(ckpt.recent_hashes))
        keep = fork if fork is not None else self.identity.first_block - 1
        self._cursor = await asyncio.to_thread(ckpt.rollback, keep)
        self._stored = await asyncio.to_thread(ckpt.count)
        self._caught_up = False
        from_block = keep + 1
        reason = f"block {cur.block} is now {now[:12]}…, was {cur.hash[:12]}…"
        self._problems.append(f"{self.name}: chain reorganised from block {from_block}: {reason}")
        if self._returned[0] >= from_block:
            self._returned = (-1, -1)
            self._dirty = True
            self.stats["resets"] += 1
            raise SourceReset(self.name, from_block, reason)

    async def _fork_point(self, known: list[tuple[int, str]]) -> int | None:
        """The highest kept block that is still canonical (binary search: a block is canonical
        only if every block below it is), or None if none of them is."""
        lo, hi, best = 0, len(known) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            number, stored = known[mid]
            if await self._block_hash(number) == stored:
                best, lo = number, mid + 1
            else:
                hi = mid - 1
        return best

    # --- syncing ---------------------------------------------------------------------------

    async def _sync(self, ckpt: Checkpoint, deadline: float) -> None:
        """Fetch and commit ranges from the cursor to the target until ``deadline``."""
        loop = asyncio.get_running_loop()
        target = self._target
        start = self._cursor.block + 1 if self._cursor else self.identity.first_block
        if target is None or start > target:
            self._caught_up = True
            self._report()
            return
        self._caught_up = False
        ranges: deque[_Range] = deque()
        next_lo = start
        try:
            while True:
                while (
                    len(ranges) < max(1, self._ranges.concurrency)
                    and next_lo <= target
                    and loop.time() < deadline
                ):
                    hi = min(next_lo + self._size - 1, target)
                    task = loop.create_task(self._fetch(next_lo, hi))
                    ranges.append(_Range(next_lo, hi, task))
                    next_lo = hi + 1
                if not ranges:
                    break
                first = ranges[0]
                try:
                    got = await first.task
                except _RangeTooLarge as e:
                    await _cancel(r.task for r in ranges)
                    ranges.clear()
                    if first.lo == first.hi:
                        raise SourceError(
                            f"{self.name}: block {first.lo} alone is too much for the "
                            f"endpoint ({e})"
                        ) from None
                    self._shrink(first.hi - first.lo + 1, e.hint)
                    next_lo = first.lo
                    continue
                except _NotYet:
                    break
                ranges.popleft()
                await self._commit(ckpt, first, got)
        finally:
            await _cancel(r.task for r in ranges)
        self._caught_up = self._cursor is not None and self._cursor.block >= target

    async def _commit(self, ckpt: Checkpoint, span: _Range, got: _Fetched) -> None:
        cursor = Cursor(span.hi, got.end_hash)
        self._dirty = True  # before: a cancelled commit may still land in its thread
        await asyncio.to_thread(ckpt.commit, got.logs, cursor, got.hashes, head=self._head)
        self._cursor = cursor
        self._stored += len(got.logs)
        self._fetched_blocks += span.hi - span.lo + 1
        self._fetched_logs += len(got.logs)
        self.stats["ranges"] += 1
        self._grow(span.hi - span.lo + 1)
        self._report()

    def _report(self) -> None:
        if self._progress is None:
            return
        try:
            self._progress(self.progress())
        except Exception as e:  # a display bug must not stop the sync
            self._progress = None
            self._problems.append(f"{self.name}: progress callback failed ({e!r}); dropped")

    def _shrink(self, failed: int, hint: int | None) -> None:
        self._ceiling = failed if self._ceiling is None else min(self._ceiling, failed)
        self._since_ceiling = 0
        size = failed // 2
        if hint is not None and hint < failed:
            size = hint
        self._size = max(1, size)

    def _grow(self, done: int) -> None:
        if done < self._size:
            return  # a short range (the tail) says nothing about a bigger one
        self._since_ceiling += 1
        if self._ceiling is not None and self._since_ceiling >= self._ranges.forget_ceiling_after:
            self._ceiling = None
        limit = self._ranges.maximum
        if self._ceiling is not None:
            limit = min(limit, self._ceiling - 1)
        self._size = max(1, min(self._size * 2, limit))

    async def _take(self, ckpt: Checkpoint) -> list[dict[str, object]]:
        if not self._dirty:
            return []
        logs = await asyncio.to_thread(ckpt.logs_after, self._returned)
        if logs:
            self._returned = log_position(logs[-1])
        self._dirty = False
        return logs

    # --- one range -------------------------------------------------------------------------

    async def _fetch(self, lo: int, hi: int) -> _Fetched:
        """Both queries of blocks ``lo..hi`` and the last block's hash, consistent, or an
        exception (:class:`_RangeTooLarge`, :class:`_NotYet`, :class:`SourceError`)."""
        last = ""
        for attempt in range(self._retry.attempts):
            try:
                return await self._fetch_once(lo, hi)
            except _Retry as e:
                self.stats["inconsistent"] += 1
                last = str(e)
            if attempt + 1 < self._retry.attempts:
                await asyncio.sleep(self._retry.delay(attempt, self._rng))
        raise SourceError(f"{self.name}: blocks {lo}..{hi}: inconsistent answers; last: {last}")

    async def _fetch_once(self, lo: int, hi: int) -> _Fetched:
        near_head = self._head is not None and hi > self._head - REORG_HORIZON
        before = await self._block_hash(hi) if near_head else None
        if near_head and before is None:
            raise _NotYet()
        span = {
            "address": self.identity.contract,
            "fromBlock": to_quantity(lo),
            "toBlock": to_quantity(hi),
        }
        mints, notes = await _both(
            self._rpc.call("eth_getLogs", [{**span, "topics": [to_data(MINT_TOPIC)]}]),
            self._rpc.call(
                "eth_getLogs",
                [{**span, "topics": [to_data(NOTE_TOPIC), None, None, self._note_topics]}],
            ),
        )
        end_hash = await self._block_hash(hi)
        if end_hash is None:
            raise _NotYet()
        if before is not None and before != end_hash:
            raise _Retry(f"block {hi} changed while its range was read")
        merged: dict[tuple[int, int], dict[str, object]] = {}
        hashes: dict[int, str] = {}
        for result, topic in ((mints, MINT_TOPIC), (notes, NOTE_TOPIC)):
            for log in self._valid_logs(result, topic, lo, hi):
                pos = log_position(log)
                block_hash = str(log["blockHash"]).lower()
                if hashes.setdefault(pos[0], block_hash) != block_hash:
                    raise _Retry(f"block {pos[0]} has logs with two different hashes")
                old = merged.setdefault(pos, log)
                if old is not log and old != log:
                    raise _Retry(f"two different logs at block {pos[0]} index {pos[1]}")
        if hashes.get(hi, end_hash) != end_hash:
            raise _Retry(f"block {hi}'s logs are from another fork than its header")
        logs = [merged[p] for p in sorted(merged)]
        return _Fetched(logs=logs, end_hash=end_hash, hashes=hashes)

    def _valid_logs(
        self, result: object, topic0: bytes, lo: int, hi: int
    ) -> list[dict[str, object]]:
        """The logs of one query that belong to it; raises :class:`_Retry` on answers that
        cannot be right (so another attempt may be), drops what the filter excluded."""
        if not isinstance(result, list):
            raise _Retry("eth_getLogs did not return a list")
        out: list[dict[str, object]] = []
        for log in result:
            if not isinstance(log, dict):
                raise _Retry("eth_getLogs returned a non-object")
            if log.get("removed") is True:
                raise _Retry("a removed log: the chain is reorganising")
            try:
                if not self._wanted(log, topic0):
                    self.stats["foreign"] += 1
                    continue
                block, _ = log_position(log)
                parse_word(log.get("blockHash"), "block_hash")
            except (MalformedLog, ValueError) as e:
                raise _Retry(f"a malformed log ({e})") from None
            if not lo <= block <= hi:
                raise _Retry(f"a log of block {block} in the answer for {lo}..{hi}")
            out.append(log)
        return out

    def _wanted(self, log: Mapping[str, object], topic0: bytes | None = None) -> bool:
        """Whether ``log`` is one the filters ask for: the contract's Mint (or networking
        Note) logs, of event ``topic0`` if given. Raises MalformedLog on a bad topic."""
        topics = log.get("topics")
        first = parse_word(topics[0]) if isinstance(topics, list) and topics else None
        if topic0 is not None and first != topic0:
            return False
        return (
            same_address(log.get("address"), self.identity.contract)
            and first in (MINT_TOPIC, NOTE_TOPIC)
            and (first != NOTE_TOPIC or self._note_label_ok(topics))
        )

    def _note_label_ok(self, topics: object) -> bool:
        if not isinstance(topics, list) or len(topics) != 4:
            return True  # malformed: the indexer counts it; the filter cannot have matched it
        return parse_word(topics[3]) in self._note_hashes


async def _both(a: Awaitable[T], b: Awaitable[T]) -> tuple[T, T]:
    """Await two calls concurrently; the first failure cancels the other and is raised."""
    ta = asyncio.ensure_future(a)
    tb = asyncio.ensure_future(b)
    try:
        await asyncio.wait([ta, tb], return_when=asyncio.FIRST_EXCEPTION)
        for t in (ta, tb):
            exc = t.exception() if t.done() and not t.cancelled() else None
            if exc is not None:
                raise exc
        return ta.result(), tb.result()
    finally:
        await _cancel((ta, tb))


async def _cancel(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel and await ``tasks``, swallowing what they raise (their results are unwanted)."""
    futures = list(tasks)
    pending = [t for t in futures if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in futures:
        if not t.cancelled():
            t.exception()  # retrieved, so asyncio does not warn about it
