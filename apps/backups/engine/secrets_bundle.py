"""The configuration-and-secrets bundle: what a restore needs that is in neither the repo nor a backup.

It holds the deployment's secrets (SECRET_KEY, AUDIT_HASH_KEY, OBJECT_URL_SECRET: their effective
values, from the environment or var/), the environment variables that configure the server, and
the master key: the local key file's contents, or for KMS only the key id (the key never leaves
KMS). Because it carries the master key it cannot be sealed under it: it is sealed with
AES-256-GCM under a key derived from an operator passphrase with scrypt (RFC 7914), kept offline
and apart from the bundle (docs/backups.md, "Recovering the secrets").

Format: b"HPS1" ‖ 16-byte salt ‖ 12-byte nonce ‖ AES-256-GCM(key, nonce, JSON, aad=b"HPS1" ‖ salt),
key = scrypt(passphrase, salt, n=2^15, r=8, p=1, 32 bytes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"HPS1"
SALT_BYTES, NONCE_BYTES = 16, 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSPHRASE_CHARS = 12


class BundleError(Exception):
    """A bundle that does not open (wrong passphrase, damage) or a passphrase too weak to seal one."""


def _key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())


def bundle_seal(contents: dict, *, passphrase: str) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BundleError(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    sealed = AESGCM(_key(passphrase, salt)).encrypt(nonce, json.dumps(contents).encode(), MAGIC + salt)
    return MAGIC + salt + nonce + sealed


def bundle_open(blob: bytes, *, passphrase: str) -> dict:
    if blob[:4] != MAGIC:
        raise BundleError("not a secrets bundle")
    salt, nonce = blob[4 : 4 + SALT_BYTES], blob[4 + SALT_BYTES : 4 + SALT_BYTES + NONCE_BYTES]
    try:
        plain = AESGCM(_key(passphrase, salt)).decrypt(nonce, blob[4 + SALT_BYTES + NONCE_BYTES :], MAGIC + salt)
    except InvalidTag:
        raise BundleError("wrong passphrase or damaged bundle") from None
    return json.loads(plain)


def bundle_write_out(contents: dict, *, to: Path, overwrite: bool = False) -> list[Path]:
    """Lay a bundle out as a var directory (usable as HOMEPOCKET_VAR_DIR) plus an `environment` file."""
    to = Path(to)
    if to.exists() and any(to.iterdir()) and not overwrite:
        raise BundleError(f"{to} is not empty; pass --overwrite to write over it")
    files = {name: value + "\n" for name, value in contents["secrets"].items()}
    files["environment"] = "".join(f"{k}={v}\n" for k, v in sorted(contents["environment"].items()))
    for name, text in contents.get("environment_files", {}).items():
        files[f"environment-files/{name}"] = text  # what NAME_FILE pointed at; point NAME_FILE here
    if contents["master_key"].get("file"):
        files["signer/master-key.json"] = contents["master_key"]["file"]
    written = []
    for name, text in files.items():
        path = to / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        written.append(path)
    return written
