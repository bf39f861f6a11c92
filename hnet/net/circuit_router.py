"""The router's side of circuits (docs/quic.md §11.4-11.7, §11.10): the asyncio adapter of
:class:`~hnet.core.circuit.table.CircuitTable`.

Control streams: a source's REQUEST is checked and admitted by the table, then offered to the
target over the QUIC connection the target opened to us with ``proxy_request``; the target's
answer goes back to the source. Relayed streams: each one a source or target opens on its hop
is paired with one we open on the other hop, with the same header; bytes and FINs are copied
both ways, never decrypted (we hold no key of the end-to-end session). The table's actions say
what to write; its deadline drives one loop timer.

Relay accounting: bytes are taken from one hop and handed to the other hop's QUIC stack at
once (``take`` then ``forwarded``), so the relay buffer itself never fills; what waits is in
QUIC's send buffers, bounded by the end-to-end credit (§11.8: 16 MiB per circuit session). Not
yet done: letting QUIC flow control hold a hop back by the table's ``room`` (§11.7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hnet.core.circuit.actions import (
    Action,
    Admitted,
    ExchangeAddresses,
    FinishControl,
    Release,
    SendAccept,
    SendClose,
    SendOffer,
    SendRefuse,
    StopRelay,
    Verdict,
)
from hnet.core.circuit.control import ControlRole
from hnet.core.circuit.errors import CircuitCode, CircuitStateError, Origin
from hnet.core.circuit.frames import (
    AcceptFrame,
    AddressFrame,
    CloseFrame,
    ControlFrame,
    OfferFrame,
    RefuseFrame,
    RequestFrame,
    StreamKind,
    seal_relay_header,
)
from hnet.core.circuit.table import CircuitTable
from hnet.core.quic.errors import QuicAppError
from hnet.log import get_logger
from hnet.transport.quic.circuit import ControlHalf
from hnet.transport.quic.transport import QuicSession

__all__ = ["CircuitRouter"]

log = get_logger("circuit-router")


@dataclass(eq=False)
class _Relay:
    """One relayed stream pair: opened by ``opener`` on ``a`` (stream ``a_sid``), mirrored by
    us on ``b`` (stream ``b_sid``)."""

    circuit_id: int
    opener: str
    number: int
    a: QuicSession
    a_sid: int
    b: QuicSession
    b_sid: int
    fin_fwd: bool = False  # the opener's half ended on b
    fin_back: bool = False  # the return half ended on a


@dataclass(eq=False)
class _Ends:
    """Our control halves of one circuit, by end name."""

    halves: dict[str, ControlHalf] = field(default_factory=dict)
    relays: set[_Relay] = field(default_factory=set)


class CircuitRouter:
    def __init__(
        self,
        table: CircuitTable,
        *,
        lookup: Callable[[str], bytes | None],
        target_hop: Callable[[str], QuicSession | None],
    ) -> None:
        self.table = table
        self._lookup = lookup
        self._target_hop = target_hop
        self._loop = asyncio.get_running_loop()
        self._circuits: dict[int, _Ends] = {}
        #: (hop, our control stream or theirs) -> (circuit id, end)
        self._controls: dict[tuple[QuicSession, int], tuple[int, str]] = {}
        #: (hop, relayed stream id) -> the pair it belongs to
        self._relays: dict[tuple[QuicSession, int], _Relay] = {}
        #: relayed streams we drop (closed circuits): read, FIN ours
        self._discard: set[tuple[QuicSession, int]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.stats = {"relayed_bytes": 0, "relayed_streams": 0}

    # --- control streams ----------------------------------------------------------------------

    def owns_control(self, hop: QuicSession, sid: int) -> bool:
        return (hop, sid) in self._controls

    def request_stream(
        self, hop: QuicSession, half: ControlHalf, frames: list[ControlFrame]
    ) -> None:
        """Frames on the source's half of a request stream (``half`` is new if not owned)."""
        key = (hop, half.sid)
        if key not in self._controls:
            first = frames[0] if frames else None
            if not isinstance(first, RequestFrame):
                return  # (the reader only lets a REQUEST come first)
            self._request(hop, half, first)
            frames = frames[1:]
        owner = self._controls.get(key)
        if owner is None:
            return  # refused: nothing follows but FIN, which the half has read
        cid, end = owner
        now = self._loop.time()
        for frame in frames:
            if isinstance(frame, CloseFrame):
                self._run(self.table.end_closed(cid, end, frame.code, frame.reason, now))
        if half.peer_ended:
            self._run(self.table.end_finished(cid, end, now))
        self._arm()

    def _request(self, hop: QuicSession, half: ControlHalf, frame: RequestFrame) -> None:
        req = frame.request
        target = self._target_hop(req.target)
        result = self.table.request(
            req,
            peer=hop.peer_name,
            source_key=self._lookup(req.source),
            target_connected=target is not None and target.core.can_open_circuit_stream(),
            now=self._loop.time(),
            wall=time.time(),
            flags=frame.flags,
        )
        if not isinstance(result, Admitted):
            log.info(
                "circuit refused", source=hop.peer_name, code=result.code.name, reason=result.reason
            )
            half.send(RefuseFrame(result.code, Origin.ROUTER, result.reason), fin=True)
            return
        cid = result.circuit_id
        self._circuits[cid] = _Ends({req.source: half})
        self._controls[(hop, half.sid)] = (cid, req.source)
        log.info("circuit admitted", circuit=cid, source=req.source, target=req.target)
        self._run(list(result.actions))
        self._arm()

    def offer_data(self, hop: QuicSession, sid: int, data: bytes, fin: bool) -> None:
        """Bytes of the target's half of an offer stream we opened (CircuitError if they
        break the framing or order: the caller closes the hop)."""
        owner = self._controls.get((hop, sid))
        if owner is None:
            return  # the circuit is gone: its late FIN
        ends = self._circuits.get(owner[0])
        half = ends.halves.get(owner[1]) if ends is not None else None
        if half is None:
            return
        self.offer_stream(hop, sid, half.feed(data, fin), fin)

    def offer_stream(
        self, hop: QuicSession, sid: int, frames: list[ControlFrame], fin: bool
    ) -> None:
        """Frames on the target's half of an offer stream we opened."""
        owner = self._controls.get((hop, sid))
        if owner is None:
            return
        cid, end = owner
        now = self._loop.time()
        for frame in frames:
            try:
                if isinstance(frame, AcceptFrame):
                    if frame.circuit_id != cid:
                        hop.violate(QuicAppError.PROTOCOL_VIOLATION, "ACCEPT for another circuit")
                        return
                    self._run(self.table.accepted(cid, frame.flags, now))
                elif isinstance(frame, RefuseFrame):
                    self._run(self.table.refused(cid, frame.code, frame.reason, now))
                elif isinstance(frame, CloseFrame):
                    self._run(self.table.end_closed(cid, end, frame.code, frame.reason, now))
            except CircuitStateError:
                pass  # an answer to an offer that already expired: the circuit is closing
        if fin:
            self._run(self.table.end_finished(cid, end, now))
        self._arm()

    # --- relayed streams ---------------------------------------------------------------------

    def relay_opened(self, hop: QuicSession, sid: int, cid: int, number: int) -> None:
        """``hop``'s peer opened a relayed stream with header ``(cid, number)``."""
        now = self._loop.time()
        decision = self.table.open_stream(cid, hop.peer_name, number, now)
        if decision.verdict is Verdict.VIOLATION:
            hop.violate(QuicAppError.PROTOCOL_VIOLATION, decision.reason)
            return
        if decision.verdict is Verdict.DISCARD:
            self._discard.add((hop, sid))
            self._run(list(decision.actions))
            self._arm()
            return
        c = self.table.get(cid)
        ends = self._circuits.get(cid)
        assert c is not None and ends is not None
        other = c.target if hop.peer_name == c.source else c.source
        half = ends.halves.get(other)
        b = half.hop if half is not None else None
        if b is None or not b.core.can_open_circuit_stream():
            log.info("no stream credit on the other hop; dropping a relayed stream", circuit=cid)
            self.table.stream_done(cid, hop.peer_name, number)
            self._discard.add((hop, sid))
            return
        b_sid, _o, _t = b.core.open_circuit_stream(
            StreamKind.RELAY, lambda cipher: seal_relay_header(cipher, cid, number)[3:]
        )
        b.kick()
        relay = _Relay(cid, hop.peer_name, number, hop, sid, b, b_sid)
        self._relays[(hop, sid)] = relay
        self._relays[(b, b_sid)] = relay
        ends.relays.add(relay)
        self.stats["relayed_streams"] += 1

    def relay_data(self, hop: QuicSession, sid: int, data: bytes, fin: bool) -> bool:
        """Bytes of a relayed stream on ``hop``; False if it is not ours."""
        key = (hop, sid)
        if key in self._discard:
            if fin:
                self._discard.discard(key)
                hop.core.send_circuit_data(sid, b"", True)
                hop.kick()
            return True
        relay = self._relays.get(key)
        if relay is None:
            return False
        forward = hop is relay.a and sid == relay.a_sid
        to, to_sid = (relay.b, relay.b_sid) if forward else (relay.a, relay.a_sid)
        cid, opener, number = relay.circuit_id, relay.opener, relay.number
        now = self._loop.time()
        pos = 0
        while pos < len(data):
            # Everything taken is forwarded at once, so there is always room while the
            # circuit is open; if not, take() closes it (LIMIT_EXCEEDED) or it is closing.
            n = min(max(self.table.room(cid, opener, number), 1), len(data) - pos)
            actions = self.table.take(cid, opener, number, n, now)
            if actions or self.table.buffered(cid) < n:
                self._run(actions)  # closed (over the room), or not open: StopRelay ran
                self._arm()
                return True
            to.core.send_circuit_data(to_sid, data[pos : pos + n], False)
            self.table.forwarded(cid, opener, number, n, now)
            pos += n
        self.stats["relayed_bytes"] += pos
        if fin:
            to.core.send_circuit_data(to_sid, b"", True)
            if forward:
                relay.fin_fwd = True
            else:
                relay.fin_back = True
            if relay.fin_fwd and relay.fin_back:
                self._forget_relay(relay)
                self.table.stream_done(cid, opener, number)
        to.kick()
        return True

    def _forget_relay(self, relay: _Relay) -> None:
        self._relays.pop((relay.a, relay.a_sid), None)
        self._relays.pop((relay.b, relay.b_sid), None)
        ends = self._circuits.get(relay.circuit_id)
        if ends is not None:
            ends.relays.discard(relay)

    # --- connections ----------------------------------------------------------------------------

    def carries(self, hop: QuicSession) -> bool:
        """A live circuit has a control stream on ``hop``."""
        return any(h is hop for h, _sid in self._controls)

    def hop_closed(self, hop: QuicSession) -> None:
        """A hop connection is gone: every circuit it carried closes (PEER_GONE)."""
        names = {end for (h, _sid), (_cid, end) in self._controls.items() if h is hop}
        for key in [k for k in self._controls if k[0] is hop]:
            del self._controls[key]
        for key in [k for k in self._relays if k[0] is hop]:
            self._relays.pop(key, None)
        self._discard = {k for k in self._discard if k[0] is not hop}
        now = self._loop.time()
        for name in sorted(names):
            self._run(self.table.connection_lost(name, now))
        self._arm()

    def close(self) -> None:
        self._run(self.table.close_all(self._loop.time()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the table's actions and timer ----------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            try:
                self._do(a)
            except Exception:  # a bug of ours: log it, keep the table consistent
                log.exception("circuit action failed", action=repr(a))

    def _do(self, a: Action) -> None:
        if isinstance(a, SendOffer):
            self._offer(a)
            return
        ends = self._circuits.get(a.circuit_id)
        if ends is None:
            return
        if isinstance(a, SendAccept):
            half = ends.halves.get(a.source)
            if half is not None:
                half.send(AcceptFrame(a.circuit_id, a.flags))
        elif isinstance(a, SendRefuse):
            half = ends.halves.get(a.source)
            if half is not None:
                half.send(RefuseFrame(a.code, a.origin, a.reason), fin=True)
        elif isinstance(a, SendClose):
            half = ends.halves.get(a.to)
            if half is not None:
                half.send(CloseFrame(a.code, a.origin, a.reason), fin=True)
        elif isinstance(a, FinishControl):
            half = ends.halves.get(a.to)
            if half is not None:
                half.finish()
        elif isinstance(a, StopRelay):
            for relay in list(ends.relays):
                for hop, sid in ((relay.a, relay.a_sid), (relay.b, relay.b_sid)):
                    if not hop.core.is_closed:
                        hop.core.send_circuit_data(sid, b"", True)
                        hop.kick()
                    self._discard.add((hop, sid))
                self._forget_relay(relay)
        elif isinstance(a, ExchangeAddresses):
            self._addresses(ends, a)
        elif isinstance(a, Release):
            for name, half in ends.halves.items():
                self._controls.pop((half.hop, half.sid), None)
                del name
            for relay in list(ends.relays):
                self._forget_relay(relay)
            del self._circuits[a.circuit_id]

    def _offer(self, a: SendOffer) -> None:
        now = self._loop.time()
        hop = self._target_hop(a.target)
        ends = self._circuits[a.circuit_id]
        self.table.offer_sent(a.circuit_id, now)
        if hop is None or not hop.core.can_open_circuit_stream():
            self._run(
                self.table.refused(
                    a.circuit_id, CircuitCode.NOT_ROUTING, f"{a.target} is not connected", now
                )
            )
            return
        frame = OfferFrame(a.circuit_id, a.flags, a.request)
        half = ControlHalf.open(hop, frame, ControlRole.TARGET)
        ends.halves[a.target] = half
        self._controls[(hop, half.sid)] = (a.circuit_id, a.target)

    def _addresses(self, ends: _Ends, a: ExchangeAddresses) -> None:
        src, dst = ends.halves.get(a.source), ends.halves.get(a.target)
        if src is None or dst is None:
            return
        for to, of in ((src, dst), (dst, src)):
            addr = of.hop.remote_address
            if addr is not None:
                host = str(addr[0]).removeprefix("::ffff:")
                to.send(AddressFrame(host, int(addr[1])))

    def _arm(self) -> None:
        deadline = self.table.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(max(deadline, self._loop.time()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._run(self.table.tick(self._loop.time()))
        self._arm()

    def describe(self) -> str:
        t = self.table
        return (
            f"circuits ({t.max_circuits} max): {len(t)} live, {t.closing} closing; "
            f"admitted {t.stats['admitted']}, refused {t.stats['refused']}"
        )
