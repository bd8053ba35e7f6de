"""Validation reports and verify-all: what a verify or a test restore found, by the job id the validation endpoints answer with."""

from __future__ import annotations

import uuid

import pytest

from apps.backups.engine import services
from apps.backups.engine.models import AlertKind, BackupAlert, BackupRun, RunKind, RunStatus

# Not transactional: the role groups come from a data migration, which a transactional test's flush would drop.
pytestmark = pytest.mark.django_db


def _error(response) -> str:
    return response.json()["error"]["code"]


def _flip_a_byte_of_a_chunk(repository_dir) -> str:
    victim = sorted(p for p in (repository_dir / "data").rglob("*") if p.is_file())[0]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    victim.write_bytes(bytes(blob))
    return victim.name


def test_the_report_of_an_integrity_check_names_what_it_checked(as_role, repository_dir, eager_runs):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    client = as_role("backup_operator")
    job = client.post(f"/api/v1/validation/integrity/{snapshot_id}").json()["data"]["job_id"]
    report = client.get(f"/api/v1/validation/report/{job}").json()["data"]
    assert report["kind"] == "verify" and report["status"] == RunStatus.SUCCEEDED and report["ok"] is True
    assert report["scope"] == "snapshot" and report["snapshot_id"] == snapshot_id
    assert report["snapshots_checked"] == 1 and report["chunks_checked"] > 0 and report["problems"] == []
    assert "tables_checked" not in report


def test_the_report_of_a_test_restore_gives_tables_rows_and_no_mismatch(as_role, repository_dir, eager_runs):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    client = as_role("recovery_specialist")
    job = client.post(f"/api/v1/validation/test-restore/{snapshot_id}").json()["data"]["job_id"]
    report = client.get(f"/api/v1/validation/report/{job}").json()["data"]
    assert report["kind"] == "test_restore" and report["ok"] is True and report["snapshot_id"] == snapshot_id
    assert report["tables_checked"] > 0 and report["rows"] > 0 and report["mismatches"] == []
    assert "problems" not in report


def test_a_queued_job_reports_its_status_and_no_outcome_yet(as_role, repository_dir):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    client = as_role("read_only")
    run = BackupRun.objects.create(kind=RunKind.VERIFY, trigger="manual", snapshot_id=snapshot_id)
    report = client.get(f"/api/v1/validation/report/{run.pk}").json()["data"]
    assert report["status"] == RunStatus.QUEUED and report["ok"] is None and report["problems"] is None and report["chunks_checked"] is None
    BackupRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, progress="verify: 100/400 chunks read")
    report = client.get(f"/api/v1/validation/report/{run.pk}").json()["data"]
    assert report["status"] == RunStatus.RUNNING and report["progress"] == "verify: 100/400 chunks read" and report["ok"] is None


def test_an_unknown_job_or_a_backup_job_has_no_report(as_role, repository_dir):
    client = as_role("backup_admin")
    response = client.get(f"/api/v1/validation/report/{uuid.uuid4()}")
    assert response.status_code == 404 and _error(response) == "NOT_FOUND"
    backup = BackupRun.objects.create(kind=RunKind.BACKUP, backup_type="database", trigger="manual")
    response = client.get(f"/api/v1/validation/report/{backup.pk}")
    assert response.status_code == 404 and _error(response) == "NOT_FOUND"


def test_verify_all_checks_every_snapshot_and_test_restores_the_newest_database(as_role, repository_dir, eager_runs):
    services.backup_create(backup_type="database")
    newest = services.backup_create(backup_type="database")["id"]
    client = as_role("backup_operator")
    response = client.post("/api/v1/validation/verify-all", {}, content_type="application/json")
    assert response.status_code == 202
    accepted = response.json()["data"]
    verify = client.get(accepted["report_url"]).json()["data"]
    assert verify["scope"] == "repository" and verify["snapshot_id"] is None and verify["ok"] is True and verify["snapshots_checked"] == 2
    drill = client.get(accepted["test_restore"]["report_url"]).json()["data"]
    assert accepted["test_restore"]["snapshot_id"] == newest and drill["snapshot_id"] == newest and drill["ok"] is True
    assert {run.kind for run in BackupRun.objects.all()} == {RunKind.VERIFY, RunKind.TEST_RESTORE}


def test_verify_all_without_the_test_restore_starts_one_verify(as_role, repository_dir):
    services.backup_create(backup_type="database")
    response = as_role("backup_admin").post("/api/v1/validation/verify-all", {"test_restore": False}, content_type="application/json")
    assert response.status_code == 202 and response.json()["data"]["test_restore"] is None
    assert [(run.kind, run.snapshot_id, run.status) for run in BackupRun.objects.all()] == [(RunKind.VERIFY, "", RunStatus.QUEUED)]


def test_verify_all_reports_each_corrupt_chunk_and_raises_corruption_detected(as_role, repository_dir, eager_runs):
    snapshot_id = services.backup_create(backup_type="database")["id"]
    chunk = _flip_a_byte_of_a_chunk(repository_dir)
    client = as_role("backup_admin")
    accepted = client.post("/api/v1/validation/verify-all", {"test_restore": False}, content_type="application/json").json()["data"]
    report = client.get(accepted["report_url"]).json()["data"]
    assert report["status"] == RunStatus.FAILED and report["ok"] is False
    assert {"kind": "corrupt_chunk", "chunk": chunk} == {k: report["problems"][0][k] for k in ("kind", "chunk")}
    damaged = [p for p in report["problems"] if p["kind"] == "damaged_chunk"]
    assert damaged[0]["chunk"] == chunk and damaged[0]["snapshot"] == snapshot_id and damaged[0]["file"].startswith("database/")
    assert BackupAlert.objects.get(kind=AlertKind.CORRUPTION_DETECTED).run_id == uuid.UUID(accepted["job_id"])


def test_verify_all_of_a_missing_repository_is_refused_and_starts_nothing(as_role, repository_dir):
    response = as_role("backup_admin").post("/api/v1/validation/verify-all", {}, content_type="application/json")
    assert response.status_code == 409 and _error(response) == "INVALID_STATE"
    assert not BackupRun.objects.exists()


def test_verify_all_to_an_unknown_location_is_a_400(as_role, repository_dir):
    services.backup_create(backup_type="database")
    response = as_role("backup_admin").post("/api/v1/validation/verify-all", {"location": "nowhere"}, content_type="application/json")
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT"
    assert not BackupRun.objects.exists()


@pytest.mark.parametrize("role", ["read_only", "compliance_officer"])
def test_roles_without_backup_validate_cannot_verify_all(as_role, repository_dir, role):
    services.backup_create(backup_type="database")
    response = as_role(role).post("/api/v1/validation/verify-all", {}, content_type="application/json")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"
    assert not BackupRun.objects.exists()


def test_a_member_without_a_role_cannot_read_a_report(as_role, repository_dir):
    run = BackupRun.objects.create(kind=RunKind.VERIFY, trigger="manual")
    response = as_role(None).get(f"/api/v1/validation/report/{run.pk}")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"


def test_a_non_staff_member_or_an_anonymous_caller_is_refused(as_role, client, repository_dir):
    run = BackupRun.objects.create(kind=RunKind.VERIFY, trigger="manual")
    assert client.get(f"/api/v1/validation/report/{run.pk}").status_code in (401, 403)
    assert client.post("/api/v1/validation/verify-all", {}, content_type="application/json").status_code in (401, 403)
    response = as_role("backup_admin", staff=False).post("/api/v1/validation/verify-all", {}, content_type="application/json")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"
    assert BackupRun.objects.count() == 1
