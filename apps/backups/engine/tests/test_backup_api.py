"""The server-backup API: staff by role, 202 + job id for long work, residency refusals, holds."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from apps.audit.models import AuditEvent
from apps.audit.services import audit_events_flush
from apps.backups.engine import services
from apps.backups.engine.models import BackupRun, RunStatus, StorageLocation
from apps.backups.engine.repository import RepositoryError

# Not transactional: the role groups come from a data migration, which a transactional test's flush would drop.
pytestmark = pytest.mark.django_db


def _error(response) -> str:
    return response.json()["error"]["code"]


def test_a_read_only_member_lists_schedules_but_cannot_create_one(as_role, repository_dir):
    client = as_role("read_only")
    assert client.get("/api/v1/backup/schedules").json()["data"] == []
    response = client.post("/api/v1/backup/schedules", {"name": "hourly", "backup_type": "database"}, content_type="application/json")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"


def test_an_operator_creates_changes_and_deletes_a_schedule(as_role, repository_dir):
    client = as_role("backup_operator")
    created = client.post("/api/v1/backup/schedules", {"name": "hourly", "backup_type": "database", "crontab": "5 * * * *", "priority": 0, "keep_daily": 7}, content_type="application/json")
    assert created.status_code == 201, created.content
    schedule_id = created.json()["data"]["id"]
    assert PeriodicTask.objects.get(name=f"backup-schedule:{schedule_id}").crontab.minute == "5"
    changed = client.patch(f"/api/v1/backup/schedule/{schedule_id}", {"crontab": "30 2 * * *"}, content_type="application/json")
    assert changed.status_code == 200 and changed.json()["data"]["crontab"] == "30 2 * * *"
    assert PeriodicTask.objects.get(name=f"backup-schedule:{schedule_id}").crontab.hour == "2"
    assert client.delete(f"/api/v1/backup/schedule/{schedule_id}").status_code == 204
    assert not PeriodicTask.objects.filter(name=f"backup-schedule:{schedule_id}").exists()


def test_a_bad_schedule_is_a_400_that_changes_nothing(as_role, repository_dir):
    client = as_role("backup_admin")
    for body in ({"name": "x", "backup_type": "database", "crontab": "61 * * * *"}, {"name": "x", "backup_type": "tape"}, {"name": "x", "backup_type": "database", "priority": 12}):
        response = client.post("/api/v1/backup/schedules", body, content_type="application/json")
        assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT", body
    assert client.get("/api/v1/backup/schedules").json()["data"] == []


def test_a_non_staff_member_of_a_role_is_refused(as_role, repository_dir):
    response = as_role("backup_admin", staff=False).get("/api/v1/backup/schedules")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"


def test_an_anonymous_caller_is_refused(client, repository_dir):
    assert client.get("/api/v1/recovery/available-backups").status_code in (401, 403)


def test_a_trigger_answers_202_with_a_job_whose_status_shows_the_snapshot(as_role, repository_dir, eager_runs):
    client = as_role("backup_operator")
    response = client.post("/api/v1/backup/trigger/database", {}, content_type="application/json")
    assert response.status_code == 202
    job_id = response.json()["data"]["job_id"]
    status = client.get(f"/api/v1/backup/status/{job_id}").json()["data"]
    assert status["status"] == RunStatus.SUCCEEDED and status["snapshot_id"] and status["trigger"] == "manual"
    assert services.backup_repository_open().snapshot_ids() == [status["snapshot_id"]]


def test_a_trigger_of_an_unknown_type_is_a_400(as_role, repository_dir):
    response = as_role("backup_operator").post("/api/v1/backup/trigger/everything", {}, content_type="application/json")
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT"
    assert not BackupRun.objects.exists()


def test_a_recovery_specialist_cannot_start_a_backup(as_role, repository_dir):
    response = as_role("recovery_specialist").post("/api/v1/backup/trigger/full", {}, content_type="application/json")
    assert response.status_code == 403 and not BackupRun.objects.exists()


def test_a_backup_to_a_location_outside_the_allowed_regions_is_a_compliance_violation(as_role, repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS = ["eu-central-1", "eu-west-3"]
    StorageLocation.objects.create(name="virginia", url=str(repository_dir), region="us-east-1")
    response = as_role("backup_admin").post("/api/v1/backup/trigger/database", {"location": "virginia"}, content_type="application/json")
    assert response.status_code == 403 and _error(response) == "COMPLIANCE_VIOLATION"
    assert response.json()["error"]["details"]["region"] == "us-east-1"
    assert not BackupRun.objects.exists() and not repository_dir.exists()


def test_available_backups_rebuilds_the_catalog_from_the_repository(as_role, repository_dir, django_capture_on_commit_callbacks):
    manifest = services.backup_create(backup_type="database")
    client = as_role("read_only")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get("/api/v1/recovery/available-backups").json()["data"] == []  # nothing catalogued yet
        rows = client.get("/api/v1/recovery/available-backups?rebuild=1").json()["data"]
    assert [(r["snapshot_id"], r["kind"], r["bytes_in"]) for r in rows] == [(manifest["id"], "database", manifest["stats"]["bytes_in"])]
    audit_events_flush()
    assert AuditEvent.objects.filter(event_type="backup.accessed").count() == 2


def test_a_test_restore_by_a_recovery_specialist_runs_as_a_job(as_role, repository_dir, eager_runs):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    client = as_role("recovery_specialist")
    response = client.post(f"/api/v1/validation/test-restore/{snapshot_id}")
    assert response.status_code == 202
    status = client.get(f"/api/v1/backup/status/{response.json()['data']['job_id']}").json()["data"]
    assert status["status"] == RunStatus.SUCCEEDED and status["result"]["ok"] and status["result"]["tables_checked"] > 0


def test_an_integrity_check_of_a_snapshot_runs_as_a_job(as_role, repository_dir, eager_runs):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    client = as_role("backup_operator")
    job = client.post(f"/api/v1/validation/integrity/{snapshot_id}").json()["data"]["job_id"]
    result = client.get(f"/api/v1/backup/status/{job}").json()["data"]["result"]
    assert result["ok"] and result["snapshots_checked"] == 1


def test_validating_an_unknown_snapshot_is_a_400_and_starts_nothing(as_role, repository_dir):
    services.backup_create(backup_type="database")
    response = as_role("backup_admin").post("/api/v1/validation/test-restore/20260101T000000000000Z-00000000")
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT"
    assert not BackupRun.objects.exists()


def test_a_legal_hold_set_by_a_compliance_officer_blocks_forget(as_role, repository_dir, django_capture_on_commit_callbacks):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    refused = as_role("backup_operator").post("/api/v1/compliance/legal-hold", {"snapshot_id": snapshot_id, "reason": "audit"}, content_type="application/json")
    assert refused.status_code == 403
    client = as_role("compliance_officer")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/compliance/legal-hold", {"snapshot_id": snapshot_id, "reason": "litigation 42"}, content_type="application/json")
        assert response.status_code == 200 and response.json()["data"]["held"] is True
        assert client.get("/api/v1/compliance/legal-hold").json()["data"]["holds"] == [snapshot_id]
        with pytest.raises(RepositoryError, match="legal hold"):
            services.backup_forget(snapshot_ids=[snapshot_id])
    audit_events_flush()
    assert {e.outcome for e in AuditEvent.objects.filter(event_type__in=["backup.hold", "backup.deleted"])} == {"success", "failure"}


def test_the_catalog_command_rebuilds_from_the_repository(repository_dir):
    from io import StringIO

    from django.core.management import call_command

    from apps.backups.engine.models import SnapshotRecord

    first = services.backup_create(backup_type="database")["id"]
    out = StringIO()
    call_command("backup", "catalog", stdout=out)
    assert "1 added" in out.getvalue() and SnapshotRecord.objects.get().snapshot_id == first
    services.backup_forget(snapshot_ids=[first])
    call_command("backup", "catalog", stdout=out)
    assert "1 removed" in out.getvalue() and not SnapshotRecord.objects.exists()
