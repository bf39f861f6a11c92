"""What the test process still runs in executor threads when pytest is done, and its exit.

The interpreter joins every ``concurrent.futures`` worker before it exits, so a work item
still running (a blocking call some test started in ``asyncio.to_thread`` or
``run_in_executor`` and stopped awaiting) holds the exit after every test has finished. Such a
hang was seen now and then in full runs, with no Python frame below the worker's ``run``: a
C function, whose name faulthandler's dump does not give.

:func:`install` records each work item while it runs (its function and arguments, when it
started). :func:`arm` is called once pytest is done. Past ``grace`` seconds it prints the work
items still running to stderr and, if that is all that holds the exit, ends the process with
the tests' own status; past ``deadline`` (something else holds it), faulthandler dumps every
thread's stack and exits with status 1.
"""

from __future__ import annotations

import concurrent.futures.thread as futures_thread
import faulthandler
import os
import sys
import threading
import time
from typing import Any

#: thread id -> (what runs there, monotonic time it started)
_running: dict[int, tuple[str, float]] = {}
_installed = False


def _describe(item: Any) -> str:
    text = f"{item.fn!r} args={item.args!r} kwargs={item.kwargs!r}"
    return text if len(text) <= 300 else text[:297] + "..."


def install() -> None:
    """Record every executor work item while it runs (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    original = futures_thread._WorkItem.run

    def run(self: Any) -> None:
        tid = threading.get_ident()
        _running[tid] = (_describe(self), time.monotonic())
        try:
            original(self)
        finally:
            _running.pop(tid, None)

    futures_thread._WorkItem.run = run  # type: ignore[method-assign]


def _others_alive() -> list[threading.Thread]:
    """Non-daemon threads other than the main thread that are not executor workers busy with
    a recorded item (those, the exit may give up on)."""
    busy = set(_running)
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and not t.daemon
        and t.is_alive()
        and t.ident not in busy
        and not t.name.startswith(("ThreadPoolExecutor", "asyncio_"))
    ]


def _watch(grace: float, status: int) -> None:
    time.sleep(grace)
    if not _running:
        return  # not held by executor work: faulthandler's deadline decides
    now = time.monotonic()
    lines = [
        f"exit held {grace:g} s after the tests by {len(_running)} executor work item(s):",
        *(f"  running {now - t0:.1f} s: {what}" for what, t0 in list(_running.values())),
    ]
    others = _others_alive()
    if others:
        lines.append(f"  and other threads: {[t.name for t in others]}; waiting for the deadline")
    else:
        lines.append(f"  nothing else: exiting with the tests' status {status}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    if not others:
        sys.stdout.flush()
        os._exit(status)


def arm(status: int, grace: float, deadline: float) -> None:
    """Watch the exit from now on (see the module's docstring)."""
    faulthandler.dump_traceback_later(deadline, exit=True)
    threading.Thread(target=_watch, args=(grace, status), name="exit-watch", daemon=True).start()
