"""The restore drill: restore a snapshot's database into scratch space and compare it table by table.

SQLite: the restored file itself is the scratch database. PostgreSQL: a throwaway database on the
configured server (`<name>_drill_<hex>`), filled by `pg_restore`, dropped afterwards whatever
happened. The drill compares each table's row count and checksum with those the snapshot
recorded when it was taken (engine/digests.py); any difference is a mismatch in the report.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from psycopg import sql

from apps.backups.engine.digests import digests_compare, postgres_connect, postgres_table_digests, sqlite_table_digests
from apps.backups.engine.repository import Progress, Repository, RepositoryError
from apps.backups.engine.sources import database_entry_names, postgres_restore, restored_database_path


def database_drill(*, repo: Repository, snapshot_id: str, settings_dict: dict, scratch: Path, progress: Progress | None = None) -> dict:
    """{"snapshot", "tables_checked", "rows", "mismatches", "ok"} for the snapshot's database."""
    say = progress or (lambda line: None)
    manifest = repo.snapshot_get(snapshot_id)
    names = database_entry_names(manifest)
    recorded = manifest.get("database_tables")
    if not names or recorded is None:
        raise RepositoryError(f"snapshot {snapshot_id} holds no database with recorded table digests")
    repo.restore(snapshot_id, to=scratch, only=set(names), progress=progress)
    restored_file = restored_database_path(scratch, manifest)
    if manifest["database_vendor"] == "sqlite":
        restored = sqlite_table_digests(restored_file)
    elif manifest["database_vendor"] == "postgresql":
        restored = _postgres_restored_digests(restored_file, settings_dict=settings_dict, say=say)
    else:
        raise RepositoryError(f"no drill for database vendor {manifest['database_vendor']!r}")
    mismatches = digests_compare(recorded, restored)
    say(f"test-restore {snapshot_id}: {len(recorded)} tables compared, {len(mismatches)} mismatches")
    return {
        "snapshot": snapshot_id,
        "tables_checked": len(recorded),
        "rows": sum(table["rows"] for table in recorded.values()),
        "mismatches": mismatches,
        "ok": not mismatches,
    }


def _postgres_restored_digests(dump: Path, *, settings_dict: dict, say) -> dict:
    scratch_db = f"{settings_dict['NAME'][:40]}_drill_{secrets.token_hex(4)}"
    with postgres_connect(settings_dict, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch_db)))
        try:
            say(f"test-restore: pg_restore into scratch database {scratch_db}")
            postgres_restore(dump, settings_dict=settings_dict, dbname=scratch_db)
            with postgres_connect(settings_dict, dbname=scratch_db) as conn, conn.cursor() as cursor:
                return postgres_table_digests(cursor)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch_db)))
