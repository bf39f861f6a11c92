"""A bounded ring buffer of a process's printouts and crash reports (the reference keeps the
last 5000 bytes of a process's stderr)."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["OUTPUT_BYTES", "OutputRing"]

#: the reference's STACK_TRACE_SIZE
OUTPUT_BYTES = 5000


class OutputRing:
    """Thread-safe; keeps the newest text up to ``max_bytes`` (UTF-8), dropping the oldest."""

    def __init__(self, max_bytes: int = OUTPUT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lines: deque[str] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if len(data) > self.max_bytes:  # keep the tail of one huge write
            text = data[-self.max_bytes :].decode("utf-8", "ignore")
            data = text.encode()
        with self._lock:
            self._lines.append(text)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and self._lines:
                self._bytes -= len(self._lines.popleft().encode())

    def contents(self) -> str:
        with self._lock:
            return "".join(self._lines)
