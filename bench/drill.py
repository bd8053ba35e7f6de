"""A disaster-recovery drill: the RPO and RTO that point-in-time recovery achieves (docs/PERFORMANCE.md).

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000, help="Ledger rows loaded before the base backup.")
    parser.add_argument("--duration", type=float, default=120.0, help="Seconds of writes; the loss comes in the second half.")
    parser.add_argument("--archive-timeout", type=int, default=30, help="PostgreSQL's archive_timeout (seconds).")
    parser.add_argument("--push-every", type=float, default=30.0, help="Seconds between WAL pushes (the wal schedule).")
    parser.add_argument("--write-every", type=float, default=0.02, help="Seconds between committed rows.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    figures = drill(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
