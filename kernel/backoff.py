"""The reference's restart backoff for on-exit Restart, sans-I/O (the clock is given).

On each exit: if the previous restart's "next soonest restart time" has passed (or there was
none), restart at once, set it to ``now + unit`` and reset the count; otherwise wait until
that time, then push it on by ``unit * 2**count`` and count one more consecutive attempt. With
the reference's ``unit`` of 1 s, a process that crashes at once restarts after 0, 1, 1, 2, 4,
8... seconds; one that ran longer than its backoff restarts at once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartBackoff"]


@dataclass
class RestartBackoff:
    #: seconds; the reference uses 1 s (tests shorten it)
    unit: float = 1.0
    next_soonest: float | None = None
    consecutive: int = 0

    def delay(self, now: float) -> float:
        """Seconds to wait before restarting a process that exited at ``now``."""
        if self.next_soonest is None or self.next_soonest <= now:
            self.next_soonest = now + self.unit
            self.consecutive = 0
            return 0.0
        wait = self.next_soonest - now
        self.next_soonest += self.unit * 2**self.consecutive
        self.consecutive += 1
        return wait
