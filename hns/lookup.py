"""A live lookup of one HNS name from Hypermap on chain (``eth_call``), for names not indexed yet.

The indexer (:mod:`hns.indexer`) knows what it has synced; a node registered seconds ago, or
any name while a first sync is still running, is not in it. :class:`LiveLookup` asks the chain
directly, the way the reference's single-name fallback does (``hns-indexer``'s
``fetch_node``): Hypermap's ``get(bytes32 namehash) returns (address tba, address owner,
bytes data)`` for the name itself (minted iff ``tba`` or ``owner`` is non-zero) and for each
networking note under it (``~net-key``, ``~ip``, ``~tcp-port``, ``~ws-port``, ``~routers``
and our ``~quic-port``), whose ``data`` is the note's latest value.

How:

* **Chain id first**, once: ``eth_chainId`` must be ``chain_id`` (Base by default), else
  every lookup raises :class:`~hns.sources.chain.ChainIdMismatch`.
* **One call.** All the ``get`` calls go in one ``eth_call`` of Multicall3's
  ``aggregate((address,bytes)[])`` at its canonical address (:data:`MULTICALL3_ADDRESS`,
  deployed on Base and most chains; Hyperware's register UI batches its Hypermap calls
  through it), at block ``latest``: one round trip, one block's consistent state. A hash
  never written reads as all zeros (the reference's settings app reads the ``~routers`` of
  direct nodes this way), so one revert-free batch covers every note. Where Multicall3 is
  absent (the call answers ``0x``: no code there) or its call reverts, each ``get`` is its
  own ``eth_call`` (concurrently, each at ``latest``), and the lookup remembers not to try
  Multicall3 again.
* **Bounded.** Every call has a deadline and bounded retries with backoff
  (:class:`~hns.sources.chain.RetryPolicy`; :data:`DEFAULT_LOOKUP_RETRY`: 3 attempts of at
  most 10 s each), then :class:`~hns.sources.base.SourceError`. Malformed answers raise
  :class:`MalformedAnswer` (a ``SourceError``), at once.
* **Cached.** What the chain said about a name is kept ``cache_ttl`` seconds (a name not
  minted, or a record not usable, only ``negative_ttl`` seconds), at most ``cache_size`` names
  (least recently used dropped first). Errors are not cached. Concurrent lookups of one name
  share one in-flight read.

What the notes mean (:func:`read_notes`, pure): each value is read exactly as the indexer
reads it (``hns/records.py`` decoders): a key that is not 32 bytes, an ip that is not 4 or 16
bytes, a port that is not 2 bytes is "not set"; a port of 0 is not offered; a ``~routers``
value whose length is not a multiple of 32 names no routers. But a live read sees only each
note's latest value, not the order in which the notes were written, so the routing is decided
like this:

* a valid ``~ip`` makes the node **direct**: its ip and ports; ``~routers`` is ignored;
* otherwise a non-empty ``~routers`` makes it **indirect**: no ip, no ports, its routers;
* otherwise neither: no ip, no routers, the ports as noted.

This is what the reference does with the same chain state: its fallback reads every note with
``get`` and publishes both the ip and the routers, and its ``net`` makes a node with an ip
direct (``ingest_log``: ``Routers`` only when ``ips`` is empty). It equals the indexer's record
whenever the latest routing note agrees with the latest values, which includes every first
registration and every re-registration that writes ``~ip`` (direct, again or from indirect).
Where no live read can know the order, it differs from the indexer (which applies notes in
chain order): a node that went from direct to indirect by writing only ``~routers`` still has
its old ``~ip`` on chain and reads as direct; an empty ``~routers`` note (the indexer: "no
routers", ip and ports cleared) reads as no note; a malformed latest value reads as "not set"
where the indexer kept the value before it.

Routers are namehashes on chain, and ``eth_call`` cannot turn a hash back into a name: the
optional ``names`` callable (``0x`` + 64 lowercase hex digits -> name, e.g. from a synced
index) does. A name it gives is used only if its namehash is that hash. If any router of the
list cannot be named, :attr:`NodeRecord.routers` is empty (all or nothing, like the reference's
fallback and like the indexer before the last router's Mint) and
:attr:`LookupResult.unresolved_routers` lists the hashes not named. Names are resolved at each
lookup (cached chain data included), so a router the index learns later is named at once.

web3.py is imported on the first call and ``eth_abi`` on the first encode or decode, so
``import hns`` stays light.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from hns.events import (
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    MalformedLog,
    parse_data,
    parse_quantity,
    to_data,
)
from hns.keccak import keccak256
from hns.names import InvalidName, namehash, namehash_hex, validate_name
from hns.records import (
    NOTE_IP,
    NOTE_NET_KEY,
    NOTE_QUIC_PORT,
    NOTE_ROUTERS,
    NOTE_TCP_PORT,
    NOTE_WS_PORT,
    PORT_NOTES,
    NodeRecord,
    decode_ip,
    decode_net_key,
    decode_port,
    decode_router_hashes,
)
from hns.sources.base import SourceError
from hns.sources.chain import ChainIdMismatch, RetryPolicy, RpcEndpoint, redact_url, rpc_error_of

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
"""Multicall3's canonical address (the same on every chain it is deployed on)."""

GET_SIGNATURE = "get(bytes32)"
AGGREGATE_SIGNATURE = "aggregate((address,bytes)[])"
GET_SELECTOR = keccak256(GET_SIGNATURE.encode())[:4]
AGGREGATE_SELECTOR = keccak256(AGGREGATE_SIGNATURE.encode())[:4]

DEFAULT_CACHE_TTL = 60.0
"""Seconds a found, usable record is reused without asking the chain again."""
DEFAULT_NEGATIVE_TTL = 5.0
"""Seconds "not minted" (or a record not usable yet) is reused: a node registering now is
found again soon."""
DEFAULT_CACHE_SIZE = 4096
"""Names kept at most (least recently used dropped first)."""
DEFAULT_LOOKUP_RETRY = RetryPolicy(attempts=3, base_delay=0.25, max_delay=2.0, call_timeout=10.0)
"""A lookup is on someone's critical path (a message waits for it): fewer, shorter attempts
than a sync's."""
MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest ``eth_call`` answer decoded (notes are small; a bigger answer is refused)."""

LIVE_NOTES: tuple[str, ...] = (NOTE_NET_KEY, NOTE_IP, NOTE_TCP_PORT, NOTE_WS_PORT, NOTE_ROUTERS)
"""The notes every lookup reads (the reference's five), in call order; ``~quic-port`` follows
them when extensions are read."""

NameResolver = Callable[[str], str | None]
"""Namehash (``0x`` + 64 lowercase hex digits) -> the name minted with it, or None."""

T = TypeVar("T")

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_REVERT_RE = re.compile(r"revert|invalid opcode|vm execution error", re.I)
_PORT_BY_NOTE = {note: proto for proto, note in PORT_NOTES.items()}


class MalformedAnswer(SourceError):
    """The endpoint's answer cannot be decoded (or is not what the call returns)."""


# --- ABI -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HypermapEntry:
    """What Hypermap's ``get`` returns: ``tba`` and ``owner`` as ``0x`` lowercase hex."""

    tba: str
    owner: str
    data: bytes

    @property
    def minted(self) -> bool:
        """An entry someone minted (a note or a hash never written has neither)."""
        return int(self.tba, 16) != 0 or int(self.owner, 16) != 0


def encode_get(entry_hash: bytes) -> bytes:
    """Calldata of ``get(bytes32)``."""
    if not isinstance(entry_hash, bytes | bytearray) or len(entry_hash) != 32:
        raise ValueError("a namehash is exactly 32 bytes")
    return GET_SELECTOR + bytes(entry_hash)


def decode_get(data: bytes) -> HypermapEntry:
    """The return data of ``get(bytes32)``; raises :class:`MalformedAnswer`."""
    if len(data) < 96:
        raise MalformedAnswer(
            f"get() answered {len(data)} bytes, not (address, address, bytes)"
            + (": no contract at that address?" if not data else "")
        )
    from eth_abi.abi import decode

    try:
        tba, owner, value = decode(["address", "address", "bytes"], bytes(data))
    except Exception as e:  # eth_abi's DecodingError and whatever bad offsets provoke
        raise MalformedAnswer(f"get() answered undecodable data ({e})") from None
    return HypermapEntry(tba=str(tba).lower(), owner=str(owner).lower(), data=bytes(value))


def encode_aggregate(calls: Sequence[tuple[str, bytes]]) -> bytes:
    """Calldata of Multicall3's ``aggregate((address target, bytes callData)[])``."""
    for target, _ in calls:
        _check_address(target, "call target")
    from eth_abi.abi import encode

    return AGGREGATE_SELECTOR + encode(
        ["(address,bytes)[]"], [[(target, bytes(data)) for target, data in calls]]
    )


def decode_aggregate(data: bytes, calls: int) -> tuple[int, tuple[bytes, ...]]:
    """``(blockNumber, returnData)`` of ``aggregate``, with exactly ``calls`` answers; raises
    :class:`MalformedAnswer`."""
    if len(data) < 96:
        raise MalformedAnswer(f"aggregate() answered {len(data)} bytes, not (uint256, bytes[])")
    from eth_abi.abi import decode

    try:
        block, answers = decode(["uint256", "bytes[]"], bytes(data))
    except Exception as e:  # eth_abi's DecodingError and whatever bad offsets provoke
        raise MalformedAnswer(f"aggregate() answered undecodable data ({e})") from None
    if len(answers) != calls:
        raise MalformedAnswer(f"aggregate() answered {len(answers)} results for {calls} calls")
    return int(block), tuple(bytes(a) for a in answers)


def _check_address(address: object, what: str) -> str:
    if not isinstance(address, str) or _ADDRESS_RE.fullmatch(address) is None:
        raise ValueError(f"{what} {address!r} is not a 0x-prefixed 20-byte hex address")
    return address.lower()


# --- notes -> record ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a live lookup found about ``name``.

    ``record``: None if the name is not minted (or not a valid name). ``router_hashes``: the
    ``~routers`` hashes (``0x`` hex, in order) when that note decides the routing (see the
    module doc), else empty; ``unresolved_routers``: those of them no name was found for (then
    ``record.routers`` is empty). ``block``: the block the batched read saw (None when the
    notes were read one call each). ``cached``: served from the cache.
    """

    name: str
    record: NodeRecord | None
    router_hashes: tuple[str, ...] = ()
    unresolved_routers: tuple[str, ...] = ()
    block: int | None = None
    cached: bool = False

    @property
    def minted(self) -> bool:
        return self.record is not None

    @property
    def usable(self) -> bool:
        """A record a node can use (:attr:`NodeRecord.is_usable`)."""
        return self.record is not None and self.record.is_usable


def read_notes(
    name: str,
    notes: Mapping[str, bytes],
    *,
    names: NameResolver | None = None,
    extensions: bool = True,
    block: int | None = None,
) -> LookupResult:
    """The record of minted ``name`` from its notes' latest raw values (``notes``: note label
    -> value; a missing or empty value is a note never written). Pure: no chain, no I/O.

    Value rules are the indexer's; the routing rule (a valid ``~ip`` wins over ``~routers``)
    and router naming through ``names`` are in the module doc. ``extensions``: read
    ``~quic-port`` (False: exactly the reference's notes).
    """

    def value(label: str) -> bytes:
        v = notes.get(label, b"")
        if not isinstance(v, bytes | bytearray):
            raise TypeError(f"note {label}: value must be bytes, not {type(v).__name__}")
        return bytes(v)

    key = decode_net_key(value(NOTE_NET_KEY))
    ip = decode_ip(value(NOTE_IP))
    ports: dict[str, int] = {}
    for note, proto in _PORT_BY_NOTE.items():
        if note == NOTE_QUIC_PORT and not extensions:
            continue
        port = decode_port(value(note))
        if port:
            ports[proto] = port
    routers_value = value(NOTE_ROUTERS)
    hashes: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    routers: tuple[str, ...] = ()
    if ip is not None:
        ips: tuple[str, ...] = (ip,)
    elif routers_value:
        ips, ports = (), {}
        hashes = tuple(to_data(h) for h in decode_router_hashes(routers_value))
        named = [_router_name(h, names) for h in hashes]
        unresolved = tuple(h for h, n in zip(hashes, named, strict=True) if n is None)
        if not unresolved:
            routers = tuple(n for n in named if n is not None)
    else:
        ips = ()
    record = NodeRecord(
        name=name,
        namehash=namehash_hex(name),
        net_key=key,
        ips=ips,
        ports=ports,
        routers=routers,
    )
    return LookupResult(
        name=name, record=record, router_hashes=hashes, unresolved_routers=unresolved, block=block
    )


def record_from_notes(
    name: str,
    notes: Mapping[str, bytes],
    *,
    names: NameResolver | None = None,
    extensions: bool = True,
) -> NodeRecord:
    """Just the record of :func:`read_notes`."""
    record = read_notes(name, notes, names=names, extensions=extensions).record
    assert record is not None  # read_notes always builds one
    return record


def _router_name(hash_hex: str, names: NameResolver | None) -> str | None:
    if names is None:
        return None
    name = names(hash_hex)
    if not isinstance(name, str):
        return None
    try:
        validate_name(name)
    except InvalidName:
        return None
    return name if namehash_hex(name) == hash_hex else None


# --- the endpoint ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reverted:
    """An ``eth_call`` that reverted: an answer (the same every time), not a failure to retry."""

    message: str


class _CallRpc(RpcEndpoint):
    """:class:`~hns.sources.chain.RpcEndpoint` (deadlines, retries, error classes) that returns a
    revert of ``eth_call`` as :class:`_Reverted` instead of retrying or failing it."""

    async def _once(self, method: str, params: list[Any]) -> Any:
        from web3.exceptions import Web3RPCError

        try:
            return await super()._once(method, params)
        except Web3RPCError as e:
            if method == "eth_call":
                code, message = rpc_error_of(e.rpc_response, e.message)
                if code == 3 or _REVERT_RE.search(message):
                    return _Reverted(self._clean(message))
            raise


@dataclass(frozen=True, slots=True)
class _Chain:
    """What the chain said about one name: the name's entry and its notes' values."""

    minted: bool
    notes: dict[str, bytes]
    block: int | None


@dataclass(frozen=True, slots=True)
class _Cached:
    chain: _Chain
    expires: float


class LiveLookup:
    """Look names up in Hypermap on chain, at JSON-RPC endpoint ``url`` (http(s) or ws(s)).

    ``chain_id``/``contract``: the chain and Hypermap (Base's by default). ``multicall``:
    Multicall3's address (None: never batch, one ``eth_call`` per ``get``). ``names``: names
    routers by namehash (see the module doc; also settable later as :attr:`names`).
    ``extensions``: read ``~quic-port`` too. ``retry``: deadlines and retries of each call.
    ``cache_ttl``/``negative_ttl``/``cache_size``: the cache (0 size: none). ``clock``:
    monotonic seconds (tests). ``seed``: the backoff jitter (tests).
    """

    def __init__(
        self,
        url: str,
        *,
        chain_id: int = HYPERMAP_CHAIN_ID,
        contract: str = HYPERMAP_ADDRESS,
        multicall: str | None = MULTICALL3_ADDRESS,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        names: NameResolver | None = None,
        extensions: bool = True,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if cache_ttl < 0 or negative_ttl < 0 or cache_size < 0:
            raise ValueError("cache_ttl, negative_ttl and cache_size are non-negative")
        self.url = url
        self.name = f"chain {redact_url(url)}"
        self.chain_id = chain_id
        self.contract = _check_address(contract, "contract")
        self.multicall = None if multicall is None else _check_address(multicall, "multicall")
        self.names = names
        self.extensions = extensions
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.cache_size = cache_size
        self._notes = LIVE_NOTES + ((NOTE_QUIC_PORT,) if extensions else ())
        self._clock = clock
        self._rpc = _CallRpc(url, self.name, retry or DEFAULT_LOOKUP_RETRY, random.Random(seed))
        self._batch: bool | None = None if self.multicall is not None else False
        self._chain_checked = False
        self._chain_lock = asyncio.Lock()
        self._fatal: ChainIdMismatch | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[_Chain]] = {}
        self._closed = False
        #: ``lookups``, ``cache_hits``, ``shared`` (joined an in-flight read), ``reads`` (of
        #: the chain), ``multicalls``, ``single_calls``, ``multicall_absent``, ``invalid``.
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"LiveLookup({self.name!r})"

    @property
    def batching(self) -> bool | None:
        """True once a Multicall3 batch worked, False once it was found absent (or none is
        configured), None before the first read."""
        return self._batch

    def counters(self) -> dict[str, int]:
        """:attr:`stats` plus the endpoint's ``calls`` (JSON-RPC requests) and ``retries``."""
        return dict(self.stats + self._rpc.stats)

    # --- lookups ---------------------------------------------------------------------------

    async def lookup(self, name: str) -> NodeRecord | None:
        """The record of ``name`` as the chain has it now, or None if it is not minted (an
        invalid name is never minted: None, no call). Raises :class:`SourceError`
        (:class:`~hns.sources.chain.ChainIdMismatch`, :class:`MalformedAnswer`, or the
        endpoint failing every attempt)."""
        return (await self.resolve(name)).record

    async def resolve(self, name: str) -> LookupResult:
        """Like :meth:`lookup`, with what the lookup could not resolve (unnamed routers), the
        block read and whether the cache answered."""
        if self._closed:
            raise SourceError(f"{self.name}: the live lookup is closed")
        self.stats["lookups"] += 1
        try:
            validate_name(name)
        except InvalidName:
            self.stats["invalid"] += 1
            return LookupResult(name=name, record=None)
        hit = self._cache.get(name)
        if hit is not None:
            if hit.expires > self._clock():
                self._cache.move_to_end(name)
                self.stats["cache_hits"] += 1
                return self._result(name, hit.chain, cached=True)
            del self._cache[name]
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.ensure_future(self._read(name))
            self._inflight[name] = task
            task.add_done_callback(functools.partial(self._done, name))
        else:
            self.stats["shared"] += 1
        # Shielded: a caller giving up does not cancel the read the others wait for.
        try:
            chain = await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and self._closed and (me is None or not me.cancelling()):
                raise SourceError(f"{self.name}: the live lookup was closed") from None
            raise
        return self._result(name, chain, cached=False)

    def invalidate(self, name: str | None = None) -> None:
        """Forget what is cached about ``name`` (None: about every name)."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    async def aclose(self) -> None:
        """Stop in-flight reads and close the endpoint connection; idempotent."""
        self._closed = True
        tasks = list(self._inflight.values())
        self._inflight.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._cache.clear()
        await self._rpc.aclose()

    async def __aenter__(self) -> LiveLookup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _result(self, name: str, chain: _Chain, *, cached: bool) -> LookupResult:
        if not chain.minted:
            return LookupResult(name=name, record=None, block=chain.block, cached=cached)
        found = read_notes(
            name, chain.notes, names=self.names, extensions=self.extensions, block=chain.block
        )
        return replace(found, cached=True) if cached else found

    def _done(self, name: str, task: asyncio.Task[_Chain]) -> None:
        """Cache a finished read (whoever still waits for it)."""
        if self._inflight.get(name) is task:
            del self._inflight[name]
        if task.cancelled():
            return
        if task.exception() is not None:  # retrieved: raised to the waiters, never cached
            return
        chain = task.result()
        if self._closed or self.cache_size == 0:
            return
        usable = _usable_on_chain(name, chain, self.extensions)
        ttl = self.cache_ttl if usable else self.negative_ttl
        if ttl <= 0:
            return
        self._cache[name] = _Cached(chain, self._clock() + ttl)
        self._cache.move_to_end(name)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # --- reading the chain -----------------------------------------------------------------

    async def _read(self, name: str) -> _Chain:
        await self._check_chain()
        self.stats["reads"] += 1
        hashes = [namehash(name)] + [namehash(f"{note}.{name}") for note in self._notes]
        entries, block = await self._get_all(hashes)
        return _Chain(
            minted=entries[0].minted,
            notes={note: e.data for note, e in zip(self._notes, entries[1:], strict=True)},
            block=block,
        )

    async def _check_chain(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._chain_checked:
            return
        async with self._chain_lock:
            if self._fatal is not None:
                raise self._fatal
            if self._chain_checked:
                return
            value = await self._rpc.call("eth_chainId", [])
            try:
                got = parse_quantity(value, "chain_id")
            except MalformedLog:
                raise MalformedAnswer(
                    f"{self.name}: the endpoint's chain id {value!r:.40} is not a quantity"
                ) from None
            if got != self.chain_id:
                self._fatal = ChainIdMismatch(self.name, self.chain_id, got)
                raise self._fatal
            self._chain_checked = True

    async def _get_all(self, hashes: list[bytes]) -> tuple[list[HypermapEntry], int | None]:
        if self._batch is not False and self.multicall is not None:
            batched = await self._aggregate(self.multicall, hashes)
            if batched is not None:
                self._batch = True
                return batched
            self._batch = False
            self.stats["multicall_absent"] += 1
        return await _all(self._get(h) for h in hashes), None

    async def _aggregate(
        self, multicall: str, hashes: list[bytes]
    ) -> tuple[list[HypermapEntry], int] | None:
        """One batched read, or None if no Multicall3 answers at ``multicall``."""
        calldata = encode_aggregate([(self.contract, encode_get(h)) for h in hashes])
        self.stats["multicalls"] += 1
        answer = await self._rpc.call(
            "eth_call", [{"to": multicall, "data": to_data(calldata)}, "latest"]
        )
        if isinstance(answer, _Reverted):
            return None
        raw = self._answer_bytes(answer, "aggregate()")
        if not raw:
            return None  # no code at that address
        try:
            block, answers = decode_aggregate(raw, len(hashes))
            entries = [decode_get(a) for a in answers]
        except MalformedAnswer as e:
            raise MalformedAnswer(f"{self.name}: Multicall3 at {multicall}: {e}") from None
        return entries, block

    async def _get(self, entry_hash: bytes) -> HypermapEntry:
        self.stats["single_calls"] += 1
        answer = await self._rpc.call(
            "eth_call", [{"to": self.contract, "data": to_data(encode_get(entry_hash))}, "latest"]
        )
        if isinstance(answer, _Reverted):
            raise SourceError(f"{self.name}: get() of Hypermap {self.contract} reverted")
        try:
            return decode_get(self._answer_bytes(answer, "get()"))
        except MalformedAnswer as e:
            raise MalformedAnswer(f"{self.name}: Hypermap {self.contract}: {e}") from None

    def _answer_bytes(self, answer: object, what: str) -> bytes:
        try:
            return parse_data(answer, "result", max_bytes=MAX_ANSWER_BYTES)
        except MalformedLog as e:
            raise MalformedAnswer(f"{self.name}: eth_call of {what}: {e}") from None


def _usable_on_chain(name: str, chain: _Chain, extensions: bool) -> bool:
    """Whether the chain gives ``name`` a usable record, its routers counted whether named
    or not (this decides how long the chain's answer is cached; names are resolved at each
    lookup)."""
    if not chain.minted:
        return False
    found = read_notes(name, chain.notes, extensions=extensions)
    rec = found.record
    if rec is None or not rec.net_key:
        return False
    if rec.ips:
        return any(p > 0 for p in rec.ports.values())
    return bool(found.router_hashes)


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await concurrently, in order; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            error = t.exception() if t.done() and not t.cancelled() else None
            if error is not None:
                raise error
        return [t.result() for t in tasks]
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        for t in tasks:
            if not t.cancelled():
                t.exception()
