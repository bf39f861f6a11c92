"""A misbehaving JSON-RPC provider for tests: an asyncio HTTP proxy in front of anvil.

Real providers refuse wide ``eth_getLogs`` ranges and big answers (each in its own words),
rate-limit (HTTP 429), fail (503), stall, drop connections, answer garbage, and sit behind
load balancers whose backends disagree about the head. :class:`RpcProxy` does all of that, at
rates a test chooses, from a seeded random generator, to whatever passes through it; anything
it does not break it forwards unchanged. It listens on a free loopback port and talks only to
its upstream (a local anvil).

HTTP/1.1 with keep-alive and ``Content-Length`` bodies (what web3.py's aiohttp client sends);
no chunked requests, no TLS, no websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
FAULT_KINDS = ("429", "503", "stall", "drop", "garbage", "rate")

_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Faults:
    """What the proxy breaks.

    ``failure_rate``: share of requests answered by a fault from ``kinds`` (weights; the first
    faults take each kind of positive weight once, in order, so that every kind is exercised
    however the concurrent requests happen to interleave; later ones are drawn by weight):
    ``429`` (HTTP 429, ``Retry-After: 0``), ``503``, ``stall`` (no answer for
    ``stall_seconds``, then the connection is closed), ``drop`` (closed without an answer),
    ``garbage`` (HTTP 200 with an HTML page), ``rate`` (HTTP 200, a JSON-RPC rate-limit error).
    ``max_block_range`` / ``max_results``: ``eth_getLogs`` wider or bigger than this is refused
    with one of several real providers' messages. ``stale_head_rate``: share of
    ``eth_blockNumber`` answers that are up to ``stale_head_lag`` blocks behind (a lagging
    backend: heads out of order). ``removed_rate``: share of non-empty ``eth_getLogs`` answers
    in which one log is marked ``removed: true`` (a node mid-reorg). ``delay``: seconds added
    to every request.
    """

    seed: int = 0
    failure_rate: float = 0.0
    kinds: Mapping[str, float] = field(
        default_factory=lambda: {"429": 1.0, "503": 1.0, "stall": 1.0, "drop": 1.0}
    )
    max_block_range: int | None = None
    max_results: int | None = None
    stale_head_rate: float = 0.0
    stale_head_lag: int = 8
    removed_rate: float = 0.0
    stall_seconds: float = 30.0
    delay: float = 0.0


def range_error(rng: random.Random, lo: int, hi: int, cap: int) -> dict[str, object]:
    """A JSON-RPC error refusing blocks ``lo..hi`` (``cap`` allowed), worded as one of
    several real providers word it (some with a usable hint, some without)."""
    choices: list[tuple[int, str]] = [
        (-32000, "block range is too wide"),
        (-32602, f"exceed maximum block range: {cap}"),
        (
            -32602,
            "Log response size exceeded. You can make eth_getLogs requests with up to a "
            f"{cap} block range and no limit on the response size, or you can request any "
            "block range with a cap of 10K logs in the response. Based on your parameters, "
            f"this block range should work: [{hex(lo)}, {hex(lo + cap - 1)}]",
        ),
        (-32005, f"eth_getLogs is limited to a {cap:,} blocks range"),
        (-32600, "requested too many blocks from 0x0 to 0x0, range too large"),
    ]
    code, message = rng.choice(choices)
    return {"code": code, "message": message}


def size_error(rng: random.Random, cap: int) -> dict[str, object]:
    choices: list[tuple[int, str]] = [
        (-32005, f"query returned more than {cap} results"),
        (-32602, f"Query returned more than {cap} results. Try with this block range instead"),
        (-32000, "response size should not greater than 10000000 bytes"),
    ]
    code, message = rng.choice(choices)
    return {"code": code, "message": message}


class RpcProxy:
    """An HTTP JSON-RPC proxy to ``upstream`` that injects :class:`Faults`.

    ``stats`` counts requests (``requests``), forwarded ones (``forwarded``), each fault kind,
    ``range_errors``, ``size_errors``, ``stale_heads`` and ``removed``.
    """

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        #: faults injected so far (the first ones cycle through the kinds, see Faults)
        self._injected = 0
        self._server: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Listen on a free loopback port; returns the URL."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def aclose(self) -> None:
        """Stop listening, cut every connection (stalled ones included); idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> RpcProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- connections -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # aclose() cuts stalled connections; end quietly (asyncio reports otherwise)
        finally:
            self._handlers.discard(task)
            writer.transport.abort()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        if len(head) > MAX_HEAD_BYTES:
            return False
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            return False
        body = await reader.readexactly(length)
        keep_alive = headers.get("connection", "").lower() != "close"
        self.stats["requests"] += 1
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        fault = self._pick_fault()
        if fault is not None:
            self.stats[fault] += 1
            return await self._inject(fault, body, writer) and keep_alive
        status, payload = await self._serve(body)
        await _respond(writer, status, payload, keep_alive=keep_alive)
        return keep_alive

    def _pick_fault(self) -> str | None:
        f = self.faults
        if f.failure_rate <= 0 or self._rng.random() >= f.failure_rate:
            return None
        kinds = [k for k, w in f.kinds.items() if w > 0]
        if not kinds:
            return None
        if self._injected < len(kinds):
            self._injected += 1
            return kinds[self._injected - 1]
        return self._rng.choices(kinds, weights=[f.kinds[k] for k in kinds])[0]

    async def _inject(self, fault: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer with ``fault``; True if the connection stays usable."""
        request_id = _request_id(body)
        if fault == "429":
            error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": 429, "message": "x"}}
            await _respond(writer, 429, json.dumps(error).encode(), extra={"Retry-After": "0"})
            return True
        if fault == "503":
            await _respond(writer, 503, b"Service Unavailable", content_type="text/plain")
            return True
        if fault == "garbage":
            page = b"<html><body>502 Bad Gateway</body></html>"
            await _respond(writer, 200, page, content_type="text/html")
            return True
        if fault == "rate":
            error = {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32005, "message": "daily request count exceeded, rate limited"},
            }
            await _respond(writer, 200, json.dumps(error).encode())
            return True
        if fault == "stall":
            await asyncio.sleep(self.faults.stall_seconds)
        return False  # stall (after its wait) and drop: close without an answer

    # --- forwarding ------------------------------------------------------------------------

    async def _serve(self, body: bytes) -> tuple[int, bytes]:
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        refusal = self._refuse_range(request)
        if refusal is not None:
            return 200, refusal
        status, payload = await self._forward(body)
        if status == 200 and isinstance(request, dict):
            payload = self._after(request, payload)
        return status, payload

    async def _forward(self, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        self.stats["forwarded"] += 1
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            return resp.status, await resp.read()

    def _refuse_range(self, request: Any) -> bytes | None:
        cap = self.faults.max_block_range
        if cap is None or not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        params = request.get("params") or [{}]
        span = params[0] if isinstance(params, list) and params else {}
        try:
            lo = int(span["fromBlock"], 16)
            hi = int(span["toBlock"], 16)
        except (KeyError, TypeError, ValueError):
            return None
        if hi - lo + 1 <= cap:
            return None
        self.stats["range_errors"] += 1
        error = range_error(self._rng, lo, hi, cap)
        return json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": error}).encode()

    def _after(self, request: dict[str, Any], payload: bytes) -> bytes:
        method = request.get("method")
        if method not in ("eth_getLogs", "eth_blockNumber"):
            return payload
        try:
            reply = json.loads(payload)
        except ValueError:
            return payload
        result = reply.get("result") if isinstance(reply, dict) else None
        f = self.faults
        too_many = (
            method == "eth_getLogs"
            and isinstance(result, list)
            and f.max_results is not None
            and len(result) > f.max_results
        )
        if too_many and f.max_results is not None:
            self.stats["size_errors"] += 1
            error = size_error(self._rng, f.max_results)
            return json.dumps({"jsonrpc": "2.0", "id": reply.get("id"), "error": error}).encode()
        if (
            method == "eth_getLogs"
            and isinstance(result, list)
            and result
            and f.removed_rate > 0
            and self._rng.random() < f.removed_rate
        ):
            self.stats["removed"] += 1
            victim = self._rng.randrange(len(result))
            if isinstance(result[victim], dict):
                result[victim]["removed"] = True
            return json.dumps(reply).encode()
        stale = (
            method == "eth_blockNumber"
            and isinstance(result, str)
            and f.stale_head_rate > 0
            and self._rng.random() < f.stale_head_rate
        )
        if stale and isinstance(result, str):
            self.stats["stale_heads"] += 1
            lag = self._rng.randint(1, max(1, f.stale_head_lag))
            reply["result"] = hex(max(0, int(result, 16) - lag))
            return json.dumps(reply).encode()
        return payload


def _request_id(body: bytes) -> object:
    try:
        request = json.loads(body)
    except ValueError:
        return None
    return request.get("id") if isinstance(request, dict) else None


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    payload: bytes,
    *,
    keep_alive: bool = True,
    content_type: str = "application/json",
    extra: Mapping[str, str] | None = None,
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
    await writer.drain()
