import pytest

from hns.events import (
    FACT_SIGNATURE,
    FACT_TOPIC,
    MAX_LOG_DATA_BYTES,
    MINT_SIGNATURE,
    MINT_TOPIC,
    NOTE_SIGNATURE,
    NOTE_TOPIC,
    LogMeta,
    MalformedLog,
    abi_decode_bytes,
    abi_encode_bytes,
    decode_mint,
    decode_note,
    log_block_number,
    mint_log,
    note_log,
    parse_data,
    parse_quantity,
    same_address,
    to_quantity,
)
from hns.keccak import keccak256
from hns.names import ROOT_HASH, labelhash, namehash

META = LogMeta(
    block_number=27_270_412,
    block_hash=b"\x11" * 32,
    transaction_hash=b"\x22" * 32,
    transaction_index=3,
    log_index=17,
)


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_topic0_is_keccak_of_signature():
    assert keccak256(MINT_SIGNATURE.encode()) == MINT_TOPIC
    assert keccak256(NOTE_SIGNATURE.encode()) == NOTE_TOPIC
    assert keccak256(FACT_SIGNATURE.encode()) == FACT_TOPIC
    assert MINT_TOPIC.hex() == "b59dae5eda69178326b6517bb1aa33e208bf2ac347e30d3a5daf0ecb6249f7b1"
    assert NOTE_TOPIC.hex() == "e40d9f1ec78dfc3c5a94c3edae28058ba092a8f65ce8a199731840a3d20f82f4"
    assert FACT_TOPIC.hex() == "6df41fff09a97e34e341514998993ce9f4542c3fa8358931a96c9fff178c3adb"


def test_abi_encoding_is_solidity_layout():
    # abi.encode(bytes("alice"))
    assert abi_encode_bytes(b"alice") == word(32) + word(5) + b"alice" + bytes(27)
    # abi.encode(bytes("~ip"), bytes(4 bytes))
    enc = abi_encode_bytes(b"~ip", b"\x01\x02\x03\x04")
    assert enc == (
        word(64)
        + word(128)
        + word(3)
        + b"~ip"
        + bytes(29)
        + word(4)
        + b"\x01\x02\x03\x04"
        + bytes(28)
    )
    # exact multiples of 32 get no padding word; empty values are just a length
    assert abi_encode_bytes(b"") == word(32) + word(0)
    assert abi_encode_bytes(b"x" * 32) == word(32) + word(32) + b"x" * 32
    for values in [(b"",), (b"a" * 33,), (b"", b""), (b"~routers", bytes(range(256)) * 2)]:
        assert abi_decode_bytes(abi_encode_bytes(*values), len(values)) == values


@pytest.mark.parametrize(
    "data",
    [
        b"",
        word(32),  # no length word
        word(2**255) + word(0),  # huge offset
        word(32) + word(2**64),  # huge length
        word(32) + word(5) + b"alice",  # missing padding
        word(32) + word(5) + b"alice" + b"\x01" + bytes(26),  # non-zero padding
        word(64),  # head too short for two values (count=2 below)
    ],
)
def test_abi_decode_rejects_hostile_data(data):
    count = 2 if data == word(64) else 1
    with pytest.raises(MalformedLog) as e:
        abi_decode_bytes(data, count)
    assert e.value.reason == "bad_abi"


def test_abi_decode_allows_non_canonical_but_in_bounds_offsets():
    # both values share one tail: odd, but every read is in bounds
    data = word(64) + word(64) + word(1) + b"z" + bytes(31)
    assert abi_decode_bytes(data, 2) == (b"z", b"z")


def test_mint_log_shape():
    log = mint_log(namehash("os"), "alice", META)
    assert list(log) == [
        "address",
        "topics",
        "data",
        "blockHash",
        "blockNumber",
        "transactionHash",
        "transactionIndex",
        "logIndex",
        "removed",
    ]
    assert log["address"] == "0x000000000044C6B8Cb4d8f0F889a3E47664EAeda"
    assert log["topics"] == [
        "0x" + MINT_TOPIC.hex(),
        "0x" + namehash("os").hex(),
        "0x" + namehash("alice.os").hex(),
        "0x" + labelhash("alice").hex(),
    ]
    assert log["blockNumber"] == "0x1a01d0c"
    assert log["transactionIndex"] == "0x3"
    assert log["logIndex"] == "0x11"
    assert log["removed"] is False
    ev = decode_mint(log)
    assert ev.label == b"alice"
    assert ev.parenthash == namehash("os")
    assert ev.childhash == namehash("alice.os")
    assert ev.labelhash == keccak256(b"alice")


def test_top_level_mint_under_root():
    ev = decode_mint(mint_log(ROOT_HASH, "os", META))
    assert ev.childhash == namehash("os")


def test_note_log_round_trip():
    log = note_log(namehash("alice.os"), "~net-key", b"\xaa" * 32, META)
    ev = decode_note(log)
    assert ev.label == b"~net-key"
    assert ev.data == b"\xaa" * 32
    assert ev.parenthash == namehash("alice.os")
    assert ev.notehash == namehash("~net-key.alice.os")
    assert ev.labelhash == labelhash("~net-key")
    with pytest.raises(MalformedLog, match="wrong_event"):
        decode_mint(log)
    with pytest.raises(MalformedLog, match="wrong_event"):
        decode_note(mint_log(ROOT_HASH, "os", META))


def good_note() -> dict:
    return note_log(namehash("alice.os"), "~ip", b"\x01\x02\x03\x04", META)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda log: log.pop("topics"), "bad_topics"),
        (lambda log: log.update(topics=[]), "bad_topics"),
        (lambda log: log.update(topics="0x00"), "bad_topics"),
        (lambda log: log["topics"].pop(), "bad_topics"),
        (lambda log: log["topics"].append(log["topics"][0]), "bad_topics"),
        (lambda log: log["topics"].__setitem__(1, "0x1234"), "bad_topic"),
        (lambda log: log["topics"].__setitem__(1, "zz" * 33), "bad_topic"),
        (lambda log: log["topics"].__setitem__(1, 5), "bad_topic"),
        (lambda log: log.update(data="0xabc"), "bad_data"),
        (lambda log: log.update(data="abcd"), "bad_data"),
        (lambda log: log.update(data="0xgg"), "bad_data"),
        (lambda log: log.update(data=None), "bad_data"),
        (lambda log: log.update(data="0x" + "00" * (MAX_LOG_DATA_BYTES + 1)), "data_too_big"),
        (lambda log: log.update(data="0x"), "bad_abi"),
    ],
)
def test_decode_note_rejects_malformed(mutate, reason):
    log = good_note()
    mutate(log)
    with pytest.raises(MalformedLog) as e:
        decode_note(log)
    assert e.value.reason == reason


def test_quantities_and_addresses():
    assert to_quantity(0) == "0x0"
    assert to_quantity(255) == "0xff"
    assert parse_quantity("0xFF") == 255
    for bad in ("0x", "ff", "0x" + "f" * 17, 12, None, "0x-1"):
        with pytest.raises(MalformedLog):
            parse_quantity(bad)
    with pytest.raises(ValueError):
        to_quantity(-1)
    assert log_block_number({}) is None
    assert log_block_number({"blockNumber": "0x10"}) == 16
    assert parse_data("0x") == b""
    assert same_address(
        "0x000000000044c6b8cb4d8f0f889a3e47664eaeda", "0x000000000044C6B8Cb4d8f0F889a3E47664EAeda"
    )
    assert not same_address("0x00", "0x00")
    assert not same_address(None, "0x00")
