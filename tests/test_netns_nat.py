"""The network-namespace NAT topology (hnet.testing.netns) behaves like two real NATs for UDP.

Plain UDP sockets only (no hnet code): masquerading shows the NAT's public address, the public
side cannot reach a host uninvited, two hosts punch a hole through both NATs after learning
their mapped addresses from a rendezvous server, blocking the direct path (or one symmetric
NAT) makes the punch fail, and teardown leaves nothing behind. Every wait is bounded; the
module takes a few seconds. Skipped (with the reason) where namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hnet.testing import netns
from hnet.testing.netns import NatTopology, NetnsError, NetnsUnavailable, list_namespaces

# One small UDP tool, run inside the namespaces as `python -c UDP_TOOL MODE ARGS...`; every
# loop has a deadline and every mode prints JSON lines on stdout.
UDP_TOOL = r"""
import json, socket, sys, time

def now():
    return time.monotonic()

def udp(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    return s

def out(obj):
    print(json.dumps(obj), flush=True)

mode, args = sys.argv[1], sys.argv[2:]

if mode == "echo":  # echo PORT COUNT SECONDS: reply with the source address seen, COUNT times
    port, count, seconds = int(args[0]), int(args[1]), float(args[2])
    s = udp(port)
    out({"ready": port})
    deadline = now() + seconds
    while count > 0 and now() < deadline:
        s.settimeout(max(0.01, deadline - now()))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        s.sendto(json.dumps({"seen": list(addr), "data": data.decode()}).encode(), addr)
        out({"seen": list(addr)})
        count -= 1

elif mode == "ask":  # ask IP PORT SECONDS: send until a reply comes, print it
    ip, port, seconds = args[0], int(args[1]), float(args[2])
    s = udp()
    s.settimeout(0.1)
    deadline = now() + seconds
    reply = None
    while reply is None and now() < deadline:
        s.sendto(b"hello", (ip, port))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        reply = {"from": list(addr), **json.loads(data)}
    out({"local_port": s.getsockname()[1], "reply": reply})

elif mode == "guarded":  # guarded PORT RIP RPORT SECONDS: open a mapping, then log arrivals
    port, rip, rport, seconds = int(args[0]), args[1], int(args[2]), float(args[3])
    mapped, other = udp(port), udp(port + 1)  # `other` never sends: no mapping for it
    mapped.settimeout(0.1)
    deadline = now() + 3.0
    reply = None
    while reply is None and now() < deadline:
        mapped.sendto(b"open", (rip, rport))
        try:
            reply = json.loads(mapped.recvfrom(2048)[0])
        except socket.timeout:
            pass
    out({"mapped": reply and reply["seen"]})
    got = []
    mapped.settimeout(0.02)
    other.settimeout(0.02)
    deadline = now() + seconds
    stop_at = deadline
    while now() < min(deadline, stop_at):
        for name, s in (("mapped", mapped), ("other", other)):
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                continue
            got.append([name, list(addr), data.decode()])
            if data == b"control":  # the last one sent: a little grace for stragglers
                stop_at = min(stop_at, now() + 0.2)
    out({"got": got})

elif mode == "send":  # send FROM_PORT IP PORT TEXT: a few datagrams from a fixed port
    from_port, ip, port, text = int(args[0]), args[1], int(args[2]), args[3]
    s = udp(from_port)
    for _ in range(3):
        s.sendto(text.encode(), (ip, port))
        time.sleep(0.01)
    out({"sent": text})

elif mode == "rendezvous":  # rendezvous PORT PORT2 SECONDS
    # PORT: "reg ID" -> {"seen": addr, "peer": addr of the other ID or null};
    # PORT2: anything -> {"seen": addr} (a second destination, to compare mappings)
    import select
    p1, p2, seconds = int(args[0]), int(args[1]), float(args[2])
    s1, s2 = udp(p1), udp(p2)
    out({"ready": [p1, p2]})
    seen = {}
    deadline = now() + seconds
    while now() < deadline:
        ready, _, _ = select.select([s1, s2], [], [], max(0.0, deadline - now()))
        for s in ready:
            data, addr = s.recvfrom(2048)
            reply = {"seen": list(addr)}
            if s is s1:
                me = data.decode().split()[-1]
                seen[me] = list(addr)
                reply["peer"] = next((a for k, a in seen.items() if k != me), None)
            s.sendto(json.dumps(reply).encode(), addr)

elif mode == "punch":  # punch RIP RPORT RPORT2 ID SECONDS
    rip, rport, rport2, me, seconds = args[0], int(args[1]), int(args[2]), args[3], float(args[4])
    s = udp()
    s.settimeout(0.05)
    res = {"local_port": s.getsockname()[1], "seen": None, "seen2": None, "peer": None,
           "received": 0, "sources": [], "punched_after": None}
    deadline = now() + 3.0
    while (res["peer"] is None or res["seen2"] is None) and now() < deadline:
        s.sendto(f"reg {me}".encode(), (rip, rport))
        s.sendto(f"reg {me}".encode(), (rip, rport2))
        end = now() + 0.05
        while now() < end:
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                break
            reply = json.loads(data)
            if addr[1] == rport:
                res["seen"] = reply["seen"]
                res["peer"] = res["peer"] or reply.get("peer")
            else:
                res["seen2"] = reply["seen"]
    if res["peer"] is None:
        out(res)
        sys.exit(0)
    peer = tuple(res["peer"])
    start = next_send = now()
    deadline = start + seconds
    while now() < deadline:
        if now() >= next_send:  # one datagram every 20 ms
            s.sendto(f"punch {me}".encode(), peer)
            next_send += 0.02
        s.settimeout(max(0.001, min(next_send, deadline) - now()))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        if not data.startswith(b"punch "):
            continue  # a late rendezvous reply
        res["received"] += 1
        if list(addr) not in res["sources"]:
            res["sources"].append(list(addr))
        if res["punched_after"] is None:
            res["punched_after"] = round(now() - start, 3)
            deadline = min(deadline, now() + 0.3)  # keep sending so the peer gets ours too
    out(res)

else:
    sys.exit(f"unknown mode {mode}")
"""

ECHO_PORT = 7000
RDV_PORT, RDV_PORT2 = 7100, 7101


def tool(*args: object) -> list[str]:
    return [sys.executable, "-c", UDP_TOOL, *(str(a) for a in args)]


def read_json_line(p: subprocess.Popen[str], timeout: float) -> Any:
    """The next stdout line of ``p`` as JSON, waiting at most ``timeout`` seconds."""
    assert p.stdout is not None
    stdout = p.stdout
    q: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: q.put(stdout.readline()), daemon=True).start()
    try:
        line = q.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no output within {timeout:g} s")
    if not line:
        err = p.stderr.read() if p.stderr is not None and p.poll() is not None else ""
        pytest.fail(f"process ended without output: {err}")
    return json.loads(line)


def ours(prefix: str) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(prefix)]


@pytest.fixture(autouse=True)
def _need_netns() -> None:
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def topo() -> Iterator[NatTopology]:
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)
    with NatTopology() as t:
        yield t
    assert ours(t.prefix) == []


def punch(t: NatTopology, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both hosts register at the rendezvous server in public, then punch for ``seconds``
    (less once the hole is open); returns (host_a's result, host_b's result)."""
    rdv = t.popen(t.public, tool("rendezvous", RDV_PORT, RDV_PORT2, seconds + 5))
    try:
        assert read_json_line(rdv, 5) == {"ready": [RDV_PORT, RDV_PORT2]}
        a = t.popen(t.host_a, tool("punch", t.router_ip, RDV_PORT, RDV_PORT2, "a", seconds))
        b = t.popen(t.host_b, tool("punch", t.router_ip, RDV_PORT, RDV_PORT2, "b", seconds))
        out_a, err_a = a.communicate(timeout=seconds + 8)
        out_b, err_b = b.communicate(timeout=seconds + 8)
        assert a.returncode == 0, err_a
        assert b.returncode == 0, err_b
        return json.loads(out_a), json.loads(out_b)
    finally:
        rdv.kill()
        rdv.wait(timeout=5)


def test_masquerade_shows_nat_public_address(topo: NatTopology) -> None:
    echo = topo.popen(topo.public, tool("echo", ECHO_PORT, 2, 10))
    assert read_json_line(echo, 5) == {"ready": ECHO_PORT}
    for host, nat_ip, private_ip in (
        (topo.host_a, topo.nat_a_public_ip, topo.host_a_ip),
        (topo.host_b, topo.nat_b_public_ip, topo.host_b_ip),
    ):
        res = json.loads(topo.run(host, tool("ask", topo.router_ip, ECHO_PORT, 3)).stdout)
        reply = res["reply"]
        assert reply is not None, "no echo from the router"
        assert reply["from"] == [topo.router_ip, ECHO_PORT]
        seen_ip, seen_port = reply["seen"]
        assert seen_ip == nat_ip != private_ip  # masqueraded, not the private address
        # the server logged the same source
        assert read_json_line(echo, 5) == {"seen": [seen_ip, seen_port]}
    echo.wait(timeout=5)


def test_public_cannot_initiate(topo: NatTopology) -> None:
    port = 7200
    echo = topo.popen(topo.public, tool("echo", ECHO_PORT, 1, 10))
    assert read_json_line(echo, 5) == {"ready": ECHO_PORT}
    guard = topo.popen(topo.host_a, tool("guarded", port, topo.router_ip, ECHO_PORT, 3))
    mapped = read_json_line(guard, 5)["mapped"]
    assert mapped is not None and mapped[0] == topo.nat_a_public_ip
    echo.wait(timeout=5)  # it answered once and exited: ECHO_PORT is free for `send`
    nat_ip, mapped_port = mapped
    # uninvited: from another port of the same router to the mapped port, and from the
    # router's port to the port of a host socket that never sent; then a control from exactly
    # the address the host sent to, which must arrive (the listener works)
    topo.run(topo.public, tool("send", ECHO_PORT + 1, nat_ip, mapped_port, "intruder-port"))
    topo.run(topo.public, tool("send", ECHO_PORT, nat_ip, mapped_port + 1, "intruder-unmapped"))
    topo.run(topo.public, tool("send", ECHO_PORT, nat_ip, mapped_port, "control"))
    out, err = guard.communicate(timeout=8)
    got = json.loads(out.splitlines()[-1])["got"]
    assert got, f"not even the control datagram arrived: {err}"
    assert {(sock, tuple(addr), text) for sock, addr, text in got} == {
        ("mapped", (topo.router_ip, ECHO_PORT), "control")
    }


def test_hole_punch_works(topo: NatTopology) -> None:
    t0 = time.monotonic()
    a, b = punch(topo, seconds=5)
    elapsed = time.monotonic() - t0
    for me, other, nat_ip in ((a, b, topo.nat_a_public_ip), (b, a, topo.nat_b_public_ip)):
        assert me["peer"] is not None, "rendezvous failed"
        assert me["seen"][0] == nat_ip
        # endpoint-independent mapping: the same public address:port towards both
        # rendezvous ports, so the address the server saw is the one the peer must use
        assert me["seen"] == me["seen2"]
        assert me["peer"] == other["seen"]
        assert me["received"] > 0, f"no datagram through the hole: {me}"
        assert me["sources"] == [other["seen"]]
    print(
        f"mapped ports: a {a['local_port']}->{a['seen'][1]}, b {b['local_port']}->{b['seen'][1]};"
        f" punched after {a['punched_after']}/{b['punched_after']} s; {elapsed:.2f} s in all"
    )


def test_blocked_direct_path_makes_punch_fail(topo: NatTopology) -> None:
    topo.block_direct()
    try:
        assert topo.direct_blocked
        a, b = punch(topo, seconds=1.5)
        for me in (a, b):
            assert me["peer"] is not None, "the router must stay reachable"
            assert me["received"] == 0, f"punched through a blocked path: {me}"
    finally:
        topo.unblock_direct()
    assert not topo.direct_blocked
    a, b = punch(topo, seconds=5)
    assert a["received"] > 0 and b["received"] > 0, (a, b)


def test_symmetric_nat_makes_punch_fail(topo: NatTopology) -> None:
    topo.set_symmetric("b")
    try:
        a, b = punch(topo, seconds=1.5)
        assert b["peer"] is not None and a["peer"] is not None
        # a new random port per flow: the two rendezvous ports see different mappings
        assert b["seen"] != b["seen2"]
        assert a["seen"] == a["seen2"]
        assert a["received"] == 0 and b["received"] == 0, (a, b)
    finally:
        topo.set_symmetric("b", False)
    a, b = punch(topo, seconds=5)
    assert a["received"] > 0 and b["received"] > 0, (a, b)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_teardown_after_exception(exc: type[BaseException]) -> None:
    t = NatTopology()
    untracked: subprocess.Popen[bytes] | None = None
    with pytest.raises(exc), t:
        tracked = t.popen(t.host_a, ["sleep", "30"])
        untracked = subprocess.Popen(t.exec_argv(t.public, ["sleep", "30"]))
        assert len(ours(t.prefix)) == 5
        raise exc("boom")
    assert ours(t.prefix) == []
    assert tracked.wait(timeout=5) != 0
    assert untracked is not None
    assert untracked.wait(timeout=5) != 0  # killed as a process inside the namespace
    t.close()  # idempotent


def test_failed_build_cleans_up() -> None:
    t = NatTopology()
    calls = 0
    real_setup = t._firewall_setup

    def flaky(nat: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise NetnsError("injected failure")
        real_setup(nat)

    t._firewall_setup = flaky  # type: ignore[method-assign]
    with pytest.raises(NetnsError, match="injected"):
        t.up()
    assert calls == 2
    assert ours(t.prefix) == []


def test_delay_or_clean_refusal() -> None:
    t = NatTopology(delay_ms=25)
    try:
        t.up()
    except NetnsUnavailable as e:  # no sch_netem in this kernel: nothing may be left
        assert ours(t.prefix) == []
        pytest.skip(str(e))
    try:
        echo = t.popen(t.public, tool("echo", ECHO_PORT, 1, 10))
        assert read_json_line(echo, 5) == {"ready": ECHO_PORT}
        start = time.monotonic()
        res = json.loads(t.run(t.host_a, tool("ask", t.router_ip, ECHO_PORT, 3)).stdout)
        assert res["reply"] is not None
        assert time.monotonic() - start >= 0.05  # one round trip: 2 x 25 ms at least
    finally:
        t.close()
    assert ours(t.prefix) == []


def test_cleanup_stale_removes_only_dead_owners() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=5)
    stale = f"{netns.PREFIX}{dead.pid}-0-public"
    live = f"{netns.PREFIX}{os.getpid()}-999999-public"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "add", live], check=True, timeout=10)
        try:
            removed = netns.cleanup_stale()
            names = list_namespaces()
            assert stale in removed and stale not in names
            assert live not in removed and live in names
        finally:
            subprocess.run(["ip", "netns", "del", live], check=False, timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", stale], check=False, timeout=10, capture_output=True)


def test_iptables_backend() -> None:
    """The same NAT behaviour when the rules are written with iptables instead of nft."""
    if netns.find_tool("iptables") is None:
        pytest.skip("iptables is not installed")
    with NatTopology(backend="iptables") as t:
        assert t.backend == "iptables"
        rules = t.run(t.nat_a, ["iptables", "-w", "5", "-t", "nat", "-S"]).stdout
        assert "-A POSTROUTING -o wan -j MASQUERADE" in rules
        a, b = punch(t, seconds=5)
        assert a["seen"][0] == t.nat_a_public_ip and b["seen"][0] == t.nat_b_public_ip
        assert a["received"] > 0 and b["received"] > 0, (a, b)
        t.block_direct()
        a, b = punch(t, seconds=1.5)
        assert a["peer"] is not None and a["received"] == 0 and b["received"] == 0, (a, b)
        t.unblock_direct()
    assert ours(t.prefix) == []
