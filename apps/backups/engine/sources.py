"""What a server backup reads: a consistent copy of the database, made into a scratch directory.

- SQLite (embedded mode): SQLite's online backup API (`sqlite3.Connection.backup`), which copies
  a consistent image page by page while the server keeps writing; never a file copy of a live
  database (that can catch a half-written transaction or miss the WAL).
- PostgreSQL (distributed mode): `pg_dump` with compression off (`-Z 0`): the repository
  compresses each chunk itself, and an uncompressed dump deduplicates across snapshots where a
  compressed one changes everywhere. With BACKUP_PG_DUMP_JOBS = 1 (the default) one custom-format
  file, `database/postgres.dump`; with N > 1 the directory format dumped by N parallel workers
  (`--format=directory --jobs=N`: only it can be written in parallel), each file of the directory
  an entry under `database/postgres.dir/`. Either way every worker reads the one exported
  snapshot the table digests are taken in. `pg_restore` reads both, with BACKUP_PG_RESTORE_JOBS
  parallel jobs.

Callers that load a snapshot's database (the drill, recovery) go through database_entry_names,
restored_database_path and postgres_restore, which know both layouts.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from apps.backups.engine.digests import postgres_connect, postgres_table_digests, sqlite_table_digests

SQLITE_NAME = "database/sqlite.db"
POSTGRES_NAME = "database/postgres.dump"
POSTGRES_DIR_NAME = "database/postgres.dir"
# Photo objects keep their store key under this prefix (objects/encrypted/<book>/<photo>.enc).
OBJECTS_PREFIX = "objects/"


class SourceError(Exception):
    """The database could not be copied (pg_dump failed, file missing)."""


def sqlite_snapshot(*, db_path: Path, dest: Path, pages_per_step: int = 1024) -> Path:
    """A consistent copy of the SQLite database at `db_path`, written to `dest`."""
    if not Path(db_path).exists():
        raise SourceError(f"no SQLite database at {db_path}")
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    target = sqlite3.connect(dest)
    try:
        with target:
            source.backup(target, pages=pages_per_step)
    finally:
        target.close()
        source.close()
    return dest


def postgres_tool(program: str, settings_dict: dict, *args: str, dbname: str | None = None) -> None:
    """Run pg_dump / pg_restore against the server `settings_dict` names; SourceError if it fails."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = settings_dict["PASSWORD"]
    command = [program, *args]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings_dict.get(key):
            command.append(f"{flag}={settings_dict[key]}")
    command.append(f"--dbname={dbname or settings_dict['NAME']}")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SourceError(f"{program} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _jobs_setting(name: str) -> int:
    """BACKUP_PG_DUMP_JOBS / BACKUP_PG_RESTORE_JOBS from the Django settings (1 where there are none: a bare script)."""
    from django.conf import settings

    return int(getattr(settings, name, 1)) if settings.configured else 1


def postgres_restore(dump: Path, *, settings_dict: dict, dbname: str, extra_args: tuple[str, ...] = (), jobs: int | None = None) -> None:
    """`pg_restore` of a snapshot's database copy (restored_database_path: a custom-format file or a
    directory-format dump) into `dbname` on the server `settings_dict` names, with `jobs` parallel
    jobs (default BACKUP_PG_RESTORE_JOBS); pg_restore tells the two formats apart by itself."""
    jobs = _jobs_setting("BACKUP_PG_RESTORE_JOBS") if jobs is None else jobs
    # pg_restore refuses --jobs with --single-transaction (one transaction has one connection).
    parallel = (f"--jobs={jobs}",) if jobs > 1 and "--single-transaction" not in extra_args else ()
    postgres_tool("pg_restore", settings_dict, "--no-owner", "--exit-on-error", *parallel, *extra_args, str(dump), dbname=dbname)


def postgres_dump(*, settings_dict: dict, dest: Path, jobs: int = 1) -> dict:
    """`pg_dump` (uncompressed) to `dest`: one custom-format file, or with `jobs` > 1 a directory
    written by that many workers; the per-table digests of the very same snapshot.

    The digests are read in a REPEATABLE READ transaction whose snapshot pg_dump (each of its
    workers) adopts (`--snapshot`), so what the drill compares with is exactly what the dump holds.
    """
    layout = ("--format=custom",) if jobs <= 1 else ("--format=directory", f"--jobs={jobs}")
    with postgres_connect(settings_dict) as conn, conn.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
        postgres_tool("pg_dump", settings_dict, *layout, "--compress=0", "--no-owner", f"--snapshot={snapshot}", f"--file={dest}")
        return postgres_table_digests(cursor)


def database_entry_names(manifest: dict) -> list[str]:
    """The names of a snapshot's files that make up its database copy (empty: it holds none):
    one file, or every file of a directory-format dump."""
    return [entry["name"] for entry in manifest["files"] if entry["name"].startswith("database/")]


def restored_database_path(root: Path, manifest: dict) -> Path:
    """Where the database copy of `manifest` is once its database files are restored under `root`:
    the SQLite file, or what pg_restore takes (the custom-format dump, or the dump's directory)."""
    names = database_entry_names(manifest)
    if names and all(name.startswith(POSTGRES_DIR_NAME + "/") for name in names):
        return Path(root) / POSTGRES_DIR_NAME
    if len(names) != 1:
        raise SourceError(f"snapshot {manifest['id']} holds no single database copy")
    return Path(root) / names[0]


def database_snapshot(*, settings_dict: dict, vendor: str, scratch: Path, jobs: int | None = None) -> tuple[str, Path, dict]:
    """(name in the snapshot, path of the copy, per-table digests) for the configured database.

    The copy is a file, or (PostgreSQL with `jobs` > 1, default BACKUP_PG_DUMP_JOBS) a directory:
    a snapshot stores each of its files under the name (engine/repo_backup.py).
    """
    if vendor == "sqlite":
        copy = sqlite_snapshot(db_path=Path(settings_dict["NAME"]), dest=scratch / "sqlite.db")
        return SQLITE_NAME, copy, sqlite_table_digests(copy)
    if vendor == "postgresql":
        jobs = _jobs_setting("BACKUP_PG_DUMP_JOBS") if jobs is None else jobs
        name, dest = (POSTGRES_NAME, scratch / "postgres.dump") if jobs <= 1 else (POSTGRES_DIR_NAME, scratch / "postgres.dir")
        return name, dest, postgres_dump(settings_dict=settings_dict, dest=dest, jobs=jobs)
    raise SourceError(f"no backup source for database vendor {vendor!r}")
