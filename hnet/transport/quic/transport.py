"""QUIC transport: the asyncio adapter yielding :class:`QuicSession` (docs/quic.md).

``connect`` dials; :class:`QuicListener` accepts. Both drive a sans-I/O
:class:`~hnet.core.quic.connection.NoiseQuicConnection` over a
:class:`~hnet.transport.quic.udp.UdpSocket`:
datagrams in, datagrams out, one timer per connection. Nothing here is a background task: the
socket's reader callback, loop timers and the session's own ``send``/``run`` do all the work, so
there is nothing to forget or cancel. The one exception: a listener looks up the key of an
initiator it does not know yet (``resolve_key``) in a task it owns, bounded by that
connection's handshake timer and cancelled with the connection.

A client owns its socket (so :meth:`QuicSession.rebind` can move it to a new one); a listener
has one socket for all its connections and routes datagrams by connection ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

from hnet import limits
from hnet.core.handshake import HandshakeError, PeerHandshake
from hnet.core.quic import backend as qb
from hnet.core.quic.connection import (
    CircuitData,
    Closed,
    HandshakeDone,
    KeyNeeded,
    MessageReceived,
    NoiseQuicConnection,
    PathCidIssued,
    PathCidRetired,
    SendCredit,
)
from hnet.core.quic.errors import QuicAppError
from hnet.core.quic.retry import RetryTokens
from hnet.log import get_logger
from hnet.transport.gate import HandshakeGate, Slot
from hnet.transport.quic.udp import UdpSocket, bind_udp
from hnet.transport.session import Deliver, ResolveKey, Session, SessionClosed, SessionError

__all__ = ["CircuitHandler", "QuicListener", "QuicSession", "connect"]

log = get_logger("quic")


class CircuitHandler(Protocol):
    """Takes the circuit streams of a QUIC session (hnet.transport.quic.circuit)."""

    def circuit_data(self, session: QuicSession, ev: CircuitData) -> None: ...


class _RefuseCircuits:
    """The default: this node neither routes nor accepts circuits (docs/quic.md §11.2). A
    REQUEST or OFFER is answered REFUSE NOT_ROUTING / DECLINED; a relayed stream (for a
    circuit we never issued nor accepted) is a protocol violation."""

    def circuit_data(self, session: QuicSession, ev: CircuitData) -> None:
        from hnet.transport.quic.circuit import refuse_stream

        refuse_stream(session, ev)


REFUSE_CIRCUITS: CircuitHandler = _RefuseCircuits()


def _format_addr(addr: qb.Addr | None) -> str:
    if addr is None:
        return "?"
    host = str(addr[0])
    if host.startswith("::ffff:"):
        host = host[7:]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def _code_name(code: int) -> str:
    try:
        return QuicAppError(code).name
    except ValueError:
        return f"0x{code:x}"


def _refuse_unknown(drv: _Driver, _name: str) -> None:
    """No key lookup: an initiator the responder does not know is refused (after this
    callback returns: never re-enter the connection from its own event dispatch)."""
    drv.loop.call_soon(drv.provide_key, None)


class _Driver:
    """Moves one connection's datagrams and timers; holds what the session reads."""

    def __init__(self, core: NoiseQuicConnection, send: Callable[[bytes, qb.Addr], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.core = core
        self.send = send
        self.remote: qb.Addr | None = None
        #: a pending inbound handshake's place in the listener's gate
        self.gate_slot: Slot | None = None
        self.session: QuicSession | None = None
        self.inbox: deque[MessageReceived] = deque()
        #: circuit stream data that came before the session existed (handed to it at once)
        self.circuit_backlog: list[CircuitData] = []
        self.settled = asyncio.Event()  # handshake done or failed
        self._wake_inbox = asyncio.Event()
        self._wake_credit = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        #: the pending flush is flush_later's (delayed), not flush_soon's
        self._flush_delayed = False
        #: the datagrams fed since the last burst end completed messages (see burst_end)
        self._fresh_messages = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._torn_down = False
        #: a connection that may carry circuits (set by the circuit layer): its liveness is
        #: checked (HOP_DEAD_AFTER) and it is pinged every HOP_PING_INTERVAL while it does
        self.hop = False
        #: hop liveness: since when we have had data in flight and received nothing (None:
        #: a packet came since, or nothing is in flight)
        self._waiting_since: float | None = None
        self._liveness: asyncio.TimerHandle | None = None
        self._last_ping = self.loop.time()
        #: SendCredit events so far (a writer waiting for credit sees progress in it)
        self.credit_events = 0
        # hooks for the owner (listener or client)
        self.on_handshake: Callable[[_Driver], None] = lambda d: None
        #: responder: the initiator's name is unknown; answer with :meth:`provide_key`
        self.on_key_needed: Callable[[_Driver, str], None] = _refuse_unknown
        self.on_cid_issued: Callable[[_Driver, bytes], None] = lambda d, c: None
        self.on_cid_retired: Callable[[_Driver, bytes], None] = lambda d, c: None
        self.on_teardown: Callable[[_Driver], None] = lambda d: None

    # --- datagrams and timers ------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: qb.Addr) -> None:
        """Feed one datagram; the owner calls :meth:`flush` after the burst."""
        if self._torn_down:
            return
        self._waiting_since = None  # the peer is alive (or a packet for it came)
        try:
            self.core.receive_datagram(data, addr, self.loop.time())
            self._dispatch()
        except Exception as e:
            self._crash(e)

    def _crash(self, e: Exception) -> None:
        """Something raised inside this connection: close it alone, keep the others going."""
        log.error("quic connection failed", remote=_format_addr(self.remote), error=repr(e))
        with contextlib.suppress(Exception):  # if QUIC itself is broken, just drop it
            self.core.close(QuicAppError.INTERNAL_ERROR, "internal error")
            for data, addr in self.core.quic.datagrams_to_send(self.loop.time()):
                self.send(data, addr)
        if self.session is not None:
            self.session.on_closed(
                Closed(int(QuicAppError.INTERNAL_ERROR), f"internal error: {e!r}", False, False)
            )
        self._teardown()

    def burst_end(self) -> None:
        """A burst of datagrams was fed: flush, unless it completed messages and the
        connection carries small messages only (:attr:`NoiseQuicConnection.small_only`). Then
        the reader delivers them on the next loop iteration and the application usually
        answers there (a write flushes at once, flush_soon), or the next request follows:
        QUIC's acknowledgement of the burst and the delivery FINs leave in the datagram of
        that reply or request instead of one of their own, or within QUIC_ACK_DELAY if
        nothing comes (flush_later, as for a delivery FIN alone)."""
        fresh, self._fresh_messages = self._fresh_messages, False
        core = self.core
        if fresh and not self._torn_down and not core.is_closed and core.small_only:
            self.flush_later()
            return
        self.flush()

    def flush(self) -> None:
        """Send what the connection has to send, re-arm its timer, tear down once closed."""
        if self._torn_down:
            return
        try:
            self._flush()
        except Exception as e:
            self._crash(e)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        send = self.send
        addr = None
        for data, addr in self.core.datagrams_to_send(self.loop.time()):
            send(data, addr)
        if addr is not None and addr != self.remote:
            self.remote = addr
            if self.session is not None:
                self.session.remote = _format_addr(addr)
        self._dispatch()
        if self.core.is_closed:
            self._teardown()
            return
        if self.hop and self._waiting_since is None and self.core.quic.bytes_in_flight() > 0:
            self._waiting_since = self.loop.time()
            if self._liveness is None:
                self._liveness = self.loop.call_later(limits.HOP_DEAD_AFTER, self._check_alive)
        if self.core.bulk_ready:
            self.flush_soon()  # more bulk to send: after whatever else is ready
        if self.session is not None and self.session.on_flush is not None:
            self.session.on_flush()  # circuits over this connection: their bulk may go on
        timer_at = self.core.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self.loop.call_at(timer_at, self._on_timer)
        self._timer_at = timer_at

    def flush_soon(self) -> None:
        """Flush on the next loop iteration (coalesces writes of concurrent senders)."""
        if self._torn_down:
            return
        # A delayed flush (flush_later) is made sooner. Told by a flag, not by the handle's
        # type: uvloop's handles are not asyncio.TimerHandle instances, so an isinstance test
        # left every write after a delivered message waiting for QUIC_ACK_DELAY under uvloop.
        if self._flush_handle is not None and self._flush_delayed:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)
            self._flush_delayed = False

    def flush_later(self) -> None:
        """Flush within QUIC_ACK_DELAY unless something flushes sooner: acknowledgements
        (FINs) then ride along with the next message instead of taking a datagram each."""
        if self._flush_handle is None and not self._torn_down:
            self._flush_handle = self.loop.call_later(limits.QUIC_ACK_DELAY, self.flush)
            self._flush_delayed = True

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._torn_down:
            return
        try:
            self.core.handle_timer(self.loop.time())
            self._dispatch()
        except Exception as e:
            self._crash(e)
            return
        self.flush()

    def carries_circuits(self) -> bool:
        """A hop with circuits over it now (the session's :attr:`QuicSession.keep_open`)."""
        s = self.session
        return self.hop and s is not None and s.keep_open is not None and s.keep_open()

    def _check_alive(self) -> None:
        """A hop is dead once it has had data in flight and heard nothing for HOP_DEAD_AFTER
        (docs/quic.md §11, "Our implementation"): a killed router never sends a
        CONNECTION_CLOSE, and QUIC's idle timeout would take a minute."""
        self._liveness = None
        since = self._waiting_since
        if self._torn_down or since is None or not self.core.is_open:
            return
        due = since + limits.HOP_DEAD_AFTER
        if self.loop.time() < due:
            self._liveness = self.loop.call_at(due, self._check_alive)
            return
        if not self.carries_circuits():
            self._waiting_since = None  # no circuits on it: QUIC's idle timeout decides
            return
        reason = f"unresponsive: no packet for {limits.HOP_DEAD_AFTER:g} s"
        log.info("quic hop unresponsive", remote=_format_addr(self.remote), reason=reason)
        self.close(QuicAppError.NO_ERROR, reason)

    def watch_hop(self) -> None:
        """Check this connection's liveness and ping it often while it carries circuits."""
        self.hop = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = self.loop.call_later(limits.HOP_PING_INTERVAL, self._on_keepalive)

    def _on_keepalive(self) -> None:
        self._keepalive = None
        if self._torn_down or not self.core.is_open:
            return
        now = self.loop.time()
        if (
            not self.hop
            or self.carries_circuits()
            or (now - self._last_ping >= limits.QUIC_KEEPALIVE_INTERVAL - 0.01)
        ):
            self._last_ping = now
            try:
                self.core.ping()
            except Exception as e:
                self._crash(e)
                return
            self.flush()
        interval = limits.HOP_PING_INTERVAL if self.hop else limits.QUIC_KEEPALIVE_INTERVAL
        self._keepalive = self.loop.call_later(interval, self._on_keepalive)

    # --- events --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        core = self.core
        while (ev := core.next_event()) is not None:
            if isinstance(ev, MessageReceived):
                self._fresh_messages = True
                session = self.session
                if session is not None:
                    session.touch()
                    if session.deliver_now is not None and not self.inbox:
                        session.deliver_now(ev)
                        continue
                self.inbox.append(ev)
                self._wake_inbox.set()
            elif isinstance(ev, SendCredit):
                self.credit_events += 1
                self._wake_credit.set()
                if self.session is not None:
                    self.session.credit_returned()
            elif isinstance(ev, CircuitData):
                if self.session is None:
                    self.circuit_backlog.append(ev)
                else:
                    self.session.circuit_data(ev)
            elif isinstance(ev, KeyNeeded):
                self.on_key_needed(self, ev.name)
            elif isinstance(ev, HandshakeDone):
                self.settled.set()
                self._keepalive = self.loop.call_later(
                    limits.QUIC_KEEPALIVE_INTERVAL, self._on_keepalive
                )
                self.on_handshake(self)
            elif isinstance(ev, Closed):
                self.settled.set()
                self._wake_inbox.set()
                self._wake_credit.set()
                if self.session is not None:
                    self.session.on_closed(ev)
                self.flush_soon()  # send the CONNECTION_CLOSE, then tear down
            elif isinstance(ev, PathCidIssued):
                self.on_cid_issued(self, ev.cid)
            elif isinstance(ev, PathCidRetired):
                self.on_cid_retired(self, ev.cid)

    def provide_key(self, key: bytes | None) -> None:
        """The answer to a KeyNeeded event (the initiator's key, or None: unknown)."""
        if self._torn_down or not self.core.awaiting_key:
            return
        try:
            self.core.provide_key(key)
            self._dispatch()
        except Exception as e:
            self._crash(e)
            return
        self.flush()

    def close(self, code: QuicAppError, reason: str) -> None:
        """Close now: queue CONNECTION_CLOSE, send it, release everything."""
        if self._torn_down:
            return
        self.core.close(code, reason)
        self._dispatch()
        self.flush()

    def _teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        for handle in (self._timer, self._flush_handle, self._keepalive, self._liveness):
            if handle is not None:
                handle.cancel()
        self._timer = self._flush_handle = self._keepalive = self._liveness = None
        self._wake_inbox.set()
        self._wake_credit.set()
        self.settled.set()
        self.on_teardown(self)

    # --- what the session awaits ---------------------------------------------------------

    async def wait_inbox(self) -> None:
        while not self.inbox and not self.core.is_closed:
            self._wake_inbox.clear()
            await self._wake_inbox.wait()

    async def wait_credit(self) -> None:
        self._wake_credit.clear()
        await self._wake_credit.wait()


class QuicSession(Session):
    """An authenticated Noise session over one QUIC connection.

    Each message travels on its own QUIC stream, so a large message never delays a small one;
    messages on different streams may therefore be delivered in a different order than they
    were sent (no ordering is promised across messages). ``send`` returns once the message is
    handed to QUIC within our credit; the credit comes back when the peer has *delivered* it,
    so a slow receiver slows its senders down (real backpressure, end to end).
    """

    transport = "quic"
    lanes = 2
    small_size = limits.QUIC_SMALL_MESSAGE

    def __init__(
        self,
        driver: _Driver,
        *,
        peer_name: str,
        initiator: bool,
        proxy_request: bool,
        udp: UdpSocket | None = None,
    ) -> None:
        super().__init__(
            peer_name=peer_name,
            initiator=initiator,
            proxy_request=proxy_request,
            remote=_format_addr(driver.remote),
        )
        self._drv = driver
        #: the stream of the message written last (a circuit session tracks its delivery)
        self._last_sid = -1
        self._udp = udp  # client only: the socket we own (rebind replaces it)
        self.violation: str | None = None
        #: what takes this connection's circuit streams (docs/quic.md §11): by default
        #: nothing is routed or accepted here, and every request or offer is refused
        self.circuits: CircuitHandler = REFUSE_CIRCUITS
        #: REFUSE_CIRCUITS's state: a peer control stream's first bytes, None once refused
        self.refusing: dict[int, bytes | None] = {}
        #: called when stream credit comes back (a circuit waiting to open a stream)
        self.on_credit: Callable[[], None] | None = None
        #: called after each flush (circuits feeding bulk data over this connection)
        self.on_flush: Callable[[], None] | None = None
        #: called once when the connection has closed
        self.on_transport_closed: Callable[[QuicSession], None] | None = None
        #: True while circuits run over this connection (a retired one then stays open)
        self.keep_open: Callable[[], bool] | None = None
        #: set by the reader once the inbox is empty, in direct mode (see _deliver_now)
        self.deliver_now: Callable[[MessageReceived], None] | None = None
        driver.session = self
        if driver.core.closed is not None:
            self.on_closed(driver.core.closed)
        backlog, driver.circuit_backlog = driver.circuit_backlog, []
        for ev in backlog:
            self.circuit_data(ev)

    # --- circuit streams (docs/quic.md §11) ------------------------------------------------

    def retire(self, grace: float) -> None:
        """As :meth:`Session.retire`, but a connection that still carries circuits
        (:attr:`keep_open`) stays open past the grace period until they have ended: the peer
        table replacing it must not cut them."""
        super().retire(grace)
        if self._retire_timer is not None and self.keep_open is not None:
            self._retire_timer.cancel()
            self._retire_timer = asyncio.get_running_loop().call_later(
                grace, self._retire_expired, grace
            )

    def _retire_expired(self, grace: float) -> None:
        self._retire_timer = None
        if self.closed or not self.retired:
            return
        if self.keep_open is not None and self.keep_open():
            self._retire_timer = asyncio.get_running_loop().call_later(
                grace, self._retire_expired, grace
            )
            return
        self.abort("replaced by a new session")

    @property
    def core(self) -> NoiseQuicConnection:
        """The sans-I/O connection (the circuit layer writes its streams through it)."""
        return self._drv.core

    def set_circuits(self, handler: CircuitHandler) -> None:
        self.circuits = handler

    def watch_hop(self) -> None:
        """This connection may carry circuits: while it does, it is pinged every
        HOP_PING_INTERVAL and declared dead after HOP_DEAD_AFTER without a packet while data
        is in flight (a killed router sends no CONNECTION_CLOSE)."""
        self._drv.watch_hop()

    def circuit_data(self, ev: CircuitData) -> None:
        if not self._drv.core.is_closed:
            self.circuits.circuit_data(self, ev)

    def credit_returned(self) -> None:
        if self.on_credit is not None:
            self.on_credit()

    def kick(self) -> None:
        """Send what the circuit layer wrote, soon."""
        self._drv.flush_soon()

    def violate(self, code: QuicAppError, reason: str) -> None:
        """The peer broke a rule of a circuit stream: close the connection with ``code``."""
        core = self._drv.core
        if not core.is_closed:
            log.warning("circuit stream violation", peer=self.peer_name, reason=reason)
            core.protocol_error(code, reason)
            self._drv.flush_soon()

    @property
    def backend(self) -> str:
        return self._drv.core.quic.backend

    @property
    def remote_address(self) -> qb.Addr | None:
        """Where we currently send (changes when the peer migrates)."""
        return self._drv.remote

    @property
    def own_socket(self) -> bool:
        """A client connection on a UDP socket of its own, not on a listener's (the address a
        peer observes for it is then not the listener's, docs/quic.md §11.13)."""
        return self._udp is not None

    @property
    def local_address(self) -> qb.Addr | None:
        """Our UDP address (client sessions)."""
        return self._udp.local_address if self._udp is not None else None

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._drv.core.stats)

    def on_closed(self, ev: Closed) -> None:
        """Called by the driver when the connection closes, however it happens."""
        if ev.violation:
            self.violation = f"{_code_name(ev.code)}: {ev.reason}"
        hook, self.on_transport_closed = self.on_transport_closed, None
        if hook is not None:
            try:
                hook(self)
            except Exception as e:  # a bug of ours: keep the close itself going
                log.exception("circuit close hook failed", peer=self.peer_name, error=repr(e))
        if self.closed:
            return
        if ev.by_peer:
            reason = f"closed by peer ({_code_name(ev.code)}: {ev.reason})"
        else:
            reason = ev.reason or _code_name(ev.code)
        if self.violation is not None:
            # the reader reports the violation; it must still see it after the close
            self.closed = True
            self.close_reason = reason
            self._wake_reader()
            return
        self._closed_by_transport(reason)

    def _wake_reader(self) -> None:
        self._drv._wake_inbox.set()

    def _write_nowait(self, data: bytes) -> bool:
        core = self._drv.core
        if core.is_closed or not core.can_send(len(data)):
            return False
        self._last_sid = core.send_message(data)
        self._drv.flush_soon()
        return True

    async def _write(self, data: bytes) -> None:
        n = len(data)
        if not 0 < n <= limits.MESSAGE_MAX_SIZE:  # checked by the sender: a bug of ours
            raise ValueError(f"message of {n} bytes (must be 1..{limits.MESSAGE_MAX_SIZE})")
        drv = self._drv
        core = drv.core
        while not core.can_send(n):
            if self.closed or core.is_closed:
                raise SessionClosed(self.close_reason or "closed")
            await self._wait_progress(drv.wait_credit, lambda: drv.credit_events)
        if self.closed or core.is_closed:
            raise SessionClosed(self.close_reason or "closed")
        self._last_sid = core.send_message(data)
        drv.flush_soon()

    def _deliver_now(self, deliver: Deliver, ev: MessageReceived) -> None:
        """Deliver one message from the driver's dispatch (direct mode), then return its
        credit. A failure of ``deliver`` is a bug of ours: it closes this session as a local
        error, never the driver's dispatch."""
        if self.closed or self.violation is not None:
            return  # never deliver after a protocol violation or a close
        self.messages_in += 1
        try:
            deliver(self, ev.data)
        except Exception as e:
            log.exception("session delivery failed (local error)", peer=self.peer_name)
            self.deliver_now = None
            self.abort(f"local error: {e!r}")
            return
        core = self._drv.core
        if not core.is_closed:
            core.message_delivered(ev.stream_id)
            self._drv.flush_later()

    async def _read_loop(self, deliver: Deliver) -> None:
        """Deliver messages until the session closes (return) or the peer breaks the protocol
        (:class:`SessionError`). Each message is acknowledged to its sender (its credit
        returned) once delivered; ``deliver`` never blocks. In direct mode (:meth:`Session.start`)
        this delivers what came before it ran, then hands delivery to the driver's dispatch
        and only waits for the end."""
        drv = self._drv
        while True:
            if not drv.inbox:
                if self.closed:
                    break
                if self._direct and self.deliver_now is None and self.violation is None:
                    self.deliver_now = functools.partial(self._deliver_now, deliver)
                await drv.wait_inbox()
                if not drv.inbox:
                    break  # closed
            if self.violation is not None:
                break  # never deliver after a protocol violation
            ev = drv.inbox.popleft()
            self.messages_in += 1
            pending = deliver(self, ev.data)
            if pending is not None:  # standalone use only (see Deliver)
                await pending
            if not drv.core.is_closed:
                drv.core.message_delivered(ev.stream_id)
                drv.flush_later()
        if self.violation is not None:
            raise SessionError(self.violation)

    def _close_transport(self) -> None:
        self._drv.close(QuicAppError.NO_ERROR, self.close_reason or "closed")

    def rebind(self) -> qb.Addr:
        """Client only: move the connection to a new UDP socket (new local port).

        The peer sees the connection arrive from a new address; QUIC validates the new path
        and carries on (RFC 9000 §9). Returns the new local address. For tests and for hosts
        whose address changed.
        """
        old = self._udp
        if old is None or not self.initiator:
            raise RuntimeError("only a client session can rebind")
        if self.closed:
            raise SessionClosed(self.close_reason or "closed")
        host = old.local_address[0]
        drv = self._drv
        new = UdpSocket(bind_udp(host, 0, old.family), drv.datagram_received, drv.burst_end)
        drv.send = new.sendto
        drv.on_teardown = lambda d: new.close()
        self._udp = new
        old.close()
        # A fresh connection ID on the new path (RFC 9000 §9.5), then a probe to move now.
        drv.core.quic.change_connection_id()
        drv.core.ping()
        drv.flush()
        return new.local_address


def _handshake_exception(closed: Closed | None, who: str) -> Exception:
    if closed is None:
        return SessionError(f"{who}: connection closed during handshake")
    name = _code_name(closed.code)
    if closed.code == QuicAppError.HANDSHAKE_FAILED:
        return HandshakeError(f"{who}: {closed.reason}" if closed.by_peer else closed.reason)
    if closed.by_peer:
        return SessionError(f"{who} closed the connection in handshake ({name}: {closed.reason})")
    return SessionError(f"handshake failed ({name}: {closed.reason})")


async def _resolve(host: str, port: int) -> tuple[int, qb.Addr]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    family, _, _, _, addr = infos[0]
    return family, addr


async def _client_handshake(drv: _Driver, addr: qb.Addr, release: Callable[[], None]) -> None:
    """Start ``drv``'s client connection to ``addr`` and wait for its handshake; on failure
    or cancellation the connection is closed and ``release`` frees its socket (or its entry
    in a listener's demux)."""
    core = drv.core
    drv.remote = addr
    try:
        core.connect(addr, drv.loop.time())
        drv.flush()
        await drv.settled.wait()
        if not core.is_open or core.peer_name is None:
            raise _handshake_exception(core.closed, _format_addr(addr))
    except BaseException as e:
        code = (
            QuicAppError.HANDSHAKE_FAILED
            if isinstance(e, HandshakeError)
            else QuicAppError.HANDSHAKE_TIMEOUT
        )
        drv.close(code, "handshake abandoned")
        release()
        raise


async def connect(
    host: str, port: int, hs: PeerHandshake, *, backend: str | None = None
) -> QuicSession:
    """Dial ``host:port`` over QUIC, run the initiator handshake, return the session.

    The caller bounds the time (``asyncio.timeout``); on cancellation or failure the
    connection is closed and its socket released. Raises :class:`HandshakeError` when an
    identity check fails (either side), :class:`SessionError` for other failures.
    """
    if not hs.initiator:
        raise ValueError("connect needs an initiator handshake")
    be = qb.get_backend(backend)
    family, addr = await _resolve(host, port)
    bind_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    core = NoiseQuicConnection(be.client(), hs)
    drv = _Driver(core, lambda data, a: None)
    udp = UdpSocket(bind_udp(bind_host, 0, family), drv.datagram_received, drv.burst_end)
    drv.send = udp.sendto
    drv.on_teardown = lambda d: udp.close()
    await _client_handshake(drv, addr, udp.close)
    assert core.peer_name is not None
    return QuicSession(drv, peer_name=core.peer_name, initiator=True, proxy_request=False, udp=udp)


class QuicListener:
    """Accepts QUIC connections on one UDP socket and yields authenticated sessions.

    Pre-authentication work is bounded: at most ``max_pending`` connections in handshake
    (further Initials are dropped), at most ``max_connections`` in all, each handshake (QUIC +
    Noise) within ``handshake_timeout``. Past ``retry_threshold`` pending handshakes a new
    client must first echo a Retry token (address validation, RFC 9000 §8.1.2); 0 means
    always. QUIC's anti-amplification limit stays on in every case.
    """

    def __init__(
        self,
        *,
        backend: str | None = None,
        retry_threshold: int = limits.QUIC_RETRY_THRESHOLD,
        max_pending: int = limits.QUIC_MAX_PENDING_HANDSHAKES,
        max_connections: int = limits.QUIC_MAX_CONNECTIONS,
        gate: HandshakeGate | None = None,
    ) -> None:
        self._backend = qb.get_backend(backend)
        #: shared with the node's other listeners (one bound on handshakes in progress)
        self._gate = gate if gate is not None else HandshakeGate(max_pending)
        self.retry_threshold = retry_threshold
        self.max_pending = max_pending
        self.max_connections = max_connections
        self._tokens = RetryTokens()
        self._udp: UdpSocket | None = None
        self._by_cid: dict[bytes, _Driver] = {}
        self._drivers: set[_Driver] = set()
        #: client connections we opened on this socket (:meth:`connect`)
        self._clients: set[_Driver] = set()
        self._pending: dict[_Driver, asyncio.TimerHandle] = {}
        self._dirty: set[_Driver] = set()
        self._make_responder: Callable[[], PeerHandshake] | None = None
        self._on_session: Callable[[QuicSession], None] = lambda s: None
        self._resolve_key: ResolveKey | None = None
        #: key lookups for initiators we did not know, one per connection in handshake
        self._lookups: dict[_Driver, asyncio.Task[None]] = {}
        self._handshake_timeout = limits.HANDSHAKE_TIMEOUT
        self.stats: dict[str, int] = {
            "accepted": 0,
            "handshake_failures": 0,
            "handshake_timeouts": 0,
            "handshake_evictions": 0,
            "retries_sent": 0,
            "busy_drops": 0,
            "version_negotiations": 0,
        }

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def address(self) -> qb.Addr:
        if self._udp is None:
            raise RuntimeError("listener not started")
        return self._udp.local_address

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def connections(self) -> int:
        return len(self._drivers)

    async def start(
        self,
        host: str,
        port: int,
        *,
        make_responder: Callable[[], PeerHandshake],
        on_session: Callable[[QuicSession], None],
        handshake_timeout: float = limits.HANDSHAKE_TIMEOUT,
        resolve_key: ResolveKey | None = None,
    ) -> None:
        """Bind ``host:port`` (0: any free port, see :attr:`address`) and start accepting.

        ``resolve_key`` finds the networking key of an initiator whose name the responder's
        lookup does not know yet (registered a moment ago); without it such a name is refused
        at once. The connection's handshake timeout bounds the lookup.
        """
        if self._udp is not None:
            raise RuntimeError("listener already started")
        self._make_responder = make_responder
        self._on_session = on_session
        self._handshake_timeout = handshake_timeout
        self._resolve_key = resolve_key
        self._udp = UdpSocket(bind_udp(host, port), self._datagram, self._flush_dirty)

    def close(self) -> None:
        """Close every connection (CONNECTION_CLOSE, code NO_ERROR) and the socket."""
        for task in self._lookups.values():
            task.cancel()
        for drv in [*self._drivers, *self._clients]:
            if drv.session is not None:
                drv.session.abort("listener closed")
            else:
                drv.close(QuicAppError.NO_ERROR, "listener closed")
        if self._udp is not None:
            self._udp.close()

    @property
    def family(self) -> int:
        """The socket's address family (AF_INET or AF_INET6)."""
        if self._udp is None:
            raise RuntimeError("listener not started")
        return int(self._udp.family)

    def reaches(self, host: str) -> bool:
        """``host`` (an IP literal) is of this socket's address family."""
        if self._udp is None:
            return False
        try:
            v6 = ipaddress.ip_address(host).version == 6
        except ValueError:
            return False
        return v6 == (self._udp.family == socket.AF_INET6)

    async def connect(self, host: str, port: int, hs: PeerHandshake) -> QuicSession:
        """Dial ``host:port`` from this listener's own socket (its local port, so a NAT in
        front of us maps it as it maps the connections we accept and the ones we opened
        before), as :func:`connect` otherwise: the caller bounds the time. The connection is
        demultiplexed with the accepted ones, by connection ID. For hole punching
        (docs/quic.md §11.13)."""
        if self._udp is None:
            raise RuntimeError("listener not started")
        if not hs.initiator:
            raise ValueError("connect needs an initiator handshake")
        family, addr = await _resolve(host, port)
        if family != self._udp.family:
            raise OSError(f"{host}: not reachable from a socket of this address family")
        core = NoiseQuicConnection(self._backend.client(), hs)
        drv = _Driver(core, self._udp.sendto)
        drv.on_cid_issued = self._cid_issued
        drv.on_cid_retired = self._cid_retired
        drv.on_teardown = self._forget
        self._clients.add(drv)
        self._by_cid[core.quic.host_cid] = drv
        await _client_handshake(drv, addr, lambda: self._forget(drv))
        assert core.peer_name is not None
        return QuicSession(drv, peer_name=core.peer_name, initiator=True, proxy_request=False)

    def send_datagram(self, data: bytes, addr: qb.Addr) -> None:
        """Send one raw datagram from the listener's socket (a hole punch, §11.13)."""
        if self._udp is not None:
            self._udp.sendto(data, addr)

    def go_silent(self) -> None:
        """For tests: stop receiving and sending at once, as if the process had been killed
        (SIGKILL): no CONNECTION_CLOSE goes out, the peers only notice the silence."""
        if self._udp is not None:
            self._udp.close()

    # --- datagrams -----------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for drv in dirty:
            drv.burst_end()

    def _datagram(self, data: bytes, addr: qb.Addr) -> None:
        be = self._backend
        header = be.parse_header(data)
        if header is None:
            return
        drv = self._by_cid.get(header.destination_cid)
        if drv is not None:
            drv.datagram_received(data, addr)
            self._dirty.add(drv)
            return
        if not header.is_long or len(data) < qb.MIN_INITIAL_SIZE:
            return  # unknown connection; and never answer small datagrams (amplification)
        assert self._udp is not None
        if header.version not in be.supported_versions:
            self.stats["version_negotiations"] += 1
            self._udp.sendto(
                be.encode_version_negotiation(header.destination_cid, header.source_cid), addr
            )
            return
        if not header.is_initial:
            return
        self._new_connection(header, data, addr)

    def _new_connection(self, header: qb.Header, data: bytes, addr: qb.Addr) -> None:
        assert self._udp is not None and self._make_responder is not None
        be = self._backend
        if len(self._pending) >= self.max_pending or len(self._drivers) >= self.max_connections:
            self.stats["busy_drops"] += 1
            return
        now = asyncio.get_running_loop().time()
        original_dcid = header.destination_cid
        retry_scid: bytes | None = None
        if header.token:
            valid = self._tokens.validate(header.token, addr, header.destination_cid, now)
            if valid is not None:
                original_dcid, retry_scid = valid
        if retry_scid is None and len(self._pending) >= self.retry_threshold:
            scid = os.urandom(qb.CID_LENGTH)
            assert header.version is not None
            self._udp.sendto(
                be.encode_retry(
                    header.version,
                    scid,
                    header.source_cid,
                    header.destination_cid,
                    self._tokens.create(addr, header.destination_cid, scid, now),
                ),
                addr,
            )
            self.stats["retries_sent"] += 1
            return
        slot = self._gate.enter(addr[0])
        if slot is None:
            self.stats["busy_drops"] += 1
            return
        try:
            responder = self._make_responder()
        except Exception as e:
            slot.leave()
            log.error("cannot make a responder handshake (local error)", error=repr(e))
            return
        core = NoiseQuicConnection(be.server(original_dcid, retry_scid), responder)
        drv = _Driver(core, self._udp.sendto)
        drv.remote = addr
        drv.gate_slot = slot
        slot.on_evict = lambda: self._handshake_evicted(drv)
        drv.on_handshake = self._handshake_done
        drv.on_key_needed = self._key_needed
        drv.on_cid_issued = self._cid_issued
        drv.on_cid_retired = self._cid_retired
        drv.on_teardown = self._forget
        self._drivers.add(drv)
        self._by_cid[header.destination_cid] = drv
        self._by_cid[core.quic.host_cid] = drv
        self._pending[drv] = asyncio.get_running_loop().call_later(
            self._handshake_timeout, self._handshake_expired, drv
        )
        drv.datagram_received(data, addr)
        self._dirty.add(drv)

    # --- connection lifecycle ------------------------------------------------------------

    def _cid_issued(self, drv: _Driver, cid: bytes) -> None:
        self._by_cid[cid] = drv

    def _cid_retired(self, drv: _Driver, cid: bytes) -> None:
        if self._by_cid.get(cid) is drv:
            del self._by_cid[cid]

    def _unpend(self, drv: _Driver) -> asyncio.TimerHandle | None:
        timer = self._pending.pop(drv, None)
        if timer is not None and drv.gate_slot is not None:
            drv.gate_slot.leave()
        return timer

    def _handshake_evicted(self, drv: _Driver) -> None:
        """The gate cut this pending handshake to make room for a newcomer (gate.py)."""
        timer = self._unpend(drv)
        if timer is None:
            return
        timer.cancel()
        self.stats["handshake_evictions"] += 1
        log.info("quic handshake evicted (handshakes full)", remote=_format_addr(drv.remote))
        drv.close(QuicAppError.HANDSHAKE_TIMEOUT, "evicted: too many handshakes pending")

    def _handshake_expired(self, drv: _Driver) -> None:
        if self._unpend(drv) is None:
            return
        self.stats["handshake_timeouts"] += 1
        log.info("quic handshake timed out", remote=_format_addr(drv.remote))
        drv.close(QuicAppError.HANDSHAKE_TIMEOUT, "handshake timed out")

    def _key_needed(self, drv: _Driver, name: str) -> None:
        resolve = self._resolve_key
        if resolve is None:
            _refuse_unknown(drv, name)
            return
        if drv not in self._lookups:
            self._lookups[drv] = drv.loop.create_task(
                self._lookup_key(drv, name, resolve), name=f"quic key lookup {name}"
            )

    async def _lookup_key(self, drv: _Driver, name: str, resolve: ResolveKey) -> None:
        """Find ``name``'s key for ``drv``'s handshake; the pending-handshake timer bounds
        it (the connection's teardown cancels this task)."""
        try:
            key = await resolve(name)
        except Exception as e:  # a failed lookup refuses this initiator, nothing more
            log.warning("key lookup failed", name=name, error=repr(e))
            key = None
        finally:
            self._lookups.pop(drv, None)
        drv.provide_key(key)

    def _handshake_done(self, drv: _Driver) -> None:
        timer = self._unpend(drv)
        if timer is not None:
            timer.cancel()
        core = drv.core
        assert core.peer_name is not None
        session = QuicSession(
            drv,
            peer_name=core.peer_name,
            initiator=False,
            proxy_request=core.hs.peer_proxy_request,
        )
        self.stats["accepted"] += 1
        try:
            self._on_session(session)
        except Exception as e:
            log.error("on_session failed", peer=core.peer_name, error=repr(e))
            session.abort("not accepted")

    def _forget(self, drv: _Driver) -> None:
        lookup = self._lookups.pop(drv, None)
        if lookup is not None:
            lookup.cancel()
        timer = self._unpend(drv)
        if timer is not None:
            timer.cancel()
            self.stats["handshake_failures"] += 1
            closed = drv.core.closed
            log.info(
                "inbound quic handshake failed",
                remote=_format_addr(drv.remote),
                reason=closed.reason if closed else "?",
            )
        self._drivers.discard(drv)
        self._clients.discard(drv)
        self._dirty.discard(drv)
        for cid in [c for c, d in self._by_cid.items() if d is drv]:
            del self._by_cid[cid]
