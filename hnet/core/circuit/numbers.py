"""Relayed stream numbers at an end of a circuit (docs/quic.md §11.7)."""

from __future__ import annotations

from hnet.core.circuit.errors import CircuitCode, CircuitError

__all__ = ["StreamNumbers"]


class StreamNumbers:
    """An end's record of the relayed stream numbers its peer used on one circuit, so that a
    router replaying a whole relayed stream (same number, so same key and nonces) is caught.

    The peer numbers its streams like QUIC stream ids (``first``, ``first + 4``, ...: source 0,
    4, 8, ...; target 1, 5, 9, ...). Relayed streams can arrive out of order, but a peer that
    respects its stream credit never has more than ``max_open`` streams outstanding, so every
    number more than ``max_open`` below the highest seen has been received already. We keep the
    highest number seen and the numbers below it not yet seen, at most ``max_open`` of them:
    a number is accepted once, and memory stays bounded.
    """

    __slots__ = ("_first", "_gaps", "_next", "max_open")

    def __init__(self, first: int, max_open: int) -> None:
        if first not in (0, 1):
            raise ValueError("first stream number is 0 (source) or 1 (target)")
        self._first = first
        self._next = first  # the lowest number never seen nor skipped
        self._gaps: set[int] = set()
        self.max_open = max_open

    def accept(self, number: int) -> None:
        """Record ``number``; CircuitError (PROTOCOL_VIOLATION) if it was used before, has the
        wrong parity, or skips more numbers than the peer may have outstanding."""
        if number % 4 != self._first:
            raise CircuitError(
                f"relayed stream number {number} of the wrong kind", CircuitCode.PROTOCOL_VIOLATION
            )
        if number < self._next:
            if number not in self._gaps:
                raise CircuitError(
                    f"relayed stream number {number} used twice", CircuitCode.PROTOCOL_VIOLATION
                )
            self._gaps.discard(number)
            return
        skipped = (number - self._next) // 4
        if len(self._gaps) + skipped > self.max_open:
            raise CircuitError(
                f"relayed stream number {number} skips {skipped} (at most {self.max_open} open)",
                CircuitCode.PROTOCOL_VIOLATION,
            )
        self._gaps.update(range(self._next, number, 4))
        self._next = number + 4

    @property
    def outstanding(self) -> int:
        """Numbers below the highest seen that have not arrived yet."""
        return len(self._gaps)
