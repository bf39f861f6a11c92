"""The router role: pair a connection that opened with a RoutingRequest (docs/protocol.md §7).

On an inbound connection whose first frame is a RoutingRequest from ``source`` for
``target`` (checked by :func:`hnet.core.relay.check`), the router

1. pairs it with a pending connection of the opposite direction, if ``target`` had asked for
   ``source`` (the indirect node's answer to a ConnectionRequest), else
2. if ``target`` is direct with a port for this connection's protocol, dials it and pipes, else
3. if it routes for ``target`` (``target`` holds a session with it opened with
   ``proxy_request``), asks ``target`` with ``NetAction::ConnectionRequest(source)`` to open
   its side, and parks the connection as pending until it does (or rejects, or the pending
   lifetime ends).

A node with ``max_passthroughs == 0`` refuses every RoutingRequest. The router never sees
plaintext: Noise runs end to end through the pipe. Reference: ``net/utils.rs``
``create_passthrough`` / ``maintain_passthrough``, ``net/mod.rs`` ``handle_response``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hnet import limits
from hnet.core.handshake import KeyLookup
from hnet.core.passthroughs import Passthrough, PassthroughTable
from hnet.core.relay import RoutingRefused, check
from hnet.core.wire import CodecError, decode_routing_request
from hnet.log import get_logger
from hnet.net.peers import failure_reason
from hnet.net.pipe import OpenEnd, PipeEnd, pipe
from hnet.transport.errors import CONNECT_ERRORS
from hns import NodeRecord

log = get_logger("router")

__all__ = ["Rest", "Router", "RoutingRefused"]

#: What is left of a routed connection's life once it is admitted: await it (outside the
#: handshake deadline); it returns when the socket is done with and closed.
Rest = Callable[[], Awaitable[None]]
#: (target, source) -> True if the ConnectionRequest for ``source`` went out to ``target``
#: over a session ``target`` opened with ``proxy_request``.
RequestConnection = Callable[[str, str], Awaitable[bool]]
RecordLookup = Callable[[str], "NodeRecord | None"]


@dataclass(eq=False)
class _Parked:
    """A source's socket waiting for the target's matching connection."""

    end: PipeEnd
    #: resolved when this socket's life is over (its pipe ended, or it was dropped)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    paired: bool = False

    def drop(self, _reason: str = "") -> None:
        if not self.paired:
            self.end.close()
        self.finish()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Router:
    def __init__(
        self,
        *,
        our_name: str,
        max_passthroughs: int,
        lookup: KeyLookup,
        record: RecordLookup,
        request_connection: RequestConnection,
        open_end: OpenEnd,
        resolve: Callable[[str], Awaitable[object]] | None = None,
        pending_lifetime: float = limits.ROUTING_PENDING_LIFETIME,
        idle_timeout: float = limits.PASSTHROUGH_IDLE_TIMEOUT,
    ) -> None:
        self.our_name = our_name
        self.table = PassthroughTable(max_passthroughs)
        self._lookup = lookup
        self._record = record
        self._request_connection = request_connection
        self._open_end = open_end
        self._resolve = resolve
        self.pending_lifetime = pending_lifetime
        self.idle_timeout = idle_timeout
        self._parked: dict[Passthrough, _Parked] = {}
        self.stats = {"refused": 0, "pipes": 0}

    @property
    def enabled(self) -> bool:
        return self.table.enabled

    async def admit(self, first: bytes, end: PipeEnd) -> Rest:
        """Check the RoutingRequest ``first`` received on ``end`` and set its passthrough up.

        Raises RoutingRefused (the caller closes the socket). The caller bounds this in time
        (it may dial the target); the returned :data:`Rest` is the pipe or the wait for the
        target's side, bounded by the pipe's idle timeout and the pending lifetime.
        """
        try:
            return await self._admit(first, end)
        except RoutingRefused as e:
            self.stats["refused"] += 1
            log.info("routing request refused", remote=end.remote, reason=str(e))
            raise

    async def _admit(self, first: bytes, end: PipeEnd) -> Rest:
        if not self.table.enabled:
            raise RoutingRefused("this node does not route (max passthroughs 0)")
        await self._learn_names(first)
        rr = check(first, router=self.our_name, lookup=self._lookup)
        # The target's answer to our ConnectionRequest: its source is the pending one's target.
        pending = self.table.peek_pending(rr.target, rr.source)
        if pending is not None:
            return self._pair(pending, end)
        target = self._record(rr.target)
        port = target.ports.get(end.kind, 0) if target is not None and target.ips else 0
        if target is not None and port:
            try:
                other = await self._open_end(end.kind, target.ips[0], port)
            except CONNECT_ERRORS as e:
                raise RoutingRefused(
                    f"{rr.target} unreachable over {end.kind}: {failure_reason(e)}"
                ) from None
            return self._start(rr.source, rr.target, end, other)
        return await self._park(rr.source, rr.target, end)

    def _make_room(self) -> None:
        for victim in self.table.make_room():
            log.info(
                "passthrough evicted (max passthroughs)", source=victim.source, target=victim.target
            )

    async def _learn_names(self, first: bytes) -> None:
        """Names we do not know yet (registered a moment ago, not yet indexed) are looked up
        before the check, within the caller's deadline; the check itself then is sync."""
        if self._resolve is None:
            return
        try:
            rr = decode_routing_request(first)
        except CodecError:
            return  # check() refuses it with the reason
        for name in (rr.source, rr.target):
            if self._lookup(name) is None:
                await self._resolve(name)

    # --- the three ways a passthrough starts ------------------------------------------------

    def _pair(self, pending: Passthrough, end: PipeEnd) -> Rest:
        parked = self._parked.get(pending)
        if parked is not None and parked.end.kind != end.kind:
            # Left pending: the target tries its other transport next (see routing.dial).
            raise RoutingRefused(
                f"{pending.target} answered over {end.kind}, {pending.source} waits on "
                f"{parked.end.kind}"
            )
        self.table.take_pending(pending.source, pending.target)
        self._parked.pop(pending, None)
        if parked is None:  # cannot happen: every pending entry has its parked socket
            pending.close("lost")
            raise RoutingRefused("pending passthrough lost")
        parked.paired = True
        log.info("passthrough paired", source=pending.source, target=pending.target)
        rest = self._start(pending.source, pending.target, parked.end, end)

        async def run() -> None:
            try:
                await rest()
            finally:
                parked.finish()

        return run

    def _start(self, source: str, target: str, a: PipeEnd, b: PipeEnd) -> Rest:
        def close(_reason: str) -> None:
            a.close()
            b.close()

        self._make_room()
        entry = self.table.new(source, target, close)
        self.table.start(entry)
        self.stats["pipes"] += 1

        async def run() -> None:
            try:
                reason = await pipe(a, b, self.idle_timeout)
            finally:
                self.table.finish(entry)
                entry.close("pipe ended")
            log.info("passthrough closed", source=source, target=target, reason=reason)

        return run

    async def _park(self, source: str, target: str, end: PipeEnd) -> Rest:
        parked = _Parked(end)

        def on_close(_reason: str) -> None:
            self._parked.pop(entry, None)
            parked.drop()

        self._make_room()
        entry = self.table.new(source, target, on_close)
        self.table.park(entry)
        self._parked[entry] = parked
        # Parked before asking, so the target's answer always finds it.
        try:
            asked = await self._request_connection(target, source)
        except BaseException:
            self._unpark(entry)
            raise
        if not asked:
            self._unpark(entry)
            raise RoutingRefused(
                f"{target} is not direct over {end.kind} and we do not route for it"
            )
        log.info("passthrough pending", source=source, target=target)

        async def run() -> None:
            try:
                async with asyncio.timeout(self.pending_lifetime):
                    await asyncio.shield(parked.done)
                return
            except TimeoutError:
                if self._unpark(entry):
                    log.info("pending passthrough expired", source=source, target=target)
                    return
            finally:
                if not parked.paired:
                    self._unpark(entry)
            await parked.done  # paired meanwhile: the pipe owns the socket until it ends

        return run

    def _unpark(self, entry: Passthrough) -> bool:
        """Drop ``entry`` (closing its socket) if it is still pending; False if it was paired,
        evicted or rejected meanwhile."""
        if self.table.unpark(entry):
            entry.close("dropped")
            return True
        return False

    # --- from the net module -----------------------------------------------------------------

    def rejected(self, source: str, target: str) -> None:
        """``target`` answered our ConnectionRequest with ``Rejected(source)``."""
        if self.table.reject(source, target) is not None:
            log.info("pending passthrough rejected by the target", source=source, target=target)

    def close(self) -> None:
        """Close every passthrough (node shutting down)."""
        self.table.close_all("node shutting down")
        self._parked.clear()

    def describe(self) -> str:
        t = self.table
        return (
            f"router: {len(t.active)} active + {len(t.pending)} pending passthroughs "
            f"({t.max_passthroughs} max), {self.stats['pipes']} piped, "
            f"{self.stats['refused']} refused, {t.evicted} evicted"
        )
