from django.urls import path

from apps.backups.engine.api import (
    AvailableBackupsView,
    IntegrityView,
    LegalHoldView,
    ScheduleDetailView,
    ScheduleListView,
    StatusView,
    TestRestoreView,
    TriggerView,
)
from apps.backups.engine.compliance_api import (
    AuditLogView,
    DataResidencyView,
    RetentionPolicyDetailView,
    RetentionPolicyListView,
    ValidationReportView,
    VerifyAllView,
)
from apps.backups.engine.recovery_api import FullSystemView, PointInTimeView, RecoveryStatusView, SelectiveView

# Staff paths: homepocket/settings.py SITE_PATH_PREFIXES gives them the admin's session stack.
urlpatterns = [
    path("backup/schedules", ScheduleListView.as_view(), name="backup-schedules"),
    path("backup/schedule/<int:schedule_id>", ScheduleDetailView.as_view(), name="backup-schedule"),
    path("backup/trigger/<str:backup_type>", TriggerView.as_view(), name="backup-trigger"),
    path("backup/status/<uuid:run_id>", StatusView.as_view(), name="backup-status"),
    path("recovery/available-backups", AvailableBackupsView.as_view(), name="recovery-available-backups"),
    path("recovery/full-system", FullSystemView.as_view(), name="recovery-full-system"),
    path("recovery/selective", SelectiveView.as_view(), name="recovery-selective"),
    path("recovery/point-in-time", PointInTimeView.as_view(), name="recovery-point-in-time"),
    path("recovery/status/<uuid:run_id>", RecoveryStatusView.as_view(), name="recovery-status"),
    path("validation/integrity/<str:snapshot_id>", IntegrityView.as_view(), name="validation-integrity"),
    path("validation/test-restore/<str:snapshot_id>", TestRestoreView.as_view(), name="validation-test-restore"),
    path("compliance/legal-hold", LegalHoldView.as_view(), name="compliance-legal-hold"),
    # Validation reports and compliance (engine/compliance_api.py).
    path("validation/report/<uuid:run_id>", ValidationReportView.as_view(), name="validation-report"),
    path("validation/verify-all", VerifyAllView.as_view(), name="validation-verify-all"),
    path("compliance/retention-policy", RetentionPolicyListView.as_view(), name="compliance-retention-policies"),
    path("compliance/retention-policy/<int:schedule_id>", RetentionPolicyDetailView.as_view(), name="compliance-retention-policy"),
    path("compliance/audit-log", AuditLogView.as_view(), name="compliance-audit-log"),
    path("compliance/data-residency/<uuid:book_id>", DataResidencyView.as_view(), name="compliance-data-residency"),
]
