"""Schedules as data, runs once per cluster, alerts, audit and retention per schedule."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import Group
from django_celery_beat.models import PeriodicTask

from apps.audit.models import AuditEvent
from apps.audit.services import audit_events_flush
from apps.backups.engine import repository as repository_module
from apps.backups.engine import runs, scheduling, services
from apps.backups.engine.models import AlertKind, BackupAlert, BackupRun, BackupSchedule, RunKind, RunStatus, StorageLocation
from apps.backups.engine.tasks import (
    backup_retention_apply_task,
    backup_scheduled_run_task,
    backup_test_restore_scheduled_task,
    backup_verify_scheduled_task,
)
from apps.cluster.jobs import job_lease_acquire
from homepocket.api.errors import ApplicationError

pytestmark = pytest.mark.django_db(transaction=True)


def _schedule(**fields) -> BackupSchedule:
    return scheduling.backup_schedule_save(schedule=BackupSchedule(**{"name": "hourly-db", "backup_type": "database", "crontab": "0 * * * *", "priority": 0, **fields}))


def _audited(event_type: str) -> list[AuditEvent]:
    audit_events_flush()
    return list(AuditEvent.objects.filter(event_type=event_type))


def test_saving_a_schedule_writes_its_beat_crontab_entry(repository_dir):
    schedule = _schedule(crontab="15 3 * * 1")
    task = PeriodicTask.objects.get(name=schedule.beat_name)
    assert (task.task, json.loads(task.args), task.priority, task.enabled) == ("backups.backup_scheduled_run", [schedule.pk], 0, True)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "3", "1")
    schedule.crontab, schedule.enabled = "*/10 * * * *", False
    scheduling.backup_schedule_save(schedule=schedule)
    task.refresh_from_db()
    assert (task.crontab.minute, task.enabled) == ("*/10", False)
    assert len(_audited("backup.schedule_changed")) == 2


def test_a_bad_crontab_is_refused_and_changes_nothing(repository_dir):
    with pytest.raises(ApplicationError) as refused:
        _schedule(crontab="99 * * * *")
    assert refused.value.code == "INVALID_ARGUMENT"
    assert not BackupSchedule.objects.exists() and not PeriodicTask.objects.filter(name__startswith="backup-schedule:").exists()


def test_deleting_a_schedule_deletes_its_beat_entry(repository_dir):
    schedule = _schedule()
    scheduling.backup_schedule_delete(schedule=schedule)
    assert not PeriodicTask.objects.filter(name__startswith="backup-schedule:").exists()


def test_a_scheduled_run_makes_a_snapshot_records_it_and_audits_it(repository_dir):
    schedule = _schedule()
    assert backup_scheduled_run_task(schedule.pk) == RunStatus.SUCCEEDED
    run = BackupRun.objects.get()
    manifest = services.backup_repository_open().snapshot_get(run.snapshot_id)
    assert manifest["schedule"] == "hourly-db" and manifest["kind"] == "database"
    schedule.refresh_from_db()
    assert schedule.last_success_at and schedule.last_started_at
    [event] = _audited("backup.run")
    assert event.outcome == "success" and event.details["snapshot_id"] == run.snapshot_id


def test_a_run_of_a_schedule_already_running_is_refused(repository_dir):
    schedule = _schedule()
    held = job_lease_acquire(f"backup-backup-{schedule.pk}")  # another node is running this schedule
    try:
        assert backup_scheduled_run_task(schedule.pk) == RunStatus.REFUSED
    finally:
        held.release()
    assert not repository_dir.exists()  # refused before the repository was touched
    assert backup_scheduled_run_task(schedule.pk) == RunStatus.SUCCEEDED


def test_a_failed_run_raises_backup_failed_and_is_audited(repository_dir, tmp_path):
    (tmp_path / "master-key.json").write_text("not a key file")
    schedule = _schedule()
    assert backup_scheduled_run_task(schedule.pk) == RunStatus.FAILED
    alert = BackupAlert.objects.get()
    assert alert.kind == AlertKind.BACKUP_FAILED and alert.schedule == schedule and alert.run.status == RunStatus.FAILED
    assert _audited("backup.run")[0].outcome == "failure"


def test_a_failed_test_restore_raises_recovery_failed(repository_dir):
    run = runs.backup_run_request(kind=RunKind.TEST_RESTORE, enqueue=False)  # no snapshot to restore
    assert runs.backup_run_execute(run_id=run.pk).status == RunStatus.FAILED
    assert BackupAlert.objects.get().kind == AlertKind.RECOVERY_FAILED


def test_a_verify_that_finds_damage_raises_corruption_detected(repository_dir):
    services.backup_create(objects=False)
    victim = next(p for p in (repository_dir / "data").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
    run = runs.backup_run_request(kind=RunKind.VERIFY, enqueue=False)
    assert runs.backup_run_execute(run_id=run.pk).status == RunStatus.FAILED
    alert = BackupAlert.objects.get()
    assert alert.kind == AlertKind.CORRUPTION_DETECTED
    assert BackupRun.objects.get(pk=run.pk).result["problems"][0]["chunk"] == victim.name


def test_a_missed_run_raises_one_backup_delayed_alert(repository_dir, settings):
    settings.BACKUP_DELAY_GRACE_SECONDS = 600
    schedule = _schedule(crontab="0 * * * *")
    created = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    BackupSchedule.objects.filter(pk=schedule.pk).update(created_at=created)
    assert scheduling.backup_delays_check(now=created + timedelta(minutes=35)) == []  # due 10:00, within the grace
    [alert] = scheduling.backup_delays_check(now=created + timedelta(minutes=45))
    assert alert.kind == AlertKind.BACKUP_DELAYED and alert.schedule_id == schedule.pk and "10:00" in alert.message
    assert scheduling.backup_delays_check(now=created + timedelta(minutes=50)) == []  # once per missed run
    BackupSchedule.objects.filter(pk=schedule.pk).update(last_started_at=created + timedelta(minutes=52))
    assert scheduling.backup_delays_check(now=created + timedelta(minutes=55)) == []  # a run started: not delayed


def test_a_scheduled_backup_outside_the_allowed_regions_is_refused(repository_dir, settings):
    settings.BACKUP_ALLOWED_REGIONS = ["eu-central-1"]
    location = StorageLocation.objects.create(name="us", url=str(repository_dir), region="us-east-1")
    with pytest.raises(ApplicationError) as refused:
        _schedule(location=location)
    assert refused.value.code == "COMPLIANCE_VIOLATION" and refused.value.status == 403
    assert BackupAlert.objects.get().kind == AlertKind.COMPLIANCE_VIOLATION
    # A schedule saved before the policy changed is refused at run time, before anything is read.
    settings.BACKUP_ALLOWED_REGIONS = []
    schedule = _schedule(location=location)
    settings.BACKUP_ALLOWED_REGIONS = ["eu-central-1"]
    assert backup_scheduled_run_task(schedule.pk) == "refused"
    assert not repository_dir.exists()


def test_on_demand_runs_are_enqueued_with_backups_before_drills(repository_dir, monkeypatch, django_capture_on_commit_callbacks):
    from apps.backups.engine import tasks

    sent = []
    monkeypatch.setattr(tasks.backup_run_task, "apply_async", lambda args, priority: sent.append((args[0], priority)))
    with django_capture_on_commit_callbacks(execute=True):
        drill = runs.backup_run_request(kind=RunKind.TEST_RESTORE)
        backup = runs.backup_run_request(backup_type="database")
        scheduled = runs.backup_run_request(schedule=_schedule(name="weekly-full", backup_type="full", priority=4))
    assert sent == [(str(drill.pk), 9), (str(backup.pk), 0), (str(scheduled.pk), 4)]


@pytest.fixture
def clock(monkeypatch):
    class Clock:
        at = datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc)

    monkeypatch.setattr(repository_module, "_now", lambda: Clock.at)
    return Clock


def test_retention_keeps_what_the_schedules_rules_keep_and_never_a_held_snapshot(repository_dir, clock):
    schedule = _schedule(keep_daily=2, delete_after_days=30)
    other = _schedule(name="other", keep_daily=1)
    ids = []
    for day in range(4):
        clock.at = datetime(2026, 1, 1 + day, 3, 0, tzinfo=timezone.utc)
        ids.append(services.backup_create(backup_type="database", schedule=schedule.name)["id"])
    foreign = services.backup_create(backup_type="database", schedule=other.name)["id"]
    services.backup_hold(snapshot_id=ids[0], reason="litigation")
    now = datetime(2026, 1, 5, tzinfo=timezone.utc)
    preview = scheduling.schedule_retention_apply(schedule=schedule, dry_run=True, now=now)
    assert (preview["forgotten"], preview["held"], preview["kept"]) == ([ids[1]], [ids[0]], ids[2:])
    assert services.backup_repository_open().snapshot_ids() == sorted([*ids, foreign])  # a dry run changes nothing
    scheduling.schedule_retention_apply(schedule=schedule, now=now)
    assert services.backup_repository_open().snapshot_ids() == sorted([ids[0], *ids[2:], foreign])  # the other schedule's stays
    # delete_after_days forgets what GFS would keep, once old enough (the hold still wins).
    result = scheduling.schedule_retention_apply(schedule=schedule, now=now + timedelta(days=40))
    assert result["forgotten"] == ids[2:] and result["held"] == [ids[0]]
    [event, *_] = [e for e in _audited("backup.retention") if e.outcome == "success"]
    assert event.details["schedule"] == "hourly-db"
    assert any(e.details.get("step") == "forget" for e in _audited("backup.deleted"))


def test_the_retention_task_runs_each_schedule_with_rules_as_an_audited_run(repository_dir):
    schedule = _schedule(keep_last=1)
    _schedule(name="keeps-everything")
    for _ in range(2):
        services.backup_create(backup_type="database", schedule=schedule.name)
    assert backup_retention_apply_task() == 1
    run = BackupRun.objects.get(kind=RunKind.RETENTION)
    assert run.status == RunStatus.SUCCEEDED and len(run.result["forgotten"]) == 1
    assert len(services.backup_repository_open().snapshot_ids()) == 1


def test_the_scheduled_drill_test_restores_the_newest_database_snapshot_and_reports_it(repository_dir):
    assert backup_test_restore_scheduled_task() == []  # no repository yet: nothing to drill, no alert
    services.backup_create(backup_type="database")
    newest = services.backup_create(backup_type="database")
    services.backup_create(backup_type="objects")  # newer, but holds no database

    assert backup_test_restore_scheduled_task() == [RunStatus.SUCCEEDED]
    run = BackupRun.objects.get(kind=RunKind.TEST_RESTORE)
    assert run.trigger == "schedule" and run.snapshot_id == newest["id"]
    assert run.result["ok"] is True and run.result["tables_checked"] > 0
    assert not BackupAlert.objects.exists()


def test_the_scheduled_verify_reports_damage_with_corruption_detected(repository_dir):
    services.backup_create(objects=False)
    victim = next(p for p in (repository_dir / "data").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))

    assert backup_verify_scheduled_task() == [RunStatus.FAILED]
    run = BackupRun.objects.get(kind=RunKind.VERIFY)
    assert run.trigger == "schedule" and run.result["problems"][0]["chunk"] == victim.name
    assert BackupAlert.objects.get().kind == AlertKind.CORRUPTION_DETECTED


@pytest.mark.django_db  # not transactional: pytest-django runs these before any flush drops the migration's rows
def test_the_roles_exist_with_their_permissions():
    perms = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.filter(name__in=["backup_admin", "backup_operator", "recovery_specialist", "compliance_officer", "read_only"])}
    assert len(perms) == 5
    assert perms["read_only"] == {"backup_view", "view_allowedregion"}
    assert "backup_restore" in perms["recovery_specialist"] and "backup_restore" not in perms["backup_operator"]
    assert "backup_manage_holds" in perms["compliance_officer"] and "backup_delete" in perms["backup_admin"]
    # The residency policy (migration 0004): compliance officers change it, the others only see it.
    assert {"add_allowedregion", "change_allowedregion", "delete_allowedregion"} <= perms["compliance_officer"]
    assert not any(p.startswith(("add_", "change_", "delete_")) for role in perms if role != "compliance_officer" for p in perms[role] if p.endswith("_allowedregion"))


def test_migrate_with_pending_migrations_takes_a_database_backup_first(repository_dir, settings):
    from django.apps import apps as django_apps

    from apps.backups.engine.before_migrate import backup_before_migrate

    config = django_apps.get_app_config("backups")
    assert backup_before_migrate(config, plan=[("a migration", False)]) is None  # off by default
    settings.BACKUP_BEFORE_MIGRATE = True
    assert backup_before_migrate(config, plan=[]) is None  # nothing to apply: no backup
    snapshot_id = backup_before_migrate(config, plan=[("a migration", False)])
    manifest = services.backup_repository_open().snapshot_get(snapshot_id)
    assert manifest["trigger"] == "pre_migrate" and manifest["kind"] == "database"


def test_migrate_runs_the_trigger_through_the_signal(repository_dir, settings):
    from io import StringIO

    from django.core.management import call_command

    call_command("migrate", "backups", "0002", verbosity=0, stdout=StringIO())  # one migration pending again
    settings.BACKUP_BEFORE_MIGRATE = True
    call_command("migrate", "backups", verbosity=0, stdout=StringIO())
    [manifest] = services.backup_repository_open().snapshots()
    assert manifest["trigger"] == "pre_migrate"
    assert Group.objects.filter(name="read_only").exists()  # and the migration then ran


def test_the_retention_command_shows_a_dry_run_and_changes_nothing(repository_dir):
    from io import StringIO

    from django.core.management import call_command

    schedule = _schedule(keep_last=1)
    first = services.backup_create(backup_type="database", schedule=schedule.name)["id"]
    services.backup_create(backup_type="database", schedule=schedule.name)
    out = StringIO()
    call_command("backup", "retention", "--dry-run", stdout=out)
    assert f"hourly-db: would forget {first}" in out.getvalue()
    assert len(services.backup_repository_open().snapshot_ids()) == 2
    call_command("backup", "retention", "--schedule", "hourly-db", stdout=out)
    assert f"hourly-db: forgot {first}" in out.getvalue()
    assert first not in services.backup_repository_open().snapshot_ids()


def test_a_store_that_runs_out_of_space_raises_storage_full(repository_dir, monkeypatch):
    import errno

    from apps.backups.engine.stores import LocalStore

    def full(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStore, "write_new", full)
    run = runs.backup_run_request(backup_type="database", enqueue=False)
    assert runs.backup_run_execute(run_id=run.pk).status == RunStatus.FAILED
    assert BackupAlert.objects.get().kind == AlertKind.STORAGE_FULL
