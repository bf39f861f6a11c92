"""Routed connections between real ``hnet node`` processes on loopback.

alice.os and bob.os are direct; router.os is direct and routes (``--max-passthroughs``);
carol.os is indirect behind router.os; lone.os is indirect behind deadrouter.os, which is in
HNS but never started. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from hnet import keys
from hnet.core import relay as request
from hnet.core.framing import encode_handshake_frame
from hnet.core.handshake import PeerHandshake
from hnet.core.stream import MessageReceived
from hnet.core.wire import (
    Address,
    KernelMessage,
    Request,
    ResponseMessage,
    RoutingRequest,
    decode_kernel_message,
    encode_kernel_message,
    encode_routing_request,
)
from hnet.testing.cluster import Cluster
from hns import Registry

from .attacker import RawTcpPeer, register_attacker, tcp_handshake, ws_handshake
from .conftest import run_cli

PING_LINE = re.compile(r"^ack from (\S+) via (quic|tcp|ws): seq=(\d+) time=([0-9.]+) ms$", re.M)
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("routing"))
    c.add("alice.os")
    c.add("bob.os")
    c.add("router.os", args=("--max-passthroughs", "16"))
    c.add("deadrouter.os")  # in HNS, never started
    c.add("carol.os", routers=("router.os",), args=("--no-share-address",))  # stays routed
    c.add("lone.os", routers=("deadrouter.os",))
    running = ("alice.os", "bob.os", "router.os", "carol.os", "lone.os")
    for n in running:
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.wait_ready(n) for n in running))
            await carol_routed(c)

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


async def carol_routed(c: Cluster, timeout: float = 20.0) -> None:
    """Until router.os holds carol's session opened with proxy_request."""
    async with asyncio.timeout(timeout):
        while True:
            peers = (await c.call("router.os", {"op": "peers"}))["peers"]
            if any(p["name"] == "carol.os" and p["routing_for"] for p in peers):
                return
            await asyncio.sleep(0.05)


def _key(c: Cluster, name: str) -> Ed25519PrivateKey:
    return keys.read_keyfile(c.nodes[name].keyfile)


def _lookup(c: Cluster):  # type: ignore[no-untyped-def]
    registry = Registry(c.registry)

    def lookup(name: str) -> bytes | None:
        rec = registry.lookup(name)
        return rec.net_key_bytes if rec else None

    return lookup


def _hello(source: str, target: str) -> bytes:
    return encode_kernel_message(
        KernelMessage(
            id=7,
            source=Address.parse(f"{source}@chat:chat:template.os"),
            target=Address.net(target),
            rsvp=None,
            message=Request(False, 5, b"hi", None, ()),
            lazy_load_blob=None,
        )
    )


def _is_ack(data: bytes, sender: str) -> bool:
    km = decode_kernel_message(data)
    msg = km.message
    return (
        km.source.node == sender
        and isinstance(msg, ResponseMessage)
        and msg.response.body == b"ack"
    )


async def _closed(reader: asyncio.StreamReader, timeout: float = 6.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
        return True
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False


async def _ping(c: Cluster, src: str, dst: str, via: str | None = None, timeout: float = 10):  # type: ignore[no-untyped-def]
    req = {"op": "ping", "target": dst, "via": via, "timeout": timeout}
    return await c.call(src, req, timeout=timeout + 10)


# --- (a) a direct node and an indirect one, both ways --------------------------------------------


@pytest.mark.parametrize("via", [None, "tcp", "ws"])
def test_ping_indirect_node_through_its_router(rc: Cluster, via: str | None) -> None:
    args = ["--via", via] if via else []
    res = run_cli(
        "ping", "carol.os", "-c", "2", "-i", "0.05", *args, home=rc.nodes["alice.os"].home
    )
    assert res.returncode == 0, res.stdout + res.stderr
    lines = PING_LINE.findall(res.stdout)
    assert [(n, s) for n, _v, s, _ in lines] == [("carol.os", "1"), ("carol.os", "2")]
    # without --via a circuit (QUIC) and the passthrough race: either may carry the pings
    assert all(v == via if via else v in ("quic", "tcp", "ws") for _n, v, _s, _t in lines)
    # and back
    res = run_cli("ping", "alice.os", "-c", "1", home=rc.nodes["carol.os"].home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert PING_LINE.search(res.stdout)


def test_routing_shows_in_peers_and_diag(rc: Cluster) -> None:
    async def main() -> None:
        assert (await _ping(rc, "alice.os", "carol.os"))["ok"]
        alice = {p["name"]: p for p in (await rc.call("alice.os", {"op": "peers"}))["peers"]}
        assert alice["carol.os"]["router"] == "router.os"
        diag = (await rc.call("router.os", {"op": "diag"}))["text"]
        assert "routing for: carol.os" in diag and "passthroughs (16 max)" in diag
        diag = (await rc.call("carol.os", {"op": "diag"}))["text"]
        assert "listening: nowhere" in diag and "connected: router.os" in diag

    asyncio.run(main())


def test_ping_indirect_node_over_quic_through_its_router(rc: Cluster) -> None:
    """A circuit (routed QUIC, docs/quic.md §11): ``hnet ping --via quic`` through router.os,
    which carol.os keeps a QUIC connection to; ``hnet peers --json`` names the router."""
    res = run_cli(
        "ping", "carol.os", "-c", "2", "-i", "0.05", "--via", "quic",
        home=rc.nodes["alice.os"].home,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    lines = PING_LINE.findall(res.stdout)
    assert [(n, v, s) for n, v, s, _ in lines] == [
        ("carol.os", "quic", "1"),
        ("carol.os", "quic", "2"),
    ]
    res = run_cli("peers", "--json", home=rc.nodes["alice.os"].home)
    assert res.returncode == 0, res.stdout + res.stderr
    peers = {p["name"]: p for p in json.loads(res.stdout)}
    assert peers["carol.os"]["router"] == "router.os"
    assert peers["carol.os"]["transport"] == "quic"
    # carol answers on the circuit too
    res = run_cli("peers", "--json", home=rc.nodes["carol.os"].home)
    peers = {p["name"]: p for p in json.loads(res.stdout)}
    assert peers["alice.os"]["router"] == "router.os"
    assert peers["router.os"]["transport"] == "quic"


# --- (b) a RoutingRequest for a direct target: the router dials it and pipes ----------------


def test_routing_request_to_a_direct_node_over_tcp(rc: Cluster) -> None:
    async def main() -> None:
        mkey = register_attacker(rc.registry, "mallory.os")
        router = rc.nodes["router.os"]
        reader, writer = await asyncio.open_connection(HOST, router.ports["tcp"])
        rr = request.encode("mallory.os", mkey, target="bob.os", router="router.os")
        hs = PeerHandshake(
            initiator=True,
            our_name="mallory.os",
            signing_key=mkey,
            lookup=_lookup(rc),
            expected_peer="bob.os",
        )
        async with asyncio.timeout(6):
            conn = await tcp_handshake(reader, writer, hs, routing_request=rr)
        peer = RawTcpPeer(reader, writer, conn)
        await peer.send_message(_hello("mallory.os", "bob.os"))
        replies = await peer.recv_messages()
        assert _is_ack(replies[0], "bob.os")
        peer.close()

    asyncio.run(main())


def test_routing_request_to_a_direct_node_over_ws(rc: Cluster) -> None:
    async def main() -> None:
        mkey = register_attacker(rc.registry, "mallory-ws.os")
        router = rc.nodes["router.os"]
        rr = request.encode("mallory-ws.os", mkey, target="bob.os", router="router.os")
        async with ws_connect(f"ws://{HOST}:{router.ports['ws']}") as ws:
            hs = PeerHandshake(
                initiator=True,
                our_name="mallory-ws.os",
                signing_key=mkey,
                lookup=_lookup(rc),
                expected_peer="bob.os",
            )
            async with asyncio.timeout(6):
                conn = await ws_handshake(ws, hs, routing_request=rr)
            conn.send_message(_hello("mallory-ws.os", "bob.os"))
            for chunk in conn.data_to_send():
                await ws.send(chunk)
            messages: list[bytes] = []
            async with asyncio.timeout(6):
                while not messages:
                    data = await ws.recv()
                    assert isinstance(data, bytes)
                    conn.receive_message(data)
                    while (ev := conn.next_event()) is not None:
                        if isinstance(ev, MessageReceived):
                            messages.append(ev.data)
            assert _is_ack(messages[0], "bob.os")

    asyncio.run(main())


# --- (c) refusals: the socket is closed, the router keeps serving ----------------------------


def test_bad_routing_requests_are_refused(rc: Cluster) -> None:
    async def main() -> None:
        mkey = register_attacker(rc.registry, "mallory2.os")
        port = rc.nodes["router.os"].ports["tcp"]
        good_sig = request.build("mallory2.os", mkey, target="carol.os", router="router.os")
        cases = {
            "bad signature": RoutingRequest(1, "mallory2.os", b"\x00" * 64, "carol.os"),
            "signed for another router": request.build(
                "mallory2.os", mkey, target="carol.os", router="alice.os"
            ),
            "unknown source": RoutingRequest(1, "nobody.os", good_sig.signature, "carol.os"),
            "unknown target": request.build(
                "mallory2.os", mkey, target="nobody.os", router="router.os"
            ),
            "source == target": request.build(
                "mallory2.os", mkey, target="mallory2.os", router="router.os"
            ),
            "version 2": RoutingRequest(2, "mallory2.os", good_sig.signature, "carol.os"),
        }
        frames = {k: encode_handshake_frame(encode_routing_request(v)) for k, v in cases.items()}
        frames["garbage"] = encode_handshake_frame(b"\xc1" * 100)
        for what, frame in frames.items():
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(frame)
            await writer.drain()
            assert await _closed(reader), f"{what}: not closed"
            writer.close()
        # over WS too
        async with ws_connect(f"ws://{HOST}:{rc.nodes['router.os'].ports['ws']}") as ws:
            await ws.send(encode_routing_request(cases["bad signature"]))
            async with asyncio.timeout(6):
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
        # a good request to a node that does not route (alice: max passthroughs 0)
        rr = request.encode("mallory2.os", mkey, target="carol.os", router="alice.os")
        reader, writer = await asyncio.open_connection(HOST, rc.nodes["alice.os"].ports["tcp"])
        writer.write(encode_handshake_frame(rr))
        await writer.drain()
        assert await _closed(reader), "non-router did not close"
        writer.close()
        # both keep serving
        assert (await _ping(rc, "alice.os", "carol.os"))["ok"]
        assert (await _ping(rc, "bob.os", "alice.os", via="tcp"))["ok"]
        diag = (await rc.call("router.os", {"op": "diag"}))["text"]
        refused = re.search(r"(\d+) refused", diag)
        assert refused is not None and int(refused[1]) >= 8, diag

    asyncio.run(main())


# --- (d) an indirect node whose routers are all down -----------------------------------------


def test_indirect_node_with_its_routers_down_is_offline(rc: Cluster) -> None:
    async def main() -> None:
        # The request's deadline is 10 s; Offline (not Timeout) shows the dial gave up first.
        reply = await _ping(rc, "alice.os", "lone.os", timeout=10)
        assert not reply["ok"] and reply["kind"] == "offline", reply
        assert "via deadrouter.os" in reply["error"] and "connection refused" in reply["error"]
        # lone.os itself stays up, retrying its router
        assert (await rc.call("lone.os", {"op": "status"}))["ok"]
        diag = (await rc.call("lone.os", {"op": "diag"}))["text"]
        assert "connected: none" in diag

    asyncio.run(main())
    res = run_cli("ping", "lone.os", "-c", "1", home=rc.nodes["bob.os"].home)
    assert res.returncode == 1 and "Offline" in res.stdout, res.stdout + res.stderr


# --- the indirect node follows its router's restart (keep last: it restarts router.os) -------


def test_indirect_node_reconnects_after_router_restart(rc: Cluster) -> None:
    assert rc.stop("router.os") == 0
    rc.start("router.os")

    async def main() -> None:
        await rc.wait_ready("router.os")
        await carol_routed(rc)  # carol redials every 4 s
        reply = await _ping(rc, "alice.os", "carol.os")
        assert reply["ok"], reply

    asyncio.run(main())
    log = Path(rc.nodes["carol.os"].log_path).read_text()
    assert "connected to router" in log
