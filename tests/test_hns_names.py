import pytest

from hns.keccak import keccak256
from hns.names import (
    ROOT_HASH,
    InvalidName,
    ancestors,
    child_hash,
    is_valid_fact_label,
    is_valid_label,
    is_valid_note_label,
    labelhash,
    namehash,
    namehash_hex,
    split_name,
    validate_label,
    validate_name,
)


def test_keccak_known_values():
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(bytearray(b"abc")) == keccak256(memoryview(b"abc"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("os", "deeac81ae11b64e7cab86d089c306e5d223552a630f02633ce170d2786ff1bbd"),
        ("alice.os", "fc921cbdfda30a7b21ad8f5c9ad542cbb5f6f3d0f8c2831fcd0325d1dbbdce8b"),
        ("~net-key.alice.os", "2612e9785e426e0a457eef342ca955b5000c4bd37d24c42f23f8cc4316a7614f"),
        # the reference's simulation-mode hard-coded zone
        ("dev", "137d9e4cc0479164d40577620cb3b41b083c6e8dbf58f8523be76d207d6fd8ea"),
    ],
)
def test_namehash_worked_values(name, expected):
    assert namehash(name).hex() == expected
    assert namehash_hex(name) == "0x" + expected


def test_namehash_structure():
    assert namehash("") == ROOT_HASH == bytes(32)
    assert namehash("os") == keccak256(ROOT_HASH + labelhash("os"))
    assert namehash("alice.os") == child_hash(namehash("os"), "alice")
    assert child_hash(namehash("os"), b"alice") == namehash("alice.os")
    # no normalisation: case matters
    assert namehash("Alice.os") != namehash("alice.os")
    with pytest.raises(ValueError):
        child_hash(b"short", "x")


@pytest.mark.parametrize("label", ["a", "alice", "0", "a-b", "-", "x" * 63, "9lives"])
def test_valid_labels(label):
    assert is_valid_label(label)
    assert validate_label(label) == label


@pytest.mark.parametrize(
    "label", ["", "A", "alice_", "al ice", "x" * 64, "é", "~net-key", "!fact", "a.b"]
)
def test_invalid_labels(label):
    assert not is_valid_label(label)
    with pytest.raises(InvalidName):
        validate_label(label)


def test_note_and_fact_labels():
    assert is_valid_note_label("~net-key")
    assert is_valid_note_label("~quic-port")
    assert not is_valid_note_label("~")
    assert not is_valid_note_label("net-key")
    assert not is_valid_note_label("~Net")
    assert not is_valid_note_label("~" + "a" * 63)
    assert is_valid_fact_label("!x")
    assert not is_valid_fact_label("~x")


@pytest.mark.parametrize("name", ["alice.os", "os", "a-b.c-d.hypr", "node1.dev"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "alice.", ".os", "alice..os", "Alice.os", "alice os", "~net-key.alice.os"]
)
def test_invalid_names(name):
    with pytest.raises(InvalidName):
        validate_name(name)


def test_invalid_name_message_names_the_label():
    with pytest.raises(InvalidName, match="'Bob'"):
        validate_name("Bob.os")
    with pytest.raises(InvalidName):
        validate_name(5)  # type: ignore[arg-type]


def test_split_and_ancestors():
    assert split_name("alice.os") == ("alice", "os")
    assert split_name("a.b.os") == ("a", "b.os")
    assert split_name("os") == ("os", None)
    assert ancestors("a.b.os") == ["os", "b.os", "a.b.os"]
    assert ancestors("os") == ["os"]
