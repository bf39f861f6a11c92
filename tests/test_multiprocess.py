"""Several real ``hnet node`` processes on loopback: pings over TCP and WS, offline peers,
hostile peers, clean shutdown. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from hnet import keys
from hnet.core.wire import Address, KernelMessage, Request, encode_kernel_message
from hnet.testing.cluster import Cluster, free_port
from hns import (
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    LogCache,
    LogMeta,
    LogsMetadata,
    Registry,
    namehash,
    note_log,
    write_log_cache,
)
from hns.cacher import timestamp_str

from .attacker import RawTcpPeer, claim_length, register_attacker
from .conftest import run_cli

PING_LINE = re.compile(r"^ack from (\S+) via (quic|tcp|ws): seq=(\d+) time=([0-9.]+) ms$", re.M)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("via", ["quic", "tcp", "ws"])
def test_cli_ping_between_nodes(cluster: Cluster, via: str) -> None:
    for src, dst in (("alice.os", "bob.os"), ("bob.os", "carol.os"), ("carol.os", "alice.os")):
        res = run_cli(
            "ping", dst, "-c", "2", "-i", "0.05", "--via", via, home=cluster.nodes[src].home
        )
        assert res.returncode == 0, res.stdout + res.stderr
        lines = PING_LINE.findall(res.stdout)
        assert [(n, v, s) for n, v, s, _ in lines] == [(dst, via, "1"), (dst, via, "2")]
        assert "2 sent, 2 received, 0% loss" in res.stdout
        assert "rtt min/avg/max/mdev = " in res.stdout


def test_peers_and_diag_show_sessions(cluster: Cluster) -> None:
    home = cluster.nodes["alice.os"].home
    assert run_cli("ping", "bob.os", "-c", "1", home=home).returncode == 0
    res = run_cli("peers", "--json", home=home)
    assert res.returncode == 0, res.stderr
    assert '"name": "bob.os"' in res.stdout
    table = run_cli("peers", home=home)
    assert table.returncode == 0 and table.stdout.startswith("PEER")
    assert any(line.startswith("bob.os ") for line in table.stdout.splitlines())
    diag = run_cli("diag", home=home)
    assert diag.returncode == 0 and "node alice.os" in diag.stdout and "bob.os" in diag.stdout


def test_ping_unknown_name_is_a_lookup_error(cluster: Cluster) -> None:
    res = run_cli("ping", "nobody.os", "-c", "1", home=cluster.nodes["alice.os"].home)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("nobody.os: not in HNS (registry ")
    assert "Traceback" not in res.stderr


def test_ping_without_local_node(tmp_path: Path) -> None:
    res = run_cli("ping", "bob.os", "-c", "1", home=tmp_path)
    assert res.returncode == 2
    assert "no node running" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_ping_down_node_is_offline_within_5s(cluster: Cluster) -> None:
    key = keys.generate()
    Registry(cluster.registry).register(
        "down.os",
        keys.public_bytes(key),
        ip="127.0.0.1",
        ports={"tcp": free_port(), "ws": free_port()},
    )
    t0 = time.monotonic()
    res = run_cli("ping", "down.os", "-c", "1", home=cluster.nodes["alice.os"].home)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert "seq=1 Offline:" in res.stdout and "connection refused" in res.stdout
    assert "1 sent, 0 received, 100% loss" in res.stdout
    assert elapsed < 8  # about 5 s at most (process start-up included)


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


def _alice(cluster: Cluster) -> tuple[str, int, int]:
    n = cluster.nodes["alice.os"]
    return "127.0.0.1", n.ports["tcp"], n.ports["ws"]


async def _still_serves(cluster: Cluster) -> None:
    reply = await cluster.call("bob.os", {"op": "ping", "target": "alice.os", "via": "tcp"})
    assert reply["ok"], reply


def test_hostile_tcp_peers_are_cut_off_memory_flat(cluster: Cluster) -> None:
    async def main() -> None:
        host, port, _ = _alice(cluster)
        mkey = register_attacker(cluster.registry)
        pid = cluster.nodes["alice.os"].process.pid
        await _still_serves(cluster)
        before = rss_kib(pid)
        for round_ in range(20):
            # 1. an authenticated peer claiming a 4 GiB message
            p = await RawTcpPeer.connect(
                host,
                port,
                our_name="mallory.os",
                key=mkey,
                target="alice.os",
                registry_path=cluster.registry,
            )
            await p.send_raw(claim_length(0xFFFF_FFFF) + b"\x00" * 64)
            assert await p.closed_by_peer(), "4 GiB claim not cut off"
            p.close()
            # 2. garbage instead of a handshake
            r, w = await asyncio.open_connection(host, port)
            w.write(os.urandom(4096))
            await w.drain()
            assert await _closed(r), "garbage handshake not cut off"
            w.close()
            # 3. garbage after a good handshake
            p = await RawTcpPeer.connect(
                host,
                port,
                our_name="mallory.os",
                key=mkey,
                target="alice.os",
                registry_path=cluster.registry,
            )
            await p.send_raw(claim_length(100) + os.urandom(200))
            assert await p.closed_by_peer()
            p.close()
            if round_ % 5 == 0:
                await _still_serves(cluster)
        await _still_serves(cluster)
        after = rss_kib(pid)
        assert after - before < 30 * 1024, f"RSS grew {before} -> {after} KiB"

    asyncio.run(main())


def test_spoofed_source_is_cut_off(cluster: Cluster) -> None:
    async def main() -> None:
        host, port, _ = _alice(cluster)
        mkey = register_attacker(cluster.registry, "mallory2.os")
        p = await RawTcpPeer.connect(
            host,
            port,
            our_name="mallory2.os",
            key=mkey,
            target="alice.os",
            registry_path=cluster.registry,
        )
        # an honest hello first: answered
        honest = KernelMessage(
            id=1,
            source=Address.parse("mallory2.os@chat:chat:template.os"),
            target=Address.net("alice.os"),
            rsvp=None,
            message=Request(False, 5, b"hi", None, ()),
            lazy_load_blob=None,
        )
        await p.send_message(encode_kernel_message(honest))
        replies = await p.recv_messages()
        assert replies, "no ack"
        spoofed = KernelMessage(
            id=2,
            source=Address.parse("bob.os@chat:chat:template.os"),
            target=Address.net("alice.os"),
            rsvp=None,
            message=Request(False, 5, b"hi", None, ()),
            lazy_load_blob=None,
        )
        await p.send_message(encode_kernel_message(spoofed))
        assert await p.closed_by_peer(), "spoofed source not cut off"
        p.close()
        # a source process that is not hypermap-safe (upper case, underscore)
        p = await RawTcpPeer.connect(
            host,
            port,
            our_name="mallory2.os",
            key=mkey,
            target="alice.os",
            registry_path=cluster.registry,
        )
        unsafe = KernelMessage(
            id=3,
            source=Address.parse("mallory2.os@Evil_proc:chat:template.os"),
            target=Address.net("alice.os"),
            rsvp=None,
            message=Request(False, 5, b"hi", None, ()),
            lazy_load_blob=None,
        )
        assert not unsafe.source.process.is_hypermap_safe()
        await p.send_message(encode_kernel_message(unsafe))
        assert await p.closed_by_peer(), "non-hypermap-safe source not cut off"
        p.close()
        await _still_serves(cluster)

    asyncio.run(main())


def test_hostile_ws_peers_are_cut_off(cluster: Cluster) -> None:
    async def main() -> None:
        host, _, ws_port = _alice(cluster)
        # a text frame instead of a handshake
        async with ws_connect(f"ws://{host}:{ws_port}") as ws:
            await ws.send("hello")
            async with asyncio.timeout(6):
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
        # an oversized binary message
        async with ws_connect(f"ws://{host}:{ws_port}", max_size=None) as ws:
            await ws.send(b"\x00" * 200_000)
            async with asyncio.timeout(6):
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
        await _still_serves(cluster)

    asyncio.run(main())


def test_restarted_peer_gets_a_new_session(cluster: Cluster) -> None:
    home = cluster.nodes["alice.os"].home
    assert run_cli("ping", "carol.os", "-c", "1", "--via", "tcp", home=home).returncode == 0
    assert cluster.stop("carol.os") == 0
    cluster.start("carol.os")
    asyncio.run(cluster.wait_ready("carol.os"))
    # carol's new handshake to alice replaces the old session; and alice redials when needed.
    res = run_cli(
        "ping", "alice.os", "-c", "1", "--via", "tcp", home=cluster.nodes["carol.os"].home
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("ping", "carol.os", "-c", "2", "-i", "0.1", "--via", "tcp", home=home)
    assert res.returncode == 0, res.stdout + res.stderr


def _append_notes(registry: Path, name: str, notes: list[tuple[str, bytes]]) -> None:
    """Write notes as one new block, as the chain would (our CLI refuses a portless node)."""
    last = Registry(registry).load().last_block or HYPERMAP_FIRST_BLOCK
    block = last + 1
    logs = [
        note_log(namehash(name), label, value, LogMeta(block, b"\1" * 32, b"\2" * 32, 0, i))
        for i, (label, value) in enumerate(notes)
    ]
    md = LogsMetadata(str(HYPERMAP_CHAIN_ID), str(block), str(block), timestamp_str(), "t", "")
    write_log_cache(registry, LogCache(metadata=md, logs=logs))


def test_node_refuses_to_start(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    n = c.add("zed.os")
    other = tmp_path / "other.key"
    keys.write_keyfile(other, keys.generate())
    res = run_cli(
        "node",
        "--name",
        "zed.os",
        "--key",
        str(other),
        "--registry",
        str(c.registry),
        "--home",
        str(n.home),
        timeout=30,
    )
    assert res.returncode == 1 and "does not match" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # a port taken
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", n.ports["tcp"]))
        s.listen()
        res = run_cli(
            "node",
            "--name",
            "zed.os",
            "--key",
            str(n.keyfile),
            "--registry",
            str(c.registry),
            "--home",
            str(n.home),
            timeout=30,
        )
    assert res.returncode == 1 and "is taken" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # no port for any transport
    _append_notes(
        c.registry,
        "zed.os",
        [("~tcp-port", b"\0\0"), ("~ws-port", b"\0\0"), ("~quic-port", b"\0\0")],
    )
    res = run_cli(
        "node",
        "--name",
        "zed.os",
        "--key",
        str(n.keyfile),
        "--registry",
        str(c.registry),
        "--home",
        str(n.home),
        timeout=30,
    )
    assert res.returncode == 1 and "no port" in res.stderr
    # unknown name
    res = run_cli(
        "node",
        "--name",
        "nope.os",
        "--key",
        str(n.keyfile),
        "--registry",
        str(c.registry),
        "--home",
        str(n.home),
        timeout=30,
    )
    assert res.returncode == 1 and "nope.os: not in HNS" in res.stderr


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.add("x.os")
    c.start("x.os")
    asyncio.run(c.wait_ready("x.os"))
    sock = c.nodes["x.os"].home / "control.sock"
    assert sock.exists() and (sock.stat().st_mode & 0o777) == 0o600
    assert c.stop("x.os") == 0
    assert not sock.exists()
    assert "node down" in c.nodes["x.os"].log_text()


def test_default_transport_between_hnet_nodes_is_quic(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    for n in ("fred.os", "gina.os"):
        c.add(n)
        c.start(n)

    async def main() -> None:
        async with asyncio.timeout(30):
            await asyncio.gather(c.wait_ready("fred.os"), c.wait_ready("gina.os"))
        # no session yet: the dial races QUIC against TCP and ends on QUIC
        reply = await c.call("fred.os", {"op": "ping", "target": "gina.os", "via": None})
        assert reply["ok"], reply
        async with asyncio.timeout(10):
            while True:
                peers = (await c.call("fred.os", {"op": "peers"}))["peers"]
                if any(p["name"] == "gina.os" and p["transport"] == "quic" for p in peers):
                    break
                await asyncio.sleep(0.05)
        reply = await c.call("fred.os", {"op": "ping", "target": "gina.os", "via": None})
        assert reply["ok"] and reply["via"] == "quic", reply

    try:
        asyncio.run(main())
    finally:
        c.stop_all()


def test_quic_blocked_falls_back_to_tcp(tmp_path: Path) -> None:
    """dave's record points QUIC at a UDP socket that swallows every datagram (filtered UDP):
    erin still reaches dave, over TCP, well within the 5 s budget."""
    import socket as socketmod

    c = Cluster(tmp_path)
    c.add("dave.os")
    c.add("erin.os")
    blackhole = socketmod.socket(socketmod.AF_INET, socketmod.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    try:
        for n in ("dave.os", "erin.os"):
            c.start(n)

        async def main() -> None:
            async with asyncio.timeout(30):
                await asyncio.gather(c.wait_ready("dave.os"), c.wait_ready("erin.os"))
            dave = c.nodes["dave.os"]
            key = keys.public_bytes(keys.read_keyfile(dave.keyfile))
            Registry(c.registry).register(
                "dave.os",
                key,
                ip="127.0.0.1",
                ports={**dave.ports, "quic": blackhole.getsockname()[1]},
            )
            blackhole_port = blackhole.getsockname()[1]
            async with asyncio.timeout(10):  # until erin's PKI has dave's new record
                while True:
                    rec = await c.call("erin.os", {"op": "lookup", "name": "dave.os"})
                    if rec["ok"] and rec["ports"].get("quic") == blackhole_port:
                        break
                    await asyncio.sleep(0.05)
            t0 = time.monotonic()
            reply = await c.call("erin.os", {"op": "ping", "target": "dave.os", "via": None})
            elapsed = time.monotonic() - t0
            assert reply["ok"] and reply["via"] == "tcp", reply
            assert elapsed < 5.0, elapsed
            # QUIC forced: Offline after the handshake deadline, with the reason
            reply = await c.call(
                "erin.os", {"op": "ping", "target": "dave.os", "via": "quic", "timeout": 8}
            )
            assert not reply["ok"] and reply["kind"] == "offline", reply
            assert "quic" in reply["error"] and "timed out" in reply["error"]

        asyncio.run(main())
    finally:
        blackhole.close()
        c.stop_all()
