"""The recovery API: backup_restore only, 400 before anything is queued, 409 over live data, 202 and a status to follow."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from apps.backups.engine import services
from apps.backups.engine.models import AlertKind, BackupAlert, BackupRun, RunKind, RunStatus
from apps.backups.engine.recovery_db import postgres_database_drop
from apps.photos.tests.conftest import local_store  # noqa: F401 (fixture)

# Not transactional: the role groups come from a data migration, which a transactional test's flush would drop.
pytestmark = pytest.mark.django_db

ENDPOINTS = ("/api/v1/recovery/full-system", "/api/v1/recovery/selective", "/api/v1/recovery/point-in-time")


def _post(client, path: str, body: dict):
    return client.post(path, body, content_type="application/json")


def _error(response) -> str:
    return response.json()["error"]["code"]


@pytest.mark.parametrize("role", ["read_only", "backup_operator", "compliance_officer"])
def test_roles_without_backup_restore_are_refused_every_recovery_endpoint(as_role, repository_dir, role):
    client = as_role(role)
    for path in ENDPOINTS:
        response = _post(client, path, {})
        assert response.status_code == 403 and _error(response) == "FORBIDDEN", (role, path)
    run = BackupRun.objects.create(kind=RunKind.RECOVERY, trigger="manual")
    assert client.get(f"/api/v1/recovery/status/{run.pk}").status_code == 403
    assert BackupRun.objects.count() == 1


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/recovery/selective", {}),
        ("/api/v1/recovery/selective", {"tables": ["pairing_device"], "book_id": str(uuid.uuid4())}),
        ("/api/v1/recovery/selective", {"tables": ["no_such_table"]}),
        ("/api/v1/recovery/selective", {"tables": ["backups_backuprun"]}),
        ("/api/v1/recovery/selective", {"book_id": "not-a-uuid"}),
        ("/api/v1/recovery/selective", {"book_id": str(uuid.uuid4()), "target_database": "/tmp/x.sqlite3"}),
        ("/api/v1/recovery/full-system", {"snapshot_id": "latest; DROP TABLE"}),
        ("/api/v1/recovery/full-system", {"snapshot_id": "20260101T000000000000Z-0badc0de"}),
        ("/api/v1/recovery/full-system", {"objects_to": "relative/dir"}),
        ("/api/v1/recovery/full-system", {"target_database": "/tmp/other.sqlite3"}),
        ("/api/v1/recovery/full-system", {"overwrite": "sometimes"}),
        ("/api/v1/recovery/point-in-time", {"to": "/tmp/pgdata"}),
        ("/api/v1/recovery/point-in-time", {"target_time": "yesterday", "to": "/tmp/pgdata"}),
        ("/api/v1/recovery/point-in-time", {"target_time": "2026-11-25T00:00:00Z", "to": "pgdata"}),
    ],
)
def test_bad_input_is_a_400_and_queues_nothing(as_role, repository_dir, path, body):
    services.backup_create(backup_type="database")
    response = _post(as_role("recovery_specialist"), path, body)
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT", response.json()
    assert not BackupRun.objects.exists()


def test_point_in_time_is_queued_only_with_postgresql(as_role, repository_dir, eager_runs, tmp_path):
    services.backup_create(backup_type="database")  # a repository, but no base backup in it
    response = _post(as_role("backup_admin"), "/api/v1/recovery/point-in-time", {"target_time": "2026-11-25T00:00:00Z", "to": str(tmp_path / "pgdata")})
    if connection.vendor == "sqlite":
        assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT"
        assert not BackupRun.objects.exists()
        return
    assert response.status_code == 202  # the repository holds no base backup: the job fails cleanly
    run = BackupRun.objects.get(pk=response.json()["data"]["job_id"])
    assert run.status == RunStatus.FAILED and "no physical snapshot" in run.error
    assert BackupAlert.objects.filter(kind=AlertKind.RECOVERY_FAILED, run=run).exists()


def test_a_recovery_over_live_data_without_overwrite_is_a_409_and_queues_nothing(as_role, repository_dir, family):
    client = as_role("recovery_specialist")
    services.backup_create(backup_type="database")
    for path, body in (("/api/v1/recovery/full-system", {"database_only": True}), ("/api/v1/recovery/selective", {"book_id": str(family.id)})):
        response = _post(client, path, body)
        assert response.status_code == 409 and _error(response) == "RECOVERY_TARGET_NOT_EMPTY", path
    assert not BackupRun.objects.exists()


def test_a_recovery_into_another_location_answers_202_and_its_status_shows_the_result(as_role, repository_dir, local_store, eager_runs, tmp_path):
    services.backup_create(backup_type="full")
    other = str(tmp_path / "other.sqlite3") if connection.vendor == "sqlite" else f"{connection.settings_dict['NAME'][:40]}_api_{uuid.uuid4().hex[:6]}"
    client = as_role("recovery_specialist")
    try:
        response = _post(client, "/api/v1/recovery/full-system", {"target_database": other, "objects_to": str(tmp_path / "objects")})
        assert response.status_code == 202, response.json()
        accepted = response.json()["data"]
        assert accepted["type"] == "full_system" and accepted["status_url"] == f"/api/v1/recovery/status/{accepted['job_id']}"
        status = client.get(accepted["status_url"]).json()["data"]
    finally:
        if connection.vendor == "postgresql":
            postgres_database_drop(other, settings_dict=connection.settings_dict)
    assert status["status"] == RunStatus.SUCCEEDED, status["error"]
    assert status["kind"] == "recovery" and status["progress"].startswith("recovery") and status["finished_at"]
    assert status["result"]["database"] == "copied" and status["result"]["tables"] > 0
    assert status["params"]["target_database"] == other


def test_a_failed_recovery_job_shows_its_error_and_raises_recovery_failed(as_role, repository_dir, eager_runs):
    client = as_role("recovery_specialist")
    response = _post(client, "/api/v1/recovery/full-system", {"database_only": True})  # an empty repository: nothing to recover
    assert response.status_code == 202
    status = client.get(response.json()["data"]["status_url"]).json()["data"]
    assert status["status"] == RunStatus.FAILED and status["error"]
    assert BackupAlert.objects.filter(kind=AlertKind.RECOVERY_FAILED, run_id=status["job_id"]).exists()


def test_the_status_of_another_kind_of_run_is_not_a_recovery(as_role, repository_dir):
    run = BackupRun.objects.create(kind=RunKind.BACKUP, trigger="manual")
    response = as_role("recovery_specialist").get(f"/api/v1/recovery/status/{run.pk}")
    assert response.status_code == 404


def test_the_admin_lists_recoveries_only(admin_client, repository_dir):
    recovery = BackupRun.objects.create(kind=RunKind.RECOVERY, trigger="manual", params={"type": "database"})
    backup = BackupRun.objects.create(kind=RunKind.BACKUP, trigger="manual")
    page = admin_client.get("/admin/backups/recoveryrun/")
    assert page.status_code == 200
    assert str(recovery.pk) in page.content.decode() and str(backup.pk) not in page.content.decode()
    assert admin_client.get(f"/admin/backups/recoveryrun/{recovery.pk}/change/").status_code == 200
