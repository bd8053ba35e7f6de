"""The database copy: SQLite's online backup API, on a database another connection keeps open; where a
snapshot's copy lands when restored (one file, or a directory-format dump's directory); the job settings.

PostgreSQL's own dumps (custom and directory format, parallel jobs) are in test_postgres_sources.py,
which the distributed run alone collects (conftest.py)."""

from __future__ import annotations

import sqlite3

import pytest
from django.core.checks import run_checks

from apps.backups.engine.sources import SourceError, database_entry_names, restored_database_path, sqlite_snapshot


def test_the_sqlite_online_backup_copies_every_committed_row(tmp_path):
    live = sqlite3.connect(tmp_path / "live.db")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("CREATE TABLE entry (id INTEGER PRIMARY KEY, body TEXT)")
    live.executemany("INSERT INTO entry (body) VALUES (?)", [(f"row {i}",) for i in range(5000)])
    live.commit()
    live.execute("INSERT INTO entry (body) VALUES ('uncommitted')")  # open transaction on the live db

    sqlite_snapshot(db_path=tmp_path / "live.db", dest=tmp_path / "copy.db", pages_per_step=8)

    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT count(*) FROM entry").fetchone() == (5000,)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    live.rollback()
    live.close()
    copy.close()


def _manifest(*names: str) -> dict:
    return {"id": "s", "files": [{"name": name} for name in names]}


def test_a_custom_format_dump_or_sqlite_file_is_restored_as_that_one_file(tmp_path):
    for name in ("database/sqlite.db", "database/postgres.dump"):
        manifest = _manifest(name, "objects/encrypted/b/p.enc")
        assert database_entry_names(manifest) == [name]
        assert restored_database_path(tmp_path, manifest) == tmp_path / name


def test_a_directory_format_dump_is_restored_as_its_directory(tmp_path):
    manifest = _manifest("database/postgres.dir/3001.dat", "database/postgres.dir/toc.dat", "objects/encrypted/b/p.enc")
    assert database_entry_names(manifest) == ["database/postgres.dir/3001.dat", "database/postgres.dir/toc.dat"]
    assert restored_database_path(tmp_path, manifest) == tmp_path / "database" / "postgres.dir"


def test_a_snapshot_without_one_database_copy_has_no_restored_path(tmp_path):
    for manifest in (_manifest("objects/encrypted/b/p.enc"), _manifest("database/sqlite.db", "database/postgres.dump")):
        with pytest.raises(SourceError, match="no single database copy"):
            restored_database_path(tmp_path, manifest)


@pytest.mark.parametrize("name", ["BACKUP_PG_DUMP_JOBS", "BACKUP_PG_RESTORE_JOBS"])
def test_a_postgres_job_count_below_one_fails_the_start_up_checks(name, settings):
    setattr(settings, name, 0)
    errors = [e for e in run_checks() if e.id == "backups.E020"]
    assert len(errors) == 1 and name in errors[0].msg


def test_the_default_postgres_job_counts_pass_the_start_up_checks():
    assert not [e for e in run_checks() if e.id == "backups.E020"]
