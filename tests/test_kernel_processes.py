"""The kernel with Python test processes on one real in-process node: the message chain,
contexts, timeouts, send-and-await, on-exit, spawn and kill, full inboxes, local capability
checks, state."""

from __future__ import annotations

import time
from pathlib import Path

from hnet import Capability, Request, ResponseMessage, SendError, SendErrorKind
from kernel import caps
from kernel.api import (
    OnExitRequests,
    OnExitRestart,
    ProcessContext,
    ProcessCrashed,
    ReceivedError,
    SpawnError,
)
from kernel.bridge import ProcessBridge
from kernel.kernel import Kernel
from kernel.state import SqliteStateStore
from tests.test_kernel_support import Log, Py, addr, echo, kernels, pid, py, req, resp, until

NODE = "alice.os"


def a(name: str) -> str:
    return f"{name}:test:sys"


def at(name: str):
    return addr(f"{NODE}@{name}:test:sys")


def msg_id(ctx: ProcessContext) -> int | None:
    assert isinstance(ctx, ProcessBridge)
    p = ctx.messages.prompting
    return None if p is None else p.id


async def test_message_chain_with_inherit(tmp_path: Path) -> None:
    """A asks B (expects a response, with a context); B forwards to C with inherit; C's
    response reaches A, with A's id and A's context, and B never sees it."""
    log = Log()

    def proc_a(ctx: ProcessContext) -> None:
        ctx.receive()  # the go message
        ctx.send_request(at("b"), req(b"question", expects=5), b"A-context", None)
        assert isinstance(ctx, ProcessBridge)
        log.add(("a-sent-id", next(iter(ctx.messages.contexts))))
        got = ctx.receive()
        log.add(("a-got", got))

    def proc_b(ctx: ProcessContext) -> None:
        src, _m = ctx.receive()  # type: ignore[misc]
        log.add(("b-id", msg_id(ctx), src))
        ctx.send_request(at("c"), req(b"forwarded", inherit=True), None, None)
        log.add(("b-next", ctx.receive()))  # nothing more should come

    def proc_c(ctx: ProcessContext) -> None:
        src, m = ctx.receive()  # type: ignore[misc]
        assert isinstance(ctx, ProcessBridge)
        log.add(("c-got", src, m, msg_id(ctx), ctx.messages.prompting.rsvp))  # type: ignore[union-attr]
        ctx.send_response(resp(b"answer from C"), None)
        ctx.receive()

    async with kernels(tmp_path, NODE) as (k,):
        for name, fn in (("a", proc_a), ("b", proc_b), ("c", proc_c)):
            assert await k.spawn(a(name), runtime=py(fn), public=True) == pid(a(name))
        await k.send(at("a"), b"go")
        items = await log.wait(lambda xs: any(x[0] == "a-got" for x in xs))
        by = {x[0]: x[1:] for x in items}
        a_id = by["a-sent-id"][0]
        assert by["b-id"] == (a_id, at("a"))
        _, c_body, c_id, c_rsvp = by["c-got"]
        assert (c_body.body, c_body.inherit, c_id, c_rsvp) == (b"forwarded", True, a_id, at("a"))
        src, m = by["a-got"][0]
        assert src == at("c") and isinstance(m, ResponseMessage)
        assert (m.response.body, m.context) == (b"answer from C", b"A-context")
        assert "b-next" not in by


async def test_timeout_delivers_send_error_with_context(tmp_path: Path) -> None:
    log = Log()

    def asker(ctx: ProcessContext) -> None:
        ctx.send_request(at("silent"), req(b"hello?", expects=1), b"my-ctx", None)
        t0 = time.monotonic()
        log.add((ctx.receive(), time.monotonic() - t0))
        log.add(ctx.send_and_await_response(at("silent"), req(b"again", expects=1), None))

    def silent(ctx: ProcessContext) -> None:
        while True:
            ctx.receive()

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("silent"), runtime=py(silent), public=True)
        await k.spawn(a("asker"), runtime=py(asker))
        (got, waited), err = await log.wait(n=2, timeout=10)
        assert isinstance(got, ReceivedError) and got.context == b"my-ctx"
        assert got.error.kind is SendErrorKind.TIMEOUT and got.error.target == at("silent")
        assert isinstance(got.error.message, Request) and got.error.message.body == b"hello?"
        assert 0.9 <= waited < 3
        assert isinstance(err, SendError) and err.kind is SendErrorKind.TIMEOUT


async def test_a_response_without_a_context_is_not_delivered(tmp_path: Path) -> None:
    """B answers twice; A takes the first (its context is then gone), the second is dropped,
    and A's next receive is the next request."""
    log = Log()

    def proc_a(ctx: ProcessContext) -> None:
        ctx.send_request(at("b"), req(b"q", expects=5), b"ctx", None)
        log.add(ctx.receive())
        log.add(ctx.receive())

    def proc_b(ctx: ProcessContext) -> None:
        ctx.receive()
        ctx.send_response(resp(b"first"), None)
        ctx.send_response(resp(b"second"), None)
        log.add("b-done")
        ctx.receive()

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("b"), runtime=py(proc_b), public=True)
        await k.spawn(a("a"), runtime=py(proc_a), public=True)
        await log.wait(lambda xs: "b-done" in xs and len(xs) >= 2)
        await k.send(at("a"), b"next")
        items = [x for x in await log.wait(n=3) if x != "b-done"]
        (_, first), (_src, nxt) = items
        assert isinstance(first, ResponseMessage) and first.response.body == b"first"
        assert isinstance(nxt, Request) and nxt.body == b"next"


async def test_send_and_await_leaves_other_messages_queued(tmp_path: Path) -> None:
    log = Log()

    def proc_a(ctx: ProcessContext) -> None:
        got = ctx.send_and_await_response(at("b"), req(b"q", expects=5), None)
        log.add(("awaited", got))
        log.add(("then", ctx.receive()))

    def proc_b(ctx: ProcessContext) -> None:
        ctx.receive()  # A's request: the prompting message
        log.add("b-got-q")
        ctx.receive()  # the go signal (expects nothing: B's prompting message stays)
        ctx.send_response(resp(b"reply"), None)
        ctx.receive()

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("b"), runtime=py(proc_b), public=True)
        await k.spawn(a("a"), runtime=py(proc_a), public=True)
        await log.wait(lambda xs: "b-got-q" in xs)
        await k.send(at("a"), b"meanwhile")  # queued for A before B's reply exists
        await k.send(at("b"), b"go")
        items = await log.wait(lambda xs: any(x[0] == "then" for x in xs if isinstance(x, tuple)))
        by = {x[0]: x[1] for x in items if isinstance(x, tuple)}
        src, m = by["awaited"]
        assert src == at("b") and isinstance(m, ResponseMessage)
        assert m.response.body == b"reply" and m.context is None
        src, m = by["then"]
        assert isinstance(m, Request) and m.body == b"meanwhile"


async def test_kernel_request_round_trip_and_blobs(tmp_path: Path) -> None:
    def blobby(ctx: ProcessContext) -> None:
        while True:
            ctx.receive()
            blob = ctx.get_blob()
            assert ctx.has_blob() == (blob is not None)
            ctx.send_response(resp(b"len=%d" % (len(blob.bytes) if blob else -1)), blob)

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("blob"), runtime=py(blobby))
        from hnet import LazyLoadBlob

        big = LazyLoadBlob("application/octet-stream", bytes(range(256)) * 400)
        got = await k.request(at("blob"), b"x", timeout=5, blob=big)
        assert not isinstance(got, SendError)
        assert isinstance(got.message, ResponseMessage)
        assert got.message.response.body == b"len=102400" and got.lazy_load_blob == big


async def test_local_messaging_capability_is_required(tmp_path: Path) -> None:
    log = Log()

    def sender(ctx: ProcessContext) -> None:
        while True:
            _, m = ctx.receive()  # type: ignore[misc]
            assert isinstance(m, Request)
            log.add(ctx.send_and_await_response(addr(m.body.decode()), req(b"hi", expects=5), None))

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("private"), runtime=py(echo))
        await k.spawn(a("public"), runtime=py(echo), public=True)
        await k.spawn(a("sender"), runtime=py(sender))
        t0 = time.monotonic()
        await k.send(at("sender"), str(at("private")).encode())
        (refused,) = await log.wait(n=1)
        assert isinstance(refused, SendError) and refused.kind is SendErrorKind.TIMEOUT
        assert time.monotonic() - t0 < 2  # refused at once, not after the 5 s timer
        # a response is a message too (as in the reference): the public process reaches the
        # private sender only with messaging to it, else the sender times out
        k.grant_capabilities(pid(a("public")), [caps.messaging(at("sender"))])
        await k.send(at("sender"), str(at("public")).encode())
        _, (_src, ok) = await log.wait(n=2)
        assert isinstance(ok, ResponseMessage) and ok.response.body == b"echo:hi"
        # granted the messaging capability, the private process is reachable; the reply
        # needs the private process to hold messaging to the sender too
        k.grant_capabilities(pid(a("sender")), [caps.messaging(at("private"))])
        k.grant_capabilities(pid(a("private")), [caps.messaging(at("sender"))])
        await k.send(at("sender"), str(at("private")).encode())
        items = await log.wait(n=3)
        assert isinstance(items[2][1], ResponseMessage)


async def test_full_inbox_is_reported_to_the_sender(tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    log = Log()

    def stuck(ctx: ProcessContext) -> None:
        release.wait(10)
        while True:
            ctx.receive()

    def sender(ctx: ProcessContext) -> None:
        for i in range(3):
            ctx.send_request(at("stuck"), req(b"%d" % i, expects=30), b"%d" % i, None)
        log.add(ctx.receive())

    async with kernels(tmp_path, NODE, inbox_messages=2) as (k,):
        await k.spawn(a("stuck"), runtime=py(stuck), public=True)
        await k.spawn(a("sender"), runtime=py(sender))
        (got,) = await log.wait(n=1)
        release.set()
        assert isinstance(got, ReceivedError) and got.context == b"2"
        assert got.error.kind is SendErrorKind.TIMEOUT
        assert [p.queued for p in k.ps() if p.process == a("stuck")] in ([2], [0], [1])


async def test_restart_with_backoff(tmp_path: Path) -> None:
    unit = 0.1
    starts = Log()

    def crasher(ctx: ProcessContext) -> None:
        starts.add(time.monotonic())
        raise RuntimeError("boom")

    async with kernels(tmp_path, NODE, restart_unit=unit) as (k,):
        await k.spawn(a("crasher"), runtime=py(crasher), on_exit=OnExitRestart())
        t = await starts.wait(n=5, timeout=10)
        gaps = [t[i + 1] - t[i] for i in range(4)]
        # the reference's schedule, in units: at once, then 1, 1, 2
        assert gaps[0] < unit
        for got, want in zip(gaps[1:], (1, 1, 2), strict=True):
            assert want * unit - 0.02 <= got < want * unit + 0.5, gaps
        (info,) = k.ps()
        assert info.restarts >= 4 and info.on_exit == "Restart"
        assert "boom" in k.output(a("crasher")) and "RuntimeError" in info.last_exit
        assert await k.kill(a("crasher"))
        assert k.ps() == []


async def test_restart_keeps_capabilities_and_state(tmp_path: Path) -> None:
    log = Log()

    def counter(ctx: ProcessContext) -> None:
        n = int(ctx.get_state() or b"0") + 1
        ctx.set_state(b"%d" % n)
        log.add((n, sorted(c.params for c in ctx.our_capabilities())))
        if n < 3:
            return
        ctx.clear_state()
        log.add(ctx.get_state())
        ctx.receive()

    async with kernels(tmp_path, NODE, restart_unit=0.01) as (k,):
        extra = Capability(at("other"), '"read"')
        await k.spawn(
            a("counter"), runtime=py(counter), on_exit=OnExitRestart(), capabilities=[extra]
        )
        items = await log.wait(n=4)
        assert [x[0] for x in items[:3]] == [1, 2, 3]
        assert all(x[1] == ['"messaging"', '"read"'] for x in items[:3])
        assert items[3] is None


async def test_on_exit_requests_are_sent(tmp_path: Path) -> None:
    log = Log()

    def listener(ctx: ProcessContext) -> None:
        while True:
            src, m = ctx.receive()  # type: ignore[misc]
            log.add((src, m))

    def leaver(ctx: ProcessContext) -> None:
        ctx.set_on_exit(OnExitRequests(((at("listener"), req(b"bye", expects=5), None),)))
        assert isinstance(ctx.get_on_exit(), OnExitRequests)

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("listener"), runtime=py(listener), public=True)
        await k.spawn(a("leaver"), runtime=py(leaver))
        ((src, m),) = await log.wait(n=1)
        assert src == at("leaver") and isinstance(m, Request)
        assert m.body == b"bye" and m.expects_response is None  # a dead process awaits nothing
        await until(lambda: [p.process for p in k.ps()] == [a("listener")])


async def test_crash_is_contained_and_reported(tmp_path: Path) -> None:
    def crash(ctx: ProcessContext) -> None:
        ctx.print_to_terminal(0, "about to fail")
        raise ProcessCrashed("trap: unreachable")

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("echo"), runtime=py(echo), public=True)
        await k.spawn(a("crash"), runtime=py(crash))
        await until(lambda: len(k.ps()) == 1)
        got = await k.request(at("echo"), b"still here", timeout=5)
        assert not isinstance(got, SendError)
        (row,) = [p.to_json() for p in k.ps()]
        assert row["process"] == a("echo") and row["state"] == "running"
        assert row["capabilities"] == [{"issuer": str(at("echo")), "params": '"messaging"'}]


async def test_crash_output_is_kept_while_restarting(tmp_path: Path) -> None:
    def crash(ctx: ProcessContext) -> None:
        ctx.print_to_terminal(0, "about to fail")
        raise ProcessCrashed("trap: unreachable")

    async with kernels(tmp_path, NODE, restart_unit=5) as (k,):
        await k.spawn(a("crash"), runtime=py(crash), on_exit=OnExitRestart())
        await until(lambda: k.ps()[0].restarts == 1 and k.ps()[0].state == "restarting")
        out = k.output(a("crash"))
        assert "about to fail" in out and "trap: unreachable" in out
        # a message to a process waiting out its backoff is refused at once
        got = await k.request(at("crash"), b"x", timeout=5)
        assert isinstance(got, SendError) and got.kind is SendErrorKind.TIMEOUT


async def test_spawn_capabilities_requested_and_granted(tmp_path: Path) -> None:
    log = Log()
    held = Capability(at("vault"), '"read"')
    not_held = Capability(at("vault"), '"write"')

    def factory(process, wasm_path):
        return Py(lambda ctx: (log.add(("child", set(ctx.our_capabilities()))), ctx.receive()))

    def parent(ctx: ProcessContext) -> None:
        child = ctx.spawn(
            None,
            "/c.wasm",
            OnExitRestart(),
            [held, not_held],
            [(ctx.our().process, '"hello"')],
            False,
        )
        log.add(("spawned", child))
        ctx.receive()

    async with kernels(tmp_path, NODE, runtime_factory=factory) as (k,):
        await k.spawn(a("parent"), runtime=py(parent), capabilities=[held])
        by = dict(await log.wait(n=2))
        child = by["spawned"]
        assert child.process_name.isdigit()  # a random u64 name
        assert (child.package_name, child.publisher_node) == ("test", "sys")
        child_addr = addr(f"{NODE}@{child}")
        assert by["child"] == {held, caps.messaging(child_addr), caps.messaging(at("parent"))}
        assert k.has_capability(pid(a("parent")), Capability(child_addr, '"hello"'))
        assert k.has_capability(pid(a("parent")), caps.messaging(child_addr))


async def test_shutdown_stops_blocked_processes(tmp_path: Path) -> None:
    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("echo"), runtime=py(echo))
        entry = k.table.get(pid(a("echo")))
        assert entry is not None and entry.thread is not None
        thread = entry.thread
        await until(lambda: entry.state.value == "running")
        await k.aclose()
        assert not thread.is_alive()
        assert k.ps() == []


async def test_spawn_and_kill(tmp_path: Path) -> None:
    log = Log()
    children = {"/child.wasm": echo}

    def factory(process, wasm_path):
        if wasm_path not in children:
            raise FileNotFoundError(wasm_path)
        return Py(children[wasm_path])

    def parent(ctx: ProcessContext) -> None:
        child = ctx.spawn("kid", "/child.wasm", OnExitRestart(), [], [], False)
        log.add(child)
        log.add(ctx.spawn("kid", "/child.wasm", OnExitRestart(), [], [], False))
        log.add(ctx.spawn(None, "/missing.wasm", OnExitRestart(), [], [], False))
        # the parent may message the (private) child
        log.add(ctx.send_and_await_response(at("kid"), req(b"hi", expects=5), None))
        ctx.receive()  # blocks until killed

    async with kernels(tmp_path, NODE, runtime_factory=factory) as (k,):
        assert await k.spawn(a("parent"), runtime=py(parent)) == pid(a("parent"))
        assert await k.spawn(a("parent"), runtime=py(parent)) is SpawnError.NAME_TAKEN
        assert await k.spawn(a("nofile"), wasm_path="/nope.wasm") is SpawnError.NO_FILE_AT_PATH
        child, taken, missing, reply = await log.wait(n=4)
        assert child == pid(a("kid")) and taken is SpawnError.NAME_TAKEN
        assert missing is SpawnError.NO_FILE_AT_PATH
        assert isinstance(reply[1], ResponseMessage) and reply[1].response.body == b"echo:hi"
        kid_caps = {c for p in k.ps() if p.process == a("kid") for c in p.capabilities}
        assert caps.messaging(at("parent")) in kid_caps and caps.messaging(at("kid")) in kid_caps
        assert k.has_capability(pid(a("parent")), caps.messaging(at("kid")))
        thread = k.table.get(pid(a("parent"))).thread  # type: ignore[union-attr]
        assert await k.kill(a("parent"))  # interrupts the blocked receive
        assert thread is not None
        await until(lambda: not thread.is_alive(), what="killed thread ended")
        assert a("parent") not in [p.process for p in k.ps()]
        # killing revokes the caps the process issued
        assert not k.has_capability(pid(a("kid")), caps.messaging(at("parent")))
        assert not await k.kill(a("parent"))


async def test_capabilities_attached_filtered_and_saved(tmp_path: Path) -> None:
    log = Log()
    held = Capability(at("granter"), '"read"')
    not_held = Capability(at("granter"), '"write"')

    def giver(ctx: ProcessContext) -> None:
        mine = Capability(ctx.our(), '"mine"')
        r = req(b"caps", caps=((held, b""), (not_held, b""), (mine, b"")))
        ctx.send_request(at("taker"), r, None, None)
        ctx.receive()

    def taker(ctx: ProcessContext) -> None:
        _, m = ctx.receive()  # type: ignore[misc]
        assert isinstance(m, Request)
        log.add(m.capabilities)
        ctx.save_capabilities([c for c, _ in m.capabilities])
        ctx.save_capabilities([Capability(at("granter"), '"admin"')])  # never received: refused
        log.add(set(ctx.our_capabilities()))
        ctx.drop_capabilities([held])
        log.add(set(ctx.our_capabilities()))
        ctx.receive()

    async with kernels(tmp_path, NODE) as (k,):
        await k.spawn(a("taker"), runtime=py(taker), public=True)
        await k.spawn(a("giver"), runtime=py(giver), capabilities=[held])
        attached, saved, dropped = await log.wait(n=3)
        mine = Capability(at("giver"), '"mine"')
        assert attached == ((held, b""), (mine, b""))  # not_held left out; no signatures
        assert saved == {caps.messaging(at("taker")), held, mine}
        assert dropped == {caps.messaging(at("taker")), mine}
        assert "refused to save" in k.output(a("taker"))


async def test_state_persists_in_sqlite(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.sqlite")
    p = pid(a("x"))
    assert store.get(p) is None
    store.set(p, b"\x00state")
    store.close()
    store = SqliteStateStore(tmp_path / "s.sqlite")
    assert store.get(p) == b"\x00state"
    store.clear(p)
    assert store.get(p) is None
    store.close()


async def test_kernel_state_file_is_under_home(tmp_path: Path) -> None:
    async with kernels(tmp_path, NODE) as (k,):
        assert isinstance(k, Kernel)
        assert isinstance(k.state, SqliteStateStore)
        assert k.state.path == tmp_path / NODE / "kernel" / "state.sqlite"
