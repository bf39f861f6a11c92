"""A UDP socket read in bursts straight from the event loop (``add_reader``).

asyncio's datagram transport hands the protocol one datagram per loop callback; QUIC wants to
process a burst of datagrams and then write once. This reads up to ``QUIC_RECV_BURST``
datagrams per wakeup, hands each to ``on_datagram``, then calls ``on_burst_end`` (where the
connections touched are flushed). Sends never wait: a datagram the kernel cannot take now is
dropped, which QUIC's loss recovery handles like any other loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from hnet import limits
from hnet.core.quic.backend import Addr

#: Largest datagram we read (the largest a UDP socket can deliver).
RECV_SIZE = 65_535


def bind_udp(host: str, port: int, family: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (``port`` 0: any free port)."""
    if not family:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, limits.QUIC_SOCKET_BUFFER)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpSocket:
    """Burst reader and never-blocking writer over one bound UDP socket."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, Addr], None],
        on_burst_end: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._on_datagram = on_datagram
        self._on_burst_end = on_burst_end
        self.closed = False
        #: datagrams the kernel refused to queue (counted, then left to QUIC's loss recovery)
        self.send_drops = 0
        self.local_address: Addr = sock.getsockname()
        self.family = sock.family
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        recvfrom = self._sock.recvfrom
        deliver = self._on_datagram
        try:
            for _ in range(limits.QUIC_RECV_BURST):
                if self.closed:
                    return
                try:
                    data, addr = recvfrom(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # e.g. an ICMP error reported on the socket: nothing to read now
                    break
                deliver(data, addr)
        finally:
            if not self.closed:
                self._on_burst_end()

    def sendto(self, data: bytes, addr: Addr) -> None:
        if self.closed:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
        except OSError:
            self.send_drops += 1  # unreachable and the like: QUIC retransmits or times out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        self._sock.close()
