"""PostgreSQL's dumps: one custom-format file (BACKUP_PG_DUMP_JOBS = 1) or a directory dumped by
parallel workers, and parallel pg_restore (BACKUP_PG_RESTORE_JOBS), checked by the restore drill.

Collected by the distributed run only (conftest.py): it needs the real PostgreSQL server.
"""

from __future__ import annotations

import secrets

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from psycopg import sql

from apps.backups.engine import services
from apps.backups.engine.digests import digests_compare, postgres_connect, postgres_table_digests
from apps.backups.engine.sources import POSTGRES_DIR_NAME, database_entry_names, postgres_restore, restored_database_path

pytestmark = pytest.mark.django_db(transaction=True)


def _users(count: int) -> None:
    get_user_model().objects.bulk_create([get_user_model()(username=f"pg-dump-user-{i}") for i in range(count)])


def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"  # this module means nothing on SQLite


@pytest.mark.parametrize(("dump_jobs", "restore_jobs"), [(2, 2), (2, 1), (1, 2)])
def test_a_backup_test_restores_with_every_table_equal(dump_jobs, restore_jobs, repository_dir, settings):
    settings.BACKUP_PG_DUMP_JOBS, settings.BACKUP_PG_RESTORE_JOBS = dump_jobs, restore_jobs
    _users(40)
    manifest = services.backup_create(backup_type="database")
    names = database_entry_names(manifest)
    if dump_jobs > 1:
        assert f"{POSTGRES_DIR_NAME}/toc.dat" in names and len(names) > 2  # the table of contents and a file per table's data
        assert all(name.startswith(POSTGRES_DIR_NAME + "/") for name in names)
    else:
        assert names == ["database/postgres.dump"]
    report = services.backup_test_restore(snapshot_id=manifest["id"])
    assert report["ok"] and report["mismatches"] == []
    assert report["tables_checked"] == len(manifest["database_tables"]) and manifest["database_tables"][get_user_model()._meta.db_table]["rows"] >= 40


def test_a_directory_format_snapshot_whose_record_differs_is_caught_by_the_drill(repository_dir, settings, tmp_path):
    settings.BACKUP_PG_DUMP_JOBS = settings.BACKUP_PG_RESTORE_JOBS = 2
    _users(5)
    manifest = services.backup_create(backup_type="database")
    repo = services.backup_repository_open()
    repo.restore(manifest["id"], to=tmp_path / "db")
    dump = restored_database_path(tmp_path / "db", manifest)
    assert dump.is_dir() and (dump / "toc.dat").is_file()
    # The same dump directory stored again, with a record that says one more user than it holds.
    table = get_user_model()._meta.db_table
    tables = {**manifest["database_tables"], table: {**manifest["database_tables"][table], "rows": manifest["database_tables"][table]["rows"] + 1}}
    tampered = repo.snapshot_create([(POSTGRES_DIR_NAME, dump)], meta={"kind": "database", "database_vendor": "postgresql", "database_tables": tables})
    assert database_entry_names(tampered) == database_entry_names(manifest)
    report = services.backup_test_restore(snapshot_id=tampered["id"])
    assert not report["ok"] and [m["table"] for m in report["mismatches"]] == [table]


def test_a_single_transaction_restore_of_a_directory_dump_runs_without_parallel_jobs(repository_dir, settings, tmp_path):
    # pg_restore refuses --jobs with --single-transaction: postgres_restore drops the jobs, not the caller's option.
    settings.BACKUP_PG_DUMP_JOBS = settings.BACKUP_PG_RESTORE_JOBS = 2
    _users(7)
    manifest = services.backup_create(backup_type="database")
    services.backup_repository_open().restore(manifest["id"], to=tmp_path / "db", only=set(database_entry_names(manifest)))
    scratch = f"{connection.settings_dict['NAME'][:40]}_single_{secrets.token_hex(4)}"
    with postgres_connect(connection.settings_dict, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            postgres_restore(restored_database_path(tmp_path / "db", manifest), settings_dict=connection.settings_dict, dbname=scratch, extra_args=("--single-transaction",))
            with postgres_connect(connection.settings_dict, dbname=scratch) as conn, conn.cursor() as cursor:
                assert digests_compare(manifest["database_tables"], postgres_table_digests(cursor)) == []
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
