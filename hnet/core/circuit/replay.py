"""A bounded replay cache for CircuitRequests (docs/quic.md §11.4), sans-I/O.

A request carries ``timestamp`` (unix seconds) and a 16-byte ``nonce``; a checker accepts it
only if ``|now - timestamp| <= window`` and it has not accepted the same ``(source, nonce)``
before. Remembering nonces for the window is enough: a replay of an older request fails the
window check.

The cache holds at most ``capacity`` entries, and at most ``per_source`` for any one source.
The invariant that makes the bound safe: there is a floor ``low`` such that

* every timestamp below ``low`` is refused (STALE), and
* every accepted request with a timestamp ``>= low`` is still remembered.

Expiry raises ``low`` to ``now - window`` (those requests fail the window check anyway); a full
cache drops its oldest timestamp bucket and raises ``low`` past it. Nothing is ever forgotten
and then accepted again, whatever the clock does (a clock stepped back cannot reopen what
``low`` closed). A source at ``per_source`` is refused (SOURCE_LIMIT) without touching anyone
else's entries, so one source cannot push the floor up for the others.

Cost: entries live in a dict keyed by ``(source, nonce)`` plus one list per timestamp second;
``low`` only rises, and each second it passes is visited once, so a check is O(1) amortised.
Memory: at most ``capacity`` keys, per-source counters and timestamp buckets (each holds at
least one key).
"""

from __future__ import annotations

import math

from hnet.core.circuit.errors import CircuitCode, CircuitRefused
from hnet.limits import CIRCUIT_REPLAY_MAX, CIRCUIT_REPLAY_PER_SOURCE, CIRCUIT_REQUEST_WINDOW

__all__ = ["ReplayGuard"]

_Key = tuple[str, bytes]


class ReplayGuard:
    """Refuses a ``(source, nonce)`` seen within the window, and stale or future timestamps."""

    __slots__ = ("_buckets", "_low", "_per_source", "_seen", "capacity", "per_source", "window")

    def __init__(
        self,
        *,
        window: int = CIRCUIT_REQUEST_WINDOW,
        capacity: int = CIRCUIT_REPLAY_MAX,
        per_source: int = CIRCUIT_REPLAY_PER_SOURCE,
    ) -> None:
        if window < 1 or capacity < 1 or per_source < 1:
            raise ValueError("window, capacity and per_source must be positive")
        self.window = window
        self.capacity = capacity
        self.per_source = min(per_source, capacity)
        self._seen: dict[_Key, int] = {}
        self._buckets: dict[int, list[_Key]] = {}
        self._per_source: dict[str, int] = {}
        #: timestamps below this are refused; None until the first call sets it from the clock
        self._low: int | None = None

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def low(self) -> int:
        """The lowest timestamp that can still be accepted (0 before the first check)."""
        return self._low or 0

    @property
    def buckets(self) -> int:
        return len(self._buckets)

    def count(self, source: str) -> int:
        """Entries remembered for ``source``."""
        return self._per_source.get(source, 0)

    def expire(self, now: float) -> None:
        """Forget every entry whose timestamp left the window (``< now - window``)."""
        self._raise_low(math.ceil(now - self.window))

    def check(self, source: str, nonce: bytes, timestamp: int, now: float) -> None:
        """Accept and remember ``(source, nonce)``, or raise :class:`CircuitRefused` (STALE,
        REPLAY, SOURCE_LIMIT) and remember nothing."""
        self.expire(now)
        skew = now - timestamp
        if abs(skew) > self.window:
            side = "old" if skew > 0 else "in the future"
            raise CircuitRefused(
                CircuitCode.STALE, f"timestamp {abs(skew):.0f} s {side} (window {self.window} s)"
            )
        assert self._low is not None
        if timestamp < self._low:
            raise CircuitRefused(
                CircuitCode.STALE,
                f"timestamp {timestamp} older than the replay cache remembers ({self._low})",
            )
        key = (source, bytes(nonce))
        if key in self._seen:
            raise CircuitRefused(CircuitCode.REPLAY, f"nonce {key[1].hex()} from {source} seen")
        if self._per_source.get(source, 0) >= self.per_source:
            raise CircuitRefused(
                CircuitCode.SOURCE_LIMIT,
                f"{source} made {self.per_source} requests within the window",
            )
        while len(self._seen) >= self.capacity:
            self._drop_oldest_bucket()
            if timestamp < self._low:  # the new request is itself among the oldest
                raise CircuitRefused(
                    CircuitCode.STALE, f"timestamp {timestamp} older than the replay cache keeps"
                )
        self._seen[key] = timestamp
        self._buckets.setdefault(timestamp, []).append(key)
        self._per_source[source] = self._per_source.get(source, 0) + 1

    # --- internals ----------------------------------------------------------------------------

    def _drop_bucket(self, ts: int) -> None:
        keys = self._buckets.pop(ts, None)
        if keys is None:
            return
        seen, counts = self._seen, self._per_source
        for key in keys:
            del seen[key]
            left = counts[key[0]] - 1
            if left:
                counts[key[0]] = left
            else:
                del counts[key[0]]

    def _raise_low(self, to: int) -> None:
        low = self._low
        if low is None:
            self._low = to
            return
        if to <= low:
            return
        if to - low > len(self._buckets):
            # A long jump (or a fresh cache): visit the buckets, not every second in between.
            for ts in [t for t in self._buckets if t < to]:
                self._drop_bucket(ts)
        else:
            for ts in range(low, to):
                self._drop_bucket(ts)
        self._low = to

    def _drop_oldest_bucket(self) -> None:
        """Cache full: forget the oldest timestamp second and refuse it from now on."""
        assert self._low is not None and self._buckets
        # Expiry ran first, so every bucket lies within [low, latest now + window]: the walk is
        # at most 2 * window + 1 steps, and the seconds it passes are never walked again.
        ts = self._low
        while ts not in self._buckets:
            ts += 1
        self._raise_low(ts + 1)
