"""Writing one snapshot: cut each source into chunks, store the new ones, write the manifest last.

Incremental: an item whose name, size and stamp equal the parent snapshot's entry reuses its
chunks unread; every chunk deduplicates by its keyed id. Called by Repository.snapshot_create
(engine/repository.py), which holds the lock and the snapshot's data key. Imports nothing from Django.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from apps.backups.engine.repo_errors import RepositoryError, checked_name

if TYPE_CHECKING:
    from apps.backups.engine.repository import Progress, Repository


def _quiet(line: str) -> None:
    pass


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
        """The file at `path`; or, a directory, every file under it (`name/<relative path>`, expanded by snapshot_write)."""
        path = Path(path)
        size = sum(p.stat().st_size for p in _files_under(path)) if path.is_dir() else path.stat().st_size
        return cls(name=name, size=size, path=path)


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _expanded(items: list[SourceItem | tuple[str, Path]]) -> list[SourceItem]:
    """SourceItems, one per file: a directory item (a directory-format database dump) becomes its files."""
    found = []
    for item in items:
        item = item if isinstance(item, SourceItem) else SourceItem.of_file(*item)
        if item.path is not None and item.path.is_dir():
            found += [SourceItem.of_file(f"{item.name}/{path.relative_to(item.path).as_posix()}", path) for path in _files_under(item.path)]
        else:
            found.append(item)
    return found



def snapshot_write(repo: Repository, items: list[SourceItem | tuple[str, Path]], *, meta: dict, progress: Progress | None, now: Callable[[], datetime]) -> dict:
    """Write the chunks of `items`, then the manifest (last: until then the snapshot does not exist); the manifest.

    The caller holds the repository lock and has started the snapshot's data key; `now` is its clock.
    """
    say = progress or _quiet
    started, clock = now(), time.monotonic()
    snapshot_id = f"{started:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"  # sorts by start time
    items = _expanded(items)
    parent = _parent_entries(repo, meta.get("kind"))
    total = sum(item.size for item in items)
    entries = []
    stats = {"bytes_in": 0, "chunks": 0, "chunks_new": 0, "bytes_stored_new": 0, "files": len(items), "files_unchanged": 0, "parent": parent["id"]}
    done = 0

    def report() -> None:
        say(f"backup {snapshot_id}: {done}/{total} bytes ({100 * done // max(total, 1)}%), {stats['chunks_new']} new chunks")

    with _ChunkWriter(repo, stats, landed=report) as writer:
        for item in items:
            checked_name(item.name)
            previous = parent["entries"].get(item.name)
            if item.stamp and previous and previous.get("stamp") == item.stamp and previous["size"] == item.size:
                entries.append(previous)  # unchanged since the parent snapshot: not read again
                stats["files_unchanged"] += 1
                stats["chunks"] += len(previous["chunks"])
                done += item.size
                continue
            digest, chunk_list, size = hashlib.sha256(), [], 0
            for data in _cut(repo, item):
                digest.update(data)
                chunk_list.append(writer.put(data))
                size += len(data)
                stats["chunks"] += 1
                stats["bytes_in"] += len(data)
                done += len(data)
                report()
            entry = {"name": item.name, "size": size, "sha256": digest.hexdigest(), "chunks": chunk_list}
            if item.stamp:
                entry["stamp"] = item.stamp
            entries.append(entry)
        writer.drain()  # every chunk stored before the manifest that references it
    manifest = {
        "version": repo.config["version"],
        "id": snapshot_id,
        "data_key": repo.writing_key,
        "started_at": started.isoformat(),
        "finished_at": now().isoformat(),
        "duration_seconds": round(time.monotonic() - clock, 3),
        "files": entries,
        "stats": stats,
        **meta,
    }
    # Written last: until this rename the snapshot does not exist, whatever chunks landed.
    repo.store.write_new(repo.snapshot_name(snapshot_id), repo.seal(json.dumps(manifest).encode(), aad=b"snapshot:" + snapshot_id.encode()))
    say(
        f"backup {snapshot_id}: done, {stats['bytes_in']} bytes read, {stats['files_unchanged']} unchanged files skipped, "
        f"{stats['bytes_stored_new']} bytes added"
    )
    return manifest


class _ChunkWriter:
    """Seals and stores new chunks in worker threads, at most IN_FLIGHT at a time (memory: IN_FLIGHT
    chunks of at most 4 MiB); their outcome counts in `stats` as each completes, and `landed` is
    called then (a progress line). `drain()` waits for
    every write and raises the first failure; leaving the block cancels what has not started and
    waits for the rest, so no write outlives a failed snapshot."""

    WRITERS = 4
    IN_FLIGHT = 16

    def __init__(self, repo: Repository, stats: dict, *, landed: Callable[[], None]):
        self._repo, self._stats, self._landed = repo, stats, landed
        self._pool = ThreadPoolExecutor(max_workers=self.WRITERS, thread_name_prefix="backup-chunk-writer")
        self._pending: deque[Future] = deque()

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def put(self, data: bytes) -> str:
        """The chunk's id; a new chunk is queued for sealing and storing."""
        chunk_id = self._repo.chunk_id(data)
        if self._repo.chunk_claim(chunk_id):
            self._pending.append(self._pool.submit(self._repo.chunk_store, chunk_id, data))
            while len(self._pending) > self.IN_FLIGHT or (self._pending and self._pending[0].done()):
                self._count(self._pending.popleft())
        return chunk_id

    def drain(self) -> None:
        while self._pending:
            self._count(self._pending.popleft())

    def _count(self, future: Future) -> None:
        stored = future.result()
        if stored:
            self._stats["chunks_new"] += 1
            self._stats["bytes_stored_new"] += stored
            self._landed()  # a progress line once the chunk is in the store


def _cut(repo: Repository, item: SourceItem) -> Iterator[bytes]:
    if item.path is not None:
        if item.size:
            for cut in repo.cdc.cut_file(str(item.path)):
                yield bytes(cut.data)
        return
    data = item.read()
    if len(data) != item.size:
        raise RepositoryError(f"{item.name}: read {len(data)} bytes, listed as {item.size}")
    for cut in repo.cdc.cut_buf(data):
        yield bytes(cut.data)

def _parent_entries(repo: Repository, kind: str | None) -> dict:
    """The entries by name of the latest snapshot of the same kind (the parent an incremental backup compares with).

    Of the same kind: a database-only snapshot taken between two object backups must not make
    the second read every object again.
    """
    for snapshot_id in reversed(repo.snapshot_ids()):
        manifest = repo.snapshot_get(snapshot_id)
        if manifest.get("kind") == kind:
            return {"id": snapshot_id, "entries": {entry["name"]: entry for entry in manifest["files"]}}
    return {"id": None, "entries": {}}

