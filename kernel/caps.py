"""Capabilities: ``{issuer: Address, params: JSON text}``, signed by the kernel with the node's
Ed25519 networking key.

The signed bytes are the msgpack of the capability as the reference's ``rmp_serde`` writes it
by default: a 2-element array of two strings, ``[issuer_address_string, params_string]``
(docs/kernel.md; PROTOCOL-FACTS §2, §7). Ed25519 signatures are deterministic, so signing the
same capability again gives the same bytes.

System capabilities: messaging a local process, ``(our@target, "\\"messaging\\"")``, and the
network, ``(our@kernel:distro:sys, "\\"network\\"")``.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hnet import Address, Capability, ProcessId

__all__ = [
    "KERNEL_PROCESS",
    "MESSAGING",
    "NETWORK",
    "CapabilityStore",
    "SignedCap",
    "messaging",
    "network",
    "sign",
    "signing_bytes",
    "verify",
    "verify_incoming",
]

KERNEL_PROCESS = ProcessId("kernel", "distro", "sys")
MESSAGING = '"messaging"'
NETWORK = '"network"'

SignedCap = tuple[Capability, bytes]


def messaging(target: Address) -> Capability:
    """The capability to message ``target`` (a process of ours)."""
    return Capability(issuer=target, params=MESSAGING)


def network(our_node: str) -> Capability:
    """The capability to send to and receive from other nodes."""
    return Capability(issuer=Address(our_node, KERNEL_PROCESS), params=NETWORK)


def signing_bytes(cap: Capability) -> bytes:
    """``rmp_serde::to_vec(&cap)``: fixarray(2) of the issuer string and the params string."""
    return msgpack.packb([str(cap.issuer), cap.params], use_bin_type=True)


def sign(key: Ed25519PrivateKey, cap: Capability) -> bytes:
    return key.sign(signing_bytes(cap))


def verify(public_key: Ed25519PublicKey, cap: Capability, signature: bytes) -> bool:
    try:
        public_key.verify(signature, signing_bytes(cap))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_incoming(
    caps: Iterable[SignedCap], our_node: str, public_key: Ed25519PublicKey
) -> tuple[SignedCap, ...]:
    """Caps in a message from another node: those claiming to be issued on our node are kept
    only if we signed them; the rest are passed on, unverified (the reference's rule)."""
    return tuple(
        (cap, sig)
        for cap, sig in caps
        if cap.issuer.node != our_node or verify(public_key, cap, sig)
    )


class CapabilityStore:
    """The capabilities each local process holds, with their signatures. Used on the kernel's
    loop only."""

    def __init__(self, our_node: str, key: Ed25519PrivateKey) -> None:
        self.our_node = our_node
        self._key = key
        self.public_key = key.public_key()
        self._held: dict[ProcessId, dict[Capability, bytes]] = {}

    def sign(self, cap: Capability) -> bytes:
        return sign(self._key, cap)

    def ensure(self, pid: ProcessId) -> None:
        self._held.setdefault(pid, {})

    def add(self, pid: ProcessId, caps: Iterable[Capability]) -> None:
        """Grant ``caps`` to ``pid``, signed by us."""
        held = self._held.setdefault(pid, {})
        for cap in caps:
            held[cap] = self.sign(cap)

    def add_signed(self, pid: ProcessId, caps: Iterable[SignedCap]) -> None:
        held = self._held.setdefault(pid, {})
        for cap, sig in caps:
            held[cap] = sig

    def drop(self, pid: ProcessId, caps: Iterable[Capability]) -> None:
        held = self._held.get(pid)
        if held is not None:
            for cap in caps:
                held.pop(cap, None)

    def has(self, pid: ProcessId, cap: Capability) -> bool:
        return cap in self._held.get(pid, {})

    def get(self, pid: ProcessId, cap: Capability) -> bytes | None:
        return self._held.get(pid, {}).get(cap)

    def all(self, pid: ProcessId) -> list[SignedCap]:
        return list(self._held.get(pid, {}).items())

    def filter_outgoing(
        self, pid: ProcessId, caps: Iterable[SignedCap | Capability]
    ) -> tuple[SignedCap, ...]:
        """What ``pid`` may attach: caps it issued itself (signed now), and caps it holds (with
        their stored signature); the rest are silently left out, as the reference does.
        Tighter than the reference: "issued itself" means issued by ``our@pid`` exactly (the
        reference compares only the process id, whatever the node)."""
        us = Address(self.our_node, pid)
        held = self._held.get(pid, {})
        out: list[SignedCap] = []
        for item in caps:
            cap = item[0] if isinstance(item, tuple) else item
            if cap.issuer == us:
                out.append((cap, self.sign(cap)))
            elif cap in held:
                out.append((cap, held[cap]))
        return tuple(out)

    def revoke_issued_by(self, pid: ProcessId) -> None:
        """Take back from every process the caps ``our@pid`` issued (a kill, not a restart)."""
        us = Address(self.our_node, pid)
        for held in self._held.values():
            for cap in [c for c in held if c.issuer == us]:
                del held[cap]

    def remove(self, pid: ProcessId) -> None:
        self._held.pop(pid, None)
