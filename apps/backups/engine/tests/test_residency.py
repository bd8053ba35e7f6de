"""The data-residency policy as rows compliance officers edit in the admin (AllowedRegion)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.audit.models import AuditEvent
from apps.audit.services import audit_events_flush
from apps.backups.engine import scheduling
from apps.backups.engine.models import AlertKind, AllowedRegion, BackupAlert, BackupSchedule, StorageLocation
from apps.backups.engine.runs import residency_allowed_regions
from homepocket.api.errors import ApplicationError

pytestmark = pytest.mark.django_db


def _roles_as_migrated() -> None:
    """The groups and grants of migrations 0003 and 0004, again: a transactional test elsewhere in the
    run flushes every table, groups included (idempotent: get_or_create and add)."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    editor = SimpleNamespace(connection=connection)
    importlib.import_module("apps.backups.migrations.0003_backup_roles").create_roles(apps, editor)
    importlib.import_module("apps.backups.migrations.0004_allowed_regions").grant(apps, editor)


def _schedule_to(location: StorageLocation) -> BackupSchedule:
    return scheduling.backup_schedule_save(
        schedule=BackupSchedule(name=f"db-{location.name}", backup_type="database", crontab="0 * * * *", location=location)
    )


@pytest.fixture
def signed_in(client):
    _roles_as_migrated()

    def sign_in(role: str):
        user = get_user_model().objects.create_user(username=role, password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return sign_in


def test_the_rows_are_the_policy_and_win_over_the_setting(repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS = ["us-east-1"]
    assert residency_allowed_regions() == ["us-east-1"]  # no row yet: the setting applies
    AllowedRegion.objects.create(region="eu-central-1")
    AllowedRegion.objects.create(region="eu-west-3")
    assert residency_allowed_regions() == ["eu-central-1", "eu-west-3"]
    us = StorageLocation.objects.create(name="us", url=str(repository_dir), region="us-east-1")
    with pytest.raises(ApplicationError) as refused:
        _schedule_to(us)
    assert refused.value.code == "COMPLIANCE_VIOLATION"
    assert refused.value.details["allowed_regions"] == ["eu-central-1", "eu-west-3"]
    assert BackupAlert.objects.get().kind == AlertKind.COMPLIANCE_VIOLATION
    assert not BackupSchedule.objects.exists()  # refused: nothing saved
    paris = StorageLocation.objects.create(name="paris", url=str(repository_dir), region="eu-west-3")
    assert _schedule_to(paris).pk


def test_with_neither_rows_nor_setting_any_region_is_allowed(repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS = []
    anywhere = StorageLocation.objects.create(name="anywhere", url=str(repository_dir), region="ap-south-1")
    assert _schedule_to(anywhere).pk


def test_a_compliance_officer_allows_and_removes_a_region_in_the_admin_and_each_change_is_audited(signed_in, django_capture_on_commit_callbacks):
    client = signed_in("compliance_officer")
    with django_capture_on_commit_callbacks(execute=True):  # audit events are buffered at commit
        answer = client.post("/admin/backups/allowedregion/add/", {"region": "eu-central-1", "note": "GDPR: EU only"})
    assert answer.status_code == 302
    region = AllowedRegion.objects.get()
    assert (region.region, region.created_by) == ("eu-central-1", "compliance_officer")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/admin/backups/allowedregion/{region.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not AllowedRegion.objects.exists()
    audit_events_flush()
    changes = AuditEvent.objects.filter(event_type="config.changed", target="backup_residency").order_by("id")
    assert [(e.details["region"], e.details["action"], e.details["actor"]) for e in changes] == [
        ("eu-central-1", "allowed", "compliance_officer"), ("eu-central-1", "removed", "compliance_officer"),
    ]  # fmt: skip


@pytest.mark.parametrize("role", ["backup_operator", "backup_admin", "read_only"])
def test_other_roles_see_the_policy_but_cannot_change_it(signed_in, role):
    AllowedRegion.objects.create(region="eu-central-1")
    client = signed_in(role)
    assert client.get("/admin/backups/allowedregion/").status_code == 200
    assert client.post("/admin/backups/allowedregion/add/", {"region": "us-east-1"}).status_code == 403
    region = AllowedRegion.objects.get()
    assert client.post(f"/admin/backups/allowedregion/{region.pk}/delete/", {"post": "yes"}).status_code == 403
    assert list(AllowedRegion.objects.values_list("region", flat=True)) == ["eu-central-1"]  # unchanged
