import pytest

from hns.names import namehash
from hns.records import (
    InvalidRecordValue,
    NodeRecord,
    decode_ip,
    decode_net_key,
    decode_port,
    decode_router_hashes,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
    net_key_from_hex,
)

KEY = bytes(range(32))


def test_net_key_round_trip():
    assert encode_net_key(KEY) == KEY
    assert decode_net_key(KEY) == KEY.hex()
    assert decode_net_key(KEY) == decode_net_key(KEY).lower()
    assert net_key_from_hex(KEY.hex()) == KEY
    assert net_key_from_hex("0x" + KEY.hex().upper()) == KEY


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_net_key_wrong_length(size):
    assert decode_net_key(bytes(size)) is None
    with pytest.raises(InvalidRecordValue):
        encode_net_key(bytes(size))


@pytest.mark.parametrize("text", ["zz" * 32, "00" * 31, "0" * 63, "0x"])
def test_net_key_from_bad_hex(text):
    with pytest.raises(InvalidRecordValue):
        net_key_from_hex(text)


@pytest.mark.parametrize(
    ("text", "raw", "back"),
    [
        ("1.2.3.4", bytes([1, 2, 3, 4]), "1.2.3.4"),
        ("127.0.0.1", bytes([127, 0, 0, 1]), "127.0.0.1"),
        ("::1", bytes(15) + b"\x01", "::1"),
        ("2001:db8::1", bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1"),
        (
            "2001:DB8:0:0:1:0:0:1",
            bytes.fromhex("20010db8000000000001000000000001"),
            "2001:db8::1:0:0:1",
        ),
        ("::ffff:1.2.3.4", bytes(10) + b"\xff\xff" + bytes([1, 2, 3, 4]), "::ffff:1.2.3.4"),
        ("::", bytes(16), "::"),
    ],
)
def test_ip_round_trip(text, raw, back):
    assert encode_ip(text) == raw
    assert decode_ip(raw) == back
    assert encode_ip(back) == raw


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8, 15, 17, 32])
def test_ip_wrong_length(size):
    assert decode_ip(bytes(size)) is None


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.256", "01.2.3.4", "alice.os", "fe80::1%eth0"])
def test_ip_invalid_text(text):
    with pytest.raises(InvalidRecordValue):
        encode_ip(text)


def test_ports():
    assert encode_port(9000) == b"\x23\x28"
    assert decode_port(b"\x23\x28") == 9000
    assert encode_port(0) == b"\x00\x00"
    assert decode_port(b"\x00\x00") == 0
    assert decode_port(b"\xff\xff") == 65535
    for bad in (b"", b"\x01", b"\x00\x01\x02"):
        assert decode_port(bad) is None
    for bad_port in (-1, 65536, True, 1.5):
        with pytest.raises(InvalidRecordValue):
            encode_port(bad_port)  # type: ignore[arg-type]


def test_routers():
    data = encode_routers(["bob.os", "carol.hypr"])
    assert data == namehash("bob.os") + namehash("carol.hypr")
    assert decode_router_hashes(data) == (namehash("bob.os"), namehash("carol.hypr"))
    assert decode_router_hashes(b"") == ()
    assert decode_router_hashes(data[:-1]) == ()
    assert decode_router_hashes(data + b"\x00") == ()
    with pytest.raises(InvalidRecordValue):
        encode_routers(["Bob.os"])


def test_node_record():
    rec = NodeRecord(name="alice.os", namehash="0x" + namehash("alice.os").hex())
    assert not rec.is_direct and not rec.is_usable
    assert rec.port("tcp") is None and rec.net_key_bytes is None
    direct = NodeRecord(
        name="alice.os",
        namehash=rec.namehash,
        net_key=KEY.hex(),
        ips=["1.2.3.4"],  # type: ignore[arg-type]
        ports={"tcp": 9000, "quic": 9001},
    )
    assert direct.ips == ("1.2.3.4",)
    assert direct.is_direct and direct.is_usable
    assert direct.port("tcp") == 9000 and direct.port("quic") == 9001 and direct.port("ws") is None
    assert direct.net_key_bytes == KEY
    no_port = NodeRecord(name="a.os", namehash="0x", net_key=KEY.hex(), ips=("1.2.3.4",))
    assert no_port.is_direct and not no_port.is_usable
    no_key = NodeRecord(name="a.os", namehash="0x", ips=("1.2.3.4",), ports={"tcp": 1})
    assert not no_key.is_usable
    indirect = NodeRecord(name="a.os", namehash="0x", net_key=KEY.hex(), routers=("bob.os",))
    assert not indirect.is_direct and indirect.is_usable
    # ports are copied, so the caller's dict cannot change a record
    ports = {"tcp": 1}
    r = NodeRecord(name="a.os", namehash="0x", ports=ports)
    ports["ws"] = 2
    assert r.ports == {"tcp": 1}
