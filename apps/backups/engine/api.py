"""The server-backup API: staff signed in to the admin, each endpoint allowed to the roles that hold its permission.

Roles are Django groups (migration 0003): backup_admin, backup_operator, recovery_specialist,
compliance_officer, read_only; a superuser holds every permission. Long work answers 202 with the
run's id (`job_id`) and runs in a Celery worker; `/backup/status/{id}` follows it.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.backups.engine import catalog, runs, scheduling, services
from apps.backups.engine.models import BackupRun, BackupSchedule, RunKind, SnapshotRecord
from apps.backups.engine.repository import RepositoryError, RepositoryUnavailable
from apps.backups.engine.serializers import (
    BACKUP_TYPE_CHOICES,
    HoldInputSerializer,
    RunSerializer,
    ScheduleSerializer,
    SnapshotSerializer,
    TriggerInputSerializer,
)
from apps.photos.storage import StorageUnavailable
from homepocket.api.errors import ApplicationError, Forbidden

_READ_METHODS = ("GET", "HEAD", "OPTIONS")


class InvalidState(ApplicationError):
    code = "INVALID_STATE"
    default_message = "The repository cannot do this now."


class NotFound(ApplicationError):
    code = "NOT_FOUND"
    default_message = "No such backup schedule, run or snapshot."


def role_permission(read: str, write: str | None = None) -> type[BasePermission]:
    """Staff holding `backups.<read>` for reads and `backups.<write>` (default: the same) for writes; else 403 FORBIDDEN."""

    class BackupRole(BasePermission):
        def has_permission(self, request, view):
            user = request.user
            if user is None or not getattr(user, "is_authenticated", False):
                return False
            needed = read if request.method in _READ_METHODS else (write or read)
            if not getattr(user, "is_staff", False) or not user.has_perm(f"backups.{needed}"):
                raise Forbidden(f"This needs the {needed} permission (a backup role).", details={"permission": needed})
            return True

    return BackupRole


class _StaffView(APIView):
    authentication_classes = [SessionAuthentication]
    error_codes = ["INVALID_TOKEN", "FORBIDDEN"]


def _actor(request) -> str:
    return request.user.get_username()


def _repository_error(exc: RepositoryError) -> ApplicationError:
    if isinstance(exc, RepositoryUnavailable):
        return StorageUnavailable("The backup repository's store is unreachable; retry later.")
    if str(exc).startswith("no snapshot"):
        return ApplicationError("No snapshot with this id in the repository.", code="INVALID_ARGUMENT", details={"field": "snapshot_id"})
    return InvalidState(str(exc)[:300])


def schedule_get(schedule_id) -> BackupSchedule:
    """The schedule, or 404 NOT_FOUND."""
    schedule = BackupSchedule.objects.select_related("location").filter(pk=schedule_id).first()
    if schedule is None:
        raise NotFound("No backup schedule with this id.")
    return schedule


class ScheduleListView(_StaffView):
    permission_classes = [role_permission("backup_view", "backup_manage_schedules")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "COMPLIANCE_VIOLATION"]

    @extend_schema(operation_id="backup_schedules_list", summary="Backup schedules", responses={200: ScheduleSerializer(many=True)}, tags=["server backups"])
    def get(self, request):
        return Response(ScheduleSerializer(BackupSchedule.objects.select_related("location").order_by("name"), many=True).data)

    @extend_schema(
        operation_id="backup_schedules_create", summary="Create a schedule (and its beat crontab entry)", request=ScheduleSerializer,
        responses={201: ScheduleSerializer}, tags=["server backups"],
    )  # fmt: skip
    def post(self, request):
        payload = ScheduleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        schedule = scheduling.backup_schedule_save(schedule=BackupSchedule(**payload.validated_data), actor=_actor(request))
        return Response(ScheduleSerializer(schedule).data, status=201)


class ScheduleDetailView(_StaffView):
    permission_classes = [role_permission("backup_view", "backup_manage_schedules")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "COMPLIANCE_VIOLATION", "NOT_FOUND"]

    @extend_schema(operation_id="backup_schedule_get", summary="One backup schedule", responses={200: ScheduleSerializer}, tags=["server backups"])
    def get(self, request, schedule_id: int):
        return Response(ScheduleSerializer(schedule_get(schedule_id)).data)

    @extend_schema(operation_id="backup_schedule_update", summary="Change a schedule (its beat entry follows)", request=ScheduleSerializer, responses={200: ScheduleSerializer}, tags=["server backups"])
    def patch(self, request, schedule_id: int):
        schedule = schedule_get(schedule_id)
        payload = ScheduleSerializer(schedule, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        for field, value in payload.validated_data.items():
            setattr(schedule, field, value)
        return Response(ScheduleSerializer(scheduling.backup_schedule_save(schedule=schedule, actor=_actor(request))).data)

    @extend_schema(operation_id="backup_schedule_delete", summary="Delete a schedule and its beat entry", responses={204: OpenApiResponse(description="Deleted.")}, tags=["server backups"])
    def delete(self, request, schedule_id: int):
        scheduling.backup_schedule_delete(schedule=schedule_get(schedule_id), actor=_actor(request))
        return Response(status=204)


def _accepted(run: BackupRun) -> Response:
    return Response({"job_id": str(run.pk), "status": run.status, "status_url": f"/api/v1/backup/status/{run.pk}"}, status=202)


class TriggerView(_StaffView):
    permission_classes = [role_permission("backup_create")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "COMPLIANCE_VIOLATION"]

    @extend_schema(
        operation_id="backup_trigger", summary="Start a backup of this type (database, objects, config, full) now",
        description="202 with the job id; a Celery worker runs it (refused if one of the same type is running). A location outside the allowed regions is COMPLIANCE_VIOLATION.",
        request=TriggerInputSerializer, responses={202: OpenApiResponse(description="Accepted: {job_id, status, status_url}.")}, tags=["server backups"],
    )  # fmt: skip
    def post(self, request, backup_type: str):
        if backup_type not in BACKUP_TYPE_CHOICES:
            raise ApplicationError(f"The backup type is one of {', '.join(BACKUP_TYPE_CHOICES)}.", code="INVALID_ARGUMENT", details={"field": "type"})
        payload = TriggerInputSerializer(data=request.data or {})
        payload.is_valid(raise_exception=True)
        run = runs.backup_run_request(backup_type=backup_type, location=payload.validated_data.get("location"), requested_by=_actor(request))
        return _accepted(run)


class StatusView(_StaffView):
    permission_classes = [role_permission("backup_view")]
    error_codes = [*_StaffView.error_codes, "NOT_FOUND"]

    @extend_schema(operation_id="backup_status", summary="A backup, drill or verify job: status, progress, outcome", responses={200: RunSerializer}, tags=["server backups"])
    def get(self, request, run_id):
        return Response(RunSerializer(get_object_or_404(BackupRun.objects.select_related("schedule"), pk=run_id)).data)


class AvailableBackupsView(_StaffView):
    permission_classes = [role_permission("backup_view")]
    error_codes = [*_StaffView.error_codes, "INVALID_STATE", "S3_ERROR"]

    @extend_schema(
        operation_id="recovery_available_backups", summary="Snapshots in the catalog, newest first (`?rebuild=1` rebuilds it from the repository first)",
        responses={200: SnapshotSerializer(many=True)}, tags=["server backups"],
    )  # fmt: skip
    def get(self, request):
        location = services.repository_location()
        if request.query_params.get("rebuild") in ("1", "true"):
            try:
                location = services.backup_repository_open().location
                catalog.backup_catalog_rebuild()
            except RepositoryError as exc:
                raise _repository_error(exc) from None
        services.backup_step_audit(event_type="backup.accessed", target="catalog", details={"actor": _actor(request), "rebuild": "rebuild" in request.query_params})
        records = SnapshotRecord.objects.all()
        if location:
            records = records.filter(location_url__in=[location, location.rstrip("/") + "/"])
        return Response(SnapshotSerializer(records, many=True).data)


class _ValidationView(_StaffView):
    permission_classes = [role_permission("backup_validate")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "INVALID_STATE", "S3_ERROR"]
    kind = RunKind.VERIFY

    def post(self, request, snapshot_id: str):
        try:
            services.backup_repository_open().snapshot_get(snapshot_id)  # an unknown id is a 400 now, not a failed job later
        except RepositoryError as exc:
            raise _repository_error(exc) from None
        run = runs.backup_run_request(kind=self.kind, snapshot_id=snapshot_id, requested_by=_actor(request))
        return _accepted(run)


class IntegrityView(_ValidationView):
    kind = RunKind.VERIFY

    @extend_schema(
        operation_id="validation_integrity", summary="Verify the repository (every chunk's MAC and id; every snapshot's chunks present) as a job",
        request=None, responses={202: OpenApiResponse(description="Accepted: {job_id, status, status_url}.")}, tags=["server backups"],
    )  # fmt: skip
    def post(self, request, snapshot_id: str):
        return super().post(request, snapshot_id)


class TestRestoreView(_ValidationView):
    kind = RunKind.TEST_RESTORE

    @extend_schema(
        operation_id="validation_test_restore", summary="Restore the snapshot's database into scratch space and compare every table, as a job",
        request=None, responses={202: OpenApiResponse(description="Accepted: {job_id, status, status_url}.")}, tags=["server backups"],
    )  # fmt: skip
    def post(self, request, snapshot_id: str):
        return super().post(request, snapshot_id)


class LegalHoldView(_StaffView):
    permission_classes = [role_permission("backup_view", "backup_manage_holds")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "INVALID_STATE", "S3_ERROR"]

    @extend_schema(operation_id="compliance_legal_holds", summary="Snapshots under a legal hold", responses={200: OpenApiResponse(description="{holds: [snapshot ids]}")}, tags=["server backups"])
    def get(self, request):
        try:
            holds = sorted(services.backup_repository_open().holds())
        except RepositoryError as exc:
            raise _repository_error(exc) from None
        return Response({"holds": holds})

    @extend_schema(
        operation_id="compliance_legal_hold_set", summary="Set (or with release=true, release) a legal hold on a snapshot; forget refuses held snapshots",
        request=HoldInputSerializer, responses={200: OpenApiResponse(description="{snapshot_id, held}")}, tags=["server backups"],
    )  # fmt: skip
    def post(self, request):
        payload = HoldInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            services.backup_hold(snapshot_id=data["snapshot_id"], reason=f"{data['reason']} (by {_actor(request)})", release=data["release"])
        except RepositoryError as exc:
            raise _repository_error(exc) from None
        SnapshotRecord.objects.filter(snapshot_id=data["snapshot_id"]).update(held=not data["release"])
        return Response({"snapshot_id": data["snapshot_id"], "held": not data["release"]})
