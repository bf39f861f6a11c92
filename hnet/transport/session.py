"""The one session abstraction every transport yields.

A Session is an authenticated, encrypted channel to one named peer. It moves serialized
KernelMessages (plaintext bytes); framing, encryption and socket details stay inside the
transport. The handshake driver here is shared by all transports: they differ only in how a
handshake message crosses the wire (``HandshakeChannel``).
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from hnet.core.handshake import PeerHandshake

Deliver = Callable[["Session", bytes], Awaitable[None]]


class SessionClosed(Exception):
    """The session is closed; the message was not sent."""


class SessionError(Exception):
    """The peer broke the protocol; the session is closed."""


class HandshakeChannel(Protocol):
    """How one transport carries handshake messages."""

    async def send_handshake(self, message: bytes) -> None: ...

    async def recv_handshake(self) -> bytes: ...


async def run_handshake(
    hs: PeerHandshake, channel: HandshakeChannel, first: bytes | None = None
) -> None:
    """Drive ``hs`` to completion over ``channel`` (the caller bounds it in time).

    ``first`` is the responder's first message when the transport has already read it (TCP
    reads the first frame to tell a Noise ``-> e`` from a RoutingRequest).
    """
    if hs.initiator:
        await channel.send_handshake(hs.initial_message())
        reply = hs.receive(await channel.recv_handshake())
        assert reply is not None
        await channel.send_handshake(reply)
        return
    msg1 = first if first is not None else await channel.recv_handshake()
    reply = hs.receive(msg1)
    assert reply is not None
    await channel.send_handshake(reply)
    hs.receive(await channel.recv_handshake())


class Session(abc.ABC):
    """An established session with one peer."""

    transport: str = "?"

    def __init__(
        self, *, peer_name: str, initiator: bool, proxy_request: bool, remote: str
    ) -> None:
        self.peer_name = peer_name
        self.initiator = initiator
        #: the peer asked us to route for it (only meaningful when it initiated)
        self.proxy_request = proxy_request
        self.remote = remote
        self.created = time.monotonic()
        self.last_activity = self.created
        self.messages_in = 0
        self.messages_out = 0
        self.closed = False
        #: replaced by a newer session: no more sends, still read until the grace period ends
        self.retired = False
        self._retire_timer: asyncio.TimerHandle | None = None
        self.close_reason = ""

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    @abc.abstractmethod
    async def send(self, message: bytes) -> None:
        """Encrypt and write one serialized message; raise SessionClosed if closed."""

    @abc.abstractmethod
    async def run(self, deliver: Deliver, idle_timeout: float) -> None:
        """Read until the peer closes, breaks the protocol (SessionError) or goes idle."""

    @abc.abstractmethod
    def abort(self, reason: str) -> None:
        """Close now, without waiting (idempotent)."""

    def retire(self, grace: float) -> None:
        """Stop using this session for sends but keep reading what is already in flight;
        close it after ``grace`` seconds (or sooner, when the peer closes it)."""
        if self.closed or self.retired:
            return
        self.retired = True
        self._retire_timer = asyncio.get_running_loop().call_later(
            grace, self.abort, "replaced by a new session"
        )

    def unretire(self) -> None:
        """Make a retired session usable again (the peer chose it, see PeerManager)."""
        if self._retire_timer is not None:
            self._retire_timer.cancel()
            self._retire_timer = None
        self.retired = False

    def describe(self) -> str:
        return f"{self.peer_name} via {self.transport} ({self.remote})"


class IdleWatchdog:
    """Aborts a session once it has had no traffic either way for ``idle_timeout`` seconds.

    One timer per session, re-armed only when it fires: the per-message cost is the
    ``touch()`` timestamp, not a timer per read.
    """

    def __init__(self, session: Session, idle_timeout: float) -> None:
        self._session = session
        self._timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm(idle_timeout)

    def _arm(self, delay: float) -> None:
        self._handle = self._loop.call_later(max(delay, 0.001), self._fire)

    def _fire(self) -> None:
        s = self._session
        if s.closed:
            return
        remaining = s.last_activity + self._timeout - time.monotonic()
        if remaining <= 0:
            s.abort("idle")
        else:
            self._arm(remaining)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def read_with_idle(
    session: Session, read: Callable[[], Awaitable[bytes]], idle_timeout: float
) -> bytes | None:
    """One read, or None once the session has been idle ``idle_timeout`` seconds.

    Arms a timer per read; hot paths use :class:`IdleWatchdog` instead.
    """
    while True:
        remaining = session.last_activity + idle_timeout - time.monotonic()
        if remaining <= 0:
            return None
        try:
            async with asyncio.timeout(remaining):
                return await read()
        except TimeoutError:
            continue
