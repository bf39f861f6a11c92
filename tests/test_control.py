"""The control socket in-process: its caps, its write deadline, pipelining, the ping op's body.

The server runs on a stub node exposing what the ops use; its ``request`` can be held open so
that concurrency is observed, not timed. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hnet import limits
from hnet.control import (
    ControlError,
    ControlPipeline,
    ControlServer,
    encoded_body_size,
    ping_body,
    socket_path,
)
from hnet.core.wire import Address

WAIT = 10.0  # bound on every wait below; the happy paths take milliseconds


class StubTracker:
    high_water = 3

    def __len__(self) -> int:
        return 1


class StubNode:
    """What the control ops use of a Node. ``request`` waits for its body's gate, if any."""

    name = "stub.os"

    def __init__(self) -> None:
        self.listening = {"tcp": ("127.0.0.1", 1)}
        self.config = SimpleNamespace(transports=("quic", "tcp", "ws"))
        self.pki = SimpleNamespace(resolve=self._resolve, source="stub registry")
        self.peers = SimpleNamespace(infos=list)
        self.requests = StubTracker()
        self.diag_text = "diag"
        self.bodies: list[bytes] = []
        self.gates: dict[bytes, asyncio.Event] = {}
        self.active = 0
        self.max_active = 0
        self._active_changed = asyncio.Event()

    def diagnostics(self) -> str:
        return self.diag_text

    async def _resolve(self, name: str, timeout: float = 1.0) -> object | None:
        return object() if name.endswith(".os") and name != "nobody.os" else None

    async def request(
        self, address: Address, body: bytes, *, timeout: float, via: str | None
    ) -> SimpleNamespace:
        self.bodies.append(body)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self._active_changed.set()
        try:
            gate = self.gates.get(body)
            if gate is not None:
                async with asyncio.timeout(WAIT):
                    await gate.wait()
        finally:
            self.active -= 1
            self._active_changed.set()
        source = SimpleNamespace(node=address.node)
        return SimpleNamespace(
            message=SimpleNamespace(message=None, source=source), via="tcp", rtt=0.001
        )

    async def until_active(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.active != n:
                self._active_changed.clear()
                await self._active_changed.wait()


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[tuple[ControlServer, StubNode]]:
    node = StubNode()
    stopped: list[bool] = []
    server = ControlServer(
        node,  # type: ignore[arg-type]
        socket_path(tmp_path),
        lambda: stopped.append(True),
        write_timeout=0.5,
    )
    await server.start()
    try:
        yield server, node
    finally:
        await server.aclose()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ControlServer) -> Client:
        async with asyncio.timeout(WAIT):
            r, w = await asyncio.open_unix_connection(
                str(server.path), limit=2 * limits.CONTROL_MAX_LINE
            )
        return cls(r, w)

    def send(self, *reqs: dict[str, Any]) -> None:
        self.writer.write(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))

    async def read(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            line = await self.reader.readline()
        assert line, "connection closed"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        self.send(req)
        return await self.read()

    async def closed(self) -> bool:
        """True once the server closed the connection (all its data read)."""
        try:
            async with asyncio.timeout(WAIT):
                while await self.reader.read(1 << 20):
                    pass
        except (ConnectionError, OSError):
            pass
        return True

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def eventually(condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds, checked as the loop runs (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.005)


def ping(**kw: Any) -> dict[str, Any]:
    return {"op": "ping", "target": "peer.os", **kw}


# --- the socket and its caps -------------------------------------------------------------------


async def test_socket_is_owner_only(control: tuple[ControlServer, StubNode]) -> None:
    server, _ = control
    assert stat.S_ISSOCK(server.path.stat().st_mode)
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600


async def test_status_reports_outstanding_requests(control: tuple[ControlServer, StubNode]) -> None:
    server, _ = control
    c = await Client.open(server)
    reply = await c.call({"op": "status"})
    assert reply["ok"] and reply["name"] == "stub.os"
    assert reply["outstanding"] == 1 and reply["max_outstanding"] == 3
    await c.aclose()


async def test_line_at_the_cap_is_read(control: tuple[ControlServer, StubNode]) -> None:
    server, _ = control
    c = await Client.open(server)
    head = b'{"op": "status", "pad": "'
    line = head + b"x" * (limits.CONTROL_MAX_LINE - len(head) - 2) + b'"}'
    assert len(line) == limits.CONTROL_MAX_LINE
    c.writer.write(line + b"\n")
    assert (await c.read())["ok"]
    await c.aclose()


@pytest.mark.parametrize("newline", [True, False])
async def test_line_over_the_cap_is_refused_and_closed(
    control: tuple[ControlServer, StubNode], newline: bool
) -> None:
    server, _ = control
    c = await Client.open(server)
    c.writer.write(b"x" * (limits.CONTROL_MAX_LINE + 1) + (b"\n" if newline else b""))
    reply = await c.read()
    assert reply == {"ok": False, "kind": "usage", "error": "line too long"}
    assert await c.closed()
    await c.aclose()
    await eventually(lambda: server.clients == 0)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"{not json\n", "bad request: "),
        (b"[1, 2]\n", "bad request: not an object"),
        (b'"status"\n', "bad request: not an object"),
        (b'{"op": "status", "id": 1.5}\n', "bad request: id must be an integer or a string"),
        (b'{"op": "status", "id": true}\n', "bad request: id must be an integer or a string"),
    ],
)
async def test_bad_line_is_a_usage_error_and_closes(
    control: tuple[ControlServer, StubNode], line: bytes, error: str
) -> None:
    server, _ = control
    c = await Client.open(server)
    assert (await c.call({"op": "status"}))["ok"]  # a good line first: the connection works
    c.writer.write(line)
    reply = await c.read()
    assert reply["ok"] is False and reply["kind"] == "usage" and "id" not in reply
    assert reply["error"].startswith(error), reply
    assert await c.closed()
    await c.aclose()


async def test_unknown_op_is_a_usage_error_and_keeps_the_connection(
    control: tuple[ControlServer, StubNode],
) -> None:
    server, _ = control
    c = await Client.open(server)
    reply = await c.call({"op": "nope"})
    assert reply == {"ok": False, "kind": "usage", "error": "unknown op 'nope'"}
    assert (await c.call({"op": "status"}))["ok"]
    await c.aclose()


async def test_client_past_the_cap_is_refused_at_once(
    control: tuple[ControlServer, StubNode],
) -> None:
    server, _ = control
    clients = [await Client.open(server) for _ in range(limits.CONTROL_MAX_CLIENTS)]
    for c in clients:  # each is being served (and counted) before the next one comes
        assert (await c.call({"op": "status"}))["ok"]
    assert server.clients == limits.CONTROL_MAX_CLIENTS
    extra = await Client.open(server)
    async with asyncio.timeout(WAIT):
        assert await extra.reader.read() == b""  # closed without a word
    await extra.aclose()
    for c in clients:  # the first 64 still work
        assert (await c.call({"op": "status"}))["ok"]
    await clients.pop().aclose()
    await eventually(lambda: server.clients == limits.CONTROL_MAX_CLIENTS - 1)
    again = await Client.open(server)  # a freed slot is usable
    assert (await again.call({"op": "status"}))["ok"]
    for c in [*clients, again]:
        await c.aclose()


# --- the write deadline ------------------------------------------------------------------------


@pytest.mark.parametrize("pipelined", [False, True])
async def test_client_that_never_reads_is_closed_and_blocks_no_one(
    control: tuple[ControlServer, StubNode], pipelined: bool
) -> None:
    server, node = control
    node.diag_text = "d" * (1 << 20)  # a 1 MiB reply: more than the socket buffers hold
    silent = await Client.open(server)
    silent.send(*({"op": "diag", **({"id": i} if pipelined else {})} for i in range(20)))
    other = await Client.open(server)
    for _ in range(3):  # served at once while the silent client's replies are stuck
        async with asyncio.timeout(2):
            assert (await other.call({"op": "status"}))["ok"]
    await eventually(lambda: server.clients == 1)  # the silent one is gone (write deadline)
    assert await silent.closed()
    await silent.aclose()
    reply = await other.call({"op": "diag"})  # large replies still reach a client that reads
    assert reply["ok"] and len(reply["text"]) == 1 << 20
    await other.aclose()


# --- pipelining ----------------------------------------------------------------------------------


async def test_requests_with_ids_run_concurrently_and_answer_out_of_order(
    control: tuple[ControlServer, StubNode],
) -> None:
    server, node = control
    gates = {t: asyncio.Event() for t in (b"a", b"b", b"c")}
    node.gates.update(gates)
    c = await Client.open(server)
    c.send(ping(text="a", id=1), ping(text="b", id=2), ping(text="c", id="three"))
    await node.until_active(3)  # all three outstanding at once
    assert (await c.call({"op": "status"}))["ok"]  # a request without id is served meanwhile
    gates[b"b"].set()
    first = await c.read()
    assert first["id"] == 2 and first["ok"] and first["from"] == "peer.os"
    gates[b"c"].set()
    gates[b"a"].set()
    assert {(await c.read())["id"], (await c.read())["id"]} == {1, "three"}
    assert node.max_active == 3
    await c.aclose()


async def test_duplicate_id_in_flight_is_refused(control: tuple[ControlServer, StubNode]) -> None:
    server, node = control
    gate = asyncio.Event()
    node.gates[b"slow"] = gate
    c = await Client.open(server)
    c.send(ping(text="slow", id=7), ping(text="slow", id=7))
    reply = await c.read()
    assert reply["kind"] == "usage" and "already in flight" in reply["error"] and "id" not in reply
    gate.set()
    reply = await c.read()  # the first one is still answered
    assert reply["id"] == 7 and reply["ok"]
    assert await c.closed()
    await c.aclose()


async def test_in_flight_requests_per_connection_are_capped(
    control: tuple[ControlServer, StubNode],
) -> None:
    server, node = control
    gate = asyncio.Event()
    node.gates[b"hold"] = gate
    n = limits.CONTROL_MAX_IN_FLIGHT
    c = await Client.open(server)
    c.send(*(ping(text="hold", id=i) for i in range(n + 1)))
    await node.until_active(n)
    other = await Client.open(server)  # the cap is per connection
    node.gates[b"free"] = asyncio.Event()
    node.gates[b"free"].set()
    assert (await other.call(ping(text="free", id=0)))["ok"]
    assert node.max_active == n + 1 and len(node.bodies) == n + 1  # c's last one not started
    gate.set()
    ids = {(await c.read())["id"] for _ in range(n + 1)}
    assert ids == set(range(n + 1))
    await c.aclose()
    await other.aclose()


async def test_pipeline_client_matches_replies(control: tuple[ControlServer, StubNode]) -> None:
    server, node = control
    gates = {t: asyncio.Event() for t in (b"x", b"y")}
    node.gates.update(gates)
    pipe = await ControlPipeline.connect(server.path.parent)
    try:
        tx = asyncio.create_task(pipe.call(ping(text="x"), timeout=WAIT))
        ty = asyncio.create_task(pipe.call(ping(text="y"), timeout=WAIT))
        await node.until_active(2)
        gates[b"y"].set()
        reply_y = await ty
        assert not tx.done()
        gates[b"x"].set()
        reply_x = await tx
        assert reply_x["ok"] and reply_y["ok"] and reply_x["id"] != reply_y["id"]
        # a reply that comes after its caller gave up does not disturb the others
        late = asyncio.Event()
        node.gates[b"late"] = late
        with pytest.raises(TimeoutError):
            await pipe.call(ping(text="late"), timeout=0.05)
        late.set()
        assert (await pipe.call({"op": "status"}, timeout=WAIT))["ok"]
    finally:
        await pipe.aclose()


async def test_pipeline_client_reports_a_refused_connection(
    control: tuple[ControlServer, StubNode],
) -> None:
    server, _ = control
    pipe = await ControlPipeline.connect(server.path.parent)
    try:
        with pytest.raises(ControlError, match="line too long"):
            await pipe.call({"op": "status", "pad": "x" * limits.CONTROL_MAX_LINE}, timeout=WAIT)
        with pytest.raises(ControlError):
            await pipe.call({"op": "status"}, timeout=WAIT)
    finally:
        await pipe.aclose()


# --- the ping op's body ----------------------------------------------------------------------


def test_ping_body_is_the_text_repeated_and_cut() -> None:
    assert ping_body(b"abc", 0) == b""
    assert ping_body(b"abc", 2) == b"ab"
    assert ping_body(b"abc", 10) == b"abcabcabca"
    assert len(ping_body(b"ping", 10_000_000)) == 10_000_000
    with pytest.raises(ValueError):
        ping_body(b"", 1)
    assert encoded_body_size(b"ping") == 4
    assert encoded_body_size("é".encode()) == 4  # two bytes from 0x80: two bytes each


async def test_ping_op_builds_the_body(control: tuple[ControlServer, StubNode]) -> None:
    server, node = control
    c = await Client.open(server)
    for req, body in [
        (ping(), b"ping"),
        (ping(text="hi"), b"hi"),
        (ping(text="abc", size=10), b"abcabcabca"),
        (ping(size=0), b""),
        (ping(text="", size=0), b""),
        (ping(size=limits.CONTROL_PING_MAX_BODY), b"ping" * 2_500_000),
    ]:
        reply = await c.call(req)
        assert reply["ok"], (req, reply)
        assert node.bodies.pop() == body
    await c.aclose()


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (ping(size=-1), "size must be an integer in 0..10000000"),
        (ping(size=limits.CONTROL_PING_MAX_BODY + 1), "size must be an integer in 0..10000000"),
        (ping(size=True), "size must be an integer"),
        (ping(size=1.5), "size must be an integer"),
        (ping(size="5"), "size must be an integer"),
        (ping(text="", size=5), "text must not be empty"),
        (ping(text=5), "text must be a string"),
        (ping(text="é", size=6_000_000), "a 6000000-byte body of this text encodes to 12000000"),
        (ping(target="nobody.os"), "nobody.os: not in HNS (stub registry)"),
        (ping(target="stub.os"), "stub.os: that is this node"),
    ],
)
async def test_ping_op_refuses_bad_bodies(
    control: tuple[ControlServer, StubNode], req: dict[str, Any], error: str
) -> None:
    server, node = control
    c = await Client.open(server)
    reply = await c.call(req)
    assert not reply["ok"] and reply["kind"] in ("usage", "lookup")
    assert reply["error"].startswith(error), reply
    assert node.bodies == []
    await c.aclose()


async def test_non_ascii_body_at_the_bound_is_sent(control: tuple[ControlServer, StubNode]) -> None:
    server, node = control
    c = await Client.open(server)
    reply = await c.call(ping(text="é", size=limits.CONTROL_PING_MAX_BODY // 2))
    assert reply["ok"], reply
    assert encoded_body_size(node.bodies.pop()) == limits.CONTROL_PING_MAX_BODY
    await c.aclose()


async def test_ping_bodies_in_flight_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "CONTROL_PING_BYTES", 100)
    node = StubNode()
    server = ControlServer(node, socket_path(tmp_path), lambda: None)  # type: ignore[arg-type]
    await server.start()
    try:
        gate = asyncio.Event()
        node.gates[b"x" * 40] = gate
        c = await Client.open(server)
        c.send(*(ping(text="x", size=40, id=i) for i in range(3)))
        await node.until_active(2)  # 80 bytes held; the third (120 > 100) waits
        waiting = await c.call(ping(text="x", size=40, timeout=0.05))
        assert waiting["kind"] == "timeout" and "bodies in flight" in waiting["error"]
        assert len(node.bodies) == 2
        gate.set()
        assert {(await c.read())["id"] for _ in range(3)} == {0, 1, 2}
        assert node.max_active == 2 and len(node.bodies) == 3
        await c.aclose()
    finally:
        await server.aclose()


async def run_op(server: ControlServer, req: dict[str, Any]) -> dict[str, Any]:
    c = await Client.open(server)
    try:
        return await c.call(req)
    finally:
        await c.aclose()


async def test_stop_op_calls_back(tmp_path: Path) -> None:
    stopped = asyncio.Event()
    server = ControlServer(StubNode(), socket_path(tmp_path), stopped.set)  # type: ignore[arg-type]
    await server.start()
    try:
        assert (await run_op(server, {"op": "stop"}))["ok"]
        async with asyncio.timeout(WAIT):
            await stopped.wait()
    finally:
        await server.aclose()
    assert not server.path.exists()
