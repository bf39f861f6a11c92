"""The QUIC library boundary: the only module of hnet that imports aioquic or qh3.

Both libraries provide the same sans-I/O QUIC state machine (``QuicConnection``: feed datagrams
and timer ticks, collect datagrams and events); qh3 keeps aioquic's API over a native core.
Everything else in :mod:`hnet.transport.quic` sees only :class:`QuicConn`, :class:`Backend` and the
small event classes below, so the two are interchangeable.

Selection: the ``backend`` argument, else the ``HNET_QUIC_BACKEND`` environment variable
(``aioquic`` or ``qh3``), else :data:`DEFAULT_BACKEND` (the faster one; see docs/quic.md).

QUIC's TLS here provides transport encryption and loss recovery only; it is **not** trusted for
identity (Noise is, docs/quic.md): each process serves a self-signed certificate generated in
memory at first use, and clients do not verify certificates. The ALPN is :data:`ALPN`.

A few library internals are read here and nowhere else (marked "internal" below): unsent and
in-flight byte counts for the bulk pacing, how a close came about, and aioquic's receive-window
growth, which we bound. They are covered by the tests against the pinned versions.
"""

from __future__ import annotations

import abc
import datetime
import functools
import os
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hnet import limits

#: The application protocol negotiated in the QUIC (TLS) handshake.
ALPN = "hnet-noise/1"
#: Environment variable naming the backend.
ENV_VAR = "HNET_QUIC_BACKEND"
#: Known backends, fastest first.
BACKENDS = ("qh3", "aioquic")
#: The default: qh3 passes every test and moves bulk data about twice as fast (docs/quic.md).
DEFAULT_BACKEND = "qh3"
#: Length of the connection IDs we issue; the server demultiplexes datagrams on it.
CID_LENGTH = 8
#: QUIC version 1 (RFC 9000), the only one we speak.
QUIC_VERSION_1 = 0x00000001
#: Smallest datagram that may carry a client Initial (RFC 9000 §14.1).
MIN_INITIAL_SIZE = 1200

#: A socket address as Python's socket module gives it: (host, port) or (host, port, flow, scope).
Addr = tuple[Any, ...]


class BackendError(ValueError):
    """Unknown backend name, or the library is not installed."""


# --- events ----------------------------------------------------------------------------------
# The subset of QUIC events hnet acts on, translated from either library.


@dataclass(slots=True)
class HandshakeCompleted:
    alpn: str | None


@dataclass(slots=True)
class StreamData:
    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(slots=True)
class StreamReset:
    stream_id: int
    error_code: int


@dataclass(slots=True)
class StopSending:
    stream_id: int
    error_code: int


@dataclass(slots=True)
class CidIssued:
    cid: bytes


@dataclass(slots=True)
class CidRetired:
    cid: bytes


@dataclass(slots=True)
class DatagramFrame:
    """An unreliable DATAGRAM frame: never negotiated by us, so a protocol error if seen."""


QuicEvent = (
    HandshakeCompleted
    | StreamData
    | StreamReset
    | StopSending
    | CidIssued
    | CidRetired
    | DatagramFrame
)


@dataclass(frozen=True, slots=True)
class Termination:
    """How a QUIC connection ended (or is ending)."""

    error_code: int
    #: None for an application close (our codes), else the QUIC frame type of a transport error
    frame_type: int | None
    reason: str
    #: True if the peer sent CONNECTION_CLOSE; False for our close, a local QUIC error or an
    #: idle timeout
    by_peer: bool


@dataclass(frozen=True, slots=True)
class Header:
    """The invariant fields of a packet header, for demultiplexing (RFC 8999)."""

    is_long: bool
    version: int | None
    is_initial: bool
    destination_cid: bytes
    source_cid: bytes
    token: bytes


# --- one connection --------------------------------------------------------------------------


class QuicConn(abc.ABC):
    """One QUIC connection of either library, reduced to the calls hnet makes."""

    backend: ClassVar[str]

    def __init__(self, conn: Any) -> None:
        self._c = conn
        #: stream bytes handed to us in order so far (drives aioquic's bounded receive window)
        self.consumed = 0
        self._closed_locally = False
        self._min_rtt: float | None = None

    @property
    def host_cid(self) -> bytes:
        cid: bytes = self._c.host_cid
        return cid

    def connect(self, addr: Addr, now: float) -> None:
        self._c.connect(addr, now=now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._c.receive_datagram(data, addr, now=now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out: list[tuple[bytes, Addr]] = self._c.datagrams_to_send(now=now)
        return out

    def get_timer(self) -> float | None:
        t: float | None = self._c.get_timer()
        return t

    def handle_timer(self, now: float) -> None:
        self._c.handle_timer(now=now)

    def send_stream_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False
    ) -> None:
        self._c.send_stream_data(stream_id, data, end_stream)

    def next_bidi_stream_id(self) -> int:
        sid: int = self._c.get_next_available_stream_id(is_unidirectional=False)
        return sid

    def send_ping(self, uid: int) -> None:
        self._c.send_ping(uid)

    def change_connection_id(self) -> None:
        """Switch to a fresh peer-issued connection ID, if the peer gave us a spare one."""
        self._c.change_connection_id()

    def close(self, error_code: int, reason: str) -> None:
        """Application close (CONNECTION_CLOSE type 0x1d) with one of our codes."""
        self._closed_locally = True
        self._c.close(error_code=error_code, reason_phrase=reason)

    def next_event(self) -> QuicEvent | None:
        """The next event hnet cares about (others are skipped)."""
        while True:
            ev = self._c.next_event()
            if ev is None:
                return None
            out = self._translate(ev)
            if out is not None:
                if type(out) is StreamData:
                    self.consumed += len(out.data)
                return out

    @abc.abstractmethod
    def _translate(self, ev: Any) -> QuicEvent | None: ...

    @abc.abstractmethod
    def can_open_stream(self) -> bool:
        """Whether the peer's stream credit (MAX_STREAMS) allows one more bidi stream."""

    @abc.abstractmethod
    def unsent_bytes(self, stream_id: int) -> int:
        """Bytes written to ``stream_id`` not yet sent once (internal)."""

    @abc.abstractmethod
    def bytes_in_flight(self) -> int:
        """Bytes sent on the connection and not yet acknowledged or declared lost (internal)."""

    @abc.abstractmethod
    def min_rtt(self) -> float | None:
        """The smallest round-trip time measured so far, in seconds (internal)."""

    @abc.abstractmethod
    def termination(self) -> Termination | None:
        """Set once the connection is closing, draining or closed (internal)."""


def _translator(mod: Any) -> dict[type, Any]:
    """Event class -> function building our event, for a library's ``quic.events`` module."""
    return {
        mod.StreamDataReceived: lambda e: StreamData(e.stream_id, e.data, e.end_stream),
        mod.HandshakeCompleted: lambda e: HandshakeCompleted(e.alpn_protocol),
        mod.StreamReset: lambda e: StreamReset(e.stream_id, e.error_code),
        mod.StopSendingReceived: lambda e: StopSending(e.stream_id, e.error_code),
        mod.ConnectionIdIssued: lambda e: CidIssued(e.connection_id),
        mod.ConnectionIdRetired: lambda e: CidRetired(e.connection_id),
        mod.DatagramFrameReceived: lambda e: DatagramFrame(),
    }


# --- certificate -----------------------------------------------------------------------------


@functools.cache
def certificate() -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): self-signed P-256, made once per process.

    Identity is proven by the Noise handshake, never by this certificate, so it carries nothing
    but a fixed name and is regenerated at every start.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hnet")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


# --- backends --------------------------------------------------------------------------------


class Backend(abc.ABC):
    """A QUIC library: connection factories and the packet helpers a server needs."""

    name: ClassVar[str]
    supported_versions: ClassVar[tuple[int, ...]] = (QUIC_VERSION_1,)

    @abc.abstractmethod
    def client(self) -> QuicConn:
        """A client connection (call :meth:`QuicConn.connect` next)."""

    @abc.abstractmethod
    def server(self, original_dcid: bytes, retry_scid: bytes | None) -> QuicConn:
        """A server connection for a client Initial (after Retry if ``retry_scid``)."""

    @abc.abstractmethod
    def parse_header(self, data: bytes) -> Header | None:
        """The header of a datagram's first packet, or None if it is not QUIC."""

    @abc.abstractmethod
    def encode_retry(
        self, version: int, scid: bytes, dcid: bytes, original_dcid: bytes, token: bytes
    ) -> bytes: ...

    @abc.abstractmethod
    def encode_version_negotiation(self, scid: bytes, dcid: bytes) -> bytes: ...

    def _settings(self) -> dict[str, Any]:
        return {
            "alpn_protocols": [ALPN],
            "connection_id_length": CID_LENGTH,
            "idle_timeout": limits.QUIC_IDLE_TIMEOUT,
            "max_datagram_size": limits.QUIC_MAX_DATAGRAM_SIZE,
            "max_data": limits.QUIC_MAX_DATA,
            "max_stream_data": limits.QUIC_MAX_STREAM_DATA,
            "supported_versions": list(self.supported_versions),
        }


def _cap_aioquic_window(loss: Any) -> None:
    """Keep aioquic's congestion window at most QUIC_MAX_PACING_RATE x its smoothed RTT.

    aioquic grows the window on every acknowledgement, also while the sender is limited by
    the application (our bulk window, docs/quic.md §5), so on a lossless path it grows
    without end (41 MB after four 10 MB messages on loopback). Its pacer then derives a packet
    time below its 1 µs floor and a token bucket smaller than one packet: each wake-up sends
    a single datagram, and bulk throughput on a long-lived connection fell from 6 to 1.3 MB/s
    within four messages. The cap (at least 16 datagrams, aioquic's pacing burst) is far above
    what a Python QUIC stack sends, so it never limits a transfer.
    """
    # aioquic internals (1.x); were they ever renamed, this does nothing rather than break ACKs
    cc = getattr(loss, "_cc", None)
    pacer = getattr(loss, "_pacer", None)
    if cc is None or pacer is None or not getattr(loss, "_rtt_initialized", False):
        return
    srtt = float(loss._rtt_smoothed)
    cap = max(int(limits.QUIC_MAX_PACING_RATE * srtt), 16 * limits.QUIC_MAX_DATAGRAM_SIZE)
    if cc.congestion_window > cap:
        cc.congestion_window = cap
        pacer.update_rate(congestion_window=cap, smoothed_rtt=srtt)


class _AioquicBackend(Backend):
    name = "aioquic"

    def __init__(self) -> None:
        from aioquic._buffer import Buffer
        from aioquic.quic import events
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection, QuicConnectionState
        from aioquic.quic.packet import (
            QuicPacketType,
            encode_quic_retry,
            encode_quic_version_negotiation,
            pull_quic_header,
        )
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self._config_cls = QuicConfiguration
        self._buffer = Buffer
        self._pull = pull_quic_header
        self._initial = QuicPacketType.INITIAL
        self._encode_retry = encode_quic_retry
        self._encode_vn = encode_quic_version_negotiation
        cert_pem, key_pem = certificate()
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        self._key = load_pem_private_key(key_pem, password=None)
        translate = _translator(events)
        draining = QuicConnectionState.DRAINING

        class Bounded(QuicConnection):
            """aioquic with a sliding connection receive window (internal).

            aioquic doubles MAX_DATA whenever half of it has been *received*, gaps included,
            so a peer that leaves a hole at the start of a stream and keeps sending beyond it
            makes aioquic buffer without bound. Here the window slides over the bytes handed
            to us in order instead: out-of-order data can never exceed QUIC_MAX_DATA.
            """

            hnet: AioquicConn

            def _write_connection_limits(self, builder: Any, space: Any) -> None:
                max_data = self._local_max_data
                window = limits.QUIC_MAX_DATA
                consumed = self.hnet.consumed
                if max_data.value - consumed < window // 2:
                    max_data.value = consumed + window
                used = max_data.used
                max_data.used = 0  # the parent doubles the window when used * 2 > value
                try:
                    super()._write_connection_limits(builder, space)
                finally:
                    max_data.used = used

            def _handle_ack_frame(self, context: Any, frame_type: int, buf: Any) -> None:
                super()._handle_ack_frame(context, frame_type, buf)
                _cap_aioquic_window(self._loss)

        self._conn_cls = Bounded

        class AioquicConn(QuicConn):
            backend = "aioquic"

            def _translate(self, ev: Any) -> QuicEvent | None:
                f = translate.get(type(ev))
                return f(ev) if f is not None else None

            def can_open_stream(self) -> bool:
                c = self._c
                return int(c._local_next_stream_id_bidi) // 4 < int(c._remote_max_streams_bidi)

            def unsent_bytes(self, stream_id: int) -> int:
                stream = self._c._streams.get(stream_id)
                if stream is None:
                    return 0
                s = stream.sender
                return max(0, int(s._buffer_stop) - int(s.highest_offset))

            def bytes_in_flight(self) -> int:
                return int(self._c._loss.bytes_in_flight)

            def min_rtt(self) -> float | None:
                rtt = float(self._c._loss._rtt_min)
                return None if rtt == float("inf") else rtt

            def termination(self) -> Termination | None:
                ev = self._c._close_event
                if ev is None:
                    return None
                by_peer = not self._closed_locally and self._c._state == draining
                return Termination(ev.error_code, ev.frame_type, ev.reason_phrase, by_peer)

        self._wrap = AioquicConn

    def _make(self, conn: Any) -> QuicConn:
        wrapped = self._wrap(conn)
        conn.hnet = wrapped
        return wrapped

    def client(self) -> QuicConn:
        cfg = self._config_cls(is_client=True, verify_mode=ssl.CERT_NONE, **self._settings())
        return self._make(self._conn_cls(configuration=cfg))

    def server(self, original_dcid: bytes, retry_scid: bytes | None) -> QuicConn:
        cfg = self._config_cls(is_client=False, **self._settings())
        cfg.certificate = self._cert
        cfg.private_key = self._key
        return self._make(
            self._conn_cls(
                configuration=cfg,
                original_destination_connection_id=original_dcid,
                retry_source_connection_id=retry_scid,
            )
        )

    def parse_header(self, data: bytes) -> Header | None:
        try:
            h = self._pull(self._buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            return None
        return Header(
            is_long=h.version is not None,
            version=h.version,
            is_initial=h.packet_type == self._initial,
            destination_cid=h.destination_cid,
            source_cid=h.source_cid,
            token=h.token,
        )

    def encode_retry(
        self, version: int, scid: bytes, dcid: bytes, original_dcid: bytes, token: bytes
    ) -> bytes:
        out: bytes = self._encode_retry(
            version=version,
            source_cid=scid,
            destination_cid=dcid,
            original_destination_cid=original_dcid,
            retry_token=token,
        )
        return out

    def encode_version_negotiation(self, scid: bytes, dcid: bytes) -> bytes:
        out: bytes = self._encode_vn(
            source_cid=scid, destination_cid=dcid, supported_versions=list(self.supported_versions)
        )
        return out


class _Qh3Backend(Backend):
    name = "qh3"

    def __init__(self) -> None:
        from qh3._hazmat import pull_quic_header
        from qh3.quic import events
        from qh3.quic.configuration import QuicConfiguration
        from qh3.quic.connection import QuicConnection
        from qh3.quic.packet import (
            QuicPacketType,
            encode_quic_retry,
            encode_quic_version_negotiation,
        )

        self._config_cls = QuicConfiguration
        self._conn_cls = QuicConnection
        self._pull = pull_quic_header
        self._initial = int(QuicPacketType.INITIAL)
        self._encode_retry = encode_quic_retry
        self._encode_vn = encode_quic_version_negotiation
        translate = _translator(events)

        class Qh3Conn(QuicConn):
            backend = "qh3"

            def _translate(self, ev: Any) -> QuicEvent | None:
                f = translate.get(type(ev))
                return f(ev) if f is not None else None

            def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
                # qh3's own loop (QuicConnection.datagrams_to_send) raises when the native
                # packet builder finds the anti-amplification budget smaller than a packet
                # ("packet builder capacity exhausted", qh3 2.1.0, seen when an aioquic
                # client's 1,200-byte Initial leaves a 3,600-byte budget): a transient
                # condition, but the exception also drops the datagrams already taken. Poll
                # the core ourselves and stop at that point instead (internal).
                core = self._c._core
                if core is None:
                    return []
                out: list[tuple[bytes, Addr]] = []
                while True:
                    try:
                        transmit = core.poll_transmit(now)
                    except RuntimeError as e:
                        if "capacity exhausted" in str(e):
                            break
                        raise
                    if transmit is None:
                        return out
                    out.append((transmit[0], transmit[1]))
                return out

            def can_open_stream(self) -> bool:
                core = self._c._core
                if core is None:
                    return False
                limits_ = core.stream_limits  # (peer max bidi, peer max uni, opened bidi, uni)
                return int(limits_[2]) < int(limits_[0])

            def unsent_bytes(self, stream_id: int) -> int:
                return int(self._c.get_send_buffer_size(stream_id))

            def bytes_in_flight(self) -> int:
                core = self._c._core
                return 0 if core is None else int(core.bytes_in_flight)

            def min_rtt(self) -> float | None:
                core = self._c._core
                latest = None if core is None else core.latest_rtt
                if latest is not None and (self._min_rtt is None or latest < self._min_rtt):
                    self._min_rtt = float(latest)
                return self._min_rtt

            def termination(self) -> Termination | None:
                ev = self._c._close_event
                if ev is None:
                    return None
                core = self._c._core
                local = self._closed_locally or (core is not None and core.local_error is not None)
                idle = ev.reason_phrase.lower().startswith("idle")
                return Termination(
                    ev.error_code, ev.frame_type, ev.reason_phrase, not local and not idle
                )

        self._wrap = Qh3Conn

    def _config(self, is_client: bool) -> Any:
        cfg = self._config_cls(is_client=is_client, **self._settings())
        # Stay at our datagram size on every path (no path-MTU probing): simpler to reason about
        # and the same on both backends.
        cfg.probe_datagram_size = False
        if is_client:
            cfg.verify_mode = ssl.CERT_NONE
            cfg.verify_hostname = False
        else:
            cert_pem, key_pem = certificate()
            cfg.load_cert_chain(cert_pem, key_pem)
        return cfg

    def client(self) -> QuicConn:
        return self._wrap(self._conn_cls(configuration=self._config(True)))

    def server(self, original_dcid: bytes, retry_scid: bytes | None) -> QuicConn:
        return self._wrap(
            self._conn_cls(
                configuration=self._config(False),
                original_destination_connection_id=original_dcid,
                retry_source_connection_id=retry_scid,
            )
        )

    def parse_header(self, data: bytes) -> Header | None:
        try:
            version, ptype, _len, dcid, scid, token, *_ = self._pull(data, 0, CID_LENGTH)
        except ValueError:
            return None
        return Header(
            is_long=version is not None,
            version=version,
            is_initial=version is not None and ptype == self._initial,
            destination_cid=dcid,
            source_cid=scid,
            token=token or b"",
        )

    def encode_retry(
        self, version: int, scid: bytes, dcid: bytes, original_dcid: bytes, token: bytes
    ) -> bytes:
        out: bytes = self._encode_retry(
            version=version,
            source_cid=scid,
            destination_cid=dcid,
            original_destination_cid=original_dcid,
            retry_token=token,
        )
        return out

    def encode_version_negotiation(self, scid: bytes, dcid: bytes) -> bytes:
        out: bytes = self._encode_vn(
            source_cid=scid, destination_cid=dcid, supported_versions=list(self.supported_versions)
        )
        return out


_CLASSES: dict[str, type[Backend]] = {"aioquic": _AioquicBackend, "qh3": _Qh3Backend}


@functools.cache
def _load(name: str) -> Backend:
    try:
        return _CLASSES[name]()
    except ImportError as e:
        raise BackendError(f"QUIC backend {name!r} is not installed ({e})") from None


def resolve_name(name: str | None = None) -> str:
    """The backend to use: ``name``, else $HNET_QUIC_BACKEND, else the default."""
    chosen = name or os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    if chosen not in _CLASSES:
        raise BackendError(f"unknown QUIC backend {chosen!r} (choose from {', '.join(BACKENDS)})")
    return chosen


def get_backend(name: str | None = None) -> Backend:
    """The (cached) backend for ``name`` (see :func:`resolve_name`)."""
    return _load(resolve_name(name))
