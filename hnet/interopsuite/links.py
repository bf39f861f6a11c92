"""Our side of the suite: identities, listeners, and connections to the target.

Everything here is the production code used standalone: :class:`~hnet.core.handshake.PeerHandshake`
for the identity checks, :mod:`hnet.transport.tcp` / :mod:`~hnet.transport.ws` /
:mod:`~hnet.transport.quic` to connect and accept (sessions run with ``Session.run``, no node
and no peer table), :mod:`hnet.core.wire` for KernelMessages. :class:`RawLink` is the one
exception, for what a Session refuses to send (a message over the cap, a false length claim,
bytes after a handshake): it runs the same PeerHandshake and framers
(:class:`~hnet.core.framing.tcp.TcpTransport`, :class:`~hnet.core.framing.ws.WsTransport`) over a
plain socket, with the cap raised by one byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys, limits
from hnet.core.framing.tcp import TcpTransport, encode_handshake_frame
from hnet.core.framing.ws import WsTransport
from hnet.core.handshake import PeerHandshake
from hnet.core.noise import CipherState
from hnet.core.wire import (
    Address,
    CodecError,
    KernelMessage,
    RoutingRequest,
    decode_kernel_message,
    encode_kernel_message,
    encode_routing_request,
)
from hnet.transport import tcp as tcp_transport
from hnet.transport import ws as ws_transport
from hnet.transport.quic import QuicListener, QuicSession
from hnet.transport.quic import connect as quic_connect
from hnet.transport.session import Session
from hns.records import NodeRecord

#: name -> that name's HNS record (None: not in HNS); may read a chain
RecordLookup = Callable[[str], Awaitable["NodeRecord | None"]]

#: The column names: the stream transports, and QUIC once per backend on our side.
STREAM_TRANSPORTS = ("tcp", "ws")
QUIC_COLUMNS = {"quic-qh3": "qh3", "quic-aioquic": "aioquic"}
IDLE = 600.0


def wire_transport(column: str) -> str:
    """The transport of a matrix column (``quic-qh3`` -> ``quic``)."""
    return "quic" if column.startswith("quic") else column


@dataclass(slots=True)
class Identity:
    """One of our temporary nodes: a name and its networking key."""

    name: str
    key: Ed25519PrivateKey
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def public_hex(self) -> str:
        return keys.public_bytes(self.key).hex()

    def net(self) -> Address:
        return Address.net(self.name)


class Keys:
    """Networking keys by name for handshakes: known ones at once, others looked up."""

    def __init__(self, lookup: RecordLookup) -> None:
        self._lookup = lookup
        self.known: dict[str, bytes] = {}

    def add(self, name: str, key: bytes) -> None:
        self.known[name] = key

    def get(self, name: str) -> bytes | None:
        return self.known.get(name)

    async def resolve(self, name: str) -> bytes | None:
        if name in self.known:
            return self.known[name]
        rec = await self._lookup(name)
        if rec is None or rec.net_key is None:
            return None
        key = bytes.fromhex(rec.net_key)
        self.known[name] = key
        return key


def initiator(
    me: Identity, keyring: Keys, peer: str, *, signing_key: Ed25519PrivateKey | None = None
) -> PeerHandshake:
    """A handshake dialling ``peer`` as ``me`` (``signing_key``: sign with another key)."""
    return PeerHandshake(
        initiator=True,
        our_name=me.name,
        signing_key=signing_key or me.key,
        lookup=keyring.get,
        expected_peer=peer,
    )


def responder(me: Identity, keyring: Keys) -> PeerHandshake:
    return PeerHandshake(
        initiator=False,
        our_name=me.name,
        signing_key=me.key,
        lookup=keyring.get,
        defer_unknown=True,
    )


def routing_request(me: Identity, router: str, target: str) -> bytes:
    """``RoutingRequest(me -> target)`` for ``router``, signed over ``target + router``."""
    signature = me.key.sign((target + router).encode())
    return encode_routing_request(RoutingRequest(1, me.name, signature, target))


# --- a session as a message queue -------------------------------------------------------------


class Closed(Exception):
    """The connection closed (the message says how) while we waited for a message."""


class Link:
    """A standalone production Session: ``send`` KernelMessages, ``recv`` them in order."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.error = ""
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def transport(self) -> str:
        return self.session.transport

    @property
    def peer(self) -> str:
        return self.session.peer_name

    async def _run(self) -> None:
        try:
            await self.session.run(self._deliver, IDLE)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.inbox.put_nowait(None)

    def _deliver(self, _session: Session, data: bytes) -> None:
        self.inbox.put_nowait(data)

    async def send(self, km: KernelMessage, timeout: float = 30.0) -> None:
        await self.session.send(encode_kernel_message(km), timeout=timeout)

    async def send_bytes(self, data: bytes, timeout: float = 30.0) -> None:
        await self.session.send(data, timeout=timeout)

    def why_closed(self) -> str:
        return self.error or self.session.close_reason or "closed"

    async def recv(self) -> KernelMessage:
        """The next message (the caller bounds the wait); Closed when the session ends,
        Failure-worthy CodecError when the bytes are not a KernelMessage."""
        data = await self.inbox.get()
        if data is None:
            self.inbox.put_nowait(None)  # every later recv sees the close too
            raise Closed(self.why_closed())
        return decode_kernel_message(data)

    async def aclose(self) -> None:
        self.session.abort("done")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await asyncio.shield(self._task)


# --- our listeners ------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    """A port free for TCP and UDP now (the kernel picks)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        return port
    raise OSError("no free port found")


class Endpoint:
    """``me`` listening on TCP, WS and (optionally) QUIC; accepted sessions queue up as
    :class:`Link`s in :attr:`accepted`, failed inbound handshakes in :attr:`refused`."""

    def __init__(
        self, me: Identity, keyring: Keys, host: str, *, quic_backend: str | None = None
    ) -> None:
        self.me = me
        self.keyring = keyring
        self.host = host
        self.quic_backend = quic_backend
        self.accepted: asyncio.Queue[Link] = asyncio.Queue()
        self.refused: list[str] = []
        self.connections = 0
        self._servers: list[asyncio.Server] = []
        self._quic: QuicListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, transports: tuple[str, ...]) -> dict[str, int]:
        """Listen on ``me.ports`` (a missing or 0 port: a free one); returns the ports."""
        ports = dict(self.me.ports)
        for t in transports:
            port = ports.get(t) or _free_port(self.host)
            if t == "quic":
                listener = QuicListener(backend=self.quic_backend)
                await listener.start(
                    self.host,
                    port,
                    make_responder=lambda: responder(self.me, self.keyring),
                    on_session=lambda s: self.accepted.put_nowait(Link(s)),
                    resolve_key=self.keyring.resolve,
                )
                self._quic = listener
            else:
                handler = self._tcp if t == "tcp" else self._ws
                server = await asyncio.start_server(
                    handler, self.host, port, limit=tcp_transport.READ_SIZE
                )
                self._servers.append(server)
            ports[t] = port
        self.me.ports = ports
        return ports

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._accept(reader, writer, "tcp"))

    def _ws(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._accept(reader, writer, "ws"))

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str
    ) -> None:
        self.connections += 1
        hs = responder(self.me, self.keyring)
        try:
            async with asyncio.timeout(limits.HANDSHAKE_TIMEOUT * 2):
                session: Session
                if kind == "tcp":
                    session = await tcp_transport.accept(reader, writer, hs, self.keyring.resolve)
                else:
                    session = await ws_transport.accept(reader, writer, hs, self.keyring.resolve)
        except Exception as e:
            self.refused.append(f"{kind}: {type(e).__name__}: {e}")
            writer.close()
            return
        self.accepted.put_nowait(Link(session))

    def drain_accepted(self) -> list[Link]:
        out = []
        while not self.accepted.empty():
            out.append(self.accepted.get_nowait())
        return out

    async def aclose(self) -> None:
        for link in self.drain_accepted():
            await link.aclose()
        for s in self._servers:
            s.close()
        if self._quic is not None:
            self._quic.close()
        for t in list(self._tasks):
            t.cancel()
        for s in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await s.wait_closed()


# --- dialling the target --------------------------------------------------------------------


@dataclass(slots=True)
class Route:
    """Where a connection to a name goes: ``host:port``, with a RoutingRequest for a router."""

    host: str
    port: int
    router: str | None = None


async def connect(
    column: str,
    route: Route,
    hs: PeerHandshake,
    rr: bytes | None,
    keyring: Keys,
) -> Link:
    """A production session to ``route`` over the column's transport (the caller bounds it)."""
    session: Session
    if column == "tcp":
        session = await tcp_transport.connect(
            route.host, route.port, hs, rr, resolve=keyring.resolve
        )
    elif column == "ws":
        session = await ws_transport.connect(
            route.host, route.port, hs, rr, resolve=keyring.resolve, ping_interval=None
        )
    else:
        if rr is not None:
            raise ValueError("routed QUIC is not a RoutingRequest")
        q: QuicSession = await quic_connect(
            route.host, route.port, hs, backend=QUIC_COLUMNS[column]
        )
        session = q
    return Link(session)


# --- a raw connection: the framers without a Session's checks ----------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class RawLink:
    """TCP or WS with the production handshake and framers, cap one byte higher, and the
    socket at hand: for what a Session must never send."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ws: ws_transport.WsStream | None = None
        self._framer: TcpTransport | WsTransport | None = None
        self._send_cipher: CipherState | None = None

    @classmethod
    async def open(cls, kind: str, host: str, port: int) -> RawLink:
        """Connected, before any handshake byte (the caller bounds the time)."""
        link = cls(kind)
        if kind == "tcp":
            link._reader, link._writer = await asyncio.open_connection(host, port)
        else:
            link._ws = await ws_transport.open_client(host, port, ping_interval=None)
        return link

    # the handshake phase: whole handshake messages
    def _send_hs(self, message: bytes) -> None:
        if self._writer is not None:
            self._writer.write(encode_handshake_frame(message))
        else:
            assert self._ws is not None
            self._ws.send_messages([message])

    async def _recv_hs(self) -> bytes:
        if self._reader is not None:
            (n,) = _U16.unpack(await self._reader.readexactly(2))
            return await self._reader.readexactly(n)
        assert self._ws is not None
        item = await self._ws.recv()
        if item is None:
            raise ConnectionError("closed during the handshake")
        return item[0]

    async def handshake(self, hs: PeerHandshake, rr: bytes | None = None) -> None:
        """Run ``hs`` (an initiator) and set up the framers (the caller bounds the time)."""
        if rr is not None:
            self._send_hs(rr)
        self._send_hs(hs.initial_message())
        reply = hs.receive(await self._recv_hs())
        assert reply is not None
        self._send_hs(reply)
        send, recv = hs.split()
        cap = limits.MESSAGE_MAX_SIZE + 1
        self._send_cipher = send
        self._framer = (
            TcpTransport(send, recv, cap) if self._writer else WsTransport(send, recv, cap)
        )

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the TCP socket, or as one binary WS message."""
        if self._writer is not None:
            self._writer.write(data)
        else:
            assert self._ws is not None
            self._ws.send_messages([data])

    def write_encrypted_chunk(self, plaintext: bytes) -> None:
        """WS only: one chunk encrypted with the session's send cipher (no length check)."""
        assert self._ws is not None and self._send_cipher is not None
        self._ws.send_messages([self._send_cipher.encrypt(plaintext)])

    def send(self, plaintext: bytes) -> None:
        framer = self._framer
        assert framer is not None, "no handshake"
        if isinstance(framer, TcpTransport):
            assert self._writer is not None
            self._writer.write(framer.encrypt_message(plaintext))
        else:
            assert self._ws is not None
            for chunk in framer.encrypt_message(plaintext):
                self._ws.send_messages([chunk])

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if self._writer is not None:
                await self._writer.drain()
            elif self._ws is not None:
                await self._ws.drain()

    async def outcome(self, timeout: float) -> str:
        """Read until the peer closes or sends us a message: ``"closed"``, ``"message: ..."``
        or ``"open"`` when neither happens within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data: bytes | None
                    if self._reader is not None:
                        try:
                            data = await self._reader.read(65536)
                        except (ConnectionError, OSError):
                            return "closed"
                        if not data:
                            return "closed"
                    else:
                        assert self._ws is not None
                        try:
                            item = await self._ws.recv()
                        except Exception:
                            return "closed"
                        if item is None:
                            return "closed"
                        data = item[0]
                    if self._framer is None:
                        continue  # before a handshake: whatever it says, keep waiting
                    try:
                        if isinstance(self._framer, TcpTransport):
                            messages = self._framer.feed(data)
                        else:
                            messages = self._framer.feed_ws_message(data)
                    except ValueError as e:
                        return f"unreadable data ({e})"
                    for m in messages:
                        try:
                            km = decode_kernel_message(m)
                        except CodecError:
                            return f"a message that is not a KernelMessage ({len(m)} bytes)"
                        return f"message: {describe(km)}"
        except TimeoutError:
            return "open"

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._ws is not None:
            self._ws.close()


def describe(km: KernelMessage) -> str:
    """A KernelMessage in one short line, for failure messages."""
    from hnet.core.wire import ResponseMessage

    if isinstance(km.message, ResponseMessage):
        body = km.message.response.body
        kind = "Response"
    else:
        body = km.message.body
        kind = "Request"
    shown = body[:24]
    more = "..." if len(body) > 24 else ""
    return (
        f"{kind} id={km.id} source={km.source} target={km.target} rsvp={km.rsvp} "
        f"body={shown!r}{more} ({len(body)} bytes)"
    )


def local_ip_towards(ip: str) -> str:
    """The address of ours the target would see (loopback for a loopback target)."""
    if ip.startswith("127.") or ip == "::1":
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((ip, 9))
            addr: str = s.getsockname()[0]
            return addr
        except OSError:
            return "127.0.0.1"


def random_id() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1
