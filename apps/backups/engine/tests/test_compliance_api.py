"""The compliance endpoints: retention policies, the backup audit trail, and where one book's data lives."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_event_record, audit_events_flush
from apps.backups.engine import services
from apps.backups.engine.compliance_api import BackupAuditCursor
from apps.backups.engine.models import BackupSchedule, StorageLocation
from apps.photos.tests.conftest import local_store, moto_s3, photo_create, s3_store  # noqa: F401 (fixtures)

# Not transactional: the role groups come from a data migration, which a transactional test's flush would drop.
pytestmark = pytest.mark.django_db

RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "archive_after_days", "delete_after_days")


def _error(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def nightly(repository_dir):
    return BackupSchedule.objects.create(name="nightly", backup_type="database", crontab="0 2 * * *", keep_daily=7, archive_after_days=30)


def _rules(schedule: BackupSchedule) -> dict:
    schedule.refresh_from_db()
    return {field: getattr(schedule, field) for field in RULES}


# --- retention policy ----------------------------------------------------------------------------


def test_the_retention_policy_lists_each_schedules_rules_and_its_held_snapshots(as_role, nightly):
    mine = services.backup_create(backup_type="database", schedule="nightly")["id"]
    services.backup_create(backup_type="database", schedule="nightly")
    on_demand = services.backup_create(backup_type="database")["id"]
    services.backup_hold(snapshot_id=mine, reason="litigation 42")
    services.backup_hold(snapshot_id=on_demand, reason="litigation 42")
    data = as_role("compliance_officer").get("/api/v1/compliance/retention-policy").json()["data"]
    [row] = data["schedules"]
    assert row["name"] == "nightly" and row["keep_daily"] == 7 and row["archive_after_days"] == 30 and row["delete_after_days"] is None
    assert row["held_snapshots"] == 1 and row["keeps_everything"] is False
    assert data["held_snapshots"] == 2


def test_an_operator_changes_a_schedules_retention_and_the_change_is_audited(as_role, nightly, django_capture_on_commit_callbacks):
    client = as_role("backup_operator")
    changes = {"keep_daily": 14, "keep_monthly": 12, "delete_after_days": 400}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(f"/api/v1/compliance/retention-policy/{nightly.pk}", changes, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["keep_monthly"] == 12 and response.json()["data"]["held_snapshots"] == 0
    assert _rules(nightly) == {**dict.fromkeys(RULES, 0), "archive_after_days": 30, **changes}
    audit_events_flush()
    event = AuditEvent.objects.get(event_type="backup.schedule_changed")
    assert event.details["retention"]["delete_after_days"] == 400 and event.details["actor"] == "backup_operator-True"


@pytest.mark.parametrize(
    "body",
    [
        {"keep_daily": -1},
        {"delete_after_days": 10},  # before the schedule's archive_after_days (30): checked by the service
        {"archive_after_days": 90, "delete_after_days": 60},
        {"delete_after_days": 0},  # keeps nothing
        {"keep_last": "many"},
        {"crontab": "* * * * *"},  # not a retention rule: /backup/schedule/{id} changes it
        {},
    ],
)
def test_a_bad_retention_change_is_a_400_that_changes_nothing(as_role, nightly, body):
    before = _rules(nightly)
    response = as_role("backup_admin").patch(f"/api/v1/compliance/retention-policy/{nightly.pk}", body, content_type="application/json")
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT", body
    assert _rules(nightly) == before and BackupSchedule.objects.get().crontab == "0 2 * * *"


def test_the_schedule_endpoint_refuses_contradicting_retention_too(as_role, nightly):
    response = as_role("backup_operator").patch(f"/api/v1/backup/schedule/{nightly.pk}", {"delete_after_days": 5}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "delete_after_days"
    assert _rules(nightly)["delete_after_days"] is None


@pytest.mark.parametrize("role", ["compliance_officer", "recovery_specialist", "read_only"])
def test_roles_that_do_not_manage_schedules_cannot_change_retention(as_role, nightly, role):
    before = _rules(nightly)
    client = as_role(role)
    assert client.get(f"/api/v1/compliance/retention-policy/{nightly.pk}").json()["data"]["keep_daily"] == 7
    response = client.patch(f"/api/v1/compliance/retention-policy/{nightly.pk}", {"keep_daily": 1}, content_type="application/json")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"
    assert _rules(nightly) == before


def test_the_retention_of_an_unknown_schedule_is_a_404(as_role, repository_dir):
    response = as_role("backup_admin").patch("/api/v1/compliance/retention-policy/999", {"keep_daily": 1}, content_type="application/json")
    assert response.status_code == 404 and _error(response) == "NOT_FOUND"


# --- audit log -----------------------------------------------------------------------------------


@pytest.fixture
def backup_trail(django_capture_on_commit_callbacks):
    """Three backup events (two runs, one failed restore) and one event of another app."""
    with django_capture_on_commit_callbacks(execute=True):
        audit_event_record(event_type="backup.run", outcome="success", target="backup_run:1")
        audit_event_record(event_type="backup.restored", outcome="failure", target="backup_run:2")
        audit_event_record(event_type="backup.run", outcome="success", target="backup_run:3")
        audit_event_record(event_type="config.changed", outcome="success", target="backup_residency")
    audit_events_flush()


def test_a_compliance_officer_reads_the_backup_trail_only_newest_first(as_role, backup_trail):
    rows = as_role("compliance_officer").get("/api/v1/compliance/audit-log").json()["data"]["results"]
    assert [row["target"] for row in rows] == ["backup_run:3", "backup_run:2", "backup_run:1"]


def test_the_trail_filters_by_event_type_outcome_and_time(as_role, backup_trail):
    client = as_role("backup_admin")
    runs_only = client.get("/api/v1/compliance/audit-log?event_type=backup.run").json()["data"]["results"]
    assert [row["target"] for row in runs_only] == ["backup_run:3", "backup_run:1"]
    failures = client.get("/api/v1/compliance/audit-log", {"outcome": "failure"}).json()["data"]["results"]
    assert [row["target"] for row in failures] == ["backup_run:2"]
    hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/compliance/audit-log", {"until": hour_ago}).json()["data"]["results"] == []
    assert len(client.get("/api/v1/compliance/audit-log", {"since": hour_ago}).json()["data"]["results"]) == 3


def test_the_trail_is_cursor_paginated(as_role, backup_trail, monkeypatch):
    monkeypatch.setattr(BackupAuditCursor, "page_size", 2)
    client = as_role("compliance_officer")
    first = client.get("/api/v1/compliance/audit-log").json()["data"]
    second = client.get(first["next"]).json()["data"]
    assert [row["target"] for row in first["results"] + second["results"]] == ["backup_run:3", "backup_run:2", "backup_run:1"]
    assert second["next"] is None


@pytest.mark.parametrize("query", [{"event_type": "config.changed"}, {"outcome": "maybe"}, {"since": "yesterday"}, {"since": "2026-02-01T00:00Z", "until": "2026-01-01T00:00Z"}])
def test_a_bad_audit_filter_is_a_400(as_role, backup_trail, query):
    response = as_role("compliance_officer").get("/api/v1/compliance/audit-log", query)
    assert response.status_code == 400 and _error(response) == "INVALID_ARGUMENT"


def test_reading_the_trail_is_itself_audited(as_role, backup_trail, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert as_role("compliance_officer").get("/api/v1/compliance/audit-log?outcome=failure").status_code == 200
    audit_events_flush()
    event = AuditEvent.objects.get(event_type="backup.accessed")
    assert event.target == "audit_log" and event.details == {"actor": "compliance_officer-True", "filters": {"outcome": "failure"}}


def test_a_malformed_cursor_is_a_404(as_role, backup_trail):
    response = as_role("compliance_officer").get("/api/v1/compliance/audit-log", {"cursor": "not-a-cursor"})
    assert response.status_code == 404 and _error(response) == "NOT_FOUND"


@pytest.mark.parametrize("role", ["backup_operator", "recovery_specialist", "read_only"])
def test_roles_without_backup_read_audit_cannot_read_the_trail(as_role, backup_trail, role):
    response = as_role(role).get("/api/v1/compliance/audit-log")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"


def test_a_non_staff_or_anonymous_caller_cannot_read_the_trail(as_role, client, backup_trail):
    assert client.get("/api/v1/compliance/audit-log").status_code in (401, 403)
    assert as_role("compliance_officer", staff=False).get("/api/v1/compliance/audit-log").status_code == 403


# --- data residency ------------------------------------------------------------------------------


def test_a_books_data_is_reported_where_it_lives_and_is_backed_up(as_role, client, family, alice, local_store, repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS, settings.BACKUP_REPOSITORY_REGION = ["eu-central-1"], "eu-central-1"
    photo_create(client, alice, b"\x00" * 1000)
    services.backup_create()  # database and objects
    services.backup_create(backup_type="database")
    StorageLocation.objects.create(name="frankfurt-2", url=str(repository_dir.parent / "unused"), region="eu-central-1")  # holds nothing
    response = as_role("compliance_officer").get(f"/api/v1/compliance/data-residency/{family.id}")
    data = response.json()["data"]
    assert data["book_id"] == str(family.id) and data["allowed_regions"] == ["eu-central-1"]
    assert data["photo_store"] == {"kind": "local", "region": None, "photos": 1, "bytes": 1000, "allowed": None}
    assert data["backup_locations"] == [
        {"name": "BACKUP_REPOSITORY", "region": "eu-central-1", "allowed": True, "reachable": True, "database_snapshots": 2, "object_snapshots": 1}
    ]
    assert data["compliant"] is True and data["violations"] == []
    assert "alice" not in response.content.decode()


def test_a_location_outside_the_allowed_regions_holding_a_book_is_a_violation(as_role, family, repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS, settings.BACKUP_REPOSITORY_REGION = ["eu-central-1"], "eu-central-1"
    virginia = StorageLocation.objects.create(name="virginia", url=str(repository_dir.parent / "virginia"), region="us-east-1")
    services.backup_create(backup_type="database", repository=virginia.url)  # made before the policy said otherwise
    data = as_role("read_only").get(f"/api/v1/compliance/data-residency/{family.id}").json()["data"]
    assert [(loc["name"], loc["allowed"], loc["database_snapshots"]) for loc in data["backup_locations"]] == [("virginia", False, 1)]
    assert data["compliant"] is False and data["violations"] == [{"where": "backup_location", "name": "virginia", "region": "us-east-1"}]


def test_snapshots_taken_before_a_book_existed_do_not_hold_it(as_role, family, repository_dir, request):
    services.backup_create(backup_type="database")
    neighbours = request.getfixturevalue("neighbours")  # created after the snapshot
    client = as_role("compliance_officer")
    assert client.get(f"/api/v1/compliance/data-residency/{neighbours.id}").json()["data"]["backup_locations"] == []
    assert client.get(f"/api/v1/compliance/data-residency/{family.id}").json()["data"]["backup_locations"][0]["database_snapshots"] == 1


def test_photos_in_an_s3_region_outside_the_policy_are_a_violation(as_role, client, family, alice, s3_store, repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS = ["eu-central-1"]
    photo_create(client, alice, b"\x01" * 500)
    data = as_role("compliance_officer").get(f"/api/v1/compliance/data-residency/{family.id}").json()["data"]
    assert data["photo_store"]["kind"] == "s3" and data["photo_store"]["region"] == "us-east-1" and data["photo_store"]["allowed"] is False
    assert data["compliant"] is False and data["violations"] == [{"where": "photo_store", "name": "s3", "region": "us-east-1"}]


def test_an_unknown_book_is_book_not_found(as_role, repository_dir):
    response = as_role("compliance_officer").get(f"/api/v1/compliance/data-residency/{uuid.uuid4()}")
    assert response.status_code == 404 and _error(response) == "BOOK_NOT_FOUND"


def test_a_member_without_a_backup_role_cannot_see_residency(as_role, client, family, repository_dir):
    assert client.get(f"/api/v1/compliance/data-residency/{family.id}").status_code in (401, 403)
    response = as_role(None).get(f"/api/v1/compliance/data-residency/{family.id}")
    assert response.status_code == 403 and _error(response) == "FORBIDDEN"
