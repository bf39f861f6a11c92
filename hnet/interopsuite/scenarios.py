"""The scenarios: each a small async function ``(ctx, column) -> Outcome``.

A scenario raises :class:`~hnet.interopsuite.model.Failure` (what was expected, what came) or
:class:`~hnet.interopsuite.model.Skip` (why it does not apply), or returns an Outcome. The
runner gives each its own deadline (``asyncio.timeout``) and turns anything else it raises into
a failure naming it. "We dial" scenarios need only the target's record; "target dials" ones
run the ``--dial-command`` so the target connects to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hnet import keys, limits
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.quic.backend import BackendError, resolve_name
from hnet.core.wire import (
    Address,
    Capability,
    CodecError,
    ConnectionRequest,
    KernelMessage,
    LazyLoadBlob,
    Request,
    Response,
    ResponseMessage,
    decode_net_action,
    encode_kernel_message,
)
from hnet.interopsuite.links import (
    QUIC_COLUMNS,
    Closed,
    Identity,
    Link,
    RawLink,
    Route,
    connect,
    describe,
    initiator,
    random_id,
    responder,
    routing_request,
    wire_transport,
)
from hnet.interopsuite.model import Failure, Outcome, Skip, passed
from hnet.transport.session import SessionError

if TYPE_CHECKING:  # the suite imports this module
    from hnet.interopsuite.suite import Context

ACK = b"ack"
#: how long a reply to one message may take (a loaded machine; the reference waits 5 s)
REPLY_WAIT = 10.0
CONNECT_WAIT = 2 * limits.HANDSHAKE_TIMEOUT
#: how long a target has to close a connection it must refuse
CLOSE_WAIT = 10.0
ROLE_WE_DIAL = "we dial"
ROLE_TARGET_DIALS = "target dials"

ScenarioFn = Callable[["Context", str], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    fn: ScenarioFn
    role: str = ROLE_WE_DIAL
    deadline: float = 30.0
    description: str = ""


# --- messages -------------------------------------------------------------------------------


def hello(
    ctx: Context,
    body: bytes = b"hello from hnet interop",
    *,
    rsvp: Address | None = None,
    blob: LazyLoadBlob | None = None,
    caps: tuple[tuple[Capability, bytes], ...] = (),
    source: Address | None = None,
) -> KernelMessage:
    """A hello: a Request to ``TARGET@net:distro:sys`` whose body is not a NetAction."""
    return KernelMessage(
        id=random_id(),
        source=source or ctx.a.net(),
        target=Address.net(ctx.target),
        rsvp=rsvp,
        message=Request(
            inherit=False, expects_response=5, body=body, metadata=None, capabilities=caps
        ),
        lazy_load_blob=blob,
    )


def sized_hello(ctx: Context, total: int) -> bytes:
    """The bytes of a hello whose serialized KernelMessage is exactly ``total`` bytes."""
    base = hello(ctx, b"")
    probe = 70_000  # past array16: the body's header size no longer changes
    over = len(encode_kernel_message(_with_body(base, bytes(probe)))) - probe
    n = total - over
    if n < probe:
        raise ValueError(f"{total} bytes is too small for sized_hello")
    data = encode_kernel_message(_with_body(base, bytes(n)))
    if len(data) != total:  # pragma: no cover - the arithmetic above is exact
        raise AssertionError(f"sized hello is {len(data)} bytes, not {total}")
    return data


def _with_body(km: KernelMessage, body: bytes) -> KernelMessage:
    assert isinstance(km.message, Request)
    r = km.message
    return KernelMessage(
        km.id,
        km.source,
        km.target,
        km.rsvp,
        Request(r.inherit, r.expects_response, body, r.metadata, r.capabilities),
        km.lazy_load_blob,
    )


def ack_problem(ctx: Context, sent: KernelMessage, got: KernelMessage) -> str | None:
    """Why ``got`` is not the right ack of hello ``sent`` (None: it is)."""
    want_target = sent.rsvp or sent.source
    want_source = Address.net(ctx.target)
    problems = []
    if not isinstance(got.message, ResponseMessage):
        problems.append("a Response (got a Request)")
    else:
        if got.message.response.body != ACK:
            problems.append(f"body b'ack' (got {got.message.response.body[:40]!r})")
        if got.message.context is not None:
            problems.append(f"no context (got {got.message.context[:40]!r})")
    if got.id != sent.id:
        problems.append(f"id {sent.id} (got {got.id})")
    if got.source != want_source:
        problems.append(f"source {want_source} (got {got.source})")
    if got.target != want_target:
        problems.append(f"target {want_target} (got {got.target})")
    if got.rsvp is not None:
        problems.append(f"rsvp None (got {got.rsvp})")
    if not problems:
        return None
    return "expected an ack with " + ", ".join(problems)


async def recv(link: Link, what: str, wait: float = REPLY_WAIT) -> KernelMessage:
    """The next message on ``link``; Failure naming ``what`` if none comes or it closes."""
    try:
        async with asyncio.timeout(wait):
            return await link.recv()
    except TimeoutError:
        raise Failure(f"expected {what} within {wait:g} s, got nothing") from None
    except Closed as e:
        raise Failure(f"expected {what}, got the connection closed ({e})") from None
    except CodecError as e:
        raise Failure(f"expected {what}, got bytes that are not a KernelMessage ({e})") from None


async def exchange(ctx: Context, link: Link, km: KernelMessage, what: str = "hello") -> None:
    """Send hello ``km`` and check its ack."""
    await link.send(km)
    got = await recv(link, f"an ack to the {what} (id {km.id})", _reply_wait(km))
    problem = ack_problem(ctx, km, got)
    if problem:
        raise Failure(f"{what}: {problem}")


def _reply_wait(km: KernelMessage) -> float:
    size = len(km.message.body) if isinstance(km.message, Request) else 0
    return REPLY_WAIT + size / 500_000  # 2 s per MB on top: large hellos take time


# --- connections ----------------------------------------------------------------------------


def quic_column_check(column: str) -> None:
    if column in QUIC_COLUMNS:
        try:
            resolve_name(QUIC_COLUMNS[column])
            from hnet.core.quic.backend import get_backend

            get_backend(QUIC_COLUMNS[column])
        except BackendError as e:
            raise Skip(f"QUIC backend {QUIC_COLUMNS[column]} not usable here ({e})") from None


def route_to_target(ctx: Context, column: str) -> tuple[Route, bytes | None]:
    """Where to connect for the target over ``column``: its own port, or one of its routers
    with a RoutingRequest (an indirect target)."""
    quic_column_check(column)
    t = wire_transport(column)
    rec = ctx.record
    if rec.routers:
        if t == "quic":
            raise Skip("the target is indirect: routed QUIC uses hnet circuits, not in this suite")
        for router in rec.routers:
            rrec = ctx.routers.get(router)
            if rrec is not None and rrec.ips and rrec.ports.get(t):
                rr = routing_request(ctx.a, router, ctx.target)
                return Route(rrec.ips[0], rrec.ports[t], router), rr
        raise Skip(f"no router of the target offers {t}")
    port = rec.ports.get(t)
    if not rec.ips or not port:
        what = "~quic-port" if t == "quic" else f"~{t}-port"
        raise Skip(f"the target's record has no {what}")
    return Route(rec.ips[0], port), None


async def dial(ctx: Context, column: str, **kw: object) -> Link:
    """A session with the target over ``column``, as A (or signing with ``signing_key``)."""
    route, rr = route_to_target(ctx, column)
    hs = initiator(ctx.a, ctx.keyring, ctx.target, **kw)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(CONNECT_WAIT):
            link = await connect(column, route, hs, rr, ctx.keyring)
    except TimeoutError:
        raise Failure(
            f"expected a handshake with {ctx.target} at {route.host}:{route.port} within "
            f"{CONNECT_WAIT:g} s, got none"
        ) from None
    except (HandshakeError, SessionError, ConnectionError, OSError) as e:
        raise Failure(
            f"expected a handshake with {ctx.target} at {route.host}:{route.port}, got "
            f"{type(e).__name__}: {e}"
        ) from None
    ctx.opened.append(link)
    return link


async def still_serves(ctx: Context, column: str, after: str) -> None:
    """A fresh connection and hello, acked: the target survived ``after``."""
    try:
        link = await dial(ctx, column)
        try:
            await exchange(ctx, link, hello(ctx, b"still there?"))
        finally:
            await link.aclose()
    except Failure as e:
        raise Failure(f"after {after}, expected the target to still answer a hello: {e}") from None


async def raw(ctx: Context, column: str) -> tuple[RawLink, Route, bytes | None]:
    route, rr = route_to_target(ctx, column)
    async with asyncio.timeout(CONNECT_WAIT):
        link = await RawLink.open(wire_transport(column), route.host, route.port)
    ctx.raw_opened.append(link)
    return link, route, rr


async def raw_session(ctx: Context, column: str) -> RawLink:
    if column not in ("tcp", "ws"):
        raise Skip("needs a raw framer; only TCP and WS have one in this suite")
    link, _route, rr = await raw(ctx, column)
    try:
        async with asyncio.timeout(CONNECT_WAIT):
            await link.handshake(initiator(ctx.a, ctx.keyring, ctx.target), rr)
    except (TimeoutError, HandshakeError, ConnectionError, OSError) as e:
        raise Failure(f"expected a handshake (raw framer), got {type(e).__name__}: {e}") from None
    return link


# --- we dial: handshake, hellos ---------------------------------------------------------------


async def s_handshake(ctx: Context, column: str) -> Outcome:
    link = await dial(ctx, column)
    try:
        if link.peer != ctx.target:
            raise Failure(f"expected the peer {ctx.target}, got {link.peer}")
        # Noise XX ends with our message: only an answer shows the target accepted us.
        await exchange(ctx, link, hello(ctx), "first message after the handshake")
    finally:
        await link.aclose()
    return passed()


async def s_hello(ctx: Context, column: str) -> Outcome:
    link = await dial(ctx, column)
    try:
        await exchange(ctx, link, hello(ctx))
        rsvp = Address.parse(f"{ctx.a.name}@interop:hnet:sys")
        await exchange(ctx, link, hello(ctx, b"reply to my rsvp", rsvp=rsvp), "hello with rsvp")
    finally:
        await link.aclose()
    return passed()


async def s_pipelined(ctx: Context, column: str) -> Outcome:
    n = 1000
    link = await dial(ctx, column)
    try:
        sent = {}
        for i in range(n):
            km = hello(ctx, f"pipelined {i}".encode())
            sent[km.id] = km
            await link.send(km)
        seen: set[int] = set()
        for i in range(n):
            got = await recv(link, f"ack {i + 1} of {n} (got {len(seen)} so far)", 30.0)
            mine = sent.get(got.id)
            if mine is None:
                raise Failure(f"expected acks to our {n} hellos, got one with id {got.id}")
            if got.id in seen:
                raise Failure(f"expected one ack per hello, got a second for id {got.id}")
            problem = ack_problem(ctx, mine, got)
            if problem:
                raise Failure(f"pipelined hello {i}: {problem}")
            seen.add(got.id)
    finally:
        await link.aclose()
    return passed()


def _sized(total: int) -> ScenarioFn:
    async def run(ctx: Context, column: str) -> Outcome:
        link = await dial(ctx, column)
        try:
            if total > 1000:
                data = sized_hello(ctx, total)
                from hnet.core.wire import decode_kernel_message

                km = decode_kernel_message(data)
            else:
                km = hello(ctx, b"x" * total)
                data = encode_kernel_message(km)
            await link.send_bytes(data, timeout=60.0)
            got = await recv(link, f"an ack to a {len(data)}-byte hello", _reply_wait(km))
            problem = ack_problem(ctx, km, got)
            if problem:
                raise Failure(f"{len(data)}-byte hello: {problem}")
        finally:
            await link.aclose()
        return passed(f"{len(data)} bytes")

    return run


async def s_over_cap(ctx: Context, column: str) -> Outcome:
    link = await raw_session(ctx, column)
    size = limits.MESSAGE_MAX_SIZE + 1
    try:
        link.send(sized_hello(ctx, size))
        await link.drain()
        got = await link.outcome(CLOSE_WAIT + 10)
    finally:
        link.close()
    if got.startswith("message"):
        raise Failure(
            f"expected a {size}-byte message (cap + 1) refused or the connection closed, got {got}"
        )
    await still_serves(ctx, column, f"a {size}-byte message")
    return passed("closed" if got == "closed" else f"refused ({got})")


async def s_blob(ctx: Context, column: str) -> Outcome:
    link = await dial(ctx, column)
    try:
        blob = LazyLoadBlob(mime="application/octet-stream", bytes=os.urandom(100_000))
        await exchange(ctx, link, hello(ctx, b"with a blob", blob=blob), "hello with a blob")
        empty = LazyLoadBlob(mime=None, bytes=b"")
        await exchange(ctx, link, hello(ctx, b"empty blob", blob=empty), "hello with an empty blob")
    finally:
        await link.aclose()
    return passed()


async def s_capabilities(ctx: Context, column: str) -> Outcome:
    issuer = Address.parse(f"{ctx.a.name}@interop:hnet:sys")
    caps = tuple(
        (Capability(issuer, params), ctx.a.key.sign(params.encode()))
        for params in ('"messaging"', '{"kind":"interop","n":1}')
    )
    link = await dial(ctx, column)
    try:
        await exchange(ctx, link, hello(ctx, b"with capabilities", caps=caps), "hello with caps")
    finally:
        await link.aclose()
    return passed()


async def s_reconnect(ctx: Context, column: str) -> Outcome:
    for round_ in range(3):
        link = await dial(ctx, column)
        try:
            await exchange(ctx, link, hello(ctx, f"connection {round_}".encode()))
        finally:
            await link.aclose()
    return passed()


async def s_replace(ctx: Context, column: str) -> Outcome:
    first = await dial(ctx, column)
    second: Link | None = None
    try:
        await exchange(ctx, first, hello(ctx, b"first session"), "hello on the first session")
        second = await dial(ctx, column)
        await exchange(ctx, second, hello(ctx, b"second session"), "hello on the new session")
        # The old session may still be read (it is retired, not cut): its hello is answered,
        # on whichever session the target now uses.
        km = hello(ctx, b"late, on the old session")
        try:
            await first.send(km)
        except Exception:
            return passed("old session closed at once")
        ack = await _first_message(first, second, REPLY_WAIT)
        if ack is None:
            raise Failure(
                "expected an ack to a hello sent on the replaced session (on the old or the new "
                f"one) within {REPLY_WAIT:g} s, got none"
            )
        problem = ack_problem(ctx, km, ack)
        if problem:
            raise Failure(f"hello on the replaced session: {problem}")
        await exchange(ctx, second, hello(ctx, b"new session still works"))
    finally:
        await first.aclose()
        if second is not None:
            await second.aclose()
    return passed()


async def _first_message(x: Link, y: Link, wait: float) -> KernelMessage | None:
    """The first message to arrive on either link within ``wait`` (a closed one is ignored)."""
    pending = {asyncio.ensure_future(x.recv()), asyncio.ensure_future(y.recv())}
    try:
        async with asyncio.timeout(wait):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        return task.result()
    except TimeoutError:
        pass
    finally:
        for task in pending:
            task.cancel()
    return None


# --- routed ------------------------------------------------------------------------------------


async def s_target_routes(ctx: Context, column: str) -> Outcome:
    """The target as a router: it pipes our connection to B (ours, direct)."""
    quic_column_check(column)
    if wire_transport(column) == "quic":
        raise Skip("routed QUIC uses hnet circuits (docs/quic.md §11), not RoutingRequests")
    if ctx.record.routers:
        raise Skip("the target is indirect (its record lists routers): it does not route")
    route, _ = route_to_target(ctx, column)
    b = ctx.b
    rr = routing_request(ctx.a, ctx.target, b.name)
    hs = initiator(ctx.a, ctx.keyring, b.name)
    before = ctx.endpoint_b.connections
    try:
        async with asyncio.timeout(CONNECT_WAIT):
            link = await connect(column, route, hs, rr, ctx.keyring)
    except (TimeoutError, HandshakeError, SessionError, ConnectionError, OSError) as e:
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if ctx.endpoint_b.connections == before:
            raise Skip(
                f"the target did not route (it never connected to {b.name}: {why}); a router "
                "is started with --max-passthroughs N"
            ) from None
        refused = "; ".join(ctx.endpoint_b.refused[-2:]) or "no handshake error on our side"
        raise Failure(
            f"expected the target to pipe our handshake to {b.name}; it connected to "
            f"{b.name} but the handshake failed: {why} ({refused})"
        ) from None
    ctx.opened.append(link)
    try:
        async with asyncio.timeout(REPLY_WAIT):
            inbound = await ctx.endpoint_b.accepted.get()
    except TimeoutError:
        raise Failure(f"expected {b.name} to see the piped session, it saw none") from None
    ctx.opened.append(inbound)
    try:
        if inbound.peer != ctx.a.name:
            raise Failure(f"expected {b.name}'s peer to be {ctx.a.name}, got {inbound.peer}")
        await cross(link, inbound, ctx.a, b, "the target")
    finally:
        await link.aclose()
        await inbound.aclose()
    return passed()


async def cross(src: Link, dst: Link, a: Identity, b: Identity, via: str) -> None:
    """A 200 kB request from ``a`` on ``src`` arrives unchanged on ``dst``; ``b``'s response
    comes back unchanged."""
    km = KernelMessage(
        random_id(), a.net(), b.net(), None, Request(False, 5, os.urandom(200_000), None, ()), None
    )
    await src.send(km)
    got = await recv(dst, f"our message at {b.name}, piped by {via}")
    if got != km:
        raise Failure(f"expected {describe(km)} at {b.name}, got {describe(got)}")
    back = KernelMessage(
        km.id, b.net(), a.net(), None, ResponseMessage(Response(False, ACK, None, ()), None), None
    )
    await dst.send(back)
    got = await recv(src, f"{b.name}'s reply, piped back by {via}")
    if got != back:
        raise Failure(f"expected {describe(back)}, got {describe(got)}")


async def _await_connection_request(ctx: Context, proxy: Link, column: str) -> Link:
    """As C: wait for the target's ConnectionRequest(A) on C's proxy session, then call
    back: a new connection to the target with RoutingRequest(C -> A), Noise responder."""
    while True:
        km = await proxy.recv()
        if not isinstance(km.message, Request):
            continue
        try:
            action = decode_net_action(km.message.body)
        except CodecError:
            continue
        if not isinstance(action, ConnectionRequest):
            continue
        want_source, want_target = Address.net(ctx.target), ctx.c.net()
        if km.source != want_source or km.target != want_target or action.name != ctx.a.name:
            raise Failure(
                f"expected ConnectionRequest({ctx.a.name}) from {want_source} to {want_target}, "
                f"got ConnectionRequest({action.name}) from {km.source} to {km.target}"
            )
        route, _ = route_to_target(ctx, column)
        rr = routing_request(ctx.c, ctx.target, ctx.a.name)
        hs = responder(ctx.c, ctx.keyring)
        link = await connect(column, route, hs, rr, ctx.keyring)
        ctx.opened.append(link)
        if link.peer != ctx.a.name:
            raise Failure(f"expected the call-back to reach {ctx.a.name}, got {link.peer}")
        return link


async def s_target_calls_back(ctx: Context, column: str) -> Outcome:
    """The target as the router of an indirect node (C, ours): it parks our RoutingRequest
    (A -> C), sends C a ConnectionRequest over C's proxy session, and pairs C's call-back."""
    quic_column_check(column)
    if wire_transport(column) == "quic":
        raise Skip("routed QUIC uses hnet circuits (docs/quic.md §11), not RoutingRequests")
    if ctx.record.routers:
        raise Skip("the target is indirect (its record lists routers): it does not route")
    c = ctx.c
    crec = await ctx.lookup(c.name)
    if crec is None or ctx.target not in crec.routers:
        raise Skip(f"{c.name} is not in HNS as indirect behind {ctx.target}")
    route, _ = route_to_target(ctx, column)
    hs = PeerHandshake(
        initiator=True,
        our_name=c.name,
        signing_key=c.key,
        lookup=ctx.keyring.get,
        expected_peer=ctx.target,
        proxy_request=True,
    )
    try:
        async with asyncio.timeout(CONNECT_WAIT):
            proxy = await connect(column, route, hs, None, ctx.keyring)
    except (TimeoutError, HandshakeError, SessionError, ConnectionError, OSError) as e:
        raise Failure(f"expected a session with proxy_request for {c.name}, got {e!r}") from None
    ctx.opened.append(proxy)
    # an answered hello: the target has taken the session (and routes for C from now on)
    await exchange(ctx, proxy, hello(ctx, b"route for me", source=c.net()), "hello from C")
    callback = asyncio.ensure_future(_await_connection_request(ctx, proxy, column))
    rr = routing_request(ctx.a, ctx.target, c.name)
    try:
        try:
            async with asyncio.timeout(CONNECT_WAIT):
                link = await connect(
                    column, route, initiator(ctx.a, ctx.keyring, c.name), rr, ctx.keyring
                )
        except (TimeoutError, HandshakeError, SessionError, ConnectionError, OSError) as e:
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if callback.done() and callback.exception() is not None:
                raise Failure(f"C's call-back failed: {callback.exception()}") from None
            if not callback.done():
                raise Skip(
                    f"the target sent {c.name} no ConnectionRequest ({why}); a router is "
                    "started with --max-passthroughs N"
                ) from None
            raise Failure(
                f"expected the target to pair our socket with C's call-back: {why}"
            ) from None
        ctx.opened.append(link)
        async with asyncio.timeout(REPLY_WAIT):
            inbound = await callback
        await cross(link, inbound, ctx.a, c, "the target (C's call-back)")
    finally:
        callback.cancel()
    return passed()


async def s_target_indirect(ctx: Context, column: str) -> Outcome:
    if not ctx.record.routers:
        raise Skip("the target is direct (its record lists no routers)")
    link = await dial(ctx, column)
    try:
        await exchange(ctx, link, hello(ctx, b"through your router"))
    finally:
        await link.aclose()
    return passed(f"via {', '.join(ctx.record.routers)}")


# --- hostile inputs -----------------------------------------------------------------------------


async def s_garbage(ctx: Context, column: str) -> Outcome:
    t = wire_transport(column)
    if t == "quic":
        route, _ = route_to_target(ctx, column)
        loop = asyncio.get_running_loop()
        transport, _proto = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(route.host, route.port)
        )
        try:
            for i in range(50):  # long headers, short headers, random
                first = bytes([0xC0 | (i & 0x3F)]) if i % 2 else bytes([0x40 | (i & 0x3F)])
                transport.sendto(first + os.urandom(1199))
                await asyncio.sleep(0)
        finally:
            transport.close()
        await still_serves(ctx, column, "50 garbage datagrams")
        return passed()
    link, _route, _rr = await raw(ctx, column)
    try:
        link.write_raw(b"\xff\xff" + os.urandom(4094))  # a 65,535-byte first frame, then noise
        await link.drain()
        got = await link.outcome(CLOSE_WAIT)
    finally:
        link.close()
    if got.startswith("message"):
        raise Failure(f"expected garbage refused, got {got}")
    await still_serves(ctx, column, "4 KiB of garbage")
    return passed(got)


async def s_bad_signature(ctx: Context, column: str) -> Outcome:
    wrong = keys.generate()
    route, rr = route_to_target(ctx, column)
    hs = initiator(ctx.a, ctx.keyring, ctx.target, signing_key=wrong)
    what = f"the handshake refused (our payload is signed by a key that is not {ctx.a.name}'s)"
    try:
        async with asyncio.timeout(CONNECT_WAIT):
            link = await connect(column, route, hs, rr, ctx.keyring)
    except (HandshakeError, SessionError, ConnectionError, OSError) as e:
        await still_serves(ctx, column, "a handshake with a bad signature")
        return passed(f"refused in the handshake ({type(e).__name__})")
    except TimeoutError:
        raise Failure(f"expected {what}, got no answer within {CONNECT_WAIT:g} s") from None
    ctx.opened.append(link)
    try:
        km = hello(ctx, b"do you accept a bad signature?")
        with contextlib.suppress(Exception):
            await link.send(km)
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                got = await link.recv()
        except (Closed, CodecError):
            got = None
        except TimeoutError:
            raise Failure(
                f"expected {what} and the connection closed, it stayed open {CLOSE_WAIT:g} s"
            ) from None
        if got is not None:
            raise Failure(f"expected {what}, got {describe(got)}: it accepted a bad signature")
    finally:
        await link.aclose()
    await still_serves(ctx, column, "a handshake with a bad signature")
    return passed("closed after the handshake")


async def s_spoofed_source(ctx: Context, column: str) -> Outcome:
    link = await dial(ctx, column)
    spoofed = ctx.b.net()
    what = f"the connection closed (source {spoofed} is not the authenticated peer {ctx.a.name})"
    try:
        km = hello(ctx, b"I am someone else", source=spoofed)
        await link.send(km)
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                got = await link.recv()
        except (Closed, CodecError):
            got = None
        except TimeoutError:
            raise Failure(f"expected {what}, it stayed open {CLOSE_WAIT:g} s") from None
        if got is not None:
            raise Failure(f"expected {what}, got {describe(got)}")
    finally:
        await link.aclose()
    await still_serves(ctx, column, "a message with a spoofed source")
    return passed()


async def s_oversize_claim(ctx: Context, column: str) -> Outcome:
    link = await raw_session(ctx, column)
    claim = b"\xff\xff\xff\xff"  # 4 GiB
    try:
        if column == "tcp":
            link.write_raw(claim + b"\x00\x20" + os.urandom(32))  # u32 claim in clear, a chunk
        else:
            link.write_encrypted_chunk(claim + b"x" * 32)  # WS: the length is encrypted
        await link.drain()
        got = await link.outcome(CLOSE_WAIT)
    finally:
        link.close()
    if got != "closed":
        raise Failure(f"expected the connection closed after a 4 GiB length claim, got {got}")
    await still_serves(ctx, column, "a 4 GiB length claim")
    return passed()


# --- the target dials us ------------------------------------------------------------------------


async def _serve(
    ctx: Context, link: Link, hellos: list[KernelMessage], problems: list[str]
) -> None:
    """Answer hellos on an accepted session as a node would (ack, same id, to rsvp or
    source), checking each is a hello from the authenticated peer to our net module."""
    while True:
        try:
            km = await link.recv()
        except Closed:
            return
        except CodecError as e:
            problems.append(
                f"expected a KernelMessage from {link.peer}, got undecodable bytes: {e}"
            )
            return
        if isinstance(km.message, ResponseMessage):
            continue
        if km.source.node != link.peer:
            problems.append(f"expected messages from {link.peer}, got source {km.source}")
        if km.target != ctx.a.net():
            problems.append(f"expected hellos to {ctx.a.net()}, got target {km.target}")
        try:
            decode_net_action(km.message.body)
            problems.append(
                f"expected a hello (a body that is not a NetAction), got {describe(km)}"
            )
        except CodecError:
            pass
        hellos.append(km)
        ack = KernelMessage(
            km.id,
            ctx.a.net(),
            km.rsvp or km.source,
            None,
            ResponseMessage(Response(False, ACK, None, ()), None),
            None,
        )
        with contextlib.suppress(Exception):
            await link.send(ack)


def fill_template(template: str, **values: str) -> str:
    """``{name}``, ``{via}``, ``{count}`` replaced, nothing else touched (so JSON braces in a
    curl command stay as they are)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


@dataclass(slots=True)
class Dialled:
    rc: int
    output: str
    links: list[Link]
    hellos: list[KernelMessage]
    problems: list[str]
    command: str


async def run_dial_command(ctx: Context, column: str, count: int, wait: float) -> Dialled:
    if not ctx.dial_command:
        raise Skip("no --dial-command given (needed to make the target dial us)")
    quic_column_check(column)
    t = wire_transport(column)
    if t == "quic":
        if not ctx.record.ports.get("quic"):
            raise Skip("the target's record has no ~quic-port")
        if QUIC_COLUMNS[column] != ctx.our_quic_backend:
            raise Skip(f"our QUIC listener runs {ctx.our_quic_backend} (HNET_QUIC_BACKEND)")
    await ctx.close_all()
    await asyncio.sleep(0.3)  # let the target see our connections close
    ctx.endpoint_a.drain_accepted()
    ctx.endpoint_a.refused.clear()
    command = fill_template(ctx.dial_command, name=ctx.a.name, via=t, count=str(count))
    hellos: list[KernelMessage] = []
    problems: list[str] = []
    links: list[Link] = []
    servers: list[asyncio.Task[None]] = []

    async def accept_loop() -> None:
        while True:
            link = await ctx.endpoint_a.accepted.get()
            links.append(link)
            ctx.opened.append(link)
            servers.append(asyncio.ensure_future(_serve(ctx, link, hellos, problems)))

    acceptor = asyncio.ensure_future(accept_loop())
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        try:
            async with asyncio.timeout(wait):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            raise Failure(f"the dial command ran over {wait:g} s: {command}") from None
        await asyncio.sleep(0.2)  # the last ack's session may still be reading
    finally:
        acceptor.cancel()
        for s in servers:
            s.cancel()
    return Dialled(
        proc.returncode or 0,
        out.decode(errors="replace").strip()[-600:],
        links,
        hellos,
        problems,
        command,
    )


def _check_dialled(ctx: Context, column: str, d: Dialled) -> None:
    if ctx.endpoint_a.refused:
        raise Failure(
            "expected the target's handshake to verify, ours refused it: "
            f"{ctx.endpoint_a.refused[0]}"
        )
    if not d.links:
        raise Failure(
            f"expected the target to connect to {ctx.a.name} over {wire_transport(column)}, "
            f"it did not (dial command exit {d.rc}: {d.output or 'no output'})"
        )
    for link in d.links:
        if link.peer != ctx.target:
            raise Failure(f"expected a session with {ctx.target}, got one with {link.peer}")
        if link.transport != wire_transport(column):
            raise Failure(
                f"expected the target to dial over {wire_transport(column)}, got {link.transport}"
            )
    if d.problems:
        raise Failure(d.problems[0])


async def s_handshake_dialled(ctx: Context, column: str) -> Outcome:
    d = await run_dial_command(ctx, column, 1, 25.0)
    _check_dialled(ctx, column, d)
    if d.rc != 0:
        raise Failure(f"expected the dial command to succeed, it exited {d.rc}: {d.output}")
    return passed()


async def s_hello_dialled(ctx: Context, column: str) -> Outcome:
    count = 3
    d = await run_dial_command(ctx, column, count, 30.0)
    _check_dialled(ctx, column, d)
    if len(d.hellos) != count:
        raise Failure(f"expected {count} hellos from the target, got {len(d.hellos)}")
    ids = {km.id for km in d.hellos}
    if len(ids) != count:
        raise Failure(f"expected {count} hellos with distinct ids, got ids {sorted(ids)}")
    if d.rc != 0:
        raise Failure(
            f"expected the dial command to succeed on our acks, it exited {d.rc}: {d.output}"
        )
    return passed()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("handshake-target-dials", s_handshake_dialled, ROLE_TARGET_DIALS, 40.0),
    Scenario("hello-target-dials", s_hello_dialled, ROLE_TARGET_DIALS, 45.0),
    Scenario("handshake", s_handshake),
    Scenario("hello", s_hello),
    Scenario("pipelined-1000", s_pipelined, deadline=90.0),
    Scenario("size-1-chunk", _sized(100)),
    Scenario("size-many-chunks", _sized(1_000_000), deadline=45.0),
    Scenario("size-cap", _sized(limits.MESSAGE_MAX_SIZE), deadline=90.0),
    Scenario("size-over-cap", s_over_cap, deadline=90.0),
    Scenario("blob", s_blob),
    Scenario("capabilities", s_capabilities),
    Scenario("reconnect", s_reconnect),
    Scenario("session-replace", s_replace),
    Scenario("routed-target-routes", s_target_routes),
    Scenario("routed-target-calls-back", s_target_calls_back),
    Scenario("routed-target-indirect", s_target_indirect),
    Scenario("hostile-garbage", s_garbage),
    Scenario("hostile-bad-signature", s_bad_signature),
    Scenario("hostile-spoofed-source", s_spoofed_source),
    Scenario("hostile-oversize-claim", s_oversize_claim),
)
