"""``Node``: the composition of PKI, listeners, dialler, peers, routing, processes and the net
module. Composition only: each part's logic lives in its own module (docs/architecture.md).

A direct node listens on the ports of its own HNS record; an indirect one (its record lists
routers) listens nowhere and keeps sessions to its routers instead. A direct node started with
``max_passthroughs > 0`` is also a router. Local code talks to the network through
:meth:`Node.send`, :meth:`Node.request` and :meth:`Node.register`.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys, limits
from hnet.core.handshake import PeerHandshake
from hnet.core.sendqueue import ByteBudget, Outgoing
from hnet.core.wire import (
    Address,
    CodecError,
    ConnectionRequest,
    KernelMessage,
    LazyLoadBlob,
    NetResponse,
    ProcessId,
    Rejected,
    Request,
    ResponseMessage,
    SendError,
    SendErrorKind,
    build,
    encode_kernel_message,
    encode_net_action,
)
from hnet.log import get_logger
from hnet.net.circuits import Circuits
from hnet.net.dial import TRANSPORTS, Connector, Dialler
from hnet.net.indirect import IndirectRole
from hnet.net.netmodule import NET_PROCESS, NetModule
from hnet.net.peers import PeerTable
from hnet.net.pki import Pki, PkiChange, PkiStartError
from hnet.net.processes import Failed, Handler, Incoming, ProcessTable, Registration
from hnet.net.punch import Puncher
from hnet.net.requests import Reply, RequestTracker, SendFailed
from hnet.net.router import Router
from hnet.supervisor import Supervisor
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.listener import ListenConfig, ListenError, Listeners
from hnet.transport.pipes import open_end
from hnet.transport.quic import QuicListener, QuicSession
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session

log = get_logger("node")

#: set while we dial a hop (a router our circuits or our indirect role use): its QUIC
#: connection then leaves from our listener socket, so the router observes the address a
#: punch must reach (docs/quic.md §11.13); other QUIC dials keep a socket of their own
_HOP_DIAL: contextvars.ContextVar[bool] = contextvars.ContextVar("hnet_hop_dial", default=False)

_NET_SUFFIX = f"@{ProcessId.parse(NET_PROCESS)}"
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
    #: bytes queued for one peer or session, and for all of them together
    send_queue_bytes: int = limits.SEND_QUEUE_BYTES
    send_budget: int = limits.NODE_SEND_BUDGET
    #: consent to the observed-address exchange of circuits and try their direct upgrade
    #: (hole punching, docs/quic.md §11.13); QUIC dials to routers then leave from our
    #: listener socket, and an indirect node opens an unpublished QUIC socket for them. False:
    #: circuits stay routed and no router discloses our address
    share_address: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Node:
    def __init__(self, config: NodeConfig, pki: Pki) -> None:
        self.config = config
        self.name = config.name
        self.pki = pki
        self.started = time.time()
        self._sup = Supervisor(f"node {config.name}")
        self._tracker = RequestTracker()
        #: the loop the node was started on (set by start; requests reuse it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.budget = ByteBudget(config.send_budget)
        self.processes = ProcessTable()
        self.peers = PeerTable(
            our_name=config.name,
            dialer=self._dial,
            on_message=self._on_network_message,
            supervisor=self._sup,
            budget=self.budget,
            max_peers=config.max_peers,
            idle_timeout=config.idle_timeout,
            retire_grace=config.retire_grace,
            queue_bytes=config.send_queue_bytes,
        )
        #: an indirect node's QUIC socket (unpublished; for its hops and hole punching)
        self._quic_socket: QuicListener | None = None
        #: direct upgrades of routed QUIC sessions (docs/quic.md §11.13)
        self.puncher = Puncher(
            our_name=config.name,
            key=config.key,
            lookup=pki.networking_key,
            enabled=config.share_address and "quic" in config.transports,
            listener=self.quic_listener,
            is_direct=self._is_direct,
            on_direct=self._direct_upgrade,
            spawn=lambda coro, name: self._sup.spawn(coro, name=name),
        )
        #: circuits (routed QUIC, docs/quic.md §11); a router of them with max_passthroughs > 0
        self.circuits = Circuits(
            our_name=config.name,
            key=config.key,
            lookup=pki.networking_key,
            max_circuits=config.max_passthroughs,
            session_of=self.peers.session,
            dial_hop=lambda router: self._dial_hop(router, "quic"),
            adopt_hop=self.peers.adopt,
            on_session=self.peers.attach,
            resolve=self._resolve_key,
            handshake_timeout=config.handshake_timeout,
            max_ends=config.max_peers,
            puncher=self.puncher,
        )
        connectors: dict[str, Connector] = {
            "tcp": tcp_transport.connect,
            "ws": ws_transport.connect,
            "quic": self._connect_quic,
        }
        self.dialler = Dialler(
            our_name=config.name,
            key=config.key,
            pki=pki,
            connectors={t: c for t, c in connectors.items() if t in config.transports},
            supervisor=self._sup,
            transports=config.transports,
            handshake_timeout=config.handshake_timeout,
            is_our_router=self._is_our_router,
            on_upgrade=self.peers.upgrade,
            on_spare=self.peers.adopt_retired,
            open_circuit=self.circuits.connect,
            has_hop=self.circuits.has_hop,
            router_lost=self.circuits.lost_recently,
        )
        self.net = NetModule(
            our_name=config.name,
            signing_key=config.key,
            pki=pki,
            send=self._send_reply,
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
            open_end=open_end,
            resolve=self._resolve_record,
        )
        self.listeners = Listeners(
            make_responder=self._responder,
            on_session=self._inbound,
            route=self.router.admit,
            supervisor=self._sup,
            resolve_key=self._resolve_key,
        )
        self._addresses: dict[str, Address] = {}
        self._unsubscribe = pki.subscribe(self._on_record_change)
        self._up = False
        #: set at start when our record lists routers instead of an address
        self.indirect: IndirectRole | None = None

    @property
    def requests(self) -> RequestTracker:
        """Outstanding requests of local callers (read-only use: counts, high water)."""
        return self._tracker

    @property
    def listening(self) -> dict[str, tuple[str, int]]:
        return self.listeners.listening

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the PKI, check our record and key, then listen on our record's ports. On
        failure (NodeStartError) everything started is stopped again."""
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        self._up = True

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self.pki.start()
        except PkiStartError as e:
            raise NodeStartError(f"{self.name}: cannot read HNS: {e}") from e
        # (resolve: a name registered after the chain's last confirmed block is read live)
        rec = self.pki.record(self.name) or await self.pki.resolve(
            self.name, self.config.handshake_timeout
        )
        if rec is None:
            raise NodeStartError(f"{self.name}: not in HNS ({self.pki.source})")
        if rec.net_key is None or keys.parse_public_key(rec.net_key) != keys.public_bytes(
            self.config.key
        ):
            raise NodeStartError(f"{self.name}: key file does not match the name's ~net-key in HNS")
        if not rec.ips and rec.routers:
            if self.puncher.enabled:
                await self._start_quic_socket()
            self._start_indirect(rec.routers)
            return
        self.circuits.start()
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
            await self.listeners.start(
                ListenConfig(
                    host=host,
                    ports=ports,
                    handshake_timeout=self.config.handshake_timeout,
                    quic_backend=self.config.quic_backend,
                )
            )
        except ListenError as e:
            raise NodeStartError(f"{self.name}: {e}") from None
        log.info("node up", name=self.name, listening=self.listening)

    def _on_record_change(self, change: PkiChange) -> None:
        """A record changed in HNS (a chain update, an HnsUpdate): sessions to that peer
        follow it (``PeerTable.record_changed``); a change of our own record needs a restart."""
        old, new = change.old, change.new
        if old is None:
            return  # a new name: nothing of ours depends on it yet
        key_changed = new is None or new.net_key != old.net_key
        routing_changed = new is not None and (new.ips, new.ports, new.routers) != (
            old.ips,
            old.ports,
            old.routers,
        )
        if not (key_changed or routing_changed):
            return
        if change.name == self.name:
            if self._up:
                log.warning("our own HNS record changed; restart the node to use it")
            return
        what = "networking key" if key_changed else "routing"
        self.peers.record_changed(
            change.name, key_changed=key_changed, reason=f"{change.name}'s {what} changed in HNS"
        )

    async def _start_quic_socket(self) -> None:
        """An indirect node's QUIC socket on any free port: its connections to its routers
        leave from it (so a router observes the port a punch must reach) and a source's
        direct upgrade arrives on it (docs/quic.md §11.13). It is in no record."""
        listener = QuicListener(backend=self.config.quic_backend, gate=self.listeners.gate)
        try:
            await listener.start(
                self.config.bind or "0.0.0.0",
                0,
                make_responder=self._responder,
                on_session=self._inbound,
                handshake_timeout=self.config.handshake_timeout,
                resolve_key=self._resolve_key,
            )
        except OSError as e:
            raise NodeStartError(f"{self.name}: cannot open a QUIC socket ({e})") from None
        self._quic_socket = listener

    def quic_listener(self) -> QuicListener | None:
        """Our QUIC socket: the published listener, or an indirect node's own socket."""
        return self.listeners.quic or self._quic_socket

    def _start_indirect(self, routers: tuple[str, ...]) -> None:
        """An indirect node: no listener (no address in our record); sessions to our routers."""
        if self.config.max_passthroughs:
            log.warning("an indirect node cannot route; --max-passthroughs ignored")
            self.router.table.max_passthroughs = 0
        self.indirect = IndirectRole(
            our_name=self.name,
            routers=routers,
            peers=self.peers,
            dial_router=lambda router: self._dial_hop(router, None),
            answer_via_router=self.dialler.answer_via_router,
            respond=self.net.respond,
            reconnect_interval=self.config.router_reconnect_interval,
        )
        self.circuits.our_routers = frozenset(routers)
        self.indirect.start()
        log.info("node up (indirect)", name=self.name, routers=list(routers))

    async def aclose(self) -> None:
        """Stop listening, close sessions, report queued and outstanding messages."""
        self._unsubscribe()
        self.listeners.close()
        self.puncher.close()
        if self._quic_socket is not None:
            self._quic_socket.close()
        if self.indirect is not None:
            await self.indirect.aclose()
        self.router.close()
        self.circuits.close()
        await self.peers.aclose()
        self._tracker.fail_all("node shutting down")
        await self.processes.aclose()
        await self._sup.aclose()
        await self.listeners.aclose()
        await self.pki.aclose()
        if self._up:
            log.info("node down", name=self.name)
            self._up = False

    # --- connections -----------------------------------------------------------------------

    def _responder(self) -> PeerHandshake:
        return PeerHandshake(
            initiator=False,
            our_name=self.name,
            signing_key=self.config.key,
            lookup=self.pki.networking_key,
            defer_unknown=True,
        )

    async def _resolve_record(self, name: str) -> object:
        return await self.pki.resolve(name, self.config.handshake_timeout)

    async def _resolve_key(self, name: str) -> bytes | None:
        """An initiator we did not know: look it up (the handshake deadline bounds this)."""
        rec = await self.pki.resolve(name, self.config.handshake_timeout)
        return rec.net_key_bytes if rec is not None else None

    async def _connect_quic(
        self, host: str, port: int, hs: PeerHandshake, routing_request: bytes | None
    ) -> Session:
        if routing_request is not None:
            raise ValueError("QUIC connections are routed by circuits, not RoutingRequests")
        listener = self.quic_listener() if self.puncher.enabled and _HOP_DIAL.get() else None
        if listener is not None and listener.reaches(host):
            # from our listener's socket: routers then observe the address a punch must reach
            session = await listener.connect(host, port, hs)
        else:
            session = await quic_connect(host, port, hs, backend=self.config.quic_backend)
        self.circuits.install(session)
        return session

    async def _dial_hop(self, router: str, via: str | None) -> Session:
        token = _HOP_DIAL.set(True)
        try:
            return await self.dialler.dial(router, via)
        finally:
            _HOP_DIAL.reset(token)

    def _inbound(self, session: Session) -> None:
        self.circuits.install(session)
        self.puncher.inbound(session)
        self.peers.attach(session)

    def _is_direct(self, peer: str) -> bool:
        """Our session with ``peer`` is a direct QUIC connection (no upgrade to try)."""
        s = self.peers.session(peer)
        return (
            s is not None
            and not s.closed
            and not s.retired
            and s.transport == "quic"
            and s.router is None
        )

    def _direct_upgrade(self, session: QuicSession) -> None:
        """A hole-punched direct QUIC session: it replaces the routed one (which is retired:
        read for its grace period, so nothing in flight on it is cut)."""
        self.circuits.install(session)
        self.peers.upgrade(session)

    def _is_our_router(self, name: str) -> bool:
        return self.indirect is not None and self.indirect.is_router(name)

    async def _dial(self, name: str, via: str | None) -> Session:
        return await self.dialler.dial(name, via)

    # --- routing ---------------------------------------------------------------------------

    async def _send_connection_request(self, target: str, source: str) -> bool:
        """As a router: ask ``target``, over the session it opened with ``proxy_request``, to
        open its side of a routed connection for ``source``."""
        session = self.peers.routing_for(target)
        if session is None or session.queue is None:
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
        item = Outgoing(
            encode_kernel_message(km),
            time.monotonic() + limits.ROUTING_PENDING_LIFETIME,
            km,
            self._send_failed,
        )
        return session.submit(item, headroom=limits.REPLY_HEADROOM)

    def _on_connection_request(self, km: KernelMessage, source: str) -> bool:
        if self.indirect is None:
            return False
        return self.indirect.on_connection_request(km, source)

    def _on_net_response(self, km: KernelMessage, response: NetResponse) -> None:
        if isinstance(response, Rejected):
            self.router.rejected(response.name, km.source.node)

    # --- sending ---------------------------------------------------------------------------

    def _outgoing(self, km: KernelMessage, deadline: float) -> Outgoing:
        return Outgoing(encode_kernel_message(km), deadline, km, self._send_failed)

    async def send(
        self, km: KernelMessage, *, timeout: float | None = None, via: str | None = None
    ) -> None:
        """Send ``km`` from a local process, to the network or to a process of ours.

        Waits only for room in the send queues, at most ``timeout`` (default: the request's
        ``expects_response``, else ``limits.DEFAULT_SEND_TIMEOUT``). Whether it is delivered
        or not is reported later: a failure (Offline, Timeout) reaches the sending process's
        handler as :class:`~hnet.net.processes.Failed`, or a :meth:`request` caller as
        :class:`SendFailed`.
        """
        if km.target.node == self.name:
            self._dispatch(km, via=None)
            return
        if timeout is None:
            timeout = _default_timeout(km)
        try:
            item = self._outgoing(km, time.monotonic() + timeout)
        except CodecError as e:  # a message we cannot encode: the caller's bug
            self._report(km, SendErrorKind.OFFLINE, f"cannot encode the message: {e}")
            return
        await self.peers.send(km.target.node, item, via=via)

    def _send_reply(self, km: KernelMessage) -> None:
        """Queue a reply made on a receive path (the net module's): never waits."""
        if km.target.node == self.name:
            self._dispatch(km, via=None)
            return
        item = self._outgoing(km, time.monotonic() + limits.DEFAULT_SEND_TIMEOUT)
        self.peers.send_nowait(km.target.node, item)

    def _send_failed(self, item: Outgoing, kind: SendErrorKind, reason: str) -> None:
        if item.km is not None:
            self._report(item.km, kind, reason)

    def _report(self, km: KernelMessage, kind: SendErrorKind, reason: str) -> None:
        """Tell the sender of ``km`` it was not delivered: a waiting request, a registered
        process, or (nobody to tell) the log."""
        if km.source.node == self.name:
            if self._tracker.fail(km.id, kind, reason):
                return
            reg = self.processes.get(str(km.source.process))
            if reg is not None:
                err = SendError(
                    kind=kind,
                    target=km.target,
                    message=km.message,
                    lazy_load_blob=km.lazy_load_blob,
                )
                if reg.put(Failed(err, km.id, reason)):
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
        """Send a request and wait for its response; ``timeout`` covers both the send (room in
        the queues, the write) and the wait. Raises :class:`SendFailed` (Offline, Timeout)."""
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # the loop's clock is time.monotonic
        rid, fut = self._tracker.open(target.node, loop)
        timer = loop.call_at(deadline, self._tracker.expire, rid, timeout)
        km = build.kernel_message(
            rid,
            self._address(process),
            target,
            None,
            build.request(False, max(1, int(timeout + 0.999)), body, None, ()),
            blob,
        )
        item: Outgoing | None = None
        try:
            if target.node == self.name:
                self._dispatch(km, via=None)
            else:
                item = self._outgoing(km, deadline)
                if not self.peers.offer(target.node, item, via=via):  # no room now: wait
                    await self.peers.send(target.node, item, via=via)
            return await fut
        finally:
            timer.cancel()
            self._tracker.close(rid)
            if item is not None and not item.finished:
                # Still queued (the peer is not reading): give its bytes back now.
                item.fail(SendErrorKind.TIMEOUT, "request timed out")

    def _address(self, process: str) -> Address:
        """``our@process``, parsed once per process."""
        addr = self._addresses.get(process)
        if addr is None:
            addr = Address.parse(f"{self.name}@{process}")
            if len(self._addresses) < limits.MEMO_MAX:
                self._addresses[process] = addr
        return addr

    # --- receiving -------------------------------------------------------------------------

    def register(self, process: str, handler: Handler) -> Registration:
        """Deliver messages for ``our@process`` (``process:package:publisher``) to ``handler``,
        and the failures of messages it sent (see :mod:`hnet.net.processes`)."""
        return self.processes.register(process, handler)

    def _on_network_message(self, km: KernelMessage, session: Session) -> None:
        if km.target.node != self.name:
            log.warning(
                "message for another node dropped", target=str(km.target), peer=session.peer_name
            )
            return
        self._dispatch(km, via=session.transport)

    def _dispatch(self, km: KernelMessage, via: str | None) -> None:
        """Hand ``km`` (for this node) to its process. Never blocks."""
        # km.target.process == net:distro:sys, read off the address string: a node name has
        # no '@', so the text ends so exactly when the process is the net module's.
        if km.target.text.endswith(_NET_SUFFIX):
            self.net.handle(km, via)
            return
        if isinstance(km.message, ResponseMessage) and self._tracker.resolve(km, via):
            return
        reg = self.processes.get(str(km.target.process))
        if reg is not None:
            reg.put(Incoming(km, via))
            return
        log.info("no such process; message dropped", target=str(km.target), source=str(km.source))

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
        if self.circuits.router is not None or self.circuits.stats["accepted"]:
            lines.append(self.circuits.describe())
        if self.puncher.enabled or self.puncher.stats["tried"]:
            lines.append(self.puncher.describe())
        routing_for = [i.name for i in infos if i.routing_for]
        if routing_for:
            lines.append(f"routing for: {', '.join(routing_for)}")
        lines.append(f"peers: {len(infos)} ({self.peers.max_peers} max)")
        for i in infos:
            state = f"{i.transport} {i.remote}" if i.transport else i.state
            if i.router:
                state += f" via router {i.router}"
            if i.routing_for:
                state += " (routing for it)"
            lines.append(
                f"  {i.name}: {state}, in {i.messages_in} out {i.messages_out}, "
                f"queued {i.queued} ({i.queued_bytes} bytes), "
                f"last active {i.last_active_ago:.1f} s ago"
            )
        b = self.budget
        lines.append(
            f"send budget: {b.used} of {b.capacity} bytes in use (high water {b.high_water})"
        )
        gate = self.listeners.gate
        lines.append(
            f"handshakes in progress {gate.pending}, "
            f"failed {self.listeners.stats['handshake_failures']}, refused {gate.refused} "
            f"({gate.refused_source} for their source's share, {gate.sources} sources now), "
            f"evicted {gate.evicted}; "
            f"outstanding requests {len(self._tracker)}; hellos answered {self.net.hellos}"
        )
        return "\n".join(lines)


def _default_timeout(km: KernelMessage) -> float:
    m = km.message
    if isinstance(m, Request) and m.expects_response:
        return float(m.expects_response)
    return limits.DEFAULT_SEND_TIMEOUT


__all__ = ["Node", "NodeConfig", "NodeStartError", "Reply", "SendFailed"]
