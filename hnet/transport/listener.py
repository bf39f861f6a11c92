"""One listener layer for every transport of a node: TCP, WebSocket and QUIC.

:class:`Listeners` binds the ports of the node's record and turns each inbound connection into
either an authenticated :class:`~hnet.transport.session.Session` (handed to ``on_session``,
not yet started) or, when its first frame is a RoutingRequest, a routed connection handed to
``route`` (the router, which pairs it). All three transports share one
:class:`~hnet.transport.gate.HandshakeGate` and one handshake deadline: a connection holds a
slot from its accept until its handshake completes or fails (the WebSocket upgrade is
bounded by the same deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import WebSocketException

from hnet import limits
from hnet.core.framing import FirstFrame, FramingError, classify_first_frame
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.passthroughs import PipeEnd
from hnet.core.relay import RoutingRefused
from hnet.log import get_logger
from hnet.supervisor import Supervisor
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.gate import HandshakeGate
from hnet.transport.pipes import TcpEnd, WsEnd
from hnet.transport.quic import QuicListener
from hnet.transport.session import ResolveKey, Session, SessionError

log = get_logger("listen")

__all__ = ["ListenError", "Listeners", "Route"]

#: What is left of a routed connection once admitted: await it; it returns when done.
Rest = Callable[[], Awaitable[None]]
#: (first frame, the connection as a pipe end) -> its rest, or raises RoutingRefused
Route = Callable[[bytes, PipeEnd], Awaitable[Rest]]


class ListenError(Exception):
    """A port cannot be bound; the message is one line for the user."""


@dataclass
class ListenConfig:
    host: str
    #: transport -> port (0 or missing: not offered)
    ports: dict[str, int]
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    quic_backend: str | None = None


class Listeners:
    def __init__(
        self,
        *,
        make_responder: Callable[[], PeerHandshake],
        on_session: Callable[[Session], None],
        route: Route,
        supervisor: Supervisor,
        resolve_key: ResolveKey | None = None,
        gate: HandshakeGate | None = None,
    ) -> None:
        self._make_responder = make_responder
        self._on_session = on_session
        self._route = route
        self._resolve_key = resolve_key
        self._sup = supervisor
        self.gate = gate if gate is not None else HandshakeGate()
        self._timeout = limits.HANDSHAKE_TIMEOUT
        self._tcp: asyncio.Server | None = None
        self._ws: Server | None = None
        self.quic: QuicListener | None = None
        self.listening: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, int] = {"handshake_failures": 0}

    async def start(self, config: ListenConfig) -> None:
        """Bind every offered port (TCP, QUIC, WS); on failure nothing stays bound."""
        self._timeout = config.handshake_timeout
        host, ports = config.host, config.ports
        try:
            if ports.get("tcp"):
                self._tcp = await asyncio.start_server(
                    self._on_tcp, host, ports["tcp"], limit=tcp_transport.READ_SIZE
                )
                self.listening["tcp"] = (host, ports["tcp"])
            if ports.get("quic"):
                self.quic = QuicListener(backend=config.quic_backend, gate=self.gate)
                await self.quic.start(
                    host,
                    ports["quic"],
                    make_responder=self._make_responder,
                    on_session=self._on_session,
                    handshake_timeout=config.handshake_timeout,
                )
                self.listening["quic"] = (host, ports["quic"])
            if ports.get("ws"):
                self._ws = await ws_serve(
                    self._on_ws,
                    host,
                    ports["ws"],
                    open_timeout=config.handshake_timeout,
                    **ws_transport.WS_OPTIONS,  # type: ignore[arg-type]
                )
                self.listening["ws"] = (host, ports["ws"])
        except OSError as e:
            await self.aclose()
            proto = next(
                t for t in ("tcp", "quic", "ws") if ports.get(t) and t not in self.listening
            )
            if e.errno == errno.EADDRINUSE:
                raise ListenError(f"{proto} port {ports[proto]} on {host} is taken") from None
            raise ListenError(f"cannot listen on {host}:{ports[proto]} ({e.strerror})") from None

    def close(self) -> None:
        """Stop accepting (and close QUIC connections) now."""
        if self._tcp is not None:
            self._tcp.close()
        if self.quic is not None:
            self.quic.close()
        if self._ws is not None:
            self._ws.close(close_connections=True)

    async def aclose(self) -> None:
        self.close()
        if self._ws is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._ws.wait_closed()

    # --- TCP -------------------------------------------------------------------------------

    def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.gate.try_enter():
            writer.close()
            return
        try:
            self._sup.spawn(self._accept_tcp(reader, writer), name="accept tcp")
        except RuntimeError:  # shutting down
            self.gate.leave()
            writer.close()

    async def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        rest: Rest | None = None
        try:
            async with asyncio.timeout(self._timeout):
                first = await tcp_transport.read_first_frame(reader, writer)
                if classify_first_frame(first) is FirstFrame.ROUTING_REQUEST:
                    rest = await self._route(first, TcpEnd(reader, writer))
                else:
                    session = await tcp_transport.accept(
                        reader,
                        writer,
                        self._make_responder(),
                        first=first,
                        resolve=self._resolve_key,
                    )
        except RoutingRefused:
            writer.close()
            return
        except (HandshakeError, SessionError, FramingError, TimeoutError, OSError) as e:
            self.stats["handshake_failures"] += 1
            log.info("inbound tcp handshake failed", remote=str(peer), reason=_reason(e))
            writer.close()
            return
        finally:
            self.gate.leave()
        if rest is not None:
            await rest()
            return
        self._on_session(session)

    # --- WebSocket -------------------------------------------------------------------------

    async def _on_ws(self, ws: ServerConnection) -> None:
        if not self.gate.try_enter():
            return
        rest: Rest | None = None
        try:
            async with asyncio.timeout(self._timeout):
                first = await ws_transport.read_first_message(ws)
                if classify_first_frame(first) is FirstFrame.ROUTING_REQUEST:
                    rest = await self._route(first, WsEnd(ws))
                else:
                    session = await ws_transport.accept(
                        ws, self._make_responder(), first=first, resolve=self._resolve_key
                    )
        except RoutingRefused:
            return
        except (
            HandshakeError,
            SessionError,
            FramingError,
            TimeoutError,
            OSError,
            WebSocketException,
        ) as e:
            self.stats["handshake_failures"] += 1
            log.info(
                "inbound ws handshake failed", remote=str(ws.remote_address), reason=_reason(e)
            )
            return
        finally:
            self.gate.leave()
        if rest is not None:
            # The WS server closes the connection when this handler returns: stay until the
            # passthrough ends.
            await rest()
            return
        self._on_session(session)
        # The WS server closes the connection when this handler returns: stay until it ends.
        await ws.wait_closed()


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
