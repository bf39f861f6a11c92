"""The pending-handshake gate: one bound for the node, and a share per source."""

from __future__ import annotations

from hnet.transport.gate import HandshakeGate, source_key


def test_one_source_takes_only_its_share_and_others_still_enter() -> None:
    gate = HandshakeGate(limit=8, per_source=3)
    assert [gate.try_enter("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert gate.refused == 1 and gate.refused_source == 1
    assert all(gate.try_enter("10.0.0.2") for _ in range(3))
    assert gate.try_enter("10.0.0.3") and gate.try_enter("10.0.0.3")
    assert not gate.try_enter("10.0.0.4")  # the node-wide bound: 8 taken
    assert gate.refused == 2 and gate.refused_source == 1
    gate.leave("10.0.0.1")
    assert gate.try_enter("10.0.0.1")  # its share again, and a node slot
    for host in ["10.0.0.1"] * 3 + ["10.0.0.2"] * 3 + ["10.0.0.3"] * 2:
        gate.leave(host)
    assert gate.pending == 0 and gate.sources == 0


def test_ipv6_counts_per_64_and_mapped_v4_as_v4() -> None:
    assert (
        source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key(None) == "?" and source_key("not-an-ip") == "not-an-ip"
    gate = HandshakeGate(limit=10, per_source=2)
    assert gate.try_enter("2001:db8::1") and gate.try_enter("2001:db8::2")
    assert not gate.try_enter("2001:db8::3")
    assert gate.try_enter("2001:db9::1")
