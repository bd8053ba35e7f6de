"""What a server backup reads: a consistent copy of the database, made into a scratch directory.

- SQLite (embedded mode): SQLite's online backup API (`sqlite3.Connection.backup`), which copies
  a consistent image page by page while the server keeps writing; never a file copy of a live
  database (that can catch a half-written transaction or miss the WAL).
- PostgreSQL (distributed mode): `pg_dump --format=custom` with compression off (`-Z 0`): the
  repository compresses each chunk itself, and an uncompressed dump deduplicates across snapshots
  where a compressed one changes everywhere.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

SQLITE_NAME = "database/sqlite.db"
POSTGRES_NAME = "database/postgres.dump"
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


def postgres_dump(*, settings_dict: dict, dest: Path) -> Path:
    """`pg_dump` custom format (uncompressed) of the database `settings_dict` names, written to `dest`."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = settings_dict["PASSWORD"]
    command = ["pg_dump", "--format=custom", "--compress=0", "--no-owner", f"--file={dest}"]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings_dict.get(key):
            command.append(f"{flag}={settings_dict[key]}")
    command.append(f"--dbname={settings_dict['NAME']}")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SourceError(f"pg_dump failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return dest


def database_snapshot(*, settings_dict: dict, vendor: str, scratch: Path) -> tuple[str, Path]:
    """(name in the snapshot, path of the copy) for the configured database."""
    if vendor == "sqlite":
        return SQLITE_NAME, sqlite_snapshot(db_path=Path(settings_dict["NAME"]), dest=scratch / "sqlite.db")
    if vendor == "postgresql":
        return POSTGRES_NAME, postgres_dump(settings_dict=settings_dict, dest=scratch / "postgres.dump")
    raise SourceError(f"no backup source for database vendor {vendor!r}")
