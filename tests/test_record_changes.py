"""Sessions follow HNS record changes (``PeerTable.record_changed``, via the PKI's
subscribers): a peer's new key aborts the sessions made under the old one; its new address,
ports or routers retire the current session and a dial on the new record takes over. In one
event loop over real loopback sockets; changes come as local HnsUpdates (the same path a
chain update takes: a PkiChange)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hnet import keys
from hnet.core.wire import HnsUpdate, SendErrorKind
from hnet.net.requests import SendFailed
from hnet.testing.cluster import LOOPBACK, free_port
from hnet.testing.harness import Net, hello, until
from hnet.transport.session import Session


@pytest.fixture
async def net(tmp_path: Path):
    n = Net(tmp_path)
    try:
        yield n
    finally:
        await n.close()


def update(name: str, key_hex: str, port: int) -> HnsUpdate:
    return HnsUpdate(
        name=name, public_key=key_hex, ips=(LOOPBACK,), ports={"tcp": port}, routers=()
    )


async def test_a_new_key_aborts_the_sessions_and_the_next_dial_fails(net: Net) -> None:
    a = await net.node("a.os", transports=("tcp",))
    b = await net.node("b.os", transports=("tcp",))
    await hello(a, "b.os", via="tcp")
    session = a.peers.session("b.os")
    assert isinstance(session, Session) and not session.closed
    other = keys.public_bytes(keys.generate()).hex()
    a.pki.ingest(update("b.os", other, b.listening["tcp"][1]))
    assert session.closed and "networking key changed" in (session.close_reason or "")
    with pytest.raises(SendFailed) as e:
        await hello(a, "b.os", via="tcp", timeout=3)
    assert e.value.kind is SendErrorKind.OFFLINE  # b proves its real key: the dial fails
    # Back to the real key: a dials again and reaches b.
    a.pki.ingest(update("b.os", keys.public_bytes(net.keys["b.os"]).hex(), b.listening["tcp"][1]))
    await hello(a, "b.os", via="tcp")


async def test_new_routing_retires_the_session_and_redials(net: Net) -> None:
    net.register("a.os", ("tcp",))
    net.register("b.os", ("tcp",))  # so an update with only its tcp port is no change
    a = await net.node("a.os", transports=("tcp",))
    b = await net.node("b.os", transports=("tcp",))
    await hello(a, "b.os", via="tcp")
    first = a.peers.session("b.os")
    assert first is not None
    real_key = keys.public_bytes(net.keys["b.os"]).hex()
    port = b.listening["tcp"][1]
    # The same port again: not a change, nothing happens.
    a.pki.ingest(update("b.os", real_key, port))
    assert a.peers.session("b.os") is first and not first.retired
    # A port nothing listens on: the session is retired, the next hello dials it and fails.
    a.pki.ingest(update("b.os", real_key, free_port()))
    assert first.retired and not first.closed  # read for its grace period, not cut
    with pytest.raises(SendFailed):
        await hello(a, "b.os", via="tcp", timeout=3)
    # b's real port: a new session carries the hellos.
    a.pki.ingest(update("b.os", real_key, port))
    await hello(a, "b.os", via="tcp")
    second = a.peers.session("b.os")
    assert second is not None and second is not first
    await until(lambda: first.closed, timeout=10, what="the retired session closes")
