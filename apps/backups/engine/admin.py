"""Operators' pages for server backups: storage locations and schedules (editable), runs, recoveries, snapshots, alerts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from apps.backups.engine import catalog, scheduling, services
from apps.audit.services import audit_event_record
from apps.backups.engine.models import AllowedRegion, BackupAlert, BackupRun, BackupSchedule, RecoveryRun, RunKind, SnapshotRecord, StorageLocation
from apps.backups.engine.repository import RepositoryError
from homepocket.api.errors import ApplicationError
from homepocket.view_only_admin import ViewOnlyModelAdmin


@admin.register(StorageLocation)
class StorageLocationAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "region", "created_at")


@admin.register(AllowedRegion)
class AllowedRegionAdmin(admin.ModelAdmin):
    """The residency policy (docs/backups.md, "Data residency"): compliance officers edit it; every change is audited."""

    list_display = ("region", "note", "created_at", "created_by")
    readonly_fields = ("created_at", "created_by")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        self._audit(obj, "changed" if change else "allowed", request)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._audit(obj, "removed", request)

    def delete_queryset(self, request, queryset):
        regions = list(queryset)
        super().delete_queryset(request, queryset)
        for obj in regions:
            self._audit(obj, "removed", request)

    @staticmethod
    def _audit(obj: AllowedRegion, action: str, request) -> None:
        audit_event_record(
            event_type="config.changed", outcome="success", target="backup_residency",
            details={"region": obj.region, "action": action, "actor": request.user.get_username()},
        )  # fmt: skip


@admin.register(BackupSchedule)
class BackupScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "backup_type", "crontab", "priority", "location", "enabled", "last_started_at", "last_success_at")
    list_filter = ("backup_type", "enabled")
    readonly_fields = ("periodic_task", "last_started_at", "last_success_at")

    def save_model(self, request, obj, form, change):
        # Through the service: the beat entry follows the row, and a refused save (crontab, residency) changes nothing.
        try:
            scheduling.backup_schedule_save(schedule=obj, actor=request.user.get_username())
        except ApplicationError as exc:
            self.message_user(request, f"Not saved: {exc.message}", level=messages.ERROR)

    def delete_model(self, request, obj):
        scheduling.backup_schedule_delete(schedule=obj, actor=request.user.get_username())

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            self.delete_model(request, schedule)


@admin.register(BackupRun)
class BackupRunAdmin(ViewOnlyModelAdmin):
    list_display = ("id", "kind", "backup_type", "schedule", "trigger", "status", "snapshot_id", "created_at", "finished_at")
    list_filter = ("kind", "status", "trigger", "backup_type")
    search_fields = ("=id", "=snapshot_id")


@admin.register(RecoveryRun)
class RecoveryRunAdmin(ViewOnlyModelAdmin):
    """The recoveries (started by the API or `manage.py backup recover`): what was asked, progress, outcome."""

    list_display = ("id", "recovery_type", "status", "progress", "snapshot_id", "requested_by", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("=id", "=snapshot_id")
    fields = ("id", "status", "snapshot_id", "requested_by", "location_url", "params", "progress", "result", "error", "created_at", "started_at", "finished_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=RunKind.RECOVERY)

    @admin.display(description="type")
    def recovery_type(self, obj) -> str:
        return obj.params.get("type", "")

    def has_view_permission(self, request, obj=None):
        # The backup roles see runs through backup_view (docs/backups.md, "Roles"), not the proxy's own permission.
        return super().has_view_permission(request, obj) or request.user.has_perm("backups.backup_view")

    def has_module_permission(self, request):
        return super().has_module_permission(request) or request.user.has_perm("backups.backup_view")

    def has_delete_permission(self, request, obj=None):
        return False  # a recovery's record stays (it is audited too)


@admin.register(BackupAlert)
class BackupAlertAdmin(ViewOnlyModelAdmin):
    list_display = ("kind", "message", "schedule", "created_at", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    actions = ["resolve_selected"]

    @admin.action(description="Mark selected alerts resolved")
    def resolve_selected(self, request, queryset):
        done = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        self.message_user(request, f"{done} alerts resolved.")


@admin.register(SnapshotRecord)
class SnapshotRecordAdmin(ViewOnlyModelAdmin):
    list_display = ("snapshot_id", "kind", "schedule_name", "started_at", "bytes_in", "bytes_added", "files", "held", "archived", "location_url")
    list_filter = ("kind", "held", "archived", "schedule_name")
    search_fields = ("=snapshot_id",)
    actions = ["rebuild_catalog", "hold_selected", "release_selected"]

    @admin.action(description="Rebuild the catalog from the repository")
    def rebuild_catalog(self, request, queryset):
        for location in set(queryset.values_list("location_url", flat=True)) or {None}:
            try:
                counts = catalog.backup_catalog_rebuild(repository=location)
                self.message_user(request, f"{location or 'default repository'}: {counts}")
            except RepositoryError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)

    @admin.action(description="Set a legal hold on selected snapshots")
    def hold_selected(self, request, queryset):
        self._hold(request, queryset, release=False)

    @admin.action(description="Release the legal hold on selected snapshots")
    def release_selected(self, request, queryset):
        self._hold(request, queryset, release=True)

    def _hold(self, request, queryset, *, release: bool):
        if not request.user.has_perm("backups.backup_manage_holds"):
            self.message_user(request, "Legal holds need the backup_manage_holds permission (compliance_officer, backup_admin).", level=messages.ERROR)
            return
        for record in queryset:
            services.backup_hold(snapshot_id=record.snapshot_id, reason=f"set in the admin by {request.user.get_username()}", release=release, repository=record.location_url)
        queryset.update(held=not release)
