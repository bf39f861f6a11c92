"""The pending-handshake gate: one bound for the node, a share per source, and eviction of
the oldest pending handshake of the heaviest source when every slot is taken."""

from __future__ import annotations

from hnet.transport.gate import HandshakeGate, Slot, source_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _enter(gate: HandshakeGate, host: str, evicted: list[str] | None = None) -> Slot | None:
    slot = gate.enter(host)
    if slot is not None and evicted is not None:
        slot.on_evict = lambda: evicted.append(host)
    return slot


def test_one_source_takes_only_its_share_and_others_still_enter() -> None:
    clock = Clock()
    gate = HandshakeGate(limit=8, per_source=3, clock=clock)
    slots = [_enter(gate, "10.0.0.1") for _ in range(4)]
    assert [s is not None for s in slots] == [True, True, True, False]
    assert gate.refused == 1 and gate.refused_source == 1
    held = [s for s in slots if s is not None]
    held += [s for s in (_enter(gate, "10.0.0.2") for _ in range(3)) if s is not None]
    held += [s for s in (_enter(gate, "10.0.0.3") for _ in range(2)) if s is not None]
    assert len(held) == 8
    assert _enter(gate, "10.0.0.4") is None  # the node-wide bound, every slot young
    assert gate.refused == 2 and gate.refused_source == 1 and gate.evicted == 0
    held[0].leave()
    held[0].leave()  # idempotent
    assert gate.pending == 7
    again = _enter(gate, "10.0.0.1")
    assert again is not None  # its share again, and a node slot
    for s in [*held, again]:
        s.leave()
    assert gate.pending == 0 and gate.sources == 0


def test_full_gate_evicts_the_oldest_of_the_heaviest_source() -> None:
    clock = Clock()
    gate = HandshakeGate(limit=6, per_source=4, evict_min_age=1.0, clock=clock)
    cut: list[str] = []
    a = [_enter(gate, "10.0.0.1", cut) for _ in range(4)]
    clock.now += 0.5
    b = [_enter(gate, "10.0.0.2", cut) for _ in range(2)]
    assert gate.pending == 6 and all(a) and all(b)
    assert _enter(gate, "10.0.0.3", cut) is None  # full, the oldest only 0.5 s old
    clock.now += 0.6  # a's are 1.1 s old, b's 0.6 s
    newcomer = _enter(gate, "10.0.0.3", cut)
    assert newcomer is not None and cut == ["10.0.0.1"] and gate.evicted == 1
    assert a[0] is not None and not a[0].active  # the oldest of the heaviest source
    assert gate.pending == 6
    a[0].leave()  # the evicted handshake's own cleanup: a no-op
    assert gate.pending == 6
    # a source as heavy as the victims would become is never preferred over a lighter one
    clock.now += 5
    c = _enter(gate, "10.0.0.3", cut)  # 10.0.0.3 would hold 2: evicts from 10.0.0.1 (3)
    assert c is not None and cut == ["10.0.0.1"] * 2


def test_many_sources_one_slot_each_cannot_lock_newcomers_out() -> None:
    """The multi-source slowloris: every source within its share, the gate full."""
    clock = Clock()
    gate = HandshakeGate(limit=16, per_source=4, evict_min_age=1.0, clock=clock)
    cut: list[str] = []
    attackers = [_enter(gate, f"10.1.0.{i}", cut) for i in range(16)]
    assert all(attackers) and gate.pending == 16
    clock.now += 2
    newcomer = _enter(gate, "10.9.9.9", cut)
    assert newcomer is not None and cut == ["10.1.0.0"]  # the oldest of equals
    # the newcomer (young) is not the next victim: the older attackers are
    clock.now += 1.5
    assert _enter(gate, "10.9.9.8", cut) is not None and cut[-1] == "10.1.0.1"
    assert newcomer.active


def test_a_source_at_its_share_is_refused_even_when_others_are_old() -> None:
    clock = Clock()
    gate = HandshakeGate(limit=4, per_source=2, clock=clock)
    assert all(_enter(gate, h) for h in ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"])
    clock.now += 10
    assert _enter(gate, "10.0.0.1") is None and gate.refused_source == 1
    assert gate.evicted == 0


def test_ipv6_counts_per_64_and_mapped_v4_as_v4() -> None:
    assert (
        source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key(None) == "?" and source_key("not-an-ip") == "not-an-ip"
    gate = HandshakeGate(limit=10, per_source=2)
    assert gate.enter("2001:db8::1") and gate.enter("2001:db8::2")
    assert gate.enter("2001:db8::3") is None
    assert gate.enter("2001:db9::1")
