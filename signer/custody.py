"""Master-key custody: wrap and unwrap data keys (DEKs) under the master key.

Two custodians with one interface:
- LocalKeyFileCustody: a keyring file (default `var/signer/master-key.json`, mode 0600) of
  AES-256-GCM master keys, one of them current. Rotation adds a version, re-wraps, then retires
  the old versions.
- KmsCustody: AWS KMS through boto3 (Encrypt / Decrypt / ReEncrypt), the key never leaves KMS.

Every wrap binds a caller-given context (the signing key id, say) as AES-GCM associated data or
KMS encryption context, so a wrapped DEK cannot be swapped onto another record. This module
imports nothing from Django: the signer, the rotation command, and later share delivery and
server backups all call `custody_from_environ()`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import struct
import threading
from pathlib import Path
from typing import Mapping, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LOCAL_BLOB_VERSION = 1
NONCE_BYTES = 12


class CustodyError(Exception):
    """A blob that does not open (wrong context, unknown or retired master key, damage)."""


class CustodyUnavailable(Exception):
    """The custodian cannot be reached (KMS down): retry later."""


class Custody(Protocol):
    def current_key_id(self) -> str: ...

    def wrap(self, plaintext: bytes, *, context: bytes) -> tuple[bytes, str]:
        """(blob, id of the master key that wrapped it)."""

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes: ...

    def rewrap(self, blob: bytes, *, context: bytes) -> tuple[bytes, str]:
        """The same plaintext wrapped under the current master key."""

    def rotate(self) -> str:
        """Make a new master key current (local) or take the configured one (KMS); returns its id."""

    def retire(self, *, keep: set[str]) -> list[str]:
        """Forget master keys not in `keep` (after every blob was re-wrapped); returns the retired ids."""


def var_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOMEPOCKET_VAR_DIR") or Path(__file__).resolve().parent.parent / "var").resolve()


def custody_from_environ(environ: Mapping[str, str] | None = None) -> Custody:
    """The custodian the environment configures: KMS when SIGNING_KMS_KEY_ID is set, else the key file."""
    environ = os.environ if environ is None else environ
    if environ.get("SIGNING_KMS_KEY_ID"):
        return KmsCustody(
            key_id=environ["SIGNING_KMS_KEY_ID"],
            endpoint_url=environ.get("SIGNING_KMS_ENDPOINT_URL") or None,
            region=environ.get("SIGNING_KMS_REGION", "us-east-1"),
        )
    path = environ.get("SIGNING_MASTER_KEY_FILE") or var_dir(environ) / "signer" / "master-key.json"
    return LocalKeyFileCustody(Path(path))


class LocalKeyFileCustody:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._current, self._keys = self._load(create=True)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_ino, st.st_mtime_ns

    def _reload_if_changed(self) -> None:
        # The rotation command rewrites the file (a new inode); new wraps must use its current key.
        if self._file_stamp() != self._stamp:
            with self._lock:
                self._current, self._keys = self._load(create=False)
                self._stamp = self._file_stamp()

    # -- keyring file --------------------------------------------------------------------------

    def _load(self, *, create: bool) -> tuple[str, dict[str, bytes]]:
        if not self.path.exists():
            if not create:
                raise CustodyError("master key file missing")
            key_id = _new_key_id()
            self._write(key_id, {key_id: AESGCM.generate_key(bit_length=256)}, exclusive=True)
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise CustodyError(f"{self.path} is readable by others (mode {mode:o}); chmod 600 it")
        data = json.loads(self.path.read_text())
        keys = {k: base64.b64decode(v) for k, v in data["keys"].items()}
        if data["current"] not in keys or any(len(v) != 32 for v in keys.values()):
            raise CustodyError("malformed master key file")
        return data["current"], keys

    def _write(self, current: str, keys: dict[str, bytes], *, exclusive: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps({"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}})
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            # First start: of several signers starting together, one creates the key, the others read it.
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            os.unlink(tmp)
            return
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one

    def _key(self, key_id: str) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            # Another process (the rotation command) may have added it since this one loaded.
            self._reload_if_changed()
            key = self._keys.get(key_id)
        if key is None:
            raise CustodyError("unknown or retired master key")
        return key

    # -- Custody -------------------------------------------------------------------------------

    def current_key_id(self) -> str:
        self._reload_if_changed()
        return self._current

    def wrap(self, plaintext: bytes, *, context: bytes) -> tuple[bytes, str]:
        self._reload_if_changed()
        key_id = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[key_id]).encrypt(nonce, plaintext, context)
        ident = key_id.encode()
        return struct.pack(">BB", LOCAL_BLOB_VERSION, len(ident)) + ident + nonce + sealed, key_id

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes:
        key_id, nonce, sealed = _parse_local_blob(blob)
        try:
            return AESGCM(self._key(key_id)).decrypt(nonce, sealed, context)
        except InvalidTag:
            raise CustodyError("wrapped data key does not open") from None

    def rewrap(self, blob: bytes, *, context: bytes) -> tuple[bytes, str]:
        # The data key is in this process's memory for the moment of the re-wrap: this process
        # holds the master key file, which opens every data key anyway.
        return self.wrap(self.unwrap(blob, context=context), context=context)

    def rotate(self) -> str:
        with self._lock:
            self._current, self._keys = self._load(create=False)
            key_id = _new_key_id()
            keys = {**self._keys, key_id: AESGCM.generate_key(bit_length=256)}
            self._write(key_id, keys)
            self._current, self._keys, self._stamp = key_id, keys, self._file_stamp()
        return key_id

    def retire(self, *, keep: set[str]) -> list[str]:
        with self._lock:
            self._current, self._keys = self._load(create=False)
            keep = keep | {self._current}
            retired = sorted(set(self._keys) - keep)
            keys = {k: v for k, v in self._keys.items() if k in keep}
            self._write(self._current, keys)
            self._keys, self._stamp = keys, self._file_stamp()
        return retired


def _new_key_id() -> str:
    return f"mk-{secrets.token_hex(6)}"


def key_id_of_local_blob(blob: bytes) -> str:
    return _parse_local_blob(blob)[0]


def _parse_local_blob(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 2 or blob[0] != LOCAL_BLOB_VERSION:
        raise CustodyError("not a local-custody blob")
    size = blob[1]
    end = 2 + size
    if len(blob) < end + NONCE_BYTES + 16:
        raise CustodyError("truncated blob")
    return blob[2:end].decode(), blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :]


class KmsCustody:
    """AWS KMS: the master key stays in KMS; ReEncrypt rotates without the DEK leaving it."""

    def __init__(self, *, key_id: str, endpoint_url: str | None = None, region: str = "us-east-1"):
        import boto3  # only a KMS deployment needs it loaded
        from botocore.config import Config

        self.key_id = key_id
        self._client = boto3.client(
            "kms", endpoint_url=endpoint_url, region_name=region,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}),
        )  # fmt: skip

    def _call(self, name: str, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, name)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException", "NotFoundException", "DisabledException"):
                raise CustodyError(f"KMS refused: {code}") from None
            raise CustodyUnavailable(f"KMS error: {code}") from None
        except BotoCoreError as exc:
            raise CustodyUnavailable(f"KMS unreachable: {type(exc).__name__}") from None

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"homepocket": context.hex()}

    def current_key_id(self) -> str:
        return self.key_id

    def wrap(self, plaintext: bytes, *, context: bytes) -> tuple[bytes, str]:
        out = self._call("encrypt", KeyId=self.key_id, Plaintext=plaintext, EncryptionContext=self._context(context))
        return out["CiphertextBlob"], self.key_id

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes:
        return self._call("decrypt", CiphertextBlob=blob, EncryptionContext=self._context(context))["Plaintext"]

    def rewrap(self, blob: bytes, *, context: bytes) -> tuple[bytes, str]:
        out = self._call(
            "re_encrypt", CiphertextBlob=blob, SourceEncryptionContext=self._context(context),
            DestinationKeyId=self.key_id, DestinationEncryptionContext=self._context(context),
        )  # fmt: skip
        return out["CiphertextBlob"], self.key_id

    def rotate(self) -> str:
        return self.key_id  # KMS rotation: configure the new key id, then re-wrap onto it

    def retire(self, *, keep: set[str]) -> list[str]:
        return []  # old KMS keys are disabled in KMS by the operator, not by us
