"""`manage.py backup create|list|verify|restore` against the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from prometheus_client import REGISTRY

from apps.backups.engine import services
from apps.backups.engine.repository import Repository
from signer.custody import LocalKeyFileCustody


def _backup(*args) -> str:
    out = StringIO()
    call_command("backup", *args, stdout=out, stderr=out)
    return out.getvalue()


def _users(count: int) -> None:
    get_user_model().objects.bulk_create([get_user_model()(username=f"backup-user-{i}") for i in range(count)])


@pytest.mark.django_db(transaction=True)
def test_create_then_restore_gives_back_the_database_rows(repository_dir, tmp_path):
    _users(25)
    output = _backup("run")
    assert "%" in output and "done" in output  # progress lines
    snapshot_id = services.backup_repository_open().snapshot_ids()[0]
    _backup("restore", snapshot_id, "--to", str(tmp_path / "restored"))
    restored = list((tmp_path / "restored" / "database").iterdir())
    assert len(restored) == 1
    if connection.vendor == "sqlite":
        copy = sqlite3.connect(restored[0])
        table = get_user_model()._meta.db_table
        assert copy.execute(f"SELECT count(*) FROM {table} WHERE username LIKE 'backup-user-%'").fetchone() == (25,)
        copy.close()
    else:
        listing = subprocess.run(["pg_restore", "--list", str(restored[0])], capture_output=True, text=True, check=True).stdout
        assert f"TABLE DATA public {get_user_model()._meta.db_table}" in listing
        data = subprocess.run(["pg_restore", "--data-only", f"--table={get_user_model()._meta.db_table}", "--file=-", str(restored[0])], capture_output=True, text=True, check=True).stdout
        assert data.count("backup-user-") == 25


@pytest.mark.django_db(transaction=True)
def test_a_second_backup_of_an_unchanged_database_adds_almost_nothing(repository_dir):
    _users(200)
    _backup("create")
    _backup("create")
    first, second = services.backup_repository_open().snapshots()
    assert first["stats"]["bytes_in"] > 0
    # SQLite's backup copies pages bit for bit; pg_dump's header carries its start time: one new
    # chunk at most (for a test database smaller than the 256 KiB minimum chunk, the whole dump).
    assert second["stats"]["chunks_new"] <= 1
    assert second["stats"]["bytes_stored_new"] <= max(first["stats"]["bytes_stored_new"] * 0.2, 4096) or connection.vendor == "postgresql"


@pytest.mark.django_db(transaction=True)
def test_list_shows_each_snapshot_with_its_sizes(repository_dir):
    _backup("create")
    rows = [json.loads(line) for line in _backup("list", "--json").splitlines()]
    assert len(rows) == 1
    assert rows[0]["kind"] == "database+objects" and rows[0]["bytes_in"] > 0 and rows[0]["files"][0].startswith("database/")


@pytest.mark.django_db(transaction=True)
def test_verify_passes_then_fails_once_a_chunk_is_damaged(repository_dir):
    _backup("create")
    assert "ok: 1 snapshots" in _backup("verify")
    victim = next(p for p in (repository_dir / "data").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
    with pytest.raises(CommandError, match="problems"):
        _backup("verify")


def test_restore_works_without_the_database(repository_dir, tmp_path):
    # No django_db mark: any database access would fail this test.
    src = tmp_path / "file.bin"
    src.write_bytes(b"ledger" * 1000)
    repo = Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    repo.snapshot_create([("database/file.bin", src)], meta={"kind": "database"})
    assert "database" in _backup("--repository", str(repository_dir), "list")
    _backup("--repository", str(repository_dir), "restore", "latest", "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "database" / "file.bin").read_bytes() == src.read_bytes()


def test_restore_refuses_a_non_empty_target(repository_dir, tmp_path):
    src = tmp_path / "file.bin"
    src.write_bytes(b"x")
    Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json")).snapshot_create([("f", src)], meta={})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "live").write_text("live")
    with pytest.raises(CommandError, match="--overwrite"):
        _backup("restore", "latest", "--to", str(tmp_path / "out"))


def test_restore_from_a_missing_repository_is_a_clear_error(repository_dir, tmp_path):
    with pytest.raises(CommandError, match="no repository"):
        _backup("restore", "latest", "--to", str(tmp_path / "out"))


def test_the_master_key_rotation_rewraps_the_backup_repository(repository_dir, tmp_path):
    custody = LocalKeyFileCustody(tmp_path / "master-key.json")
    old = Repository.init(repository_dir, custody=custody).master_key_id
    new = custody.rotate()
    assert services.backup_master_keys_rewrap(custody_=custody, new_master=new) == set()
    custody.retire(keep={new})
    assert Repository.open(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json")).master_key_id == new != old


def test_a_rotation_that_cannot_rewrap_keeps_the_old_master_key(repository_dir, tmp_path):
    Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "other-key.json"))
    custody = LocalKeyFileCustody(tmp_path / "master-key.json")
    old = Repository.master_key_id_of(repository_dir)
    assert services.backup_master_keys_rewrap(custody_=custody, new_master=custody.rotate()) == {old}


@pytest.mark.django_db
def test_a_backup_still_restores_after_a_full_master_key_rotation(repository_dir, tmp_path):
    from apps.signing.services import signing_master_key_rotate

    src = tmp_path / "file.bin"
    src.write_bytes(b"ledger" * 1000)
    repo = Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    snapshot_id = repo.snapshot_create([("f", src)], meta={})["id"]
    result = signing_master_key_rotate()
    assert result["retired"] == [repo.master_key_id]  # the old key is gone: only a re-wrap keeps backups readable
    _backup("restore", snapshot_id, "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "f").read_bytes() == src.read_bytes()


@pytest.mark.django_db(transaction=True)
def test_a_test_restore_finds_every_table_as_the_snapshot_recorded_it(repository_dir):
    _users(30)
    _backup("create", "--database-only")
    manifest = services.backup_repository_open().snapshots()[0]
    assert manifest["database_tables"][get_user_model()._meta.db_table]["rows"] >= 30
    output = _backup("test-restore")
    assert f"ok: {manifest['id']} restored, {len(manifest['database_tables'])} tables" in output


@pytest.mark.django_db(transaction=True)
def test_a_test_restore_reports_a_table_that_differs_from_the_record(repository_dir, tmp_path):
    _users(5)
    _backup("create", "--database-only")
    repo = services.backup_repository_open()
    manifest = repo.snapshots()[0]
    # A snapshot whose record says one more user than its database holds: the drill must notice.
    repo.restore(manifest["id"], to=tmp_path / "db")
    name = manifest["files"][0]["name"]
    table = get_user_model()._meta.db_table
    tables = {**manifest["database_tables"], table: {**manifest["database_tables"][table], "rows": manifest["database_tables"][table]["rows"] + 1}}
    meta = {k: manifest[k] for k in ("kind", "database_vendor")} | {"database_tables": tables}
    repo.snapshot_create([(name, tmp_path / "db" / name)], meta=meta)
    err = StringIO()
    with pytest.raises(CommandError, match="1 tables differ"):
        call_command("backup", "test-restore", stdout=StringIO(), stderr=err)
    assert json.loads(err.getvalue().split("mismatch: ", 1)[1])["table"] == table


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db(transaction=True)
def test_a_successful_run_is_counted_with_its_bytes(repository_dir):
    before = (_sample("homepocket_backup_runs_total", outcome="success"), _sample("homepocket_backup_read_bytes_total"))
    manifest = services.backup_create()
    assert _sample("homepocket_backup_runs_total", outcome="success") == before[0] + 1
    assert _sample("homepocket_backup_read_bytes_total") == before[1] + manifest["stats"]["bytes_in"]
    assert _sample("homepocket_backup_last_success_timestamp_seconds") > 0


@pytest.mark.django_db(transaction=True)
def test_a_run_the_custodian_refuses_is_counted_as_a_failure(repository_dir, tmp_path):
    key_file = tmp_path / "master-key.json"
    LocalKeyFileCustody(key_file)
    key_file.chmod(0o644)  # custody refuses a master key others can read
    before = _sample("homepocket_backup_runs_total", outcome="failure")
    with pytest.raises(CommandError, match="readable by others"):
        _backup("run")
    assert _sample("homepocket_backup_runs_total", outcome="failure") == before + 1
    assert not (repository_dir / "config.json").exists()
