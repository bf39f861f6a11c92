"""tests/exit_watch.py: an exit held by executor work ends with the tests' status and names
that work; an exit held by anything else still ends at the deadline with status 1."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = """
import concurrent.futures, sys, threading, time
from tests import exit_watch
exit_watch.install()
if sys.argv[1] == "executor":
    concurrent.futures.ThreadPoolExecutor(1).submit(time.sleep, 30)
else:
    threading.Thread(target=time.sleep, args=(30,)).start()
time.sleep(0.2)
exit_watch.arm(status=3, grace=1.0, deadline=4.0)
"""


def _run(kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_executor_work_is_named_and_the_status_kept() -> None:
    out = _run("executor")
    assert out.returncode == 3, out.stderr
    assert "<built-in function sleep> args=(30,)" in out.stderr
    assert "exiting with the tests' status 3" in out.stderr


def test_another_thread_still_meets_the_deadline() -> None:
    out = _run("thread")
    assert out.returncode == 1, out.stderr
    assert "Timeout (0:00:04)!" in out.stderr
