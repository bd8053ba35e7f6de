"""Server backups' Celery tasks: a run, a scheduled run, and the periodic delay check and retention.

Tasks take ids (CONVENTIONS 7). Priorities: a scheduled run is sent with its schedule's priority
(the beat entry carries it), on-demand backups with 0, test restores and verifies with 9; the
Redis transport serves lower numbers first, so a queued drill never holds back the hourly
database backup (the embedded mode's file-system broker is FIFO, and its one worker runs one
task at a time: a drill running there delays a backup until it ends).
"""

from __future__ import annotations

from celery import shared_task

from apps.backups.engine import runs, scheduling, services
from apps.backups.engine.models import BackupSchedule, RunKind, RunTrigger
from apps.backups.engine.repository import RepositoryError
from apps.cluster.jobs import job_run_once
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="backups.backup_run")
def backup_run_task(run_id: str) -> str:
    """Carry out one requested run (refused if its schedule or type is already running)."""
    return runs.backup_run_execute(run_id=run_id).status


@shared_task(name=scheduling.SCHEDULED_TASK)
def backup_scheduled_run_task(schedule_id: int) -> str | None:
    """Beat's entry for a schedule: a run of it, now, in this worker; None if the schedule is gone or disabled."""
    schedule = BackupSchedule.objects.select_related("location").filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return None
    try:
        run = runs.backup_run_request(schedule=schedule, trigger=RunTrigger.SCHEDULE, enqueue=False)
    except runs.ComplianceViolation:
        return "refused"
    return runs.backup_run_execute(run_id=run.pk).status


@shared_task(name="backups.backup_delays_check")
def backup_delays_check_task() -> int | None:
    """BACKUP_DELAYED for missed scheduled runs, once per cluster."""
    return job_run_once("backup-delays-check", lambda lease: len(scheduling.backup_delays_check()))


@shared_task(name="backups.backup_retention_apply")
def backup_retention_apply_task() -> int | None:
    """Each schedule's retention as a run of its own (audited, alerted on failure), once per cluster."""

    def apply(lease) -> int:
        done = 0
        for schedule in BackupSchedule.objects.select_related("location"):
            if not any((schedule.keep_last, schedule.keep_daily, schedule.keep_weekly, schedule.keep_monthly, schedule.keep_yearly,
                        schedule.delete_after_days is not None, schedule.archive_after_days is not None)):  # fmt: skip
                continue  # no rules: the schedule keeps everything
            lease.check()
            run = runs.backup_run_request(kind=RunKind.RETENTION, schedule=schedule, trigger=RunTrigger.SCHEDULE, enqueue=False)
            runs.backup_run_execute(run_id=run.pk)
            done += 1
        return done

    return job_run_once("backup-retention-apply", apply)


def _scheduled_locations() -> list:
    """The repositories backups go to: the default one and each enabled schedule's storage location."""
    locations = {None}
    for schedule in BackupSchedule.objects.select_related("location").filter(enabled=True, location__isnull=False):
        locations.add(schedule.location)
    return sorted(locations, key=lambda location: location.name if location else "")


def _validation_scheduled(kind: str, lease) -> list[str]:
    """One `kind` run (test restore or verify) per repository that exists, carried out here; their statuses."""
    statuses = []
    for location in _scheduled_locations():
        url = runs.run_location_url(location)
        try:
            repo = services.backup_repository_open(repository=url)
            snapshot_id = services.snapshot_latest_with_database(repo) if kind == RunKind.TEST_RESTORE else ""
        except RepositoryError:
            continue  # no repository there yet (nothing backed up), or unreachable: the backups' own runs alert
        if kind == RunKind.TEST_RESTORE and snapshot_id is None:
            continue
        lease.check()
        run = runs.backup_run_request(kind=kind, location=location, trigger=RunTrigger.SCHEDULE, snapshot_id=snapshot_id, enqueue=False)
        statuses.append(runs.backup_run_execute(run_id=run.pk).status)
    return statuses


@shared_task(name="backups.backup_test_restore_scheduled")
def backup_test_restore_scheduled_task() -> list[str] | None:
    """The automated drill: restore each repository's newest database snapshot into scratch space and
    compare every table (RECOVERY_FAILED and a report on a mismatch), once per cluster."""
    return job_run_once("backup-test-restore-scheduled", lambda lease: _validation_scheduled(RunKind.TEST_RESTORE, lease))


@shared_task(name="backups.backup_verify_scheduled")
def backup_verify_scheduled_task() -> list[str] | None:
    """Re-read every chunk of each repository (CORRUPTION_DETECTED and a report on damage), once per cluster."""
    return job_run_once("backup-verify-scheduled", lambda lease: _validation_scheduled(RunKind.VERIFY, lease))


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="backup-delays-check",
        task="backups.backup_delays_check",
        every_seconds=300,
        description="Raise BACKUP_DELAYED for scheduled backups that did not start on time.",
    ),
    PeriodicTaskSpec(
        name="backup-retention-apply",
        task="backups.backup_retention_apply",
        every_seconds=3600,
        description="Apply each backup schedule's retention rules (GFS, delete/archive after days; holds respected).",
    ),
    PeriodicTaskSpec(
        name="backup-test-restore",
        task="backups.backup_test_restore_scheduled",
        every_seconds=24 * 3600,
        description="Test-restore each repository's newest database snapshot and compare every table (RECOVERY_FAILED on a mismatch).",
    ),
    PeriodicTaskSpec(
        name="backup-verify",
        task="backups.backup_verify_scheduled",
        every_seconds=7 * 24 * 3600,
        description="Verify every chunk of each backup repository (CORRUPTION_DETECTED on damage).",
    ),
]
