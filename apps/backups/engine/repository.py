"""A content-addressed, deduplicated, encrypted backup repository, in a local directory or on S3.

Imports nothing from Django: in the disaster case (the database is gone) `manage.py backup restore`
opens a repository with only its store and the master key custodian. Format: docs/backup-format.md;
where the files live (a directory, an S3 bucket/prefix) and how each store keeps appending from
rewriting: engine/stores.py; the keys: engine/repo_keys.py; verify, restore and prune:
engine/repo_upkeep.py.

- Files are cut into content-defined chunks (FastCDC 2020, pyfastcdc), so an insert shifts no
  later chunk boundaries and unchanged data deduplicates across snapshots.
- A chunk's id is HMAC-SHA256 under the repository's id key, not a plain hash: whoever reads the
  store cannot confirm a guess of its contents by hashing it.
- Each chunk is compressed with the repository's codec (config.json "compression": zstd by default,
  gzip, lz4 or none; engine/codecs.py), then sealed with AES-256-GCM under the data key of the
  snapshot that first stored it, the chunk id as associated data (a chunk cannot be swapped for
  another). Every snapshot gets a fresh data key, wrapped by the master key custody
  (signer/custody.py), and every blob names the key it is sealed under. Each sealed body names
  its own codec, so a reader never needs the config's.
- Appending never rewrites a chunk (one that exists is skipped, and the store refuses to overwrite
  a name); a snapshot's manifest is written last, so a run killed mid-way leaves only unreferenced
  chunks (and its key) and no listed snapshot.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pyfastcdc import FastCDC

from apps.backups.engine import repo_backup, repo_upkeep
from apps.backups.engine.codecs import DEFAULT_CODEC, Codec, CodecError, body_pack, body_unpack, codec_named
from apps.backups.engine.repo_errors import Missing, RepositoryBusy, RepositoryError, RepositoryUnavailable, store_errors
from apps.backups.engine.repo_keys import HEADER_BYTES, KEY_CONTEXT_PREFIX, RepositoryKeys, SealError, blob_key_id, master_key_ids
from apps.backups.engine.repo_backup import SourceItem
from apps.backups.engine.repo_upkeep import VerifyReport
from apps.backups.engine.stores import RepositoryStore, store_open
from signer.custody import Custody

__all__ = [
    "KEY_CONTEXT_PREFIX", "FORMAT_VERSIONS", "Progress", "Repository", "RepositoryBusy", "RepositoryError",
    "RepositoryUnavailable", "SourceItem", "VerifyReport", "format_version_for",
]  # fmt: skip

FORMAT_NAME = "homepocket-backup"
# Each version is the previous one plus what an older reader would misread, so a repository is
# marked with the lowest version that describes what it may hold (docs/backup-format.md, "Changes"):
# 2 once it may hold gzip or lz4 bodies (bytes 2, 3, which a version-1 reader takes for plaintext);
# 3 once it holds a blob sealed under a snapshot's own data key (which no version-2 reader can open).
FORMAT_VERSIONS = (1, 2, 3)
VERSION_1_CODECS = ("none", "zstd")
KEYED_VERSION = 3
CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = 256 * 1024, 1024 * 1024, 4 * 1024 * 1024

Progress = Callable[[str], None]
Location = Path | str | RepositoryStore


def format_version_for(compression: str, *, current: int = 1, keyed: bool = False) -> int:
    """The config version a repository needs once it writes with `compression` (and, `keyed`, under
    snapshot data keys): never lower than it was."""
    return max(current, 1 if compression in VERSION_1_CODECS else 2, KEYED_VERSION if keyed else 1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Repository:
    """One repository (a directory or an S3 prefix) opened with its keys; `init` makes one, `open` reads one."""

    def __init__(self, store: RepositoryStore, config: dict, keys: RepositoryKeys):
        self.store = store
        self.config = config
        self.keys = keys
        self._known_chunks: set[str] | None = None  # filled while a backup runs: one listing, not one HEAD a chunk
        self.writing_key: str | None = None  # the data key of the snapshot being written
        chunker = config["chunker"]
        self.cdc = FastCDC(min_size=chunker["min_size"], avg_size=chunker["avg_size"], max_size=chunker["max_size"])

    @property
    def path(self) -> Path | None:
        """The directory of a local repository (None for S3)."""
        return getattr(self.store, "path", None)

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def master_key_id(self) -> str:
        """The master key keys.json is wrapped under (snapshot key files: master_key_ids_of)."""
        return self.keys.master_key_id

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def init(cls, location: Location, *, custody: Custody, s3_options: dict | None = None, compression: str = DEFAULT_CODEC) -> Repository:
        """A new, empty repository at `location` (which must not hold one yet), writing with `compression`."""
        _known_codec(compression)
        store = store_open(location, s3_options=s3_options)
        with store_errors():
            if store.exists("config.json"):
                raise RepositoryError(f"{store.location} already holds a repository")
            store.prepare()
            repository_id = secrets.token_hex(16)
            config = {
                "format": FORMAT_NAME,
                # Version 3 comes with the first snapshot key (the first backup): until then a version-1/2 build reads it.
                "version": format_version_for(compression),
                "repository_id": repository_id,
                "created_at": _now().isoformat(),
                "chunker": {"algorithm": "fastcdc2020", "min_size": CHUNK_MIN, "avg_size": CHUNK_AVG, "max_size": CHUNK_MAX},
                "chunk_id": "hmac-sha256",
                "cipher": "aes-256-gcm",
                "compression": compression,
            }
            repo = cls(store, config, RepositoryKeys.create(store, repository_id, custody=custody))
            # config.json last: a repository whose init died half-way has no config and is made again.
            store.write_new("config.json", json.dumps(config, indent=2).encode())
        return repo

    @classmethod
    def open(cls, location: Location, *, custody: Custody, s3_options: dict | None = None) -> Repository:
        store = store_open(location, s3_options=s3_options)
        try:
            with store_errors():
                config = json.loads(store.read("config.json"))
            if config.get("format") != FORMAT_NAME or config.get("version") not in FORMAT_VERSIONS:
                raise RepositoryError(f"unsupported repository format {config.get('format')} v{config.get('version')}")
            return cls(store, config, RepositoryKeys.load(store, config["repository_id"], custody=custody))
        except Missing:
            raise RepositoryError(f"no repository at {store.location}") from None

    @classmethod
    def exists_at(cls, location: Location, *, s3_options: dict | None = None) -> bool:
        with store_errors():
            return store_open(location, s3_options=s3_options).exists("config.json")

    @classmethod
    def open_or_init(cls, location: Location, *, custody: Custody, s3_options: dict | None = None, compression: str = DEFAULT_CODEC) -> Repository:
        """The repository at `location`, made with `compression` if there is none (an existing one keeps its own)."""
        store = store_open(location, s3_options=s3_options)
        if cls.exists_at(store):
            return cls.open(store, custody=custody)
        return cls.init(store, custody=custody, compression=compression)

    @staticmethod
    def master_key_id_of(location: Location, *, s3_options: dict | None = None) -> str:
        """The id of the master key keys.json at `location` is wrapped under (no key needed)."""
        with store_errors():
            return json.loads(store_open(location, s3_options=s3_options).read("keys.json"))["master_key_id"]

    @staticmethod
    def master_key_ids_of(location: Location, *, s3_options: dict | None = None) -> set[str]:
        """Every master key some key of the repository at `location` (keys.json, each snapshot key) is wrapped under."""
        store = store_open(location, s3_options=s3_options)
        try:
            return master_key_ids(store)
        except Missing:
            raise RepositoryError(f"no repository at {store.location}") from None

    def keys_rewrap(self, *, custody: Custody) -> str:
        """Re-wrap keys.json and every snapshot key under the custodian's current master key; returns its id."""
        return self.keys.rewrap(custody=custody)

    # -- config: compression and version -------------------------------------------------------

    @property
    def compression(self) -> str:
        return self.config.get("compression", DEFAULT_CODEC)

    def _codec(self) -> Codec:
        # A config written by a later version may name a codec this one lacks: readable, not writable here.
        return _known_codec(self.compression, refusing=f"cannot write to {self.location}: ")

    def _config_change(self, change: Callable[[dict], dict]) -> dict:
        """Replace config.json with `change(stored)` (unless that is what is stored); the stored one before.

        The stored config, not this object's: another process may have moved the version up meanwhile.
        """
        with store_errors():
            stored = json.loads(self.store.read("config.json"))
            config = change(stored)
            if config != stored:
                self.store.replace("config.json", json.dumps(config, indent=2).encode())
        self.config = config
        return stored

    def compression_set(self, compression: str) -> str:
        """Write new chunks and manifests with `compression` from now on; returns the previous codec.

        Chunks already stored keep theirs (each body names its codec, and chunks are never
        rewritten). config.json is replaced whole, like a key file on a re-wrap.
        A backup running meanwhile finishes with the codec it started with.
        """
        _known_codec(compression)
        stored = self._config_change(lambda c: {**c, "compression": compression, "version": format_version_for(compression, current=c["version"])})
        return stored.get("compression", DEFAULT_CODEC)

    def _data_key_start(self) -> str:
        """A fresh data key for what is written next; the repository is marked version 3 before it is used."""
        self._config_change(lambda c: {**c, "version": format_version_for(c.get("compression", DEFAULT_CODEC), current=c["version"], keyed=True)})
        self.writing_key = self.keys.data_key_create()
        return self.writing_key

    # -- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool):
        """Backups share the repository; prune needs it alone (it deletes chunks and keys a backup may be reusing)."""
        with store_errors(), self.store.lock(exclusive=exclusive):
            yield

    # -- sealing --------------------------------------------------------------------------------

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        body = body_pack(plaintext, self._codec())
        return self.keys.seal(body, aad=aad, key_id=self.writing_key or self._data_key_start())

    def _open_sealed(self, blob: bytes, *, aad: bytes) -> bytes:
        try:
            inner = self.keys.open(blob, aad=aad)
        except SealError as exc:
            raise RepositoryError(str(exc)) from None
        try:
            return body_unpack(inner)  # by the body's own codec byte, whatever the config now says
        except CodecError as exc:
            # The tag held: a holder of the key wrote this body, most likely a later version with a new codec.
            raise RepositoryError(f"{_sealed_label(aad)}: {exc}") from None

    # -- chunks ---------------------------------------------------------------------------------

    def chunk_id(self, data: bytes) -> str:
        return self.keys.chunk_id(data)

    @staticmethod
    def chunk_name(chunk_id: str) -> str:
        return f"data/{chunk_id[:2]}/{chunk_id}"

    def chunk_claim(self, chunk_id: str) -> bool:
        """Whether the snapshot being written must store the chunk: False when the repository (or
        this run) has it already. A claimed chunk counts as present at once, so the same chunk met
        again is not stored twice while its first write is still in flight."""
        if chunk_id in self._known_chunks:
            return False
        self._known_chunks.add(chunk_id)
        return True

    def chunk_store(self, chunk_id: str, data: bytes) -> int:
        """Seal and store a claimed chunk; the bytes stored (0 if another writer stored it meanwhile).

        Thread-safe: the backup's writer threads call it (compression, AES-GCM, the write and its
        fsync, an S3 PUT, all release the GIL)."""
        blob = self.seal(data, aad=b"chunk:" + bytes.fromhex(chunk_id))
        with store_errors():
            return len(blob) if self.store.write_new(self.chunk_name(chunk_id), blob) else 0

    def chunk_get(self, chunk_id: str) -> bytes:
        try:
            with store_errors():
                blob = self.store.read(self.chunk_name(chunk_id))
        except Missing:
            raise RepositoryError(f"chunk {chunk_id} missing") from None
        data = self._open_sealed(blob, aad=b"chunk:" + bytes.fromhex(chunk_id))
        if not hmac.compare_digest(self.chunk_id(data), chunk_id):
            raise RepositoryError(f"chunk {chunk_id} does not match its id")
        return data

    def chunk_key_id(self, chunk_id: str) -> str | None:
        """The data key id the chunk is sealed under, from its header alone (None: keys.json's, version 1/2)."""
        with store_errors():
            head = self.store.read_head(self.chunk_name(chunk_id), HEADER_BYTES)
        try:
            return blob_key_id(head)
        except SealError as exc:
            raise RepositoryError(f"chunk {chunk_id}: {exc}") from None

    def chunk_sizes(self) -> dict[str, int]:
        """{chunk id: stored size} of every chunk in the store."""
        with store_errors():
            return {name.rsplit("/", 1)[-1]: size for name, size in self.store.listing("data/")}

    def chunk_ids(self) -> list[str]:
        return sorted(self.chunk_sizes())

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot_create(self, items: list[SourceItem | tuple[str, Path]], *, meta: dict, progress: Progress | None = None) -> dict:
        """Back up `items` (SourceItem, or (name in the snapshot, path on disk)) as one snapshot, under a data key of its own; its manifest."""
        self._codec()  # refuse before any key or chunk is written
        with self._lock(exclusive=False), store_errors():
            self._known_chunks = set(self.chunk_ids())
            try:
                self._data_key_start()
                return repo_backup.snapshot_write(self, items, meta=meta, progress=progress, now=_now)
            finally:
                self._known_chunks = self.writing_key = None

    @staticmethod
    def snapshot_name(snapshot_id: str) -> str:
        return f"snapshots/{snapshot_id}.snap"

    def snapshot_ids(self) -> list[str]:
        with store_errors():
            names = [name for name, _ in self.store.listing("snapshots/")]
        return sorted(name[len("snapshots/") : -len(".snap")] for name in names if name.endswith(".snap"))

    def snapshot_get(self, snapshot_id: str) -> dict:
        return self.snapshot_read(snapshot_id)[0]

    def snapshot_read(self, snapshot_id: str) -> tuple[dict, str | None]:
        """(manifest, id of the data key its blob is sealed under: None for keys.json's)."""
        if "/" in snapshot_id:
            raise RepositoryError(f"no snapshot {snapshot_id}")
        try:
            with store_errors():
                blob = self.store.read(self.snapshot_name(snapshot_id))
        except Missing:
            raise RepositoryError(f"no snapshot {snapshot_id}") from None
        manifest = json.loads(self._open_sealed(blob, aad=b"snapshot:" + snapshot_id.encode()))
        return manifest, blob_key_id(blob)

    def snapshots(self) -> list[dict]:
        return [self.snapshot_get(snapshot_id) for snapshot_id in self.snapshot_ids()]

    # -- holds and forget -----------------------------------------------------------------------

    @staticmethod
    def _hold_name(snapshot_id: str) -> str:
        return f"holds/{snapshot_id}.hold"

    def hold_set(self, snapshot_id: str, *, reason: str) -> None:
        """A legal hold: `forget` refuses the snapshot until the hold is released."""
        self.snapshot_get(snapshot_id)
        with store_errors():
            self.store.write_new(self._hold_name(snapshot_id), json.dumps({"reason": reason, "created_at": _now().isoformat()}).encode())

    def hold_release(self, snapshot_id: str) -> None:
        with store_errors():
            self.store.delete(self._hold_name(snapshot_id))

    def holds(self) -> set[str]:
        with store_errors():
            names = [name for name, _ in self.store.listing("holds/")]
        return {name[len("holds/") : -len(".hold")] for name in names if name.endswith(".hold")}

    def forget(self, snapshot_ids: list[str], *, dry_run: bool = False) -> list[str]:
        """Remove snapshots (not their chunks and keys: `prune` does that); refuses all if any is held."""
        for snapshot_id in snapshot_ids:
            self.snapshot_get(snapshot_id)
        held = sorted(set(snapshot_ids) & self.holds())
        if held:
            raise RepositoryError(f"legal hold on {', '.join(held)}: release it before forgetting")
        if not dry_run:
            with store_errors():
                for snapshot_id in snapshot_ids:
                    self.store.delete(self.snapshot_name(snapshot_id))
        return sorted(snapshot_ids)

    # -- upkeep (engine/repo_upkeep.py) ---------------------------------------------------------

    def prune(self, *, dry_run: bool = False, progress: Progress | None = None) -> dict:
        """Delete the chunks no snapshot references, then the data keys nothing left is sealed under; refused while a backup runs."""
        with self._lock(exclusive=True):
            return repo_upkeep.prune(self, dry_run=dry_run, progress=progress)

    def verify(self, *, snapshot_id: str | None = None, progress: Progress | None = None) -> VerifyReport:
        """Re-read every chunk (its MAC and its id) and check every snapshot's chunks are there and sound.

        With `snapshot_id`: only that snapshot, and only the chunks it references.
        """
        return repo_upkeep.verify(self, snapshot_id=snapshot_id, progress=progress)

    def restore(self, snapshot_id: str, *, to: Path, overwrite: bool = False, only: set[str] | None = None, progress: Progress | None = None) -> dict:
        """Write the snapshot's files (or those named in `only`) under `to`, each checked against its SHA-256."""
        return repo_upkeep.restore(self, snapshot_id, to=to, overwrite=overwrite, only=only, progress=progress)


def _known_codec(name: str, *, refusing: str = "") -> Codec:
    """The codec called `name`, or a RepositoryError listing the known ones."""
    try:
        return codec_named(name)
    except CodecError as exc:
        raise RepositoryError(refusing + str(exc)) from None


def _sealed_label(aad: bytes) -> str:
    """`chunk <id>` or `snapshot <id>`, from a sealed blob's associated data."""
    kind, _, name = aad.partition(b":")
    return f"{kind.decode()} {name.hex() if kind == b'chunk' else name.decode()}"
