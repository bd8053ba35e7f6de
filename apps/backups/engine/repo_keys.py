"""The keys of a backup repository: the repository keys in keys.json and one data key per snapshot.

Format: docs/backup-format.md, "Keys" and "Blobs". Imports nothing from Django.

- keys.json holds the repository's **id key** (HMAC-SHA256 chunk ids: the same for every snapshot,
  so dedup works across them) and its version-1/2 **data key**, which only reads blobs written
  before version 3.
- Each snapshot seals its new chunks and its manifest under a **data key of its own**, made when
  the snapshot starts and stored as `keys/<key id>.key`, wrapped by the master key custody
  (signer/custody.py) with the repository id and the key id as context: a key file copied onto
  another repository, or renamed to another key id, does not open. One key per snapshot bounds
  what one leaked data key opens to the chunks of one backup run, and a forgotten snapshot's
  key can be destroyed once prune has removed its last chunk.
- A version-3 blob names its key id in its header, so a reader finds the key of any blob (a
  chunk shared by many snapshots keeps the key of the one that first stored it). Unwrapped keys
  are cached for the life of the Repository object: one custody call per key, not per chunk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.backups.engine.repo_errors import Missing, store_errors
from apps.backups.engine.stores import RepositoryStore, StoreMissing
from signer.custody import Custody, CustodyError

KEY_CONTEXT_PREFIX = b"homepocket/backups/repository/v1/"
DATA_KEY_CONTEXT_PREFIX = b"homepocket/backups/data-key/v1/"
BLOB_MAGIC = b"HPB1"  # versions 1 and 2: sealed under keys.json's data key
KEYED_BLOB_MAGIC = b"HPB3"  # version 3: the key id follows, then the nonce
KEY_ID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = len(KEYED_BLOB_MAGIC) + KEY_ID_BYTES  # what a reader needs to know which key a blob wants


class SealError(Exception):
    """A blob that does not open: not a blob, its key is missing or does not unwrap, or its tag fails."""


def key_file_name(key_id: str) -> str:
    return f"keys/{key_id}.key"


def blob_key_id(head: bytes) -> str | None:
    """The data key id a blob (or its first HEADER_BYTES) is sealed under; None for keys.json's key (v1/v2)."""
    if head[:4] == BLOB_MAGIC:
        return None
    if head[:4] == KEYED_BLOB_MAGIC and len(head) >= HEADER_BYTES:
        return head[4:HEADER_BYTES].hex()
    raise SealError("not a repository blob")


def master_key_ids(store: RepositoryStore) -> set[str]:
    """Every master key some key of the repository is wrapped under (what a rotation must not retire yet)."""
    with store_errors():
        found = {json.loads(store.read("keys.json"))["master_key_id"]}
        for name, _ in store.listing("keys/"):
            try:
                found.add(json.loads(store.read(name))["master_key_id"])
            except StoreMissing:
                continue  # pruned meanwhile
    return found


class RepositoryKeys:
    """The unwrapped id key and the data keys of one repository, unwrapping snapshot keys as blobs ask for them."""

    def __init__(self, store: RepositoryStore, repository_id: str, keys: bytes, master_key_id: str, custody: Custody):
        self.store = store
        self.repository_id = repository_id
        self.master_key_id = master_key_id
        self._id_key = keys[32:]
        self._legacy = AESGCM(keys[:32])
        self._custody = custody
        self._data_keys: dict[str, AESGCM] = {}

    @classmethod
    def create(cls, store: RepositoryStore, repository_id: str, *, custody: Custody) -> RepositoryKeys:
        """New repository keys (data key ‖ id key), written to keys.json."""
        keys = secrets.token_bytes(64)
        blob, master_key_id = custody.wrap(keys, context=KEY_CONTEXT_PREFIX + bytes.fromhex(repository_id))
        made = cls(store, repository_id, keys, master_key_id, custody)
        made._keyfile_write(blob, master_key_id)
        return made

    @classmethod
    def load(cls, store: RepositoryStore, repository_id: str, *, custody: Custody) -> RepositoryKeys:
        with store_errors():
            keyfile = json.loads(store.read("keys.json"))
        keys = custody.unwrap(bytes.fromhex(keyfile["wrapped_keys"]), context=KEY_CONTEXT_PREFIX + bytes.fromhex(repository_id))
        return cls(store, repository_id, keys, keyfile["master_key_id"], custody)

    def _keyfile_write(self, blob: bytes, master_key_id: str) -> None:
        with store_errors():
            self.store.replace("keys.json", json.dumps({"master_key_id": master_key_id, "wrapped_keys": blob.hex()}).encode())
        self.master_key_id = master_key_id

    def _data_key_context(self, key_id: str) -> bytes:
        return DATA_KEY_CONTEXT_PREFIX + bytes.fromhex(self.repository_id) + bytes.fromhex(key_id)

    def chunk_id(self, data: bytes) -> str:
        return hmac.new(self._id_key, data, hashlib.sha256).hexdigest()

    # -- data keys ------------------------------------------------------------------------------

    def data_key_create(self) -> str:
        """A new data key, wrapped and stored as keys/<key id>.key before any blob is sealed under it; its id."""
        key_id = secrets.token_hex(KEY_ID_BYTES)
        key = AESGCM.generate_key(bit_length=256)
        blob, master_key_id = self._custody.wrap(key, context=self._data_key_context(key_id))
        with store_errors():
            self.store.write_new(key_file_name(key_id), json.dumps({"master_key_id": master_key_id, "wrapped_key": blob.hex()}).encode())
        self._data_keys[key_id] = AESGCM(key)
        return key_id

    def _data_key(self, key_id: str | None) -> AESGCM:
        if key_id is None:
            return self._legacy
        cached = self._data_keys.get(key_id)
        if cached is None:
            try:
                with store_errors():
                    keyfile = json.loads(self.store.read(key_file_name(key_id)))
            except Missing:
                raise SealError(f"data key {key_id} missing") from None
            try:
                key = self._custody.unwrap(bytes.fromhex(keyfile["wrapped_key"]), context=self._data_key_context(key_id))
            except CustodyError as exc:
                raise SealError(f"data key {key_id} does not unwrap ({exc})") from None
            cached = self._data_keys[key_id] = AESGCM(key)
        return cached

    def key_ids(self) -> list[str]:
        """The ids of every snapshot data key stored."""
        with store_errors():
            names = [name for name, _ in self.store.listing("keys/")]
        return sorted(name[len("keys/") : -len(".key")] for name in names if name.endswith(".key"))

    def delete(self, key_id: str) -> None:
        """Destroy a data key (prune, once no chunk or manifest is sealed under it)."""
        with store_errors():
            self.store.delete(key_file_name(key_id))
        self._data_keys.pop(key_id, None)

    # -- sealing --------------------------------------------------------------------------------

    def seal(self, body: bytes, *, aad: bytes, key_id: str) -> bytes:
        """A version-3 blob: magic ‖ key id ‖ nonce ‖ AES-256-GCM(data key, nonce, body, aad)."""
        nonce = os.urandom(NONCE_BYTES)
        return KEYED_BLOB_MAGIC + bytes.fromhex(key_id) + nonce + self._data_key(key_id).encrypt(nonce, body, aad)

    def open(self, blob: bytes, *, aad: bytes) -> bytes:
        """The body of a blob of any version, under the key its header names."""
        key_id = blob_key_id(blob)
        start = len(BLOB_MAGIC) if key_id is None else HEADER_BYTES
        nonce = blob[start : start + NONCE_BYTES]
        try:
            return self._data_key(key_id).decrypt(nonce, blob[start + NONCE_BYTES :], aad)
        except InvalidTag:
            raise SealError("authentication failed (damaged or tampered)") from None

    # -- master-key rotation --------------------------------------------------------------------

    def rewrap(self, *, custody: Custody) -> str:
        """Re-wrap keys.json and every key file not yet under the custodian's current master key; its id.

        The plaintext keys stay the same, so no chunk changes. A key file already re-wrapped (a
        rotation retried after a failure half-way) is left as it is; one that does not unwrap is
        skipped, the others are re-wrapped, and a CustodyError names how many were left.
        """
        current, failed = custody.current_key_id(), 0
        with store_errors():
            keyfile = json.loads(self.store.read("keys.json"))
            if keyfile["master_key_id"] != current:
                blob, master_key_id = custody.rewrap(bytes.fromhex(keyfile["wrapped_keys"]), context=KEY_CONTEXT_PREFIX + bytes.fromhex(self.repository_id))
                self._keyfile_write(blob, master_key_id)
            for key_id in self.key_ids():
                name = key_file_name(key_id)
                try:
                    keyfile = json.loads(self.store.read(name))
                except StoreMissing:
                    continue  # pruned meanwhile
                if keyfile["master_key_id"] == current:
                    continue
                try:
                    blob, master_key_id = custody.rewrap(bytes.fromhex(keyfile["wrapped_key"]), context=self._data_key_context(key_id))
                except CustodyError:
                    failed += 1
                    continue
                self.store.replace(name, json.dumps({"master_key_id": master_key_id, "wrapped_key": blob.hex()}).encode())
        if failed:
            raise CustodyError(f"{failed} snapshot data keys of {self.store.location} did not re-wrap")
        return current
