"""Routing without a network: RoutingRequest signing and checks, the passthrough table's
bounds, the pipe, and the router's pairing/eviction/expiry logic over in-memory sockets."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from hnet import keys
from hnet.core import relay as request
from hnet.core.passthroughs import PassthroughTable
from hnet.core.wire import RoutingRequest, encode_routing_request
from hnet.net.pipe import PipeError, pipe
from hnet.net.router import Router, RoutingRefused
from hnet.transport.pipes import open_end
from hns import NodeRecord

KEYS = {name: keys.generate() for name in ("a.os", "c.os", "r.os", "b.os")}


def lookup(name: str) -> bytes | None:
    key = KEYS.get(name)
    return keys.public_bytes(key) if key is not None else None


# --- RoutingRequest ---------------------------------------------------------------------------


def test_routing_request_wire_shape_and_signature() -> None:
    data = request.encode("a.os", KEYS["a.os"], target="c.os", router="r.os")
    version, source, signature, target = msgpack.unpackb(data)
    assert (version, source, target) == (1, "a.os", "c.os")
    # a byte vector is an array of integers, never msgpack bin
    assert isinstance(signature, list) and len(signature) == 64
    # Ed25519 by the source's key over the UTF-8 bytes of target + router
    assert keys.verify(lookup("a.os"), bytes(signature), b"c.osr.os")  # type: ignore[arg-type]
    assert request.signed_bytes("c.os", "r.os") == b"c.osr.os"
    rr = request.check(data, router="r.os", lookup=lookup)
    assert (rr.source, rr.target) == ("a.os", "c.os")


def _rr(source: str = "a.os", target: str = "c.os", **kw: object) -> bytes:
    rr = request.build(source, KEYS.get(source, KEYS["b.os"]), target=target, router="r.os")
    fields = {
        "protocol_version": rr.protocol_version,
        "source": rr.source,
        "signature": rr.signature,
        "target": rr.target,
    }
    fields.update(kw)
    return encode_routing_request(RoutingRequest(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x93\x01\xa4a.os", "undecodable"),
        (b"\xc1" * 40, "undecodable"),
        (_rr(protocol_version=2), "version 2"),
        (_rr(target="a.os"), "to itself"),
        (_rr(target="r.os"), "naming the router"),
        (_rr(source="r.os"), "naming the router"),
        (_rr(source="nobody.os"), "unknown HNS name 'nobody.os'"),
        (_rr(target="nobody.os"), "unknown HNS name 'nobody.os'"),
        (_rr(signature=b"\x00" * 64), "does not verify"),
        (_rr(signature=b"\x01" * 3), "does not verify"),
        # signed for another router: replaying it to us fails
        (
            request.encode("a.os", KEYS["a.os"], target="c.os", router="b.os"),
            "does not verify",
        ),
        # signed by someone else's key
        (_rr(signature=KEYS["b.os"].sign(b"c.osr.os")), "does not verify"),
    ],
)
def test_routing_request_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(RoutingRefused, match=reason):
        request.check(data, router="r.os", lookup=lookup)


# --- the passthrough table --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _table(n: int) -> tuple[PassthroughTable, list[str]]:
    closed: list[str] = []
    return PassthroughTable(n, clock=Clock()), closed


def test_table_zero_is_not_a_router() -> None:
    assert not PassthroughTable(0).enabled
    with pytest.raises(ValueError):
        PassthroughTable(-1)


def test_table_bound_evicts_oldest_pending_or_active() -> None:
    t, closed = _table(3)

    def entry(src: str, tgt: str):  # type: ignore[no-untyped-def]
        return t.new(src, tgt, lambda reason, k=f"{src}>{tgt}": closed.append(f"{k} {reason}"))

    p1 = entry("a.os", "c.os")
    t.make_room()
    t.park(p1)
    a1 = entry("b.os", "c.os")
    t.make_room()
    t.start(a1)
    p2 = entry("d.os", "c.os")
    t.make_room()
    t.park(p2)
    assert len(t) == 3 and closed == []
    # full: the oldest of all (pending p1) goes
    a2 = entry("e.os", "c.os")
    t.make_room()
    t.start(a2)
    assert len(t) == 3
    assert closed == ["a.os>c.os evicted (max passthroughs)"]
    assert t.peek_pending("a.os", "c.os") is None and p1.closed
    # full again: now the oldest is the active a1
    p3 = entry("f.os", "c.os")
    t.make_room()
    t.park(p3)
    assert closed[-1] == "b.os>c.os evicted (max passthroughs)" and a1.closed
    assert len(t) == 3 and t.evicted == 2
    assert [e.source for e in t.pending] == ["d.os", "f.os"]
    assert [e.source for e in t.active] == ["e.os"]


def test_table_pending_replace_take_reject_unpark() -> None:
    t, closed = _table(8)
    first = t.new("a.os", "c.os", lambda r: closed.append(f"first {r}"))
    t.park(first)
    second = t.new("a.os", "c.os", lambda r: closed.append(f"second {r}"))
    t.park(second)
    assert closed == ["first replaced by a newer routing request"] and len(t) == 1
    assert not t.unpark(first)
    assert t.peek_pending("a.os", "c.os") is second
    assert t.take_pending("a.os", "c.os") is second and len(t) == 0
    assert not second.closed  # taken to be paired, not closed
    third = t.new("a.os", "c.os", lambda r: closed.append(f"third {r}"))
    t.park(third)
    assert t.reject("a.os", "c.os") is third and closed[-1] == "third rejected by c.os"
    assert t.reject("a.os", "c.os") is None
    fourth = t.new("a.os", "c.os", lambda r: None)
    t.park(fourth)
    assert t.unpark(fourth) and len(t) == 0


# --- in-memory sockets ------------------------------------------------------------------------


class MemEnd:
    """One side of an in-memory connection: what ``peer`` sends, we ``recv``."""

    def __init__(self, kind: str = "tcp", remote: str = "mem") -> None:
        self.kind = kind
        self.remote = remote
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.closed = False

    async def recv(self) -> bytes | None:
        if self.closed:
            return None
        return await self.inbox.get()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise PipeError("closed")
        self.sent.append(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait(None)


async def test_pipe_copies_both_ways_and_closes_both() -> None:
    a, b = MemEnd(remote="a"), MemEnd(remote="b")
    task = asyncio.create_task(pipe(a, b, idle_timeout=30))
    a.inbox.put_nowait(b"from a")
    b.inbox.put_nowait(b"from b")
    async with asyncio.timeout(5):
        while not (b.sent and a.sent):
            await asyncio.sleep(0)
    assert b.sent == [b"from a"] and a.sent == [b"from b"]
    b.inbox.put_nowait(None)  # b closes
    async with asyncio.timeout(5):
        reason = await task
    assert reason == "b closed" and a.closed and b.closed


async def test_pipe_idle_timeout() -> None:
    a, b = MemEnd(), MemEnd()
    async with asyncio.timeout(5):
        assert await pipe(a, b, idle_timeout=0.05) == "idle"
    assert a.closed and b.closed


# --- the router's logic -----------------------------------------------------------------------


def record(name: str) -> NodeRecord | None:
    if name not in KEYS:
        return None
    return NodeRecord(
        name=name, namehash="0x", net_key=keys.public_bytes(KEYS[name]).hex(), routers=("r.os",)
    )


class Asked:
    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, target: str, source: str) -> bool:
        self.calls.append((target, source))
        return self.answer


def _router(max_passthroughs: int = 4, asked: Asked | None = None, **kw: float) -> Router:
    return Router(
        our_name="r.os",
        max_passthroughs=max_passthroughs,
        lookup=lookup,
        record=record,
        request_connection=asked or Asked(),
        open_end=kw.pop("open_end", open_end),
        **kw,
    )


def _req(source: str, target: str) -> bytes:
    return request.encode(source, KEYS[source], target=target, router="r.os")


async def test_router_with_zero_passthroughs_refuses() -> None:
    r = _router(0)
    with pytest.raises(RoutingRefused, match="does not route"):
        await r.admit(_req("a.os", "c.os"), MemEnd())
    assert r.stats["refused"] == 1


async def test_router_refuses_when_it_does_not_route_for_the_target() -> None:
    asked = Asked(answer=False)
    r = _router(asked=asked)
    with pytest.raises(RoutingRefused, match="do not route for it"):
        await r.admit(_req("a.os", "c.os"), MemEnd())
    assert asked.calls == [("c.os", "a.os")] and len(r.table) == 0


async def test_router_pairs_pending_with_the_targets_answer() -> None:
    asked = Asked()
    r = _router(asked=asked)
    a_end, c_end = MemEnd(remote="a"), MemEnd(remote="c")
    a_end.inbox.put_nowait(b"noise e")  # sent right behind the RoutingRequest
    a_rest = await r.admit(_req("a.os", "c.os"), a_end)
    assert asked.calls == [("c.os", "a.os")] and len(r.table.pending) == 1
    a_task = asyncio.create_task(a_rest())
    c_rest = await r.admit(_req("c.os", "a.os"), c_end)
    assert len(r.table.pending) == 0 and len(r.table.active) == 1
    c_task = asyncio.create_task(c_rest())
    async with asyncio.timeout(5):
        while not c_end.sent:
            await asyncio.sleep(0)
    assert c_end.sent == [b"noise e"]
    assert not a_task.done()  # the parked socket's owner waits while the pipe runs
    a_end.inbox.put_nowait(None)
    async with asyncio.timeout(5):
        await asyncio.gather(a_task, c_task)
    assert a_end.closed and c_end.closed and len(r.table) == 0


async def test_router_transport_mismatch_leaves_pending() -> None:
    r = _router()
    a_end = MemEnd(kind="ws")
    a_rest = await r.admit(_req("a.os", "c.os"), a_end)
    a_task = asyncio.create_task(a_rest())
    with pytest.raises(RoutingRefused, match="waits on ws"):
        await r.admit(_req("c.os", "a.os"), MemEnd(kind="tcp"))
    assert len(r.table.pending) == 1 and not a_end.closed
    ws_rest = await r.admit(_req("c.os", "a.os"), MemEnd(kind="ws"))
    assert len(r.table.active) == 1
    ws_task = asyncio.create_task(ws_rest())
    r.close()
    async with asyncio.timeout(5):
        await asyncio.gather(a_task, ws_task)
    assert a_end.closed


async def test_router_pending_expires_rejects_and_evicts() -> None:
    r = _router(max_passthroughs=2, pending_lifetime=0.05)
    # expiry: the parked socket is closed and its task ends
    end = MemEnd()
    rest = await r.admit(_req("a.os", "c.os"), end)
    async with asyncio.timeout(5):
        await rest()
    assert end.closed and len(r.table) == 0
    # rejection by the target
    r = _router(max_passthroughs=2, pending_lifetime=30)
    end = MemEnd()
    task = asyncio.create_task((await r.admit(_req("a.os", "c.os"), end))())
    r.rejected("a.os", "b.os")  # only the target itself can reject
    assert len(r.table.pending) == 1
    r.rejected("a.os", "c.os")
    async with asyncio.timeout(5):
        await task
    assert end.closed and len(r.table) == 0
    # eviction: a third request past the bound closes the oldest parked socket
    ends = [MemEnd(), MemEnd(), MemEnd()]
    tasks = []
    for end, src in zip(ends, ("a.os", "b.os", "a.os"), strict=True):
        tgt = "c.os" if end is not ends[2] else "b.os"
        tasks.append(asyncio.create_task((await r.admit(_req(src, tgt), end))()))
    async with asyncio.timeout(5):
        await tasks[0]
    assert ends[0].closed and not ends[1].closed and not ends[2].closed
    assert len(r.table) == 2 and r.table.evicted == 1
    r.close()
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)
    assert all(e.closed for e in ends)
