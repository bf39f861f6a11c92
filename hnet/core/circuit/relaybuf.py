"""One circuit's relayed streams at a router and the bytes it holds for them (docs/quic.md
§11.7), sans-I/O: stream counts per end, and the relay buffer with its small-message reserve."""

from __future__ import annotations

from dataclasses import dataclass

from hnet import limits
from hnet.core.circuit.errors import CircuitCode, CircuitStateError

__all__ = ["RelayBudget", "RelayLimits"]


@dataclass(frozen=True, slots=True)
class RelayLimits:
    #: relayed streams open per end
    relay_streams: int = limits.CIRCUIT_RELAY_STREAMS
    #: bytes held per relayed stream
    stream_buffer: int = limits.CIRCUIT_STREAM_BUFFER
    #: bytes held per circuit, both directions
    max_buffered: int = limits.CIRCUIT_MAX_BUFFERED
    #: part of max_buffered that bulk streams may not use
    small_reserve: int = limits.CIRCUIT_SMALL_RESERVE
    #: a stream's first bytes, which may use the reserve (one small message)
    small_stream_bytes: int = limits.CIRCUIT_SMALL_STREAM_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.small_reserve < self.max_buffered:
            raise ValueError("small_reserve must be below max_buffered")
        if self.relay_streams < 1 or self.stream_buffer < 1:
            raise ValueError("relay_streams and stream_buffer must be positive")


class _Stream:
    __slots__ = ("buffered", "total")

    def __init__(self) -> None:
        self.buffered = 0  # taken from the opener's hop, not yet sent on the other
        self.total = 0  # taken, ever


class RelayBudget:
    """The relayed streams of one open circuit, keyed by ``(opener, stream number)``."""

    __slots__ = ("_open_by", "_streams", "buffered", "limits")

    def __init__(self, relay_limits: RelayLimits) -> None:
        self.limits = relay_limits
        self._streams: dict[tuple[str, int], _Stream] = {}
        self._open_by: dict[str, int] = {}
        #: bytes held for the whole circuit
        self.buffered = 0

    def open_count(self, opener: str) -> int:
        return self._open_by.get(opener, 0)

    def open(self, opener: str, number: int, *, is_source: bool) -> tuple[CircuitCode, str] | None:
        """Count a new relayed stream; or the code and reason that must close the circuit."""
        if number % 4 != (0 if is_source else 1):
            return CircuitCode.PROTOCOL_VIOLATION, f"stream number {number} from {opener}"
        key = (opener, number)
        if key in self._streams:
            return CircuitCode.PROTOCOL_VIOLATION, f"stream number {number} reused"
        if self._open_by.get(opener, 0) >= self.limits.relay_streams:
            return (
                CircuitCode.LIMIT_EXCEEDED,
                f"{opener} opened more than {self.limits.relay_streams} relayed streams",
            )
        self._streams[key] = _Stream()
        self._open_by[opener] = self._open_by.get(opener, 0) + 1
        return None

    def room(self, opener: str, number: int) -> int:
        """Bytes that may be taken from the stream now. Its first ``small_stream_bytes`` may use
        the whole circuit budget; beyond them the last ``small_reserve`` stay free."""
        s = self._streams.get((opener, number))
        if s is None:
            return 0
        lim = self.limits
        small_left = max(0, lim.small_stream_bytes - s.total)
        full = lim.max_buffered - self.buffered
        bulk = lim.max_buffered - lim.small_reserve - self.buffered
        return max(0, min(lim.stream_buffer - s.buffered, max(min(small_left, full), bulk)))

    def take(self, opener: str, number: int, n: int) -> bool:
        """Hold ``n`` more bytes of the stream; False (nothing held) if over its room."""
        s = self._stream(opener, number)
        if not 0 <= n <= self.room(opener, number):
            return False
        s.buffered += n
        s.total += n
        self.buffered += n
        return True

    def forwarded(self, opener: str, number: int, n: int) -> None:
        s = self._stream(opener, number)
        if not 0 <= n <= s.buffered:
            raise ValueError(f"forwarded {n} of {s.buffered} held bytes")
        s.buffered -= n
        self.buffered -= n

    def done(self, opener: str, number: int) -> None:
        s = self._streams.pop((opener, number), None)
        if s is None:
            raise CircuitStateError(f"no relayed stream {number} of {opener}")
        self.buffered -= s.buffered
        self._open_by[opener] -= 1

    def clear(self) -> None:
        self._streams.clear()
        self._open_by.clear()
        self.buffered = 0

    def _stream(self, opener: str, number: int) -> _Stream:
        s = self._streams.get((opener, number))
        if s is None:
            raise CircuitStateError(f"no relayed stream {number} of {opener}")
        return s
