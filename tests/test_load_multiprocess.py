"""Load through real ``hnet node`` processes, driven as a user would with ``hnet ping``.

- Two nodes flooding each other at once (16 hellos of 5 MB each way, 8 in flight) get every
  ack, over TCP, WebSocket and QUIC: the old layer deadlocked here over TCP and WS.
- Pings of 4 MB to a peer that completes the handshake and then never reads all fail within
  their deadline, the node's memory stays bounded, and it keeps answering another node.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from hnet import keys
from hnet.core.handshake import PeerHandshake
from hnet.net.pki import Pki
from hnet.testing.cluster import LOOPBACK, Cluster, free_port
from hnet.transport import tcp as tcp_transport
from hnet.transport.session import Session
from hns import Registry

pytestmark = pytest.mark.timeout(240)


async def ping(home: Path, *args: str, timeout: float) -> tuple[int, str]:
    """``hnet ping ARGS`` from ``home``; (exit status, stdout)."""
    env = dict(os.environ, HNET_HOME=str(home))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hnet",
        "ping",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"hnet ping {' '.join(args)} did not finish in {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("transport", ["tcp", "ws", "quic"])
def test_two_nodes_flooding_each_other(tmp_path: Path, transport: str) -> None:
    c = Cluster(tmp_path)
    c.add("x.os", (transport,))
    c.add("y.os", (transport,))
    c.start("x.os")
    c.start("y.os")
    try:

        async def main() -> None:
            async with asyncio.timeout(30):
                await asyncio.gather(c.wait_ready("x.os"), c.wait_ready("y.os"))
            # exactly the command, with ping's defaults for the rest (-i 1, -W 5)
            flood = ("-c", "16", "-l", "8", "-s", "5000000")
            (rx, outx), (ry, outy) = await asyncio.gather(
                ping(c.nodes["x.os"].home, "y.os", *flood, timeout=120),
                ping(c.nodes["y.os"].home, "x.os", *flood, timeout=120),
            )
            for rc, out in ((rx, outx), (ry, outy)):
                assert rc == 0, out
                assert "16 sent, 16 received, 0% loss" in out, out
                assert out.count(f"via {transport}: seq=") == 16, out

        asyncio.run(main())
    finally:
        c.stop_all()


def test_pings_to_a_peer_that_stops_reading(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.add("a.os", ("tcp",))
    c.add("b.os", ("tcp",))
    registry = Registry(c.registry)
    stall_key = keys.generate()
    stall_port = free_port()
    registry.register(
        "stall.os", keys.public_bytes(stall_key), ip=LOOPBACK, ports={"tcp": stall_port}
    )
    c.start("a.os")
    c.start("b.os")
    try:

        async def main() -> None:
            pki = Pki.from_registry(registry)
            await pki.start()
            held: list[Session] = []

            async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                hs = PeerHandshake(
                    initiator=False,
                    our_name="stall.os",
                    signing_key=stall_key,
                    lookup=pki.networking_key,
                )
                # handshake done, the session never started: it never reads again
                held.append(await tcp_transport.accept(r, w, hs))

            server = await asyncio.start_server(on_conn, LOOPBACK, stall_port)
            try:
                async with asyncio.timeout(30):
                    await asyncio.gather(c.wait_ready("a.os"), c.wait_ready("b.os"))
                a = c.nodes["a.os"]
                assert a.process is not None
                # warm up a's allocations with a few ordinary pings before measuring
                rc, out = await ping(a.home, "b.os", "-c", "3", "-i", "0", timeout=30)
                assert rc == 0, out
                before = rss_bytes(a.process.pid)
                stalled = ping(
                    a.home,
                    "stall.os",
                    "-c",
                    "30",
                    "-l",
                    "6",
                    "-s",
                    "4000000",
                    "-i",
                    "0",
                    "-W",
                    "2",
                    timeout=120,
                )
                meanwhile = ping(
                    c.nodes["b.os"].home,
                    "a.os",
                    "-c",
                    "20",
                    "-i",
                    "0.1",
                    "-W",
                    "5",
                    timeout=60,
                )
                (rs, outs), (rb, outb) = await asyncio.gather(stalled, meanwhile)
                after = rss_bytes(a.process.pid)
                assert rs == 1, outs
                assert "30 sent, 0 received" in outs, outs
                assert outs.count("Timeout") == 30, outs
                assert rb == 0 and "20 received" in outb, outb
                growth = after - before
                assert growth < 200 * 1024 * 1024, f"a.os grew by {growth / 1e6:.0f} MB"
            finally:
                for s in held:
                    s.abort("test done")
                server.close()
                await pki.aclose()

        asyncio.run(main())
    finally:
        c.stop_all()
