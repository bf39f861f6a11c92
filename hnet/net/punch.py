"""The direct upgrade of routed QUIC sessions (hole punching, docs/quic.md §11.13): the asyncio
side of :mod:`hnet.core.punch`, driven by :mod:`hnet.net.circuits`.

- **Consent**: a circuit's REQUEST (source) and ACCEPT (target) set SHARE_ADDRESS only when
  :meth:`Puncher.share` says so: the node allows it (``share_address``), has a QUIC listener
  socket to punch from, and the peer is not in its back-off after a failed try.
- **Source**: once the routed session is up and the router's ADDRESS names the target's
  observed address, one QUIC dial to it from our listener socket (the port the router saw),
  Noise XX with the target's HNS key like any direct session, within PUNCH_DIAL_TIMEOUT. On
  success the session goes to ``on_direct`` (the peer table makes it current and retires the
  circuit session, whose in-flight messages are still acknowledged over the circuit).
- **Target**: tiny PUNCH_DATAGRAMs to the source's observed address from our listener socket
  on PUNCH_SCHEDULE, which open our NAT for the source's Initial; the source's connection
  then arrives at our listener like any other (:meth:`Puncher.inbound` records it).
- **Failure**: nothing changes (the session stays routed); the peer is not tried again for
  PUNCH_BACKOFF; one log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import limits
from hnet.core.handshake import PeerHandshake
from hnet.core.punch import (
    PUNCH_DATAGRAM,
    Punch,
    PunchBackoff,
    PunchEvent,
    PunchRole,
    PunchState,
    punch_delays,
)
from hnet.log import get_logger
from hnet.transport.errors import CONNECT_ERRORS
from hnet.transport.quic.transport import QuicListener, QuicSession
from hnet.transport.session import Session

__all__ = ["Puncher"]

log = get_logger("punch")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class Puncher:
    def __init__(
        self,
        *,
        our_name: str,
        key: Ed25519PrivateKey,
        lookup: Callable[[str], bytes | None],
        enabled: bool,
        listener: Callable[[], QuicListener | None],
        is_direct: Callable[[str], bool],
        on_direct: Callable[[QuicSession], None],
        spawn: Spawn,
        dial_timeout: float = limits.PUNCH_DIAL_TIMEOUT,
    ) -> None:
        self.our_name = our_name
        self._key = key
        self._lookup = lookup
        #: this node shares its observed address with circuit peers and tries direct upgrades
        self.enabled = enabled
        self._listener = listener
        self._is_direct = is_direct
        self._on_direct = on_direct
        self._spawn = spawn
        self.dial_timeout = dial_timeout
        self.backoff = PunchBackoff()
        #: target: punches running, by source name (the latest circuit's)
        self._punching: dict[str, Punch] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.stats = {"tried": 0, "succeeded": 0, "failed": 0}

    def share(self, peer: str) -> bool:
        """Set SHARE_ADDRESS on a circuit with ``peer``?"""
        return (
            self.enabled
            and self._listener() is not None
            and not self._is_direct(peer)
            and self.backoff.allowed(peer, time.monotonic())
        )

    def new(self, role: PunchRole, peer: str) -> Punch:
        return Punch(role, peer)

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self._punching.clear()

    # --- events from the circuit layer -----------------------------------------------------

    def address(self, punch: Punch, host: str, port: int) -> None:
        """The router's ADDRESS for ``punch``'s circuit."""
        if punch.done or punch.address is not None:
            return
        state = punch.addressed(host, port)
        if state is PunchState.PUNCHING:
            self._start_punching(punch)
        elif punch.must_dial:
            self._start_dial(punch)

    def session_up(self, punch: Punch) -> None:
        """Source: the routed session is up."""
        if punch.done:
            return
        punch.fire(PunchEvent.SESSION_UP)
        if punch.must_dial:
            self._start_dial(punch)

    def circuit_gone(self, punch: Punch) -> None:
        if not punch.done:
            punch.fire(PunchEvent.CIRCUIT_GONE)

    def inbound(self, session: Session) -> None:
        """Target: an inbound direct QUIC session (the source's dial if we punched for it)."""
        punch = self._punching.pop(session.peer_name, None)
        if punch is None or punch.done or session.router is not None:
            return
        punch.fire(PunchEvent.DIRECT_UP)
        self.stats["succeeded"] += 1
        self.backoff.succeeded(punch.peer)
        log.info("direct upgrade: the source dialled through our NAT", peer=punch.peer)

    # --- target ----------------------------------------------------------------------------

    def _start_punching(self, punch: Punch) -> None:
        listener = self._listener()
        assert punch.address is not None
        if listener is None:
            punch.fire(PunchEvent.EXPIRED)
            return
        self.stats["tried"] += 1
        old = self._punching.get(punch.peer)
        if old is not None and not old.done:
            old.fire(PunchEvent.EXPIRED)  # superseded by this circuit's
        self._punching[punch.peer] = punch
        loop = asyncio.get_running_loop()
        addr = punch.address
        delays = punch_delays()
        log.info("direct upgrade: punching", peer=punch.peer, to=f"{addr[0]}:{addr[1]}")

        def send(i: int, handle: list[asyncio.TimerHandle]) -> None:
            self._timers.difference_update(handle)
            if punch.state is not PunchState.PUNCHING:
                return
            listener.send_datagram(PUNCH_DATAGRAM, addr)
            if i + 1 < len(delays):
                schedule(i + 1, delays[i + 1])

        def schedule(i: int, delay: float) -> None:
            cell: list[asyncio.TimerHandle] = []
            handle = loop.call_later(delay, send, i, cell)
            cell.append(handle)
            self._timers.add(handle)

        schedule(0, delays[0])
        window = limits.PUNCH_SCHEDULE[-1] + self.dial_timeout
        expiry = loop.call_later(window, self._expired, punch)
        self._timers.add(expiry)

    def _expired(self, punch: Punch) -> None:
        if punch.state is not PunchState.PUNCHING:
            return
        punch.fire(PunchEvent.EXPIRED)
        if self._punching.get(punch.peer) is punch:
            del self._punching[punch.peer]
        self.stats["failed"] += 1
        self.backoff.failed(punch.peer, time.monotonic())
        log.info("direct upgrade failed: no connection from the source; staying routed",
                 peer=punch.peer)  # fmt: skip

    # --- source ----------------------------------------------------------------------------

    def _start_dial(self, punch: Punch) -> None:
        self.stats["tried"] += 1
        self._spawn(self._dial(punch), f"direct upgrade {punch.peer}")

    async def _dial(self, punch: Punch) -> None:
        listener = self._listener()
        assert punch.address is not None
        host, port = punch.address
        hs = PeerHandshake(
            initiator=True,
            our_name=self.our_name,
            signing_key=self._key,
            lookup=self._lookup,
            expected_peer=punch.peer,
        )
        session: QuicSession | None = None
        reason = "no QUIC listener socket"
        if listener is not None:
            try:
                async with asyncio.timeout(self.dial_timeout):
                    session = await listener.connect(host, port, hs)
            except TimeoutError:
                reason = f"timed out after {self.dial_timeout:g} s"
            except CONNECT_ERRORS as e:
                reason = str(e) or type(e).__name__
        if session is not None and session.peer_name != punch.peer:
            session.abort("paired with the wrong node")  # cannot happen: expected_peer
            reason, session = f"reached {session.peer_name}", None
        if session is None:
            punch.fire(PunchEvent.DIAL_FAILED)
            self.stats["failed"] += 1
            self.backoff.failed(punch.peer, time.monotonic())
            log.info(
                "direct upgrade failed; staying routed",
                peer=punch.peer,
                to=f"{host}:{port}",
                reason=reason,
                retry_after_s=self.backoff.backoff,
            )
            return
        punch.fire(PunchEvent.DIAL_OK)
        self.stats["succeeded"] += 1
        self.backoff.succeeded(punch.peer)
        log.info("direct upgrade: session is direct", peer=punch.peer, remote=session.remote)
        self._on_direct(session)

    def describe(self) -> str:
        s = self.stats
        state = "on" if self.enabled else "off"
        return (
            f"direct upgrades ({state}): tried {s['tried']}, succeeded {s['succeeded']}, "
            f"failed {s['failed']}"
        )
