"""The node handshake: Noise XX plus the reference's identity payloads, sans-I/O.

Identity is not the Noise static key (fresh per connection) but the node's long-term Ed25519
networking key, which signs the raw 32-byte Noise static public key inside a HandshakePayload
(docs/protocol.md §3 "Session handshake"). Messages:

    -> e                        (32 bytes, empty payload)
    <- e, ee, s, es             responder's HandshakePayload
    -> s, se                    initiator's HandshakePayload

Each side checks ``protocol_version == 1``, looks the claimed name up in HNS and verifies the
signature over the remote static key with that name's networking key; the initiator also checks
it reached the name it dialled. This object never touches a socket: feed it handshake messages,
send what it returns.

A responder may not know the initiator's name yet (registered a moment ago, or not yet indexed
from the chain). With ``defer_unknown=True`` such a name does not fail the handshake at once:
:meth:`PeerHandshake.receive` returns with :attr:`needs_key` set to the name, the caller looks
it up however it can (asynchronously, within its handshake deadline) and calls
:meth:`PeerHandshake.provide_key`, which finishes the check.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import keys
from hnet.core.noise import CipherState, NoiseError, XXHandshake
from hnet.core.wire import (
    CodecError,
    HandshakePayload,
    decode_handshake_payload,
    encode_handshake_payload,
)

PROTOCOL_VERSION = 1
NOISE_E_LEN = 32

#: name -> 32-byte Ed25519 networking key, or None if the name is not in HNS.
KeyLookup = Callable[[str], "bytes | None"]


class HandshakeError(Exception):
    """The handshake failed; the connection must be closed. The message says why."""


class PeerHandshake:
    """One side of one connection's handshake."""

    def __init__(
        self,
        *,
        initiator: bool,
        our_name: str,
        signing_key: Ed25519PrivateKey,
        lookup: KeyLookup,
        expected_peer: str | None = None,
        proxy_request: bool = False,
        defer_unknown: bool = False,
        static_private: bytes | None = None,
        ephemeral_private: bytes | None = None,
    ) -> None:
        if initiator and expected_peer is None:
            raise ValueError("an initiator must know whom it dials")
        self.initiator = initiator
        self._our_name = our_name
        self._signing_key = signing_key
        self._lookup = lookup
        self._expected = expected_peer
        self._proxy_request = proxy_request
        self._noise = XXHandshake(
            initiator=initiator,
            static_private=static_private if static_private is not None else os.urandom(32),
            ephemeral_private=ephemeral_private,
        )
        self._defer_unknown = defer_unknown
        self._step = 0
        self.peer_name: str | None = None
        self.peer_proxy_request = False
        #: the name whose key :meth:`provide_key` must supply before the handshake completes
        self.needs_key: str | None = None
        self._deferred: HandshakePayload | None = None

    @property
    def complete(self) -> bool:
        return self._noise.is_complete and self.peer_name is not None

    @property
    def handshake_hash(self) -> bytes:
        return self._noise.handshake_hash

    def _our_payload(self) -> bytes:
        signature = self._signing_key.sign(self._noise.static_public)
        return encode_handshake_payload(
            HandshakePayload(
                protocol_version=PROTOCOL_VERSION,
                name=self._our_name,
                signature=signature,
                proxy_request=self._proxy_request if self.initiator else False,
            )
        )

    def _check_peer(self, payload_bytes: bytes) -> None:
        try:
            payload = decode_handshake_payload(payload_bytes)
        except CodecError as e:
            raise HandshakeError(f"bad handshake payload: {e}") from None
        if payload.protocol_version != PROTOCOL_VERSION:
            raise HandshakeError(f"handshake protocol version {payload.protocol_version} != 1")
        if self.initiator and payload.name != self._expected:
            raise HandshakeError(f"dialled {self._expected} but reached {payload.name!r}")
        if payload.name == self._our_name:
            raise HandshakeError("peer claims our own name")
        key = self._lookup(payload.name)
        if key is None and self._defer_unknown and not self.initiator:
            self.needs_key = payload.name
            self._deferred = payload
            return
        self._verify(payload, key)

    def provide_key(self, key: bytes | None) -> None:
        """Finish a check deferred by :attr:`needs_key` with that name's networking key (None:
        the name is not in HNS); raises HandshakeError as :meth:`receive` would have."""
        payload = self._deferred
        if payload is None:
            raise HandshakeError("no key was asked for")
        self._deferred = None
        self.needs_key = None
        self._verify(payload, key)

    def _verify(self, payload: HandshakePayload, key: bytes | None) -> None:
        if key is None:
            raise HandshakeError(f"unknown HNS name {payload.name!r}")
        remote_static = self._noise.remote_static
        if remote_static is None or not keys.verify(key, payload.signature, remote_static):
            raise HandshakeError(f"{payload.name}: handshake signature does not verify")
        self.peer_name = payload.name
        self.peer_proxy_request = payload.proxy_request

    def initial_message(self) -> bytes:
        """The initiator's first message (``-> e``)."""
        if not self.initiator or self._step != 0:
            raise HandshakeError("initial_message is the initiator's first step only")
        self._step = 1
        try:
            return self._noise.write_message(b"")
        except NoiseError as e:
            raise HandshakeError(str(e)) from None

    def receive(self, message: bytes) -> bytes | None:
        """Consume the peer's next handshake message; return ours to send, if any."""
        try:
            if self.initiator:
                if self._step != 1:
                    raise HandshakeError("unexpected handshake message")
                self._step = 2
                self._check_peer(self._noise.read_message(message))
                return self._noise.write_message(self._our_payload())
            if self._step == 0:
                if len(message) != NOISE_E_LEN:
                    raise HandshakeError(f"first handshake message is {len(message)} bytes, not 32")
                self._step = 1
                if self._noise.read_message(message) != b"":
                    raise HandshakeError("-> e must carry an empty payload")
                return self._noise.write_message(self._our_payload())
            if self._step == 1:
                self._step = 2
                self._check_peer(self._noise.read_message(message))
                return None
            raise HandshakeError("handshake already complete")
        except NoiseError as e:
            raise HandshakeError(f"noise: {e}") from None

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) ciphers for this side, once complete."""
        if not self.complete:
            raise HandshakeError("handshake not complete")
        return self._noise.split()
