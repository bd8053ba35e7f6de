"""A content-addressed, deduplicated, encrypted backup repository, in a local directory or on S3.

Imports nothing from Django: in the disaster case (the database is gone) `manage.py backup restore`
opens a repository with only its store and the master key custodian. Format: docs/backup-format.md;
where the files live (a directory, an S3 bucket/prefix) and how each store keeps appending from
rewriting: engine/stores.py.

- Files are cut into content-defined chunks (FastCDC 2020, pyfastcdc), so an insert shifts no
  later chunk boundaries and unchanged data deduplicates across snapshots.
- A chunk's id is HMAC-SHA256 under the repository's id key, not a plain hash: whoever reads the
  store cannot confirm a guess of its contents by hashing it.
- Each chunk is compressed with the repository's codec (config.json "compression": zstd by default,
  gzip, lz4 or none; engine/codecs.py), then sealed with AES-256-GCM under the repository's data
  key, the chunk id as associated data (a chunk cannot be swapped for another); the data and id
  keys are wrapped by the master key custody (signer/custody.py), bound to the repository id.
  Each sealed body names its own codec, so a reader never needs the config's.
- Appending never rewrites a chunk (one that exists is skipped, and the store refuses to overwrite
  a name); a snapshot's manifest is written last, so a run killed mid-way leaves only unreferenced
  chunks and no listed snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyfastcdc import FastCDC

from apps.backups.engine.codecs import DEFAULT_CODEC, Codec, CodecError, body_pack, body_unpack, codec_named
from apps.backups.engine.stores import RepositoryStore, StoreBusy, StoreError, StoreMissing, store_open
from signer.custody import Custody

FORMAT_NAME = "homepocket-backup"
# Version 2 is version 1 plus the gzip and lz4 codecs (bytes 2, 3), which a version-1 reader would
# take for plaintext: a repository is marked 2 once it may hold them, 1 while it cannot, so that a
# version-1 build refuses the one cleanly and still reads the other (docs/backup-format.md, "Changes").
FORMAT_VERSIONS = (1, 2)
VERSION_1_CODECS = ("none", "zstd")
KEY_CONTEXT_PREFIX = b"homepocket/backups/repository/v1/"
BLOB_MAGIC = b"HPB1"
NONCE_BYTES = 12
CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = 256 * 1024, 1024 * 1024, 4 * 1024 * 1024

Progress = Callable[[str], None]
Location = Path | str | RepositoryStore


class RepositoryError(Exception):
    """A repository that cannot be used as asked (missing, already there, unknown snapshot, damage)."""


class RepositoryBusy(RepositoryError):
    """A backup or prune holds the repository lock in a conflicting mode."""


class RepositoryUnavailable(RepositoryError):
    """The repository's store did not answer (S3 down): retry later."""


@dataclass
class VerifyReport:
    snapshots_checked: int = 0
    chunks_checked: int = 0
    problems: list[dict] = field(default_factory=list)  # {"kind", "chunk", "snapshot"?}

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SourceItem:
    """One file of a snapshot: read from `path`, or from `read()` (an object in the photo store).

    `stamp` is anything that changes whenever the content does (an object's modification time):
    an item whose name, size and stamp equal an entry of the parent snapshot reuses that entry's
    chunks without being read, which makes the object backup incremental. Empty: always read.
    """

    name: str
    size: int
    path: Path | None = None
    read: Callable[[], bytes] | None = None
    stamp: str = ""

    @classmethod
    def of_file(cls, name: str, path: Path) -> SourceItem:
        return cls(name=name, size=Path(path).stat().st_size, path=Path(path))


def format_version_for(compression: str, *, current: int = 1) -> int:
    """The config version a repository needs once it writes with `compression`: never lower than it was."""
    return max(current, 1 if compression in VERSION_1_CODECS else 2)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Repository:
    """One repository (a directory or an S3 prefix) opened with its keys; `init` makes one, `open` reads one."""

    def __init__(self, store: RepositoryStore, config: dict, data_key: bytes, id_key: bytes, master_key_id: str):
        self.store = store
        self.config = config
        self._aead = AESGCM(data_key)
        self._id_key = id_key
        self.master_key_id = master_key_id
        self._known_chunks: set[str] | None = None  # filled while a backup runs: one listing, not one HEAD a chunk
        chunker = config["chunker"]
        self._cdc = FastCDC(min_size=chunker["min_size"], avg_size=chunker["avg_size"], max_size=chunker["max_size"])

    @property
    def path(self) -> Path | None:
        """The directory of a local repository (None for S3)."""
        return getattr(self.store, "path", None)

    @property
    def location(self) -> str:
        return self.store.location

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def init(cls, location: Location, *, custody: Custody, s3_options: dict | None = None, compression: str = DEFAULT_CODEC) -> Repository:
        """A new, empty repository at `location` (which must not hold one yet), writing with `compression`."""
        _known_codec(compression)
        store = store_open(location, s3_options=s3_options)
        with _store_errors():
            if store.exists("config.json"):
                raise RepositoryError(f"{store.location} already holds a repository")
            store.prepare()
            repository_id = secrets.token_hex(16)
            config = {
                "format": FORMAT_NAME,
                "version": format_version_for(compression),
                "repository_id": repository_id,
                "created_at": _now().isoformat(),
                "chunker": {"algorithm": "fastcdc2020", "min_size": CHUNK_MIN, "avg_size": CHUNK_AVG, "max_size": CHUNK_MAX},
                "chunk_id": "hmac-sha256",
                "cipher": "aes-256-gcm",
                "compression": compression,
            }
            keys = secrets.token_bytes(64)  # data key ‖ id key
            blob, master_key_id = custody.wrap(keys, context=KEY_CONTEXT_PREFIX + bytes.fromhex(repository_id))
            repo = cls(store, config, keys[:32], keys[32:], master_key_id)
            repo._write_keys(blob, master_key_id)
            # config.json last: a repository whose init died half-way has no config and is made again.
            store.write_new("config.json", json.dumps(config, indent=2).encode())
        return repo

    @classmethod
    def open(cls, location: Location, *, custody: Custody, s3_options: dict | None = None) -> Repository:
        store = store_open(location, s3_options=s3_options)
        with _store_errors():
            try:
                config = json.loads(store.read("config.json"))
                keyfile = json.loads(store.read("keys.json"))
            except StoreMissing:
                raise RepositoryError(f"no repository at {store.location}") from None
        if config.get("format") != FORMAT_NAME or config.get("version") not in FORMAT_VERSIONS:
            raise RepositoryError(f"unsupported repository format {config.get('format')} v{config.get('version')}")
        keys = custody.unwrap(bytes.fromhex(keyfile["wrapped_keys"]), context=cls._key_context(config))
        return cls(store, config, keys[:32], keys[32:], keyfile["master_key_id"])

    @classmethod
    def exists_at(cls, location: Location, *, s3_options: dict | None = None) -> bool:
        with _store_errors():
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
        """The id of the master key the repository at `location` is wrapped under (no key needed)."""
        with _store_errors():
            return json.loads(store_open(location, s3_options=s3_options).read("keys.json"))["master_key_id"]

    @staticmethod
    def _key_context(config: dict) -> bytes:
        return KEY_CONTEXT_PREFIX + bytes.fromhex(config["repository_id"])

    def _write_keys(self, blob: bytes, master_key_id: str) -> None:
        payload = json.dumps({"master_key_id": master_key_id, "wrapped_keys": blob.hex()}).encode()
        self.store.replace("keys.json", payload)  # the only file ever replaced: keys re-wrapped, same plaintext
        self.master_key_id = master_key_id

    def keys_rewrap(self, *, custody: Custody) -> str:
        """Re-wrap the repository keys under the custodian's current master key; returns its id."""
        with _store_errors():
            keyfile = json.loads(self.store.read("keys.json"))
            blob, master_key_id = custody.rewrap(bytes.fromhex(keyfile["wrapped_keys"]), context=self._key_context(self.config))
            self._write_keys(blob, master_key_id)
        return master_key_id

    # -- compression ----------------------------------------------------------------------------

    @property
    def compression(self) -> str:
        return self.config.get("compression", DEFAULT_CODEC)

    def _codec(self) -> Codec:
        # A config written by a later version may name a codec this one lacks: readable, not writable here.
        return _known_codec(self.compression, refusing=f"cannot write to {self.location}: ")

    def compression_set(self, compression: str) -> str:
        """Write new chunks and manifests with `compression` from now on; returns the previous codec.

        Chunks already stored keep theirs (each body names its codec, and chunks are never
        rewritten). config.json is replaced whole, like keys.json: the only other file ever replaced.
        A backup running meanwhile finishes with the codec it started with.
        """
        _known_codec(compression)
        with _store_errors():
            # The stored config, not this object's: another process may have moved it to version 2 meanwhile.
            stored = json.loads(self.store.read("config.json"))
            previous = stored.get("compression", DEFAULT_CODEC)
            config = {**stored, "compression": compression, "version": format_version_for(compression, current=stored["version"])}
            self.store.replace("config.json", json.dumps(config, indent=2).encode())
        self.config = config
        return previous

    # -- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool):
        """Backups share the repository; prune needs it alone (it deletes chunks a backup may be reusing)."""
        with _store_errors(), self.store.lock(exclusive=exclusive):
            yield

    # -- sealing --------------------------------------------------------------------------------

    def _seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        body = body_pack(plaintext, self._codec())
        nonce = os.urandom(NONCE_BYTES)
        return BLOB_MAGIC + nonce + self._aead.encrypt(nonce, body, aad)

    def _open_sealed(self, blob: bytes, *, aad: bytes) -> bytes:
        if blob[:4] != BLOB_MAGIC:
            raise RepositoryError("not a repository blob")
        nonce = blob[4 : 4 + NONCE_BYTES]
        try:
            inner = self._aead.decrypt(nonce, blob[4 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise RepositoryError("authentication failed (damaged or tampered)") from None
        try:
            return body_unpack(inner)  # by the body's own codec byte, whatever the config now says
        except CodecError as exc:
            # The tag held: a holder of the key wrote this body, most likely a later version with a new codec.
            raise RepositoryError(f"{_sealed_label(aad)}: {exc}") from None

    # -- chunks ---------------------------------------------------------------------------------

    def chunk_id(self, data: bytes) -> str:
        return hmac.new(self._id_key, data, hashlib.sha256).hexdigest()

    @staticmethod
    def _chunk_name(chunk_id: str) -> str:
        return f"data/{chunk_id[:2]}/{chunk_id}"

    def chunk_put(self, data: bytes) -> tuple[str, int]:
        """(chunk id, bytes newly stored: 0 when the repository already had it)."""
        chunk_id = self.chunk_id(data)
        if chunk_id in self._known_chunks if self._known_chunks is not None else self.store.exists(self._chunk_name(chunk_id)):
            return chunk_id, 0
        blob = self._seal(data, aad=b"chunk:" + bytes.fromhex(chunk_id))
        stored = len(blob) if self.store.write_new(self._chunk_name(chunk_id), blob) else 0
        if self._known_chunks is not None:
            self._known_chunks.add(chunk_id)
        return chunk_id, stored

    def chunk_get(self, chunk_id: str) -> bytes:
        try:
            with _store_errors():
                blob = self.store.read(self._chunk_name(chunk_id))
        except _Missing:
            raise RepositoryError(f"chunk {chunk_id} missing") from None
        data = self._open_sealed(blob, aad=b"chunk:" + bytes.fromhex(chunk_id))
        if not hmac.compare_digest(self.chunk_id(data), chunk_id):
            raise RepositoryError(f"chunk {chunk_id} does not match its id")
        return data

    def chunk_sizes(self) -> dict[str, int]:
        """{chunk id: stored size} of every chunk in the store."""
        with _store_errors():
            return {name.rsplit("/", 1)[-1]: size for name, size in self.store.listing("data/")}

    def chunk_ids(self) -> list[str]:
        return sorted(self.chunk_sizes())

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot_create(self, items: list[SourceItem | tuple[str, Path]], *, meta: dict, progress: Progress | None = None) -> dict:
        """Back up `items` (SourceItem, or (name in the snapshot, path on disk)) as one snapshot; its manifest."""
        with self._lock(exclusive=False), _store_errors():
            self._known_chunks = set(self.chunk_ids())
            try:
                return self._snapshot_create(items, meta=meta, progress=progress)
            finally:
                self._known_chunks = None

    def _snapshot_create(self, items: list[SourceItem | tuple[str, Path]], *, meta: dict, progress: Progress | None) -> dict:
        say = progress or (lambda line: None)
        started, clock = _now(), time.monotonic()
        snapshot_id = f"{started:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"  # sorts by start time
        items = [item if isinstance(item, SourceItem) else SourceItem.of_file(*item) for item in items]
        parent = self._parent_entries(meta.get("kind"))
        total = sum(item.size for item in items)
        entries = []
        stats = {"bytes_in": 0, "chunks": 0, "chunks_new": 0, "bytes_stored_new": 0, "files": len(items), "files_unchanged": 0, "parent": parent["id"]}
        done = 0
        for item in items:
            _check_name(item.name)
            previous = parent["entries"].get(item.name)
            if item.stamp and previous and previous.get("stamp") == item.stamp and previous["size"] == item.size:
                entries.append(previous)  # unchanged since the parent snapshot: not read again
                stats["files_unchanged"] += 1
                stats["chunks"] += len(previous["chunks"])
                done += item.size
                continue
            digest, chunk_list, size = hashlib.sha256(), [], 0
            for data in self._cut(item):
                digest.update(data)
                chunk_id, stored = self.chunk_put(data)
                chunk_list.append(chunk_id)
                size += len(data)
                stats["chunks"] += 1
                stats["bytes_in"] += len(data)
                if stored:
                    stats["chunks_new"] += 1
                    stats["bytes_stored_new"] += stored
                done += len(data)
                say(f"backup {snapshot_id}: {done}/{total} bytes ({100 * done // max(total, 1)}%), {stats['chunks_new']} new chunks")
            entry = {"name": item.name, "size": size, "sha256": digest.hexdigest(), "chunks": chunk_list}
            if item.stamp:
                entry["stamp"] = item.stamp
            entries.append(entry)
        manifest = {
            "version": self.config["version"],
            "id": snapshot_id,
            "started_at": started.isoformat(),
            "finished_at": _now().isoformat(),
            "duration_seconds": round(time.monotonic() - clock, 3),
            "files": entries,
            "stats": stats,
            **meta,
        }
        # Written last: until this rename the snapshot does not exist, whatever chunks landed.
        self.store.write_new(self._snapshot_name(snapshot_id), self._seal(json.dumps(manifest).encode(), aad=b"snapshot:" + snapshot_id.encode()))
        say(
            f"backup {snapshot_id}: done, {stats['bytes_in']} bytes read, {stats['files_unchanged']} unchanged files skipped, "
            f"{stats['bytes_stored_new']} bytes added"
        )
        return manifest

    def _cut(self, item: SourceItem) -> Iterator[bytes]:
        if item.path is not None:
            if item.size:
                for cut in self._cdc.cut_file(str(item.path)):
                    yield bytes(cut.data)
            return
        data = item.read()
        if len(data) != item.size:
            raise RepositoryError(f"{item.name}: read {len(data)} bytes, listed as {item.size}")
        for cut in self._cdc.cut_buf(data):
            yield bytes(cut.data)

    def _parent_entries(self, kind: str | None) -> dict:
        """The entries by name of the latest snapshot of the same kind (the parent an incremental backup compares with).

        Of the same kind: a database-only snapshot taken between two object backups must not make
        the second read every object again.
        """
        for snapshot_id in reversed(self.snapshot_ids()):
            manifest = self.snapshot_get(snapshot_id)
            if manifest.get("kind") == kind:
                return {"id": snapshot_id, "entries": {entry["name"]: entry for entry in manifest["files"]}}
        return {"id": None, "entries": {}}

    @staticmethod
    def _snapshot_name(snapshot_id: str) -> str:
        return f"snapshots/{snapshot_id}.snap"

    def snapshot_ids(self) -> list[str]:
        with _store_errors():
            names = [name for name, _ in self.store.listing("snapshots/")]
        return sorted(name[len("snapshots/") : -len(".snap")] for name in names if name.endswith(".snap"))

    def snapshot_get(self, snapshot_id: str) -> dict:
        if "/" in snapshot_id:
            raise RepositoryError(f"no snapshot {snapshot_id}")
        try:
            with _store_errors():
                blob = self.store.read(self._snapshot_name(snapshot_id))
        except _Missing:
            raise RepositoryError(f"no snapshot {snapshot_id}") from None
        return json.loads(self._open_sealed(blob, aad=b"snapshot:" + snapshot_id.encode()))

    def snapshots(self) -> list[dict]:
        return [self.snapshot_get(snapshot_id) for snapshot_id in self.snapshot_ids()]

    # -- holds, forget, prune ---------------------------------------------------------------------

    @staticmethod
    def _hold_name(snapshot_id: str) -> str:
        return f"holds/{snapshot_id}.hold"

    def hold_set(self, snapshot_id: str, *, reason: str) -> None:
        """A legal hold: `forget` refuses the snapshot until the hold is released."""
        self.snapshot_get(snapshot_id)
        with _store_errors():
            self.store.write_new(self._hold_name(snapshot_id), json.dumps({"reason": reason, "created_at": _now().isoformat()}).encode())

    def hold_release(self, snapshot_id: str) -> None:
        with _store_errors():
            self.store.delete(self._hold_name(snapshot_id))

    def holds(self) -> set[str]:
        with _store_errors():
            names = [name for name, _ in self.store.listing("holds/")]
        return {name[len("holds/") : -len(".hold")] for name in names if name.endswith(".hold")}

    def forget(self, snapshot_ids: list[str], *, dry_run: bool = False) -> list[str]:
        """Remove snapshots (not their chunks: `prune` does that); refuses all if any is held."""
        for snapshot_id in snapshot_ids:
            self.snapshot_get(snapshot_id)
        held = sorted(set(snapshot_ids) & self.holds())
        if held:
            raise RepositoryError(f"legal hold on {', '.join(held)}: release it before forgetting")
        if not dry_run:
            with _store_errors():
                for snapshot_id in snapshot_ids:
                    self.store.delete(self._snapshot_name(snapshot_id))
        return sorted(snapshot_ids)

    def prune(self, *, dry_run: bool = False, progress: Progress | None = None) -> dict:
        """Delete the chunks no snapshot references; refused while a backup runs."""
        say = progress or (lambda line: None)
        with self._lock(exclusive=True), _store_errors():
            referenced = {c for manifest in self.snapshots() for entry in manifest["files"] for c in entry["chunks"]}
            sizes = self.chunk_sizes()
            unused = sorted(chunk_id for chunk_id in sizes if chunk_id not in referenced)
            freed = sum(sizes[chunk_id] for chunk_id in unused)
            if not dry_run:
                for n, chunk_id in enumerate(unused, 1):
                    self.store.delete(self._chunk_name(chunk_id))
                    if n % 100 == 0:
                        say(f"prune: {n}/{len(unused)} chunks deleted")
        say(f"prune: {len(unused)} unreferenced chunks, {freed} bytes{' (dry run)' if dry_run else ' deleted'}")
        return {"chunks": len(unused), "bytes": freed, "dry_run": dry_run}

    # -- verify and restore -----------------------------------------------------------------------

    def verify(self, *, snapshot_id: str | None = None, progress: Progress | None = None) -> VerifyReport:
        """Re-read every chunk (its MAC and its id) and check every snapshot's chunks are there and sound.

        With `snapshot_id`: only that snapshot, and only the chunks it references.
        """
        say = progress or (lambda line: None)
        report, bad = VerifyReport(), {}
        chunk_ids = list(self.chunk_ids())
        snapshot_ids = self.snapshot_ids()
        if snapshot_id is not None:
            wanted = {c for entry in self.snapshot_get(snapshot_id)["files"] for c in entry["chunks"]}
            chunk_ids, snapshot_ids = [c for c in chunk_ids if c in wanted], [snapshot_id]
        for n, chunk_id in enumerate(chunk_ids, 1):
            try:
                self.chunk_get(chunk_id)
            except RepositoryError as exc:
                bad[chunk_id] = "corrupt"
                report.problems.append({"kind": "corrupt_chunk", "chunk": chunk_id, "detail": str(exc)})
            report.chunks_checked += 1
            if n % 100 == 0 or n == len(chunk_ids):
                say(f"verify: {n}/{len(chunk_ids)} chunks read")
        present = set(chunk_ids)
        for one in snapshot_ids:
            try:
                manifest = self.snapshot_get(one)
            except RepositoryError as exc:
                report.problems.append({"kind": "corrupt_snapshot", "snapshot": one, "detail": str(exc)})
                continue
            report.snapshots_checked += 1
            for entry in manifest["files"]:
                for chunk_id in entry["chunks"]:
                    if chunk_id not in present:
                        report.problems.append({"kind": "missing_chunk", "chunk": chunk_id, "snapshot": one, "file": entry["name"]})
                    elif chunk_id in bad:
                        report.problems.append({"kind": "damaged_chunk", "chunk": chunk_id, "snapshot": one, "file": entry["name"]})
        say(f"verify: {report.snapshots_checked} snapshots, {report.chunks_checked} chunks, {len(report.problems)} problems")
        return report

    def restore(self, snapshot_id: str, *, to: Path, overwrite: bool = False, only: set[str] | None = None, progress: Progress | None = None) -> dict:
        """Write the snapshot's files (or those named in `only`) under `to`, each checked against its SHA-256."""
        say = progress or (lambda line: None)
        manifest = self.snapshot_get(snapshot_id)
        to = Path(to)
        if to.exists() and any(to.iterdir()) and not overwrite:
            raise RepositoryError(f"{to} is not empty; pass --overwrite to restore over it")
        entries = [entry for entry in manifest["files"] if only is None or entry["name"] in only]
        total = sum(entry["size"] for entry in entries)
        done = 0
        for entry in entries:
            target = to / _check_name(entry["name"])
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            digest = hashlib.sha256()
            with open(partial, "wb") as out:
                for chunk_id in entry["chunks"]:
                    data = self.chunk_get(chunk_id)
                    digest.update(data)
                    out.write(data)
                    done += len(data)
                    say(f"restore {snapshot_id}: {done}/{total} bytes ({100 * done // max(total, 1)}%)")
            if digest.hexdigest() != entry["sha256"]:
                partial.unlink()
                raise RepositoryError(f"{entry['name']} does not match its recorded checksum")
            os.replace(partial, target)
        say(f"restore {snapshot_id}: done, {len(entries)} files into {to}")
        return manifest


@contextlib.contextmanager
def _store_errors():
    """A store that is busy or unreachable is a RepositoryError the commands and tasks already report."""
    try:
        yield
    except StoreMissing:
        raise _Missing() from None
    except StoreError as exc:
        raise (RepositoryBusy if isinstance(exc, StoreBusy) else RepositoryUnavailable)(str(exc)) from None


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


class _Missing(Exception):
    """A file the caller turns into its own message (a missing chunk, an unknown snapshot)."""


def _check_name(name: str) -> PurePosixPath:
    """A file name inside a snapshot: relative, no `..` (a manifest must not write outside the target)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RepositoryError(f"unsafe file name in snapshot: {name!r}")
    return path
