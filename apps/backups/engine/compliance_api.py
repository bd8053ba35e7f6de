"""Validation reports and the compliance endpoints of server backups (staff by role, as engine/api.py).

`/validation/report/{job_id}`, `/validation/verify-all`, `/compliance/retention-policy[/{schedule_id}]`,
`/compliance/audit-log`, `/compliance/data-residency/{book_id}`; docs/backups.md ("REST") has the
table of permissions and answers. The work is in engine/compliance.py; these views parse and render.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from apps.audit.models import EventType, Outcome
from apps.backups.engine import compliance
from apps.backups.engine.api import NotFound, _accepted, _actor, _repository_error, _StaffView, role_permission, schedule_get
from apps.backups.engine.models import BackupRun, StorageLocation
from apps.backups.engine.repository import RepositoryError
from apps.backups.engine.scheduling import RETENTION_FIELDS

BACKUP_EVENT_TYPES = [(value, label) for value, label in EventType.choices if value.startswith("backup.")]
_TAGS = ["server backups"]


# --- wire shapes ---------------------------------------------------------------------------------


class ValidationProblemSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="corrupt_chunk, missing_chunk, damaged_chunk or corrupt_snapshot.")
    chunk = serializers.CharField(allow_null=True)
    snapshot = serializers.CharField(allow_null=True)
    file = serializers.CharField(allow_null=True)
    detail = serializers.CharField(allow_null=True)


class ValidationReportSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=["verify", "test_restore"])
    status = serializers.CharField()
    ok = serializers.BooleanField(allow_null=True, help_text="null until the run has ended (and for a refused run).")
    scope = serializers.ChoiceField(choices=["snapshot", "repository"])
    snapshot_id = serializers.CharField(allow_null=True)
    trigger = serializers.CharField()
    requested_by = serializers.CharField()
    progress = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    snapshots_checked = serializers.IntegerField(allow_null=True, required=False, help_text="verify only.")
    chunks_checked = serializers.IntegerField(allow_null=True, required=False, help_text="verify only.")
    problems = ValidationProblemSerializer(many=True, allow_null=True, required=False, help_text="verify only: at most 100.")
    tables_checked = serializers.IntegerField(allow_null=True, required=False, help_text="test_restore only.")
    rows = serializers.IntegerField(allow_null=True, required=False, help_text="test_restore only.")
    mismatches = serializers.ListField(child=serializers.DictField(), allow_null=True, required=False, help_text="test_restore only: {table, recorded, restored}.")


class VerifyAllInputSerializer(serializers.Serializer):
    location = serializers.SlugRelatedField(slug_field="name", queryset=StorageLocation.objects.all(), allow_null=True, required=False)
    test_restore = serializers.BooleanField(required=False, default=True)


class RetentionPolicySerializer(serializers.Serializer):
    schedule_id = serializers.IntegerField()
    name = serializers.CharField()
    backup_type = serializers.CharField()
    location = serializers.CharField(allow_null=True)
    keep_last = serializers.IntegerField()
    keep_daily = serializers.IntegerField()
    keep_weekly = serializers.IntegerField()
    keep_monthly = serializers.IntegerField()
    keep_yearly = serializers.IntegerField()
    archive_after_days = serializers.IntegerField(allow_null=True)
    delete_after_days = serializers.IntegerField(allow_null=True)
    keeps_everything = serializers.BooleanField()
    held_snapshots = serializers.IntegerField(allow_null=True, help_text="null when the schedule's repository cannot be read now.")


class RetentionPoliciesSerializer(serializers.Serializer):
    schedules = RetentionPolicySerializer(many=True)
    held_snapshots = serializers.IntegerField(allow_null=True)


class RetentionPolicyInputSerializer(serializers.Serializer):
    keep_last = serializers.IntegerField(min_value=0, required=False)
    keep_daily = serializers.IntegerField(min_value=0, required=False)
    keep_weekly = serializers.IntegerField(min_value=0, required=False)
    keep_monthly = serializers.IntegerField(min_value=0, required=False)
    keep_yearly = serializers.IntegerField(min_value=0, required=False)
    archive_after_days = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    delete_after_days = serializers.IntegerField(min_value=1, allow_null=True, required=False)

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(RETENTION_FIELDS))
        if unknown:  # a crontab or location belongs to /backup/schedule/{id}: say so instead of ignoring it
            raise serializers.ValidationError({name: "Not a retention rule." for name in unknown})
        if not attrs:
            raise serializers.ValidationError("Name at least one retention rule to change.")
        return attrs


class BackupAuditQuerySerializer(serializers.Serializer):
    event_type = serializers.ChoiceField(choices=BACKUP_EVENT_TYPES, required=False)
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False, help_text="The cursor of a `next`/`previous` link.")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "until is after since."})
        return attrs


class BackupAuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    event_type = serializers.CharField()
    outcome = serializers.CharField()
    target = serializers.CharField()
    details = serializers.DictField()


class DataResidencySerializer(serializers.Serializer):
    book_id = serializers.UUIDField()
    photo_store = serializers.DictField(help_text="{kind: s3|local, region (null: local), photos, bytes, allowed (null: not judged)}")
    backup_locations = serializers.ListField(
        child=serializers.DictField(), help_text="{name, region, allowed, reachable, database_snapshots, object_snapshots} of each location whose snapshots hold the book."
    )
    allowed_regions = serializers.ListField(child=serializers.CharField(), help_text="Empty: any region.")
    compliant = serializers.BooleanField()
    violations = serializers.ListField(child=serializers.DictField(), help_text="{where: photo_store|backup_location, name, region}")


# --- views ---------------------------------------------------------------------------------------


class ValidationReportView(_StaffView):
    permission_classes = [role_permission("backup_view")]
    error_codes = [*_StaffView.error_codes, "NOT_FOUND"]

    @extend_schema(
        operation_id="validation_report", summary="The report of a verify or test-restore job (its job_id): status, what it checked, what it found",
        responses={200: ValidationReportSerializer}, tags=_TAGS,
    )  # fmt: skip
    def get(self, request, run_id):
        run = BackupRun.objects.filter(pk=run_id, kind__in=compliance.VALIDATION_KINDS).first()
        if run is None:
            raise NotFound("No verify or test-restore job with this id.")
        return Response(compliance.validation_report(run))  # the serializer documents it: it would add the other kind's fields as nulls


class VerifyAllView(_StaffView):
    permission_classes = [role_permission("backup_validate")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "INVALID_STATE", "S3_ERROR"]

    @extend_schema(
        operation_id="validation_verify_all",
        summary="Verify every snapshot of the repository (and test-restore its newest database snapshot) as jobs",
        description="202 {job_id, status, status_url, report_url, test_restore}: job_id is the verify; test_restore is the drill's job (null when "
        "`test_restore` is false or no snapshot holds a database). Corruption raises CORRUPTION_DETECTED, a differing table RECOVERY_FAILED.",
        request=VerifyAllInputSerializer, responses={202: OpenApiResponse(description="Accepted.")}, tags=_TAGS,
    )  # fmt: skip
    def post(self, request):
        payload = VerifyAllInputSerializer(data=request.data or {})
        payload.is_valid(raise_exception=True)
        try:
            verify, drill = compliance.validation_all_request(
                location=payload.validated_data.get("location"), test_restore=payload.validated_data["test_restore"], requested_by=_actor(request)
            )
        except RepositoryError as exc:
            raise _repository_error(exc) from None
        response = _accepted(verify)
        response.data |= {"report_url": _report_url(verify), "test_restore": None}
        if drill is not None:
            response.data["test_restore"] = {**_accepted(drill).data, "report_url": _report_url(drill), "snapshot_id": drill.snapshot_id}
        return response


def _report_url(run: BackupRun) -> str:
    return f"/api/v1/validation/report/{run.pk}"


class RetentionPolicyListView(_StaffView):
    permission_classes = [role_permission("backup_view")]
    error_codes = [*_StaffView.error_codes]

    @extend_schema(
        operation_id="compliance_retention_policies", summary="Every schedule's retention rules (GFS, archive/delete after) and its held snapshots",
        responses={200: RetentionPoliciesSerializer}, tags=_TAGS,
    )  # fmt: skip
    def get(self, request):
        return Response(RetentionPoliciesSerializer(compliance.retention_policies()).data)


class RetentionPolicyDetailView(_StaffView):
    permission_classes = [role_permission("backup_view", "backup_manage_schedules")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "COMPLIANCE_VIOLATION", "NOT_FOUND"]

    @extend_schema(operation_id="compliance_retention_policy_get", summary="One schedule's retention rules", responses={200: RetentionPolicySerializer}, tags=_TAGS)
    def get(self, request, schedule_id: int):
        return Response(RetentionPolicySerializer(compliance.retention_policy(schedule_get(schedule_id))).data)

    @extend_schema(
        operation_id="compliance_retention_policy_update", summary="Change a schedule's retention rules (only the fields sent); audited as backup.schedule_changed",
        request=RetentionPolicyInputSerializer, responses={200: RetentionPolicySerializer}, tags=_TAGS,
    )  # fmt: skip
    def patch(self, request, schedule_id: int):
        schedule = schedule_get(schedule_id)
        payload = RetentionPolicyInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        schedule = compliance.retention_policy_set(schedule=schedule, changes=payload.validated_data, actor=_actor(request))
        return Response(RetentionPolicySerializer(compliance.retention_policy(schedule)).data)


class BackupAuditCursor(CursorPagination):
    ordering = "-id"  # newest first, as /api/v1/audit/events
    page_size = 100


class AuditLogView(_StaffView):
    permission_classes = [role_permission("backup_read_audit")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "NOT_FOUND"]
    pagination_class = BackupAuditCursor

    @extend_schema(
        operation_id="compliance_audit_log", summary="The backup audit trail (backup.* events), newest first, cursor-paginated; the read is audited",
        parameters=[BackupAuditQuerySerializer], responses={200: BackupAuditEventSerializer(many=True)}, tags=_TAGS,
    )  # fmt: skip
    def get(self, request):
        query = BackupAuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {key: value for key, value in query.validated_data.items() if key != "cursor"}
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(compliance.backup_audit_trail(actor=_actor(request), **filters), request, view=self)
        return paginator.get_paginated_response(BackupAuditEventSerializer(page, many=True).data)


class DataResidencyView(_StaffView):
    permission_classes = [role_permission("backup_view")]
    error_codes = [*_StaffView.error_codes, "BOOK_NOT_FOUND"]

    @extend_schema(
        operation_id="compliance_data_residency", summary="Where one book's data lives and is backed up, against the allowed regions (ids, regions and counts only)",
        responses={200: DataResidencySerializer}, tags=_TAGS,
    )  # fmt: skip
    def get(self, request, book_id):
        return Response(DataResidencySerializer(compliance.book_data_residency(book_id=book_id)).data)
