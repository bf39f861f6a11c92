"""The net module, ``NODE@net:distro:sys``: hellos from remote nodes, NetActions from local ones.

- A remote request whose body is not a ``ConnectionRequest`` is a *hello*: it is logged and
  answered with a Response whose body is ``b"ack"`` (the reference's ``hi`` command; the
  basis of ``hnet ping``).
- ``ConnectionRequest(from)`` is only meaningful from one of our routers when we are
  indirect: it goes to the indirect role (``on_connection_request``), which answers it;
  otherwise it is logged and ignored, as the reference does.
- A remote *response* carrying a NetResponse answers a ConnectionRequest we sent as a router
  (``on_response``: ``Rejected(from)`` drops the pending passthrough); other responses are
  ignored.
- Local requests carry NetActions: HnsUpdate/HnsBatchUpdate feed the PKI, GetPeers, GetPeer,
  GetDiagnostics, Sign (over ``source_address_string + blob``) and Verify.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys, limits
from hnet.core.wire import (
    Address,
    CodecError,
    ConnectionRequest,
    Diagnostics,
    GetDiagnostics,
    GetPeer,
    GetPeers,
    HnsBatchUpdate,
    HnsUpdate,
    HnsUpdateAction,
    Identity,
    KernelMessage,
    LazyLoadBlob,
    NetResponse,
    Peer,
    Peers,
    Request,
    Response,
    ResponseMessage,
    Sign,
    Signed,
    Verified,
    Verify,
    build,
    decode_net_action,
    decode_net_response,
    encode_net_response,
)
from hnet.log import get_logger

log = get_logger("net")

NET_PROCESS = "net:distro:sys"
ACK = b"ack"
#: Every ack is the same (immutable) Response: built once.
_ACK_MESSAGE = ResponseMessage(
    Response(inherit=False, body=ACK, metadata=None, capabilities=()), None
)

#: (message, ``from``) -> True if the ConnectionRequest was taken (it is answered later)
OnConnectionRequest = Callable[[KernelMessage, str], bool]
#: a remote node's NetResponse to one of our requests
OnNetResponse = Callable[[KernelMessage, NetResponse], None]


class NetPki(Protocol):
    """What the net module needs of the PKI."""

    def identity(self, name: str) -> Identity | None: ...

    def networking_key(self, name: str) -> bytes | None: ...

    def ingest(self, update: HnsUpdate) -> None: ...


class NetModule:
    def __init__(
        self,
        *,
        our_name: str,
        signing_key: Ed25519PrivateKey,
        pki: NetPki,
        send: Callable[[KernelMessage], None],
        connected_peers: Callable[[], list[str]],
        diagnostics: Callable[[], str],
        on_connection_request: OnConnectionRequest | None = None,
        on_response: OnNetResponse | None = None,
    ) -> None:
        self.our_name = our_name
        self.address = Address.parse(f"{our_name}@{NET_PROCESS}")
        self._key = signing_key
        self._pki = pki
        self._send = send
        self._connected = connected_peers
        self._diagnostics = diagnostics
        self._on_connection_request = on_connection_request
        self._on_response = on_response
        self.hellos = 0
        #: per peer: when its last hello was logged, and how many came since
        self._hello_log: dict[str, tuple[float, int]] = {}

    def handle(self, km: KernelMessage, via: str | None) -> None:
        """Runs on the receive path: never blocks (replies are queued, never awaited)."""
        message = km.message
        if isinstance(message, ResponseMessage):
            if km.source.node != self.our_name and self._on_response is not None:
                try:
                    response = decode_net_response(message.response.body)
                except CodecError:
                    log.debug("net: response ignored", source=str(km.source))
                    return
                self._on_response(km, response)
            else:
                log.debug("net: response ignored", source=str(km.source))
            return
        if km.source.node == self.our_name:
            self._local(km, message)
        else:
            self._remote(km, message, via)

    def _remote(self, km: KernelMessage, request: Request, via: str | None) -> None:
        action = None
        body = request.body
        # A NetAction is an enum: a msgpack map (fixmap 0x80..0x8f) or a unit variant's name
        # (fixstr 0xa0..0xbf); any other first byte is a hello, no decode attempt needed.
        if body and (0x80 <= body[0] <= 0x8F or 0xA0 <= body[0] <= 0xBF):
            try:
                action = decode_net_action(body)
            except CodecError:
                action = None
        if isinstance(action, ConnectionRequest):
            hook = self._on_connection_request
            if hook is None or not hook(km, action.name):
                log.info(
                    "ConnectionRequest ignored: we are not indirect or it is not our router",
                    source=km.source.node,
                    name=action.name,
                )
            return
        self.hellos += 1
        self._log_hello(km.source.node, via, body)
        self._send(
            build.kernel_message(
                km.id, self.address, km.rsvp or km.source, None, _ACK_MESSAGE, None
            )
        )

    def _log_hello(self, source: str, via: str | None, body: bytes) -> None:
        """Log a hello; a peer that sends many is logged at most once per
        HELLO_LOG_INTERVAL with the count since (a log line costs more than the hello)."""
        now = time.monotonic()
        last, count = self._hello_log.get(source, (0.0, 0))
        if now - last < limits.HELLO_LOG_INTERVAL:
            self._hello_log[source] = (last, count + 1)
            return
        if len(self._hello_log) >= limits.MEMO_MAX:
            self._hello_log.clear()
        self._hello_log[source] = (now, 0)
        log.info(
            "hello",
            source=source,
            via=via,
            text=body[:256].decode("utf-8", "replace"),
            unlogged_since_last=count,
        )

    def _local(self, km: KernelMessage, request: Request) -> None:
        try:
            action = decode_net_action(request.body)
        except CodecError as e:
            log.info("local request is not a NetAction", source=str(km.source), error=str(e))
            return
        blob_bytes = km.lazy_load_blob.bytes if km.lazy_load_blob is not None else b""
        response: NetResponse
        blob: LazyLoadBlob | None = None
        if isinstance(action, HnsUpdateAction):
            self._pki.ingest(action.update)
            return
        if isinstance(action, HnsBatchUpdate):
            for update in action.updates:
                self._pki.ingest(update)
            return
        if isinstance(action, GetPeers):
            ids = [self._pki.identity(n) for n in self._connected()]
            response = Peers(tuple(i for i in ids if i is not None))
        elif isinstance(action, GetPeer):
            response = Peer(self._pki.identity(action.name))
        elif isinstance(action, GetDiagnostics):
            response = Diagnostics(self._diagnostics())
        elif isinstance(action, Sign):
            signature = self._key.sign(str(km.source).encode() + blob_bytes)
            response, blob = Signed(), LazyLoadBlob(mime=None, bytes=signature)
        elif isinstance(action, Verify):
            message = str(action.from_).encode() + blob_bytes
            key = self._pki.networking_key(action.from_.node)
            if key is None:
                key = keys.public_bytes(self._key)
            response = Verified(keys.verify(key, action.signature, message))
        else:
            log.info("NetAction ignored for a local caller", action=type(action).__name__)
            return
        self._reply(km, encode_net_response(response), blob)

    def respond(self, km: KernelMessage, response: NetResponse) -> None:
        """Answer the request ``km`` with a NetResponse."""
        self._reply(km, encode_net_response(response))

    def _reply(self, km: KernelMessage, body: bytes, blob: LazyLoadBlob | None = None) -> None:
        self._send(
            KernelMessage(
                id=km.id,
                source=self.address,
                target=km.rsvp if km.rsvp is not None else km.source,
                rsvp=None,
                message=ResponseMessage(
                    Response(inherit=False, body=body, metadata=None, capabilities=()), None
                ),
                lazy_load_blob=blob,
            )
        )
