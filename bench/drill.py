"""Disaster-recovery drills: the RPO and RTO that recovery achieves (docs/PERFORMANCE.md).

`--mode pitr` (the default): PostgreSQL point-in-time recovery, below. `--mode logical`: the
embedded deployment (SQLite, local photo store) with `--books` books and `--photos` photo objects
is backed up (`backup run --type full`), lost (its var database and objects deleted), and made
again as docs/backups.md "Disaster recovery" says: `manage.py migrate`, then `manage.py backup
recover full` (real processes, timed): the RTO; rows and every object's bytes are compared. A
logical backup's RPO is its schedule's interval (an hourly schedule loses up to an hour), not
something a drill measures.

A throwaway PostgreSQL cluster (initdb, WAL archiving into a spool, as docs/backups.md sets it up)
is loaded with `--rows` ledger-like rows, backed up (`backup run --type physical`), then written to
all the time (one committed row every `--write-every` seconds, each stamped with the server's
clock) while the WAL is pushed into the repository every `--push-every` seconds (the `wal`
schedule). At a random moment of the `--duration` the host is lost: the server is killed
(SIGKILL-like immediate stop) and its data directory and the spool are deleted. Then recovery runs
exactly as an operator would (`backup pitr --target-time latest`, chown, start, wait for the
promotion) and the drill reads what came back:

- **RPO achieved**: the newest acknowledged commit before the loss minus the newest row recovered
  (the window of committed writes lost); the bound is archive_timeout + push interval + upload.
- **RTO achieved**: from the start of recovery to the recovered server answering, promoted,
  with every recovered row readable (`SELECT count(*)`).

Uses the server's own code paths (services.backup_create, pitr_restore) against its own repository
in a scratch directory, with a master key file of its own. PostgreSQL's server programs
(pg_config --bindir) are needed, and root or a user that can run them.

    .venv/bin/python bench/drill.py                           # 500,000 rows, 120 s of writes
    .venv/bin/python bench/drill.py --rows 50000 --duration 40 --archive-timeout 10 --push-every 10
    .venv/bin/python bench/drill.py --mode logical                # 50 books, 1,000 photos
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def django_setup(scratch: Path, *, source_url: str, spool: Path) -> None:
    """The server's settings, pointed at the drill's own var dir, repository, key, source cluster and spool."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "homepocket.settings",
            "HOMEPOCKET_VAR_DIR": str(scratch / "var"),
            "BACKUP_REPOSITORY_DIR": str(scratch / "repository"),
            "SIGNING_MASTER_KEY_FILE": str(scratch / "master-key.json"),
            "BACKUP_PHYSICAL_DATABASE_URL": source_url,
            "BACKUP_WAL_SPOOL_DIR": str(spool),
            "LOG_LEVEL": "ERROR",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)  # the drill's own SQLite var dir: where the restore's audit event goes


class Writer(threading.Thread):
    """Commits one stamped row every `every` seconds; remembers the newest acknowledged commit time."""

    def __init__(self, cluster, every: float):
        super().__init__(daemon=True)
        self.cluster, self.every = cluster, every
        self.last_ack = None
        self.count = 0
        self.stop_at = threading.Event()

    def run(self) -> None:
        import psycopg

        try:
            with self.cluster.connect() as conn:
                while not self.stop_at.is_set():
                    (at,) = conn.execute("INSERT INTO tick (at) VALUES (clock_timestamp()) RETURNING at").fetchone()
                    self.last_ack, self.count = at, self.count + 1  # autocommit: acknowledged = committed
                    time.sleep(self.every)
        except psycopg.Error:
            pass  # the host was lost


def load(cluster, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    words = ["coffee", "rent", "groceries", "school", "fuel", "gift", "pharmacy", "bakery", "train", "books"]
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE entry (id bigserial PRIMARY KEY, book int, amount bigint, memo text, sealed bytea)")
        conn.execute("CREATE TABLE tick (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
        done = 0
        while done < rows:
            batch = min(10_000, rows - done)
            with conn.cursor() as cursor:
                with cursor.copy("COPY entry (book, amount, memo, sealed) FROM STDIN") as copy:
                    for _ in range(batch):
                        copy.write_row((rng.randint(0, 49), rng.randint(1, 10**6), rng.choice(words) * 3, os.urandom(48)))
            done += batch
            if done % 100_000 == 0 or done == rows:
                say(f"load: {done}/{rows} rows")
        (size,) = conn.execute("SELECT pg_database_size('postgres')").fetchone()
    say(f"load: database is {size / 2**20:.1f} MiB")


def drill(args) -> dict:
    from apps.backups.engine.tests.pg_cluster import Workspace, as_postgres_owner

    workspace = Workspace()
    try:
        return _drill(args, workspace, as_postgres_owner)
    finally:
        workspace.close()


def _drill(args, workspace, as_postgres_owner) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="hp-drill-"))
    source = workspace.cluster(workspace.root / "source").initdb(spool=workspace.spool)
    with open(source.data / "postgresql.conf", "a") as conf:
        conf.write(f"archive_timeout = {args.archive_timeout}\n")
    source.start()
    django_setup(scratch, source_url=source.url, spool=workspace.spool)
    from apps.backups.engine import services
    from apps.backups.engine.pitr import pitr_restore

    load(source, args.rows, args.seed)
    clock = time.monotonic()
    base = services.backup_create(backup_type="physical", progress=None)
    say(f"base backup {base['id']}: {base['stats']['bytes_in'] / 2**20:.1f} MiB in {time.monotonic() - clock:.1f} s")

    writer = Writer(source, args.write_every)
    writer.start()
    rng = random.Random(args.seed)
    loss_at = time.monotonic() + rng.uniform(args.duration / 2, args.duration)
    pushes = 0
    next_push = time.monotonic() + args.push_every
    while time.monotonic() < loss_at:
        time.sleep(max(0.0, min(next_push, loss_at) - time.monotonic()))
        if time.monotonic() >= next_push and time.monotonic() < loss_at:
            pushed = services.backup_create(backup_type="wal")
            pushes += 1
            next_push += args.push_every
            say(f"wal push {pushes}: {pushed.get('wal_files', 0)} files, {writer.count} rows written so far")

    # The host is lost: the server stops at once (no checkpoint, no final archive) with its disk and spool.
    last_ack = writer.last_ack
    source.stop()
    writer.stop_at.set()
    writer.join(timeout=10)
    shutil.rmtree(source.data, ignore_errors=True)
    shutil.rmtree(workspace.spool, ignore_errors=True)
    say(f"host lost: {writer.count} rows acknowledged, the newest at {last_ack.isoformat()}")

    started = time.monotonic()
    target = workspace.root / "restored"
    result = pitr_restore(target_time=None, to=target, progress=None)
    laid_out = time.monotonic() - started
    as_postgres_owner(target, Path(result["wal_directory"]))
    restored = workspace.cluster(target).start()
    restored.wait_until_promoted(timeout=600)
    with restored.connect() as conn:
        (entries,) = conn.execute("SELECT count(*) FROM entry").fetchone()
        newest, ticks = conn.execute("SELECT max(at), count(*) FROM tick").fetchone()
    rto = time.monotonic() - started
    rpo = (last_ack - newest).total_seconds() if newest else None
    say(f"recovered: {entries} entries, {ticks}/{writer.count} ticks, newest {newest}; RTO {rto:.1f} s, RPO {rpo:.1f} s")
    assert entries == args.rows, f"{entries} entry rows came back, {args.rows} were loaded"
    from apps.audit.services import audit_events_flush

    audit_events_flush()
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "rows": args.rows,
        "database_mib": round(base["stats"]["bytes_in"] / 2**20, 1),
        "archive_timeout_seconds": args.archive_timeout,
        "push_every_seconds": args.push_every,
        "writes_acknowledged": writer.count,
        "writes_recovered": ticks,
        "rpo_seconds": round(rpo, 1) if rpo is not None else None,
        "rpo_bound_seconds": args.archive_timeout + args.push_every,
        "rto_seconds": round(rto, 1),
        "rto_lay_out_seconds": round(laid_out, 1),
        "wal_files_restored": result["wal_files"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def logical_drill(args) -> dict:
    """The embedded mode's full-system recovery, timed as an operator runs it (migrate, recover full)."""
    import hashlib
    import subprocess
    import uuid

    scratch = Path(tempfile.mkdtemp(prefix="hp-drill-logical-"))
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "homepocket.settings", "HOMEPOCKET_VAR_DIR": str(scratch / "var"),
        "BACKUP_REPOSITORY_DIR": str(scratch / "repository"), "SIGNING_MASTER_KEY_FILE": str(scratch / "master-key.json"), "LOG_LEVEL": "ERROR",
    }  # fmt: skip
    env.pop("DATABASE_URL", None)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connections

    from apps.backups.engine import services
    from apps.pairing.models import Book, Device
    from apps.photos import storage
    from apps.photos.models import Photo

    rng = random.Random(args.seed)
    digests = {}
    books = [Book.objects.create() for _ in range(args.books)]
    for n, book in enumerate(books):
        for d in range(4):
            Device.objects.create(id=uuid.uuid4(), book=book, public_key=os.urandom(32), name=f"device {d}")
    for i in range(args.photos):
        book = books[i % len(books)]
        size = rng.randint(64 * 1024, 256 * 1024)
        body = os.urandom(size)
        photo = Photo.objects.create(book=book, transaction_id=f"tx-{i}", uploaded_by=uuid.uuid4(), size_bytes=size, mime_type="image/jpeg",
                                     sha256=hashlib.sha256(body).hexdigest(), state="complete")  # fmt: skip
        key = storage.photo_key(book_id=book.id, photo_id=photo.id)
        storage.object_put(key=key, body=body)
        digests[key] = hashlib.sha256(body).hexdigest()
        if (i + 1) % 250 == 0:
            say(f"generate: {i + 1}/{args.photos} photos")
    rows = {"books": Book.objects.count(), "devices": Device.objects.count(), "photos": Photo.objects.count()}
    clock = time.monotonic()
    manifest = services.backup_create(backup_type="full")
    backup_seconds = time.monotonic() - clock
    say(f"full backup {manifest['id']}: {manifest['stats']['bytes_in'] / 2**20:.1f} MiB in {backup_seconds:.1f} s")
    connections.close_all()

    # The deployment is lost: its database and its photo objects (the repository and the key are elsewhere).
    for path in (scratch / "var").glob("db.sqlite3*"):
        path.unlink()
    shutil.rmtree(scratch / "var" / "objects", ignore_errors=True)
    manage = [sys.executable, str(ROOT / "manage.py")]
    started, steps = time.monotonic(), {}
    for step, command in (("migrate", ["migrate", "--noinput", "-v", "0"]), ("recover", ["backup", "recover", "full"])):
        clock = time.monotonic()
        result = subprocess.run([*manage, *command], env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        steps[f"rto_{step}_seconds"] = round(time.monotonic() - clock, 1)
    rto = time.monotonic() - started
    back = {"books": Book.objects.count(), "devices": Device.objects.count(), "photos": Photo.objects.count()}
    assert back == rows, f"rows after recovery {back}, before {rows}"
    for key, digest in digests.items():
        assert hashlib.sha256(storage.object_read(key)).hexdigest() == digest, f"{key} differs"
    say(f"recovered: {back}, {len(digests)} objects byte-equal; RTO {rto:.1f} s")
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "mode": "logical (embedded: SQLite + local objects)",
        **rows,
        "snapshot_mib": round(manifest["stats"]["bytes_in"] / 2**20, 1),
        "backup_seconds": round(backup_seconds, 1),
        "rto_seconds": round(rto, 1),
        **steps,
        "rpo": "the schedule's interval (not measured)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("pitr", "logical"), default="pitr")
    parser.add_argument("--books", type=int, default=50, help="logical: books (4 devices each).")
    parser.add_argument("--photos", type=int, default=1000, help="logical: photo objects of 64-256 KiB.")
    parser.add_argument("--rows", type=int, default=500_000, help="Ledger rows loaded before the base backup.")
    parser.add_argument("--duration", type=float, default=120.0, help="Seconds of writes; the loss comes in the second half.")
    parser.add_argument("--archive-timeout", type=int, default=30, help="PostgreSQL's archive_timeout (seconds).")
    parser.add_argument("--push-every", type=float, default=30.0, help="Seconds between WAL pushes (the wal schedule).")
    parser.add_argument("--write-every", type=float, default=0.02, help="Seconds between committed rows.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    figures = drill(args) if args.mode == "pitr" else logical_drill(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
