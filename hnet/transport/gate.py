"""One bound on handshakes in progress, shared by every listener of a node.

Pre-authentication work is what an anonymous peer can make us do; :class:`HandshakeGate`
caps it across TCP, WebSocket (its HTTP upgrade included) and QUIC together
(``limits.MAX_PENDING_HANDSHAKES``): a connection past the cap is closed (TCP, WS) or its
Initial dropped (QUIC) before any work is done for it. One source (an IPv4 address, or an IPv6
/64) holds at most ``limits.MAX_PENDING_PER_SOURCE`` of the slots, so a slowloris from one
host cannot lock every new peer out (docs/reliability.md).
"""

from __future__ import annotations

import ipaddress

from hnet import limits

__all__ = ["HandshakeGate", "source_key"]


def source_key(host: str | None) -> str:
    """Who a pending handshake is charged to: the IPv4 address, the IPv6 /64 (one host's
    usual allocation), or the text itself when it is not an IP address."""
    if not host:
        return "?"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class HandshakeGate:
    def __init__(
        self,
        limit: int = limits.MAX_PENDING_HANDSHAKES,
        per_source: int = limits.MAX_PENDING_PER_SOURCE,
    ) -> None:
        self.limit = limit
        self.per_source = per_source
        self.pending = 0
        self.refused = 0
        #: of :attr:`refused`, those refused for their source's share
        self.refused_source = 0
        self._by_source: dict[str, int] = {}

    def try_enter(self, source: str | None = None) -> bool:
        """Take a slot for one handshake from ``source`` (a host, see :func:`source_key`);
        False (and counted) when all are taken, or all of that source's share."""
        if self.pending >= self.limit:
            self.refused += 1
            return False
        key = source_key(source)
        held = self._by_source.get(key, 0)
        if held >= self.per_source:
            self.refused += 1
            self.refused_source += 1
            return False
        self._by_source[key] = held + 1
        self.pending += 1
        return True

    def leave(self, source: str | None = None) -> None:
        """Give back a slot taken by :meth:`try_enter` for the same ``source`` (exactly once
        per slot)."""
        if self.pending > 0:
            self.pending -= 1
        key = source_key(source)
        held = self._by_source.get(key, 0)
        if held <= 1:
            self._by_source.pop(key, None)
        else:
            self._by_source[key] = held - 1

    @property
    def sources(self) -> int:
        """Sources with a handshake pending now."""
        return len(self._by_source)
