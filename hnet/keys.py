"""The node's long-term Ed25519 networking key: generation, key files, signing helpers.

Key files
=========

``read_keyfile`` tells the two formats apart by their first bytes; both are written with mode
0600, atomically (a temporary file in the same directory, fsynced, then hard-linked into place, so
an existing file is never overwritten and a crash never leaves half a key).

Plain (unchanged since the first release): one ASCII line, ``hnet-ed25519-seed:`` followed by the
32-byte Ed25519 seed in lowercase hex, then a newline.

Encrypted, version 1: one line of UTF-8 JSON, an object with exactly these members::

    {"format": "hnet-encrypted-key",
     "version": 1,
     "public_key": "<32 bytes, hex>",
     "kdf": {"name": "argon2id", "version": 19, "iterations": T, "memory_kib": M,
             "lanes": 1, "salt": "<16 bytes, hex>"},
     "cipher": {"name": "xsalsa20-poly1305", "nonce": "<24 bytes, hex>"},
     "ciphertext": "<48 bytes, hex>"}

- The 32-byte box key is Argon2id (version 0x13 = 19) of the UTF-8 passphrase with ``salt``,
  ``iterations`` passes over ``memory_kib`` KiB in ``lanes`` lanes (libsodium's
  ``crypto_pwhash``: opslimit = T, memlimit = M * 1024 bytes; only 1 lane is supported).
- ``ciphertext`` is libsodium's ``crypto_secretbox`` (XSalsa20-Poly1305) of the 32-byte seed
  under that key and ``nonce``: the 16-byte Poly1305 tag, then the 32 encrypted bytes.
- ``public_key`` is there for people (which identity is this?) and is checked against the
  decrypted seed; nothing trusts it before the box opens.
- New files get ``DEFAULT_KDF`` (libsodium's "moderate": 3 passes over 256 MiB, about a second);
  readers take the parameters from the file, so the defaults can change without breaking old
  files. A reader refuses more than ``MAX_KDF_MEMORY_KIB`` or ``MAX_KDF_ITERATIONS`` (a damaged
  file must not make us allocate terabytes). A file with another ``format``/``version``/KDF/cipher
  is refused with a one-line error naming what it has.
- A box that does not open is reported as ``PATH: wrong passphrase``; a file that is not this JSON
  shape (truncated, edited, wrong lengths) as ``PATH: corrupt encrypted key file (...)``.

Passphrases: ``read_keyfile(path, passphrase)`` takes the passphrase as ``str``/``bytes`` or as a
callable returning one (asked only if the file is encrypted). Without one it uses
``ask_passphrase``: ``$HNET_KEY_PASSPHRASE`` if set, else a ``getpass`` prompt when stdin is a
terminal, else a ``KeyFileError``.

Reference (Hyperdrive) ``.keys`` files are read by ``read_reference_keyfile``; their format is
described in docs/protocol.md, "Keyfiles".
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id
import nacl.secret
import nacl.utils
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEYFILE_PREFIX = "hnet-ed25519-seed:"
ENCRYPTED_FORMAT = "hnet-encrypted-key"
ENCRYPTED_VERSION = 1
PASSPHRASE_ENV = "HNET_KEY_PASSPHRASE"
REFERENCE_PASSWORD_ENV = "HNET_KEY_PASSWORD"

MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB
MAX_KDF_ITERATIONS = 1_000
_ARGON2_VERSION = 0x13

Passphrase = str | bytes | Callable[[], str | bytes]
"""A passphrase, or a function asked for it only when a file turns out to be encrypted."""


class KeyFileError(Exception):
    """A key file that cannot be read; the message is one line for the user."""


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost of an encrypted key file (libsodium: opslimit = iterations, one lane)."""

    iterations: int
    memory_kib: int

    def check(self) -> None:
        if not nacl.pwhash.argon2id.OPSLIMIT_MIN <= self.iterations <= MAX_KDF_ITERATIONS:
            raise ValueError(f"Argon2id iterations {self.iterations} out of range")
        memory = self.memory_kib * 1024
        if not nacl.pwhash.argon2id.MEMLIMIT_MIN <= memory <= MAX_KDF_MEMORY_KIB * 1024:
            raise ValueError(f"Argon2id memory {self.memory_kib} KiB out of range")


DEFAULT_KDF = KdfParams(
    iterations=nacl.pwhash.argon2id.OPSLIMIT_MODERATE,
    memory_kib=nacl.pwhash.argon2id.MEMLIMIT_MODERATE // 1024,
)


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def from_seed(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def seed_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


# ---------------------------------------------------------------------------------------------
# Passphrases


def _utf8(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def ask_secret(prompt: str, env: str, *, what: str, label: str, confirm: bool = False) -> str:
    """``$env`` if set (even to ""), else ``getpass(prompt)`` on a terminal (twice if
    ``confirm``), else ``KeyFileError``. ``what``/``label`` word the one-line errors."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise KeyFileError(f"{label}: {what} needed: set {env} or run on a terminal")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass(f"{what.capitalize()} again: ") != first:
            raise KeyFileError(f"{label}: the {what}s do not match")
    except EOFError:
        raise KeyFileError(f"{label}: no {what} given") from None
    return first


def ask_passphrase(path: Path, *, confirm: bool = False) -> str:
    """The passphrase of our encrypted key file at ``path``: ``$HNET_KEY_PASSPHRASE`` or a
    prompt (asked twice when ``confirm``, for a new file)."""
    return ask_secret(
        f"Passphrase for {path}: ",
        PASSPHRASE_ENV,
        what="passphrase",
        label=str(path),
        confirm=confirm,
    )


def _resolve(passphrase: Passphrase) -> bytes:
    return _utf8(passphrase() if callable(passphrase) else passphrase)


# ---------------------------------------------------------------------------------------------
# Our key files


def _write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``, atomically; FileExistsError if it exists."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces an existing file
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some FUSE/network file systems): exclusive create
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def encrypt_key(
    key: Ed25519PrivateKey, passphrase: str | bytes, *, kdf: KdfParams = DEFAULT_KDF
) -> bytes:
    """The bytes of an encrypted key file (format in the module docstring). ``kdf`` is there
    for tests and future tuning; files always record the parameters they were made with."""
    kdf.check()
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box_key = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        _utf8(passphrase),
        salt,
        opslimit=kdf.iterations,
        memlimit=kdf.memory_kib * 1024,
    )
    sealed = nacl.secret.SecretBox(box_key).encrypt(seed_bytes(key))
    doc = {
        "format": ENCRYPTED_FORMAT,
        "version": ENCRYPTED_VERSION,
        "public_key": public_bytes(key).hex(),
        "kdf": {
            "name": "argon2id",
            "version": _ARGON2_VERSION,
            "iterations": kdf.iterations,
            "memory_kib": kdf.memory_kib,
            "lanes": 1,
            "salt": salt.hex(),
        },
        "cipher": {"name": "xsalsa20-poly1305", "nonce": sealed.nonce.hex()},
        "ciphertext": sealed.ciphertext.hex(),
    }
    return (json.dumps(doc, separators=(", ", ": ")) + "\n").encode()


def write_keyfile(
    path: Path,
    key: Ed25519PrivateKey,
    *,
    passphrase: str | bytes | None = None,
    kdf: KdfParams = DEFAULT_KDF,
) -> None:
    """Write ``key`` to a new file (mode 0600, atomic, never overwriting): plain, or encrypted
    under ``passphrase`` when one is given."""
    if passphrase is None:
        data = (KEYFILE_PREFIX + seed_bytes(key).hex() + "\n").encode()
    else:
        data = encrypt_key(key, passphrase, kdf=kdf)
    _write_private_file(path, data)


def _field(obj: dict[str, Any], name: str, typ: type, label: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise KeyFileError(f"{label}: corrupt encrypted key file (bad or missing {name!r})")
    return value


def _hex_field(obj: dict[str, Any], name: str, size: int, label: str) -> bytes:
    text = _field(obj, name, str, label)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{label}: corrupt encrypted key file ({name!r} is not hex)") from None
    if len(raw) != size:
        raise KeyFileError(f"{label}: corrupt encrypted key file ({name!r} is not {size} bytes)")
    return raw


def decrypt_key(
    data: bytes, passphrase: Passphrase, *, label: str = "key file"
) -> Ed25519PrivateKey:
    """The key in encrypted key file bytes ``data``; ``label`` (the path) starts every error."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"{label}: corrupt encrypted key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != ENCRYPTED_FORMAT:
        raise KeyFileError(f"{label}: corrupt encrypted key file (no hnet format marker)")
    version = doc.get("version")
    if version != ENCRYPTED_VERSION:
        raise KeyFileError(
            f"{label}: encrypted key file version {version!r} is not supported "
            f"(this hnet reads version {ENCRYPTED_VERSION})"
        )
    kdf = _field(doc, "kdf", dict, label)
    cipher = _field(doc, "cipher", dict, label)
    if kdf.get("name") != "argon2id" or kdf.get("version") != _ARGON2_VERSION:
        raise KeyFileError(f"{label}: unsupported key derivation {kdf.get('name')!r}")
    if kdf.get("lanes") != 1:
        raise KeyFileError(f"{label}: unsupported Argon2id lanes {kdf.get('lanes')!r} (only 1)")
    if cipher.get("name") != "xsalsa20-poly1305":
        raise KeyFileError(f"{label}: unsupported cipher {cipher.get('name')!r}")
    params = KdfParams(_field(kdf, "iterations", int, label), _field(kdf, "memory_kib", int, label))
    try:
        params.check()
    except ValueError as e:
        raise KeyFileError(f"{label}: corrupt encrypted key file ({e})") from None
    salt = _hex_field(kdf, "salt", nacl.pwhash.argon2id.SALTBYTES, label)
    nonce = _hex_field(cipher, "nonce", nacl.secret.SecretBox.NONCE_SIZE, label)
    sealed = _hex_field(doc, "ciphertext", 32 + nacl.secret.SecretBox.MACBYTES, label)
    claimed = _hex_field(doc, "public_key", 32, label)
    secret = _resolve(passphrase)
    try:
        box_key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            secret,
            salt,
            opslimit=params.iterations,
            memlimit=params.memory_kib * 1024,
        )
    except (MemoryError, nacl.exceptions.RuntimeError) as e:
        raise KeyFileError(f"{label}: cannot derive the key ({e or 'out of memory'})") from None
    try:
        seed = nacl.secret.SecretBox(box_key).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"{label}: wrong passphrase") from None
    key = from_seed(seed)
    if public_bytes(key) != claimed:
        raise KeyFileError(f"{label}: corrupt encrypted key file (public key does not match)")
    return key


def is_encrypted(data: bytes) -> bool:
    """True if ``data`` looks like our encrypted key file (a JSON object), not a plain one."""
    return data.lstrip()[:1] == b"{"


def read_keyfile(path: Path, passphrase: Passphrase | None = None) -> Ed25519PrivateKey:
    """The key in our key file, plain or encrypted. An encrypted file needs ``passphrase``
    (or a callable giving it); without one, ``ask_passphrase(path)`` (environment, then
    prompt). Every failure is a ``KeyFileError`` whose message is one line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    if is_encrypted(data):
        return decrypt_key(
            data,
            passphrase if passphrase is not None else (lambda: ask_passphrase(path)),
            label=str(path),
        )
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not text.startswith(KEYFILE_PREFIX):
        if _looks_like_reference(data):
            raise KeyFileError(
                f"{path}: a Hyperdrive .keys file; convert it with "
                f"`hnet key import-reference {path} --out KEYFILE`"
            )
        raise KeyFileError(f"{path}: not an hnet key file")
    try:
        seed = bytes.fromhex(text[len(KEYFILE_PREFIX) :])
    except ValueError:
        raise KeyFileError(f"{path}: key file is not valid hex") from None
    if len(seed) != 32:
        raise KeyFileError(f"{path}: key file must hold a 32-byte seed")
    return from_seed(seed)


# ---------------------------------------------------------------------------------------------
# Reference (Hyperdrive) .keys files: see docs/protocol.md, "Keyfiles"

REFERENCE_ARGON2_MEMORY_KIB = 19_456
REFERENCE_ARGON2_ITERATIONS = 2
REFERENCE_ARGON2_LANES = 1
REFERENCE_PBKDF2_ITERATIONS = 1_000_000
REFERENCE_NONCE_SIZE = 12
_REFERENCE_MIN_SALT = 8
_ED25519_OID = bytes.fromhex("06032b6570")


@dataclass(frozen=True)
class ReferenceKeyfile:
    """What a Hyperdrive ``.keys`` file holds, decrypted."""

    name: str
    routers: tuple[str, ...]
    key: Ed25519PrivateKey
    jwt_secret: bytes
    file_key: bytes
    encoding: str  # "json" or "bincode"


@dataclass(frozen=True)
class _ReferenceFields:
    name: str
    routers: tuple[str, ...]
    salt: bytes
    key_enc: bytes
    jwt_enc: bytes
    file_enc: bytes
    encoding: str


def _bytes_list(value: object) -> bytes | None:
    if not isinstance(value, list):
        return None
    if not all(type(b) is int and 0 <= b <= 255 for b in value):
        return None
    return bytes(value)


def _parse_reference_json(data: bytes) -> _ReferenceFields | None:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, list) or len(doc) != 6:
        return None
    name, routers = doc[0], doc[1]
    if not isinstance(name, str) or not isinstance(routers, list):
        return None
    if not all(isinstance(r, str) for r in routers):
        return None
    blobs = [_bytes_list(v) for v in doc[2:]]
    if any(b is None for b in blobs):
        return None
    salt, key_enc, jwt_enc, file_enc = (b for b in blobs if b is not None)
    return _ReferenceFields(name, tuple(routers), salt, key_enc, jwt_enc, file_enc, "json")


class _Bincode:
    """bincode 1.x defaults: u64 little-endian lengths, trailing bytes allowed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def length(self) -> int:
        if self.pos + 8 > len(self.data):
            raise ValueError("truncated")
        n = int.from_bytes(self.data[self.pos : self.pos + 8], "little")
        self.pos += 8
        return n

    def raw(self) -> bytes:
        n = self.length()
        if n > len(self.data) - self.pos:
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        return self.raw().decode("utf-8")

    def strings(self) -> tuple[str, ...]:
        n = self.length()
        if n > len(self.data) - self.pos:  # each string takes at least 8 bytes
            raise ValueError("truncated")
        return tuple(self.string() for _ in range(n))


def _parse_reference_bincode(data: bytes) -> _ReferenceFields | None:
    r = _Bincode(data)
    try:
        name = r.string()
        routers = r.strings()
        salt, key_enc, jwt_enc, file_enc = r.raw(), r.raw(), r.raw(), r.raw()
    except (ValueError, UnicodeDecodeError):
        return None
    return _ReferenceFields(name, routers, salt, key_enc, jwt_enc, file_enc, "bincode")


def _parse_reference(data: bytes) -> _ReferenceFields | None:
    return _parse_reference_json(data) or _parse_reference_bincode(data)


def _looks_like_reference(data: bytes) -> bool:
    fields = _parse_reference(data)
    return fields is not None and fields.name != "" and len(fields.key_enc) > 12


def reference_salt(name: str) -> bytes:
    """The Argon2 salt of a reference password: the node name's UTF-8 bytes if at least 8 long,
    else the name repeated ``1 + 8 // len`` times (always more than 8 bytes)."""
    raw = name.encode("utf-8")
    if not raw:
        raise ValueError("the node name is empty")
    return raw if len(raw) >= _REFERENCE_MIN_SALT else raw * (1 + _REFERENCE_MIN_SALT // len(raw))


def reference_password_hash(password: str | bytes, name: str) -> str:
    """The string a Hyperdrive node stretches into its disk key: ``"0x"`` + lowercase hex of
    Argon2id(password, reference_salt(name); 19,456 KiB, 2 passes, 1 lane, 32 bytes)."""
    try:
        kdf = Argon2id(
            salt=reference_salt(name),
            length=32,
            iterations=REFERENCE_ARGON2_ITERATIONS,
            lanes=REFERENCE_ARGON2_LANES,
            memory_cost=REFERENCE_ARGON2_MEMORY_KIB,
        )
    except UnsupportedAlgorithm:  # pragma: no cover - a cryptography built without Argon2
        raise KeyFileError("this cryptography build has no Argon2id (needs OpenSSL 3.2+)") from None
    return "0x" + kdf.derive(_utf8(password)).hex()


def _der(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, next position) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        n = first
    elif first in (0x81, 0x82):
        width = first - 0x80
        if pos + width > len(data):
            raise ValueError("truncated")
        n = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    else:
        raise ValueError("bad length")
    if pos + n > len(data):
        raise ValueError("truncated")
    return tag, data[pos : pos + n], pos + n


def ed25519_from_pkcs8(der: bytes) -> Ed25519PrivateKey:
    """An Ed25519 key from PKCS#8: v1 (RFC 8410), or v2 (RFC 5958, as ring writes it) whose
    public key, tagged ``[1]`` implicitly or in ring's old explicit form, must match the seed."""
    tag, body, end = _der(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a DER SEQUENCE")
    tag, version, pos = _der(body, 0)
    if tag != 0x02 or version not in (b"\x00", b"\x01"):
        raise ValueError("not PKCS#8 version 1 or 2")
    tag, alg, pos = _der(body, pos)
    if tag != 0x30 or alg != _ED25519_OID:
        raise ValueError("not an Ed25519 key")
    tag, wrapped, pos = _der(body, pos)
    if tag != 0x04 or len(wrapped) != 34 or wrapped[:2] != b"\x04\x20":
        raise ValueError("bad private key")
    key = from_seed(wrapped[2:])
    if pos < len(body) and body[pos] == 0xA0:  # attributes: ignored
        _, _, pos = _der(body, pos)
    public: bytes | None = None
    if pos < len(body):
        tag, content, pos = _der(body, pos)
        if tag == 0xA1:  # ring's old encoding: [1] wrapping a BIT STRING
            inner_tag, inner, inner_end = _der(content, 0)
            if inner_tag != 0x03 or inner_end != len(content):
                raise ValueError("bad public key")
            content = inner
        elif tag != 0x81:
            raise ValueError("bad public key tag")
        if len(content) != 33 or content[0] != 0:
            raise ValueError("bad public key")
        public = content[1:]
    if pos != len(body):
        raise ValueError("trailing data")
    if version == b"\x01" and public is None:
        raise ValueError("PKCS#8 v2 without a public key")
    if public is not None and public != public_bytes(key):
        raise ValueError("public key does not match the private key")
    return key


def decode_reference_keyfile(
    data: bytes, password: Passphrase, *, fake_node: bool = False, label: str = "keyfile"
) -> ReferenceKeyfile:
    """Decrypt a Hyperdrive ``.keys`` file. ``password`` is the node's login password (or a
    callable giving it, asked after the name is known). ``fake_node``: the file is from a
    simulation-mode node, whose password goes to PBKDF2 as is, without Argon2."""
    fields = _parse_reference(data)
    if fields is None:
        raise KeyFileError(f"{label}: not a Hyperdrive .keys file")
    if not fields.name:
        raise KeyFileError(f"{label}: corrupt Hyperdrive .keys file (empty node name)")
    for what, blob in (
        ("networking key", fields.key_enc),
        ("JWT secret", fields.jwt_enc),
        ("file key", fields.file_enc),
    ):
        if len(blob) < REFERENCE_NONCE_SIZE + 16:
            raise KeyFileError(f"{label}: corrupt Hyperdrive .keys file ({what} too short)")
    secret = _resolve(password)
    hashed = secret if fake_node else reference_password_hash(secret, fields.name).encode()
    disk_key = PBKDF2HMAC(hashes.SHA256(), 32, fields.salt, REFERENCE_PBKDF2_ITERATIONS).derive(
        hashed
    )
    aes = AESGCM(disk_key)

    def open_(blob: bytes) -> bytes | None:
        try:
            return aes.decrypt(blob[:REFERENCE_NONCE_SIZE], blob[REFERENCE_NONCE_SIZE:], None)
        except InvalidTag:
            return None

    pkcs8 = open_(fields.key_enc)
    if pkcs8 is None:
        raise KeyFileError(f"{label}: wrong password")
    try:
        key = ed25519_from_pkcs8(pkcs8)
    except ValueError as e:
        raise KeyFileError(
            f"{label}: corrupt Hyperdrive .keys file (networking key: {e})"
        ) from None
    jwt_secret, file_key = open_(fields.jwt_enc), open_(fields.file_enc)
    if jwt_secret is None or file_key is None:
        what = "JWT secret" if jwt_secret is None else "file key"
        raise KeyFileError(f"{label}: corrupt Hyperdrive .keys file ({what} does not decrypt)")
    return ReferenceKeyfile(fields.name, fields.routers, key, jwt_secret, file_key, fields.encoding)


def reference_identity(data: bytes) -> tuple[str, tuple[str, ...]] | None:
    """The (name, routers) a Hyperdrive ``.keys`` file shows without its password."""
    fields = _parse_reference(data)
    return None if fields is None else (fields.name, fields.routers)


def read_reference_keyfile(
    path: Path, password: Passphrase | None = None, *, fake_node: bool = False
) -> ReferenceKeyfile:
    """``decode_reference_keyfile`` of the file at ``path``; without ``password``, it is
    ``$HNET_KEY_PASSWORD`` or a prompt naming the node."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read ({e.strerror})") from None
    if password is None:
        ident = reference_identity(data)
        node = ident[0] if ident else "?"

        def password_from_env_or_prompt() -> str:
            return ask_secret(
                f"Hyperdrive password of {node} ({path}): ",
                REFERENCE_PASSWORD_ENV,
                what="password",
                label=str(path),
            )

        password = password_from_env_or_prompt
    return decode_reference_keyfile(data, password, fake_node=fake_node, label=str(path))


# ---------------------------------------------------------------------------------------------


def parse_public_key(text: str) -> bytes:
    """A 32-byte Ed25519 public key from hex (optional 0x), as HNS stores it."""
    raw = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise ValueError(f"public key {text!r} is not hex") from None
    if len(key) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(key)}")
    return key


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
