"""``hnet interop run``: against real ``hnet node`` processes (it passes), and against broken
test doubles of ours (the right scenario fails, saying what it expected and what came).

target.os is direct and a router; carol.os is indirect behind it. The doubles are TCP servers
in a thread of this process using the production handshake and sessions, each wrong in one
way. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from hnet import keys
from hnet.core.handshake import PeerHandshake
from hnet.core.wire import (
    Address,
    HandshakePayload,
    KernelMessage,
    Request,
    Response,
    ResponseMessage,
    decode_kernel_message,
    encode_kernel_message,
)
from hnet.interopsuite.model import Report, Result, Status, failed, passed, plain_table, skipped
from hnet.interopsuite.selftest import dial_command
from hnet.interopsuite.suite import select
from hnet.testing.cluster import LOOPBACK, Cluster, free_port
from hnet.transport import tcp as tcp_transport
from hnet.transport.session import Session
from hns import Registry


def interop(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hnet", "interop", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("interop"))
    c.add("target.os", args=("--max-passthroughs", "8"))
    c.add("carol.os", routers=("target.os",), args=("--no-share-address",))
    c.add("plain.os", transports=("tcp", "ws"))  # not a router
    for n in ("target.os", "carol.os", "plain.os"):
        c.start(n)
    try:

        async def ready() -> None:
            async with asyncio.timeout(40):
                await asyncio.gather(*(c.wait_ready(n, timeout=40) for n in c.nodes))

        asyncio.run(ready())
        yield c
    finally:
        c.stop_all()


def _results(path: Path) -> dict[str, dict[str, str]]:
    data = json.loads(path.read_text())
    return {f"{r['scenario']}/{r['transport']}": r for r in data["results"]}


@pytest.mark.timeout(300)
def test_suite_passes_against_an_hnet_node(nodes: Cluster, tmp_path: Path) -> None:
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    target = nodes.nodes["target.os"]
    r = interop(
        "--target",
        "target.os",
        "--registry",
        str(nodes.registry),
        "--dial-command",
        dial_command(target.home),
        "--only",
        "*/tcp,*/ws,*/quic-qh3",
        "--json",
        str(out_json),
        "--junit",
        str(out_xml),
    )
    assert r.returncode == 0, r.stdout + r.stderr + target.log_text()[-3000:]
    assert "-> OK" in r.stdout
    results = _results(out_json)
    for column in ("tcp", "ws", "quic-qh3"):
        for sc in ("handshake", "hello", "pipelined-1000", "size-cap", "blob", "capabilities"):
            assert results[f"{sc}/{column}"]["status"] == "pass", results[f"{sc}/{column}"]
        for sc in ("handshake-target-dials", "hello-target-dials", "hostile-bad-signature"):
            assert results[f"{sc}/{column}"]["status"] == "pass", results[f"{sc}/{column}"]
    for column in ("tcp", "ws"):
        for sc in (
            "size-over-cap",
            "routed-target-routes",
            "routed-target-calls-back",
            "hostile-oversize-claim",
        ):
            assert results[f"{sc}/{column}"]["status"] == "pass", results[f"{sc}/{column}"]
    assert results["routed-target-indirect/tcp"]["status"] == "skip"
    assert "quic-aioquic" not in {k.split("/")[1] for k in results}
    data = json.loads(out_json.read_text())
    assert data["ok"] is True and data["summary"]["failed"] == 0
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(results)
    assert suite.get("failures") == "0"
    assert any(c.find("skipped") is not None for c in cases)


@pytest.mark.timeout(120)
def test_suite_reaches_an_indirect_node_through_its_router(nodes: Cluster, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    r = interop(
        "--target",
        "carol.os",
        "--registry",
        str(nodes.registry),
        "--only",
        "routed-*/tcp,routed-*/ws,hello/tcp,hello/ws,hello/quic-qh3",
        "--json",
        str(out_json),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = _results(out_json)
    assert results["routed-target-indirect/tcp"]["status"] == "pass"
    assert results["routed-target-indirect/ws"]["status"] == "pass"
    assert results["routed-target-routes/tcp"]["status"] == "skip"
    assert results["hello/quic-qh3"]["status"] == "skip"
    assert "routed QUIC" in results["hello/quic-qh3"]["reason"]


def test_routed_rows_skip_when_the_target_does_not_route(nodes: Cluster, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    r = interop(
        "--target",
        "plain.os",
        "--registry",
        str(nodes.registry),
        "--only",
        "routed-*/tcp,routed-*/ws,hello/*",
        "--json",
        str(out_json),
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = _results(out_json)
    for column in ("tcp", "ws"):
        for sc in ("routed-target-routes", "routed-target-calls-back"):
            cell = results[f"{sc}/{column}"]
            assert cell["status"] == "skip" and "--max-passthroughs" in cell["reason"], cell
    assert "no ~quic-port" in results["hello/quic-qh3"]["reason"]


def test_unknown_target_and_usage_errors(nodes: Cluster, tmp_path: Path) -> None:
    r = interop("--target", "nobody.os", "--registry", str(nodes.registry), timeout=60)
    assert r.returncode == 2 and "nobody.os: not in HNS" in r.stderr
    r = interop("--target", "x.os", "--registry", str(tmp_path / "none"), timeout=60)
    assert r.returncode == 2
    r = interop("--target", "x.os", "--registry", "r", "--rpc", "http://127.0.0.1:1", timeout=60)
    assert r.returncode == 2 and "not both" in r.stderr
    r = interop(
        "--target", "target.os", "--registry", str(nodes.registry), "--only", "nothing-matches"
    )
    assert r.returncode == 2 and "selects no scenario" in r.stderr


# --- broken targets ------------------------------------------------------------------------------


class _LaxHandshake(PeerHandshake):
    """Accepts any signature: the flaw the bad-signature scenario must catch."""

    def _verify(self, payload: HandshakePayload, key: bytes | None) -> None:
        self.peer_name = payload.name
        self.peer_proxy_request = payload.proxy_request


class BrokenTarget:
    """A TCP-only node double, registered as ``name``, wrong in the way ``mode`` says:
    ``wrong-id`` acks with the request's id + 1; ``bad-signature`` accepts any handshake
    signature; ``no-ack`` never answers."""

    def __init__(self, registry: Path, name: str, mode: str) -> None:
        self.registry = Registry(registry)
        self.name = name
        self.mode = mode
        self.key = keys.generate()
        self.port = free_port()
        self.registry.register(
            name, keys.public_bytes(self.key), ip=LOOPBACK, ports={"tcp": self.port}
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def _lookup(self, name: str) -> bytes | None:
        rec = self.registry.lookup(name)
        return bytes.fromhex(rec.net_key) if rec and rec.net_key else None

    async def _resolve(self, name: str) -> bytes | None:
        return self._lookup(name)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._conn, LOOPBACK, self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cls = _LaxHandshake if self.mode == "bad-signature" else PeerHandshake
        hs = cls(initiator=False, our_name=self.name, signing_key=self.key, lookup=self._lookup)
        try:
            async with asyncio.timeout(10):
                session = await tcp_transport.accept(reader, writer, hs, self._resolve)
        except Exception:
            writer.close()
            return
        with contextlib.suppress(Exception):
            await session.run(self._deliver, 60)

    async def _deliver(self, session: Session, data: bytes) -> None:
        km = decode_kernel_message(data)
        if not isinstance(km.message, Request) or self.mode == "no-ack":
            return
        ack_id = km.id + 1 if self.mode == "wrong-id" else km.id
        ack = KernelMessage(
            ack_id,
            Address.net(self.name),
            km.rsvp or km.source,
            None,
            ResponseMessage(Response(False, b"ack", None, ()), None),
            None,
        )
        await session.send(encode_kernel_message(ack))

    def __enter__(self) -> BrokenTarget:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.mark.parametrize(
    ("mode", "scenario", "expected"),
    [
        ("wrong-id", "hello/tcp", "expected an ack with id"),
        ("bad-signature", "hostile-bad-signature/tcp", "accepted a bad signature"),
        ("no-ack", "hello/tcp", "within 10 s, got nothing"),
    ],
)
def test_a_broken_target_fails_the_right_scenario(
    tmp_path: Path, mode: str, scenario: str, expected: str
) -> None:
    registry = tmp_path / "registry"
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    with BrokenTarget(registry, f"broken-{mode}.os", mode):
        r = interop(
            "--target",
            f"broken-{mode}.os",
            "--registry",
            str(registry),
            "--only",
            f"{scenario},handshake/tcp" if mode != "no-ack" else scenario,
            "--json",
            str(out_json),
            "--junit",
            str(out_xml),
            timeout=90,
        )
    assert r.returncode == 1, r.stdout + r.stderr
    results = _results(out_json)
    bad = results[scenario]
    assert bad["status"] == "fail"
    assert expected in bad["reason"], bad["reason"]
    assert f"FAIL {scenario}: " in r.stdout
    if mode == "wrong-id":  # says what it expected and what came
        assert "(got " in bad["reason"]
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite is not None
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    # handshake/tcp ends with a hello too: only the lax handshake passes it
    want = {"bad-signature": [scenario], "no-ack": [scenario]}.get(
        mode, sorted({scenario, "handshake/tcp"})
    )
    assert [f"{c.get('name')}/{c.get('classname', '').split('.')[-1]}" for c in failures] == want


# --- the pieces ---------------------------------------------------------------------------------


def test_select_patterns() -> None:
    assert select([], "hello", "tcp")
    assert select(["hello/*"], "hello", "ws")
    assert not select(["hello/*"], "hello-target-dials", "ws")
    assert select(["*/tcp"], "size-cap", "tcp")
    assert select(["quic*"], "hello", "quic-qh3")
    assert not select(["size-cap/ws"], "size-cap", "tcp")
    assert not select(["*/ws", "!*-target-dials/ws"], "hello-target-dials", "ws")
    assert select(["*/ws", "!*-target-dials/ws"], "hello", "ws")
    assert select(["!quic-*"], "hello", "tcp") and not select(["!quic-*"], "hello", "quic-qh3")


def test_report_table_and_outputs(tmp_path: Path) -> None:
    report = Report("t.os", "us.os", ["tcp", "ws"], ["hello", "blob"], seconds=1.5)
    report.results = [
        Result("hello", "tcp", passed(), 0.01),
        Result("hello", "ws", failed("expected id 1 (got 2)"), 0.02),
        Result("blob", "tcp", skipped("why not"), 0.0),
        Result("blob", "ws", skipped("why not"), 0.0),
    ]
    assert not report.ok and report.count(Status.SKIP) == 2
    text = "\n".join(plain_table(report))
    assert "FAIL hello/ws: expected id 1 (got 2)" in text
    assert "skip blob/tcp, blob/ws: why not" in text
    report.write_json(tmp_path / "r.json")
    report.write_junit(tmp_path / "r.xml")
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 2,
    }
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.get("failures") == "1" and root.get("tests") == "4"


def test_home_keeps_our_identities_for_a_foreign_node(nodes: Cluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = ("--target", "target.os", "--registry", str(nodes.registry), "--home", str(home))
    first = interop(*args, "--only", "hello/tcp", "--json", str(tmp_path / "1.json"))
    assert first.returncode == 0, first.stdout + first.stderr
    ident = json.loads((home / "interop-identity.json").read_text())
    assert (home / "interop-identity.json").stat().st_mode & 0o077 == 0
    entries = json.loads((home / "interop-eth-providers.json").read_text())
    update = entries[0]["provider"]["Node"]["hns_update"]
    assert entries[0]["chain_id"] == 8453 and entries[0]["trusted"] is False
    assert update["name"] == ident["a"]["name"] and update["ips"] == ["127.0.0.1"]
    assert set(update["ports"]) == {"tcp", "ws"} and update["routers"] == []
    second = interop(*args, "--only", "hello/ws", "--json", str(tmp_path / "2.json"))
    assert second.returncode == 0, second.stdout + second.stderr
    again = json.loads((home / "interop-identity.json").read_text())
    assert again == ident  # same names, keys and ports
    assert json.loads((tmp_path / "2.json").read_text())["ours"] == ident["a"]["name"]


def test_dial_command_template_keeps_json_braces() -> None:
    from hnet.interopsuite.scenarios import fill_template

    cmd = """curl -d '{"node":"{name}","body":"hi"}' # {via} {count}"""
    assert fill_template(cmd, name="a.os", via="tcp", count="3") == (
        """curl -d '{"node":"a.os","body":"hi"}' # tcp 3"""
    )


async def test_without_a_registry_it_says_what_to_register(tmp_path: Path) -> None:
    """The --rpc path: our identities are not in HNS, so the run stops and names them."""
    from hnet.interopsuite.suite import Options, SetupError, run_suite
    from hns.records import NodeRecord

    target = NodeRecord(
        "far.os",
        "0x" + "00" * 32,
        keys.public_bytes(keys.generate()).hex(),
        ("127.0.0.1",),
        {"tcp": free_port()},
    )

    async def lookup(name: str) -> NodeRecord | None:
        return target if name == "far.os" else None

    with pytest.raises(SetupError) as info:
        await run_suite(Options(target="far.os", lookup=lookup, home=tmp_path / "h"))
    text = str(info.value)
    ident = json.loads((tmp_path / "h" / "interop-identity.json").read_text())
    assert f"{ident['a']['name']} is not in HNS: register {ident['a']['name']}" in text
    assert (
        f"--public-key {keys.public_bytes(keys.from_seed(bytes.fromhex(ident['a']['seed']))).hex()}"
        in text
    )
    assert ident["b"]["name"] in text and "--tcp-port" in text
