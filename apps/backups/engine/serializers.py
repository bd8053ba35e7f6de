"""Wire shapes of the server-backup API (staff only; docs/backups.md, "REST")."""

from __future__ import annotations

from rest_framework import serializers

from apps.backups.engine.models import BackupRun, BackupSchedule, BackupType, SnapshotRecord, StorageLocation


class ScheduleSerializer(serializers.ModelSerializer):
    location = serializers.SlugRelatedField(slug_field="name", queryset=StorageLocation.objects.all(), allow_null=True, required=False)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)

    class Meta:
        model = BackupSchedule
        fields = ("id", "name", "backup_type", "crontab", "priority", "location", "enabled", "keep_last", "keep_daily", "keep_weekly",
                  "keep_monthly", "keep_yearly", "archive_after_days", "delete_after_days", "created_at", "last_started_at", "last_success_at")  # fmt: skip
        read_only_fields = ("id", "created_at", "last_started_at", "last_success_at")


class TriggerInputSerializer(serializers.Serializer):
    location = serializers.SlugRelatedField(slug_field="name", queryset=StorageLocation.objects.all(), allow_null=True, required=False)


class RunSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(source="id", read_only=True)
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = BackupRun
        fields = ("job_id", "kind", "backup_type", "schedule", "trigger", "status", "snapshot_id", "progress", "error", "result",
                  "created_at", "started_at", "finished_at")  # fmt: skip


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = SnapshotRecord
        fields = ("snapshot_id", "kind", "schedule_name", "started_at", "finished_at", "duration_seconds", "bytes_in", "bytes_added", "files",
                  "held", "archived", "location_url", "source_version")  # fmt: skip


class HoldInputSerializer(serializers.Serializer):
    snapshot_id = serializers.RegexField(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$", max_length=64)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    release = serializers.BooleanField(required=False, default=False)


BACKUP_TYPE_CHOICES = [choice for choice, _ in BackupType.choices]
