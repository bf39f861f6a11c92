"""A bare QUIC library carrying hnet-noise/1's message pattern: the floor of the protocol itself.

The bare-library lines of ``bench/transports.py`` echo each 64-byte request on the stream it
came on: one stream per round trip, TLS only. Our QUIC session does what docs/quic.md (keys,
message streams, credit) asks of every message instead, and this module does exactly that much
with the library's own asyncio API and nothing of hnet's session, connection, driver, backend
or credit code:

* every message on its own new stream opened by its sender, its two frames (the sealed
  length, the sealed chunk) and FIN in one write, under a key derived for that stream and
  direction (``streams.DirectionKeys.key``, ``streams.seal_small``);
* the receiver opens it (``streams.open_whole``), delivers it, then sends FIN on the stream's
  empty return half: the acknowledgement that returns the sender's credit;
* a sender keeps at most ``QUIC_MAX_STREAMS`` messages unacknowledged and opens no stream the
  peer's stream credit does not allow, queueing the rest in order;
* an echo is a message of its own from the server, so a round trip is two streams, four
  frames sealed and opened, four FINs.

The sealing and opening are hnet's framing functions of ``hnet.core.quic.streams`` (a key
derivation and two AEAD calls each way, a few lines of Python around the ``cryptography``
calls), so the floor does the protocol's cryptography byte for byte. The keys are fixed
constants rather than a Noise handshake's, since only the message path is timed.

"Ours against this floor" is then the cost of hnet's own code on that path; "this floor
against the library's echo" is the cost of the protocol's shape on this library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
from collections import deque
from collections.abc import Callable
from typing import Any

from bench.common import LOOPBACK
from hnet.core.quic.errors import QuicProtocolError
from hnet.core.quic.streams import (
    DIR_I2R,
    DIR_R2I,
    DirectionKeys,
    open_whole,
    seal_small,
    wire_size,
)
from hnet.limits import NOISE_MAX_PLAINTEXT, QUIC_MAX_STREAMS

__all__ = ["PatternClient", "PatternError", "serve", "session_keys"]

#: The fixed "session": a handshake hash and the two Split() keys (no handshake is timed).
_H = hashlib.blake2s(b"hnet bench: pattern floor, handshake hash").digest()
_K_I2R = hashlib.blake2s(b"hnet bench: pattern floor, initiator to responder").digest()
_K_R2I = hashlib.blake2s(b"hnet bench: pattern floor, responder to initiator").digest()


#: The most a peer stream of the pattern can carry (one sealed one-chunk message): more is
#: refused before it is buffered.
_STREAM_MAX = wire_size(NOISE_MAX_PLAINTEXT)
#: Messages an end holds while it waits for credit (the benchmarks keep at most 100 in flight).
_QUEUED_MAX = 4096


class PatternError(Exception):
    """The floor's connection failed or broke the pattern."""


def session_keys(is_client: bool) -> tuple[DirectionKeys, DirectionKeys]:
    """(sending keys, receiving keys) of one end, as a session's split gives them."""
    i2r = DirectionKeys(_K_I2R, _H, DIR_I2R)
    r2i = DirectionKeys(_K_R2I, _H, DIR_R2I)
    return (i2r, r2i) if is_client else (r2i, i2r)


@functools.cache
def _protocol(backend: str, is_client: bool, can_open: Callable[[Any], bool]) -> type:
    """The library's ``QuicConnectionProtocol`` subclass that speaks the pattern (one end)."""
    base: Any = importlib.import_module(f"{backend}.asyncio").QuicConnectionProtocol
    events: Any = importlib.import_module(f"{backend}.quic.events")
    stream_data, terminated = events.StreamDataReceived, events.ConnectionTerminated
    own_parity = 0 if is_client else 1  # the low bit of the stream ids this end opens

    class PatternProtocol(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.send_keys, self.recv_keys = session_keys(is_client)
            self.unacked: set[int] = set()  # our message streams not yet acknowledged
            self.peak_unacked = 0  # the most there ever were (for tests)
            self.queued: deque[bytes] = deque()  # messages waiting for credit, in order
            self.parts: dict[int, bytearray] = {}  # peer streams not complete yet
            self.failure: str | None = None
            self.waiters: dict[bytes, deque[asyncio.Future[bytes]]] = {}
            self._transmit_soon: asyncio.Handle | None = None
            super().__init__(*args, **kwargs)

        # --- sending -----------------------------------------------------------------

        def send(self, message: bytes) -> None:
            """Queue ``message``; it goes on a stream of its own as soon as credit allows."""
            if not 0 < len(message) <= NOISE_MAX_PLAINTEXT:
                raise PatternError(f"the floor sends one-chunk messages, not {len(message)} B")
            if len(self.queued) >= _QUEUED_MAX:
                self._fail(f"more than {_QUEUED_MAX} messages waiting for credit")
                return
            self.queued.append(message)
            self._drain()

        def _drain(self) -> None:
            quic, queued = self._quic, self.queued
            while queued and len(self.unacked) < QUIC_MAX_STREAMS and can_open(quic):
                message = queued.popleft()
                try:
                    sid = quic.get_next_available_stream_id()
                    quic.send_stream_data(sid, seal_small(self.send_keys.key(sid), message), True)
                except Exception as e:  # the connection closed before we heard of it
                    self._fail(f"cannot send: {e}")
                    return
                unacked = self.unacked
                unacked.add(sid)
                if len(unacked) > self.peak_unacked:
                    self.peak_unacked = len(unacked)

        def transmit(self) -> None:
            # after every datagram taken in: acknowledgements and stream credit may have come
            if self._transmit_soon is not None:
                self._transmit_soon.cancel()
                self._transmit_soon = None
            if self.queued and self.failure is None:
                self._drain()
            super().transmit()

        # --- receiving ---------------------------------------------------------------

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, terminated):
                self._fail(f"connection closed ({event.error_code}: {event.reason_phrase})")
                return
            if not isinstance(event, stream_data) or self.failure is not None:
                return
            sid, data = event.stream_id, event.data
            if sid & 1 == own_parity:  # the return half of one of our messages
                if data or not event.end_stream or sid not in self.unacked:
                    self._fail(f"stream {sid}: not an acknowledgement")
                    return
                self.unacked.discard(sid)
                return
            held = self.parts.get(sid)
            if (len(held) if held is not None else 0) + len(data) > _STREAM_MAX:
                self._fail(f"stream {sid}: more than one sealed one-chunk message")
                return
            if not event.end_stream:
                if held is None:
                    self.parts[sid] = bytearray(data)
                else:
                    held += data
                return
            if held is not None:
                del self.parts[sid]
                data = bytes(held + data)
            try:
                message = open_whole(self.recv_keys.key(sid), data)
            except QuicProtocolError as e:
                message = None
                self._fail(f"stream {sid}: {e}")
            if message is None:
                self._fail(f"stream {sid}: not one sealed one-chunk message")
                return
            self.delivered(message)
            self._quic.send_stream_data(sid, b"", True)  # delivered: acknowledge it

        def delivered(self, message: bytes) -> None:
            if not is_client:  # the server: an echo, as a message of its own
                self.send(message)
                return
            waiters = self.waiters.get(message)
            if not waiters:
                self._fail("a reply nobody asked for")
                return
            fut = waiters.popleft()
            if not waiters:
                del self.waiters[message]
            if not fut.done():
                fut.set_result(message)

        def _fail(self, reason: str) -> None:
            """Fail every waiter; a broken pattern also closes the connection, so the peer's
            waiters fail too instead of waiting for an answer that will not come."""
            first = self.failure is None
            self.failure = self.failure or reason
            for waiters in self.waiters.values():
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(PatternError(self.failure))
            self.waiters.clear()
            self.queued.clear()
            if first and not reason.startswith("connection closed"):
                with contextlib.suppress(Exception):  # it may be closed already
                    self._quic.close(error_code=0x3, reason_phrase=reason)  # PROTOCOL_VIOLATION
                    self.transmit()

        # --- the client's side -------------------------------------------------------

        def request(self, message: bytes) -> asyncio.Future[bytes]:
            """Send ``message``; the future of its echo (matched by its bytes)."""
            if self.failure is not None:
                raise PatternError(self.failure)
            fut: asyncio.Future[bytes] = self._loop.create_future()
            self.waiters.setdefault(message, deque()).append(fut)
            self.send(message)
            # on the next loop iteration: requests made in this one share the datagrams (as
            # hnet's sessions flush)
            if self._transmit_soon is None:
                self._transmit_soon = self._loop.call_soon(self.transmit)
            return fut

    PatternProtocol.__name__ = f"Pattern{'Client' if is_client else 'Server'}Protocol"
    return PatternProtocol


async def serve(backend: str, configuration: Any, can_open: Callable[[Any], bool]) -> Any:
    """An echo server of the pattern on loopback (the library's server object; its port is
    ``server._transport.get_extra_info("sockname")[1]``)."""
    lib: Any = importlib.import_module(f"{backend}.asyncio")
    return await lib.serve(
        LOOPBACK,
        0,
        configuration=configuration,
        create_protocol=_protocol(backend, False, can_open),
    )


class PatternClient:
    """One client connection of the pattern (TLS handshake done when :meth:`dial` returns)."""

    def __init__(self, stack: contextlib.AsyncExitStack, proto: Any) -> None:
        self._stack = stack
        self.proto = proto

    @classmethod
    async def dial(
        cls,
        backend: str,
        port: int,
        configuration: Any,
        can_open: Callable[[Any], bool],
        timeout: float,
    ) -> PatternClient:
        lib: Any = importlib.import_module(f"{backend}.asyncio")
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(timeout):
                proto = await stack.enter_async_context(
                    lib.connect(
                        LOOPBACK,
                        port,
                        configuration=configuration,
                        create_protocol=_protocol(backend, True, can_open),
                    )
                )
        except BaseException:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await stack.aclose()
            raise
        return cls(stack, proto)

    @property
    def failure(self) -> str | None:
        failure: str | None = self.proto.failure
        return failure

    async def request(self, message: bytes) -> bytes:
        """``message`` to the server and its echo back, each a message of the pattern."""
        reply: bytes = await self.proto.request(message)
        return reply

    async def echo(self, size: int) -> None:
        message = bytes(i & 0xFF for i in range(size))
        if await self.request(message) != message:
            raise PatternError("the echo differs from what was sent")

    async def aclose(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self._stack.aclose()
        transport = getattr(self.proto, "_transport", None)
        if transport is not None:
            transport.close()
