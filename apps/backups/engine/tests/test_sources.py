"""The database copy: SQLite's online backup API, on a database another connection keeps open."""

from __future__ import annotations

import sqlite3

from apps.backups.engine.sources import sqlite_snapshot


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
