"""Key files: plain and encrypted hnet key files, and Hyperdrive (reference) .keys files.

The reference files here are built by this test from the facts in docs/protocol.md
("Keyfiles"), independently of hnet.keys, with the reference's own KDF parameters.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from hnet import keys
from hnet.cli.main import main
from hns import Registry

# The explicit test hook: small Argon2id costs for library tests only (the defaults and the CLI
# are never changed; the CLI tests below pay the real cost).
FAST = keys.KdfParams(iterations=1, memory_kib=8)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`hnet ARGS` with no terminal (stdin is /dev/null) and only the given HNET_KEY_* vars."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HNET_KEY_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hnet", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
    )


class Cli:
    """`hnet ARGS` in this process (faster than a subprocess), with no terminal."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        with self.monkeypatch.context() as m:
            for k in [k for k in os.environ if k.startswith("HNET_KEY_")]:
                m.delenv(k)
            for k, v in (env or {}).items():
                m.setenv(k, v)
            with open(os.devnull) as devnull:
                m.setattr(sys, "stdin", devnull)
                self.capsys.readouterr()
                code = main(list(args))
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# ---------------------------------------------------------------------------------------------
# our encrypted key files


def test_encrypted_round_trip(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "k"
    keys.write_keyfile(path, key, passphrase="correct horse", kdf=FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temporary file left
    doc = json.loads(path.read_text())
    assert doc["format"] == "hnet-encrypted-key" and doc["version"] == 1
    assert doc["kdf"] == {
        "name": "argon2id",
        "version": 19,
        "iterations": 1,
        "memory_kib": 8,
        "lanes": 1,
        "salt": doc["kdf"]["salt"],
    }
    assert len(bytes.fromhex(doc["kdf"]["salt"])) == 16
    assert doc["cipher"]["name"] == "xsalsa20-poly1305"
    assert len(bytes.fromhex(doc["cipher"]["nonce"])) == 24
    assert len(bytes.fromhex(doc["ciphertext"])) == 48
    assert doc["public_key"] == pub(key).hex()
    assert keys.seed_bytes(key).hex() not in path.read_text()
    for given in ("correct horse", b"correct horse", lambda: "correct horse"):
        assert pub(keys.read_keyfile(path, given)) == pub(key)


def test_default_kdf_is_libsodium_moderate() -> None:
    assert keys.KdfParams(iterations=3, memory_kib=256 * 1024) == keys.DEFAULT_KDF


def test_wrong_passphrase_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "k"
    keys.write_keyfile(path, keys.generate(), passphrase="right", kdf=FAST)
    with pytest.raises(keys.KeyFileError) as e:
        keys.read_keyfile(path, "wrong")
    assert str(e.value) == f"{path}: wrong passphrase"


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda d, raw: raw[: len(raw) // 2], "corrupt encrypted key file (not JSON)"),
        (lambda d, raw: b"", "not an hnet key file"),
        (lambda d, raw: {**d, "ciphertext": d["ciphertext"][:-2]}, "'ciphertext' is not 48"),
        (lambda d, raw: {**d, "ciphertext": "zz" * 48}, "'ciphertext' is not hex"),
        (lambda d, raw: {**d, "version": 2}, "version 2 is not supported"),
        (lambda d, raw: {**d, "format": "other"}, "no hnet format marker"),
        (lambda d, raw: {**d, "public_key": "00" * 32}, "public key does not match"),
        (lambda d, raw: {**d, "kdf": {**d["kdf"], "memory_kib": 2**40}}, "out of range"),
        (lambda d, raw: {**d, "kdf": {**d["kdf"], "iterations": "1"}}, "'iterations'"),
        (lambda d, raw: {**d, "kdf": {**d["kdf"], "lanes": 4}}, "lanes 4"),
        (lambda d, raw: {**d, "cipher": {"name": "aes"}}, "unsupported cipher 'aes'"),
        (lambda d, raw: [d], "not an hnet key file"),
    ],
)
def test_corrupt_encrypted_file_is_one_clear_line(
    tmp_path: Path, damage: object, expect: str
) -> None:
    path = tmp_path / "k"
    keys.write_keyfile(path, keys.generate(), passphrase="pw", kdf=FAST)
    raw = path.read_bytes()
    out = damage(json.loads(raw), raw)  # type: ignore[operator]
    path.write_bytes(out if isinstance(out, bytes) else json.dumps(out).encode())
    with pytest.raises(keys.KeyFileError) as e:
        keys.read_keyfile(path, "pw")
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and expect in msg and "\n" not in msg, msg


def test_flipped_ciphertext_reads_as_wrong_passphrase(tmp_path: Path) -> None:
    # the box cannot tell a damaged ciphertext from a wrong key: documented
    path = tmp_path / "k"
    keys.write_keyfile(path, keys.generate(), passphrase="pw", kdf=FAST)
    d = json.loads(path.read_text())
    ct = bytearray.fromhex(d["ciphertext"])
    ct[20] ^= 1
    d["ciphertext"] = ct.hex()
    path.write_text(json.dumps(d))
    with pytest.raises(keys.KeyFileError, match="wrong passphrase"):
        keys.read_keyfile(path, "pw")


def test_plain_keyfile_still_read_and_never_asks(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "k"
    keys.write_keyfile(path, key)
    assert path.read_text() == f"hnet-ed25519-seed:{keys.seed_bytes(key).hex()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def never() -> str:
        raise AssertionError("asked for a passphrase for a plain file")

    assert pub(keys.read_keyfile(path, never)) == pub(key)
    assert pub(keys.read_keyfile(path)) == pub(key)


def test_write_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        keys.write_keyfile(path, keys.generate(), passphrase="pw", kdf=FAST)
    assert path.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_passphrase_from_env_then_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k"
    key = keys.generate()
    keys.write_keyfile(path, key, passphrase="s3cret", kdf=FAST)
    monkeypatch.setenv("HNET_KEY_PASSPHRASE", "s3cret")
    assert pub(keys.read_keyfile(path)) == pub(key)
    monkeypatch.delenv("HNET_KEY_PASSPHRASE")
    with open(os.devnull) as devnull:
        monkeypatch.setattr(sys, "stdin", devnull)
        with pytest.raises(keys.KeyFileError) as e:
            keys.read_keyfile(path)
    assert str(e.value) == (
        f"{path}: passphrase needed: set HNET_KEY_PASSPHRASE or run on a terminal"
    )

    class Tty:
        def isatty(self) -> bool:
            return True

    answers = iter(["s3cret", "new", "other"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert pub(keys.read_keyfile(path)) == pub(key)
    assert prompts == [f"Passphrase for {path}: "]
    with pytest.raises(keys.KeyFileError, match="passphrases do not match"):
        keys.ask_passphrase(path, confirm=True)


# ---------------------------------------------------------------------------------------------
# the CLI with encrypted key files (real KDF costs: about a second per derivation)


def test_cli_keygen_encrypt_then_register(tmp_path: Path, cli: Cli) -> None:
    key = tmp_path / "k"
    env = {"HNET_KEY_PASSPHRASE": "operator pass"}
    res = run_cli("keygen", "--encrypt", "--out", str(key), env=env)
    assert res.returncode == 0, res.stderr
    public = res.stdout.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    doc = json.loads(key.read_text())
    assert doc["public_key"] == public
    assert (doc["kdf"]["iterations"], doc["kdf"]["memory_kib"]) == (3, 256 * 1024)
    reg = tmp_path / "reg"
    args = ("hns", "register", "alice.os", "--key", str(key), "--ip", "127.0.0.1",
            "--tcp-port", "9000", "--registry", str(reg))  # fmt: skip
    res = run_cli(*args, env=env)
    assert res.returncode == 0, res.stderr
    assert Registry(reg).resolve("alice.os").net_key == public
    # wrong passphrase, and none at all with no terminal: one line, exit 2
    res = cli(*args, env={"HNET_KEY_PASSPHRASE": "nope"})
    assert res.returncode == 2 and one_line(res) == f"{key}: wrong passphrase"
    res = cli(*args)
    assert res.returncode == 2
    assert (
        one_line(res) == f"{key}: passphrase needed: set HNET_KEY_PASSPHRASE or run on a terminal"
    )
    # hnet node reads the same way (its exit code for key errors is node_cmd's)
    node = ("node", "--name", "alice.os", "--key", str(key), "--registry", str(reg),
            "--home", str(tmp_path / "home"))  # fmt: skip
    res = run_cli(*node, env={"HNET_KEY_PASSPHRASE": "nope"})
    assert res.returncode != 0 and one_line(res) == f"{key}: wrong passphrase"


def test_cli_keygen_encrypt_needs_a_passphrase(tmp_path: Path, cli: Cli) -> None:
    key = tmp_path / "k"
    res = run_cli("keygen", "--encrypt", "--out", str(key))  # a real process, without a terminal
    assert res.returncode == 2
    assert (
        one_line(res) == f"{key}: passphrase needed: set HNET_KEY_PASSPHRASE or run on a terminal"
    )
    assert not key.exists()
    res = cli("keygen", "--encrypt", "--out", str(key), env={"HNET_KEY_PASSPHRASE": ""})
    assert res.returncode == 2 and "empty passphrase" in one_line(res)
    assert not key.exists()
    key.write_text("x")
    res = cli("keygen", "--encrypt", "--out", str(key), env={"HNET_KEY_PASSPHRASE": "p"})
    assert res.returncode == 1 and "already exists" in one_line(res)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["key"], ["key", "import-reference"], ["keygen"]):
        with pytest.raises(SystemExit) as e:
            main([*args, "--help"])
        assert e.value.code == 0 and "usage: hnet" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# reference (Hyperdrive) .keys files, built here from the documented facts

REF_PKCS8_PREFIX = bytes.fromhex("3051020101300506032b657004220420")  # ring 0.17: [1] implicit
REF_PKCS8_MIDDLE = bytes.fromhex("812100")
OLD_PKCS8_PREFIX = bytes.fromhex("3053020101300506032b657004220420")  # older ring: [1] explicit
OLD_PKCS8_MIDDLE = bytes.fromhex("a123032100")


def ring_pkcs8(key: Ed25519PrivateKey, *, legacy: bool = False) -> bytes:
    prefix, middle = (OLD_PKCS8_PREFIX, OLD_PKCS8_MIDDLE) if legacy else (
        REF_PKCS8_PREFIX, REF_PKCS8_MIDDLE)  # fmt: skip
    return prefix + keys.seed_bytes(key) + middle + pub(key)


def ref_password_hash(password: str, name: str) -> bytes:
    salt = name.encode()
    if len(salt) < 8:
        salt = salt * (1 + 8 // len(salt))
    raw = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456).derive(
        password.encode()
    )
    return ("0x" + raw.hex()).encode()


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def build_reference(
    name: str,
    routers: list[str],
    password: str,
    key: Ed25519PrivateKey,
    *,
    encoding: str = "json",
    legacy_pkcs8: bool = False,
    fake_node: bool = False,
    jwt: bytes = b"\x5a\xa5",  # the reference's boot path makes a 2-byte one
    file_key: bytes = bytes(range(32)),
) -> bytes:
    salt = os.urandom(32)
    hashed = password.encode() if fake_node else ref_password_hash(password, name)
    aes = AESGCM(PBKDF2HMAC(hashes.SHA256(), 32, salt, 1_000_000).derive(hashed))

    def seal(plain: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + aes.encrypt(nonce, plain, None)

    parts = [salt, seal(ring_pkcs8(key, legacy=legacy_pkcs8)), seal(jwt), seal(file_key)]
    if encoding == "json":
        doc = [name, routers, *(list(p) for p in parts)]
        return json.dumps(doc, separators=(",", ":")).encode()
    out = u64(len(name.encode())) + name.encode() + u64(len(routers))
    for r in routers:
        out += u64(len(r.encode())) + r.encode()
    for p in parts:
        out += u64(len(p)) + p
    return out


def test_reference_salt_repetition() -> None:
    assert keys.reference_salt("abc") == b"abcabcabc"
    assert keys.reference_salt("abcd") == b"abcd" * 3
    assert keys.reference_salt("abcdefg") == b"abcdefg" * 2
    assert keys.reference_salt("abcdefgh") == b"abcdefgh"
    assert keys.reference_salt("a") == b"a" * 9
    with pytest.raises(ValueError):
        keys.reference_salt("")


def test_argon2id_takes_an_8_byte_salt() -> None:
    # phc-winner-argon2 test.c, Argon2id v0x13, t=2, m=256 KiB, p=1, "password"/"somesalt"
    out = Argon2id(salt=b"somesalt", length=32, iterations=2, lanes=1, memory_cost=256)
    assert out.derive(b"password").hex() == (
        "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe"
    )


@pytest.mark.parametrize(
    ("name", "encoding", "legacy"),
    [("alice.os", "json", False), ("ab.os", "bincode", True), ("x", "json", True)],
)
def test_reference_decode(name: str, encoding: str, legacy: bool) -> None:
    key = keys.generate()
    data = build_reference(name, ["r1.os"], "hunter22", key, encoding=encoding,
                           legacy_pkcs8=legacy)  # fmt: skip
    assert keys.reference_identity(data) == (name, ("r1.os",))
    ref = keys.decode_reference_keyfile(data, "hunter22")
    assert pub(ref.key) == pub(key)
    assert (ref.name, ref.routers, ref.encoding) == (name, ("r1.os",), encoding)
    assert (ref.jwt_secret, ref.file_key) == (b"\x5a\xa5", bytes(range(32)))
    with pytest.raises(keys.KeyFileError, match=r"^f: wrong password$"):
        keys.decode_reference_keyfile(data, "hunter2", label="f")


def test_reference_fake_node_password_is_not_argon2ed() -> None:
    key = keys.generate()
    data = build_reference("fake.dev", [], "secret", key, fake_node=True)
    assert pub(keys.decode_reference_keyfile(data, "secret", fake_node=True).key) == pub(key)
    with pytest.raises(keys.KeyFileError, match="wrong password"):
        keys.decode_reference_keyfile(data, "secret")


def test_reference_corrupt() -> None:
    data = build_reference("alice.os", [], "pw", keys.generate())
    for bad in (data[:-10], b"", b"[1,2,3]", data.replace(b'"alice.os"', b'""')):
        with pytest.raises(keys.KeyFileError) as e:
            keys.decode_reference_keyfile(bad, "pw", label="f")
        assert str(e.value).startswith("f: ") and "Hyperdrive .keys file" in str(e.value)
    # a networking key that decrypts but is not an Ed25519 PKCS#8 document
    bogus = build_reference("alice.os", [], "pw", keys.generate())
    doc = json.loads(bogus)
    salt = bytes(doc[2])
    aes = AESGCM(PBKDF2HMAC(hashes.SHA256(), 32, salt, 1_000_000).derive(
        ref_password_hash("pw", "alice.os")))  # fmt: skip
    doc[3] = list(bytes(12) + aes.encrypt(bytes(12), b"\x30\x00", None))
    with pytest.raises(keys.KeyFileError, match="networking key"):
        keys.decode_reference_keyfile(json.dumps(doc).encode(), "pw", label="f")


def test_pkcs8_forms() -> None:
    key = keys.generate()
    v1 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    for der in (v1, ring_pkcs8(key), ring_pkcs8(key, legacy=True)):
        assert pub(keys.ed25519_from_pkcs8(der)) == pub(key)
    other = keys.generate()
    mismatched = REF_PKCS8_PREFIX + keys.seed_bytes(key) + REF_PKCS8_MIDDLE + pub(other)
    bad_cases = [
        mismatched,
        ring_pkcs8(key)[:-1],
        ring_pkcs8(key) + b"\x00",
        REF_PKCS8_PREFIX + keys.seed_bytes(key),  # v2 without its public key
        v1.replace(bytes.fromhex("06032b6570"), bytes.fromhex("06032b656e")),  # X25519
    ]
    for der in bad_cases:
        with pytest.raises(ValueError):
            keys.ed25519_from_pkcs8(der)


def test_our_reader_points_at_import_for_a_reference_file(tmp_path: Path) -> None:
    path = tmp_path / ".keys"
    path.write_bytes(build_reference("alice.os", [], "pw", keys.generate(), encoding="bincode"))
    with pytest.raises(keys.KeyFileError, match="hnet key import-reference"):
        keys.read_keyfile(path)


def test_cli_import_reference(tmp_path: Path, cli: Cli) -> None:
    key = keys.generate()
    src = tmp_path / ".keys"
    src.write_bytes(build_reference("alice.os", ["r1.os", "r2.os"], "login pw", key))
    env = {"HNET_KEY_PASSWORD": "login pw"}
    res = run_cli("key", "import-reference", str(src), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "name      alice.os",
        "routers   r1.os, r2.os",
        f"net-key   {pub(key).hex()}",
        "key file  not written (give --out KEYFILE)",
    ]
    out = tmp_path / "alice.key"
    res = run_cli("key", "import-reference", str(src), "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert f"net-key   {pub(key).hex()}" in res.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert pub(keys.read_keyfile(out)) == pub(key)
    # encrypted, and then usable by hns register
    enc = tmp_path / "alice.enc"
    both = {**env, "HNET_KEY_PASSPHRASE": "ours"}
    res = cli("key", "import-reference", str(src), "--out", str(enc), "--encrypt", env=both)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == f"key file  {enc} (encrypted)"
    assert pub(keys.read_keyfile(enc, "ours")) == pub(key)
    # wrong password; no password and no terminal; the out file is not written
    res = cli("key", "import-reference", str(src), "--out", str(tmp_path / "n"),
                  env={"HNET_KEY_PASSWORD": "nope"})  # fmt: skip
    assert res.returncode == 2 and one_line(res) == f"{src}: wrong password"
    res = cli("key", "import-reference", str(src))
    assert res.returncode == 2
    assert one_line(res) == f"{src}: password needed: set HNET_KEY_PASSWORD or run on a terminal"
    assert not (tmp_path / "n").exists()
    # usage and file errors are single lines too
    res = cli("key", "import-reference", str(src), "--encrypt", env=both)
    assert res.returncode == 2 and "--encrypt needs --out" in one_line(res)
    res = cli("key", "import-reference", str(tmp_path / "none"), env=env)
    assert res.returncode == 2 and one_line(res) == f"{tmp_path / 'none'}: no such file"
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x01\x02")
    res = cli("key", "import-reference", str(junk), env=env)
    assert res.returncode == 2 and one_line(res) == f"{junk}: not a Hyperdrive .keys file"
    res = cli("key", "import-reference", str(src), "--out", str(out), env=env)
    assert res.returncode == 1 and "already exists" in one_line(res)


def test_cli_import_reference_direct_node_bincode(tmp_path: Path, cli: Cli) -> None:
    key = keys.generate()
    src = tmp_path / ".keys"
    src.write_bytes(build_reference("bob.os", [], "pw", key, encoding="bincode"))
    res = cli("key", "import-reference", str(src), env={"HNET_KEY_PASSWORD": "pw"})
    assert res.returncode == 0, res.stderr
    assert "routers   (none: a direct node)" in res.stdout
    assert f"net-key   {pub(key).hex()}" in res.stdout
