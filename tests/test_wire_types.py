"""Address and ProcessId parsing, formatting and the Hypermap-safe rules; value semantics."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hnet.core.wire import (
    Address,
    CodecError,
    Direct,
    GetPeers,
    HnsUpdate,
    Identity,
    KernelMessage,
    ProcessId,
    Request,
    SendErrorKind,
    is_hypermap_safe_label,
    is_valid_node_name,
)


def test_process_id_round_trip() -> None:
    p = ProcessId.parse("chat:chat:template.os")
    assert p == ProcessId("chat", "chat", "template.os")
    assert str(p) == "chat:chat:template.os"
    assert p.is_hypermap_safe()


def test_address_round_trip() -> None:
    a = Address.parse("alice.os@chat:chat:template.os")
    assert a.node == "alice.os"
    assert a.process == ProcessId("chat", "chat", "template.os")
    assert str(a) == "alice.os@chat:chat:template.os"
    assert a == Address("alice.os", ProcessId("chat", "chat", "template.os"))
    assert hash(a) == hash(Address.parse(str(a)))
    assert a.is_hypermap_safe()


def test_address_net() -> None:
    assert str(Address.net("bob.os")) == "bob.os@net:distro:sys"
    assert Address.net("bob.os") == Address.parse("bob.os@net:distro:sys")


def test_node_may_contain_colon_like_the_reference() -> None:
    # The reference splits on '@' first; a ':' in the node survives a round trip.
    a = Address.parse("a:b@p:k:n")
    assert a.node == "a:b"
    assert Address.parse(str(a)) == a
    assert not a.is_hypermap_safe()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice.os",
        "@chat:chat:template.os",
        "alice.os@",
        "alice.os@chat:chat",
        "alice.os@chat:chat:template.os:extra",
        "alice.os@chat::template.os",
        "alice.os@:chat:template.os",
        "alice.os@chat:chat:",
        "alice.os@@chat:chat:template.os",
        "a@b@chat:chat:template.os",
        "alice.os@chat:chat:template@os",
        "alice.os@chatchattemplate.os",
    ],
)
def test_address_rejects(text: str) -> None:
    with pytest.raises(CodecError):
        Address.parse(text)


@pytest.mark.parametrize(
    "text", ["", "a:b", "a:b:c:d", ":b:c", "a::c", "a:b:", "a@x:b:c", "a:b:c@d"]
)
def test_process_id_rejects(text: str) -> None:
    with pytest.raises(CodecError):
        ProcessId.parse(text)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(CodecError):
        Address.parse(b"alice.os@chat:chat:template.os")  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        ProcessId.parse(None)  # type: ignore[arg-type]


def test_constructors_validate() -> None:
    with pytest.raises(CodecError):
        ProcessId("", "b", "c")
    with pytest.raises(CodecError):
        ProcessId("a:x", "b", "c")
    with pytest.raises(CodecError):
        ProcessId("a", "b", 3)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        Address("", ProcessId("a", "b", "c"))
    with pytest.raises(CodecError):
        Address("x@y", ProcessId("a", "b", "c"))
    with pytest.raises(CodecError):
        Address("x", "a:b:c")  # type: ignore[arg-type]
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        ("chat", True),
        ("a-b-0", True),
        ("-", True),
        ("", False),
        ("Chat", False),
        ("a.b", False),
        ("a_b", False),
        ("é", False),
        ("a b", False),
        ("a\n", False),
    ],
)
def test_hypermap_safe_label(label: str, ok: bool) -> None:
    assert is_hypermap_safe_label(label) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("alice.os", True),
        ("a", True),
        ("router-1.hypr.os", True),
        ("", False),
        (".os", False),
        ("alice.", False),
        ("alice..os", False),
        ("Alice.os", False),
        ("alice.os\n", False),
        ("ali ce.os", False),
        ("alice.ös", False),
    ],
)
def test_valid_node_name(name: str, ok: bool) -> None:
    assert is_valid_node_name(name) is ok


def test_hypermap_safe_process_ids() -> None:
    assert ProcessId("net", "distro", "sys").is_hypermap_safe()
    assert not ProcessId("Net", "distro", "sys").is_hypermap_safe()
    assert not ProcessId("net", "dis.tro", "sys").is_hypermap_safe()
    assert not ProcessId("net", "distro", "sys..os").is_hypermap_safe()
    assert ProcessId("123456789", "pkg", "pub.os").is_hypermap_safe()
    assert not Address("Alice.os", ProcessId("net", "distro", "sys")).is_hypermap_safe()


_part = st.text(min_size=1, max_size=20).filter(lambda s: ":" not in s and "@" not in s)
_node = st.text(min_size=1, max_size=20).filter(lambda s: "@" not in s)


@settings(max_examples=300, deadline=1000)
@given(_node, _part, _part, _part)
def test_address_parse_str_round_trip(node: str, a: str, b: str, c: str) -> None:
    addr = Address(node, ProcessId(a, b, c))
    assert Address.parse(str(addr)) == addr
    assert ProcessId.parse(str(addr.process)) == addr.process


@settings(max_examples=300, deadline=1000)
@given(st.text(max_size=40))
def test_address_parse_total(text: str) -> None:
    try:
        addr = Address.parse(text)
    except CodecError:
        return
    assert str(addr) == text


def test_values_are_frozen_and_hashable() -> None:
    a = Address.parse("alice.os@chat:chat:template.os")
    req = Request(False, None, b"x", None, ())
    km = KernelMessage(1, a, a, None, req, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        km.id = 2  # type: ignore[misc]
    assert {km, km} == {km}
    assert pickle.loads(pickle.dumps(km)) == km
    assert str(pickle.loads(pickle.dumps(a))) == str(a)
    replaced = dataclasses.replace(a, node="bob.os")
    assert str(replaced) == "bob.os@chat:chat:template.os"
    assert GetPeers() == GetPeers()
    assert SendErrorKind("Offline") is SendErrorKind.OFFLINE


def test_values_with_ports_compare_by_value() -> None:
    one = Identity("a.os", "0x", Direct("1.1.1.1", {"tcp": 1, "ws": 2}))
    two = Identity("a.os", "0x", Direct("1.1.1.1", {"ws": 2, "tcp": 1}))
    assert one == two
    assert HnsUpdate("a", "k", (), {"tcp": 1}, ()) == HnsUpdate("a", "k", (), {"tcp": 1}, ())
