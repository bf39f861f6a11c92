"""One listener layer for every transport of a node: TCP, WebSocket and QUIC.

:class:`Listeners` binds the ports of the node's record and turns each inbound connection into
either an authenticated :class:`~hnet.transport.session.Session` (handed to ``on_session``,
not yet started) or, when its first frame is a RoutingRequest, a routed connection handed to
``route`` (the router, which pairs it; docs/protocol.md §7) as a pipe end that forwards what
arrived behind the RoutingRequest first.

All three transports share one :class:`~hnet.transport.gate.HandshakeGate` and one handshake
deadline (§3: ``HANDSHAKE_TIMEOUT``, at most ``MAX_PENDING_HANDSHAKES``). TCP and WebSocket
connections are accepted here (we own the TCP accept of both): a connection takes its slot at
the accept, before a byte is read (for WebSocket, before the HTTP upgrade), and holds it
until its Noise handshake completes or fails, all within one deadline from the accept; a
connection past the cap is closed at once. An initiator whose name we do not know yet is
looked up with ``resolve_key`` within that same deadline. QUIC has its own listener
(:class:`~hnet.transport.quic.QuicListener`), given the same gate and resolver.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.exceptions import WebSocketException

from hnet import limits
from hnet.core.framing import FramingError
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.passthroughs import PipeEnd
from hnet.core.relay import RoutingRefused
from hnet.log import get_logger
from hnet.supervisor import Supervisor
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.gate import HandshakeGate, Slot
from hnet.transport.pipes import TcpEnd, WsEnd
from hnet.transport.quic import QuicListener
from hnet.transport.session import ResolveKey, Session, SessionError

log = get_logger("listen")

__all__ = ["ListenConfig", "ListenError", "Listeners", "Route"]

#: What is left of a routed connection once admitted: await it; it returns when done.
Rest = Callable[[], Awaitable[None]]
#: (first frame, the connection as a pipe end) -> its rest, or raises RoutingRefused
Route = Callable[[bytes, PipeEnd], Awaitable[Rest]]

#: What a failed inbound handshake can raise (anything else is a bug of ours).
_HANDSHAKE_ERRORS = (
    HandshakeError,
    SessionError,
    FramingError,
    TimeoutError,
    OSError,
    WebSocketException,
)


class ListenError(Exception):
    """A port cannot be bound; the message is one line for the user."""


@dataclass
class ListenConfig:
    host: str
    #: transport -> port (0 or missing: not offered)
    ports: dict[str, int]
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    quic_backend: str | None = None
    #: WebSocket keepalive of accepted connections (docs/protocol.md §5)
    ws_ping_interval: float = limits.WS_PING_INTERVAL
    ws_ping_timeout: float = limits.WS_PING_INTERVAL


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
        self._config = ListenConfig(host="", ports={})
        self._servers: dict[str, asyncio.Server] = {}
        self.quic: QuicListener | None = None
        self.listening: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, int] = {"handshake_failures": 0}

    async def start(self, config: ListenConfig) -> None:
        """Bind every offered port (TCP, QUIC, WS); on failure nothing stays bound.
        A port of 0 in ``config.ports`` is not offered; :attr:`listening` has the bound
        address of each transport."""
        self._config = config
        host, ports = config.host, config.ports
        try:
            for kind in ("tcp", "quic", "ws"):
                port = ports.get(kind)
                if not port:
                    continue
                if kind == "quic":
                    self.quic = QuicListener(backend=config.quic_backend, gate=self.gate)
                    await self.quic.start(
                        host,
                        port,
                        make_responder=self._make_responder,
                        on_session=self._on_session,
                        handshake_timeout=config.handshake_timeout,
                        resolve_key=self._resolve_key,
                    )
                    self.listening["quic"] = (host, port)
                    continue
                self._servers[kind] = await asyncio.start_server(
                    self._acceptor(kind), host, port, limit=tcp_transport.READ_SIZE
                )
                self.listening[kind] = (host, port)
        except OSError as e:
            await self.aclose()
            proto = next(
                t for t in ("tcp", "quic", "ws") if ports.get(t) and t not in self.listening
            )
            if e.errno == errno.EADDRINUSE:
                raise ListenError(f"{proto} port {ports[proto]} on {host} is taken") from None
            raise ListenError(f"cannot listen on {host}:{ports[proto]} ({e.strerror})") from None

    def close(self) -> None:
        """Stop accepting (and close QUIC connections) now. Handshakes in progress belong to
        the supervisor; established sessions to whoever took them."""
        for server in self._servers.values():
            server.close()
        if self.quic is not None:
            self.quic.close()

    async def aclose(self) -> None:
        self.close()

    # --- TCP and WebSocket ------------------------------------------------------------------

    def _acceptor(self, kind: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # The slot is taken before anything is read: the WS upgrade counts too (§3).
            peer = writer.get_extra_info("peername")
            slot = self.gate.enter(str(peer[0]) if peer else None)
            if slot is None:
                writer.close()
                return

            def evict() -> None:  # the gate is full and a newcomer needs this slot
                log.info("inbound handshake evicted (handshakes full)", remote=_remote(peer))
                writer.transport.abort()  # the handshake then fails at once

            slot.on_evict = evict
            try:
                self._sup.spawn(self._accept(kind, reader, writer, slot), name=f"accept {kind}")
            except RuntimeError:  # shutting down
                slot.leave()
                writer.close()

        return accepted

    async def _accept(
        self,
        kind: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slot: Slot | None = None,
    ) -> None:
        """One inbound TCP or WS connection: handshake (or route) within the deadline."""
        cfg = self._config
        peer = writer.get_extra_info("peername")
        rest: Rest | None = None
        session: Session | None = None
        try:
            try:
                async with asyncio.timeout(cfg.handshake_timeout):
                    tcp_transport.tune_socket(writer)
                    end: PipeEnd
                    result: Session | tcp_transport.Routed
                    if kind == "tcp":
                        result = await tcp_transport.accept_or_route(
                            reader, writer, self._make_responder(), self._resolve_key
                        )
                        if isinstance(result, tcp_transport.Routed):
                            end = TcpEnd(reader, writer, result.buffered)
                    else:
                        ws = await ws_transport.open_server(
                            reader,
                            writer,
                            ping_interval=cfg.ws_ping_interval,
                            ping_timeout=cfg.ws_ping_timeout,
                        )
                        result = await ws_transport.accept_or_route(
                            ws, self._make_responder(), self._resolve_key
                        )
                        if isinstance(result, tcp_transport.Routed):
                            end = WsEnd(ws, result.buffered)
                    if isinstance(result, tcp_transport.Routed):
                        rest = await self._route(result.first, end)
                    else:
                        session = result
            finally:
                if slot is not None:
                    slot.leave()
        except RoutingRefused:
            writer.close()
            return
        except _HANDSHAKE_ERRORS as e:
            self.stats["handshake_failures"] += 1
            log.info(f"inbound {kind} handshake failed", remote=_remote(peer), reason=_reason(e))
            writer.close()  # before authentication we wrote a few hundred bytes at most
            return
        except BaseException:
            writer.close()
            raise
        if rest is not None:
            await rest()
            return
        assert session is not None
        self._on_session(session)


def _remote(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
