"""One bound on handshakes in progress, shared by every listener of a node.

Pre-authentication work is what an anonymous peer can make us do; :class:`HandshakeGate`
caps it across TCP, WebSocket (its HTTP upgrade included) and QUIC together
(``limits.MAX_PENDING_HANDSHAKES``): a connection past the cap is closed (TCP, WS) or its
Initial dropped (QUIC) before any work is done for it.
"""

from __future__ import annotations

from hnet import limits


class HandshakeGate:
    def __init__(self, limit: int = limits.MAX_PENDING_HANDSHAKES) -> None:
        self.limit = limit
        self.pending = 0
        self.refused = 0

    def try_enter(self) -> bool:
        """Take a slot for one handshake; False (and counted) when all are taken."""
        if self.pending >= self.limit:
            self.refused += 1
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        """Give back a slot taken by :meth:`try_enter` (exactly once per slot)."""
        if self.pending > 0:
            self.pending -= 1
