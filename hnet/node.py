"""``Node``: the composition of PKI, listeners, dialler, peers, routing and the net module.

Used alike by the CLI, the tests and the benchmarks. A direct node listens on the ports of its
own HNS record; an indirect one (its record lists routers) listens nowhere and keeps sessions
to its routers instead. Peers are dialled from their records, directly or through their
routers. A direct node started with ``max_passthroughs > 0`` is also a router. Local callers
(the control socket, tests) use :meth:`Node.request`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import WebSocketException

from hnet import keys, limits
from hnet.core.framing import FirstFrame, FramingError, classify_first_frame
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.wire import (
    Address,
    ConnectionRequest,
    KernelMessage,
    LazyLoadBlob,
    NetResponse,
    Rejected,
    Request,
    ResponseMessage,
    SendErrorKind,
    encode_kernel_message,
    encode_net_action,
)
from hnet.log import get_logger
from hnet.net.indirect import IndirectRole
from hnet.net.netmodule import NET_PROCESS, NetModule
from hnet.net.peers import DialError, PeerManager, failure_reason
from hnet.net.pki import Pki
from hnet.net.requests import Reply, RequestTracker, SendFailed
from hnet.net.routed import ROUTED_TRANSPORTS, dial_via_routers
from hnet.net.router import Rest, Router, RoutingRefused
from hnet.supervisor import Supervisor
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.pipes import TcpEnd, WsEnd
from hnet.transport.quic import QuicListener
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session, SessionClosed, SessionError

log = get_logger("node")

#: Dial preference: QUIC (our extension, offered only by hnet peers), then TCP before WS as
#: the reference does.
TRANSPORTS = ("quic", "tcp", "ws")

Connector = Callable[[str, int, PeerHandshake], Awaitable[Session]]
#: The process our ping requests come from.
PING_PROCESS = "ping:hnet:sys"


class NodeStartError(Exception):
    """The node cannot start; the message is one line for the user."""


@dataclass
class NodeConfig:
    name: str
    key: Ed25519PrivateKey
    home: Path
    bind: str | None = None
    max_peers: int = limits.MAX_PEERS
    idle_timeout: float = limits.IDLE_TIMEOUT
    retire_grace: float = limits.SESSION_RETIRE_GRACE
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    transports: tuple[str, ...] = TRANSPORTS
    quic_backend: str | None = None
    #: passthroughs (pending + active) this node holds as a router; 0: not a router
    max_passthroughs: int = limits.MAX_PASSTHROUGHS
    router_reconnect_interval: float = limits.ROUTER_RECONNECT_INTERVAL
    extra: dict[str, Any] = field(default_factory=dict)


class Node:
    def __init__(self, config: NodeConfig, pki: Pki) -> None:
        self.config = config
        self.name = config.name
        self.pki = pki
        self.started = time.time()
        self._sup = Supervisor(f"node {config.name}")
        self._tracker = RequestTracker()
        self.peers = PeerManager(
            our_name=config.name,
            dialer=self._dial,
            on_message=self._on_network_message,
            on_send_error=self._on_send_error,
            supervisor=self._sup,
            max_peers=config.max_peers,
            idle_timeout=config.idle_timeout,
            retire_grace=config.retire_grace,
        )
        self.net = NetModule(
            our_name=config.name,
            signing_key=config.key,
            pki=pki,
            send=self.send,
            connected_peers=lambda: [i.name for i in self.peers.infos() if i.transport],
            diagnostics=self.diagnostics,
            on_connection_request=self._on_connection_request,
            on_response=self._on_net_response,
        )
        self.router = Router(
            our_name=config.name,
            max_passthroughs=config.max_passthroughs,
            lookup=pki.networking_key,
            record=pki.record,
            request_connection=self._send_connection_request,
        )
        #: set at start when our record lists routers instead of an address
        self.indirect: IndirectRole | None = None
        self._connectors: dict[str, Connector] = {
            "tcp": tcp_transport.connect,
            "ws": ws_transport.connect,
            "quic": self._connect_quic,
        }
        self._quic_listener: QuicListener | None = None
        self._tcp_server: asyncio.Server | None = None
        self._ws_server: Server | None = None
        self._handshakes = 0
        self.listening: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, int] = {"handshake_failures": 0, "protocol_errors": 0}

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Check our record and key, then listen on our record's ports."""
        rec = self.pki.record(self.name)
        if rec is None:
            raise NodeStartError(f"{self.name}: not in HNS ({self.pki.source})")
        if rec.net_key is None or keys.parse_public_key(rec.net_key) != keys.public_bytes(
            self.config.key
        ):
            raise NodeStartError(f"{self.name}: key file does not match the name's ~net-key in HNS")
        if not rec.ips and rec.routers:
            self._start_indirect(rec.routers)
            return
        ports = {t: rec.ports.get(t, 0) for t in self.config.transports}
        if not any(ports.values()):
            raise NodeStartError(
                f"{self.name}: HNS record has no port for any transport "
                f"({', '.join(self.config.transports)})"
            )
        host = self.config.bind or (rec.ips[0] if rec.ips else None)
        if host is None:
            raise NodeStartError(f"{self.name}: HNS record has no IP to listen on")
        try:
            if ports.get("tcp"):
                self._tcp_server = await asyncio.start_server(
                    self._on_tcp, host, ports["tcp"], limit=tcp_transport.READ_SIZE
                )
                self.listening["tcp"] = (host, ports["tcp"])
            if ports.get("quic"):
                self._quic_listener = QuicListener(backend=self.config.quic_backend)
                await self._quic_listener.start(
                    host,
                    ports["quic"],
                    make_responder=self._responder,
                    on_session=self.peers.attach,
                    handshake_timeout=self.config.handshake_timeout,
                )
                self.listening["quic"] = (host, ports["quic"])
            if ports.get("ws"):
                self._ws_server = await ws_serve(
                    self._on_ws,
                    host,
                    ports["ws"],
                    **ws_transport.WS_OPTIONS,  # type: ignore[arg-type]
                )
                self.listening["ws"] = (host, ports["ws"])
        except OSError as e:
            await self._stop_listening()
            proto = next(
                t for t in ("tcp", "quic", "ws") if ports.get(t) and t not in self.listening
            )
            if e.errno == errno.EADDRINUSE:
                raise NodeStartError(
                    f"{self.name}: {proto} port {ports[proto]} on {host} is taken"
                ) from None
            raise NodeStartError(
                f"{self.name}: cannot listen on {host}:{ports[proto]} ({e.strerror})"
            ) from None
        log.info("node up", name=self.name, listening=self.listening)

    def _start_indirect(self, routers: tuple[str, ...]) -> None:
        """An indirect node: no listener (no address in our record); sessions to our routers."""
        if self.config.max_passthroughs:
            log.warning("an indirect node cannot route; --max-passthroughs ignored")
            self.router.table.max_passthroughs = 0
        self.indirect = IndirectRole(
            our_name=self.name,
            routers=routers,
            key=self.config.key,
            record=self.pki.record,
            lookup=self.pki.networking_key,
            peers=self.peers,
            dial_router=lambda router: self._dial(router, None),
            respond=self.net.respond,
            reconnect_interval=self.config.router_reconnect_interval,
            handshake_timeout=self.config.handshake_timeout,
        )
        self.indirect.start()
        log.info("node up (indirect)", name=self.name, routers=list(routers))

    async def _stop_listening(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._quic_listener is not None:
            self._quic_listener.close()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._ws_server.wait_closed()

    async def aclose(self) -> None:
        """Stop listening, close sessions, report queued and outstanding messages."""
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._quic_listener is not None:
            self._quic_listener.close()
        if self.indirect is not None:
            await self.indirect.aclose()
        self.router.close()
        await self.peers.aclose()
        self._tracker.fail_all("node shutting down")
        await self._sup.aclose()
        await self._stop_listening()
        log.info("node down", name=self.name)

    # --- inbound connections ---------------------------------------------------------------

    def _responder(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=False,
            our_name=self.name,
            signing_key=self.config.key,
            lookup=self.pki.networking_key,
        )

    def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._handshakes >= limits.MAX_PENDING_HANDSHAKES:
            writer.close()
            return
        self._handshakes += 1
        try:
            self._sup.spawn(self._accept_tcp(reader, writer), name="accept tcp")
        except RuntimeError:
            self._handshakes -= 1
            writer.close()

    async def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        rest: Rest | None = None
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                first = await tcp_transport.read_first_frame(reader, writer)
                if classify_first_frame(first) is FirstFrame.ROUTING_REQUEST:
                    rest = await self.router.admit(first, TcpEnd(reader, writer))
                else:
                    session = await tcp_transport.accept(
                        reader, writer, self._responder(), first=first
                    )
        except RoutingRefused:
            writer.close()
            return
        except (HandshakeError, SessionError, FramingError, TimeoutError, OSError) as e:
            self.stats["handshake_failures"] += 1
            log.info("inbound tcp handshake failed", remote=str(peer), reason=failure_reason(e))
            writer.close()
            return
        finally:
            self._handshakes -= 1
        if rest is not None:
            await rest()
            return
        self.peers.attach(session)

    async def _on_ws(self, ws: ServerConnection) -> None:
        if self._handshakes >= limits.MAX_PENDING_HANDSHAKES:
            return
        self._handshakes += 1
        rest: Rest | None = None
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                first = await ws_transport.read_first_message(ws)
                if classify_first_frame(first) is FirstFrame.ROUTING_REQUEST:
                    rest = await self.router.admit(first, WsEnd(ws))
                else:
                    session = await ws_transport.accept(ws, self._responder(), first=first)
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
                "inbound ws handshake failed",
                remote=str(ws.remote_address),
                reason=failure_reason(e),
            )
            return
        finally:
            self._handshakes -= 1
        if rest is not None:
            # The WS server closes the connection when this handler returns: stay until the
            # passthrough ends.
            await rest()
            return
        self.peers.attach(session)
        # The WS server closes the connection when this handler returns: stay until it ends.
        await ws.wait_closed()

    async def _connect_quic(self, host: str, port: int, hs: PeerHandshake) -> Session:
        return await quic_connect(host, port, hs, backend=self.config.quic_backend)

    # --- dialling --------------------------------------------------------------------------

    async def _dial(self, name: str, via: str | None) -> Session:
        """An established session with ``name``, or DialError saying what was tried.

        Without ``via``: when the peer offers QUIC (our extension, so an hnet peer), QUIC and
        the TCP-then-WS fallback start together; QUIC wins if it is up first, and if the
        fallback is up first it is used at once and QUIC, when it comes up, takes over (the
        fallback session is retired). A peer whose UDP is filtered is thus reached as fast as
        over TCP, with no fixed delay. Each attempt is bounded by the handshake timeout.
        """
        rec = self.pki.record(name)
        if rec is None:
            raise DialError(f"{name}: not in HNS ({self.pki.source})")
        if not rec.ips:
            return await self._dial_routed(name, rec.routers, via)
        if via is not None:
            return await self._dial_in_order(name, [via])
        offered = [t for t in self.config.transports if rec.ports.get(t)]
        if not offered:
            raise DialError(f"{name}: HNS record offers no transport we speak")
        if self.indirect is not None and self.indirect.is_router(name):
            # Our session to one of our routers: TCP then WS as the reference, no QUIC race.
            # (A race's loser can reach the router after the winner and replace it there,
            # leaving the router without our proxy session until the next reconnect round.)
            return await self._dial_in_order(name, [t for t in offered if t != "quic"] or offered)
        if offered[0] != "quic" or len(offered) == 1:
            return await self._dial_in_order(name, offered)
        return await self._dial_racing(name, offered[1:])

    async def _dial_routed(self, name: str, routers: tuple[str, ...], via: str | None) -> Session:
        """An indirect node: through one of its routers (TCP or WS; QUIC is not routed)."""
        if via is not None and via not in ROUTED_TRANSPORTS:
            raise DialError(f"{name}: indirect node, and {via} connections are not routed")
        allowed = [via] if via is not None else list(self.config.transports)
        session, router = await dial_via_routers(
            name,
            routers,
            our_name=self.name,
            key=self.config.key,
            record=self.pki.record,
            lookup=self.pki.networking_key,
            transports=[t for t in ROUTED_TRANSPORTS if t in allowed],
            timeout=self.config.handshake_timeout,
        )
        self.peers.note_routed(session, router)
        return session

    async def _dial_racing(self, name: str, fallback: list[str]) -> Session:
        quic = self._sup.spawn(self._attempt(name, ["quic"]), name=f"dial quic {name}")
        other = self._sup.spawn(self._attempt(name, fallback), name=f"dial {name}")
        try:
            await asyncio.wait({quic, other}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            quic.cancel()
            other.cancel()
            raise
        if quic.done() and isinstance(quic.result(), Session):
            if not other.done():
                other.cancel()
            elif not other.cancelled() and isinstance(other.result(), Session):
                # Both came up: the peer may already use the fallback; read it a while.
                self.peers.adopt_retired(_session_or_raise(other.result()))
            return _session_or_raise(quic.result())
        if other.done() and isinstance(other.result(), Session):
            # Use the fallback now; let QUIC take over when (if) it comes up.
            self._sup.spawn(self._upgrade(quic), name=f"upgrade {name}")
            return _session_or_raise(other.result())
        results = [await quic, await other]
        for r in results:
            if isinstance(r, Session):
                return r
        reasons = "; ".join(
            str(r).removeprefix(f"{name}: unreachable ").strip("()") for r in results
        )
        raise DialError(f"{name}: unreachable ({reasons})")

    async def _upgrade(self, attempt: asyncio.Task[Session | DialError]) -> None:
        result = await attempt
        if isinstance(result, DialError):
            log.info("QUIC not available; staying on the fallback", reason=str(result))
            return
        self.peers.upgrade(result)

    async def _attempt(self, name: str, order: list[str]) -> Session | DialError:
        try:
            return await self._dial_in_order(name, order)
        except DialError as e:
            return e

    async def _dial_in_order(self, name: str, order: list[str]) -> Session:
        rec = self.pki.record(name)
        if rec is None or not rec.ips:
            raise DialError(f"{name}: not in HNS ({self.pki.source})")
        ip = rec.ips[0]
        errors: list[str] = []
        for transport in order:
            port = rec.ports.get(transport, 0)
            connect = self._connectors.get(transport)
            if not port or connect is None:
                errors.append(f"{transport}: not offered")
                continue
            hs = PeerHandshake(
                initiator=True,
                our_name=self.name,
                signing_key=self.config.key,
                lookup=self.pki.networking_key,
                expected_peer=name,
                # An indirect node asks its routers to route for it on every session it opens.
                proxy_request=self.indirect is not None and self.indirect.is_router(name),
            )
            try:
                async with asyncio.timeout(self.config.handshake_timeout):
                    return await connect(ip, port, hs)
            except (HandshakeError, SessionError, TimeoutError, OSError, WebSocketException) as e:
                errors.append(f"{transport} {ip}:{port}: {failure_reason(e)}")
        raise DialError(f"{name}: unreachable ({'; '.join(errors)})")

    # --- routing ---------------------------------------------------------------------------

    async def _send_connection_request(self, target: str, source: str) -> bool:
        """As a router: ask ``target``, over the session it opened with ``proxy_request``, to
        open its side of a routed connection for ``source``."""
        session = self.peers.routing_for(target)
        if session is None:
            return False
        km = KernelMessage(
            id=secrets.randbits(64),
            source=self.net.address,
            target=Address.net(target),
            rsvp=None,
            message=Request(
                inherit=False,
                expects_response=int(limits.ROUTING_PENDING_LIFETIME),
                body=encode_net_action(ConnectionRequest(source)),
                metadata=None,
                capabilities=(),
            ),
            lazy_load_blob=None,
        )
        try:
            await session.send(encode_kernel_message(km))
        except SessionClosed:
            return False
        return True

    def _on_connection_request(self, km: KernelMessage, source: str) -> bool:
        if self.indirect is None:
            return False
        return self.indirect.on_connection_request(km, source)

    def _on_net_response(self, km: KernelMessage, response: NetResponse) -> None:
        if isinstance(response, Rejected):
            self.router.rejected(response.name, km.source.node)

    # --- messages --------------------------------------------------------------------------

    async def send(self, km: KernelMessage, via: str | None = None) -> None:
        """Send a message from a local process, to the network or to ourselves."""
        if km.target.node == self.name:
            await self._dispatch(km, via=None)
        else:
            await self.peers.send(km, via=via)

    async def _on_network_message(self, km: KernelMessage, session: Session) -> None:
        if km.target.node != self.name:
            log.warning(
                "message for another node dropped", target=str(km.target), peer=session.peer_name
            )
            return
        await self._dispatch(km, via=session.transport)

    async def _dispatch(self, km: KernelMessage, via: str | None) -> None:
        if str(km.target.process) == NET_PROCESS:
            await self.net.handle(km, via)
        elif isinstance(km.message, ResponseMessage) and self._tracker.resolve(km, via):
            return
        else:
            log.info(
                "no such process; message dropped", target=str(km.target), source=str(km.source)
            )

    async def _on_send_error(self, km: KernelMessage, kind: SendErrorKind, reason: str) -> None:
        if km.source.node == self.name and self._tracker.fail(km.id, kind, reason):
            return
        log.warning(
            "send failed",
            kind=kind.value,
            target=str(km.target),
            source=str(km.source),
            reason=reason,
        )

    async def request(
        self,
        target: Address,
        body: bytes,
        *,
        timeout: float = limits.DEFAULT_REQUEST_TIMEOUT,
        via: str | None = None,
        process: str = PING_PROCESS,
        blob: LazyLoadBlob | None = None,
    ) -> Reply:
        """Send a request and wait for its response; raise SendFailed (Offline/Timeout)."""
        rid, fut = self._tracker.open(target.node)
        expects = max(1, int(timeout + 0.999))
        km = KernelMessage(
            id=rid,
            source=Address.parse(f"{self.name}@{process}"),
            target=target,
            rsvp=None,
            message=Request(
                inherit=False, expects_response=expects, body=body, metadata=None, capabilities=()
            ),
            lazy_load_blob=blob,
        )
        try:
            await self.send(km, via=via)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise SendFailed(SendErrorKind.TIMEOUT, f"no response within {timeout:g} s") from None
        finally:
            self._tracker.close(rid)

    # --- introspection ---------------------------------------------------------------------

    def diagnostics(self) -> str:
        infos = self.peers.infos()
        listening = ", ".join(f"{t} {h}:{p}" for t, (h, p) in self.listening.items())
        lines = [
            f"node {self.name}, up {time.time() - self.started:.0f} s",
            f"listening: {listening or 'nowhere'}",
            f"PKI: {len(self.pki)} records from {self.pki.source}",
        ]
        if self.indirect is not None:
            lines.append(self.indirect.describe())
        if self.router.enabled:
            lines.append(self.router.describe())
        routing_for = [i.name for i in infos if i.routing_for]
        if routing_for:
            lines.append(f"routing for: {', '.join(routing_for)}")
        lines.append(f"peers: {len(infos)} ({self.peers.max_peers} max)")
        for i in infos:
            state = f"{i.transport} {i.remote}" if i.transport else "dialling"
            if i.router:
                state += f" via router {i.router}"
            if i.routing_for:
                state += " (routing for it)"
            lines.append(
                f"  {i.name}: {state}, in {i.messages_in} out {i.messages_out}, "
                f"last active {i.last_active_ago:.1f} s ago"
            )
        lines.append(
            f"handshakes in progress {self._handshakes}, "
            f"failed {self.stats['handshake_failures']}; "
            f"outstanding requests {len(self._tracker)}; hellos answered {self.net.hellos}"
        )
        return "\n".join(lines)


def _session_or_raise(result: Session | DialError) -> Session:
    if isinstance(result, DialError):
        raise result
    return result


__all__ = ["Node", "NodeConfig", "NodeStartError", "Reply", "SendFailed"]
