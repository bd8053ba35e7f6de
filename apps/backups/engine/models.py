"""Server backups in the database: where they go, when they run, what each run did, what went wrong.

The repository (engine/repository.py) stays the truth about snapshots and restores without any of
this; these rows are for operators (admin, API, alerts). `SnapshotRecord` is a catalog rebuilt
from the repository on demand (engine/catalog.py).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class StorageLocation(models.Model):
    """A repository: a directory or s3://bucket/prefix, and the region its data lives in."""

    name = models.SlugField(max_length=64, unique=True)
    url = models.CharField(max_length=512, help_text="A directory, or s3://bucket/prefix (credentials from BACKUP_S3_*).")
    region = models.CharField(max_length=64, help_text="Where the data lives (eu-central-1, on-premises-paris, ...): checked against the allowed regions (the residency policy).")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.region})"


class AllowedRegion(models.Model):
    """The data-residency policy as rows a compliance officer edits in the admin: backups may go only
    to storage locations in these regions. While there is none, BACKUP_ALLOWED_REGIONS applies
    (empty: any region)."""

    region = models.CharField(max_length=64, unique=True, help_text="A region a storage location may be in (eu-central-1, on-premises-paris, ...).")
    note = models.CharField(max_length=200, blank=True, help_text="Why (the rule or contract that allows it).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, blank=True, editable=False)

    class Meta:
        ordering = ["region"]

    def __str__(self) -> str:
        return self.region


class BackupType(models.TextChoices):
    DATABASE = "database", "database"
    OBJECTS = "objects", "photo objects"
    CONFIG = "config", "configuration and secrets bundle"
    FULL = "full", "database, objects and configuration"
    # Point-in-time recovery (PostgreSQL only, engine/physical.py): a pg_basebackup, and the WAL
    # segments archived since, pushed from the archive spool.
    PHYSICAL = "physical", "PostgreSQL base backup (pg_basebackup)"
    WAL = "wal", "archived PostgreSQL WAL segments"


class BackupSchedule(models.Model):
    """A backup that runs on a crontab; saving it (service, admin) writes its django-celery-beat entry."""

    name = models.SlugField(max_length=64, unique=True)
    backup_type = models.CharField(max_length=16, choices=BackupType.choices)
    crontab = models.CharField(max_length=120, default="0 * * * *", help_text="minute hour day-of-month month day-of-week (server time zone).")
    # Celery priority, 0 first (Redis transport): the hourly database backup at 0 is taken before a queued drill at 9.
    priority = models.PositiveSmallIntegerField(default=5)
    location = models.ForeignKey(StorageLocation, null=True, blank=True, on_delete=models.PROTECT, help_text="Empty: BACKUP_REPOSITORY.")
    enabled = models.BooleanField(default=True)
    keep_last = models.PositiveIntegerField(default=0)
    keep_daily = models.PositiveIntegerField(default=0)
    keep_weekly = models.PositiveIntegerField(default=0)
    keep_monthly = models.PositiveIntegerField(default=0)
    keep_yearly = models.PositiveIntegerField(default=0)
    archive_after_days = models.PositiveIntegerField(null=True, blank=True)
    delete_after_days = models.PositiveIntegerField(null=True, blank=True)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True, editable=False, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.name

    @property
    def beat_name(self) -> str:
        return f"backup-schedule:{self.pk}"


class RunKind(models.TextChoices):
    BACKUP = "backup", "backup"
    TEST_RESTORE = "test_restore", "test restore"
    VERIFY = "verify", "integrity verify"
    RETENTION = "retention", "retention"
    RECOVERY = "recovery", "recovery"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "schedule"
    MANUAL = "manual", "on demand"
    PRE_MIGRATE = "pre_migrate", "before migrate"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    REFUSED = "refused", "refused (another run of the same schedule or type was in progress)"


class BackupRun(models.Model):
    """One piece of backup work (a backup, a test restore, a verify, a retention pass, a recovery) and its outcome."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=RunKind.choices, default=RunKind.BACKUP)
    backup_type = models.CharField(max_length=16, choices=BackupType.choices, blank=True)
    schedule = models.ForeignKey(BackupSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    location_url = models.CharField(max_length=512, blank=True)
    snapshot_id = models.CharField(max_length=64, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    progress = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    # What a recovery was asked to do (engine/recovery.py: type, target, tables or book, overwrite);
    # never a secret: a passphrase is named by its file.
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The roles' permissions (groups made by migration 0003, docs/backups.md "Roles").
        permissions = [
            ("backup_create", "Can start backups"),
            ("backup_delete", "Can forget snapshots and prune"),
            ("backup_restore", "Can restore backups"),
            ("backup_validate", "Can run integrity checks and test restores"),
            ("backup_view", "Can see schedules, runs, snapshots and alerts"),
            ("backup_manage_schedules", "Can create, change and delete backup schedules"),
            ("backup_manage_holds", "Can set and release legal holds"),
            ("backup_read_audit", "Can read the backup audit trail"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.backup_type} {self.status} ({self.created_at:%Y-%m-%d %H:%M})"


class RecoveryRun(BackupRun):
    """The recoveries among the runs (their own admin page)."""

    class Meta:
        proxy = True
        verbose_name = "recovery"


class AlertKind(models.TextChoices):
    BACKUP_FAILED = "BACKUP_FAILED", "backup failed"
    BACKUP_DELAYED = "BACKUP_DELAYED", "backup delayed (a scheduled run was missed)"
    CORRUPTION_DETECTED = "CORRUPTION_DETECTED", "corruption detected"
    STORAGE_FULL = "STORAGE_FULL", "storage full"
    COMPLIANCE_VIOLATION = "COMPLIANCE_VIOLATION", "compliance violation"
    RECOVERY_FAILED = "RECOVERY_FAILED", "recovery or test restore failed"


class BackupAlert(models.Model):
    kind = models.CharField(max_length=32, choices=AlertKind.choices, db_index=True)
    schedule = models.ForeignKey(BackupSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    run = models.ForeignKey(BackupRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class SnapshotRecord(models.Model):
    """The catalog: one row per snapshot of a repository, rebuilt from it on demand (engine/catalog.py)."""

    location_url = models.CharField(max_length=512)
    snapshot_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=64, blank=True)
    schedule_name = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_seconds = models.FloatField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_added = models.BigIntegerField(default=0)
    files = models.PositiveIntegerField(default=0)
    held = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    source_version = models.JSONField(default=dict, blank=True)
    catalogued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["location_url", "snapshot_id"], name="backups_snapshot_once_per_location")]

    def __str__(self) -> str:
        return self.snapshot_id
