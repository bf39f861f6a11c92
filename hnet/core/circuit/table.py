"""A router's circuits, sans-I/O (docs/quic.md §11): admission, the per-circuit state machine,
limits, fairness, expiry and the relay accounting.

Every method takes ``now`` (seconds on a monotonic clock; a value below the last one seen is
taken as the last one), :meth:`CircuitTable.request` also ``wall`` (unix time, for the request's
freshness), and returns what the adapter must do as :data:`Action` values; the table
never does I/O and reads no clock. One circuit's life::

    REQUESTED --OFFER_SENT--> OFFERED --ACCEPTED--> OPEN
        |                        |                    |
        | CLOSE, EXPIRE          | REFUSED, CLOSE,    | CLOSE, EXPIRE
        |                        | EXPIRE             |
        +------------------------+--------------------+--> CLOSING --DRAINED, EXPIRE--> CLOSED

(:data:`TRANSITIONS`; anything else raises :class:`CircuitStateError`). CLOSING waits for the
ends to finish their control streams (FIN), at most ``close_timeout``.

Limits: ``max_circuits`` live circuits (requested, offered, open) in total; ``max_per_source``
per source (never more than half the total, so one source leaves the others at least half);
when full, the least recently active open circuit is evicted if it has been idle at least
``evict_min_idle``, else the newcomer is refused BUSY. Per circuit: ``relay_streams`` relayed
streams open per end, ``stream_buffer`` bytes held per stream, ``max_buffered`` per circuit of
which bulk streams may not use the last ``small_reserve``. Closing circuits do not count
against the limits and are themselves at most ``max_circuits`` (the oldest is dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from hnet import limits
from hnet.core.circuit.actions import (
    Action,
    Admitted,
    ExchangeAddresses,
    FinishControl,
    Refused,
    Release,
    SendAccept,
    SendClose,
    SendOffer,
    SendRefuse,
    StopRelay,
    StreamDecision,
    Verdict,
)
from hnet.core.circuit.errors import CircuitCode, CircuitRefused, CircuitStateError, Origin
from hnet.core.circuit.frames import SHARE_ADDRESS
from hnet.core.circuit.relaybuf import RelayBudget, RelayLimits
from hnet.core.circuit.replay import ReplayGuard
from hnet.core.circuit.request import CircuitRequest, check_request
from hnet.core.circuit.states import LIVE, CircuitEvent, CircuitState, transition

__all__ = ["Circuit", "CircuitTable"]

S, E = CircuitState, CircuitEvent
_LIVE = LIVE


@dataclass(eq=False, slots=True)
class Circuit:
    circuit_id: int
    source: str
    target: str
    request: CircuitRequest
    source_flags: int
    created: float
    last_active: float
    state: CircuitState = CircuitState.REQUESTED
    target_flags: int = 0
    closing_since: float = 0.0
    close_code: CircuitCode = CircuitCode.NO_ERROR
    close_reason: str = ""
    #: ends whose control stream we still wait to see finished (CLOSING)
    unfinished: set[str] = field(default_factory=set)
    #: relayed streams and held bytes (the table's limits)
    relay: RelayBudget = field(default_factory=lambda: RelayBudget(RelayLimits()))

    def end(self, name: str) -> str:
        if name not in (self.source, self.target):
            raise ValueError(f"{name!r} is not an end of circuit {self.circuit_id}")
        return name


class CircuitTable:
    """A router's circuits (see the module docstring)."""

    def __init__(
        self,
        our_name: str,
        max_circuits: int = limits.MAX_CIRCUITS,
        *,
        max_per_source: int = limits.CIRCUIT_MAX_PER_SOURCE,
        guard: ReplayGuard | None = None,
        window: int = limits.CIRCUIT_REQUEST_WINDOW,
        offer_timeout: float = limits.CIRCUIT_OFFER_TIMEOUT,
        idle_timeout: float = limits.CIRCUIT_IDLE_TIMEOUT,
        close_timeout: float = limits.CIRCUIT_CLOSE_TIMEOUT,
        evict_min_idle: float = limits.CIRCUIT_EVICT_MIN_IDLE,
        relay_streams: int = limits.CIRCUIT_RELAY_STREAMS,
        stream_buffer: int = limits.CIRCUIT_STREAM_BUFFER,
        max_buffered: int = limits.CIRCUIT_MAX_BUFFERED,
        small_reserve: int = limits.CIRCUIT_SMALL_RESERVE,
        small_stream_bytes: int = limits.CIRCUIT_SMALL_STREAM_BYTES,
    ) -> None:
        if max_circuits < 0 or max_per_source < 1:
            raise ValueError("max_circuits must be >= 0 and max_per_source >= 1")
        self.our_name = our_name
        self.max_circuits = max_circuits
        self.max_per_source = min(max_per_source, max(1, max_circuits // 2))
        self.max_closing = max(1, max_circuits)
        self.guard = guard if guard is not None else ReplayGuard(window=window)
        self.window = window
        self.offer_timeout = offer_timeout
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self.evict_min_idle = evict_min_idle
        self.relay_limits = RelayLimits(
            relay_streams, stream_buffer, max_buffered, small_reserve, small_stream_bytes
        )
        self._circuits: dict[int, Circuit] = {}
        # Each ordered by the time its deadline counts from, oldest first.
        self._pending: dict[int, Circuit] = {}  # REQUESTED, OFFERED: by creation
        self._open: OrderedDict[int, Circuit] = OrderedDict()  # OPEN: by last activity
        self._closing: dict[int, Circuit] = {}  # CLOSING: by when it began
        self._per_source: dict[str, int] = {}
        self._by_end: dict[str, set[int]] = {}
        self._next_id = 1
        self._clock = 0.0
        self.stats: dict[str, int] = {"admitted": 0, "refused": 0, "evicted": 0, "expired": 0}

    # --- introspection ----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.max_circuits > 0

    def __len__(self) -> int:
        """Live circuits (requested, offered, open): what the limits count."""
        return len(self._pending) + len(self._open)

    @property
    def closing(self) -> int:
        return len(self._closing)

    def get(self, circuit_id: int) -> Circuit | None:
        return self._circuits.get(circuit_id)

    def state(self, circuit_id: int) -> CircuitState:
        c = self._circuits.get(circuit_id)
        return CircuitState.CLOSED if c is None else c.state

    def circuits_of(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has work (the adapter's timer)."""
        times = []
        if self._pending:
            times.append(next(iter(self._pending.values())).created + self.offer_timeout)
        if self._open:
            times.append(next(iter(self._open.values())).last_active + self.idle_timeout)
        if self._closing:
            times.append(next(iter(self._closing.values())).closing_since + self.close_timeout)
        return min(times, default=None)

    # --- admission ----------------------------------------------------------------------------

    def request(
        self,
        request: CircuitRequest,
        *,
        peer: str,
        source_key: bytes | None,
        target_connected: bool,
        now: float,
        wall: float,
        flags: int = 0,
    ) -> Admitted | Refused:
        """A REQUEST arrived on the session with ``peer``. ``source_key`` is the source's
        networking key from HNS (None if absent); ``target_connected`` says whether the target
        holds a session it opened with ``proxy_request`` (we route for it) that is up now.
        ``wall`` is unix time: the timestamp window and the replay cache use it, the table's
        timers ``now``, so a wall clock stepped either way delays no expiry."""
        now = self._now(now)
        try:
            if not self.enabled:
                raise CircuitRefused(CircuitCode.NOT_ROUTING, "this node routes no circuits")
            check_request(
                request,
                router=self.our_name,
                peer=peer,
                source_key=source_key,
                now=wall,
                guard=self.guard,
                window=self.window,
            )
            if not target_connected:
                raise CircuitRefused(
                    CircuitCode.NOT_ROUTING, f"we do not route for {request.target} now"
                )
            if self._per_source.get(request.source, 0) >= self.max_per_source:
                raise CircuitRefused(
                    CircuitCode.SOURCE_LIMIT,
                    f"{request.source} holds {self.max_per_source} circuits",
                )
            actions = self._make_room(now)
        except CircuitRefused as e:
            self.stats["refused"] += 1
            return Refused(e.code, e.reason)
        cid = self._next_id
        self._next_id += 1
        c = Circuit(cid, request.source, request.target, request, flags, now, now)
        c.relay = RelayBudget(self.relay_limits)
        self._circuits[cid] = c
        self._pending[cid] = c
        self._per_source[c.source] = self._per_source.get(c.source, 0) + 1
        for name in (c.source, c.target):
            self._by_end.setdefault(name, set()).add(cid)
        self.stats["admitted"] += 1
        actions.append(SendOffer(cid, c.target, flags, request))
        return Admitted(cid, tuple(actions))

    def _make_room(self, now: float) -> list[Action]:
        if len(self) < self.max_circuits:
            return []
        victim = next(iter(self._open.values()), None)
        if victim is None or now - victim.last_active < self.evict_min_idle:
            raise CircuitRefused(
                CircuitCode.BUSY, f"{self.max_circuits} circuits in use, none idle"
            )
        self.stats["evicted"] += 1
        return self._begin_close(
            victim, E.CLOSE, now, CircuitCode.EVICTED, Origin.ROUTER, "evicted for a new circuit"
        )

    # --- the offer and its answer ---------------------------------------------------------------

    def offer_sent(self, circuit_id: int, now: float) -> None:
        """The OFFER of a REQUESTED circuit is on the wire (its deadline still counts from
        admission)."""
        self._now(now)
        self._fire(self._get(circuit_id), E.OFFER_SENT)

    def accepted(self, circuit_id: int, flags: int, now: float) -> list[Action]:
        """The target sent ACCEPT (with its ``flags``)."""
        now = self._now(now)
        c = self._get(circuit_id)
        self._fire(c, E.ACCEPTED)
        del self._pending[c.circuit_id]
        c.target_flags = flags
        c.last_active = now
        self._open[c.circuit_id] = c
        share = bool(c.source_flags & c.target_flags & SHARE_ADDRESS)
        actions: list[Action] = [SendAccept(c.circuit_id, c.source, SHARE_ADDRESS if share else 0)]
        if share:
            actions.append(ExchangeAddresses(c.circuit_id, c.source, c.target))
        return actions

    def refused(self, circuit_id: int, code: CircuitCode, reason: str, now: float) -> list[Action]:
        """The target sent REFUSE (its FIN follows: :meth:`end_finished`)."""
        now = self._now(now)
        c = self._get(circuit_id)
        return self._begin_close(c, E.REFUSED, now, code, Origin.PEER, reason, closer=c.target)

    # --- ends closing -----------------------------------------------------------------------------

    def end_closed(
        self, circuit_id: int, end: str, code: CircuitCode, reason: str, now: float
    ) -> list[Action]:
        """``end`` sent CLOSE (or FIN, read as CLOSE NO_ERROR) on its control stream."""
        now = self._now(now)
        c = self._circuits.get(circuit_id)
        if c is None or c.state not in _LIVE:
            return []  # already closing: the two closes crossed
        return self._begin_close(c, E.CLOSE, now, code, Origin.PEER, reason, closer=c.end(end))

    def end_finished(self, circuit_id: int, end: str, now: float) -> list[Action]:
        """``end``'s half of its control stream ended (FIN)."""
        now = self._now(now)
        c = self._circuits.get(circuit_id)
        if c is None:
            return []
        actions: list[Action] = []
        if c.state in _LIVE:
            actions = self.end_closed(circuit_id, end, CircuitCode.NO_ERROR, "FIN", now)
        c.unfinished.discard(c.end(end))
        if c.state is S.CLOSING and not c.unfinished:
            actions += self._finish(c, E.DRAINED)
        return actions

    def connection_lost(self, name: str, now: float) -> list[Action]:
        """Our connection with ``name`` is gone: every circuit it is an end of closes."""
        now = self._now(now)
        actions: list[Action] = []
        for cid in sorted(self._by_end.get(name, ())):
            c = self._circuits[cid]
            if c.state in _LIVE:
                reason = f"{name} disconnected"
                actions += self._begin_close(
                    c, E.CLOSE, now, CircuitCode.PEER_GONE, Origin.ROUTER, reason, gone=name
                )
            else:
                c.unfinished.discard(name)
                if not c.unfinished:
                    actions += self._finish(c, E.DRAINED)
        return actions

    def close_all(self, now: float, code: CircuitCode = CircuitCode.GOING_AWAY) -> list[Action]:
        """Close every live circuit (the node is stopping)."""
        now = self._now(now)
        actions: list[Action] = []
        for c in [*self._pending.values(), *self._open.values()]:
            actions += self._begin_close(c, E.CLOSE, now, code, Origin.ROUTER, "router stopping")
        return actions

    # --- time -------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Expire offers not answered in time, idle open circuits, and closing circuits whose
        ends did not finish in time. Each loop only takes the oldest entry of its queue."""
        now = self._now(now)
        actions: list[Action] = []
        while self._pending:
            c = next(iter(self._pending.values()))
            if c.created + self.offer_timeout > now:
                break
            self.stats["expired"] += 1
            actions += self._begin_close(
                c, E.EXPIRE, now, CircuitCode.TIMEOUT, Origin.ROUTER, "the target did not answer"
            )
        while self._open:
            c = next(iter(self._open.values()))
            if c.last_active + self.idle_timeout > now:
                break
            self.stats["expired"] += 1
            actions += self._begin_close(c, E.EXPIRE, now, CircuitCode.IDLE, Origin.ROUTER, "idle")
        while self._closing:
            c = next(iter(self._closing.values()))
            if c.closing_since + self.close_timeout > now:
                break
            actions += self._finish(c, E.EXPIRE)
        return actions

    # --- relayed streams --------------------------------------------------------------------------

    def open_stream(self, circuit_id: int, opener: str, number: int, now: float) -> StreamDecision:
        """``opener`` (the peer of the connection it arrived on) opened a relayed stream with
        this header."""
        now = self._now(now)
        if not 0 < circuit_id < self._next_id:
            return StreamDecision(Verdict.VIOLATION, f"circuit id {circuit_id} never issued")
        c = self._circuits.get(circuit_id)
        if c is None or opener not in (c.source, c.target) or c.state is S.CLOSING:
            return StreamDecision(Verdict.DISCARD, f"circuit {circuit_id} is not open for {opener}")
        if c.state is not S.OPEN:
            return StreamDecision(
                Verdict.VIOLATION, f"relayed stream before circuit {circuit_id} opened"
            )
        broken = c.relay.open(opener, number, is_source=opener == c.source)
        if broken is not None:
            code, reason = broken
            actions = self._begin_close(c, E.CLOSE, now, code, Origin.ROUTER, reason)
            return StreamDecision(Verdict.DISCARD, reason, tuple(actions))
        self._touch(c, now)
        return StreamDecision(Verdict.RELAY)

    def room(self, circuit_id: int, opener: str, number: int) -> int:
        """Bytes the adapter may take now from this relayed stream (0: leave them in QUIC,
        which holds the sender back by flow control); see :meth:`RelayBudget.room`."""
        c = self._circuits.get(circuit_id)
        if c is None or c.state is not S.OPEN:
            return 0
        return c.relay.room(opener, number)

    def take(self, circuit_id: int, opener: str, number: int, n: int, now: float) -> list[Action]:
        """The adapter took ``n`` bytes of the stream from its hop. More than :meth:`room`
        closes the circuit (LIMIT_EXCEEDED)."""
        now = self._now(now)
        c = self._circuits.get(circuit_id)
        if c is None or c.state is not S.OPEN:
            return []  # stopped: the adapter discards
        if not c.relay.take(opener, number, n):
            reason = f"{n} bytes on stream {number} of {opener} over the relay buffer"
            return self._begin_close(
                c, E.CLOSE, now, CircuitCode.LIMIT_EXCEEDED, Origin.ROUTER, reason
            )
        self._touch(c, now)
        return []

    def forwarded(self, circuit_id: int, opener: str, number: int, n: int, now: float) -> None:
        """``n`` of the stream's held bytes left us on the other hop."""
        now = self._now(now)
        c = self._circuits.get(circuit_id)
        if c is None or c.state is not S.OPEN:
            return
        c.relay.forwarded(opener, number, n)
        self._touch(c, now)

    def stream_done(self, circuit_id: int, opener: str, number: int) -> None:
        """Both halves of the relayed stream ended on both hops."""
        c = self._circuits.get(circuit_id)
        if c is not None and c.state is S.OPEN:
            c.relay.done(opener, number)

    def buffered(self, circuit_id: int) -> int:
        c = self._circuits.get(circuit_id)
        return 0 if c is None else c.relay.buffered

    def open_streams(self, circuit_id: int, opener: str) -> int:
        c = self._circuits.get(circuit_id)
        return 0 if c is None else c.relay.open_count(opener)

    # --- internals --------------------------------------------------------------------------------

    def _now(self, now: float) -> float:
        if now > self._clock:
            self._clock = now
        return self._clock

    def _get(self, circuit_id: int) -> Circuit:
        c = self._circuits.get(circuit_id)
        if c is None:
            raise CircuitStateError(f"no circuit {circuit_id} (closed)")
        return c

    def _fire(self, c: Circuit, event: CircuitEvent) -> CircuitState:
        prev = c.state
        c.state = transition(prev, event)
        return prev

    def _touch(self, c: Circuit, now: float) -> None:
        c.last_active = now
        self._open.move_to_end(c.circuit_id)

    def _begin_close(
        self,
        c: Circuit,
        event: CircuitEvent,
        now: float,
        code: CircuitCode,
        origin: Origin,
        reason: str,
        *,
        closer: str | None = None,
        gone: str | None = None,
    ) -> list[Action]:
        """Leave a live state for CLOSING; tell each end that has a control stream. ``closer``
        is the end that closed (it gets our FIN), ``gone`` an end whose connection is lost."""
        prev = self._fire(c, event)
        (self._open if prev is S.OPEN else self._pending).pop(c.circuit_id)
        left = self._per_source[c.source] - 1
        if left:
            self._per_source[c.source] = left
        else:
            del self._per_source[c.source]
        c.close_code, c.close_reason, c.closing_since = code, reason, now
        actions: list[Action] = []
        if prev is S.OPEN:
            actions.append(StopRelay(c.circuit_id))
            c.relay.clear()
        ends = [c.source, c.target] if prev is not S.REQUESTED else [c.source]
        for end in ends:
            if end == gone:
                continue
            c.unfinished.add(end)
            if end == closer:
                actions.append(FinishControl(c.circuit_id, end))
            elif end == c.source and prev is not S.OPEN:
                actions.append(SendRefuse(c.circuit_id, end, code, origin, reason))
            else:
                actions.append(SendClose(c.circuit_id, end, code, origin, reason))
        self._closing[c.circuit_id] = c
        if not c.unfinished:
            actions += self._finish(c, E.DRAINED)
        while len(self._closing) > self.max_closing:
            actions += self._finish(next(iter(self._closing.values())), E.EXPIRE)
        return actions

    def _finish(self, c: Circuit, event: CircuitEvent) -> list[Action]:
        self._fire(c, event)
        del self._closing[c.circuit_id]
        del self._circuits[c.circuit_id]
        for name in (c.source, c.target):
            cids = self._by_end.get(name)
            if cids is not None:
                cids.discard(c.circuit_id)
                if not cids:
                    del self._by_end[name]
        return [Release(c.circuit_id)]
