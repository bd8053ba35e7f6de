"""Point-in-time recovery against real, throwaway PostgreSQL clusters (initdb, WAL archiving on).

The flow the issue asks for: write A, note the time, write B, recover to the noted time: A is
there, B is not. The clusters run on their own sockets, whatever database the suite uses, so this
runs the same in the embedded and the distributed mode.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.audit.services import audit_events_flush
from apps.backups.engine import services
from apps.backups.engine.pitr import PitrError, pitr_restore
from apps.backups.engine.physical import PhysicalError, physical_source
from apps.backups.engine.repository import Repository
from apps.backups.engine.tests.pg_cluster import Workspace, as_postgres_owner


@pytest.fixture
def workspace():
    space = Workspace()
    yield space
    space.close()  # stops every cluster it started, whatever the test did


@pytest.fixture
def source(workspace, repository_dir, settings):
    """A running cluster archiving into the workspace's spool, with a table `t`; the server physical backups copy."""
    cluster = workspace.cluster(workspace.root / "source").initdb(spool=workspace.spool).start()
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE t (v text)")
    settings.BACKUP_PHYSICAL_DATABASE_URL = cluster.url
    settings.BACKUP_WAL_SPOOL_DIR = workspace.spool
    return cluster


def _write(cluster, value: str):
    """Insert `value` (committed), then the server's clock: later than that commit, earlier than any after it."""
    with cluster.connect() as conn:
        conn.execute("INSERT INTO t VALUES (%s)", (value,))
        return conn.execute("SELECT now()").fetchone()[0]


@pytest.mark.django_db
def test_it_recovers_to_the_noted_time_with_a_present_and_b_absent(workspace, source, django_capture_on_commit_callbacks):
    base = services.backup_create(backup_type="physical")
    noted = _write(source, "A")
    _write(source, "B")
    source.wal_switch_and_archive()
    pushed = services.backup_create(backup_type="wal")
    assert pushed["kind"] == "wal" and pushed["wal_files"] >= 1

    lines = []
    with django_capture_on_commit_callbacks(execute=True):
        result = pitr_restore(target_time=noted, to=workspace.root / "restored", progress=lines.append)

    assert result["base_snapshot"] == base["id"]
    assert result["target_time"] == noted.isoformat()
    assert result["wal_files"] >= 1 and pushed["id"] in result["wal_snapshots"]
    assert any(line.startswith("pitr: base physical/base.tar") for line in lines)
    as_postgres_owner(workspace.root / "restored", workspace.root / "restored-wal")
    restored = workspace.cluster(workspace.root / "restored").start()
    restored.wait_until_promoted()
    with restored.connect() as conn:
        values = [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")]
    assert values == ["A"], restored.log_text()
    audit_events_flush()
    assert AuditEvent.objects.get(event_type="backup.restored", target=f"snapshot:{base['id']}").details["point_in_time"] == noted.isoformat()


@pytest.mark.django_db
def test_the_point_in_time_endpoint_runs_the_recovery_as_a_job(workspace, source, as_role, eager_runs):
    services.backup_create(backup_type="physical")
    noted = _write(source, "A")
    _write(source, "B")
    source.wal_switch_and_archive()
    services.backup_create(backup_type="wal")
    client = as_role("recovery_specialist")

    response = client.post(
        "/api/v1/recovery/point-in-time", {"target_time": noted.isoformat(), "to": str(workspace.root / "restored")}, content_type="application/json"
    )

    assert response.status_code == 202, response.json()
    job = response.json()["data"]["job_id"]
    status = client.get(f"/api/v1/recovery/status/{job}").json()["data"]
    assert status["status"] == "succeeded", status
    as_postgres_owner(workspace.root / "restored", workspace.root / "restored-wal")
    restored = workspace.cluster(workspace.root / "restored").start()
    restored.wait_until_promoted()
    with restored.connect() as conn:
        assert [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")] == ["A"], restored.log_text()


def test_latest_recovers_every_archived_transaction(workspace, source):
    base = services.backup_create(backup_type="physical")
    _write(source, "A")
    _write(source, "B")
    source.wal_switch_and_archive()
    services.backup_create(backup_type="wal")

    result = pitr_restore(target_time=None, to=workspace.root / "restored")

    assert result["target_time"] == "latest" and result["base_snapshot"] == base["id"]
    conf = (workspace.root / "restored" / "postgresql.auto.conf").read_text()
    assert "recovery_target_time" not in conf
    as_postgres_owner(workspace.root / "restored", workspace.root / "restored-wal")
    restored = workspace.cluster(workspace.root / "restored").start()
    restored.wait_until_promoted()
    with restored.connect() as conn:
        values = [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")]
    assert values == ["A", "B"], restored.log_text()


def test_the_base_backup_records_where_and_when_it_starts_and_stops(workspace, source):
    manifest = services.backup_create(backup_type="physical")

    with source.connect() as conn:
        (system_identifier,) = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert manifest["kind"] == "physical" and manifest["database_vendor"] == "postgresql"
    assert manifest["system_identifier"] == str(system_identifier)
    assert manifest["timeline"] == 1 and manifest["server_version"] == "15"
    assert manifest["start_lsn"] and manifest["stop_lsn"] and len(manifest["start_wal_file"]) == 24
    assert manifest["backup_start_time"] <= manifest["backup_stop_time"]
    assert {entry["name"] for entry in manifest["files"]} == {"physical/base.tar", "physical/backup_manifest"}


def test_it_refuses_a_time_before_the_earliest_base_backup(workspace, source):
    base = services.backup_create(backup_type="physical")
    target = workspace.root / "restored"

    with pytest.raises(PitrError, match="before the earliest base backup"):
        pitr_restore(target_time=_write(source, "x") - timedelta(hours=1), to=target)
    assert not target.exists() and not (workspace.root / "restored-wal").exists()
    assert base["id"]


def test_it_refuses_a_time_past_the_archived_wal_and_names_the_newest(workspace, source):
    services.backup_create(backup_type="physical")
    _write(source, "A")
    source.wal_switch_and_archive()
    services.backup_create(backup_type="wal")
    later = _write(source, "after the push") + timedelta(minutes=5)

    with pytest.raises(PitrError, match="the archived WAL reaches only to the transaction of") as refused:
        pitr_restore(target_time=later, to=workspace.root / "restored")
    assert "Push the newer WAL first" in str(refused.value)
    assert not (workspace.root / "restored").exists() and not (workspace.root / "restored-wal").exists()


def test_it_refuses_a_target_directory_that_is_not_empty(tmp_path, repository_dir):
    target = tmp_path / "data"
    target.mkdir()
    (target / "PG_VERSION").write_text("15\n")

    with pytest.raises(PitrError, match="not empty; pass --overwrite"):
        pitr_restore(target_time=datetime.now(timezone.utc), to=target)
    assert [p.name for p in target.iterdir()] == ["PG_VERSION"]


def test_it_refuses_a_repository_without_a_physical_snapshot(tmp_path, repository_dir, custody):
    repo = Repository.init(repository_dir, custody=custody)
    (tmp_path / "dump").write_bytes(b"a logical dump")
    repo.snapshot_create([("database/postgres.dump", tmp_path / "dump")], meta={"kind": "database"})

    with pytest.raises(PitrError, match="no physical snapshot"):
        pitr_restore(target_time=datetime.now(timezone.utc), to=tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


def test_it_refuses_a_target_time_without_a_zone(tmp_path, repository_dir):
    with pytest.raises(PitrError, match="needs a time zone"):
        pitr_restore(target_time=datetime(2026, 11, 25, 1, 2, 3), to=tmp_path / "restored")


def test_physical_backups_are_refused_on_sqlite():
    with pytest.raises(PhysicalError, match="PostgreSQL only.*sqlite.*use the `database` backup type"):
        physical_source(vendor="sqlite", settings_dict={"NAME": "/srv/var/db.sqlite3"})


def test_the_pitr_command_refuses_a_time_without_a_zone(tmp_path, repository_dir):
    with pytest.raises(CommandError, match="has no time zone"):
        call_command("backup", "pitr", "--target-time", "2026-11-25T01:02:03", "--to", str(tmp_path / "restored"))


def test_the_pitr_command_says_why_it_cannot_recover(tmp_path, repository_dir, custody):
    Repository.init(repository_dir, custody=custody)

    with pytest.raises(CommandError, match="no physical snapshot"):
        call_command("backup", "pitr", "--target-time", "2026-11-25T01:02:03Z", "--to", str(tmp_path / "restored"), stdout=StringIO())


def test_overwrite_replaces_only_a_postgresql_data_directory(tmp_path, repository_dir):
    target = tmp_path / "srv"
    target.mkdir()
    (target / "photos.db").write_text("not a data directory")

    with pytest.raises(PitrError, match="neither a PostgreSQL data directory nor a WAL directory"):
        pitr_restore(target_time=datetime.now(timezone.utc), to=target, overwrite=True)
    assert (target / "photos.db").read_text() == "not a data directory"
