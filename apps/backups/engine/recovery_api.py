"""The recovery API: full-system, selective and point-in-time recoveries as jobs, and their status.

Staff holding `backup_restore` (recovery_specialist, backup_admin); anyone else is 403 FORBIDDEN.
A request is validated whole before anything is queued (400 INVALID_ARGUMENT); a live target that
holds data without `overwrite` is 409 RECOVERY_TARGET_NOT_EMPTY; otherwise 202 with the job id,
and `/recovery/status/{id}` follows the run (engine/recovery.py does the work in a worker).
"""

from __future__ import annotations

import re
from pathlib import Path

from django.db import connection
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response

from apps.backups.engine import services
from apps.backups.engine.api import _actor, _repository_error, _StaffView, role_permission
from apps.backups.engine.models import BackupRun, RunKind
from apps.backups.engine.recovery import point_in_time_possible, recovery_request
from apps.backups.engine.recovery_rows import PRESERVED_TABLES
from apps.backups.engine.repository import RepositoryError
from apps.backups.engine.serializers import RunSerializer

_SNAPSHOT_ID = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
_PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _absolute(value: str) -> str:
    if not Path(value).is_absolute():
        raise serializers.ValidationError("An absolute path on the server.")
    return value


class _TargetSerializer(serializers.Serializer):
    snapshot_id = serializers.RegexField(_SNAPSHOT_ID, max_length=64, required=False, allow_null=True)
    target_database = serializers.CharField(max_length=500, required=False, allow_null=True, allow_blank=True)
    objects_to = serializers.CharField(max_length=500, required=False, allow_null=True, allow_blank=True, validators=[_absolute])
    overwrite = serializers.BooleanField(required=False, default=False)

    def validate_target_database(self, value):
        if not value or value == "live":
            return None
        if connection.vendor == "postgresql" and not _PG_NAME.match(value):
            raise serializers.ValidationError("A PostgreSQL database name on the configured server (letters, digits, _).")
        if connection.vendor == "sqlite":
            _absolute(value)
        return value

    def _objects_needed(self, data: dict) -> None:
        if data.get("target_database") and not data.get("objects_to"):
            raise serializers.ValidationError({"objects_to": ["A recovery into another database puts the photo objects into a directory: name it."]})


class FullSystemInputSerializer(_TargetSerializer):
    database_only = serializers.BooleanField(required=False, default=False)
    config_to = serializers.CharField(max_length=500, required=False, allow_null=True, allow_blank=True, validators=[_absolute])

    def validate(self, data):
        if not data["database_only"]:
            self._objects_needed(data)
        return data


class SelectiveInputSerializer(_TargetSerializer):
    tables = serializers.ListField(child=serializers.RegexField(r"^[a-z][a-z0-9_]{0,62}$"), required=False, allow_empty=False, max_length=200)
    book_id = serializers.UUIDField(required=False)

    def validate_tables(self, value):
        known = set(connection.introspection.table_names())
        wrong = [t for t in value if t not in known or t in PRESERVED_TABLES]
        if wrong:
            raise serializers.ValidationError(f"Not a table a recovery loads: {', '.join(wrong[:5])}.")
        return value

    def validate(self, data):
        if ("tables" in data) == ("book_id" in data):
            raise serializers.ValidationError({"tables": ["Name either tables or one book_id."]})
        if "book_id" in data:
            self._objects_needed(data)
        return data


class PointInTimeInputSerializer(serializers.Serializer):
    target_time = serializers.DateTimeField()
    base_snapshot = serializers.RegexField(_SNAPSHOT_ID, max_length=64, required=False, allow_null=True)
    to = serializers.CharField(max_length=500, validators=[_absolute])
    overwrite = serializers.BooleanField(required=False, default=False)

    def validate(self, data):
        if not point_in_time_possible():
            raise serializers.ValidationError({"target_time": ["Point-in-time recovery needs PostgreSQL (the distributed mode)."]})
        return data


def _recovery_accepted(run: BackupRun) -> Response:
    return Response({"job_id": str(run.pk), "status": run.status, "type": run.params["type"], "status_url": f"/api/v1/recovery/status/{run.pk}"}, status=202)


class _RecoveryView(_StaffView):
    permission_classes = [role_permission("backup_restore")]
    error_codes = [*_StaffView.error_codes, "INVALID_ARGUMENT", "RECOVERY_TARGET_NOT_EMPTY", "S3_ERROR"]
    input_serializer: type[serializers.Serializer]

    def params(self, data: dict) -> dict:
        raise NotImplementedError

    def post(self, request):
        payload = self.input_serializer(data=request.data or {})
        payload.is_valid(raise_exception=True)
        params = self.params(payload.validated_data)
        snapshot_id = params.get("snapshot_id") or params.get("base_snapshot")
        if snapshot_id:
            try:
                services.backup_repository_open().snapshot_get(snapshot_id)  # an unknown id is a 400 now, not a failed job later
            except RepositoryError as exc:
                raise _repository_error(exc) from None
        return _recovery_accepted(recovery_request(params=params, requested_by=_actor(request)))


def _target_params(data: dict) -> dict:
    return {key: data.get(key) for key in ("snapshot_id", "target_database", "objects_to") if data.get(key)} | {"overwrite": data["overwrite"]}


@extend_schema_view(post=extend_schema(
    operation_id="recovery_full_system", summary="Recover the database, the photo objects and the configuration (or the database only) as a job",
    request=FullSystemInputSerializer, responses={202: OpenApiResponse(description="Accepted: {job_id, status, type, status_url}.")}, tags=["server backups"],
))  # fmt: skip
class FullSystemView(_RecoveryView):
    input_serializer = FullSystemInputSerializer

    def params(self, data: dict) -> dict:
        params = {"type": "database" if data["database_only"] else "full_system", **_target_params(data)}
        return params | ({"config_to": data["config_to"]} if data.get("config_to") else {})


@extend_schema_view(post=extend_schema(
    operation_id="recovery_selective", summary="Recover chosen tables, or one book's rows and photos, as a job",
    request=SelectiveInputSerializer, responses={202: OpenApiResponse(description="Accepted: {job_id, status, type, status_url}.")}, tags=["server backups"],
))  # fmt: skip
class SelectiveView(_RecoveryView):
    input_serializer = SelectiveInputSerializer

    def params(self, data: dict) -> dict:
        chosen = {"book_id": str(data["book_id"])} if "book_id" in data else {"tables": data["tables"]}
        return {"type": "selective", **_target_params(data), **chosen}


@extend_schema_view(post=extend_schema(
    operation_id="recovery_point_in_time", summary="Lay out a PostgreSQL data directory at a point in time (base backup + WAL) as a job",
    request=PointInTimeInputSerializer, responses={202: OpenApiResponse(description="Accepted: {job_id, status, type, status_url}.")}, tags=["server backups"],
))  # fmt: skip
class PointInTimeView(_RecoveryView):
    input_serializer = PointInTimeInputSerializer

    def params(self, data: dict) -> dict:
        params = {"type": "point_in_time", "target_time": data["target_time"].isoformat(), "to": data["to"], "overwrite": data["overwrite"]}
        return params | ({"base_snapshot": data["base_snapshot"]} if data.get("base_snapshot") else {})


class RecoveryStatusSerializer(RunSerializer):
    params = serializers.JSONField(read_only=True)

    class Meta(RunSerializer.Meta):
        fields = (*RunSerializer.Meta.fields, "params")


class RecoveryStatusView(_StaffView):
    permission_classes = [role_permission("backup_restore")]
    error_codes = [*_StaffView.error_codes, "NOT_FOUND"]

    @extend_schema(operation_id="recovery_status", summary="A recovery job: status, progress, result, error, times", responses={200: RecoveryStatusSerializer}, tags=["server backups"])
    def get(self, request, run_id):
        return Response(RecoveryStatusSerializer(get_object_or_404(BackupRun, pk=run_id, kind=RunKind.RECOVERY)).data)
