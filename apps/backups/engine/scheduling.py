"""Backup schedules as data: a `BackupSchedule` row is the truth, its django-celery-beat entry follows it.

- `backup_schedule_save` validates (crontab, residency), saves, and writes the row's crontab
  entry (`PeriodicTask` named `backup-schedule:<id>`, task `backups.backup_scheduled_run`, the
  schedule's Celery priority); the admin's save calls it, so an edit there reschedules at once.
  Deleting the schedule deletes its entry.
- `backup_delays_check` (periodic): a schedule whose last due run has not started
  BACKUP_DELAY_GRACE_SECONDS after it was due raises one BACKUP_DELAYED alert (not one per
  check) until a run starts again.
- `schedule_retention_apply`: the schedule's GFS rules over the snapshots it made (the manifest
  records the schedule's name), plus `delete_after_days` (forgotten past that age whatever GFS
  keeps) and `archive_after_days` (marked archived in the catalog); held snapshots are never
  forgotten (the hold is reported, the rest proceeds). A `wal` schedule forgets exactly the WAL
  snapshots no remaining base backup needs, whatever its rules.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from celery.schedules import ParseException
from celery.schedules import crontab as celery_crontab
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_event_record
from apps.backups.engine import metrics, services
from apps.backups.engine.models import AlertKind, BackupAlert, BackupSchedule, SnapshotRecord
from apps.backups.engine.physical import wal_snapshots_unneeded
from apps.backups.engine.retention import RetentionPolicy, snapshots_to_keep
from apps.backups.engine.runs import alert_raise, location_residency_check, run_location_url
from homepocket.api.errors import ApplicationError

logger = logging.getLogger(__name__)

SCHEDULED_TASK = "backups.backup_scheduled_run"
CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class InvalidSchedule(ApplicationError):
    code = "INVALID_ARGUMENT"
    default_message = "The schedule is not valid."


def crontab_parse(text: str) -> dict:
    """{minute, hour, day_of_month, month_of_year, day_of_week} of a five-field crontab; INVALID_ARGUMENT otherwise."""
    fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule("A crontab has five fields: minute hour day-of-month month day-of-week.", details={"field": "crontab"})
    parsed = dict(zip(CRONTAB_FIELDS, fields, strict=True))
    try:
        celery_crontab(**parsed)
    except (ValueError, TypeError, ParseException) as exc:
        raise InvalidSchedule(f"Invalid crontab: {exc}", details={"field": "crontab"}) from None
    return parsed


RETENTION_FIELDS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "archive_after_days", "delete_after_days")


def schedule_retention_validate(schedule: BackupSchedule) -> None:
    """INVALID_ARGUMENT (naming the field) for retention rules that are negative or contradict each other."""
    for field in RETENTION_FIELDS:
        value = getattr(schedule, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidSchedule(f"{field} is a whole number, 0 or more.", details={"field": field})
    delete_after, archive_after = schedule.delete_after_days, schedule.archive_after_days
    if delete_after == 0:
        # delete_after_days wins over the GFS rules: 0 would forget every snapshot at the next pass.
        raise InvalidSchedule("delete_after_days 0 keeps nothing; leave it empty to keep what the rules keep.", details={"field": "delete_after_days"})
    if delete_after is not None and archive_after is not None and delete_after < archive_after:
        raise InvalidSchedule("delete_after_days is before archive_after_days: nothing would ever be archived.", details={"field": "delete_after_days"})


def schedule_retention(schedule: BackupSchedule) -> dict:
    """The schedule's retention rules as a dict (audit details, the compliance API)."""
    return {field: getattr(schedule, field) for field in RETENTION_FIELDS}


def _crontab(schedule: BackupSchedule, *, now=None) -> celery_crontab:
    return celery_crontab(**crontab_parse(schedule.crontab), nowfun=(lambda: now) if now else None, app=None)


def backup_schedule_save(*, schedule: BackupSchedule, actor: str = "") -> BackupSchedule:
    """Save the schedule and write its django-celery-beat crontab entry (created, updated or disabled)."""
    parsed = crontab_parse(schedule.crontab)
    if schedule.priority > 9:
        raise InvalidSchedule("priority is 0 (first) to 9.", details={"field": "priority"})
    schedule_retention_validate(schedule)
    if schedule.enabled:
        location_residency_check(location=schedule.location)  # outside the transaction: its alert stays
    with transaction.atomic():
        return _schedule_write(schedule, parsed, actor)


def _schedule_write(schedule: BackupSchedule, parsed: dict, actor: str) -> BackupSchedule:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    created = schedule.pk is None
    schedule.save()
    cron, _ = CrontabSchedule.objects.get_or_create(**parsed, timezone=settings.TIME_ZONE)
    task, _ = PeriodicTask.objects.update_or_create(
        name=schedule.beat_name,
        defaults={
            "task": SCHEDULED_TASK, "crontab": cron, "interval": None, "args": json.dumps([schedule.pk]), "enabled": schedule.enabled,
            "priority": schedule.priority, "description": f"Backup schedule {schedule.name} ({schedule.backup_type}); edit the schedule, not this entry.",
        },
    )  # fmt: skip
    if schedule.periodic_task_id != task.pk:
        BackupSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
        schedule.periodic_task = task
    audit_event_record(
        event_type="backup.schedule_changed", outcome="success", target=f"backup_schedule:{schedule.pk}",
        details={"name": schedule.name, "created": created, "crontab": schedule.crontab, "enabled": schedule.enabled, "retention": schedule_retention(schedule), "actor": actor},
    )  # fmt: skip
    return schedule


@transaction.atomic
def backup_schedule_delete(*, schedule: BackupSchedule, actor: str = "") -> None:
    """Delete the schedule and its beat entry (its runs stay, detached)."""
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name=schedule.beat_name).delete()
    audit_event_record(event_type="backup.schedule_changed", outcome="success", target=f"backup_schedule:{schedule.pk}", details={"name": schedule.name, "deleted": True, "actor": actor})
    schedule.delete()


def schedule_due_since(schedule: BackupSchedule, *, now: datetime) -> datetime | None:
    """When the first run after the schedule's last start (or creation) was due, if that is in the past."""
    reference = schedule.last_started_at or schedule.created_at
    remaining = _crontab(schedule, now=now).remaining_estimate(reference)
    return now + remaining if remaining.total_seconds() <= 0 else None


def schedule_next_run(schedule: BackupSchedule, *, now: datetime) -> datetime:
    """When the schedule runs next: the missed run's due time if one is overdue, else the next after now."""
    overdue = schedule_due_since(schedule, now=now)
    return overdue or now + _crontab(schedule, now=now).remaining_estimate(now)


def backup_delays_check(*, now: datetime | None = None) -> list[BackupAlert]:
    """BACKUP_DELAYED for every enabled schedule whose due run is later than the grace; one alert per missed run."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.BACKUP_DELAY_GRACE_SECONDS)
    raised = []
    for schedule in BackupSchedule.objects.filter(enabled=True).select_related("location"):
        if schedule.last_success_at:
            metrics.SCHEDULE_LAST_SUCCESS_AGE.labels(schedule=schedule.name).set((now - schedule.last_success_at).total_seconds())
        due = schedule_due_since(schedule, now=now)
        if due is None or now - due < grace:
            continue
        if BackupAlert.objects.filter(kind=AlertKind.BACKUP_DELAYED, schedule=schedule, details__due_at=due.isoformat()).exists():
            continue  # already raised for this missed run
        raised.append(
            alert_raise(
                kind=AlertKind.BACKUP_DELAYED, schedule_id=schedule.pk,
                message=f"schedule {schedule.name}: the run due at {due:%Y-%m-%d %H:%M} UTC has not started",
                details={"due_at": due.isoformat(), "last_started_at": schedule.last_started_at.isoformat() if schedule.last_started_at else None},
            )
        )  # fmt: skip
    return raised


def schedule_retention_apply(*, schedule: BackupSchedule, dry_run: bool = False, now: datetime | None = None, progress=None) -> dict:
    """Forget the schedule's snapshots its rules do not keep (held ones stay, and are reported); archive old ones."""
    say = progress or (lambda line: None)
    now = now or timezone.now()
    repository = run_location_url(schedule.location)
    repo = services.backup_repository_open(repository=repository)
    mine = [(m["id"], datetime.fromisoformat(m["started_at"])) for m in repo.snapshots() if m.get("schedule") == schedule.name]
    policy = RetentionPolicy(
        keep_last=schedule.keep_last, keep_daily=schedule.keep_daily, keep_weekly=schedule.keep_weekly,
        keep_monthly=schedule.keep_monthly, keep_yearly=schedule.keep_yearly,
    )  # fmt: skip
    keep = snapshots_to_keep(mine, policy) if not policy.empty() else {snapshot_id: ["no rules"] for snapshot_id, _ in mine}
    doomed = {snapshot_id for snapshot_id, _ in mine if snapshot_id not in keep}
    if schedule.backup_type == "wal":
        # WAL is kept by what the base backups need, never by age or count: GFS over WAL would cut
        # the chain a kept base backup recovers through (engine/physical.py).
        unneeded = set(wal_snapshots_unneeded(repo.snapshots())) & {snapshot_id for snapshot_id, _ in mine}
        keep = {snapshot_id: ["a base backup needs it"] for snapshot_id, _ in mine if snapshot_id not in unneeded}
        doomed = unneeded
    elif schedule.delete_after_days is not None:
        cutoff = now - timedelta(days=schedule.delete_after_days)
        doomed |= {snapshot_id for snapshot_id, started in mine if started < cutoff}
    held = sorted(doomed & repo.holds())
    forget = sorted(doomed - set(held))
    archived = []
    if schedule.archive_after_days is not None:
        cutoff = now - timedelta(days=schedule.archive_after_days)
        archived = sorted(snapshot_id for snapshot_id, started in mine if started < cutoff and snapshot_id not in doomed)
    say(f"retention {schedule.name}: {len(mine)} snapshots, forget {len(forget)}, held {len(held)}, archive {len(archived)}{' (dry run)' if dry_run else ''}")
    if not dry_run:
        if forget:
            services.backup_forget(snapshot_ids=forget, repository=repository)
            SnapshotRecord.objects.filter(location_url=repo.location, snapshot_id__in=forget).delete()
        SnapshotRecord.objects.filter(location_url=repo.location, snapshot_id__in=archived).update(archived=True)
    result = {"schedule": schedule.name, "forgotten": forget, "held": held, "archived": archived, "kept": sorted(set(keep) - doomed), "dry_run": dry_run}
    logger.warning("backup.retention", extra={"schedule": schedule.name, "forgotten": len(forget), "held": len(held), "dry_run": dry_run})
    if not dry_run:
        audit_event_record(event_type="backup.retention", outcome="success", target=f"backup_schedule:{schedule.pk}", details={k: v for k, v in result.items() if k != "kept"})
    return result
