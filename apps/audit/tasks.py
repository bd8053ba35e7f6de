"""Audit retention: events older than AUDIT_RETENTION_DAYS go, once a day, in batches."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.audit.services import audit_events_purge
from apps.cluster.jobs import job_run_once
from homepocket.periodic import PeriodicTaskSpec


@shared_task(name="audit.events_purge")
def audit_events_purge_task() -> int:
    """Delete expired audit events, once per cluster (apps/cluster/jobs.py); None when skipped."""
    # Lock only, no fence: each batch deletes rows already past retention, so a stale holder's
    # late batch deletes what the new holder would have deleted anyway.
    return job_run_once("audit-events-purge", lambda lease: audit_events_purge(older_than_days=settings.AUDIT_RETENTION_DAYS))


PERIODIC_TASKS = [
    PeriodicTaskSpec(
        name="audit-events-purge",
        task="audit.events_purge",
        every_seconds=24 * 3600,
        description="Delete audit events past their retention.",
    ),
]
