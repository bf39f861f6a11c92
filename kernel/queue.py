"""A process's inbox: bounded in messages and bytes, filled on the kernel's loop (never
waiting), drained by the process's thread (blocking).

A full inbox refuses the item (``put`` returns False) and the kernel reports it to the sender;
error reports (``put_error``) are small and bounded by the process's outstanding requests, so
they are always taken: a process waiting on a response must learn of its timeout.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from hnet import KernelMessage, Request, SendError
from kernel.api import ProcessStopped

__all__ = ["INBOX_BYTES", "INBOX_MESSAGES", "Inbox", "InboxItem", "WrappedError", "size_of"]

INBOX_MESSAGES = 1024
INBOX_BYTES = 32 * 1024 * 1024
#: what one message costs besides its body and blob
_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class WrappedError:
    """A message this process sent (request ``id``) was not delivered.

    ``token`` names the timer that made it (None: from the network or the kernel's routing);
    a timer's report counts only while its context is the one that timer was set for."""

    id: int
    error: SendError
    token: int | None = None


InboxItem = KernelMessage | WrappedError


def size_of(km: KernelMessage) -> int:
    m = km.message
    n = len(m.body) if isinstance(m, Request) else len(m.response.body)
    if km.lazy_load_blob is not None:
        n += len(km.lazy_load_blob.bytes)
    return n + _OVERHEAD


class Inbox:
    def __init__(self, max_messages: int = INBOX_MESSAGES, max_bytes: int = INBOX_BYTES) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[tuple[InboxItem, int]] = deque()
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()
        self.refused = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, km: KernelMessage) -> bool:
        """Queue a message without waiting; False if the inbox is full or closed."""
        n = size_of(km)
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self.max_messages or self._bytes + n > self.max_bytes:
                self.refused += 1
                return False
            self._items.append((km, n))
            self._bytes += n
            self._cond.notify()
            return True

    def put_error(self, err: WrappedError) -> bool:
        """Queue an error report (never refused for room); False if closed."""
        with self._cond:
            if self._closed:
                return False
            self._items.append((err, _OVERHEAD))
            self._bytes += _OVERHEAD
            self._cond.notify()
            return True

    def get(self) -> InboxItem:
        """Block until an item arrives; :class:`ProcessStopped` once closed."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise ProcessStopped("process stopped")
                self._cond.wait()
            if self._closed:
                raise ProcessStopped("process stopped")
            item, n = self._items.popleft()
            self._bytes -= n
            return item

    def close(self) -> None:
        """Wake every waiter with :class:`ProcessStopped`; later puts are refused."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
