"""The node's long-term Ed25519 networking key: generation, key files, signing helpers.

- :mod:`hnet.keys.ed25519`: keys, seeds, public key bytes and hex, signature checks;
- :mod:`hnet.keys.keyfile`: our key files, plain and encrypted (the format is documented there);
- :mod:`hnet.keys.reference`: reading a reference (Hyperdrive) ``.keys`` file;
- :mod:`hnet.keys.prompt`: passphrases from the environment or a terminal.

Everything is re-exported here: ``from hnet import keys; keys.read_keyfile(path)``.
"""

from __future__ import annotations

from hnet.keys.ed25519 import (
    from_seed,
    generate,
    parse_public_key,
    public_bytes,
    seed_bytes,
    verify,
)
from hnet.keys.errors import (
    KeyFileError,
)
from hnet.keys.keyfile import (
    DEFAULT_KDF,
    ENCRYPTED_FORMAT,
    ENCRYPTED_VERSION,
    KEYFILE_PREFIX,
    MAX_KDF_ITERATIONS,
    MAX_KDF_MEMORY_KIB,
    KdfParams,
    decrypt_key,
    encrypt_key,
    is_encrypted,
    read_keyfile,
    write_keyfile,
)
from hnet.keys.prompt import (
    PASSPHRASE_ENV,
    Passphrase,
    ask_passphrase,
    ask_secret,
)
from hnet.keys.reference import (
    REFERENCE_ARGON2_ITERATIONS,
    REFERENCE_ARGON2_LANES,
    REFERENCE_ARGON2_MEMORY_KIB,
    REFERENCE_NONCE_SIZE,
    REFERENCE_PASSWORD_ENV,
    REFERENCE_PBKDF2_ITERATIONS,
    ReferenceKeyfile,
    decode_reference_keyfile,
    ed25519_from_pkcs8,
    read_reference_keyfile,
    reference_identity,
    reference_password_hash,
    reference_salt,
)

__all__ = [
    "DEFAULT_KDF",
    "ENCRYPTED_FORMAT",
    "ENCRYPTED_VERSION",
    "KEYFILE_PREFIX",
    "MAX_KDF_ITERATIONS",
    "MAX_KDF_MEMORY_KIB",
    "PASSPHRASE_ENV",
    "REFERENCE_ARGON2_ITERATIONS",
    "REFERENCE_ARGON2_LANES",
    "REFERENCE_ARGON2_MEMORY_KIB",
    "REFERENCE_NONCE_SIZE",
    "REFERENCE_PASSWORD_ENV",
    "REFERENCE_PBKDF2_ITERATIONS",
    "KdfParams",
    "KeyFileError",
    "Passphrase",
    "ReferenceKeyfile",
    "ask_passphrase",
    "ask_secret",
    "decode_reference_keyfile",
    "decrypt_key",
    "ed25519_from_pkcs8",
    "encrypt_key",
    "from_seed",
    "generate",
    "is_encrypted",
    "parse_public_key",
    "public_bytes",
    "read_keyfile",
    "read_reference_keyfile",
    "reference_identity",
    "reference_password_hash",
    "reference_salt",
    "seed_bytes",
    "verify",
    "write_keyfile",
]
