"""Processes on two real in-process nodes (hnet.testing.harness): the network capability both
ways, Offline from the network, capabilities crossing nodes."""

from __future__ import annotations

import time
from pathlib import Path

from hnet import (
    Address,
    Capability,
    ProcessId,
    Request,
    ResponseMessage,
    SendError,
    SendErrorKind,
)
from kernel import caps
from kernel.api import ProcessContext, ReceivedError
from tests.test_kernel_support import Log, addr, echo, kernels, py, req, until

ALICE, BOB = "alice.os", "bob.os"


def on(node: str, name: str) -> Address:
    return addr(f"{node}@{name}:test:sys")


def asker(log: Log):
    """Asks whatever address each request's body names; logs what comes back."""

    def run(ctx: ProcessContext) -> None:
        while True:
            _, m = ctx.receive()  # type: ignore[misc]
            assert isinstance(m, Request)
            t0 = time.monotonic()
            target = addr(m.body.decode())
            got = ctx.send_and_await_response(target, req(b"ping", expects=1), None)
            log.add((got, time.monotonic() - t0))

    return run


async def test_network_capability_both_ways(tmp_path: Path) -> None:
    log = Log()
    async with kernels(tmp_path, ALICE, BOB) as (ka, kb):
        await kb.spawn("pub:test:sys", runtime=py(echo), public=True, networking=True)
        await kb.spawn("closed:test:sys", runtime=py(echo), public=True)
        await ka.spawn("asker:test:sys", runtime=py(asker(log)), networking=True)
        await ka.spawn("nonet:test:sys", runtime=py(asker(log)))

        # with the network capability on both ends: the response comes back
        await ka.send(on(ALICE, "asker"), str(on(BOB, "pub")).encode())
        ((got, _),) = await log.wait(n=1, timeout=10)
        assert isinstance(got, tuple), got
        src, m = got
        assert src == on(BOB, "pub") and isinstance(m, ResponseMessage)
        assert m.response.body == b"echo:ping"

        # the target lacks it: dropped on arrival, the sender times out
        await ka.send(on(ALICE, "asker"), str(on(BOB, "closed")).encode())
        _, (err, waited) = await log.wait(n=2, timeout=10)
        assert isinstance(err, SendError) and err.kind is SendErrorKind.TIMEOUT
        assert err.target == on(BOB, "closed") and waited >= 0.9

        # the sender lacks it: refused at once
        await ka.send(on(ALICE, "nonet"), str(on(BOB, "pub")).encode())
        _, _, (err, waited) = await log.wait(n=3, timeout=10)
        assert isinstance(err, SendError) and err.kind is SendErrorKind.TIMEOUT
        assert waited < 0.9

        # the kernel's own endpoint (hnet send): a remote round trip
        reply = await ka.request(on(BOB, "pub"), b"from the cli", timeout=5)
        assert not isinstance(reply, SendError)
        assert isinstance(reply.message, ResponseMessage)
        assert reply.message.response.body == b"echo:from the cli"
        timeout = await ka.request(on(BOB, "closed"), b"x", timeout=1)
        assert isinstance(timeout, SendError) and timeout.kind is SendErrorKind.TIMEOUT


async def test_offline_comes_back_with_the_context(tmp_path: Path) -> None:
    log = Log()

    def lonely(ctx: ProcessContext) -> None:
        ctx.send_request(on("ghost.os", "x"), req(b"anyone?", expects=30), b"ctx", None)
        log.add(ctx.receive())

    async with kernels(tmp_path, ALICE) as (ka,):
        await ka.spawn("lonely:test:sys", runtime=py(lonely), networking=True)
        (got,) = await log.wait(n=1, timeout=20)
        assert isinstance(got, ReceivedError) and got.context == b"ctx"
        assert got.error.kind is SendErrorKind.OFFLINE


async def test_caps_from_another_node(tmp_path: Path) -> None:
    """A cap claiming to be issued on the receiving node must carry its signature; alice
    cannot forge one for bob. A cap issued on alice passes to bob and may be saved (alice
    vouches for its own); a cap issued on a third node passes unverified and may not."""
    log = Log()
    forged = Capability(on(BOB, "vault"), '"open"')
    third = Capability(on("carol.os", "vault"), '"open"')

    def giver(ctx: ProcessContext) -> None:
        own = Capability(ctx.our(), '"alice-thing"')
        r = req(b"caps", caps=((forged, b""), (own, b""), (third, b"")))
        ctx.send_request(on(BOB, "taker"), r, None, None)
        ctx.receive()

    def taker(ctx: ProcessContext) -> None:
        _, m = ctx.receive()  # type: ignore[misc]
        assert isinstance(m, Request)
        log.add(m.capabilities)
        ctx.save_capabilities([c for c, _ in m.capabilities])
        log.add(set(ctx.our_capabilities()))
        ctx.receive()

    async with kernels(tmp_path, ALICE, BOB) as (ka, kb):
        await kb.spawn("taker:test:sys", runtime=py(taker), public=True, networking=True)
        # alice's kernel grants these caps: signed with alice's key, not bob's or carol's
        await ka.spawn(
            "giver:test:sys", runtime=py(giver), networking=True, capabilities=[forged, third]
        )
        attached, saved = await log.wait(n=2, timeout=10)
        own = Capability(on(ALICE, "giver"), '"alice-thing"')
        assert attached == ((own, b""), (third, b""))  # the forged one is gone
        assert saved == {caps.messaging(on(BOB, "taker")), caps.network(BOB), own}


async def test_a_cap_from_another_node_can_be_saved_and_presented_back(tmp_path: Path) -> None:
    """Bob's process grants alice's process a cap it issued; alice saves it (it came from its
    issuer's node, with bob's signature) and later attaches it to a message back to bob, where
    it verifies; a cap alice makes up in bob's name is dropped on arrival."""
    log = Log()

    def granter(ctx: ProcessContext) -> None:
        ticket = Capability(ctx.our(), '"ticket"')
        ctx.send_request(on(ALICE, "holder"), req(b"take", caps=((ticket, b""),)), None, None)
        _, m = ctx.receive()  # type: ignore[misc]
        assert isinstance(m, Request)
        log.add(("bob-got", m.capabilities))
        ctx.receive()

    def holder(ctx: ProcessContext) -> None:
        _, m = ctx.receive()  # type: ignore[misc]
        assert isinstance(m, Request)
        ctx.save_capabilities([c for c, _ in m.capabilities])
        mine = set(ctx.our_capabilities())
        log.add(("alice-saved", mine))
        fake = Capability(on(BOB, "granter"), '"master-key"')
        ctx.save_capabilities([fake])  # refused: never received
        back = (*((c, b"") for c in mine if c.issuer.node == BOB), (fake, b""))
        ctx.send_request(on(BOB, "granter"), req(b"back", caps=back), None, None)
        ctx.receive()

    async with kernels(tmp_path, ALICE, BOB) as (ka, kb):
        await ka.spawn("holder:test:sys", runtime=py(holder), public=True, networking=True)
        await kb.spawn("granter:test:sys", runtime=py(granter), public=True, networking=True)
        items = await log.wait(n=2, timeout=10)
        by = dict(items)
        ticket = Capability(on(BOB, "granter"), '"ticket"')
        assert ticket in by["alice-saved"]
        assert by["bob-got"] == ((ticket, b""),)


async def test_full_inbox_drops_a_remote_message(tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    log = Log()

    def stuck(ctx: ProcessContext) -> None:
        release.wait(10)
        while True:
            ctx.receive()

    def sender(ctx: ProcessContext) -> None:
        for i in range(2):
            ctx.send_request(on(BOB, "stuck"), req(b"%d" % i, expects=2), b"%d" % i, None)
        log.add(ctx.receive())
        log.add(ctx.receive())

    async with kernels(tmp_path, ALICE, BOB, inbox_messages=1) as (ka, kb):
        await kb.spawn("stuck:test:sys", runtime=py(stuck), public=True, networking=True)
        entry = kb.table.get(ProcessId.parse("stuck:test:sys"))
        assert entry is not None and entry.inbox is not None
        inbox = entry.inbox
        await ka.spawn("sender:test:sys", runtime=py(sender), networking=True)
        await until(lambda: inbox.refused >= 1, timeout=10)  # dropped on bob, logged
        e1, e2 = await log.wait(n=2, timeout=10)
        release.set()
        # nothing tells alice: both requests time out (one queued, one dropped)
        assert {e1.context, e2.context} == {b"0", b"1"}
        assert e1.error.kind is e2.error.kind is SendErrorKind.TIMEOUT
