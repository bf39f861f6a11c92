from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet.testing.chain import TestChain, ToolMissing, running_chain
from hnet.testing.cluster import Cluster
from hns import Registry
from tests import exit_watch

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "interop-tests" / "vectors"
#: Seconds the interpreter may take to exit once pytest is done (joining leftover threads and
#: executors). Past it, every thread's stack goes to stderr and the process exits with status
#: 1: a hang at exit shows what hung instead of waiting out CI's timeout in silence.
#: ``HNET_TEST_EXIT_DEADLINE`` sets another (seconds).
EXIT_DEADLINE = float(os.environ.get("HNET_TEST_EXIT_DEADLINE", "120"))
#: Seconds after which executor work still running at exit is named on stderr and, if only
#: that holds the exit, the process ends with the tests' status (tests/exit_watch.py).
EXIT_GRACE = 20.0

exit_watch.install()
_status = [0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status[0] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    exit_watch.arm(_status[0], EXIT_GRACE, EXIT_DEADLINE)


def run_cli(
    *args: str, home: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["HNET_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "hnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three real node processes (tcp + ws) on loopback sharing one registry."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    names = ("alice.os", "bob.os", "carol.os")
    for n in names:
        c.add(n)
    for n in names:
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.wait_ready(n) for n in names))

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled test contracts, cached for the session under pytest's tmp dir."""
    return tmp_path_factory.getbasetemp() / "hypermap-build"


@pytest.fixture
def chain(build_dir: Path, tmp_path: Path) -> Iterator[TestChain]:
    """A fresh anvil with our Hypermap stand-in (and Multicall) and a twin registry under
    the test's tmp dir. Missing anvil or solcjs fails the test, naming what to install."""
    try:
        with running_chain(build_dir, registry=Registry(tmp_path / "twin")) as c:
            yield c
    except ToolMissing as e:
        pytest.fail(str(e))
