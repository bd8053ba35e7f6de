"""Server backups against restic on the same generated data set, in the same run (docs/PERFORMANCE.md).

The data set: a SQLite database of ledger-like rows plus photo-sized objects, half random
(ciphertext, as the real photo store holds) and half compressible. Three backups each (first,
unchanged, after replacing about `--changed-mib` of objects), then a restore into an empty
directory checked byte for byte. Sizes are the repositories' sizes on disk, the same measure for
both. Needs `restic` (apt-get install restic). Our engine runs in this process (one core);
restic uses every core it finds.

    .venv/bin/python bench/backup.py                      # 1,000 objects, 200,000 rows
    .venv/bin/python bench/backup.py --objects 200 --rows 20000 --json var/bench/backup.json
    .venv/bin/python bench/backup.py --compression lz4    # our repository with another codec (zstd, gzip, lz4, none)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.backups.engine.codecs import CODEC_NAMES, DEFAULT_CODEC  # noqa: E402
from apps.backups.engine.repository import Repository, SourceItem  # noqa: E402
from apps.backups.engine.sources import sqlite_snapshot  # noqa: E402
from signer.custody import LocalKeyFileCustody  # noqa: E402

MiB = 1024 * 1024


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def generate(root: Path, *, objects: int, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    (root / "objects").mkdir(parents=True)
    words = [b"coffee", b"rent", b"groceries", b"school", b"fuel", b"gift", b"pharmacy", b"bakery", b"train", b"books"]
    for i in range(objects):
        size = rng.randint(64 * 1024, 256 * 1024)
        if i % 2:
            body = os.urandom(size)
        else:
            body = b" ".join(rng.choice(words) + b"%d" % rng.randint(0, 999) for _ in range(size // 8))[:size]
        (root / "objects" / f"photo-{i:05d}.enc").write_bytes(body)
        if (i + 1) % 250 == 0:
            say(f"generate: {i + 1}/{objects} objects")
    live = root / "live.db"
    conn = sqlite3.connect(live)
    conn.execute("CREATE TABLE entry (id INTEGER PRIMARY KEY, book TEXT, amount INTEGER, memo TEXT, sealed BLOB)")
    batch = []
    for i in range(rows):
        batch.append((f"book-{i % 50}", rng.randint(1, 10**6), rng.choice(words).decode() * 3, os.urandom(48)))
        if len(batch) == 10_000:
            conn.executemany("INSERT INTO entry (book, amount, memo, sealed) VALUES (?, ?, ?, ?)", batch)
            conn.commit()
            batch.clear()
    if batch:
        conn.executemany("INSERT INTO entry (book, amount, memo, sealed) VALUES (?, ?, ?, ?)", batch)
        conn.commit()
    conn.close()
    (root / "data").mkdir()
    sqlite_snapshot(db_path=live, dest=root / "data" / "db.sqlite3")  # the online backup, as the server takes it
    os.replace(root / "objects", root / "data" / "objects")


def change(root: Path, *, mib: float, seed: int) -> int:
    """Replace objects with new random bytes until about `mib` MiB changed; bytes changed."""
    rng = random.Random(seed + 1)
    files = sorted((root / "data" / "objects").iterdir())
    changed = 0
    for path in rng.sample(files, len(files)):
        if changed >= mib * MiB:
            break
        size = path.stat().st_size
        path.write_bytes(os.urandom(size))
        changed += size
    return changed


def ours_items(data: Path) -> list[SourceItem]:
    items = []
    for path in sorted(data.rglob("*")):
        if path.is_file():
            stat = path.stat()
            items.append(SourceItem(name=path.relative_to(data).as_posix(), size=stat.st_size, path=path, stamp=str(stat.st_mtime_ns)))
    return items


def run_ours(work: Path, data: Path, restore_to: Path, changed_mib: float, seed: int, *, compression: str = DEFAULT_CODEC) -> dict:
    repo = Repository.init(work / "ours-repo", custody=LocalKeyFileCustody(work / "master-key.json"), compression=compression)
    out = {"compression": compression}
    for label in ("first", "unchanged", "changed"):
        if label == "changed":
            out["changed_bytes"] = change(work, mib=changed_mib, seed=seed)
        before = dir_bytes(repo.path)
        started = time.perf_counter()
        manifest = repo.snapshot_create(ours_items(data), meta={"kind": "bench"})
        out[f"{label}_seconds"] = time.perf_counter() - started
        out[f"{label}_added_bytes"] = dir_bytes(repo.path) - before
        say(f"ours: {label} backup {out[f'{label}_seconds']:.2f} s, +{out[f'{label}_added_bytes'] / MiB:.2f} MiB")
    started = time.perf_counter()
    repo.restore(manifest["id"], to=restore_to)
    out["restore_seconds"] = time.perf_counter() - started
    out["repo_bytes"] = dir_bytes(repo.path)
    return out


def restic(*args: str, repo: Path) -> None:
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo), "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
    subprocess.run(["restic", "--quiet", *args], env=env, check=True, stdout=subprocess.DEVNULL)


def run_restic(work: Path, data: Path, restore_to: Path, changed_mib: float, seed: int) -> dict:
    repo = work / "restic-repo"
    restic("init", repo=repo)
    out = {}
    for label in ("first", "unchanged", "changed"):
        if label == "changed":
            out["changed_bytes"] = change(work, mib=changed_mib, seed=seed)
        before = dir_bytes(repo)
        started = time.perf_counter()
        restic("backup", str(data), repo=repo)
        out[f"{label}_seconds"] = time.perf_counter() - started
        out[f"{label}_added_bytes"] = dir_bytes(repo) - before
        say(f"restic: {label} backup {out[f'{label}_seconds']:.2f} s, +{out[f'{label}_added_bytes'] / MiB:.2f} MiB")
    started = time.perf_counter()
    restic("restore", "latest", "--target", str(restore_to), repo=repo)
    out["restore_seconds"] = time.perf_counter() - started
    out["repo_bytes"] = dir_bytes(repo)
    return out


def same_tree(a: Path, b: Path) -> bool:
    files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
    return files_a.keys() == files_b.keys() and all(files_a[k].read_bytes() == files_b[k].read_bytes() for k in files_a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changed-mib", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compression", choices=CODEC_NAMES, default=DEFAULT_CODEC, help="our repository's codec (restic keeps its default)")
    args = parser.parse_args()
    results = {}
    for tool, run in (("ours", partial(run_ours, compression=args.compression)), ("restic", run_restic)):
        with tempfile.TemporaryDirectory(prefix=f"bench-backup-{tool}-") as tmp:
            work = Path(tmp)
            generate(work, objects=args.objects, rows=args.rows, seed=args.seed)  # the same data set for both
            data = work / "data"
            input_bytes = dir_bytes(data)
            say(f"{tool}: data set {input_bytes / MiB:.1f} MiB")
            result = run(work, data, work / "restored", args.changed_mib, args.seed)
            restored = work / "restored" if tool == "ours" else work / "restored" / data.relative_to("/")
            result["restore_equal"] = same_tree(data, restored)
            result["input_bytes"] = input_bytes
            result["backup_mib_s"] = input_bytes / MiB / result["first_seconds"]
            result["restore_mib_s"] = input_bytes / MiB / result["restore_seconds"]
            result["stored_ratio"] = input_bytes / (result["first_added_bytes"] or 1)  # compression (+ dedup within the set)
            results[tool] = result
    ours, theirs = results["ours"], results["restic"]
    results["ratios_ours_over_restic"] = {
        "backup_throughput": ours["backup_mib_s"] / theirs["backup_mib_s"],
        "restore_throughput": ours["restore_mib_s"] / theirs["restore_mib_s"],
        "stored_ratio": ours["stored_ratio"] / theirs["stored_ratio"],
        "changed_added_bytes": ours["changed_added_bytes"] / max(theirs["changed_added_bytes"], 1),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
