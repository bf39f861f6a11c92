"""Reference (Hyperdrive) ``.keys`` files; their format is described in docs/protocol.md,
"Keyfiles"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from hnet.keys.ed25519 import from_seed, public_bytes
from hnet.keys.errors import KeyFileError
from hnet.keys.prompt import Passphrase, _resolve, _utf8, ask_secret

REFERENCE_PASSWORD_ENV = "HNET_KEY_PASSWORD"
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
