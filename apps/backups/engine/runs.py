"""Backup work as runs: requested (a schedule, an operator, `migrate`), run once, recorded, alerted, audited.

Every piece of work (a backup, a test restore, a verify, a retention pass) is a `BackupRun` row,
made QUEUED by `backup_run_request` and carried out by `backup_run_execute` in a Celery worker:

- **One at a time**: the work runs inside `job_run_once` (apps/cluster/jobs.py) under a lock named
  after the schedule (or the kind and type of an on-demand run), so a second run of the same
  schedule anywhere in the cluster while one runs is REFUSED, not queued behind it.
- **Claimed once**: QUEUED → RUNNING is a conditional UPDATE (a task delivered twice runs once).
- **Residency**: a run to a storage location outside the allowed regions (AllowedRegion rows, else
  BACKUP_ALLOWED_REGIONS) is refused with
  COMPLIANCE_VIOLATION before anything is read (and raises that alert).
- **Outcome**: SUCCEEDED with the snapshot and its stats, or FAILED with the error; a failure
  raises BACKUP_FAILED (RECOVERY_FAILED for a test restore or a recovery, CORRUPTION_DETECTED for a verify that
  found damage, STORAGE_FULL when the store ran out of space); every run is an audit event.
"""

from __future__ import annotations

import errno
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_event_record
from apps.backups.engine import metrics, services
from apps.backups.engine.models import AlertKind, BackupAlert, BackupRun, BackupSchedule, RunKind, RunStatus, RunTrigger, StorageLocation
from apps.cluster.jobs import job_run_once
from homepocket.api.errors import ApplicationError

logger = logging.getLogger(__name__)

DRILL_PRIORITY = 9  # Celery priority of test restores and verifies: after every backup (0 is first)


class ComplianceViolation(ApplicationError):
    code = "COMPLIANCE_VIOLATION"
    default_message = "The operation would break a retention or compliance rule."


def alert_raise(*, kind: str, message: str, schedule_id: int | None = None, run_id=None, details: dict | None = None) -> BackupAlert:
    """Record an alert row (admin, API) and count it (Prometheus)."""
    alert = BackupAlert.objects.create(kind=kind, schedule_id=schedule_id, run_id=run_id, message=message[:500], details=details or {})
    metrics.ALERTS.labels(kind=kind).inc()
    logger.error("backup.alert", extra={"kind": kind, "schedule_id": schedule_id, "run_id": str(run_id or "")})
    return alert


def residency_allowed_regions() -> list[str]:
    """The regions backups may go to: the AllowedRegion rows, else BACKUP_ALLOWED_REGIONS (empty: any)."""
    from apps.backups.engine.models import AllowedRegion

    rows = list(AllowedRegion.objects.values_list("region", flat=True))
    return rows or list(settings.BACKUP_ALLOWED_REGIONS)


def location_residency_check(*, location: StorageLocation | None, schedule_id: int | None = None) -> None:
    """COMPLIANCE_VIOLATION (and its alert) when the location's region is not one the policy allows."""
    allowed = residency_allowed_regions()
    if not allowed:
        return
    region = location.region if location is not None else settings.BACKUP_REPOSITORY_REGION
    if region not in allowed:
        name = location.name if location is not None else "BACKUP_REPOSITORY"
        alert_raise(
            kind=AlertKind.COMPLIANCE_VIOLATION, schedule_id=schedule_id,
            message=f"storage location {name} is in region {region or '(unset)'}, outside the allowed regions",
            details={"location": name, "region": region, "allowed": list(allowed)},
        )  # fmt: skip
        raise ComplianceViolation(
            f"Backups may go only to regions {', '.join(allowed)}; {name} is in {region or '(unset)'}.",
            details={"location": name, "region": region, "allowed_regions": list(allowed)},
        )


def run_location_url(location: StorageLocation | None) -> str:
    return location.url if location is not None else services.repository_location()


def backup_run_request(
    *, kind: str = RunKind.BACKUP, backup_type: str = "", schedule: BackupSchedule | None = None, location: StorageLocation | None = None,
    trigger: str = RunTrigger.MANUAL, requested_by: str = "", snapshot_id: str = "", params: dict | None = None, enqueue: bool = True,
) -> BackupRun:
    """A QUEUED run, enqueued for a worker once the transaction commits (refused at once outside the allowed regions)."""  # fmt: skip
    if schedule is not None:
        location, backup_type = schedule.location, schedule.backup_type
    if kind == RunKind.BACKUP:
        location_residency_check(location=location, schedule_id=schedule.pk if schedule else None)
    run = BackupRun.objects.create(
        kind=kind, backup_type=backup_type, schedule=schedule, trigger=trigger, requested_by=requested_by,
        location_url=run_location_url(location), snapshot_id=snapshot_id, params=params or {},
    )  # fmt: skip
    if enqueue:
        from apps.backups.engine.tasks import backup_run_task

        priority = schedule.priority if schedule is not None else (0 if kind == RunKind.BACKUP else DRILL_PRIORITY)
        transaction.on_commit(lambda: backup_run_task.apply_async(args=[str(run.pk)], priority=priority))
    return run


def _lock_name(run: BackupRun) -> str:
    return f"backup-{run.kind}-{run.schedule_id or run.backup_type or 'any'}"


def backup_run_execute(*, run_id: uuid.UUID | str, echo=None) -> BackupRun:
    """Carry the run out once per cluster; a run whose schedule (or kind and type) is already running is REFUSED.

    `echo` also gets every progress line (a command run in the foreground shows them).
    """
    run = BackupRun.objects.get(pk=run_id)
    outcome = job_run_once(_lock_name(run), lambda lease: _execute(run.pk, echo))
    if outcome is None:
        BackupRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.REFUSED, finished_at=timezone.now(), error="another run of the same schedule is in progress (or the lock store is unreachable)"
        )
        logger.warning("backup.run_refused", extra={"run_id": str(run.pk), "kind": run.kind})
    run.refresh_from_db()
    return run


def _execute(run_id, echo=None) -> bool:
    claimed = BackupRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return True  # carried out already (a task delivered twice)
    run = BackupRun.objects.select_related("schedule").get(pk=run_id)
    if run.schedule_id:
        BackupSchedule.objects.filter(pk=run.schedule_id).update(last_started_at=run.started_at)
    progress = _progress_writer(run.pk, echo)
    try:
        result = _WORK[run.kind](run, progress)
    except Exception as exc:  # every failure is recorded on the run, alerted and audited
        _finish_failed(run, exc)
        return True
    _finish_succeeded(run, result)
    return True


def _progress_writer(run_id, echo=None):
    """Keep the run's last progress line, at most one write a second (the status endpoint shows it)."""
    state = {"at": 0.0}

    def write(line: str) -> None:
        if echo is not None:
            echo(line)
        now = timezone.now().timestamp()
        if now - state["at"] >= 1.0:
            state["at"] = now
            BackupRun.objects.filter(pk=run_id).update(progress=line[:300])

    return write


def _backup(run: BackupRun, progress) -> dict:
    manifest = services.backup_create(
        backup_type=run.backup_type or "full", schedule=run.schedule.name if run.schedule else "", repository=run.location_url, progress=progress
    )
    result = {"snapshot_id": manifest["id"] or "", "stats": manifest["stats"], "duration_seconds": manifest["duration_seconds"], "kind": manifest["kind"]}
    return result | ({"message": manifest["message"]} if "message" in manifest else {})  # an empty WAL spool: no snapshot


def _test_restore(run: BackupRun, progress) -> dict:
    report = services.backup_test_restore(snapshot_id=run.snapshot_id or None, repository=run.location_url, progress=progress)
    if not report["ok"]:
        raise RecoveryMismatch(report)
    return {"snapshot_id": report["snapshot"], "tables_checked": report["tables_checked"], "rows": report["rows"], "ok": True}


def _verify(run: BackupRun, progress) -> dict:
    report = services.backup_verify(snapshot_id=run.snapshot_id or None, repository=run.location_url, progress=progress)
    result = {"snapshots_checked": report.snapshots_checked, "chunks_checked": report.chunks_checked, "problems": report.problems[:100], "ok": report.ok}
    if not report.ok:
        raise CorruptionFound(result)
    return result


def _retention(run: BackupRun, progress) -> dict:
    from apps.backups.engine.scheduling import schedule_retention_apply

    return schedule_retention_apply(schedule=run.schedule, dry_run=bool(run.result.get("dry_run")), progress=progress)


def _recovery(run: BackupRun, progress) -> dict:
    from apps.backups.engine.recovery import recovery_execute

    return recovery_execute(run=run, progress=progress)


_WORK = {RunKind.BACKUP: _backup, RunKind.TEST_RESTORE: _test_restore, RunKind.VERIFY: _verify, RunKind.RETENTION: _retention, RunKind.RECOVERY: _recovery}


class RecoveryMismatch(Exception):
    def __init__(self, report: dict):
        super().__init__(f"test restore of {report['snapshot']}: {len(report['mismatches'])} tables differ")
        self.report = report


class CorruptionFound(Exception):
    def __init__(self, result: dict):
        super().__init__(f"verify found {len(result['problems'])} problems")
        self.result = result


def _alert_kind(run: BackupRun, exc: Exception) -> str:
    if isinstance(exc, CorruptionFound):
        return AlertKind.CORRUPTION_DETECTED
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AlertKind.STORAGE_FULL
    if "EntityTooLarge" in str(exc) or "QuotaExceeded" in str(exc):
        return AlertKind.STORAGE_FULL
    return AlertKind.RECOVERY_FAILED if run.kind in (RunKind.TEST_RESTORE, RunKind.RECOVERY) else AlertKind.BACKUP_FAILED


def _finish_failed(run: BackupRun, exc: Exception) -> None:
    details = getattr(exc, "result", None) or getattr(exc, "report", None) or {}
    message = str(exc) or type(exc).__name__
    BackupRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, finished_at=timezone.now(), error=message[:2000], result=details)
    alert_raise(kind=_alert_kind(run, exc), schedule_id=run.schedule_id, run_id=run.pk, message=f"{run.kind} {run.backup_type}: {message}"[:500], details={"error": type(exc).__name__})
    metrics.SCHEDULE_RUNS.labels(schedule=_schedule_label(run), kind=run.kind, outcome="failure").inc()
    _audit(run, "failure", {"error": type(exc).__name__, **_recovery_audit(run, details)})


def _finish_succeeded(run: BackupRun, result: dict) -> None:
    finished = timezone.now()
    BackupRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=finished, result=result, snapshot_id=result.get("snapshot_id", run.snapshot_id))
    label = _schedule_label(run)
    metrics.SCHEDULE_RUNS.labels(schedule=label, kind=run.kind, outcome="success").inc()
    if run.kind == RunKind.BACKUP:
        if run.schedule_id:
            BackupSchedule.objects.filter(pk=run.schedule_id).update(last_success_at=finished)
        metrics.SCHEDULE_LAST_SUCCESS.labels(schedule=label).set(finished.timestamp())
        stats = result["stats"]
        if stats["bytes_in"]:
            metrics.SCHEDULE_SIZE_RATIO.labels(schedule=label).set(stats["bytes_stored_new"] / stats["bytes_in"])
        if result["duration_seconds"]:
            metrics.SCHEDULE_THROUGHPUT.labels(schedule=label).set(stats["bytes_in"] / result["duration_seconds"])
    _audit(run, "success", {k: v for k, v in result.items() if k in ("snapshot_id", "tables_checked", "snapshots_checked", "forgotten", "pruned_chunks")}
           | _recovery_audit(run, result))


def _recovery_audit(run: BackupRun, result: dict) -> dict:
    """A recovery's type, target kind and counts (never a book id, a path or a row)."""
    if run.kind != RunKind.RECOVERY:
        return {}
    counts = {k: result[k] for k in ("tables", "rows", "objects", "config_files", "refused") if k in result}
    return {"recovery_type": run.params.get("type", ""), "live_target": bool(run.params.get("live", True)), **counts}


def _schedule_label(run: BackupRun) -> str:
    return run.schedule.name if run.schedule else f"on-demand-{run.backup_type or run.kind}"


_AUDIT_TYPES = {
    RunKind.BACKUP: "backup.run", RunKind.TEST_RESTORE: "backup.restored", RunKind.VERIFY: "backup.verified", RunKind.RETENTION: "backup.retention",
    RunKind.RECOVERY: "backup.restored",
}  # fmt: skip


def _audit(run: BackupRun, outcome: str, details: dict) -> None:
    audit_event_record(
        event_type=_AUDIT_TYPES[run.kind], outcome=outcome, target=f"backup_run:{run.pk}",
        details={"kind": run.kind, "backup_type": run.backup_type, "trigger": run.trigger, "schedule": run.schedule.name if run.schedule else "",
                 "requested_by": run.requested_by, **details},
    )  # fmt: skip

