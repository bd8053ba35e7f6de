"""Validation reports and compliance reads of server backups (the views are engine/compliance_api.py).

- `validation_report`: what a verify or test-restore run found, in one shape whatever its state.
- `validation_all_request`: one verify run over every snapshot of a repository, and a test restore
  of its newest database snapshot.
- `retention_policies` / `retention_policy_set`: each schedule's retention rules and how many of
  its snapshots are under a legal hold; a change goes through `backup_schedule_save` (validated,
  audited as backup.schedule_changed).
- `backup_audit_trail`: the backup.* audit events; reading them is itself audited (backup.accessed).
- `book_data_residency`: where one book's data lives and is backed up, against the allowed regions.
  Ids, regions and counts only: the server holds no plaintext user data to show.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from apps.audit.selectors import audit_events_filter
from apps.backups.engine import runs, scheduling, services
from apps.backups.engine.models import BackupRun, BackupSchedule, RunKind, RunStatus, StorageLocation
from apps.backups.engine.repository import Repository, RepositoryError
from apps.backups.engine.sources import OBJECTS_PREFIX, database_entry_names
from apps.pairing.selectors import book_get
from apps.photos import storage
from apps.photos.selectors import book_photo_usage
from signer.custody import CustodyError

VALIDATION_KINDS = (RunKind.VERIFY, RunKind.TEST_RESTORE)
_FINISHED_OK = {RunStatus.SUCCEEDED: True, RunStatus.FAILED: False}
# Snapshot kinds that copy the whole database below the SQL level (engine/physical.py).
_PHYSICAL_KINDS = ("physical", "wal")


# --- validation ----------------------------------------------------------------------------------


def validation_report(run: BackupRun) -> dict:
    """The report of a verify or test-restore run: its state, and once it ended what it checked and found."""
    result = run.result or {}
    finished = run.status in _FINISHED_OK
    report = {
        "job_id": str(run.pk), "kind": run.kind, "status": run.status, "ok": _FINISHED_OK.get(run.status),
        "scope": "snapshot" if run.snapshot_id or run.kind == RunKind.TEST_RESTORE else "repository",
        "snapshot_id": run.snapshot_id or result.get("snapshot") or None, "trigger": run.trigger, "requested_by": run.requested_by,
        "progress": run.progress, "error": run.error, "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
    }  # fmt: skip
    if run.kind == RunKind.VERIFY:
        problems = [{key: problem.get(key) for key in ("kind", "chunk", "snapshot", "file", "detail")} for problem in result.get("problems", [])]
        report |= {"snapshots_checked": result.get("snapshots_checked"), "chunks_checked": result.get("chunks_checked"), "problems": problems if finished else None}
    else:
        report |= {"tables_checked": result.get("tables_checked"), "rows": result.get("rows"), "mismatches": result.get("mismatches", []) if finished else None}
    return report


def validation_all_request(*, location: StorageLocation | None, test_restore: bool, requested_by: str) -> tuple[BackupRun, BackupRun | None]:
    """A verify run over the whole repository and (if asked and there is one) a test restore of its newest database snapshot.

    RepositoryError when the repository cannot be opened (nothing is requested then).
    """
    repo = services.backup_repository_open(repository=runs.run_location_url(location))
    latest = services.snapshot_latest_with_database(repo) if test_restore else None
    with transaction.atomic():  # both jobs or neither (each is enqueued once this commits)
        verify = runs.backup_run_request(kind=RunKind.VERIFY, location=location, requested_by=requested_by)
        drill = runs.backup_run_request(kind=RunKind.TEST_RESTORE, location=location, snapshot_id=latest, requested_by=requested_by) if latest else None
    return verify, drill


# --- retention -----------------------------------------------------------------------------------


def _repository_if_any(url: str) -> Repository | None:
    """The repository at `url`, or None where none was made yet (it holds nothing then)."""
    if not Repository.exists_at(url, s3_options=services.repository_s3_options()):
        return None
    return services.backup_repository_open(repository=url)


def _held_snapshot_schedules(url: str) -> dict[str, str] | None:
    """{held snapshot id: the schedule that made it ("" for on-demand)} in the repository; None if it cannot be read."""
    try:
        repo = _repository_if_any(url)
        if repo is None:
            return {}
        return {snapshot_id: repo.snapshot_get(snapshot_id).get("schedule", "") for snapshot_id in sorted(repo.holds())}
    except (RepositoryError, CustodyError):
        return None


def retention_policies() -> dict:
    """Every schedule's retention rules and held-snapshot count (null where its repository cannot be read), and the total held."""
    schedules = list(BackupSchedule.objects.select_related("location").order_by("name"))
    urls = {services.repository_location(), *(runs.run_location_url(schedule.location) for schedule in schedules)}
    held = {url: _held_snapshot_schedules(url) for url in sorted(urls)}
    rows = [_retention_policy_row(schedule, held[runs.run_location_url(schedule.location)]) for schedule in schedules]
    total = None if any(ids is None for ids in held.values()) else sum(len(ids) for ids in held.values())
    return {"schedules": rows, "held_snapshots": total}


def retention_policy(schedule: BackupSchedule) -> dict:
    """One schedule's retention rules and held-snapshot count."""
    return _retention_policy_row(schedule, _held_snapshot_schedules(runs.run_location_url(schedule.location)))


def _retention_policy_row(schedule: BackupSchedule, held: dict[str, str] | None) -> dict:
    held_snapshots = None if held is None else sum(1 for name in held.values() if name == schedule.name)
    rules = scheduling.schedule_retention(schedule)
    gfs = [rules[field] for field in scheduling.RETENTION_FIELDS if field.startswith("keep_")]
    return {
        "schedule_id": schedule.pk, "name": schedule.name, "backup_type": schedule.backup_type,
        "location": schedule.location.name if schedule.location else None, **rules,
        "keeps_everything": not any(gfs) and rules["delete_after_days"] is None, "held_snapshots": held_snapshots,
    }  # fmt: skip


def retention_policy_set(*, schedule: BackupSchedule, changes: dict, actor: str) -> BackupSchedule:
    """Change the schedule's retention rules; validated and audited by backup_schedule_save (nothing saved when refused)."""
    for field, value in changes.items():
        setattr(schedule, field, value)
    return scheduling.backup_schedule_save(schedule=schedule, actor=actor)


# --- audit trail ---------------------------------------------------------------------------------


def backup_audit_trail(*, actor: str, event_type: str | None = None, outcome: str | None = None, since: datetime | None = None, until: datetime | None = None) -> QuerySet:
    """The backup.* audit events matching the filters; the read itself is audited (backup.accessed)."""
    filters = {"event_type": event_type, "outcome": outcome, "since": since, "until": until}
    services.backup_step_audit(
        event_type="backup.accessed", target="audit_log",
        details={"actor": actor, "filters": {key: str(value) for key, value in filters.items() if value}},
    )  # fmt: skip
    return audit_events_filter(**filters, event_type_prefix="backup.")


# --- data residency ------------------------------------------------------------------------------


def _backup_locations() -> list[tuple[str, str, str]]:
    """(name, url, region) of every place backups go: the default repository and each storage location, once per url."""
    places = {services.repository_location(): ("BACKUP_REPOSITORY", services.repository_location(), settings.BACKUP_REPOSITORY_REGION)}
    for location in StorageLocation.objects.order_by("name"):
        places[location.url] = (location.name, location.url, location.region)
    return list(places.values())


def _snapshots_holding(repo: Repository, *, book_id: uuid.UUID, book_created: datetime) -> dict:
    """How many of the repository's snapshots hold the book's database rows and how many its photo objects."""
    prefix = f"{OBJECTS_PREFIX}{storage.KEY_PREFIX}{book_id}/"
    counts = {"database_snapshots": 0, "object_snapshots": 0}
    for manifest in repo.snapshots():
        has_database = bool(database_entry_names(manifest)) or manifest.get("kind") in _PHYSICAL_KINDS
        if has_database and datetime.fromisoformat(manifest["finished_at"]) >= book_created:
            counts["database_snapshots"] += 1
        if any(entry["name"].startswith(prefix) for entry in manifest["files"]):
            counts["object_snapshots"] += 1
    return counts


def book_data_residency(*, book_id: uuid.UUID) -> dict:
    """Where the book's data lives (the photo store) and is backed up (storage locations), and whether the policy allows each region."""
    book = book_get(book_id=book_id)
    allowed = runs.residency_allowed_regions()
    photos, photo_bytes = book_photo_usage(book_id=book.pk)
    photo_store = {**storage.store_describe(), "photos": photos, "bytes": photo_bytes}
    # A local store is the server's own disk, whose region the server does not know: not judged (null).
    photo_store["allowed"] = True if not allowed else (None if photo_store["region"] is None else photo_store["region"] in allowed)
    violations = []
    if photos and photo_store["allowed"] is False:
        violations.append({"where": "photo_store", "name": photo_store["kind"], "region": photo_store["region"]})
    locations = []
    for name, url, region in _backup_locations():
        # As location_residency_check judges a backup: a location without a region is outside any policy.
        entry = {"name": name, "region": region or None, "allowed": not allowed or region in allowed, "reachable": True, "database_snapshots": None, "object_snapshots": None}
        try:
            repo = _repository_if_any(url)
            if repo is None:
                continue  # never written to: holds nothing
            entry |= _snapshots_holding(repo, book_id=book.pk, book_created=book.created_at)
            if not entry["database_snapshots"] and not entry["object_snapshots"]:
                continue
        except (RepositoryError, CustodyError):
            entry["reachable"] = False  # it may hold the book: judged by its region all the same
        locations.append(entry)
        if not entry["allowed"]:
            violations.append({"where": "backup_location", "name": name, "region": region or None})
    return {
        "book_id": str(book.pk), "photo_store": photo_store, "backup_locations": locations,
        "allowed_regions": allowed, "compliant": not violations, "violations": violations,
    }  # fmt: skip
