"""Every parser hnet exposes to the network or to files, as a fuzz target (fuzz/README.md).

A target is a ``check(data)`` that feeds ``data`` to one parser and raises (AssertionError or
anything escaping) only on a bug of ours: a refusal of bad input through the parser's own error
type is the expected outcome, not a failure. Each target also names its seed corpus. The same
targets run under atheris (``fuzz/run.py``) and as regression tests
(``tests/test_fuzz_targets.py``: every seed and every saved crash in ``fuzz/regressions/``).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ.parent))
sys.path.insert(0, str(FUZZ))

import fuzz_codec  # noqa: E402
import fuzz_framing  # noqa: E402

from hnet.control import ControlError, _parse_reply  # noqa: E402
from hnet.core.circuit import frames as circuit_frames  # noqa: E402
from hnet.core.circuit import request as circuit_request  # noqa: E402
from hnet.core.circuit.errors import CircuitError  # noqa: E402
from hnet.core.framing import FramingError  # noqa: E402
from hnet.core.framing.tcp import HandshakeFrameReader  # noqa: E402
from hnet.core.noise.cipher import CipherState  # noqa: E402
from hnet.core.quic.errors import QuicProtocolError  # noqa: E402
from hnet.core.quic.streams import MessageOpener, MessageSealer  # noqa: E402
from hnet.core.stream import StreamConnection  # noqa: E402
from hns import Indexer, cacher, events, records  # noqa: E402
from hns.names import namehash  # noqa: E402

__all__ = ["TARGETS", "Target"]


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: what it covers, for the README table
    what: str


class _Splits:
    """Reads chunk sizes from the front of an input: the rest is the payload.

    After :attr:`SMALL_BUDGET` pieces, pieces are at least :attr:`FLOOR` bytes: the seeds hold
    ~100 KB (a multi-chunk message), and feeding all of it a byte at a time made a run cost
    ~3,000 reads of the same kind; the handshake and the first messages still arrive in
    pieces of any size, and later pieces still split headers at arbitrary offsets.
    """

    SIZES = (1, 2, 3, 7, 34, 100, 1000, 4096, 65_536)
    SMALL_BUDGET = 256
    FLOOR = 4096

    def __init__(self, data: bytes) -> None:
        self.plan = data[:4]
        self.payload = data[4:]
        self._i = 0

    def next(self) -> int:
        if not self.plan:
            return 65_536
        b = self.plan[self._i % len(self.plan)]
        self._i += 1
        size = self.SIZES[b % len(self.SIZES)]
        if self._i > self.SMALL_BUDGET and size < self.FLOOR:
            return self.FLOOR + 1 + b  # not a multiple of anything on the wire
        return size


class _FixedRng:
    """The framing checker's rng, driven by the input instead (so a crash replays)."""

    def __init__(self, data: bytes) -> None:
        self._data = data or b"\x00"
        self._i = 0

    def randrange(self, n: int) -> int:
        b = self._data[self._i % len(self._data)]
        self._i += 1
        return b % n


# --- the wire codec -----------------------------------------------------------------------------


def check_codec(data: bytes) -> None:
    fuzz_codec.check_one(data)


def seeds_codec() -> list[bytes]:
    return fuzz_codec.load_vectors(fuzz_framing.INTEROP / "hyperware-msgpack-vectors.tsv")


# --- TCP and WebSocket stream connections (first-frame rule, Noise XX, framing) ------------------


def check_stream_tcp(data: bytes) -> None:
    """Byte 0 picks the role (and whether bob defers alice's key), bytes 1-4 the chunk sizes."""
    if not data:
        return
    role = data[0] % 3
    if role == 2:
        conn = StreamConnection(fuzz_framing.alice(), "tcp")
    else:
        conn = StreamConnection(fuzz_framing.bob(defer=role == 1), "tcp")
    splits = _Splits(data[1:])
    checker = fuzz_framing.Checker(conn, _FixedRng(splits.plan))  # type: ignore[arg-type]
    payload = splits.payload
    pos = 0
    while pos < len(payload):
        n = splits.next()
        piece = payload[pos : pos + n]
        checker.feed(lambda piece=piece: conn.receive_data(piece))  # type: ignore[misc]
        pos += n
    checker.feed(conn.receive_eof)


def seeds_stream_tcp() -> list[bytes]:
    v = fuzz_framing.INTEROP
    i2r, r2i = (v / "i2r.bin").read_bytes(), (v / "r2i.bin").read_bytes()
    return [b"\x00\x08\x08\x08\x08" + i2r, b"\x01\x03\x05\x07\x00" + i2r, b"\x02\x08" * 2 + r2i]


def _ws_messages(payload: bytes) -> list[bytes]:
    """``[u16 len][message]``* (a trailing partial message is taken as it is)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(payload) and len(out) < 64:
        n = int.from_bytes(payload[pos : pos + 2], "big")
        out.append(payload[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def check_stream_ws(data: bytes) -> None:
    """Byte 0 picks the role; then WS messages as ``[u16 len][bytes]``; byte 1 marks one as text."""
    if len(data) < 2:
        return
    role = data[0] % 3
    if role == 2:
        conn = StreamConnection(fuzz_framing.alice(), "ws")
    else:
        conn = StreamConnection(fuzz_framing.bob(defer=role == 1), "ws")
    text_at = data[1] if data[1] < 16 else -1
    checker = fuzz_framing.Checker(conn, _FixedRng(data[:2]))  # type: ignore[arg-type]
    for k, m in enumerate(_ws_messages(data[2:])):
        checker.feed(lambda m=m, k=k: conn.receive_message(m, text=k == text_at))  # type: ignore[misc]


def _ws_encode(messages: list[bytes]) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def seeds_ws() -> list[bytes]:
    i2r, r2i = fuzz_framing.ws_sessions()
    return [
        b"\x00\xff" + _ws_encode(i2r),
        b"\x01\xff" + _ws_encode(i2r),
        b"\x02\xff" + _ws_encode(r2i),
    ]


def check_handshake_frames(data: bytes) -> None:
    """The u16 handshake framer alone, with its bounds (docs/protocol.md §4)."""
    reader = HandshakeFrameReader(max_len=1024, max_frames=2)
    splits = _Splits(data)
    payload, pos = splits.payload, 0
    frames = 0
    try:
        while pos < len(payload) and not reader.done:  # after done the caller bounds input
            n = splits.next()
            got = reader.feed(payload[pos : pos + n])
            pos += n
            for f in got:  # (an empty frame is the handshake layer's to refuse)
                assert len(f) <= 1024, f"frame of {len(f)} bytes"
            frames += len(got)
            assert frames <= 2, "more frames than allowed"
            if not reader.done:
                assert reader.buffered <= 2 + 1024 + n, "framer holds too much"
    except FramingError:
        return
    rest = reader.take_remaining()
    assert len(rest) <= len(payload)


def seeds_handshake_frames() -> list[bytes]:
    return [b"\x00\x00\x00\x00" + b"\x00\x20" + bytes(32) + b"\x00\x05hello"]


# --- QUIC message streams ------------------------------------------------------------------------

_QUIC_KEY = bytes(range(32))


def check_quic_stream(data: bytes) -> None:
    """One message stream's bytes (``[u32 len]`` + sealed chunks), split, then FIN."""
    opener = MessageOpener(CipherState(_QUIC_KEY), max_message=1 << 20)
    splits = _Splits(data)
    payload, pos = splits.payload, 0
    try:
        while pos < len(payload):
            n = splits.next()
            assert opener.feed(payload[pos : pos + n]) is None, "a message before FIN"
            pos += n
            assert opener.buffered <= (1 << 20) + 70_000, f"{opener.buffered} bytes held"
        message = opener.feed(b"", fin=True)
    except QuicProtocolError:
        return
    assert message is not None and 0 < len(message) <= 1 << 20


def seeds_quic_stream() -> list[bytes]:
    out = []
    for size in (1, 64, 65_519, 65_520, 200_000):
        sealer = MessageSealer(CipherState(_QUIC_KEY), bytes(size))
        out.append(b"\x08\x08\x08\x08" + sealer.seal_all())
    return out


# --- circuits: requests and control frames ------------------------------------------------------


def check_circuit_request(data: bytes) -> None:
    try:
        req = circuit_request.decode(data)
    except CircuitError:
        return
    again = circuit_request.encode(req)
    assert again == bytes(data), "a decoded circuit request does not re-encode to its bytes"


def check_circuit_control(data: bytes) -> None:
    try:
        frame = circuit_frames.decode_control(data)
    except CircuitError:
        return
    again = circuit_frames.encode_control(frame)
    assert circuit_frames.decode_control(again) == frame, "control frame round trip changed it"
    if isinstance(frame, circuit_frames.AddressFrame):
        ipaddress.ip_address(frame.ip)


def check_circuit_opening(data: bytes) -> None:
    try:
        got = circuit_frames.classify_opening(data[:3])
    except CircuitError:
        return
    if got is not None:
        kind, used = got
        message = kind is circuit_frames.StreamKind.MESSAGE
        assert used == (0 if message else 3), f"{kind} opening of {used} bytes"


def _circuit_seeds() -> tuple[list[bytes], list[bytes]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)
    req = circuit_request.sign(
        circuit_request.CircuitFields(
            circuit_request.VERSION, "alice.os", "bob.os", "router.os", 1_700_000_000, bytes(16)
        ),
        key,
    )
    raw = circuit_request.encode(req)
    frames: list[circuit_frames.ControlFrame] = [
        circuit_frames.RequestFrame(circuit_frames.SHARE_ADDRESS, req),
        circuit_frames.OfferFrame(7, 0, req),
        circuit_frames.AcceptFrame(7, circuit_frames.SHARE_ADDRESS),
        circuit_frames.AddressFrame("10.0.0.1", 9000),
        circuit_frames.AddressFrame("::1", 443),
    ]
    return [raw], [circuit_frames.encode_control(f) for f in frames]


# --- Hypermap logs and notes, cacher files -------------------------------------------------------


def _indexers() -> tuple[Indexer, Indexer]:
    fast, general = Indexer(), Indexer()
    general._fast = False
    return fast, general


def check_hypermap_logs(data: bytes) -> None:
    """JSON logs fed to the indexer's fast path and its general path: never an exception, and
    the same records and skips from both (the fast path only ever declines to the other)."""
    try:
        logs = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(logs, dict):
        logs = [logs]
    if not isinstance(logs, list):
        return
    fast, general = _indexers()
    fast.feed_all(logs)
    for log in logs:
        general.feed(log)
    assert fast.records() == general.records(), "fast and general paths differ"
    assert fast.skipped == general.skipped, "fast and general paths skip differently"


def _history() -> list[dict[str, object]]:
    logs = []
    meta = 0

    def m() -> events.LogMeta:
        nonlocal meta
        meta += 1
        return events.LogMeta(meta, bytes([meta]) * 32, bytes([meta, 1]) * 16, 0, 0)

    root = bytes(32)
    logs.append(events.mint_log(root, "os", m()))
    logs.append(events.mint_log(namehash("os"), "alice", m()))
    logs.append(events.mint_log(namehash("os"), "router", m()))
    alice, router = namehash("alice.os"), namehash("router.os")
    logs.append(events.note_log(router, "~net-key", bytes(range(32)), m()))
    logs.append(events.note_log(router, "~ip", records.encode_ip("10.1.2.3"), m()))
    logs.append(events.note_log(router, "~tcp-port", records.encode_port(9000), m()))
    logs.append(events.note_log(alice, "~net-key", bytes(range(1, 33)), m()))
    logs.append(events.note_log(alice, "~routers", records.encode_routers(["router.os"]), m()))
    return logs


def seeds_hypermap() -> list[bytes]:
    logs = _history()
    return [json.dumps(logs).encode(), json.dumps(logs[:2]).encode(), json.dumps(logs[3]).encode()]


def check_cacher_file(data: bytes) -> None:
    try:
        cache = cacher.parse_log_cache(data)
    except cacher.CacheFileError:
        return
    logs = cacher.ordered_logs([cache])
    assert len(logs) <= len(cache.logs)
    fast, _ = _indexers()
    fast.feed_all(logs)


def seeds_cacher() -> list[bytes]:
    logs = _history()
    meta = cacher.LogsMetadata("8453", "1", str(len(logs)), "20261201T000000Z", "fuzz.os")
    return [cacher.dump_log_cache(cacher.LogCache(meta, logs))]


# --- the control socket -------------------------------------------------------------------------


def check_control_line(data: bytes) -> None:
    """A reply line as the CLI parses it, and a request line as the node's first check does."""
    try:
        reply = _parse_reply(data)
    except ControlError:
        pass
    else:
        assert isinstance(reply, dict)


def seeds_control() -> list[bytes]:
    return [b'{"op":"ping","target":"bob.os","id":1}\n', b'{"ok":true,"name":"a.os"}\n']


def _circuit_req_seeds() -> list[bytes]:
    return _circuit_seeds()[0]


def _circuit_ctl_seeds() -> list[bytes]:
    return _circuit_seeds()[1]


def _opening_seeds() -> list[bytes]:
    return [b"\x00\x14", b"\x00\x00\x01", b"\x00\x00\x02", b"\xff\xff\xff"]


# --- the WIT value glue (guest values lifted by wasmtime, kernel/wasm/convert.py) -----------------

_WIT_FIELDS = (
    "process-name", "package-name", "publisher-node", "node", "process", "issuer", "params",
    "mime", "bytes", "inherit", "expects-response", "body", "metadata", "capabilities",
)  # fmt: skip


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _guest_value(r: _Reader, depth: int = 0) -> object:
    """A value shaped like what wasmtime-py lifts (Record, tuple, list, str, bytes, int, bool,
    None), chosen by the input: well-formed records as often as the fuzzer finds them."""
    from wasmtime.component import Record

    kind = r.byte() % (8 if depth < 6 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return bool(r.byte() & 1)
    if kind == 2:
        return int.from_bytes(r.take(8), "big", signed=True)
    if kind == 3:
        return r.take(r.byte()).decode(errors="replace")
    if kind == 4:
        return r.take(r.byte() * 4)
    n = r.byte() % 5
    if kind == 5:
        return [_guest_value(r, depth + 1) for _ in range(n)]
    if kind == 6:
        return tuple(_guest_value(r, depth + 1) for _ in range(n))
    rec = Record()
    for _ in range(n + 1):
        setattr(rec, _WIT_FIELDS[r.byte() % len(_WIT_FIELDS)], _guest_value(r, depth + 1))
    return rec


def check_wit_glue(data: bytes) -> None:
    """Every ``*_from_wit`` on a value built from the input: a value or GuestError, nothing
    else; and what is accepted lowers back and lifts to the same thing."""
    from kernel.wasm import convert as cv

    lifts = [
        (cv.process_id_from_wit, cv.process_id_to_wit),
        (cv.address_from_wit, cv.address_to_wit),
        (cv.capability_from_wit, None),
        (cv.capability_list_from_wit, None),
        (cv.blob_from_wit, cv.blob_to_wit),
        (cv.context_from_wit, None),
        (cv.request_from_wit, cv.request_to_wit),
        (cv.response_from_wit, cv.response_to_wit),
        (cv.message_from_wit, cv.message_to_wit),
        (cv.on_exit_from_wit, cv.on_exit_to_wit),
    ]
    if not data:
        return
    lift, lower = lifts[data[0] % len(lifts)]
    value = _guest_value(_Reader(data[1:]))
    try:
        got = lift(value)
    except cv.GuestError:
        return
    if lower is not None and got is not None:
        assert lift(lower(got)) == got, f"{lift.__name__}: lowering and lifting changed it"  # type: ignore[operator]


def _wit_seeds() -> list[bytes]:
    # a process id record: three string fields (kind 3), then an address around it
    pid = b"\x07\x02" + b"\x00\x03\x01p" + b"\x01\x03\x01k" + b"\x02\x03\x01u"
    return [b"\x00" + pid, b"\x01\x07\x01\x03\x03\x04a.os\x04" + pid, b"\x04\x00"]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("codec", check_codec, seeds_codec, "every msgpack decoder (KernelMessage, ...)"),
        Target(
            "stream_tcp", check_stream_tcp, seeds_stream_tcp, "TCP: first frame, Noise XX, framing"
        ),
        Target("stream_ws", check_stream_ws, seeds_ws, "WebSocket: Noise XX, message framing"),
        Target("handshake_frames", check_handshake_frames, seeds_handshake_frames, "u16 framer"),
        Target("quic_stream", check_quic_stream, seeds_quic_stream, "QUIC message streams"),
        Target("circuit_request", check_circuit_request, _circuit_req_seeds, "CircuitRequest"),
        Target(
            "circuit_control", check_circuit_control, _circuit_ctl_seeds, "circuit control frames"
        ),
        Target("circuit_opening", check_circuit_opening, _opening_seeds, "stream openings"),
        Target("hypermap_logs", check_hypermap_logs, seeds_hypermap, "Mint/Note logs, notes"),
        Target("cacher_file", check_cacher_file, seeds_cacher, "hypermap-cacher files"),
        Target("control_line", check_control_line, seeds_control, "control-socket JSON"),
        Target("wit_glue", check_wit_glue, _wit_seeds, "guest values lifted from Wasm"),
    )
}
