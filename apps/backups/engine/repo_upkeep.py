"""Reading a whole repository back: verify, restore, and prune (chunks, then the data keys nothing uses).

The Repository methods of the same names (engine/repository.py) call these; imports nothing from Django.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from apps.backups.engine.repo_errors import RepositoryError, checked_name, store_errors

if TYPE_CHECKING:
    from apps.backups.engine.repository import Progress, Repository


@dataclass
class VerifyReport:
    snapshots_checked: int = 0
    chunks_checked: int = 0
    problems: list[dict] = field(default_factory=list)  # {"kind", "chunk", "snapshot"?}

    @property
    def ok(self) -> bool:
        return not self.problems


def _quiet(line: str) -> None:
    pass


def verify(repo: Repository, *, snapshot_id: str | None = None, progress: Progress | None = None) -> VerifyReport:
    """Every chunk re-read (its key, its tag, its id), then every snapshot's chunks checked present and sound."""
    say = progress or _quiet
    report, bad = VerifyReport(), {}
    chunk_ids = list(repo.chunk_ids())
    snapshot_ids = repo.snapshot_ids()
    if snapshot_id is not None:
        wanted = {c for entry in repo.snapshot_get(snapshot_id)["files"] for c in entry["chunks"]}
        chunk_ids, snapshot_ids = [c for c in chunk_ids if c in wanted], [snapshot_id]
    for n, chunk_id in enumerate(chunk_ids, 1):
        try:
            repo.chunk_get(chunk_id)
        except RepositoryError as exc:
            bad[chunk_id] = "corrupt"
            report.problems.append({"kind": "corrupt_chunk", "chunk": chunk_id, "detail": str(exc)})
        report.chunks_checked += 1
        if n % 100 == 0 or n == len(chunk_ids):
            say(f"verify: {n}/{len(chunk_ids)} chunks read")
    present = set(chunk_ids)
    for one in snapshot_ids:
        try:
            manifest = repo.snapshot_get(one)
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


def restore(repo: Repository, snapshot_id: str, *, to: Path, overwrite: bool = False, only: set[str] | None = None, progress: Progress | None = None) -> dict:
    """The snapshot's files (or those named in `only`) written under `to`, each checked against its SHA-256; its manifest."""
    say = progress or _quiet
    manifest = repo.snapshot_get(snapshot_id)
    to = Path(to)
    if to.exists() and any(to.iterdir()) and not overwrite:
        raise RepositoryError(f"{to} is not empty; pass --overwrite to restore over it")
    entries = [entry for entry in manifest["files"] if only is None or entry["name"] in only]
    total = sum(entry["size"] for entry in entries)
    done = 0
    for entry in entries:
        target = to / checked_name(entry["name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for chunk_id in entry["chunks"]:
                data = repo.chunk_get(chunk_id)
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


def prune(repo: Repository, *, dry_run: bool = False, progress: Progress | None = None) -> dict:
    """Delete the chunks no snapshot references, then the data keys no remaining chunk or manifest is sealed under.

    The caller holds the repository exclusively: no backup can be sealing under a key meanwhile.
    """
    say = progress or _quiet
    with store_errors():
        referenced, manifest_keys = set(), set()
        for snapshot_id in repo.snapshot_ids():
            manifest, key_id = repo.snapshot_read(snapshot_id)
            manifest_keys.add(key_id)
            referenced.update(c for entry in manifest["files"] for c in entry["chunks"])
        sizes = repo.chunk_sizes()
        unused = sorted(chunk_id for chunk_id in sizes if chunk_id not in referenced)
        freed = sum(sizes[chunk_id] for chunk_id in unused)
        keys = _unused_keys(repo, remaining=sorted(set(sizes) - set(unused)), candidates=set(repo.keys.key_ids()) - manifest_keys, say=say)
        if not dry_run:
            for n, chunk_id in enumerate(unused, 1):
                repo.store.delete(repo.chunk_name(chunk_id))
                if n % 100 == 0:
                    say(f"prune: {n}/{len(unused)} chunks deleted")
            # After the chunks: a prune killed in between leaves keys that the next one deletes, never a chunk without its key.
            for key_id in keys:
                repo.keys.delete(key_id)
    say(f"prune: {len(unused)} unreferenced chunks, {freed} bytes, {len(keys)} unused data keys{' (dry run)' if dry_run else ' deleted'}")
    return {"chunks": len(unused), "bytes": freed, "keys": len(keys), "dry_run": dry_run}


def _unused_keys(repo: Repository, *, remaining: list[str], candidates: set[str], say: Progress) -> list[str]:
    """Of `candidates` (keys no manifest is sealed under), those no chunk in `remaining` is sealed under.

    A chunk's key is in its header, so this reads the first bytes of remaining chunks (a ranged
    GET on S3), and only until every candidate is seen in use. A chunk whose header does not
    parse (damage) might be sealed under any key: then none is deleted, and verify names the chunk.
    """
    for n, chunk_id in enumerate(remaining, 1):
        if not candidates:
            break
        try:
            candidates.discard(repo.chunk_key_id(chunk_id))
        except RepositoryError:
            say(f"prune: chunk {chunk_id} has a damaged header: keeping every data key")
            return []
        if n % 1000 == 0:
            say(f"prune: {n}/{len(remaining)} chunk headers read for unused data keys")
    return sorted(candidates)
