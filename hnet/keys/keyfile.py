"""Our key files: plain and encrypted (Argon2id + XSalsa20-Poly1305).

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
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id
import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)

from hnet.keys.ed25519 import from_seed, public_bytes, seed_bytes
from hnet.keys.errors import KeyFileError
from hnet.keys.prompt import Passphrase, _resolve, _utf8, ask_passphrase
from hnet.keys.reference import _looks_like_reference

KEYFILE_PREFIX = "hnet-ed25519-seed:"
ENCRYPTED_FORMAT = "hnet-encrypted-key"
ENCRYPTED_VERSION = 1

MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB
MAX_KDF_ITERATIONS = 1_000
_ARGON2_VERSION = 0x13


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
