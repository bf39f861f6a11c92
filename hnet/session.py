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

from hnet.handshake import PeerHandshake

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

    def describe(self) -> str:
        return f"{self.peer_name} via {self.transport} ({self.remote})"


def idle_remaining(session: Session, idle_timeout: float) -> float:
    """Seconds until ``session`` counts as idle (no traffic either way)."""
    return session.last_activity + idle_timeout - time.monotonic()


async def read_with_idle(
    session: Session, read: Callable[[], Awaitable[bytes]], idle_timeout: float
) -> bytes | None:
    """One read, or None when the session has been idle ``idle_timeout`` seconds."""
    while True:
        remaining = idle_remaining(session, idle_timeout)
        if remaining <= 0:
            return None
        try:
            async with asyncio.timeout(remaining):
                return await read()
        except TimeoutError:
            continue
